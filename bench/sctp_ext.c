/* sctp_ext.c: bench/esock_sctp's peers that are other programs, run as
 * child processes in the same run (and the same test VM):
 *
 *   gen_sctp: Erlang/OTP's gen_sctp, bench/peers/erlang/sctppeer.erl, one
 *             erl started once and given one workload at a time over a pipe
 *             (an erl takes seconds to boot under software emulation).
 *   iperf3:   iperf3 --sctp, the bulk peer: one association streaming
 *             SIZE-byte messages for the run's time, an iperf3 server and
 *             client started for each run; its figure is what the server
 *             received (iperf3 counts bytes; it does not check messages).
 *
 * A child that does not answer in time is killed, and what it was doing is
 * a failure, never a hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sctp_bench.h"

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
        usleep(20000);
    }
}

/* Spawn argv with stdin from /dev/null and stdout into a pipe whose read
 * end goes to *out (or to /dev/null when out is NULL); 0 or -errno. */
static int spawn(char *const argv[], pid_t *pid, int *out)
{
    int p[2] = {-1, -1};
    if (out && pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out)
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (out) {
        close(p[1]);
        if (rc != 0)
            close(p[0]);
        else
            *out = p[0];
    }
    return -rc;
}

/* ============================== gen_sctp =============================== */

static pid_t gs_pid = -1;
static int gs_to = -1, gs_from = -1; /* its stdin, its stdout */
static char gs_buf[16384];
static size_t gs_len;

static void gs_kill(void)
{
    if (gs_pid < 0)
        return;
    close(gs_to);
    close(gs_from);
    kill(gs_pid, SIGKILL);
    waitpid(gs_pid, NULL, 0);
    gs_pid = -1;
    gs_to = gs_from = -1;
}

/* One line of the peer's stdout into `line` (no newline): 0, -ETIMEDOUT
 * after `secs`, -EPIPE when it closed its stdout. */
static int gs_line(char *line, size_t cap, double secs)
{
    double end = now_s() + secs;
    for (;;) {
        char *nl = memchr(gs_buf, '\n', gs_len);
        if (nl != NULL || gs_len == sizeof gs_buf) {
            size_t n = nl ? (size_t)(nl - gs_buf) : gs_len;
            size_t take = n < cap - 1 ? n : cap - 1;
            memcpy(line, gs_buf, take);
            line[take] = '\0';
            size_t used = nl ? n + 1 : n;
            memmove(gs_buf, gs_buf + used, gs_len - used);
            gs_len -= used;
            return 0;
        }
        double left = end - now_s();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = gs_from, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc <= 0)
            continue;
        ssize_t got = read(gs_from, gs_buf + gs_len, sizeof gs_buf - gs_len);
        if (got == 0)
            return -EPIPE;
        if (got < 0 && errno != EINTR)
            return -errno;
        if (got > 0)
            gs_len += (size_t)got;
    }
}

/* Send one command; parse its answer into r. */
static struct result gs_cmd(const char *cmd, double secs)
{
    struct result r = {0};
    if (gs_pid < 0) {
        snprintf(r.why, sizeof r.why, "the gen_sctp peer is not running");
        return r;
    }
    size_t len = strlen(cmd);
    if (write(gs_to, cmd, len) != (ssize_t)len) {
        snprintf(r.why, sizeof r.why, "cannot write to the gen_sctp peer: %s", strerror(errno));
        gs_kill();
        return r;
    }
    char line[4096];
    for (;;) {
        int rc = gs_line(line, sizeof line, secs);
        if (rc < 0) {
            snprintf(r.why, sizeof r.why, "the gen_sctp peer %s (killed)",
                     rc == -ETIMEDOUT ? "did not answer in time" : "ended");
            fprintf(stderr, "esock_sctp: gen_sctp: %s, after '%.*s'\n", r.why, (int)len - 1, cmd);
            gs_kill();
            return r;
        }
        unsigned long long msgs, bytes;
        double s, p50, p99;
        if (sscanf(line, "ok %llu %llu %lf %lf %lf", &msgs, &bytes, &s, &p50, &p99) == 5) {
            r.ok = true;
            r.msgs = msgs;
            r.bytes = bytes;
            r.secs = s;
            r.rate = s > 0 ? (double)msgs / s : 0;
            r.mbs = s > 0 ? (double)bytes / s / 1e6 : 0;
            r.p50_us = p50;
            r.p99_us = p99;
            return r;
        }
        if (strncmp(line, "fail ", 5) == 0) {
            snprintf(r.why, sizeof r.why, "%.190s", line + 5);
            fprintf(stderr, "esock_sctp: gen_sctp: %s\n", line + 5);
            kernel_diag("gen_sctp");
            return r;
        }
        /* anything else is the Erlang runtime's own reporting */
        fprintf(stderr, "sctppeer: %s\n", line);
    }
}

