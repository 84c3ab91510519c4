/*
 * enarx_wasi_sockets: TCP sockets for WASI preview 1 guests of wasmtime's C
 * API, which since wasmtime 20 has no way to put a host socket into its own
 * WASI table (wasi_config_preopen_socket is gone from wasi.h). This library
 * redefines, in a wasmtime_linker_t, every wasi_snapshot_preview1 function
 * that takes a file descriptor: for the fds in its own socket table it does
 * the socket I/O itself; for every other fd it calls wasmtime's own function,
 * taken from the linker before it was shadowed. See docs/sockets.md.
 *
 * Built by runtime/wasm/socket_shim.ts with the system C compiler
 * (cc -shared -fPIC -O2), loaded by ffi/wasi_sockets.ts. It needs no wasmtime
 * headers: the few C API types it uses are declared below from wasmtime 50's
 * headers (wasm.h, wasmtime/{extern,func,linker,memory,trap,val}.h), and its
 * functions are looked up in the libwasmtime that enarx has already loaded.
 * WASI constants and layouts are those of wasi_snapshot_preview1 (witx), as
 * wasi-libc's <wasi/api.h> states them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- wasmtime C API (wasmtime 50): the types and functions used here ---- */

#ifdef ENARX_WASMTIME_HEADERS
/* tests/wasm/socket_shim_abi_test.ts: the same code against wasmtime's own headers. */
#include <wasmtime.h>
#else
typedef struct wasmtime_linker wasmtime_linker_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_caller wasmtime_caller_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasmtime_module wasmtime_module_t;

/* wasmtime/instance.h */
typedef struct {
  uint64_t store_id;
  size_t private_;
} wasmtime_instance_t;

/* wasm.h: wasm_byte_vec_t (wasm_name_t). */
typedef struct {
  size_t size;
  char *data;
} wasm_byte_vec_t;

/* wasmtime/extern.h: wasmtime_func_t and wasmtime_memory_t. */
typedef struct {
  uint64_t store_id;
  void *private_;
} wasmtime_func_t;

typedef struct {
  uint64_t store_id;
  uint32_t private1;
  uint32_t private2;
} wasmtime_memory_t;

/* wasmtime/extern.h: wasmtime_extern_t is a kind byte and a 24-byte union at offset 8. */
typedef struct {
  uint8_t kind;
  union {
    wasmtime_func_t func;
    wasmtime_memory_t memory;
    uint8_t size_[24];
  } of;
} wasmtime_extern_t;
#define WASMTIME_EXTERN_FUNC 0
#define WASMTIME_EXTERN_MEMORY 3

/* wasmtime/val.h: wasmtime_val_raw_t, 16 bytes whatever the build's features. */
typedef union {
  int32_t i32;
  int64_t i64;
  uint8_t v128[16];
  void *funcref;
} wasmtime_val_raw_t;

/* wasmtime/trap.h */
#define WASMTIME_TRAP_CODE_INTERRUPT 10
#endif /* ENARX_WASMTIME_HEADERS */
_Static_assert(sizeof(wasmtime_instance_t) == 16, "wasmtime_instance_t is 16 bytes");
_Static_assert(offsetof(wasmtime_extern_t, of) == 8, "wasmtime_extern_t.of is at 8");
_Static_assert(WASMTIME_EXTERN_FUNC == 0 && WASMTIME_EXTERN_MEMORY == 3, "extern kinds");
_Static_assert(WASMTIME_TRAP_CODE_INTERRUPT == 10, "the interrupt trap code");

typedef wasm_trap_t *(*unchecked_callback_t)(void *env, wasmtime_caller_t *caller,
                                             wasmtime_val_raw_t *args_and_results,
                                             size_t num_args_and_results);

static struct {
  void (*linker_allow_shadowing)(wasmtime_linker_t *, bool);
  bool (*linker_get)(const wasmtime_linker_t *, wasmtime_context_t *, const char *, size_t,
                     const char *, size_t, wasmtime_extern_t *);
  wasmtime_error_t *(*linker_define_func_unchecked)(wasmtime_linker_t *, const char *, size_t,
                                                    const char *, size_t,
                                                    const wasm_functype_t *,
                                                    unchecked_callback_t, void *,
                                                    void (*)(void *));
  wasm_functype_t *(*func_type)(const wasmtime_context_t *, const wasmtime_func_t *);
  void (*functype_delete)(wasm_functype_t *);
  wasmtime_error_t *(*func_call_unchecked)(wasmtime_context_t *, const wasmtime_func_t *,
                                           wasmtime_val_raw_t *, size_t, wasm_trap_t **);
  bool (*caller_export_get)(wasmtime_caller_t *, const char *, size_t, wasmtime_extern_t *);
  wasmtime_context_t *(*caller_context)(wasmtime_caller_t *);
  uint8_t *(*memory_data)(wasmtime_context_t *, const wasmtime_memory_t *);
  size_t (*memory_data_size)(const wasmtime_context_t *, const wasmtime_memory_t *);
  wasm_trap_t *(*trap_new)(const char *, size_t);
  wasm_trap_t *(*trap_new_code)(uint8_t);
  void (*error_message)(const wasmtime_error_t *, wasm_byte_vec_t *);
  void (*error_delete)(wasmtime_error_t *);
  void (*byte_vec_delete)(wasm_byte_vec_t *);
  void (*trap_delete)(wasm_trap_t *);
  wasmtime_linker_t *(*linker_new)(wasm_engine_t *);
  void (*linker_delete)(wasmtime_linker_t *);
  wasmtime_error_t *(*linker_define_wasi)(wasmtime_linker_t *);
  wasmtime_error_t *(*linker_define)(wasmtime_linker_t *, wasmtime_context_t *, const char *,
                                     size_t, const char *, size_t, const wasmtime_extern_t *);
  wasmtime_error_t *(*linker_instantiate)(const wasmtime_linker_t *, wasmtime_context_t *,
                                          const wasmtime_module_t *, wasmtime_instance_t *,
                                          wasm_trap_t **);
  bool (*instance_export_get)(wasmtime_context_t *, const wasmtime_instance_t *, const char *,
                              size_t, wasmtime_extern_t *);
  int loaded;
} wt;

_Static_assert(sizeof(wasmtime_extern_t) == 32, "wasmtime_extern_t is 32 bytes");
_Static_assert(sizeof(wasmtime_val_raw_t) == 16, "wasmtime_val_raw_t is 16 bytes");

