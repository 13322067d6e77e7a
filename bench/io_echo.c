/* io_echo: TCP echo over loopback, five servers measured in the same run
 * against the same client:
 *   - rt on io_uring: a stackful process per connection (rt_recv,
 *     rt_send_all), an acceptor process (rt_accept);
 *   - rt on epoll: the same code, rt_opts.io = RT_IO_EPOLL (the control);
 *   - blocking C: a thread per connection doing recv/send;
 *   - Go net: bench/peers/go/echopeer, a goroutine per connection, a
 *     read/write loop on net.Conn (io_echo_ext.c starts it);
 *   - Erlang/OTP gen_tcp: bench/peers/erlang/echopeer.erl, a process per
 *     connection, {active, N}, binary, nodelay, a 64 KiB buffer.
 * Every server reads into at most 64 KiB at a time and echoes what it read.
 * The client is another OS process (forked): one thread, non-blocking
 * sockets and epoll, driving every connection, the same for all five
 * servers. Server and client are pinned to a CPU each, and each server has
 * one CPU and one scheduler: rt one scheduler thread, Go GOMAXPROCS=1,
 * Erlang +S 1:1 (its other settings erl's defaults), all their threads (the
 * blocking server's too) on the server's CPU. Go and Erlang are child
 * processes started for each measurement, as the others are started for
 * each (rt_start, rt_stop); bench/peers/build builds them (bench/run does),
 * and a peer that is not installed or not built is skipped, and says so.
 *
 * Before it measures, the client has one byte echoed on every connection,
 * so that every connection has been accepted and is being served: without
 * it a server whose accept loop the first connections' traffic starves
 * (seen with rt and with Erlang at 1,000 x 16 to 64 KiB streaming) served
 * only some of them during the run, and the point measured fewer
 * connections than it said.
 *
 * Each server counts what it did (connections accepted, bytes read and
 * echoed; Go and Erlang report theirs when asked to stop, once every
 * connection has ended), and a measurement fails unless the counts agree
 * with the client's: every connection accepted, the server read at least
 * the bytes the client got back and no more than it sent, and echoed no
 * more than it read. A failure is FAILED in the table and the CSV, the
 * others carry on, and the exit status is 1.
 *
 * Workloads: request/response (each connection sends `size` bytes and
 * waits for their echo, again and again: round trips/s, MB/s, p50/p99
 * latency) and streaming (each connection keeps writing and reading, with
 * at most a window of bytes sent and not yet echoed: MB/s), for 1, 10, 100
 * and 1000 connections and 64 B, 1 KiB, 16 KiB, 64 KiB messages.
 *
 * The window keeps the kernel out of TCP memory pressure. Without one, the
 * client fills every socket buffer on the way (up to tcp_wmem's maximum to
 * send and tcp_rmem's to receive, each way): 1,000 connections x 64 KiB
 * put 1.7 to 2.3 GB in sockets, past tcp_mem's pressure mark (1.5 GB on
 * the 24 GB test machine), and the kernel then shrank windows, pruned and
 * dropped (TcpExt TCPMemoryPressures, PruneCalled, TCPRcvQDrop), so the
 * figure was its recovery (0.3 to 80 MB/s for any of the three servers, or
 * about 1 GB/s when a run escaped), not the server. The window shares
 * 256 MiB (or a quarter of tcp_mem's low mark, if less) among the
 * connections, at most 4 MiB and at least two messages each (--window
 * sets it; 0: none). The kernel's counters are read around every run
 * anyway, and a point whose runs saw memory pressure or drops says so:
 * they are the whole machine's, so another program can cause them too.
 *
 * System calls per message are the server's, counted by the kernel: a perf
 * counter on the tracepoint raw_syscalls:sys_enter, opened by the thread
 * that starts the server and inherited by every thread the server makes
 * (schedulers, connection threads), read when the client starts and stops
 * measuring. io_uring_enter counts as one call, whatever it submits. Where
 * perf is not available the servers' own counts are used instead
 * (rt_stats.io_syscalls; the blocking server's recv/send) and the output
 * says so (Go and Erlang have no count of their own; their children inherit
 * the counter). CPU time per message is the server's too (this process's
 * threads, the main thread only waits; a peer's, all its threads, from its
 * CPU-time clock); the client's CPU use says where it was the limit, as it
 * is when streaming small messages over few connections: there a server
 * that echoes sooner, in smaller pieces, costs the client more receives and
 * so measures slower.
 *
 *   io_echo [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--runs-csv FILE]
 *           [--mode rr|stream] [--conns N] [--size BYTES] [--window BYTES]
 *           [--servers LIST] [--go PROGRAM] [--erl BEAM_DIR]
 *
 * --quick: one run of 0.2 s per point (a minute or two on 2 CPUs).
 * --runs: runs per point, 1 to 101 (default 3; more is refused, where it
 * was once quietly taken for 3).
 * --mode, --conns, --size: only the points of that workload, count, size.
 * --servers: a comma-separated subset of io_uring,epoll,blocking,go,erlang.
 * --go: the Go peer, built (default: peers/echopeer-go in the build tree
 * above this program's folder, where bench/run builds it); --erl: the
 * folder of echopeer.beam (default: that peers/ folder; erl from PATH).
 * Without --csv the CSV is printed to stdout after the table. Each point's
 * figures are those of its median run; rate_min and rate_max are the
 * lowest and highest rates of its runs; io_uring_ratio_by_run (and its
 * _min, _max) the median (and range) of io_uring's rate over this
 * server's, run by run, and _ci_lo, _ci_hi a 95% confidence interval of
 * that median (from the runs' order alone, the sign test's; empty under 6
 * runs); io_uring_cpu_ratio_by_run (and its CI) the same for CPU time per
 * message, this server's over io_uring's (> 1: io_uring spent less), which
 * still tells the servers apart where the client is the limit and the
 * rates cannot (not where a server is idle for less than rt's spin before
 * it parks, rt_opts.spin_us, 50 us: at one or ten connections, request/
 * response, the spin fills the wait and CPU per message is the inverse of
 * the rate; the spin is user time too). server_user_pct: the part of the server's CPU time spent in
 * user mode, its runs pooled (the kernel samples user against system time
 * at each tick, so one short run has few samples; the peers' from
 * /proc/PID/stat). Where the server's system calls per message are the
 * same on both backends, this is the most any way of waiting for I/O could
 * save: the rest is the kernel's work on those calls. steal_runs: the runs
 * in which the hypervisor took STEAL_MARK (5%) or more of the server's or
 * the client's CPU (/proc/stat's steal; the table says "! steal"): on a
 * shared machine those runs were not the benchmark's alone. --runs-csv:
 * every run's own figures too (with its steal_pct), one row each, so that
 * passes can be pooled (bench/pool).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rt/io.h>
#include <rt/rt.h>

#include "io_echo.h"

/* Each server's schedulers: rt's scheduler threads, Go's GOMAXPROCS,
 * Erlang's +S. */
