/* tcp_ext.c: bench/esock_tcp's peers that are other programs, started for
 * each measurement and checking their own results like the others:
 *
 *   Go:     bench/peers/go/tcppeer, goroutines and net.Conn, one Write per
 *           message, a bufio.Reader of 256 KiB and io.ReadFull per message;
 *   Erlang: bench/peers/erlang/tcppeer.erl, gen_tcp, a process per socket,
 *           {packet, 4} (raw for bulk), receivers in {active, N}, a passive
 *           rr client, a 256 KiB user-level buffer; one erl each time, with
 *           its default schedulers.
 *
 * A peer that does not answer in time is killed, and its measurement is a
 * failure, never a hang.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tcp_bench.h"

extern char **environ;

/* Run a peer program (argv[0], looked up in PATH) for one point and wait
 * for its end, at most dur + 180 s (then it is killed): it prints "ok MSGS
 * BYTES SECS P50_US P99_US" or "fail WHY" (other lines, an Erlang
 * runtime's reports, are passed over). */
static struct result ext_run(const char *peer, char *const argv[], const char *cas, int n,
                             size_t size, bool framed, double dur)
{
    struct result r = {0};
    int pfd[2];
    if (pipe(pfd) < 0)
        die("pipe", -errno);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        fprintf(stderr, "esock_tcp: %s: %s\n", argv[0], strerror(rc));
        return r;
    }
    char out[4096] = {0};
    size_t have = 0;
    bool late = false;
    for (double end = now_s() + dur + 180;;) {
        double left = end - now_s();
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || (poll(&pf, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)) {
            late = true;
            kill(pid, SIGKILL);
            break;
        }
        char scratch[4096];
        char *to = have < sizeof out - 1 ? out + have : scratch;
        ssize_t k =
            read(pfd[0], to, have < sizeof out - 1 ? sizeof out - 1 - have : sizeof scratch);
        if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
            break;
        if (k > 0 && to != scratch)
            have += (size_t)k;
    }
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    const char *line = out;
    while (strncmp(line, "ok ", 3) != 0 && strncmp(line, "fail ", 5) != 0 && strchr(line, '\n'))
        line = strchr(line, '\n') + 1;
    unsigned long long msgs, bytes;
    if (!late && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
        sscanf(line, "ok %llu %llu %lf %lf %lf", &msgs, &bytes, &r.secs, &r.p50_us, &r.p99_us) ==
            5 &&
        r.secs > 0) {
        r.ok = true;
        r.msgs = msgs, r.bytes = bytes;
        r.rate = (double)msgs / r.secs;
        r.mbs = (double)bytes / r.secs / 1e6;
        if (!framed)
            r.rate = r.mbs;
    } else {
        fprintf(stderr, "esock_tcp: %s peer (%s, %d conns, %zu B): %s%d: %.*s\n", peer, cas, n,
                size, late ? "no answer in time (killed), status " : "status ", st,
                (int)strcspn(line, "\n"), line);
    }
    return r;
}

struct result go_run(const char *program, const char *cas, int n, size_t size, bool framed,
                     double dur)
{
    char conns[16], sz[24], d[32];
    snprintf(conns, sizeof conns, "%d", n);
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(d, sizeof d, "%.3f", dur);
    char *argv[] = {(char *)program,
                    "-case",
                    (char *)cas,
                    "-conns",
                    conns,
                    "-size",
                    sz,
                    "-dur",
                    d,
                    framed ? "-framed=true" : "-framed=false",
                    NULL};
    return ext_run("go", argv, cas, n, size, framed, dur);
}

struct result erl_run(const char *beam_dir, const char *cas, int n, size_t size, bool framed,
                      double dur)
{
    char conns[16], sz[24], d[32];
    snprintf(conns, sizeof conns, "%d", n);
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(d, sizeof d, "%.3f", dur);
    char *argv[] = {
        "erl", "-noshell", "-pa", (char *)beam_dir,          "-run", "tcppeer", "main", (char *)cas,
        conns, sz,         d,     framed ? "true" : "false", NULL};
    return ext_run("erlang", argv, cas, n, size, framed, dur);
}
