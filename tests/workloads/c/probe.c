/*
 * probe: one WASI command with a subcommand per behaviour that the tests of
 * `enarx run` check. Usage: probe SUBCOMMAND [ARGS...]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

extern char **environ;

static int copy_stream(FILE *in, FILE *out) {
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
    if (fwrite(buf, 1, n, out) != n) return 1;
  }
  return ferror(in) ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "";
  if (strcmp(cmd, "args") == 0) {
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    return 0;
  }
  if (strcmp(cmd, "env") == 0) {
    for (char **e = environ; *e; e++) printf("%s\n", *e);
    return 0;
  }
  if (strcmp(cmd, "echo") == 0) return copy_stream(stdin, stdout);
  if (strcmp(cmd, "streams") == 0) {
    fputs("to stdout\n", stdout);
    fflush(stdout);
    fputs("to stderr\n", stderr);
    return 0;
  }
  if (strcmp(cmd, "read") == 0 && argc > 2) {
    FILE *f = fopen(argv[2], "r");
    if (!f) {
      fprintf(stderr, "cannot open %s: %s\n", argv[2], strerror(errno));
      return 2;
    }
    int rc = copy_stream(f, stdout);
    fclose(f);
    return rc;
  }
  if (strcmp(cmd, "write") == 0 && argc > 3) {
    FILE *f = fopen(argv[2], "w");
    if (!f) {
      fprintf(stderr, "cannot create %s: %s\n", argv[2], strerror(errno));
      return 2;
    }
    fputs(argv[3], f);
    return fclose(f) == 0 ? 0 : 2;
  }
  if (strcmp(cmd, "exit") == 0 && argc > 2) exit(atoi(argv[2]));
  if (strcmp(cmd, "proc_exit") == 0 && argc > 2) __wasi_proc_exit(atoi(argv[2]));
  if (strcmp(cmd, "trap") == 0) __builtin_trap();
  if (strcmp(cmd, "loop") == 0) {
    volatile unsigned long n = 0;
    for (;;) n++;
  }
  if (strcmp(cmd, "spin") == 0 && argc > 2) {
    volatile unsigned long n = 0;
    unsigned long limit = strtoul(argv[2], NULL, 10);
    for (unsigned long i = 0; i < limit; i++) n += i;
    printf("spun %lu\n", limit);
    return 0;
  }
  if (strcmp(cmd, "hog") == 0) {
    /* Allocates and touches 1 MiB blocks until malloc fails. */
    /* The blocks are chained from a volatile head, so that the compiler
       cannot prove them unused and elide the allocations. */
    static void *volatile head;
    unsigned long mib = 0;
    for (;;) {
      char *p = malloc(1 << 20);
      if (!p) break;
      memset(p, 1, 1 << 20);
      *(void **)p = head;
      head = p;
      mib++;
    }
    fprintf(stderr, "out of memory after %lu MiB\n", mib);
    return 1;
  }
  if (strcmp(cmd, "stdout-bytes") == 0 && argc > 2) {
    /* Writes N bytes of a repeating pattern to stdout in 64 KiB writes. */
    static char buf[65536];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)('a' + i % 26);
    unsigned long long left = strtoull(argv[2], NULL, 10);
    while (left > 0) {
      size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
      if (fwrite(buf, 1, n, stdout) != n) return 1;
      left -= n;
    }
    return 0;
  }
  fprintf(stderr, "usage: probe args|env|echo|streams|read F|write F T|exit N|proc_exit N|"
                  "trap|loop|spin N|hog|stdout-bytes N\n");
  return 64;
}