#define SCHEDULERS 1

static void die(const char *what)
{
    fprintf(stderr, "io_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The servers' address (host order): 127.0.0.1, or another loopback
 * address when TIME_WAIT sockets of other programs hold every port of it. */
static uint32_t server_ip = INADDR_LOOPBACK;

static int listener(uint16_t *port)
{
    for (uint32_t i = 0; i < 16; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK + i)};
        socklen_t len = sizeof a;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0 && listen(fd, 4096) == 0) {
            server_ip = INADDR_LOOPBACK + i;
            *port = ntohs(a.sin_port);
            return fd;
        }
        if (errno != EADDRINUSE)
            break;
        close(fd);
    }
    die("listen");
    return -1;
}

/* The client and the server each get a CPU of their own where there are
 * two or more: otherwise they fight over the same cores, and whichever
 * server burns less CPU wins by starving the client less. */
static int client_cpu = -1, server_cpu = -1;

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* ---- counting the server's system calls ------------------------------------------------- */

static long syscall_tp_id = -1; /* raw_syscalls:sys_enter; -1: no perf */

static void find_tracepoint(void)
{
    static const char *paths[] = {"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                                  "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id"};
    for (unsigned i = 0; i < 2 && syscall_tp_id < 0; i++) {
        FILE *f = fopen(paths[i], "r");
        if (f == NULL)
            continue;
        if (fscanf(f, "%ld", &syscall_tp_id) != 1)
            syscall_tp_id = -1;
        fclose(f);
    }
}

/* A counter of the calling thread's system calls and those of every thread
 * it (or they) will make. -1 if perf says no. */
static int open_syscall_counter(void)
{
    if (syscall_tp_id < 0)
        return -1;
    struct perf_event_attr a = {.type = PERF_TYPE_TRACEPOINT,
                                .size = sizeof a,
                                .config = (uint64_t)syscall_tp_id,
                                .inherit = 1,
                                .exclude_kernel = 0};
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static uint64_t read_counter(int fd)
{
    uint64_t v = 0;
    if (fd < 0 || read(fd, &v, sizeof v) != sizeof v)
        return 0;
    return v;
}

/* ---- the kernel's TCP memory ----------------------------------------------------------- */

/* Of /proc/net/netstat's TcpExt: entries into TCP memory pressure, the ms
 * spent in it (added when it ends), segments dropped for want of receive
 * memory. The whole network namespace's, not only ours. */
static const char *const tcp_mem_names[] = {"TCPMemoryPressures", "TCPMemoryPressuresChrono",
                                            "TCPRcvQDrop"};
#define NTCPMEM 3

static void tcp_mem_read(long long v[NTCPMEM])
{
    for (int i = 0; i < NTCPMEM; i++)
        v[i] = 0;
    FILE *f = fopen("/proc/net/netstat", "r");
    if (f == NULL)
        return;
    /* pairs of lines: "TcpExt: name name ...", "TcpExt: value value ..." */
    static char names[8192], vals[8192];
    while (fgets(names, sizeof names, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *sn, *sv;
        char *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);
        for (; n && x; n = strtok_r(NULL, " \n", &sn), x = strtok_r(NULL, " \n", &sv))
            for (int i = 0; i < NTCPMEM; i++)
                if (strcmp(n, tcp_mem_names[i]) == 0)
                    v[i] = atoll(x);
    }
    fclose(f);
}

/* Whether the kernel was short of TCP memory between two readings. */
static long long tcp_mem_events(const long long a[NTCPMEM], const long long b[NTCPMEM])
{
    long long n = 0;
    for (int i = 0; i < NTCPMEM; i++)
        n += b[i] - a[i];
    return n;
}

/* ---- the client (a child process) ---------------------------------------------------- */

struct result {
    double secs;
    long trips;
    long long bytes; /* echoed bytes received */
    long long sent;  /* bytes sent */
    double p50_us, p99_us;
    double cpu;   /* the client's CPU time over `secs` */
    int unserved; /* connections the server did not echo on before the start */
    int ok;
};

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct conn {
    int fd;
    /* bytes written / echo read: of the current request (rr), in all (stream) */
    size_t out, in;
    double t0;
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The streaming window per connection (see the top of the file); 0 from
 * --window: none. */
static size_t window_opt = SIZE_MAX;

static size_t stream_window(int nconns, size_t size)
{
    if (window_opt != SIZE_MAX)
        return window_opt ? window_opt : SIZE_MAX / 2;
    size_t all = (size_t)256 << 20;
    unsigned long long low = 0; /* pages */
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_mem", "r");
    if (f) {
        if (fscanf(f, "%llu", &low) == 1 && low * 4096 / 4 < all)
            all = (size_t)(low * 4096 / 4);
        fclose(f);
    }
    size_t w = all / (size_t)nconns;
    if (w > (size_t)4 << 20)
        w = (size_t)4 << 20;
    return w < 2 * size ? 2 * size : w;
}

/* Before measuring: one byte echoed on every connection, so that the
 * server has accepted every connection and serves it (a server's accept
 * loop can be starved by the first connections' traffic, and the run
 * would measure fewer connections than it says). The connections that
 * were not echoed on within `secs`. */
static int warm_up(struct conn *cs, int nconns, double secs, long long *sent)
{
    int ep = epoll_create1(0), left = nconns;
    for (int i = 0; i < nconns; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (send(cs[i].fd, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1)
            (*sent)++;
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    struct epoll_event evs[256];
    for (double end = now_s() + secs; left > 0 && now_s() < end;) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int fd = cs[evs[k].data.u32].fd;
            char b;
            if (recv(fd, &b, 1, MSG_DONTWAIT) == 1) {
                left--;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            }
        }
    }
    close(ep);
    return left;
}

/* Connects, has one byte echoed on each connection, writes one byte to
 * `out_fd` when it starts measuring, then its result when it stops, then
 * closes its connections. */
static void client(uint16_t port, int nconns, size_t size, bool stream, double dur, int out_fd)
{
    struct result r = {0};
    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    char *buf = malloc(size), *sink = malloc(1 << 16);
    memset(buf, 'x', size);
    size_t maxlat = 1 << 20;
    double *lat = malloc(maxlat * sizeof *lat);
    size_t nlat = 0, window = stream_window(nconns, size);
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {
            .sin_family = AF_INET, .sin_addr.s_addr = htonl(server_ip), .sin_port = htons(port)};
        if (connect(fd, (struct sockaddr *)&a, sizeof a))
            die("client connect");
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        cs[i].fd = fd;
    }
    r.unserved = warm_up(cs, nconns, 10, &r.sent);
    for (int i = 0; i < nconns; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    if (write(out_fd, "s", 1) != 1)
        _exit(1);
    /* (with connections not served: no measurement, and it says so) */
    double start = now_s(), end = start + (r.unserved ? 0 : dur), cpu0 = cpu_self();
    for (int i = 0; i < nconns; i++)
        cs[i].t0 = start;
    struct epoll_event evs[256];
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = &cs[evs[k].data.u32];
            for (int spins = 0; spins < 64; spins++) { /* edge-triggered: until it would block */
                bool progress = false;
                /* what may be sent: the rest of the request, or what the
                 * window leaves (a read below opens it again) */
                size_t room = stream ? window - (c->out - c->in) : size - c->out;
                if (room > 0) {
                    ssize_t w =
                        send(c->fd, buf, room < size ? room : size, MSG_DONTWAIT | MSG_NOSIGNAL);
                    if (w > 0) {
                        c->out += (size_t)w;
                        r.sent += w;
                        progress = true;
                    }
                }
                ssize_t rd = recv(c->fd, sink, stream ? (1 << 16) : size - c->in, MSG_DONTWAIT);
                if (rd > 0) {
                    r.bytes += rd;
                    progress = true;
                    c->in += (size_t)rd;
                    if (!stream) {
                        if (c->in == size) {
                            double t = now_s();
                            if (nlat < maxlat)
                                lat[nlat++] = (t - c->t0) * 1e6;
                            r.trips++;
                            c->in = c->out = 0;
                            c->t0 = t;
                        }
                    }
                }
                if (!progress)
                    break;
                if (spins == 63) { /* still busy: come back to it after the others */
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                             .data.u32 = evs[k].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
        }
    }
    r.secs = now_s() - start;
    r.cpu = cpu_self() - cpu0;
    if (nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_d);
        r.p50_us = lat[nlat / 2];
        r.p99_us = lat[nlat * 99 / 100];
    }
    r.ok = r.unserved == 0;
    if (write(out_fd, &r, sizeof r) != sizeof r)
        _exit(1);
    /* with a reset, not a FIN: the active closer's TIME_WAIT would hold the
     * port for a minute, and a full grid makes ~100,000 connections, more
     * than the ephemeral range (the servers' listen() then fails) */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < nconns; i++) {
        setsockopt(cs[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(cs[i].fd);
    }
    _exit(0);
}

/* What the server did while the client measured. */
struct count {
    uint64_t perf;          /* kernel-counted system calls of the server's threads */
    uint64_t self;          /* the server's own count */
    double cpu;             /* CPU time of this process: the server's threads (main waits) */
    double user;            /* the part of cpu in user mode (tick-sampled) */
    uint64_t reads, rbytes; /* the in-process servers' receives and the bytes they brought */
    unsigned long long steal[2], ticks[2]; /* the server's and the client's CPU (/proc/stat) */
};

/* The server's and the client's CPU (cpu[0], cpu[1]): the time the
 * hypervisor stole from each and each one's time in all, in ticks so far,
 * from one read of /proc/stat (0 and 0 for a CPU it has no line for, or
 * none pinned). */
static void cpu_steal(const int cpu[2], unsigned long long steal[2], unsigned long long ticks[2])
{
    steal[0] = steal[1] = ticks[0] = ticks[1] = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int c, at = 0;
        unsigned long long v[8]; /* user nice system idle iowait irq softirq steal */
        /* "cpuN ...", not the "cpu  ..." of all of them */
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9' ||
            sscanf(line + 3, "%d %n", &c, &at) != 1 ||
            sscanf(line + 3 + at, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
            continue;
        for (int i = 0; i < 2; i++) {
            if (c != cpu[i])
                continue;
            for (int j = 0; j < 8; j++)
                ticks[i] += v[j];
            steal[i] = v[7];
        }
    }
    fclose(f);
}

struct server;
static void server_counts(struct server *s, struct count *c);

/* Run the client in a child process against `port`; `d` gets the server's
 * counts over the client's measuring window. */
static struct result run_client(struct server *s, uint16_t port, int nconns, size_t size,
                                bool stream, double dur, struct count *d)
{
    int p[2];
    if (pipe(p))
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        pin(client_cpu);
        client(port, nconns, size, stream, dur, p[1]);
    }
    close(p[1]);
    struct result r = {0};
    struct count c0 = {0}, c1 = {0};
    char go;
    if (read(p[0], &go, 1) == 1) {
        server_counts(s, &c0);
        if (read(p[0], &r, sizeof r) != sizeof r)
            r.ok = 0;
        server_counts(s, &c1);
    }
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    d->perf = c1.perf - c0.perf;
    d->self = c1.self - c0.self;
    d->cpu = c1.cpu - c0.cpu;
    d->user = c1.user - c0.user;
    d->reads = c1.reads - c0.reads;
    for (int i = 0; i < 2; i++) {
        d->steal[i] = c1.steal[i] - c0.steal[i];
        d->ticks[i] = c1.ticks[i] - c0.ticks[i];
    }
    d->rbytes = c1.rbytes - c0.rbytes;
    return r;
}

/* ---- the servers -------------------------------------------------------------------------- */

enum { SRV_URING, SRV_EPOLL, SRV_BLOCKING, SRV_GO, SRV_ERLANG, NSRV };
static const char *srv_names[NSRV] = {"rt-io_uring", "rt-epoll", "blocking-threads", "go-net",
                                      "erlang-gen_tcp"};
/* for --servers and the table */
static const char *srv_short[NSRV] = {"io_uring", "epoll", "blocking", "go", "erlang"};

static bool is_ext(int kind)
{
    return kind == SRV_GO || kind == SRV_ERLANG;
}

/* The peers that are other programs: the Go program, the folder of
 * echopeer.beam. */
static const char *go_path, *erl_dir;

/* A server runs under a thread of its own, which opens the syscall counter
 * first so that every thread the server makes, and a peer it spawns,
 * inherits it (and the client, forked from main, does not). */
struct server {
    int kind;
    uint16_t port;
    int perf_fd;
    int lfd;
    pthread_t acc;
    struct ext_peer ext; /* Go, Erlang */
    bool started;        /* listening (else why says what went wrong) */
    bool counted;        /* counts are the server's own (else why) */
    struct srv_counts counts;
    char hello[160]; /* what a peer said beside its port */
    char why[200];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 starting, 1 running, 2 stop asked, 3 stopped */
};

static _Atomic long blk_syscalls;

/* What the in-process servers did (reset when one starts). Relaxed: they
 * are read by the server's thread once the client has ended, and each was
 * added to before the bytes or connection it counts went on through a
 * system call (send, the client's recv, its pipe to main), which orders
 * them in practice; the figures are checks, not synchronisation. */
static _Atomic long long srv_conns, srv_read, srv_echoed;
/* the in-process servers' receives that brought data (for bytes per read) */
static _Atomic long long srv_reads;

static void server_counts(struct server *s, struct count *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    c->cpu = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    c->user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    c->perf = read_counter(s->perf_fd);
    cpu_steal((const int[2]){server_cpu, client_cpu}, c->steal, c->ticks);
    if (is_ext(s->kind)) {
        c->cpu = ext_cpu(&s->ext);
        c->user = ext_user(&s->ext);
        c->self = 0; /* none of its own */
    } else if (s->kind == SRV_BLOCKING) {
        c->self = (uint64_t)atomic_load(&blk_syscalls);
        c->reads = (uint64_t)atomic_load(&srv_reads);
        c->rbytes = (uint64_t)atomic_load(&srv_read);
    } else {
        rt_stats st;
        c->self = rt_stats_get(&st) == 0 ? st.io_syscalls : 0;
        c->reads = (uint64_t)atomic_load(&srv_reads);
        c->rbytes = (uint64_t)atomic_load(&srv_read);
    }
}

static void rt_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    rt_io_own(fd);
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    char *buf = malloc(1 << 16);
    for (;;) {
        ssize_t n = rt_recv(fd, buf, 1 << 16, RT_INFINITY);
        if (n <= 0)
            break;
        atomic_fetch_add_explicit(&srv_read, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv_reads, 1, memory_order_relaxed);
        if (rt_send_all(fd, buf, (size_t)n, RT_INFINITY) != n)
            break;
        atomic_fetch_add_explicit(&srv_echoed, n, memory_order_relaxed);
    }
    /* freed here, not with rt_at_exit: a killed process's receive may still
     * write into its buffer (io_uring), so these end only by the client's close */
    free(buf);
}

static void rt_acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    rt_io_own(l);
    for (;;) {
        int fd = rt_accept(l, NULL, NULL, RT_INFINITY);
        if (fd < 0)
            return;
        atomic_fetch_add_explicit(&srv_conns, 1, memory_order_relaxed);
        rt_io_disown(fd);
        if (rt_spawn(rt_conn, (void *)(intptr_t)fd, NULL, NULL))
            close(fd);
    }
}

