/*
 * The native floor for the HTTP benchmark (bench/http_bench.ts): runs a WASI
 * preview 1 server module through the same libwasmtime as `enarx run`, with
 * one listening socket given to it by the same socket shim
 * (ffi/native/enarx_wasi_sockets.c, compiled into this program), but with no
 * Deno, no Enarx.toml and no keep around it. wasmtime's C API alone cannot do
 * this: since wasmtime 20 it has no way to put a host socket into its WASI
 * table (docs/sockets.md).
 *
 * Usage: http_host TRAMPOLINE.wat MODULE.wasm NAME [ARGS...]
 *
 *   Listens on 127.0.0.1 (any free port, printed to stderr as "listening on
 *   127.0.0.1:PORT"), gives it to the guest as fd 3 with FD_NAMES
 *   "stdin:stdout:stderr:NAME" and FD_COUNT 4, and runs `_start` with argv
 *   [MODULE, NAME, ARGS...]. TRAMPOLINE.wat is ffi/wasi_sockets.ts's
 *   trampolineWat() (bench/build.sh writes it). Placeholders for fds 3 and 4
 *   (the shim's anchor) are preopened from an empty temporary directory, as
 *   runtime/wasm/sockets.ts does.
 *
 * Exit status: the guest's, 70 on any error.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi.h>
#include <wasm.h>
#include <wasmtime.h>

/* The shim's entry points (ffi/native/enarx_wasi_sockets.c). */
struct table;
int enarx_sock_init(const char *path);
const char *enarx_sock_error(void);
struct table *enarx_sock_table_new(void);
int enarx_sock_table_add(struct table *t, uint32_t guest_fd, int os_fd);
int enarx_sock_install(struct table *t, wasmtime_linker_t *linker, wasmtime_context_t *context,
                       wasm_engine_t *engine, const wasmtime_module_t *trampoline);
int enarx_sock_listen(const char *addr, uint16_t port, int backlog, int *bound_port, char *err,
                      size_t err_len);

static int fail_error(const char *what, wasmtime_error_t *error) {
  wasm_byte_vec_t msg;
  wasmtime_error_message(error, &msg);
  fprintf(stderr, "http_host: %s: %.*s\n", what, (int)msg.size, msg.data);
  wasm_byte_vec_delete(&msg);
  wasmtime_error_delete(error);
  return 70;
}

static int read_file(const char *path, wasm_byte_vec_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  wasm_byte_vec_new_uninitialized(out, (size_t)n);
  int ok = fread(out->data, 1, (size_t)n, f) == (size_t)n;
  fclose(f);
  return ok ? 0 : -1;
}

static int compile(wasm_engine_t *engine, const char *path, int wat, wasmtime_module_t **module) {
  wasm_byte_vec_t text, bytes;
  if (read_file(path, &text) != 0) {
    fprintf(stderr, "http_host: cannot read \"%s\"\n", path);
    return 70;
  }
  wasmtime_error_t *error = NULL;
  if (wat) {
    error = wasmtime_wat2wasm(text.data, text.size, &bytes);
    wasm_byte_vec_delete(&text);
    if (error) return fail_error(path, error);
  } else {
    bytes = text;
  }
  error = wasmtime_module_new(engine, (const uint8_t *)bytes.data, bytes.size, module);
  wasm_byte_vec_delete(&bytes);
  return error ? fail_error(path, error) : 0;
}

/* The socket as fd 3, placeholders for fds 3 and 4, stdio, argv and FD_NAMES. */
static char dir[] = "/tmp/http-host-XXXXXX";

static int configure(wasi_config_t *wasi, struct table *table, int argc, char **argv) {
  char err[256], names[256];
  int port = 0, fd = enarx_sock_listen("127.0.0.1", 0, 1024, &port, err, sizeof err);
  if (fd < 0) {
    fprintf(stderr, "http_host: listen: %s\n", err);
    return 70;
  }
  if (!mkdtemp(dir) || enarx_sock_table_add(table, 3, fd) != 0 ||
      enarx_sock_table_add(table, 4, -1) != 0 ||
      !wasi_config_preopen_dir(wasi, dir, "/.enarx-fd-3", false) ||
      !wasi_config_preopen_dir(wasi, dir, "/.enarx-fd-4", false)) {
    fprintf(stderr, "http_host: cannot set up the socket table: %s\n", enarx_sock_error());
    return 70;
  }
  snprintf(names, sizeof names, "stdin:stdout:stderr:%s", argv[3]);
  const char *keys[] = {"FD_COUNT", "FD_NAMES"}, *values[] = {"4", names};
  wasi_config_set_env(wasi, 2, keys, values);
  wasi_config_set_argv(wasi, (size_t)(argc - 2), (const char **)argv + 2);
  wasi_config_inherit_stdin(wasi);
  wasi_config_inherit_stdout(wasi);
  wasi_config_inherit_stderr(wasi);
  fprintf(stderr, "listening on 127.0.0.1:%d\n", port);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: http_host TRAMPOLINE.wat MODULE.wasm NAME [ARGS...]\n");
    return 64;
  }
  const char *lib = getenv("ENARX_LIBWASMTIME");
  if (!lib || enarx_sock_init(lib) != 0) {
    fprintf(stderr, "http_host: set ENARX_LIBWASMTIME to the libwasmtime this was linked to%s%s\n",
            lib ? ": " : "", lib ? enarx_sock_error() : "");
    return 70;
  }
  wasm_engine_t *engine = wasm_engine_new();
  wasmtime_module_t *trampoline = NULL, *module = NULL;
  int rc = compile(engine, argv[1], 1, &trampoline);
  if (rc == 0) rc = compile(engine, argv[2], 0, &module);
  if (rc != 0) return rc;
  wasmtime_store_t *store = wasmtime_store_new(engine, NULL, NULL);
  wasmtime_context_t *context = wasmtime_store_context(store);
  wasmtime_linker_t *linker = wasmtime_linker_new(engine);
  wasmtime_error_t *error = wasmtime_linker_define_wasi(linker);
  if (error) return fail_error("define WASI", error);
  struct table *table = enarx_sock_table_new();
  wasi_config_t *wasi = wasi_config_new();
  if ((rc = configure(wasi, table, argc, argv)) != 0) return rc;
  error = wasmtime_context_set_wasi(context, wasi);
  if (error) return fail_error("WASI", error);
  rmdir(dir); /* wasmtime holds the placeholders open */
  if (enarx_sock_install(table, linker, context, engine, trampoline) != 0) {
    fprintf(stderr, "http_host: %s\n", enarx_sock_error());
    return 70;
  }
  wasmtime_instance_t instance;
  wasm_trap_t *trap = NULL;
  error = wasmtime_linker_instantiate(linker, context, module, &instance, &trap);
  if (error) return fail_error("instantiate", error);
  wasmtime_extern_t start;
  if (trap || !wasmtime_instance_export_get(context, &instance, "_start", 6, &start)) {
    fprintf(stderr, "http_host: cannot instantiate or find _start\n");
    return 70;
  }
  int status = 0;
  error = wasmtime_func_call(context, &start.of.func, NULL, 0, NULL, 0, &trap);
  if (error) {
    if (!wasmtime_error_exit_status(error, &status)) return fail_error("_start", error);
    wasmtime_error_delete(error);
  } else if (trap) {
    fprintf(stderr, "http_host: the guest trapped\n");
    return 70;
  }
  return status;
}
