/*
 * The native floor for issue 2's benchmarks: runs a WASI preview 1 command
 * module through the same libwasmtime that `enarx run` loads, the way a
 * wasmtime embedder (and Enarx's wasmldr) does it: engine, module from bytes
 * (or deserialized from a compiled-module cache file), linker with WASI,
 * inherited stdio, argv[0] = the module's file name, no environment, call
 * `_start`, exit with the guest's status.
 *
 * Usage: run [--cache FILE] [--opt none|speed|speed_and_size] [--epoch]
 *            [--fuel N] [--dir HOST::GUEST[:ro]]... [--timings] MODULE.wasm
 *            [ARGS...]
 *
 *   --cache FILE  map FILE (wasmtime_module_deserialize_file) if it exists,
 *                 else compile and write it
 *   --dir H::G    preopen host directory H as G, writable; H::G:ro for
 *                 read-only (as `enarx run --dir`); repeatable, up to 16
 *   --epoch       enable epoch interruption (deadline never reached), to
 *                 measure what the check costs
 *   --fuel N      enable fuel metering with N units
 *   --timings     print the time of each phase to stderr
 *
 * Exit status: the guest's (proc_exit), 134 on a trap, 70 on any other error.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi.h>
#include <wasm.h>
#include <wasmtime.h>

static int timings = 0;
static double t_prev;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void phase(const char *name) {
  if (!timings) return;
  double t = now_ms();
  fprintf(stderr, "run: %-12s %8.3f ms\n", name, t - t_prev);
  t_prev = t;
}

static int fail_error(const char *what, wasmtime_error_t *error) {
  wasm_byte_vec_t msg;
  wasmtime_error_message(error, &msg);
  fprintf(stderr, "run: %s: %.*s\n", what, (int)msg.size, msg.data);
  wasm_byte_vec_delete(&msg);
  wasmtime_error_delete(error);
  return 70;
}

static int fail_trap(wasm_trap_t *trap) {
  wasm_byte_vec_t msg;
  wasm_trap_message(trap, &msg);
  fprintf(stderr, "run: trap: %.*s\n", (int)msg.size, msg.data);
  wasm_byte_vec_delete(&msg);
  wasm_trap_delete(trap);
  return 134;
}

/* Reads a whole file into a malloc'd buffer; returns 0 on success. */
static int read_file(const char *path, uint8_t **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (n == cap) buf = realloc(buf, cap *= 2);
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return -1;
  }
  *data = buf;
  *len = n;
  return 0;
}

static int write_file(const char *path, const uint8_t *data, size_t len) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) return -1;
  int ok = fwrite(data, 1, len, f) == len;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return -1;
  }
  return 0;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