static void *blk_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    char *buf = malloc(1 << 16);
    for (;;) {
        ssize_t n = recv(fd, buf, 1 << 16, 0);
        atomic_fetch_add_explicit(&blk_syscalls, 1, memory_order_relaxed);
        if (n <= 0)
            break;
        atomic_fetch_add_explicit(&srv_read, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv_reads, 1, memory_order_relaxed);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            atomic_fetch_add_explicit(&blk_syscalls, 1, memory_order_relaxed);
            if (w <= 0)
                goto out;
            atomic_fetch_add_explicit(&srv_echoed, w, memory_order_relaxed);
            off += w;
        }
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

static void *blk_acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return NULL;
        atomic_fetch_add_explicit(&srv_conns, 1, memory_order_relaxed);
        pthread_t t;
        if (pthread_create(&t, &a, blk_conn, (void *)(intptr_t)fd))
            close(fd);
    }
}

static void set_state(struct server *s, int st)
{
    pthread_mutex_lock(&s->lock);
    s->state = st;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void wait_state(struct server *s, int st)
{
    pthread_mutex_lock(&s->lock);
    while (s->state < st)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* Start the Go or Erlang peer, listening on a loopback address whose ports
 * are not all taken (into server_ip); 0 or a negative errno (s->why). */
static int ext_begin(struct server *s)
{
    uint16_t port;
    close(listener(&port));
    char ip[INET_ADDRSTRLEN], n[16], env0[32];
    struct in_addr a = {.s_addr = htonl(server_ip)};
    inet_ntop(AF_INET, &a, ip, sizeof ip);
    if (s->kind == SRV_GO) {
        snprintf(env0, sizeof env0, "GOMAXPROCS=%d", SCHEDULERS);
        char *argv[] = {(char *)go_path, "-addr", ip, NULL}, *env[] = {env0, NULL};
        return ext_start(&s->ext, argv, env, &s->port, s->hello, s->why, sizeof s->why);
    }
    snprintf(n, sizeof n, "%d:%d", SCHEDULERS, SCHEDULERS);
    char *argv[] = {"erl",      "-noshell", "+S", n,    "-pa",  (char *)erl_dir, "-run",
                    "echopeer", "main",     ip,   "-s", "init", "stop",          NULL};
    return ext_start(&s->ext, argv, NULL, &s->port, s->hello, s->why, sizeof s->why);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    /* on the server's CPU, with every thread and peer it makes; not main,
     * which reads the counters: pinned there, a server that keeps its CPU
     * busy (1,000 blocking threads) kept main from reading them until the
     * client had ended, and a run counted no system calls at all */
    pin(server_cpu);
    s->perf_fd = open_syscall_counter();
    atomic_store(&srv_conns, 0);
    atomic_store(&srv_read, 0);
    atomic_store(&srv_reads, 0);
    atomic_store(&srv_echoed, 0);
    s->started = true;
    if (is_ext(s->kind)) {
        s->started = ext_begin(s) == 0;
    } else if (s->kind == SRV_BLOCKING) {
        s->lfd = listener(&s->port);
        atomic_store(&blk_syscalls, 0);
        pthread_create(&s->acc, NULL, blk_acceptor, (void *)(intptr_t)s->lfd);
    } else {
        s->lfd = listener(&s->port);
        /* one scheduler, on the server's CPU like the blocking server's threads */
        rt_opts o = {.schedulers = SCHEDULERS,
                     .io = s->kind == SRV_URING ? RT_IO_URING : RT_IO_EPOLL};
        if (rt_start(&o) != 0)
            die("rt_start");
        rt_spawn(rt_acceptor, (void *)(intptr_t)s->lfd, NULL, NULL);
    }
    set_state(s, 1);
    wait_state(s, 2);
    /* the client has ended: what the server counted is all it will */
    if (is_ext(s->kind)) {
        s->counted = s->started && ext_stop(&s->ext, &s->counts, s->why, sizeof s->why) == 0;
    } else {
        s->counts = (struct srv_counts){atomic_load(&srv_conns), atomic_load(&srv_read),
                                        atomic_load(&srv_echoed)};
        s->counted = true;
    }
    if (s->kind == SRV_BLOCKING) {
        shutdown(s->lfd, SHUT_RDWR);
        pthread_join(s->acc, NULL);
        close(s->lfd);
        usleep(100000); /* the connection threads see the client's close */
    } else if (!is_ext(s->kind)) {
        rt_stats leaks;
        if (rt_stop(2000, &leaks) != 0 || leaks.procs_live || leaks.msgs_live)
            die("rt_stop");
    }
    if (s->perf_fd >= 0)
        close(s->perf_fd);
    set_state(s, 3);
    return NULL;
}

/* A run the hypervisor took this much of a CPU from (server's or client's,
 * %) is marked: the machine was not all the benchmark's. /proc/stat counts
 * in 10 ms ticks, so a 0.5 s run's figure moves in steps of 2%. */
#define STEAL_MARK 5.0

/* runs per point, at most (--runs) */
#define MAX_RUNS 101

struct point {
    bool ok;       /* measured, and the server's counts agree with the client's */
    char why[240]; /* when not ok */
    struct result r;
    double rate;    /* round trips/s (rr) or MB/s (stream) */
    double mbs;     /* MB/s either way (bytes echoed back to the client) */
    double sys_per; /* server system calls per message */
    double cpu_per; /* server CPU time per message, µs */
    double msgs;    /* messages (rr: round trips; stream: `size` bytes echoed) */
    double cpu_s;   /* the server's CPU time over the run, s */
    double user_s;  /* the part of it in user mode, s */
    double cli_pct; /* the client's CPU use, % of the run */
    double bpr;     /* bytes per receive of the server (in-process servers; else 0) */
    bool perf;      /* sys_per from the kernel's count (else the server's own) */
    long long kmem; /* TCP memory pressure (entries, ms) and drops meanwhile */
    double steal;   /* % of the server's or the client's CPU (the more) the hypervisor took */
};

/* Do the server's own counts agree with the client's? Every connection
 * accepted; at least the bytes the client got back read, and no more than
 * it sent; no more echoed than read. */
static bool counts_agree(const struct srv_counts *c, const struct result *r, int nconns, char *why,
                         size_t cap)
{
    if (c->conns != nconns)
        snprintf(why, cap, "the server accepted %lld of %d connections", c->conns, nconns);
    else if (c->read < r->bytes || c->read > r->sent)
        snprintf(why, cap, "the server read %lld B; the client sent %lld B and got %lld B back",
                 c->read, r->sent, r->bytes);
    else if (c->echoed > c->read)
        snprintf(why, cap, "the server echoed %lld B, more than the %lld B it read", c->echoed,
                 c->read);
    else
        return true;
    return false;
}

static struct point measure(int kind, int nconns, size_t size, bool stream, double dur)
{
    struct server s = {.kind = kind, .perf_fd = -1, .ext.pid = -1};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pthread_t t;
    long long k0[NTCPMEM], k1[NTCPMEM];
    tcp_mem_read(k0);
    pthread_create(&t, NULL, server_main, &s);
    wait_state(&s, 1);
    struct count d = {0};
    struct point p = {0};
    if (s.started)
        p.r = run_client(&s, s.port, nconns, size, stream, dur, &d);
    tcp_mem_read(k1);
    p.kmem = tcp_mem_events(k0, k1);
    p.perf = s.perf_fd >= 0;
    set_state(&s, 2);
    pthread_join(t, NULL);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    if (!s.started)
        snprintf(p.why, sizeof p.why, "did not start: %s", s.why);
    else if (p.r.unserved)
        snprintf(p.why, sizeof p.why,
                 "the server echoed nothing on %d of %d connections within 10 s", p.r.unserved,
                 nconns);
    else if (!p.r.ok)
        snprintf(p.why, sizeof p.why, "the client failed");
    else if (!s.counted)
        snprintf(p.why, sizeof p.why, "no counts: %s", s.why);
    else
        p.ok = counts_agree(&s.counts, &p.r, nconns, p.why, sizeof p.why);
    if (!p.ok)
        return p;
    /* a message: one request (rr) or `size` bytes sent one way (stream) */
    double msgs = stream ? (double)p.r.bytes / (double)size : (double)p.r.trips;
    p.mbs = (double)p.r.bytes / p.r.secs / 1e6;
    p.rate = stream ? p.mbs : msgs / p.r.secs;
    p.sys_per = msgs <= 0                 ? 0
                : !p.perf && is_ext(kind) ? -1
                                          : (double)(p.perf ? d.perf : d.self) / msgs;
    p.cpu_per = msgs > 0 ? d.cpu * 1e6 / msgs : 0;
    for (int i = 0; i < 2; i++) {
        double pct = d.ticks[i] ? 100.0 * (double)d.steal[i] / (double)d.ticks[i] : 0;
        p.steal = pct > p.steal ? pct : p.steal;
    }
    p.msgs = msgs;
    p.cpu_s = d.cpu;
    p.user_s = d.user;
    p.cli_pct = 100 * p.r.cpu / p.r.secs;
    p.bpr = d.reads ? (double)d.rbytes / (double)d.reads : 0;
    return p;
}

/* A run-by-run ratio's median, range and 95% confidence interval (ci:
 * whether there is one: 6 runs or more). */
struct by_run {
    double med, lo, hi, ci_lo, ci_hi;
    bool ci;
};

static struct by_run by_run(const double *v, int n)
{
    struct by_run b = {.med = v[median_index(v, n)]};
    b.lo = b.hi = b.med;
    for (int i = 0; i < n; i++) {
        b.lo = v[i] < b.lo ? v[i] : b.lo;
        b.hi = v[i] > b.hi ? v[i] : b.hi;
    }
    b.ci = median_ci95(v, n, &b.ci_lo, &b.ci_hi) == 0;
    return b;
}

/* One run's row of --runs-csv. */
static void runs_row(FILE *f, bool stream, int conns, size_t size, int kind, int run,
                     const char *unit, const struct point *q)
{
    fprintf(f, "%s,%d,%zu,%s,%d,%s,", stream ? "stream" : "rr", conns, size, srv_names[kind],
            run + 1, q->ok ? "ok" : "FAILED");
    if (q->ok)
        fprintf(f, "%.1f,%s,%.3f,%.3f,%.2f,%.0f,%.0f,%lld,%.0f\n", q->rate, unit, q->cpu_per,
                q->msgs > 0 ? q->user_s * 1e6 / q->msgs : 0, q->sys_per, q->cli_pct, q->bpr,
                q->kmem, q->steal);
    else
        fprintf(f, ",%s,,,,,,%lld,%.0f\n", unit, q->kmem, q->steal);
    fflush(f);
}

/* A table row's mark ("! tcp mem", "! steal"): how many runs of each server
 * it concerns, when any. */
static void mark(const char *what, const int n[NSRV], int runs)
{
    int any = 0;
    for (int k = 0; k < NSRV; k++)
        any += n[k];
    if (any == 0)
        return;
    printf("  ! %s", what);
    for (int k = 0; k < NSRV; k++)
        printf("%s%d", k ? "/" : " ", n[k]);
    printf(" of %d", runs);
}

/* ---- main -------------------------------------------------------------------------------------
 */

/* Is `name` an executable in PATH? */
static bool in_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, name);
        if (n > 0 && access(buf, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

/* The folder the peers are built into: peers/ in the build tree above this
 * program's folder (build/release/bench/io_echo: build/release/peers). */
static const char *peers_dir(void)
{
    static char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 16);
    if (n <= 0)
        return "peers";
    dir[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            return "peers";
        *slash = '\0';
    }
    strcat(dir, "/peers");
    return dir;
}

/* Whether peer k is there to be run; if not, why into why. */
static bool ext_there(int k, char *why, size_t cap)
{
    char beam[4200];
    if (k == SRV_GO && access(go_path, X_OK) != 0) {
        snprintf(why, cap, "skipped: no %.160s (bench/run builds it when Go is installed; or --go)",
                 go_path);
        return false;
    }
    if (k == SRV_ERLANG && !in_path("erl")) {
        snprintf(why, cap, "skipped: erl is not installed (tools/setup --bench)");
        return false;
    }
    snprintf(beam, sizeof beam, "%s/echopeer.beam", erl_dir);
    if (k == SRV_ERLANG && access(beam, R_OK) != 0) {
        snprintf(why, cap, "skipped: no %.160s (bench/run builds it; or --erl)", beam);
        return false;
    }
    return true;
}

/* Start and stop peer k once, before measuring: what it says of itself
 * (its version, its schedulers) into hello, or why it failed. */
static bool ext_probe(int k, char *hello, size_t cap)
{
    struct server s = {.kind = k, .perf_fd = -1, .ext.pid = -1};
    if (ext_begin(&s) < 0) {
        snprintf(hello, cap, "FAILED to start: %.160s", s.why);
        return false;
    }
    int rc = ext_stop(&s.ext, &s.counts, s.why, sizeof s.why);
    if (rc < 0)
        snprintf(hello, cap, "FAILED to stop: %.160s", s.why);
    else
        snprintf(hello, cap, "it says: %.160s", s.hello);
    return rc == 0;
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = list; (s = strstr(s, name)) != NULL; s += n)
        if ((s == list || s[-1] == ',') && (s[n] == ',' || s[n] == '\0'))
            return true;
    return false;
}

/* A cell of the table: "-" for a server not run, FAILED (or `bad`) for one
 * that failed, else the number. */
static const char *cell(char *buf, size_t cap, bool on, bool ok, const char *bad, const char *fmt,
                        double v)
{
    if (!on)
        return "-";
    if (!ok)
        return bad;
    snprintf(buf, cap, fmt, v);
    return buf;
}

int main(int argc, char **argv)
{
    bool quick = false;
    int runs = 0;
    double dur = 0;
    const char *csv_path = NULL, *runs_path = NULL, *servers = NULL;
    int only_conns = 0, only_mode = -1; /* mode: 0 rr, 1 stream */
    size_t only_size = 0;
    static const char usage[] =
        "usage: io_echo [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--runs-csv FILE]\n"
        "               [--mode rr|stream] [--conns N] [--size BYTES] [--window BYTES]\n"
        "               [--servers LIST]\n"
        "               [--go PROGRAM] [--erl BEAM_DIR]\n"
        "N: 1 to 101; LIST: a comma-separated subset of io_uring,epoll,blocking,go,erlang\n";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc &&
                   (strcmp(argv[i + 1], "rr") == 0 || strcmp(argv[i + 1], "stream") == 0))
            only_mode = strcmp(argv[++i], "stream") == 0;
        else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
            window_opt = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (strcmp(argv[i], "--runs-csv") == 0 && i + 1 < argc)
            runs_path = argv[++i];
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            only_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dur") == 0 && i + 1 < argc)
            dur = atof(argv[++i]);
        else if (strcmp(argv[i], "--servers") == 0 && i + 1 < argc)
            servers = argv[++i];
        else if (strcmp(argv[i], "--go") == 0 && i + 1 < argc)
            go_path = argv[++i];
        else if (strcmp(argv[i], "--erl") == 0 && i + 1 < argc)
            erl_dir = argv[++i];
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    static char go_default[4200];
    snprintf(go_default, sizeof go_default, "%s/echopeer-go", peers_dir());
    go_path = go_path ? go_path : go_default;
    erl_dir = erl_dir ? erl_dir : peers_dir();
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        server_cpu = 0;
        client_cpu = 1;
        /* the server's thread pins itself (server_main); main stays free to
         * run on either CPU */
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    find_tracepoint();
    int probe = open_syscall_counter();
    if (probe < 0)
        syscall_tp_id = -1;
    else
        close(probe);
    if (dur <= 0)
        dur = quick ? 0.2 : 1.0;
    runs = runs_checked(runs, MAX_RUNS, quick ? 1 : 3);
    bool use[NSRV];
    char about[NSRV][240] = {{0}};
    for (int k = 0; k < NSRV; k++) {
        use[k] = servers == NULL || in_list(servers, srv_short[k]);
        if (!use[k])
            snprintf(about[k], sizeof about[k], "not asked for (--servers)");
        else if (is_ext(k) && !ext_there(k, about[k], sizeof about[k]))
            use[k] = false;
        else if (is_ext(k))
            ext_probe(k, about[k], sizeof about[k]); /* a failure shows in every point */
    }
    FILE *csv = NULL;
    char *csv_buf = NULL;
    size_t csv_len = 0;
    csv = csv_path ? open_out(csv_path) : open_memstream(&csv_buf, &csv_len);
    if (csv == NULL)
        die("csv");
    FILE *runs_csv = runs_path ? open_out(runs_path) : NULL;
    if (runs_csv)
        fprintf(runs_csv, "mode,conns,size,server,run,check,rate,unit,server_cpu_us_per_msg,"
                          "server_user_us_per_msg,syscalls_per_msg,client_cpu_pct,"
                          "server_bytes_per_read,tcp_mem_events,steal_pct\n");
    int conns[] = {1, 10, 100, 1000};
    size_t sizes[] = {64, 1024, 16384, 65536};
    fprintf(csv, "mode,conns,size,server,rate,unit,mb_per_s,p50_us,p99_us,syscalls_per_msg,"
                 "syscall_source,tcp_mem_runs,server_cpu_us_per_msg,client_cpu_pct,"
                 "io_uring_ratio,check,rate_min,rate_max,server_bytes_per_read,"
                 "io_uring_ratio_by_run,io_uring_ratio_by_run_min,io_uring_ratio_by_run_max,"
                 "server_user_pct,io_uring_ratio_by_run_ci_lo,io_uring_ratio_by_run_ci_hi,"
                 "io_uring_cpu_ratio_by_run,io_uring_cpu_ratio_by_run_ci_lo,"
                 "io_uring_cpu_ratio_by_run_ci_hi,steal_runs\n");
    printf("servers, each with one CPU (%d) and one scheduler, all its threads on that CPU:\n"
           "  io_uring, epoll: rt (%d scheduler; a stackful process per connection) on io_uring,\n"
           "    and on epoll (the control);\n"
           "  blocking: C, a thread per connection (recv/send);\n"
           "  go: Go net, a goroutine per connection, GOMAXPROCS=%d (bench/peers/go/echopeer):\n"
           "    %s;\n"
           "  erlang: Erlang/OTP gen_tcp, a process per connection, {active,100}, +S %d:%d\n"
           "    (bench/peers/erlang/echopeer.erl): %s.\n"
           "Every server reads at most 64 KiB at a time, echoes it, and counts connections and\n"
           "bytes; a point fails unless its counts agree with the client's. client: a separate\n"
           "process, one epoll thread, non-blocking sockets, pinned to CPU %d; the same for all.\n"
           "%.2f s per run, median of %d run(s) per point. ratios: io_uring / each other server\n"
           "(>1: io_uring better), of the medians; \"/epoll by run\" at the end of a row: the\n"
           "median of the runs' own ratios (run i of io_uring / run i of epoll, one after the\n"
           "other) and their range. sys/msg: the server's system calls per message (rr: per round\n"
           "trip; stream: per `size` bytes), %s.\n",
           server_cpu, SCHEDULERS, SCHEDULERS, about[SRV_GO], SCHEDULERS, SCHEDULERS,
           about[SRV_ERLANG], client_cpu, dur, runs,
           syscall_tp_id >= 0 ? "counted by the kernel\n(perf, raw_syscalls:sys_enter; "
                                "the Go and Erlang processes inherit the counter)"
                              : "perf unavailable: the servers' own counts (none for go, erlang)");
    if (window_opt == SIZE_MAX)
        printf("stream window: 256 MiB (or tcp_mem's low mark / 4) / conns bytes sent and not\n"
               "yet echoed per connection, at most 4 MiB, at least 2 messages.\n");
    else if (window_opt == 0)
        printf("stream window: none (the kernel's buffers are the only limit).\n");
    else
        printf("stream window: %zu bytes per connection.\n", window_opt);
    printf("cpu us/msg: the server's CPU time per message; user%% of cpu: the part in user\n"
           "mode, runs pooled (rt's spin and hold before it waits count too). client cpu%%: the\n"
           "client's CPU use (near 100: the client is the limit, and a server that answers\n"
           "sooner, in smaller pieces, makes it slower). \"! tcp mem\": runs of each server (in\n"
           "the order above) in which the kernel was short of TCP memory (TcpExt\n"
           "TCPMemoryPressures, TCPRcvQDrop: the whole machine's); \"! steal\": runs in which the\n"
           "hypervisor took %.0f%% or more of the server's or the client's CPU (/proc/stat). 95%%\n"
           "CI: of the median by run, from the runs' order (6 runs or more); cpu/msg\n"
           "epoll/io_uring: the same for CPU time per message (>1: io_uring spent less). \"-\":\n"
           "not run. The CSV also has server_bytes_per_read: the mean bytes a receive of the\n"
           "server brought (rt and blocking; smaller pieces cost a client at its limit more\n"
           "receives).\n\n",
           STEAL_MARK);
    printf("%-6s %5s %6s | %9s %9s %9s %9s %9s | %6s %6s %6s %6s | %-29s | %-34s | %-24s | "
           "%-19s | %s\n",
           "mode", "conns", "size", "io_uring", "epoll", "blocking", "go", "erlang", "/epoll",
           "/block", "/go", "/erl", "sys/msg", "cpu us/msg", "user% of cpu", "client cpu%",
           "p50/p99 us (same order)");
    double t_start = now_s();
    bool all_ok = true;
    for (int mode = 0; mode < 2; mode++) {
        if (only_mode >= 0 && mode != only_mode)
            continue;
        bool stream = mode == 1;
        const char *unit = stream ? "MB/s" : "msg/s";
        for (unsigned ci = 0; ci < 4; ci++) {
            if (only_conns && conns[ci] != only_conns)
                continue;
            for (unsigned si = 0; si < 4; si++) {
                if (only_size && sizes[si] != only_size)
                    continue;
                /* `runs` rounds, the servers interleaved so that drift in
                 * the machine hits all alike; each figure is the median run
                 * (by rate), with its latency and system calls; a server
                 * that fails is not run again for this point */
                struct point all[NSRV][MAX_RUNS];
                struct point p[NSRV] = {0};
                double rates[NSRV][MAX_RUNS];
                bool failed[NSRV] = {false};
                for (int run = 0; run < runs; run++) {
                    fprintf(stderr, "[%s %d conns %zu B] run %d/%d\n", stream ? "stream" : "rr",
                            conns[ci], sizes[si], run + 1, runs);
                    for (int k = 0; k < NSRV; k++) {
                        if (!use[k] || failed[k])
                            continue;
                        all[k][run] = measure(k, conns[ci], sizes[si], stream, dur);
                        rates[k][run] = all[k][run].rate;
                        if (runs_csv)
                            runs_row(runs_csv, stream, conns[ci], sizes[si], k, run, unit,
                                     &all[k][run]);
                        if (!all[k][run].ok) {
                            failed[k] = true;
                            p[k] = all[k][run];
                            all_ok = false;
                            fprintf(stderr, "io_echo: %s, %s %d conns %zu B, run %d: FAILED: %s\n",
                                    srv_names[k], stream ? "stream" : "rr", conns[ci], sizes[si],
                                    run + 1, p[k].why);
                        }
                    }
                }
                int short_runs[NSRV] = {0}, stolen_runs[NSRV] = {0};
                double v[NSRV] = {0}, lo[NSRV] = {0}, hi[NSRV] = {0};
                bool ok[NSRV];
                for (int k = 0; k < NSRV; k++) {
                    ok[k] = use[k] && !failed[k];
                    if (!ok[k])
                        continue;
                    p[k] = all[k][median_index(rates[k], runs)];
                    v[k] = p[k].rate;
                    lo[k] = hi[k] = v[k];
                    for (int run = 0; run < runs; run++) {
                        short_runs[k] += all[k][run].kmem > 0;
                        stolen_runs[k] += all[k][run].steal >= STEAL_MARK;
                        if (all[k][run].rate < lo[k])
                            lo[k] = all[k][run].rate;
                        if (all[k][run].rate > hi[k])
                            hi[k] = all[k][run].rate;
                    }
                }
                /* io_uring against each other server run by run: run i of
                 * both came one after the other, so drift in the machine
                 * between runs cancels (the ratio of medians above does
                 * not see which runs were slow together) */
                /* and the same for CPU time per message: this server's over
                 * io_uring's (> 1: io_uring spent less), which holds where
                 * the client is the limit and the rate cannot tell the
                 * servers apart */
                struct by_run pr[NSRV] = {{0}}, cr[NSRV] = {{0}};
                for (int k = 0; k < NSRV; k++) {
                    if (!ok[k] || !ok[SRV_URING])
                        continue;
                    double r[MAX_RUNS], c[MAX_RUNS];
                    for (int run = 0; run < runs; run++) {
                        r[run] = rates[k][run] > 0 ? rates[SRV_URING][run] / rates[k][run] : 0;
                        double u = all[SRV_URING][run].cpu_per;
                        c[run] = u > 0 ? all[k][run].cpu_per / u : 0;
                    }
                    pr[k] = by_run(r, runs);
                    cr[k] = by_run(c, runs);
                }
                /* user mode's share of each server's CPU time, its runs
                 * pooled (the kernel samples it at each tick: a run alone
                 * has too few samples) */
                double user_pct[NSRV] = {0};
                for (int k = 0; k < NSRV; k++) {
                    double u = 0, t = 0;
                    for (int run = 0; ok[k] && run < runs; run++) {
                        u += all[k][run].user_s;
                        t += all[k][run].cpu_s;
                    }
                    user_pct[k] = t > 0 ? 100 * u / t : 0;
                }
                char b[NSRV][6][32];
                printf("%-6s %5d %6zu |", stream ? "stream" : "rr", conns[ci], sizes[si]);
                for (int k = 0; k < NSRV; k++)
                    printf(" %9s", cell(b[k][0], 32, use[k], ok[k], "FAILED", "%.0f", v[k]));
                printf(" |");
                for (int k = 1; k < NSRV; k++)
                    printf(" %6s", cell(b[k][1], 32, use[k] && use[SRV_URING],
                                        ok[k] && ok[SRV_URING] && v[k] > 0, "n/a", "%.2f",
                                        v[k] > 0 ? v[SRV_URING] / v[k] : 0));
                printf(" |");
                for (int k = 0; k < NSRV; k++)
                    printf(" %5s", cell(b[k][2], 32, use[k] && p[k].sys_per >= 0, ok[k], "-",
                                        "%.2f", p[k].sys_per));
                printf(" |");
                for (int k = 0; k < NSRV; k++)
                    printf(" %6s", cell(b[k][3], 32, use[k], ok[k], "-", "%.2f", p[k].cpu_per));
                printf(" |");
                for (int k = 0; k < NSRV; k++)
                    printf(" %4s", cell(b[k][4], 32, use[k], ok[k], "-", "%.1f", user_pct[k]));
                printf(" |");
                for (int k = 0; k < NSRV; k++)
                    printf(" %3s", cell(b[k][5], 32, use[k], ok[k], "-", "%.0f", p[k].cli_pct));
                printf(" | ");
                if (stream) {
                    printf("-");
                } else {
                    for (int k = 0; k < NSRV; k++)
                        if (ok[k])
                            printf("%s%.0f/%.0f", k ? " " : "", p[k].r.p50_us, p[k].r.p99_us);
                        else
                            printf("%s-", k ? " " : "");
                }
                printf("  (%s)", unit);
                const struct by_run *e = &pr[SRV_EPOLL], *ec = &cr[SRV_EPOLL];
                if (runs > 1 && e->med > 0) {
                    printf("  /epoll by run %.2f (%.2f-%.2f", e->med, e->lo, e->hi);
                    if (e->ci)
                        printf("; 95%% CI %.2f-%.2f", e->ci_lo, e->ci_hi);
                    printf("), cpu/msg epoll/io_uring %.2f", ec->med);
                    if (ec->ci)
                        printf(" (CI %.2f-%.2f)", ec->ci_lo, ec->ci_hi);
                }
                mark("tcp mem", short_runs, runs);
                mark("steal", stolen_runs, runs);
                printf("\n");
                fflush(stdout);
                for (int k = 0; k < NSRV; k++) {
                    if (!use[k])
                        continue;
                    const char *src = p[k].perf ? "perf" : is_ext(k) ? "none" : "self";
                    fprintf(csv, "%s,%d,%zu,%s,%.1f,%s,%.2f,%.1f,%.1f,", stream ? "stream" : "rr",
                            conns[ci], sizes[si], srv_names[k], v[k], unit, p[k].mbs,
                            stream ? 0 : p[k].r.p50_us, stream ? 0 : p[k].r.p99_us);
                    if (p[k].sys_per >= 0)
                        fprintf(csv, "%.2f", p[k].sys_per);
                    fprintf(csv, ",%s,%d,%.3f,%.0f,", src, short_runs[k], p[k].cpu_per,
                            p[k].cli_pct);
                    if (ok[k] && ok[SRV_URING] && v[k] > 0)
                        fprintf(csv, "%.3f", v[SRV_URING] / v[k]);
                    fprintf(csv, ",%s", ok[k] ? "ok" : "FAILED");
                    if (ok[k])
                        fprintf(csv, ",%.1f,%.1f,", lo[k], hi[k]);
                    else
                        fprintf(csv, ",,,");
                    if (ok[k] && p[k].bpr > 0)
                        fprintf(csv, "%.0f", p[k].bpr);
                    if (pr[k].med > 0)
                        fprintf(csv, ",%.3f,%.3f,%.3f", pr[k].med, pr[k].lo, pr[k].hi);
                    else
                        fprintf(csv, ",,,");
                    fprintf(csv, ",");
                    if (ok[k])
                        fprintf(csv, "%.1f", user_pct[k]);
                    if (pr[k].ci)
                        fprintf(csv, ",%.3f,%.3f", pr[k].ci_lo, pr[k].ci_hi);
                    else
                        fprintf(csv, ",,");
                    if (cr[k].med > 0)
                        fprintf(csv, ",%.3f", cr[k].med);
                    else
                        fprintf(csv, ",");
                    if (cr[k].ci)
                        fprintf(csv, ",%.3f,%.3f", cr[k].ci_lo, cr[k].ci_hi);
                    else
                        fprintf(csv, ",,");
                    fprintf(csv, ",%d\n", stolen_runs[k]);
                }
            }
        }
    }
    printf("\n%.1f s in all%s\n", now_s() - t_start,
           all_ok ? "" : "; some points FAILED (the reasons are on stderr)");
    fclose(csv);
    if (runs_csv)
        fclose(runs_csv);
    if (csv_path == NULL) {
        printf("\n%s", csv_buf);
        free(csv_buf);
    }
    return all_ok ? 0 : 1;
}