#ifdef ENARX_WASMTIME_HEADERS
/* Every function pointer above has the type of the function it is looked up as. */
#define SAME(field, fn) \
  _Static_assert(__builtin_types_compatible_p(__typeof__(wt.field), __typeof__(&fn)), #fn)
SAME(linker_allow_shadowing, wasmtime_linker_allow_shadowing);
SAME(linker_get, wasmtime_linker_get);
SAME(linker_define_func_unchecked, wasmtime_linker_define_func_unchecked);
SAME(func_type, wasmtime_func_type);
SAME(functype_delete, wasm_functype_delete);
SAME(func_call_unchecked, wasmtime_func_call_unchecked);
SAME(caller_export_get, wasmtime_caller_export_get);
SAME(caller_context, wasmtime_caller_context);
SAME(memory_data, wasmtime_memory_data);
SAME(memory_data_size, wasmtime_memory_data_size);
SAME(trap_new, wasmtime_trap_new);
SAME(trap_new_code, wasmtime_trap_new_code);
SAME(error_message, wasmtime_error_message);
SAME(error_delete, wasmtime_error_delete);
SAME(byte_vec_delete, wasm_byte_vec_delete);
SAME(trap_delete, wasm_trap_delete);
SAME(linker_new, wasmtime_linker_new);
SAME(linker_delete, wasmtime_linker_delete);
SAME(linker_define_wasi, wasmtime_linker_define_wasi);
SAME(linker_define, wasmtime_linker_define);
SAME(linker_instantiate, wasmtime_linker_instantiate);
SAME(instance_export_get, wasmtime_instance_export_get);
#undef SAME
#endif

/* ---- WASI preview 1 (witx) constants and layouts ---- */

enum {
  E_SUCCESS = 0, E_2BIG = 1, E_ACCES = 2, E_ADDRINUSE = 3, E_ADDRNOTAVAIL = 4,
  E_AFNOSUPPORT = 5, E_AGAIN = 6, E_ALREADY = 7, E_BADF = 8, E_CONNABORTED = 13,
  E_CONNREFUSED = 14, E_CONNRESET = 15, E_DESTADDRREQ = 17, E_FAULT = 21,
  E_HOSTUNREACH = 23, E_INPROGRESS = 26, E_INTR = 27, E_INVAL = 28, E_IO = 29,
  E_ISCONN = 30, E_MFILE = 33, E_MSGSIZE = 35, E_NETDOWN = 38, E_NETRESET = 39,
  E_NETUNREACH = 40, E_NFILE = 41, E_NOBUFS = 42, E_NOMEM = 48, E_NOPROTOOPT = 50,
  E_NOTCONN = 53, E_NOTDIR = 54, E_NOTSOCK = 57, E_NOTSUP = 58, E_PERM = 63,
  E_PIPE = 64, E_SPIPE = 70, E_TIMEDOUT = 73,
};

#define FDFLAGS_NONBLOCK 4
#define FILETYPE_SOCKET_STREAM 6
#define RIGHTS_SOCKET ((1ull << 1) | (1ull << 3) | (1ull << 6) | (1ull << 21) | \
                       (1ull << 27) | (1ull << 28) | (1ull << 29))
#define RIGHTS_FD_READDIR (1ull << 14)
#define OFLAGS_DIRECTORY 2
#define EVENTTYPE_CLOCK 0
#define EVENTTYPE_FD_READ 1
#define EVENTTYPE_FD_WRITE 2
#define EVENTRWFLAGS_HANGUP 1
#define SUBCLOCKFLAGS_ABSTIME 1
#define RIFLAGS_PEEK 1
#define RIFLAGS_WAITALL 2
#define SDFLAGS_RD 1
#define SDFLAGS_WR 2
#define SUBSCRIPTION_SIZE 48
#define EVENT_SIZE 32
#define MAX_IOVS 1024
#define MAX_FD (1u << 20)

/* Linux errno to WASI errno (witx `errno`). */
static int32_t wasi_errno(int e) {
  switch (e) {
    case 0: return E_SUCCESS;
    case EACCES: return E_ACCES;
    case EADDRINUSE: return E_ADDRINUSE;
    case EADDRNOTAVAIL: return E_ADDRNOTAVAIL;
    case EAFNOSUPPORT: return E_AFNOSUPPORT;
    case EAGAIN: return E_AGAIN;
    case EALREADY: return E_ALREADY;
    case EBADF: return E_BADF;
    case ECONNABORTED: return E_CONNABORTED;
    case ECONNREFUSED: return E_CONNREFUSED;
    case ECONNRESET: return E_CONNRESET;
    case EDESTADDRREQ: return E_DESTADDRREQ;
    case EFAULT: return E_FAULT;
    case EHOSTUNREACH: return E_HOSTUNREACH;
    case EINPROGRESS: return E_INPROGRESS;
    case EINTR: return E_INTR;
    case EINVAL: return E_INVAL;
    case EISCONN: return E_ISCONN;
    case EMFILE: return E_MFILE;
    case EMSGSIZE: return E_MSGSIZE;
    case ENETDOWN: return E_NETDOWN;
    case ENETRESET: return E_NETRESET;
    case ENETUNREACH: return E_NETUNREACH;
    case ENFILE: return E_NFILE;
    case ENOBUFS: return E_NOBUFS;
    case ENOMEM: return E_NOMEM;
    case ENOPROTOOPT: return E_NOPROTOOPT;
    case ENOTCONN: return E_NOTCONN;
    case ENOTSOCK: return E_NOTSOCK;
    case EOPNOTSUPP: return E_NOTSUP;
    case EPERM: return E_PERM;
    case EPIPE: return E_PIPE;
    case ETIMEDOUT: return E_TIMEDOUT;
    default: return E_IO;
  }
}

/* ---- the socket table ---- */

enum entry_state { ENTRY_NONE = 0, ENTRY_SOCKET, ENTRY_ANCHOR };

struct entry {
  uint8_t state;
  uint8_t nonblock; /* the guest's FDFLAGS_NONBLOCK; the OS socket is always O_NONBLOCK */
  int os_fd;
};

struct table {
  struct entry *entries; /* indexed by guest fd */
  uint32_t capacity;
  uint32_t anchor; /* a read-only empty directory in wasmtime's table (see reserve_fd) */
  int wake[2];     /* a pipe: interrupt() makes blocking waits return */
  atomic_int interrupted;
  struct fn_env *envs; /* the shadowing functions' environments */
  wasm_engine_t *engine;
  const wasmtime_module_t *trampoline; /* see ensure_trampoline */
  int trampolined;
};

struct fn_env {
  struct table *table;
  wasmtime_func_t original;
  const struct shadow *shadow;
  struct fn_env *next;
};

static _Thread_local char last_error[512];

static void set_error(const char *fmt, const char *a, const char *b) {
  snprintf(last_error, sizeof last_error, fmt, a, b);
}

/** The message of the last failure of a function of this library on this thread. */
const char *enarx_sock_error(void) { return last_error; }

static struct entry *owned(struct table *t, int64_t fd) {
  if (fd < 0 || (uint64_t)fd >= t->capacity) return NULL;
  struct entry *e = &t->entries[fd];
  return e->state == ENTRY_NONE ? NULL : e;
}

static int grow(struct table *t, uint32_t fd) {
  if (fd < t->capacity) return 0;
  if (fd >= MAX_FD) return -1;
  uint32_t cap = t->capacity ? t->capacity : 16;
  while (cap <= fd) cap *= 2;
  struct entry *n = realloc(t->entries, cap * sizeof *n);
  if (!n) return -1;
  memset(n + t->capacity, 0, (cap - t->capacity) * sizeof *n);
  t->entries = n;
  t->capacity = cap;
  return 0;
}

