/*
 * Output benchmark workload: writes MIB mebibytes (default 256) to standard
 * output in 64 KiB write(2) calls, retrying short writes. It times its own
 * loop (CLOCK_MONOTONIC) and prints "write_stdout: MIB MiB in MS ms" to
 * stderr, so bench/run.sh can compare throughput without start-up.
 * Usage: write_stdout.wasm [MIB]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static unsigned char chunk[CHUNK];

int main(int argc, char **argv) {
  long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 256;
  if (mib <= 0) {
    fprintf(stderr, "write_stdout: bad size \"%s\"\n", argv[1]);
    return 64;
  }
  for (int i = 0; i < CHUNK; i++) chunk[i] = (unsigned char)('a' + i % 26);
  long chunks = mib * (1024 * 1024 / CHUNK);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long c = 0; c < chunks; c++) {
    size_t off = 0;
    while (off < CHUNK) {
      ssize_t n = write(1, chunk + off, CHUNK - off);
      if (n < 0) {
        if (errno == EINTR) continue;
        fprintf(stderr, "write_stdout: write failed: %s\n", strerror(errno));
        return 74;
      }
      off += (size_t)n;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fprintf(stderr, "write_stdout: %ld MiB in %.3f ms\n", mib,
          (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
  return 0;
}