int main(int argc, char **argv) {
  const char *cache = NULL;
  const char *dirs[16];
  int ndirs = 0;
  wasmtime_opt_level_t opt = WASMTIME_OPT_LEVEL_SPEED;
  int epoch = 0;
  uint64_t fuel = 0;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--cache") && i + 1 < argc) {
      cache = argv[++i];
    } else if (!strcmp(argv[i], "--opt") && i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(v, "none")) opt = WASMTIME_OPT_LEVEL_NONE;
      else if (!strcmp(v, "speed")) opt = WASMTIME_OPT_LEVEL_SPEED;
      else if (!strcmp(v, "speed_and_size")) opt = WASMTIME_OPT_LEVEL_SPEED_AND_SIZE;
      else {
        fprintf(stderr, "run: unknown --opt \"%s\"\n", v);
        return 64;
      }
    } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
      if (ndirs == (int)(sizeof dirs / sizeof dirs[0])) {
        fprintf(stderr, "run: too many --dir options (at most %d)\n", ndirs);
        return 64;
      }
      dirs[ndirs++] = argv[++i];
    } else if (!strcmp(argv[i], "--epoch")) {
      epoch = 1;
    } else if (!strcmp(argv[i], "--fuel") && i + 1 < argc) {
      fuel = strtoull(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--timings")) {
      timings = 1;
    } else {
      fprintf(stderr, "run: unknown option \"%s\"\n", argv[i]);
      return 64;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "usage: run [--cache FILE] [--opt LEVEL] [--epoch] [--fuel N] "
                    "[--dir HOST::GUEST[:ro]]... [--timings] MODULE.wasm [ARGS...]\n");
    return 64;
  }
  const char *module_path = argv[i];
  t_prev = now_ms();

  wasm_config_t *config = wasm_config_new();
  wasmtime_config_cranelift_opt_level_set(config, opt);
  if (epoch) wasmtime_config_epoch_interruption_set(config, true);
  if (fuel) wasmtime_config_consume_fuel_set(config, true);
  wasm_engine_t *engine = wasm_engine_new_with_config(config);
  phase("engine");

  wasmtime_module_t *module = NULL;
  wasmtime_error_t *error = NULL;
  uint8_t *bytes;
  size_t len;
  if (cache && access(cache, R_OK) == 0) {
    error = wasmtime_module_deserialize_file(engine, cache, &module);
    if (error) return fail_error("deserialize", error);
    phase("deserialize");
  } else {
    if (read_file(module_path, &bytes, &len) != 0) {
      fprintf(stderr, "run: cannot read \"%s\": %s\n", module_path, strerror(errno));
      return 66;
    }
    phase("read");
    error = wasmtime_module_new(engine, bytes, len, &module);
    free(bytes);
    if (error) return fail_error("compile", error);
    phase("compile");
    if (cache) {
      wasm_byte_vec_t ser;
      error = wasmtime_module_serialize(module, &ser);
      if (error) return fail_error("serialize", error);
      if (write_file(cache, (const uint8_t *)ser.data, ser.size) != 0)
        fprintf(stderr, "run: cannot write cache \"%s\"\n", cache);
      wasm_byte_vec_delete(&ser);
      phase("serialize");
    }
  }

  wasmtime_store_t *store = wasmtime_store_new(engine, NULL, NULL);
  wasmtime_context_t *context = wasmtime_store_context(store);
  if (epoch) wasmtime_context_set_epoch_deadline(context, UINT64_MAX / 2);
  if (fuel) {
    error = wasmtime_context_set_fuel(context, fuel);
    if (error) return fail_error("fuel", error);
  }
  wasmtime_linker_t *linker = wasmtime_linker_new(engine);
  error = wasmtime_linker_define_wasi(linker);
  if (error) return fail_error("define WASI", error);

  wasi_config_t *wasi = wasi_config_new();
  int guest_argc = argc - i;
  const char **guest_argv = malloc(sizeof(char *) * guest_argc);
  guest_argv[0] = base_name(module_path);
  for (int k = 1; k < guest_argc; k++) guest_argv[k] = argv[i + k];
  wasi_config_set_argv(wasi, guest_argc, guest_argv);
  free(guest_argv);
  wasi_config_inherit_stdin(wasi);
  for (int d = 0; d < ndirs; d++) {
    const char *sep = strstr(dirs[d], "::");
    if (!sep || sep == dirs[d] || !sep[2]) {
      fprintf(stderr, "run: --dir wants HOST::GUEST or HOST::GUEST:ro, not \"%s\"\n", dirs[d]);
      return 64;
    }
    char *host = strndup(dirs[d], (size_t)(sep - dirs[d]));
    char *guest = strdup(sep + 2);
    size_t glen = strlen(guest);
    int mutable = 1;
    if (glen > 3 && !strcmp(guest + glen - 3, ":ro")) {
      guest[glen - 3] = '\0';
      mutable = 0;
    }
    if (!wasi_config_preopen_dir(wasi, host, guest, mutable)) {
      fprintf(stderr, "run: cannot preopen \"%s\"\n", host);
      return 66;
    }
    free(host);
    free(guest);
  }
  wasi_config_inherit_stdout(wasi);
  wasi_config_inherit_stderr(wasi);
  error = wasmtime_context_set_wasi(context, wasi);
  if (error) return fail_error("WASI", error);

  wasmtime_instance_t instance;
  wasm_trap_t *trap = NULL;
  error = wasmtime_linker_instantiate(linker, context, module, &instance, &trap);
  if (error) return fail_error("instantiate", error);
  if (trap) return fail_trap(trap);
  wasmtime_extern_t start;
  if (!wasmtime_instance_export_get(context, &instance, "_start", 6, &start) ||
      start.kind != WASMTIME_EXTERN_FUNC) {
    fprintf(stderr, "run: \"%s\" exports no _start function\n", module_path);
    return 70;
  }
  phase("instantiate");

  int status = 0;
  error = wasmtime_func_call(context, &start.of.func, NULL, 0, NULL, 0, &trap);
  phase("_start");
  if (error) {
    if (!wasmtime_error_exit_status(error, &status)) return fail_error("_start", error);
    wasmtime_error_delete(error);
  } else if (trap) {
    return fail_trap(trap);
  }

  wasmtime_linker_delete(linker);
  wasmtime_module_delete(module);
  wasmtime_store_delete(store);
  wasm_engine_delete(engine);
  phase("teardown");
  return status;
}