/** Makes an empty socket table; NULL when out of memory or file descriptors. */
struct table *enarx_sock_table_new(void) {
  struct table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    free(t);
    return NULL;
  }
  t->anchor = UINT32_MAX;
  return t;
}

/**
 * Gives the guest fd `guest_fd` to the table as socket `os_fd` (which the
 * table then owns), or, with os_fd < 0, as the anchor directory.
 */
int enarx_sock_table_add(struct table *t, uint32_t guest_fd, int os_fd) {
  if (grow(t, guest_fd) != 0) return -1;
  struct entry *e = &t->entries[guest_fd];
  if (os_fd < 0) {
    e->state = ENTRY_ANCHOR;
    t->anchor = guest_fd;
  } else {
    int flags = fcntl(os_fd, F_GETFL);
    if (flags < 0 || fcntl(os_fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
    e->state = ENTRY_SOCKET;
    e->os_fd = os_fd;
    e->nonblock = 0;
  }
  return 0;
}

/** Makes every blocking socket call of the guest return with an interrupt trap. */
void enarx_sock_interrupt(struct table *t) {
  atomic_store(&t->interrupted, 1);
  ssize_t ignored = write(t->wake[1], "x", 1);
  (void)ignored;
}

/** Closes every socket of the table and frees it (after the store is gone). */
void enarx_sock_table_free(struct table *t) {
  if (!t) return;
  for (uint32_t i = 0; i < t->capacity; i++) {
    if (t->entries[i].state == ENTRY_SOCKET) close(t->entries[i].os_fd);
  }
  struct fn_env *env = t->envs;
  while (env) {
    struct fn_env *next = env->next;
    free(env);
    env = next;
  }
  close(t->wake[0]);
  close(t->wake[1]);
  free(t->entries);
  free(t);
}

/* ---- guest memory ---- */

struct guest {
  wasmtime_caller_t *caller;
  wasmtime_context_t *context;
  uint8_t *base;
  size_t size;
};

static int guest_memory(wasmtime_caller_t *caller, struct guest *g) {
  wasmtime_extern_t item;
  g->caller = caller;
  g->context = wt.caller_context(caller);
  if (!wt.caller_export_get(caller, "memory", 6, &item)) return -1;
  if (item.kind != WASMTIME_EXTERN_MEMORY) return -1;
  g->base = wt.memory_data(g->context, &item.of.memory);
  g->size = wt.memory_data_size(g->context, &item.of.memory);
  return 0;
}

/* A pointer into guest memory for `len` bytes at `ptr`, or NULL when out of bounds. */
static uint8_t *at(struct guest *g, uint32_t ptr, uint64_t len) {
  if ((uint64_t)ptr + len > g->size) return NULL;
  return g->base + ptr;
}

static uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static void store16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void store32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void store64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Guest iovecs (witx `iovec`: buf u32, buf_len u32) as host iovecs; -1 when out of bounds. */
static int iovecs(struct guest *g, uint32_t ptr, uint32_t count, struct iovec *out) {
  if (count > MAX_IOVS) return -1;
  uint8_t *list = at(g, ptr, (uint64_t)count * 8);
  if (!list) return -1;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t buf = load32(list + i * 8), len = load32(list + i * 8 + 4);
    uint8_t *p = at(g, buf, len);
    if (!p) return -1;
    out[i].iov_base = p;
    out[i].iov_len = len;
  }
  return 0;
}

/* ---- waiting ---- */

/* Waits until `os_fd` has `events` or the table is interrupted (returns -1). */
static int wait_for(struct table *t, int os_fd, short events) {
  struct pollfd p[2] = {{os_fd, events, 0}, {t->wake[0], POLLIN, 0}};
  for (;;) {
    if (atomic_load(&t->interrupted)) return -1;
    int n = poll(p, 2, -1);
    if (n < 0 && errno != EINTR) return 0;
    if (n > 0) return atomic_load(&t->interrupted) ? -1 : 0;
  }
}

static wasm_trap_t *interrupted_trap(void) {
  return wt.trap_new_code(WASMTIME_TRAP_CODE_INTERRUPT);
}

/* ---- calling wasmtime's own functions ---- */

static wasm_trap_t *call_original(struct fn_env *env, wasmtime_context_t *context,
                                  wasmtime_val_raw_t *args, size_t n) {
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *error = wt.func_call_unchecked(context, &env->original, args, n, &trap);
  if (error) {
    wasm_byte_vec_t message;
    wt.error_message(error, &message);
    trap = wt.trap_new(message.data, message.size);
    wt.byte_vec_delete(&message);
    wt.error_delete(error);
  }
  return trap;
}

static struct fn_env *original_named(struct table *t, const char *name);

/*
 * Reserves a fresh fd number in wasmtime's table for a new socket: opens the
 * anchor directory again through wasmtime's own path_open, so that wasmtime
 * chooses the number and never hands it out while the socket holds it. The
 * path "." and the result both live in the 4 guest bytes at `scratch` (the
 * guest's own out-pointer for the new fd), which path_open reads before it
 * writes. Returns the WASI errno.
 */
static int32_t reserve_fd(struct table *t, struct guest *g, uint32_t scratch, uint32_t *fd) {
  struct fn_env *path_open = original_named(t, "path_open");
  uint8_t *p = at(g, scratch, 4);
  if (!path_open || !p || t->anchor == UINT32_MAX) return E_NOTSUP;
  p[0] = '.';
  wasmtime_val_raw_t args[9];
  memset(args, 0, sizeof args);
  args[0].i32 = (int32_t)t->anchor;
  args[1].i32 = 0;               /* dirflags */
  args[2].i32 = (int32_t)scratch; /* path */
  args[3].i32 = 1;               /* path_len */
  args[4].i32 = OFLAGS_DIRECTORY;
  args[5].i64 = (int64_t)RIGHTS_FD_READDIR;
  args[6].i64 = 0;
  args[7].i32 = 0;               /* fdflags */
  args[8].i32 = (int32_t)scratch; /* out: the fd */
  wasm_trap_t *trap = call_original(path_open, g->context, args, 9);
  if (trap) { /* not expected: path_open traps only on bad guest memory */
    wt.trap_delete(trap);
    return E_NOTSUP;
  }
  if (args[0].i32 != E_SUCCESS) return args[0].i32;
  p = at(g, scratch, 4); /* path_open does not grow memory, but look again */
  *fd = load32(p);
  return E_SUCCESS;
}

/* Releases a number that reserve_fd took (wasmtime's fd_close of the directory). */
static void release_fd(struct table *t, struct guest *g, uint32_t fd) {
  struct fn_env *fd_close = original_named(t, "fd_close");
  if (!fd_close) return;
  wasmtime_val_raw_t args[1];
  args[0].i32 = (int32_t)fd;
  wasm_trap_t *trap = call_original(fd_close, g->context, args, 1);
  if (trap) wt.trap_delete(trap);
}

/* ---- the shadowing functions ---- */

typedef wasm_trap_t *(*handler_t)(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args);

struct shadow {
  const char *name;
  handler_t handler;  /* NULL: answer `sock_errno` for a socket fd */
  uint8_t fd_args;    /* bit i: argument i is an fd */
  int32_t sock_errno; /* what a socket fd gets from a function without a handler */
};

#define RESULT(v) (args[0].i32 = (int32_t)(v), (wasm_trap_t *)NULL)
#define FD(i) ((uint32_t)args[i].i32)
#define U32(i) ((uint32_t)args[i].i32)

static wasm_trap_t *h_fd_read(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct entry *e = owned(env->table, FD(0));
  struct iovec iov[MAX_IOVS];
  uint8_t *nread = at(g, U32(3), 4);
  if (!nread || iovecs(g, U32(1), U32(2), iov) != 0) return RESULT(E_FAULT);
  for (;;) {
    ssize_t n = readv(e->os_fd, iov, (int)U32(2));
    if (n >= 0) {
      store32(nread, (uint32_t)n);
      return RESULT(E_SUCCESS);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN || e->nonblock) return RESULT(wasi_errno(errno));
    if (wait_for(env->table, e->os_fd, POLLIN) != 0) return interrupted_trap();
  }
}

/* Sends everything (blocking) or what fits (non-blocking); -1 with errno when nothing was sent. */
static ssize_t send_all(struct table *t, struct entry *e, struct iovec *iov, int count,
                        int flags) {
  size_t total = 0;
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = (size_t)count;
  for (;;) {
    while (msg.msg_iovlen > 0 && msg.msg_iov->iov_len == 0) {
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen == 0) return (ssize_t)total;
    ssize_t n = sendmsg(e->os_fd, &msg, flags | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN || e->nonblock) return total > 0 ? (ssize_t)total : -1;
      if (wait_for(t, e->os_fd, POLLOUT) != 0) {
        errno = EINTR;
        return -2;
      }
      continue;
    }
    total += (size_t)n;
    while (n > 0) {
      size_t step = (size_t)n < msg.msg_iov->iov_len ? (size_t)n : msg.msg_iov->iov_len;
      msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + step;
      msg.msg_iov->iov_len -= step;
      n -= (ssize_t)step;
      if (msg.msg_iov->iov_len == 0) {
        msg.msg_iov++;
        msg.msg_iovlen--;
      }
    }
    if (e->nonblock) return (ssize_t)total;
  }
}

