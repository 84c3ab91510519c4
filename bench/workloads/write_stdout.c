/*
 * Output benchmark workload: writes MIB mebibytes (default 256) to standard
 * output in 64 KiB write(2) calls, retrying short writes.
 * Usage: write_stdout.wasm [MIB]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  return 0;
}
