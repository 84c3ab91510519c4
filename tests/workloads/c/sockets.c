/*
 * sockets: a WASI command that uses the sockets Enarx.toml gives it
 * ([[files]] kind = "listen" / "connect"), found by name in FD_NAMES as Enarx
 * workloads do. One subcommand per behaviour the tests check:
 *
 *   sockets echo NAME N        blocking: accept N connections one after the
 *                              other, echo each until end of stream
 *   sockets poll-echo NAME N   non-blocking: poll() over the listener and every
 *                              open connection, echo them all at once, until N
 *                              connections have ended
 *   sockets connect NAME MSG   send MSG on the connected stream, shut down the
 *                              writing side, print what comes back
 *   sockets flood NAME         accept one connection and write to it until a
 *                              write fails; print the error
 *   sockets info NAME [PATH]   what the guest sees of the socket fd, and the fd
 *                              that opening PATH gets
 *   sockets wait NAME MS       poll() the listener and standard input for MS
 *                              milliseconds; say which was ready, or "timeout"
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

static int fd_named(const char *name) {
  const char *names = getenv("FD_NAMES");
  if (!names) return -1;
  int fd = 0;
  const char *p = names;
  for (;;) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == strlen(name) && strncmp(p, name, len) == 0) return fd;
    if (!end) return -1;
    p = end + 1;
    fd++;
  }
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int echo(int listener, int count) {
  char buf[4096];
  for (int i = 0; i < count; i++) {
    int conn = accept(listener, NULL, NULL);
    if (conn < 0) {
      fprintf(stderr, "accept: %s\n", strerror(errno));
      return 1;
    }
    ssize_t n;
    while ((n = read(conn, buf, sizeof buf)) > 0) {
      if (write_all(conn, buf, (size_t)n) != 0) break;
    }
    close(conn);
  }
  printf("served %d\n", count);
  return 0;
}

#define MAX_CONNS 512

static int poll_echo(int listener, int count) {
  struct pollfd fds[MAX_CONNS + 1];
  int nconns = 0, ended = 0, peak = 0;
  char buf[4096];
  if (fcntl(listener, F_SETFL, O_NONBLOCK) != 0) {
    fprintf(stderr, "fcntl: %s\n", strerror(errno));
    return 1;
  }
  fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
  while (ended < count) {
    if (poll(fds, (nfds_t)nconns + 1, 10000) <= 0) {
      fprintf(stderr, "poll: %s\n", strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      for (;;) {
        int conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (conn < 0) {
          if (errno != EAGAIN) fprintf(stderr, "accept: %s\n", strerror(errno));
          break;
        }
        fds[++nconns] = (struct pollfd){.fd = conn, .events = POLLIN};
        if (nconns > peak) peak = nconns;
      }
    }
    for (int i = 1; i <= nconns; i++) {
      if (!fds[i].revents) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EAGAIN) continue;
      /* A small echo fits the socket's buffer: a blocking-style write is fine here. */
      if (n > 0 && write_all(fds[i].fd, buf, (size_t)n) == 0) continue;
      close(fds[i].fd);
      fds[i--] = fds[nconns--];
      ended++;
    }
  }
  printf("served %d, at most %d at once\n", ended, peak);
  return 0;
}

static int connect_send(int fd, const char *msg) {
  if (write_all(fd, msg, strlen(msg)) != 0 || shutdown(fd, SHUT_WR) != 0) {
    fprintf(stderr, "send: %s\n", strerror(errno));
    return 1;
  }
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  if (n < 0) {
    fprintf(stderr, "recv: %s\n", strerror(errno));
    return 1;
  }
  return 0;
}

static int flood(int listener) {
  int conn = accept(listener, NULL, NULL);
  if (conn < 0) return 1;
  static char block[65536];
  memset(block, 'x', sizeof block);
  long long total = 0;
  for (;;) {
    ssize_t n = write(conn, block, sizeof block);
    if (n < 0) {
      printf("write failed after %lld bytes: %s\n", total, errno == EPIPE ? "EPIPE"
                                                         : errno == ECONNRESET ? "ECONNRESET"
                                                                               : strerror(errno));
      close(conn);
      return 0;
    }
    total += n;
  }
}

static int info(int fd, const char *path) {
  __wasi_fdstat_t st;
  __wasi_prestat_t pre;
  printf("fd %d\n", fd);
  if (__wasi_fd_fdstat_get((__wasi_fd_t)fd, &st) == 0) printf("filetype %d\n", st.fs_filetype);
  printf("prestat errno %d\n", __wasi_fd_prestat_get((__wasi_fd_t)fd, &pre));
  printf("seek errno %d\n", lseek(fd, 0, SEEK_SET) < 0 ? errno : 0);
  if (path) {
    int f = open(path, O_RDONLY);
    printf("open %s: fd %d\n", path, f);
  }
  return 0;
}

static int wait_ready(int listener, int ms) {
  struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = listener, .events = POLLIN}};
  int n = poll(fds, 2, ms);
  if (n < 0) {
    fprintf(stderr, "poll: %s\n", strerror(errno));
    return 1;
  }
  if (n == 0) printf("timeout\n");
  if (fds[0].revents & POLLIN) printf("stdin ready\n");
  if (fds[1].revents & POLLIN) printf("listener ready\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sockets echo|poll-echo|connect|flood|info NAME ...\n");
    return 2;
  }
  const char *cmd = argv[1];
  int fd = fd_named(argv[2]);
  if (fd < 0) {
    fprintf(stderr, "no fd named \"%s\" in FD_NAMES\n", argv[2]);
    return 2;
  }
  if (strcmp(cmd, "echo") == 0 && argc > 3) return echo(fd, atoi(argv[3]));
  if (strcmp(cmd, "poll-echo") == 0 && argc > 3) return poll_echo(fd, atoi(argv[3]));
  if (strcmp(cmd, "connect") == 0 && argc > 3) return connect_send(fd, argv[3]);
  if (strcmp(cmd, "flood") == 0) return flood(fd);
  if (strcmp(cmd, "wait") == 0 && argc > 3) return wait_ready(fd, atoi(argv[3]));
  if (strcmp(cmd, "info") == 0) return info(fd, argc > 3 ? argv[3] : NULL);
  fprintf(stderr, "unknown subcommand \"%s\"\n", cmd);
  return 2;
}