static wasm_trap_t *h_fd_write(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct entry *e = owned(env->table, FD(0));
  struct iovec iov[MAX_IOVS];
  uint8_t *written = at(g, U32(3), 4);
  if (!written || iovecs(g, U32(1), U32(2), iov) != 0) return RESULT(E_FAULT);
  ssize_t n = send_all(env->table, e, iov, (int)U32(2), 0);
  if (n == -2) return interrupted_trap();
  if (n < 0) return RESULT(wasi_errno(errno));
  store32(written, (uint32_t)n);
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_sock_send(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct entry *e = owned(env->table, FD(0));
  struct iovec iov[MAX_IOVS];
  uint8_t *written = at(g, U32(4), 4);
  if (!written || iovecs(g, U32(1), U32(2), iov) != 0) return RESULT(E_FAULT);
  if (U32(3) != 0) return RESULT(E_INVAL); /* witx defines no siflags */
  ssize_t n = send_all(env->table, e, iov, (int)U32(2), 0);
  if (n == -2) return interrupted_trap();
  if (n < 0) return RESULT(wasi_errno(errno));
  store32(written, (uint32_t)n);
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_sock_recv(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct entry *e = owned(env->table, FD(0));
  struct iovec iov[MAX_IOVS];
  uint8_t *datalen = at(g, U32(4), 4), *roflags = at(g, U32(5), 2);
  if (!datalen || !roflags || iovecs(g, U32(1), U32(2), iov) != 0) return RESULT(E_FAULT);
  uint32_t ri = U32(3);
  if (ri & ~(uint32_t)(RIFLAGS_PEEK | RIFLAGS_WAITALL)) return RESULT(E_INVAL);
  int flags = (ri & RIFLAGS_PEEK ? MSG_PEEK : 0) | (ri & RIFLAGS_WAITALL ? MSG_WAITALL : 0);
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = U32(2);
  for (;;) {
    ssize_t n = recvmsg(e->os_fd, &msg, flags);
    if (n >= 0) {
      store32(datalen, (uint32_t)n);
      store16(roflags, 0);
      return RESULT(E_SUCCESS);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN || e->nonblock) return RESULT(wasi_errno(errno));
    if (wait_for(env->table, e->os_fd, POLLIN) != 0) return interrupted_trap();
  }
}

static wasm_trap_t *h_sock_shutdown(struct fn_env *env, struct guest *g,
                                    wasmtime_val_raw_t *args) {
  (void)g;
  struct entry *e = owned(env->table, FD(0));
  uint32_t how = U32(1);
  int os_how = how == (SDFLAGS_RD | SDFLAGS_WR) ? SHUT_RDWR
               : how == SDFLAGS_RD              ? SHUT_RD
               : how == SDFLAGS_WR              ? SHUT_WR
                                                : -1;
  if (os_how < 0) return RESULT(E_INVAL);
  return RESULT(shutdown(e->os_fd, os_how) == 0 ? E_SUCCESS : wasi_errno(errno));
}

static wasm_trap_t *h_sock_accept(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct table *t = env->table;
  struct entry *e = owned(t, FD(0));
  uint32_t flags = U32(1), out = U32(2);
  if (!at(g, out, 4)) return RESULT(E_FAULT);
  if (flags & ~(uint32_t)FDFLAGS_NONBLOCK) return RESULT(E_INVAL);
  int conn;
  for (;;) {
    conn = accept4(e->os_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN || e->nonblock) return RESULT(wasi_errno(errno));
    if (wait_for(t, e->os_fd, POLLIN) != 0) return interrupted_trap();
  }
  int one = 1;
  setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint32_t fd;
  int32_t err = reserve_fd(t, g, out, &fd);
  if (err == E_SUCCESS && grow(t, fd) != 0) {
    release_fd(t, g, fd);
    err = E_NFILE;
  }
  if (err != E_SUCCESS) {
    close(conn);
    return RESULT(err);
  }
  e = &t->entries[fd];
  e->state = ENTRY_SOCKET;
  e->os_fd = conn;
  e->nonblock = (flags & FDFLAGS_NONBLOCK) != 0;
  store32(at(g, out, 4), fd);
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_fd_close(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  struct table *t = env->table;
  struct entry *e = owned(t, FD(0));
  close(e->os_fd);
  e->state = ENTRY_NONE;
  release_fd(t, g, FD(0));
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_fd_fdstat_get(struct fn_env *env, struct guest *g,
                                    wasmtime_val_raw_t *args) {
  struct entry *e = owned(env->table, FD(0));
  uint8_t *p = at(g, U32(1), 24); /* witx fdstat: 24 bytes */
  if (!p) return RESULT(E_FAULT);
  memset(p, 0, 24);
  p[0] = FILETYPE_SOCKET_STREAM;
  store16(p + 2, e->nonblock ? FDFLAGS_NONBLOCK : 0);
  store64(p + 8, RIGHTS_SOCKET);
  store64(p + 16, RIGHTS_SOCKET);
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_fd_fdstat_set_flags(struct fn_env *env, struct guest *g,
                                          wasmtime_val_raw_t *args) {
  (void)g;
  struct entry *e = owned(env->table, FD(0));
  uint32_t flags = U32(1);
  if (flags & ~(uint32_t)FDFLAGS_NONBLOCK) return RESULT(E_INVAL);
  e->nonblock = flags != 0;
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_fd_filestat_get(struct fn_env *env, struct guest *g,
                                      wasmtime_val_raw_t *args) {
  (void)env;
  uint8_t *p = at(g, U32(1), 64); /* witx filestat: 64 bytes, filetype at 16 */
  if (!p) return RESULT(E_FAULT);
  memset(p, 0, 64);
  p[16] = FILETYPE_SOCKET_STREAM;
  store64(p + 24, 1);
  return RESULT(E_SUCCESS);
}

static wasm_trap_t *h_fd_renumber(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  (void)env;
  (void)g;
  return RESULT(E_NOTSUP);
}

/* ---- poll_oneoff ---- */

static int64_t now_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put_event(uint8_t *ev, uint64_t userdata, uint16_t error, uint8_t type,
                      uint64_t nbytes, uint16_t flags) {
  memset(ev, 0, EVENT_SIZE); /* witx event: userdata@0 error@8 type@10 nbytes@16 flags@24 */
  store64(ev, userdata);
  store16(ev + 8, error);
  ev[10] = type;
  store64(ev + 16, nbytes);
  store16(ev + 24, flags);
}

struct poll_state {
  uint8_t *subs;     /* the guest's subscriptions, copied */
  uint32_t nsubs;
  uint32_t *foreign; /* indexes of subscriptions on wasmtime's fds */
  uint32_t nforeign;
  struct pollfd *pfds; /* sockets, then the wake pipe */
  uint32_t *pfd_sub;
  uint32_t npfds;
  int64_t *deadline; /* per subscription: CLOCK_MONOTONIC ns, or -1 */
  int64_t earliest;
  uint8_t *events; /* EVENT_SIZE each */
  uint32_t nevents;
};

/*
 * Asks wasmtime's own poll_oneoff, with a zero timeout, about the
 * subscriptions on its fds. It takes its input from guest memory, so they are
 * written over the guest's subscription array (which has room: at least one
 * subscription is a socket's) with a zero clock after them, and the array is
 * restored afterwards. Returns a trap, or NULL with *err set.
 */
static wasm_trap_t *poll_foreign(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args,
                                 struct poll_state *s, int32_t *err) {
  uint32_t in = U32(0), out = U32(1), nev = U32(3);
  uint8_t *subs = at(g, in, (uint64_t)s->nsubs * SUBSCRIPTION_SIZE);
  for (uint32_t j = 0; j < s->nforeign; j++) {
    memcpy(subs + j * SUBSCRIPTION_SIZE, s->subs + s->foreign[j] * SUBSCRIPTION_SIZE,
           SUBSCRIPTION_SIZE);
  }
  uint8_t *clock = subs + s->nforeign * SUBSCRIPTION_SIZE;
  memset(clock, 0, SUBSCRIPTION_SIZE); /* tag 0 (clock) @8, id @16 = monotonic, timeout 0 */
  store32(clock + 16, 1);
  wasmtime_val_raw_t call[4];
  memset(call, 0, sizeof call);
  call[0].i32 = (int32_t)in;
  call[1].i32 = (int32_t)out;
  call[2].i32 = (int32_t)(s->nforeign + 1);
  call[3].i32 = (int32_t)nev;
  wasm_trap_t *trap = call_original(env, g->context, call, 4);
  subs = at(g, in, (uint64_t)s->nsubs * SUBSCRIPTION_SIZE);
  memcpy(subs, s->subs, (size_t)s->nsubs * SUBSCRIPTION_SIZE);
  if (trap) return trap;
  *err = call[0].i32;
  if (*err != E_SUCCESS) return NULL;
  uint32_t n = load32(at(g, nev, 4));
  uint8_t *evs = at(g, out, (uint64_t)(s->nforeign + 1) * EVENT_SIZE);
  for (uint32_t k = 0; k < n && k <= s->nforeign; k++) {
    if (evs[k * EVENT_SIZE + 10] == EVENTTYPE_CLOCK) continue;
    memcpy(s->events + s->nevents++ * EVENT_SIZE, evs + k * EVENT_SIZE, EVENT_SIZE);
  }
  return NULL;
}

/* Sorts the guest's subscriptions into sockets, wasmtime's fds and clocks. */
static int32_t plan_poll(struct table *t, struct poll_state *s) {
  int64_t now = now_ns(CLOCK_MONOTONIC);
  s->earliest = -1;
  for (uint32_t i = 0; i < s->nsubs; i++) {
    const uint8_t *sub = s->subs + i * SUBSCRIPTION_SIZE;
    s->deadline[i] = -1;
    uint8_t tag = sub[8];
    if (tag == EVENTTYPE_CLOCK) {
      uint32_t id = load32(sub + 16);
      int64_t timeout = (int64_t)load64(sub + 24), rel = timeout;
      if (id > 3) return E_INVAL;
      if (load32(sub + 40) & SUBCLOCKFLAGS_ABSTIME) {
        rel = timeout - now_ns(id == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC);
      }
      s->deadline[i] = rel <= 0 ? now : (rel > INT64_MAX - now ? INT64_MAX : now + rel);
      if (s->earliest < 0 || s->deadline[i] < s->earliest) s->earliest = s->deadline[i];
    } else if (tag == EVENTTYPE_FD_READ || tag == EVENTTYPE_FD_WRITE) {
      struct entry *e = owned(t, load32(sub + 16));
      if (e && e->state == ENTRY_SOCKET) {
        s->pfds[s->npfds] = (struct pollfd){e->os_fd, tag == EVENTTYPE_FD_READ ? POLLIN : POLLOUT, 0};
        s->pfd_sub[s->npfds++] = i;
      } else if (e) {
        put_event(s->events + s->nevents++ * EVENT_SIZE, load64(sub), E_BADF, tag, 0, 0);
      } else {
        s->foreign[s->nforeign++] = i;
      }
    } else {
      return E_INVAL;
    }
  }
  s->pfds[s->npfds] = (struct pollfd){t->wake[0], POLLIN, 0};
  return E_SUCCESS;
}

/* Adds an event for each socket that poll(2) found ready and each clock that is due. */
static void collect_ready(struct poll_state *s) {
  for (uint32_t k = 0; k < s->npfds; k++) {
    short r = s->pfds[k].revents;
    const uint8_t *sub = s->subs + s->pfd_sub[k] * SUBSCRIPTION_SIZE;
    uint8_t tag = sub[8];
    if (!(r & (POLLIN | POLLOUT | POLLHUP | POLLERR | POLLNVAL))) continue;
    int available = 0;
    if (tag == EVENTTYPE_FD_READ && ioctl(s->pfds[k].fd, FIONREAD, &available) != 0) available = 0;
    put_event(s->events + s->nevents++ * EVENT_SIZE, load64(sub),
              r & POLLNVAL ? E_BADF : E_SUCCESS, tag, (uint64_t)(available > 0 ? available : 0),
              r & POLLHUP ? EVENTRWFLAGS_HANGUP : 0);
  }
  int64_t now = now_ns(CLOCK_MONOTONIC);
  for (uint32_t i = 0; i < s->nsubs; i++) {
    if (s->deadline[i] >= 0 && s->deadline[i] <= now) {
      put_event(s->events + s->nevents++ * EVENT_SIZE, load64(s->subs + i * SUBSCRIPTION_SIZE),
                E_SUCCESS, EVENTTYPE_CLOCK, 0, 0);
    }
  }
}

/* The longest that poll(2) waits while wasmtime's own fds are polled too. */
#define FOREIGN_SLICE_NS 10000000

static wasm_trap_t *poll_loop(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args,
                              struct poll_state *s, int32_t *err) {
  struct table *t = env->table;
  uint32_t base = s->nevents; /* events for closed sockets, found by plan_poll */
  for (;;) {
    s->nevents = base;
    if (s->nforeign > 0) {
      wasm_trap_t *trap = poll_foreign(env, g, args, s, err);
      if (trap || *err != E_SUCCESS) return trap;
    }
    int64_t wait = -1;
    if (s->nevents > 0) wait = 0;
    else if (s->earliest >= 0) {
      wait = s->earliest - now_ns(CLOCK_MONOTONIC);
      if (wait < 0) wait = 0;
    }
    if (s->nforeign > 0 && (wait < 0 || wait > FOREIGN_SLICE_NS)) wait = FOREIGN_SLICE_NS;
    struct timespec ts = {wait / 1000000000, wait % 1000000000};
    for (uint32_t k = 0; k <= s->npfds; k++) s->pfds[k].revents = 0; /* stale after EINTR */
    int n = ppoll(s->pfds, s->npfds + 1, wait < 0 ? NULL : &ts, NULL);
    if (n < 0 && errno != EINTR) {
      *err = wasi_errno(errno);
      return NULL;
    }
    if (atomic_load(&t->interrupted)) return interrupted_trap();
    if (n > 0 || wait >= 0) collect_ready(s);
    if (s->nevents > 0) {
      *err = E_SUCCESS;
      return NULL;
    }
  }
}

static wasm_trap_t *h_poll_oneoff(struct fn_env *env, struct guest *g, wasmtime_val_raw_t *args) {
  uint32_t nsubs = U32(2);
  uint8_t *in = at(g, U32(0), (uint64_t)nsubs * SUBSCRIPTION_SIZE);
  uint8_t *out = at(g, U32(1), (uint64_t)nsubs * EVENT_SIZE);
  uint8_t *nev = at(g, U32(3), 4);
  int mine = 0;
  for (uint32_t i = 0; in && i < nsubs; i++) {
    uint8_t tag = in[i * SUBSCRIPTION_SIZE + 8];
    if ((tag == EVENTTYPE_FD_READ || tag == EVENTTYPE_FD_WRITE) &&
        owned(env->table, load32(in + i * SUBSCRIPTION_SIZE + 16))) {
      mine = 1;
    }
  }
  if (!mine || !out || !nev) return call_original(env, g->context, args, 4);
  struct poll_state s = {0};
  s.nsubs = nsubs;
  s.subs = malloc((size_t)nsubs * SUBSCRIPTION_SIZE);
  s.foreign = malloc(nsubs * sizeof *s.foreign);
  s.pfds = malloc((nsubs + 1) * sizeof *s.pfds);
  s.pfd_sub = malloc(nsubs * sizeof *s.pfd_sub);
  s.deadline = malloc(nsubs * sizeof *s.deadline);
  s.events = malloc((size_t)nsubs * EVENT_SIZE);
  wasm_trap_t *trap = NULL;
  int32_t err = E_NOMEM;
  if (s.subs && s.foreign && s.pfds && s.pfd_sub && s.deadline && s.events) {
    memcpy(s.subs, in, (size_t)nsubs * SUBSCRIPTION_SIZE);
    err = plan_poll(env->table, &s);
    if (err == E_SUCCESS) trap = poll_loop(env, g, args, &s, &err);
    if (!trap && err == E_SUCCESS) {
      out = at(g, U32(1), (uint64_t)nsubs * EVENT_SIZE);
      memcpy(out, s.events, (size_t)s.nevents * EVENT_SIZE);
      store32(at(g, U32(3), 4), s.nevents);
    }
  }
  free(s.subs);
  free(s.foreign);
  free(s.pfds);
  free(s.pfd_sub);
  free(s.deadline);
  free(s.events);
  return trap ? trap : RESULT(err);
}

/* ---- the table of shadowed functions ---- */

#define ALWAYS 0x80 /* the handler decides for itself (poll_oneoff) */

static const struct shadow SHADOWS[] = {
    {"fd_read", h_fd_read, 1, 0},
    {"fd_write", h_fd_write, 1, 0},
    {"fd_close", h_fd_close, 1, 0},
    {"fd_fdstat_get", h_fd_fdstat_get, 1, 0},
    {"fd_fdstat_set_flags", h_fd_fdstat_set_flags, 1, 0},
    {"fd_filestat_get", h_fd_filestat_get, 1, 0},
    {"fd_renumber", h_fd_renumber, 3, 0},
    {"sock_accept", h_sock_accept, 1, 0},
    {"sock_recv", h_sock_recv, 1, 0},
    {"sock_send", h_sock_send, 1, 0},
    {"sock_shutdown", h_sock_shutdown, 1, 0},
    {"poll_oneoff", h_poll_oneoff, ALWAYS, 0},
    {"fd_prestat_get", NULL, 1, E_BADF},
    {"fd_prestat_dir_name", NULL, 1, E_BADF},
    {"fd_pread", NULL, 1, E_SPIPE},
    {"fd_pwrite", NULL, 1, E_SPIPE},
    {"fd_seek", NULL, 1, E_SPIPE},
    {"fd_tell", NULL, 1, E_SPIPE},
    {"fd_advise", NULL, 1, E_SPIPE},
    {"fd_allocate", NULL, 1, E_SPIPE},
    {"fd_datasync", NULL, 1, E_INVAL},
    {"fd_sync", NULL, 1, E_INVAL},
    {"fd_fdstat_set_rights", NULL, 1, E_NOTSUP},
    {"fd_filestat_set_size", NULL, 1, E_INVAL},
    {"fd_filestat_set_times", NULL, 1, E_INVAL},
    {"fd_readdir", NULL, 1, E_NOTDIR},
    {"path_create_directory", NULL, 1, E_NOTDIR},
    {"path_filestat_get", NULL, 1, E_NOTDIR},
    {"path_filestat_set_times", NULL, 1, E_NOTDIR},
    {"path_link", NULL, 1 | 16, E_NOTDIR},
    {"path_open", NULL, 1, E_NOTDIR},
    {"path_readlink", NULL, 1, E_NOTDIR},
    {"path_remove_directory", NULL, 1, E_NOTDIR},
    {"path_rename", NULL, 1 | 8, E_NOTDIR},
    {"path_symlink", NULL, 4, E_NOTDIR},
    {"path_unlink_file", NULL, 1, E_NOTDIR},
};
#define SHADOW_COUNT (sizeof SHADOWS / sizeof SHADOWS[0])

static const char MODULE[] = "wasi_snapshot_preview1";

static struct fn_env *original_named(struct table *t, const char *name) {
  for (struct fn_env *env = t->envs; env; env = env->next) {
    if (strcmp(env->shadow->name, name) == 0) return env;
  }
  return NULL;
}

static wasm_trap_t *error_trap(const char *what, wasmtime_error_t *error) {
  wasm_byte_vec_t message;
  wt.error_message(error, &message);
  char text[600];
  int len = snprintf(text, sizeof text, "%s: %.*s", what, (int)message.size, message.data);
  wt.byte_vec_delete(&message);
  wt.error_delete(error);
  return wt.trap_new(text, len < 0 ? 0 : (size_t)len);
}

/*
 * wasmtime's WASI functions find the guest's memory through their caller's
 * "memory" export, so they work only when wasm calls them: called from the
 * host (as a shadowing function would call them) they fail with "missing
 * required memory export". So the first time it needs them, the shim
 * instantiates the trampoline, a small wasm module (runtime/wasm/sockets.ts
 * makes it) that imports the guest's memory and re-exports it as "memory",
 * and whose exports, one per shadowed function, call wasmtime's function of
 * the same name: the shim calls those, and wasmtime sees a wasm caller whose
 * memory is the guest's.
 */
static wasm_trap_t *ensure_trampoline(struct table *t, wasmtime_caller_t *caller) {
  wasmtime_context_t *context = wt.caller_context(caller);
  wasmtime_extern_t memory;
  if (!wt.caller_export_get(caller, "memory", 6, &memory) ||
      memory.kind != WASMTIME_EXTERN_MEMORY) {
    static const char message[] = "enarx sockets: the module exports no memory named \"memory\"";
    return wt.trap_new(message, sizeof message - 1);
  }
  wasmtime_linker_t *linker = wt.linker_new(t->engine);
  wasmtime_error_t *error = wt.linker_define_wasi(linker);
  if (!error) error = wt.linker_define(linker, context, "enarx", 5, "memory", 6, &memory);
  wasmtime_instance_t instance;
  wasm_trap_t *trap = NULL;
  if (!error) error = wt.linker_instantiate(linker, context, t->trampoline, &instance, &trap);
  wt.linker_delete(linker);
  if (error) return error_trap("enarx sockets: cannot instantiate the trampoline", error);
  if (trap) return trap;
  for (struct fn_env *env = t->envs; env; env = env->next) {
    wasmtime_extern_t item;
    const char *name = env->shadow->name;
    if (!wt.instance_export_get(context, &instance, name, strlen(name), &item) ||
        item.kind != WASMTIME_EXTERN_FUNC) {
      static const char message[] = "enarx sockets: the trampoline lacks a function";
      return wt.trap_new(message, sizeof message - 1);
    }
    env->original = item.of.func;
  }
  t->trampolined = 1;
  return NULL;
}

static wasm_trap_t *dispatch(void *data, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                             size_t n) {
  struct fn_env *env = data;
  const struct shadow *s = env->shadow;
  if (!env->table->trampolined) {
    wasm_trap_t *trap = ensure_trampoline(env->table, caller);
    if (trap) return trap;
  }
  struct entry *mine = NULL;
  for (int i = 0; i < 7 && !(s->fd_args & ALWAYS); i++) {
    if (!(s->fd_args & (1 << i))) continue;
    struct entry *e = owned(env->table, (uint32_t)args[i].i32);
    if (e && e->state == ENTRY_ANCHOR) return RESULT(E_BADF);
    if (e) mine = e;
  }
  if (!mine && !(s->fd_args & ALWAYS)) {
    return call_original(env, wt.caller_context(caller), args, n);
  }
  if (!s->handler) return RESULT(s->sock_errno);
  struct guest g;
  if (guest_memory(caller, &g) != 0) return RESULT(E_FAULT);
  return s->handler(env, &g, args);
}

/**
 * Shadows the wasi_snapshot_preview1 functions of `linker` (which must
 * define WASI already) with the table's, for `context`'s store; the fds
 * that are not sockets go to wasmtime's own functions through `trampoline`
 * (compiled for `engine`; see ensure_trampoline), which must outlive the
 * store. Returns 0, or -1 with enarx_sock_error() set.
 */
int enarx_sock_install(struct table *t, wasmtime_linker_t *linker, wasmtime_context_t *context,
                       wasm_engine_t *engine, const wasmtime_module_t *trampoline) {
  if (!wt.loaded) {
    set_error("enarx_sock_init was not called%s%s", "", "");
    return -1;
  }
  t->engine = engine;
  t->trampoline = trampoline;
  wt.linker_allow_shadowing(linker, true);
  for (size_t i = 0; i < SHADOW_COUNT; i++) {
    const struct shadow *s = &SHADOWS[i];
    wasmtime_extern_t item;
    if (!wt.linker_get(linker, context, MODULE, sizeof MODULE - 1, s->name, strlen(s->name),
                       &item)) {
      set_error("wasmtime's linker does not define %s::%s", MODULE, s->name);
      return -1;
    }
    if (item.kind != WASMTIME_EXTERN_FUNC) {
      set_error("%s::%s is not a function", MODULE, s->name);
      return -1;
    }
    struct fn_env *env = calloc(1, sizeof *env);
    if (!env) {
      set_error("out of memory%s%s", "", "");
      return -1;
    }
    env->table = t;
    env->original = item.of.func;
    env->shadow = s;
    env->next = t->envs;
    t->envs = env;
    wasm_functype_t *type = wt.func_type(context, &item.of.func);
    wasmtime_error_t *error = wt.linker_define_func_unchecked(
        linker, MODULE, sizeof MODULE - 1, s->name, strlen(s->name), type, dispatch, env, NULL);
    wt.functype_delete(type);
    if (error) {
      wasm_byte_vec_t message;
      wt.error_message(error, &message);
      snprintf(last_error, sizeof last_error, "Cannot redefine %s: %.*s", s->name,
               (int)message.size, message.data);
      wt.byte_vec_delete(&message);
      wt.error_delete(error);
      return -1;
    }
  }
  return 0;
}

/* ---- start-up ---- */

/** Looks up the C API functions in the already loaded libwasmtime at `path`; 0 or -1. */
int enarx_sock_init(const char *path) {
  if (wt.loaded) return 0;
  void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!lib) lib = dlopen(path, RTLD_NOW);
  if (!lib) {
    set_error("Cannot open libwasmtime \"%s\": %s", path, dlerror());
    return -1;
  }
#define LOOK(field, symbol)                                                \
  do {                                                                     \
    *(void **)&wt.field = dlsym(lib, symbol);                              \
    if (!wt.field) {                                                       \
      set_error("libwasmtime \"%s\" has no %s", path, symbol);             \
      return -1;                                                           \
    }                                                                      \
  } while (0)
  LOOK(linker_allow_shadowing, "wasmtime_linker_allow_shadowing");
  LOOK(linker_get, "wasmtime_linker_get");
  LOOK(linker_define_func_unchecked, "wasmtime_linker_define_func_unchecked");
  LOOK(func_type, "wasmtime_func_type");
  LOOK(functype_delete, "wasm_functype_delete");
  LOOK(func_call_unchecked, "wasmtime_func_call_unchecked");
  LOOK(caller_export_get, "wasmtime_caller_export_get");
  LOOK(caller_context, "wasmtime_caller_context");
  LOOK(memory_data, "wasmtime_memory_data");
  LOOK(memory_data_size, "wasmtime_memory_data_size");
  LOOK(trap_new, "wasmtime_trap_new");
  LOOK(trap_new_code, "wasmtime_trap_new_code");
  LOOK(error_message, "wasmtime_error_message");
  LOOK(error_delete, "wasmtime_error_delete");
  LOOK(byte_vec_delete, "wasm_byte_vec_delete");
  LOOK(trap_delete, "wasm_trap_delete");
  LOOK(linker_new, "wasmtime_linker_new");
  LOOK(linker_delete, "wasmtime_linker_delete");
  LOOK(linker_define_wasi, "wasmtime_linker_define_wasi");
  LOOK(linker_define, "wasmtime_linker_define");
  LOOK(linker_instantiate, "wasmtime_linker_instantiate");
  LOOK(instance_export_get, "wasmtime_instance_export_get");
#undef LOOK
  wt.loaded = 1;
  return 0;
}

/* ---- opening host sockets (before the guest starts) ---- */

/* Failure kinds of enarx_sock_listen and enarx_sock_connect (negative results). */
enum {
  FAIL_RESOLVE = -1,   /* the name does not resolve */
  FAIL_IN_USE = -2,    /* EADDRINUSE */
  FAIL_DENIED = -3,    /* EACCES, EPERM */
  FAIL_NO_ADDR = -4,   /* EADDRNOTAVAIL: not an address of this host */
  FAIL_REFUSED = -5,   /* the peer refused, is unreachable, or did not answer in time */
  FAIL_OTHER = -6,
};

static int fail_for(int e) {
  switch (e) {
    case EADDRINUSE: return FAIL_IN_USE;
    case EACCES:
    case EPERM: return FAIL_DENIED;
    case EADDRNOTAVAIL: return FAIL_NO_ADDR;
    case ECONNREFUSED:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ETIMEDOUT: return FAIL_REFUSED;
    default: return FAIL_OTHER;
  }
}

static struct addrinfo *resolve(const char *host, uint16_t port, int passive) {
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  struct addrinfo hints = {0}, *list = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
  int rc = getaddrinfo(host, service, &hints, &list);
  if (rc != 0) {
    set_error("%s%s", gai_strerror(rc), rc == EAI_SYSTEM ? strerror(errno) : "");
    return NULL;
  }
  return list;
}

/* Copies the thread's last error into the caller's buffer (calls may run on another thread). */
static int failed(int kind, char *err, size_t err_len) {
  if (err_len > 0) snprintf(err, err_len, "%s", last_error);
  return kind;
}

/**
 * Binds and listens on `addr`:`port` (`::` is every interface, IPv4 too).
 * Returns the socket (non-blocking) and its port in *bound_port, or a
 * negative failure kind with the reason in `err`.
 */
int enarx_sock_listen(const char *addr, uint16_t port, int backlog, int *bound_port, char *err,
                      size_t err_len) {
  struct addrinfo *list = resolve(addr, port, 1);
  if (!list) return failed(FAIL_RESOLVE, err, err_len);
  int result = FAIL_OTHER, saved = 0;
  for (struct addrinfo *ai = list; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
      saved = errno;
      close(fd);
      continue;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &len);
    *bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    result = fd;
    break;
  }
  freeaddrinfo(list);
  if (result < 0) {
    set_error("%s%s", strerror(saved), "");
    return failed(fail_for(saved), err, err_len);
  }
  return result;
}

static int connect_one(struct addrinfo *ai, int timeout_ms) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) goto fail;
    struct pollfd p = {fd, POLLOUT, 0};
    int n;
    do n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0) {
      errno = ETIMEDOUT;
      goto fail;
    }
    int error = 0;
    socklen_t len = sizeof error;
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) goto fail;
    if (error != 0) {
      errno = error;
      goto fail;
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
fail:;
  int saved = errno;
  close(fd);
  errno = saved;
  return -1;
}

/**
 * Resolves `host` (the system resolver: /etc/hosts, DNS) and connects to
 * `port` at the first address that answers within `timeout_ms` each.
 * Returns the socket (non-blocking), or a negative failure kind with the
 * reason in `err`.
 */
int enarx_sock_connect(const char *host, uint16_t port, int timeout_ms, char *err,
                       size_t err_len) {
  struct addrinfo *list = resolve(host, port, 0);
  if (!list) return failed(FAIL_RESOLVE, err, err_len);
  int fd = -1, saved = 0;
  for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
    fd = connect_one(ai, timeout_ms);
    if (fd < 0) saved = errno;
  }
  freeaddrinfo(list);
  if (fd < 0) {
    set_error("%s%s", strerror(saved), "");
    return failed(fail_for(saved), err, err_len);
  }
  return fd;
}

