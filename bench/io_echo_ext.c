/* io_echo_ext.c: bench/io_echo's echo servers that are other programs, run
 * as child processes, one per measurement, like io_echo's own servers:
 *
 *   Go:     bench/peers/go/echopeer (net.Conn, a goroutine per connection);
 *   Erlang: bench/peers/erlang/echopeer.erl (gen_tcp, a process per
 *           connection).
 *
 * The driver (io_echo.c) says how to start them; this file talks to them
 * over their stdin and stdout, one line at a time. A child that does not
 * answer in time is killed, and its measurement is a failure, never a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io_echo.h"

extern char **environ;

/* Wait up to `secs` for `pid` to end; kill it if it does not. */
static void reap(pid_t pid, double secs)
{
    double end = now_s() + secs;
    while (waitpid(pid, NULL, WNOHANG) == 0) {
        if (now_s() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return;
        }
        usleep(5000);
    }
}

static void ext_kill(struct ext_peer *p)
{
    if (p->pid < 0)
        return;
    close(p->to);
    close(p->from);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = -1;
    p->to = p->from = -1;
}

/* One line of the peer's stdout into `line` (no newline): 0, -ETIMEDOUT
 * after `secs`, -EPIPE when it closed its stdout. */
static int ext_line(struct ext_peer *p, char *line, size_t cap, double secs)
{
    double end = now_s() + secs;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl != NULL || p->len == sizeof p->buf) {
            size_t n = nl ? (size_t)(nl - p->buf) : p->len;
            size_t take = n < cap - 1 ? n : cap - 1;
            memcpy(line, p->buf, take);
            line[take] = '\0';
            size_t used = nl ? n + 1 : n;
            memmove(p->buf, p->buf + used, p->len - used);
            p->len -= used;
            return 0;
        }
        double left = end - now_s();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = p->from, .events = POLLIN};
        int rc = poll(&pf, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc <= 0)
            continue;
        ssize_t got = read(p->from, p->buf + p->len, sizeof p->buf - p->len);
        if (got == 0)
            return -EPIPE;
        if (got < 0 && errno != EINTR)
            return -errno;
        if (got > 0)
            p->len += (size_t)got;
    }
}

/* The next line that is the peer's answer ("port ...", "ok ...", "fail
 * ..."); anything else (an Erlang runtime's report) goes to stderr. */
static int ext_answer(struct ext_peer *p, char *line, size_t cap, double secs)
{
    for (;;) {
        int rc = ext_line(p, line, cap, secs);
        if (rc < 0)
            return rc;
        if (strncmp(line, "port ", 5) == 0 || strncmp(line, "ok ", 3) == 0 ||
            strncmp(line, "fail ", 5) == 0)
            return 0;
        fprintf(stderr, "io_echo: peer %d said: %s\n", (int)p->pid, line);
    }
}

int ext_start(struct ext_peer *p, char *const argv[], char *const env[], uint16_t *port,
              char *hello, char *why, size_t cap)
{
    p->pid = -1;
    p->len = 0;
    /* the environment: ours, then env's entries (a later entry wins) */
    size_t ne = 0, nx = 0;
    while (environ[ne])
        ne++;
    while (env && env[nx])
        nx++;
    char **envp = calloc(ne + nx + 1, sizeof *envp);
    if (envp == NULL) {
        snprintf(why, cap, "out of memory");
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        bool shadowed = false;
        for (size_t j = 0; j < nx && !shadowed; j++) {
            size_t n = strcspn(env[j], "=") + 1;
            shadowed = strncmp(environ[i], env[j], n) == 0;
        }
        if (!shadowed)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < nx; j++)
        envp[k++] = env[j];
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) < 0) {
        int e = -errno;
        free(envp);
        snprintf(why, cap, "pipe: %s", strerror(-e));
        return e;
    }
    if (pipe2(from, O_CLOEXEC) < 0) {
        int e = -errno;
        close(to[0]), close(to[1]);
        free(envp);
        snprintf(why, cap, "pipe: %s", strerror(-e));
        return e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(to[0]);
    close(from[1]);
    if (rc != 0) {
        close(to[1]), close(from[0]);
        snprintf(why, cap, "cannot run %s: %s", argv[0], strerror(rc));
        return -rc;
    }
    p->pid = pid;
    p->to = to[1];
    p->from = from[0];
    if (clock_getcpuclockid(pid, &p->cpu) != 0)
        p->cpu = (clockid_t)-1;
    char line[512];
    rc = ext_answer(p, line, sizeof line, 30);
    unsigned port_no;
    int used = 0;
    if (rc == 0 && sscanf(line, "port %u%n", &port_no, &used) == 1 && port_no > 0 &&
        port_no < 65536) {
        *port = (uint16_t)port_no;
        snprintf(hello, cap, "%s", line + used + (line[used] == ' '));
        return 0;
    }
    if (rc < 0)
        snprintf(why, cap, "%s %s", argv[0],
                 rc == -ETIMEDOUT ? "did not say its port within 30 s (killed)"
                                  : "ended before it said its port");
    else
        snprintf(why, cap, "%s: %s", argv[0], line);
    ext_kill(p);
    return rc < 0 ? rc : -EPROTO;
}

double ext_cpu(const struct ext_peer *p)
{
    struct timespec ts;
    if (p->pid < 0 || p->cpu == (clockid_t)-1 || clock_gettime(p->cpu, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double ext_user(const struct ext_peer *p)
{
    char path[64], buf[1024];
    if (p->pid < 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)p->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "(comm)", which may hold spaces: state is field 3, utime 14 */
    const char *s = strrchr(buf, ')');
    unsigned long long utime;
    if (s == NULL ||
        sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu", &utime) != 1)
        return 0;
    return (double)utime / (double)sysconf(_SC_CLK_TCK);
}

int ext_stop(struct ext_peer *p, struct srv_counts *c, char *why, size_t cap)
{
    *c = (struct srv_counts){0};
    if (p->pid < 0) {
        snprintf(why, cap, "the peer is not running");
        return -ESRCH;
    }
    if (write(p->to, "stop\n", 5) != 5) {
        snprintf(why, cap, "cannot write to the peer: %s", strerror(errno));
        ext_kill(p);
        return -EPIPE;
    }
    char line[512];
    int rc = ext_answer(p, line, sizeof line, 15); /* it waits up to 5 s itself */
    if (rc < 0) {
        snprintf(why, cap, "the peer %s (killed)",
                 rc == -ETIMEDOUT ? "did not answer \"stop\" within 15 s" : "ended");
        ext_kill(p);
        return rc;
    }
    close(p->to);
    close(p->from);
    reap(p->pid, 10);
    p->pid = -1;
    if (sscanf(line, "ok %lld %lld %lld", &c->conns, &c->read, &c->echoed) == 3)
        return 0;
    snprintf(why, cap, "%s", strncmp(line, "fail ", 5) == 0 ? line + 5 : line);
    return -EPROTO;
}
