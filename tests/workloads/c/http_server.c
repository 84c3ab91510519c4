/*
 * http_server: a small HTTP/1.1 server for the listen socket Enarx.toml gives
 * a workload. One thread, non-blocking sockets, one poll() (poll_oneoff under
 * WASI) over the listener and every connection: many concurrent keep-alive
 * clients, pipelined requests, and clients that leave mid-request or send
 * garbage (they get an error status or are dropped; the others go on).
 *
 *   http_server LISTENER [N]
 *
 * LISTENER is the socket's name in FD_NAMES (WASI) or a TCP port on 127.0.0.1
 * (a native build, gcc on Linux; 0: any free port, printed to stderr as
 * "listening on 127.0.0.1:PORT"). With N, the server exits after N
 * connections have ended and prints what it served; without, it runs until
 * killed.
 *
 *   GET /            200, "hello from the keep\n"
 *   GET /echo?TEXT   200, TEXT as it came (no decoding)
 *   HEAD             the same without the body
 *   other paths      404; other methods 405; bodies (Content-Length) are read
 *                    and ignored; Transfer-Encoding 501; a malformed request
 *                    400, headers over 8 KiB 431 (both then close)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef __wasi__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#endif

#define MAX_CONNS 1024
#define IN_CAP 8192
#define OUT_CAP (IN_CAP + 1024)
#define HELLO "hello from the keep\n"

struct conn {
  int fd;
  size_t in_len, out_len, out_off;
  int closing; /* close once the output is flushed */
  char in[IN_CAP];
  char out[OUT_CAP];
};

static struct conn *conns[MAX_CONNS];
static int nconns;
static long requests, ended, bad, peak;

#ifdef __wasi__
static int open_listener(const char *name) {
  const char *names = getenv("FD_NAMES");
  size_t want = strlen(name);
  int fd = 0;
  for (const char *p = names; p; fd++) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == want && strncmp(p, name, len) == 0) return fd;
    p = end ? end + 1 : NULL;
  }
  fprintf(stderr, "http_server: no socket named \"%s\" in FD_NAMES\n", name);
  return -1;
}
#else
static int open_listener(const char *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
  socklen_t len = sizeof addr;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  signal(SIGPIPE, SIG_IGN);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1024) != 0) {
    fprintf(stderr, "http_server: port %s: %s\n", port, strerror(errno));
    return -1;
  }
  getsockname(fd, (struct sockaddr *)&addr, &len);
  fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  return fd;
}
#endif

static const char *find(const char *hay, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(hay + i, needle, n) == 0) return hay + i;
  return NULL;
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 501: return "Not Implemented";
  default: return "HTTP Version Not Supported";
  }
}

/* Appends a response to c->out (there is room: see OUT_CAP); body may be NULL. */
static void respond(struct conn *c, int status, const char *body, size_t len, int head,
                    int keep_alive_10) {
  if (status >= 400 && status != 404 && status != 405) c->closing = 1;
  if (status >= 400) bad++;
  if (!body) {
    body = reason(status);
    len = strlen(body);
  }
  int n = snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                   status, reason(status), len, c->closing ? "Connection: close\r\n" : "",
                   keep_alive_10 && !c->closing ? "Connection: keep-alive\r\n" : "",
                   status == 405 ? "Allow: GET, HEAD\r\n" : "");
  c->out_len += (size_t)n;
  if (!head) {
    memcpy(c->out + c->out_len, body, len);
    c->out_len += len;
  }
}

struct request {
  const char *method, *target;
  size_t method_len, target_len, header_len;
  long content_length;
  int http10, conn_close, keep_alive, chunked;
};

static int header_is(const char *line, size_t len, const char *name) {
  size_t n = strlen(name);
  return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static int contains_token(const char *v, size_t len, const char *token) {
  size_t n = strlen(token);
  for (size_t i = 0; i + n <= len; i++)
    if (strncasecmp(v + i, token, n) == 0) return 1;
  return 0;
}

/* Parses the header block c->in[0 .. end); returns 0 or an error status. */
static int parse(const char *buf, const char *end, struct request *r) {
  const char *eol = find(buf, (size_t)(end - buf) + 2, "\r\n");
  const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  memset(r, 0, sizeof *r);
  r->header_len = (size_t)(end - buf) + 4;
  if (!sp2 || sp1 == buf || sp2 == sp1 + 1 || sp1[1] != '/') return 400;
  if (eol - sp2 - 1 != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
    return strncmp(sp2 + 1, "HTTP/", 5) == 0 ? 505 : 400;
  }
  if (sp2[8] != '0' && sp2[8] != '1') return 505;
  r->method = buf, r->method_len = (size_t)(sp1 - buf);
  r->target = sp1 + 1, r->target_len = (size_t)(sp2 - sp1 - 1);
  r->http10 = sp2[8] == '0';
  for (const char *line = eol + 2; line < end; line = eol + 2) {
    eol = find(line, (size_t)(end - line) + 2, "\r\n");
    size_t len = (size_t)(eol - line);
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line) return 400;
    const char *v = colon + 1;
    size_t vlen = (size_t)(eol - v);
    if (header_is(line, len, "connection")) {
      r->conn_close |= contains_token(v, vlen, "close");
      r->keep_alive |= contains_token(v, vlen, "keep-alive");
    } else if (header_is(line, len, "transfer-encoding")) {
      r->chunked = 1;
    } else if (header_is(line, len, "content-length")) {
      char *stop;
      while (vlen && *v == ' ') v++, vlen--;
      r->content_length = strtol(v, &stop, 10);
      if (stop == v || r->content_length < 0 || (stop < eol && *stop != ' ')) return 400;
    }
  }
  return 0;
}

