/*
 * The timing loop of bench/run.sh. Unlike running one command's N runs and
 * then the next command's (as hyperfine does), it interleaves the commands
 * round by round, so that load from other processes on a shared machine falls
 * on every command alike. For each run it records wall time (CLOCK_MONOTONIC
 * around fork/exec/wait4), user and system CPU time and peak RSS (wait4's
 * rusage, which includes descendants the command waited for).
 *
 * Usage: timeit RUNS WARMUP OUT.json NAME PREPARE COMMAND [NAME PREPARE COMMAND]...
 *   PREPARE and COMMAND are run with /bin/sh -c (PREPARE "" for none); PREPARE
 *   runs before every run of its command and is not timed. The command
 *   "sh -c true" is measured too, under the name "shell", so the report can
 *   subtract what /bin/sh itself costs. Output goes to /dev/null unless
 *   COMMAND redirects it; a run that exits non-zero stops everything (exit 1).
 * OUT.json: {"results": [{"command", "times", "user", "system", "maxrss_kib"}]}
 */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  const char *name, *prepare, *command;
  double *wall, *user, *sys;
  long *maxrss;
} entry;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

/* Runs `command` with /bin/sh -c, stdin and stdout on /dev/null; returns the
 * exit status (or -1) and fills the measurements. */
static int run(const char *command, double *wall, double *user, double *sys, long *maxrss) {
  double start = now_s();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) return -1;
  *wall = now_s() - start;
  *user = tv_s(ru.ru_utime);
  *sys = tv_s(ru.ru_stime);
  *maxrss = ru.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

static void json_doubles(FILE *f, const char *key, const double *v, int n) {
  fprintf(f, ", \"%s\": [", key);
  for (int i = 0; i < n; i++) fprintf(f, "%s%.6f", i ? ", " : "", v[i]);
  fputc(']', f);
}

int main(int argc, char **argv) {
  if (argc < 7 || (argc - 4) % 3 != 0) {
    fprintf(stderr, "usage: timeit RUNS WARMUP OUT.json NAME PREPARE COMMAND...\n");
    return 64;
  }
  int runs = atoi(argv[1]), warmup = atoi(argv[2]);
  const char *out = argv[3];
  int n = (argc - 4) / 3 + 1;
  entry *e = calloc(n, sizeof *e);
  e[0].name = "shell", e[0].prepare = "", e[0].command = "true";
  for (int i = 1; i < n; i++) {
    e[i].name = argv[4 + 3 * (i - 1)];
    e[i].prepare = argv[5 + 3 * (i - 1)];
    e[i].command = argv[6 + 3 * (i - 1)];
  }
  for (int i = 0; i < n; i++) {
    e[i].wall = calloc(runs, sizeof(double));
    e[i].user = calloc(runs, sizeof(double));
    e[i].sys = calloc(runs, sizeof(double));
    e[i].maxrss = calloc(runs, sizeof(long));
  }
  for (int round = -warmup; round < runs; round++) {
    for (int i = 0; i < n; i++) {
      double w, u, s;
      long m;
      if (e[i].prepare[0] && run(e[i].prepare, &w, &u, &s, &m) != 0) {
        fprintf(stderr, "timeit: prepare of %s failed: %s\n", e[i].name, e[i].prepare);
        return 1;
      }
      int status = run(e[i].command, &w, &u, &s, &m);
      if (status != 0) {
        fprintf(stderr, "timeit: %s exited %d: %s\n", e[i].name, status, e[i].command);
        return 1;
      }
      if (round >= 0) {
        e[i].wall[round] = w, e[i].user[round] = u, e[i].sys[round] = s, e[i].maxrss[round] = m;
      }
    }
    if (round < 0) fprintf(stderr, "\rtimeit: warm-up round %d/%d", round + warmup + 1, warmup);
    else fprintf(stderr, "\rtimeit: round %d/%d       ", round + 1, runs);
  }
  fputc('\n', stderr);
  FILE *f = fopen(out, "w");
  if (!f) {
    perror(out);
    return 1;
  }
  fprintf(f, "{\"runs\": %d, \"results\": [\n", runs);
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s  {\"command\": ", i ? ",\n" : "");
    json_string(f, e[i].name);
    fprintf(f, ", \"shell\": ");
    json_string(f, e[i].command);
    json_doubles(f, "times", e[i].wall, runs);
    json_doubles(f, "user", e[i].user, runs);
    json_doubles(f, "system", e[i].sys, runs);
    fprintf(f, ", \"maxrss_kib\": [");
    for (int r = 0; r < runs; r++) fprintf(f, "%s%ld", r ? ", " : "", e[i].maxrss[r]);
    fprintf(f, "]}");
  }
  fprintf(f, "\n]}\n");
  return fclose(f) == 0 ? 0 : 1;
}