/* ---- Unix sockets: the plaintext side of a TLS socket (runtime/wasm/tls_bridge.ts) ---- */

static int unix_address(const char *path, struct sockaddr_un *sun) {
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sun->sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sun->sun_path, path, strlen(path) + 1);
  return 0;
}

/**
 * Binds a Unix stream socket at `path` (which must not exist; its folder
 * decides who may connect) and listens. Returns the socket (non-blocking),
 * or a negative failure kind with the reason in `err`.
 */
int enarx_sock_listen_unix(const char *path, int backlog, char *err, size_t err_len) {
  struct sockaddr_un sun;
  int fd = -1;
  if (unix_address(path, &sun) == 0) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0 && listen(fd, backlog) == 0) {
    return fd;
  }
  int saved = errno;
  if (fd >= 0) close(fd);
  set_error("%s%s", strerror(saved), "");
  return failed(fail_for(saved), err, err_len);
}

/**
 * Connects a Unix stream socket to the listener at `path`. Returns the
 * socket (non-blocking), or a negative failure kind with the reason in `err`.
 */
int enarx_sock_connect_unix(const char *path, char *err, size_t err_len) {
  struct sockaddr_un sun;
  int fd = -1;
  if (unix_address(path, &sun) == 0) fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 &&
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0) {
    return fd;
  }
  int saved = errno;
  if (fd >= 0) close(fd);
  set_error("%s%s", strerror(saved), "");
  return failed(fail_for(saved), err, err_len);
}

/** Closes a socket that enarx_sock_listen or enarx_sock_connect returned and no table took. */
void enarx_sock_close(int fd) { close(fd); }