static void route(struct conn *c, const struct request *r) {
  int head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
  int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
  int ka10 = r->http10 && r->keep_alive;
  if (r->conn_close || (r->http10 && !r->keep_alive)) c->closing = 1;
  requests++;
  if (!get && !head) {
    respond(c, 405, NULL, 0, 0, ka10);
  } else if (r->target_len == 1) {
    respond(c, 200, HELLO, strlen(HELLO), head, ka10);
  } else if (r->target_len >= 5 && memcmp(r->target, "/echo", 5) == 0 &&
             (r->target_len == 5 || r->target[5] == '?')) {
    size_t skip = r->target_len == 5 ? 5 : 6;
    respond(c, 200, r->target + skip, r->target_len - skip, head, ka10);
  } else {
    respond(c, 404, NULL, 0, head, ka10);
  }
}

/* Answers every complete request in c->in while the answers fit in c->out. */
static void serve(struct conn *c) {
  while (!c->closing && OUT_CAP - c->out_len >= OUT_CAP - IN_CAP + c->in_len) {
    const char *end = find(c->in, c->in_len, "\r\n\r\n");
    struct request r;
    if (!end) {
      if (c->in_len == IN_CAP) respond(c, 431, NULL, 0, 0, 0);
      return;
    }
    int status = parse(c->in, end, &r);
    if (status == 0 && r.chunked) status = 501;
    if (status == 0 && r.content_length > (long)(IN_CAP - r.header_len)) status = 413;
    if (status != 0) {
      respond(c, status, NULL, 0, 0, 0);
      return;
    }
    size_t total = r.header_len + (size_t)r.content_length;
    if (c->in_len < total) return; /* the body is still coming */
    route(c, &r);
    memmove(c->in, c->in + total, c->in_len - total);
    c->in_len -= total;
  }
}

static void drop(int i) {
  close(conns[i]->fd);
  free(conns[i]);
  conns[i] = conns[--nconns];
  ended++;
}

/* Writes what is pending; returns -1 when the connection is to be dropped. */
static int flush(struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    c->out_off += (size_t)n;
  }
  c->out_len = c->out_off = 0;
  return c->closing ? -1 : 0;
}

/* Reads what the peer sent and answers it; returns -1 to drop the connection. */
static int readable(struct conn *c) {
  ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
  if (n == 0) return -1; /* the peer left, perhaps mid-request */
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  c->in_len += (size_t)n;
  serve(c);
  return flush(c);
}

/* Sends what is pending, then answers requests that waited for room; -1 to drop. */
static int writable(struct conn *c) {
  if (flush(c) < 0) return -1;
  if (c->out_len > 0 || c->in_len == 0) return 0;
  serve(c);
  return flush(c);
}

static void accept_all(int listener) {
  while (nconns < MAX_CONNS) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) return;
    struct conn *c = malloc(sizeof *c);
    if (!c || fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
      close(fd);
      free(c);
      return;
    }
#ifndef __wasi__
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
#endif
    c->fd = fd;
    c->in_len = c->out_len = c->out_off = 0;
    c->closing = 0;
    conns[nconns++] = c;
    if (nconns > peak) peak = nconns;
  }
}

int main(int argc, char **argv) {
  static struct pollfd fds[MAX_CONNS + 1];
  if (argc < 2) {
    fprintf(stderr, "usage: http_server LISTENER [N]\n");
    return 64;
  }
  long limit = argc > 2 ? atol(argv[2]) : 0;
  int listener = open_listener(argv[1]);
  if (listener < 0 || fcntl(listener, F_SETFL, O_NONBLOCK) != 0) return 69;
  while (limit == 0 || ended < limit) {
    int n = 0;
    fds[n++] = (struct pollfd){.fd = listener, .events = nconns < MAX_CONNS ? POLLIN : 0};
    for (int i = 0; i < nconns; i++) {
      short ev = conns[i]->out_len > conns[i]->out_off ? POLLOUT : POLLIN;
      fds[n++] = (struct pollfd){.fd = conns[i]->fd, .events = ev};
    }
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "http_server: poll: %s\n", strerror(errno));
      return 70;
    }
    /* Backwards, so that drop() (which moves the last connection to i) skips none. */
    for (int i = n - 2; i >= 0; i--) {
      short re = fds[i + 1].revents;
      if (!re) continue;
      struct conn *c = conns[i];
      int keep = (re & POLLOUT) ? writable(c) : (re & (POLLIN | POLLHUP | POLLERR)) ? readable(c) : 0;
      if (keep < 0) drop(i);
    }
    if (fds[0].revents & POLLIN) accept_all(listener);
  }
  printf("served %ld requests on %ld connections, at most %ld at once, %ld refused\n", requests,
         ended, peak, bad);
  return 0;
}
