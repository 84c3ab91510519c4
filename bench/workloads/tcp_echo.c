/*
 * tcp_echo: accepts one connection and echoes it until end of stream, for
 * bench/socket_echo_bench.ts. Under enarx the listener is the fd that
 * FD_NAMES calls "echo" (Enarx.toml or --listen echo=ADDR:PORT); built for the
 * host (gcc), it binds 127.0.0.1 on any port itself. Either way it prints
 * `listening on 127.0.0.1:PORT` to stderr when it is native (enarx prints the
 * same line for a port 0 listener).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef __wasi__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

static int listener(void) {
#ifdef __wasi__
  const char *names = getenv("FD_NAMES");
  int fd = 0;
  for (const char *p = names; p && *p; fd++) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 4 && strncmp(p, "echo", 4) == 0) return fd;
    if (!end) break;
    p = end + 1;
  }
  return -1;
#else
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) return -1;
  getsockname(fd, (struct sockaddr *)&addr, &len);
  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  return fd;
#endif
}

int main(void) {
  int l = listener();
  if (l < 0) {
    fprintf(stderr, "tcp_echo: no listener\n");
    return 1;
  }
  int conn = accept(l, NULL, NULL);
  if (conn < 0) return 1;
#ifndef __wasi__
  int one = 1;
  setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as enarx's accept does */
#endif
  static char buf[1 << 16];
  ssize_t n;
  while ((n = read(conn, buf, sizeof buf)) > 0) {
    for (ssize_t at = 0; at < n;) {
      ssize_t w = write(conn, buf + at, (size_t)(n - at));
      if (w <= 0) return 1;
      at += w;
    }
  }
  return 0;
}