int gs_start(const char *beam_dir)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(from, O_CLOEXEC) < 0) {
        int e = -errno;
        close(to[0]), close(to[1]);
        return e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    char *argv[] = {"erl",  "-noshell", "-pa",  (char *)beam_dir, "-run", "sctppeer",
                    "main", "-s",       "init", "stop",           NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "erl", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    if (rc != 0) {
        close(to[1]), close(from[0]);
        return -rc;
    }
    gs_pid = pid;
    gs_to = to[1];
    gs_from = from[0];
    gs_len = 0;
    /* an erl boots in seconds under emulation; make sure it answers */
    struct result r = gs_cmd("ping\n", 120);
    if (!r.ok) {
        fprintf(stderr, "esock_sctp: gen_sctp: erl -pa %s: %s\n", beam_dir, r.why);
        gs_kill();
        return -ECHILD;
    }
    return 0;
}

void gs_stop(void)
{
    if (gs_pid < 0)
        return;
    if (write(gs_to, "quit\n", 5) < 0) {
        /* it is gone already: reap below */
    }
    close(gs_to);
    close(gs_from);
    reap(gs_pid, 20);
    gs_pid = -1;
}

/* Give each workload its duration and about two minutes for its set-up,
 * its drain and its own time-outs (which answer "fail" well before). */
struct result gs_stream(int n, size_t size, double dur)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "stream %d %zu %.3f\n", n, size, dur);
    return gs_cmd(cmd, dur + 180);
}

struct result gs_setup(double dur)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "setup %.3f\n", dur);
    return gs_cmd(cmd, dur + 120);
}

struct result gs_rr(double dur)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rr 64 %.3f\n", dur);
    return gs_cmd(cmd, dur + 120);
}

/* =============================== iperf3 ================================ */

/* All of fd until its end, into buf (NUL-terminated); -ETIMEDOUT after
 * `secs`. */
static int read_all(int fd, char *buf, size_t cap, double secs)
{
    double end = now_s() + secs;
    size_t len = 0;
    for (;;) {
        double left = end - now_s();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc <= 0)
            continue;
        char scratch[4096];
        char *to = len < cap - 1 ? buf + len : scratch;
        size_t room = len < cap - 1 ? cap - 1 - len : sizeof scratch;
        ssize_t got = read(fd, to, room);
        if (got == 0)
            break;
        if (got < 0 && errno != EINTR)
            return -errno;
        if (got > 0 && to != scratch)
            len += (size_t)got;
    }
    buf[len] = '\0';
    return 0;
}

/* The number after "key": inside the object that follows "section". */
static bool json_num(const char *json, const char *section, const char *key, double *v)
{
    const char *s = strstr(json, section);
    if (s == NULL)
        return false;
    const char *end = strchr(s, '}');
    const char *k = strstr(s, key);
    if (k == NULL || (end && k > end))
        return false;
    k = strchr(k + strlen(key), ':');
    return k && sscanf(k + 1, "%lf", v) == 1;
}

struct result ip_stream(size_t size, double dur)
{
    struct result r = {0};
    static char out[1 << 20];
    char port[16], len[32], secs[16];
    snprintf(port, sizeof port, "%d", 5201 + (int)(getpid() % 4000));
    snprintf(len, sizeof len, "%zu", size);
    snprintf(secs, sizeof secs, "%d", dur < 1.5 ? 1 : (int)(dur + 0.5)); /* whole seconds */
    char *server[] = {"iperf3", "--server", "--one-off", "--port", port, NULL};
    char *client[] = {"iperf3",   "--client", "127.0.0.1",  "--port",   port,
                      "--sctp",   "--time",   secs,         "--length", len,
                      "--window", "1M",       "--no-delay", "--json",   NULL};
    pid_t sp, cp;
    int rc = spawn(server, &sp, NULL);
    if (rc < 0) {
        snprintf(r.why, sizeof r.why, "cannot run iperf3: %s", strerror(-rc));
        return r;
    }
    /* the server needs a moment to listen: try the client until it connects */
    int status = 0;
    bool done = false;
    for (double give_up = now_s() + 30; !done && now_s() < give_up;) {
        int fd = -1;
        rc = spawn(client, &cp, &fd);
        if (rc < 0) {
            snprintf(r.why, sizeof r.why, "cannot run iperf3: %s", strerror(-rc));
            break;
        }
        rc = read_all(fd, out, sizeof out, atof(secs) + 60);
        close(fd);
        if (rc < 0)
            kill(cp, SIGKILL);
        waitpid(cp, &status, 0);
        if (rc < 0) {
            snprintf(r.why, sizeof r.why, "iperf3 --client did not end in time (killed)");
            break;
        }
        /* (iperf3 --json may exit 0 even then) */
        bool refused = strstr(out, "unable to connect") != NULL;
        if (!refused && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            done = true;
            break;
        }
        if (!refused) {
            const char *e = strstr(out, "\"error\"");
            snprintf(r.why, sizeof r.why, "iperf3 --client failed: %.150s", e ? e : "(no error)");
            break;
        }
        usleep(100000);
    }
    reap(sp, 10);
    if (!done && !r.why[0])
        snprintf(r.why, sizeof r.why, "iperf3 --client could not reach its server in 30 s");
    if (r.why[0]) {
        fprintf(stderr, "esock_sctp: iperf3: %s\n", r.why);
        return r;
    }
    double bytes, s;
    if (!json_num(out, "\"sum_received\"", "\"bytes\"", &bytes) ||
        !json_num(out, "\"sum_received\"", "\"seconds\"", &s) || s <= 0) {
        snprintf(r.why, sizeof r.why, "no end.sum_received in iperf3's JSON");
        fprintf(stderr, "esock_sctp: iperf3: %s; it said: %.400s\n", r.why, out);
        return r;
    }
    r.ok = true;
    r.bytes = (uint64_t)bytes;
    r.msgs = r.bytes / size;
    r.secs = s;
    r.rate = (double)r.msgs / s;
    r.mbs = bytes / s / 1e6;
    return r;
}
