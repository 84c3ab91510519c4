/*
 * small_writes: N write(2) calls of 16 bytes to standard output, timed by
 * its own loop (CLOCK_MONOTONIC); prints "small_writes: N calls, NS ns each"
 * to stderr. bench/socket_echo_bench.ts runs it with and without a socket,
 * to measure what the socket shim's trampoline adds to a WASI call on a
 * non-socket fd. Usage: small_writes.wasm [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  static const char line[16] = "0123456789abcde\n";
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < n; i++) {
    if (write(1, line, sizeof line) != sizeof line) return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n;
  fprintf(stderr, "small_writes: %ld calls, %.0f ns each\n", n, ns);
  return 0;
}
