/* io_echo: TCP echo over loopback, three servers measured in the same run
 * against the same client:
 *   - rt on io_uring: a stackful process per connection (rt_recv,
 *     rt_send_all), an acceptor process (rt_accept);
 *   - rt on epoll: the same code, rt_opts.io = RT_IO_EPOLL (the control);
 *   - blocking C: a thread per connection doing recv/send.
 * The client is another OS process: one thread, non-blocking sockets and
 * epoll, driving every connection. Server and client are pinned to a CPU
 * each (the server's runtime gets one scheduler).
 *
 * Workloads: request/response (each connection sends `size` bytes and
 * waits for their echo, again and again: round trips/s, p50/p99 latency)
 * and streaming (each connection keeps writing and reading: MB/s), for 1,
 * 10, 100 and 1000 connections and 64 B, 1 KiB, 16 KiB, 64 KiB messages.
 * Server-side system calls per round trip come from rt_stats.io_syscalls
 * (the I/O backend's own count) and, for the blocking server, its own
 * recv/send count.
 *
 *   io_echo [--quick] [--runs N] [--csv FILE] [--conns N] [--size BYTES]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rt/io.h>
#include <rt/rt.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "io_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len) ||
        listen(fd, 4096))
        die("listen");
    *port = ntohs(a.sin_port);
    return fd;
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

/* ---- the client (a child process) ---------------------------------------------------- */

struct result {
    double secs;
    long trips;
    long long bytes;
    double p50_us, p99_us;
    int ok;
};

struct conn {
    int fd;
    size_t out, in; /* bytes of the current request written / echo read */
    double t0;
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void client(uint16_t port, int nconns, size_t size, bool stream, double dur, int out_fd)
{
    struct result r = {0};
    int ep = epoll_create1(0);
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    char *buf = malloc(size), *sink = malloc(1 << 16);
    memset(buf, 'x', size);
    size_t maxlat = 1 << 20;
    double *lat = malloc(maxlat * sizeof *lat);
    size_t nlat = 0;
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons(port)};
        if (connect(fd, (struct sockaddr *)&a, sizeof a))
            die("client connect");
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double start = now_s(), end = start + dur;
    for (int i = 0; i < nconns; i++)
        cs[i].t0 = start;
    struct epoll_event evs[256];
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = &cs[evs[k].data.u32];
            for (int spins = 0; spins < 64; spins++) { /* edge-triggered: until it would block */
                bool progress = false;
                if (stream || c->out < size) {
                    size_t want = stream ? size : size - c->out;
                    ssize_t w = send(c->fd, buf, want, MSG_DONTWAIT | MSG_NOSIGNAL);
                    if (w > 0) {
                        c->out += (size_t)w;
                        progress = true;
                    }
                }
                ssize_t rd = recv(c->fd, sink, stream ? (1 << 16) : size - c->in, MSG_DONTWAIT);
                if (rd > 0) {
                    r.bytes += rd;
                    progress = true;
                    if (!stream) {
                        c->in += (size_t)rd;
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
    if (nlat) {
        qsort(lat, nlat, sizeof *lat, cmp_d);
        r.p50_us = lat[nlat / 2];
        r.p99_us = lat[nlat * 99 / 100];
    }
    r.ok = 1;
    for (int i = 0; i < nconns; i++)
        close(cs[i].fd);
    if (write(out_fd, &r, sizeof r) != sizeof r)
        _exit(1);
    _exit(0);
}

/* Run the client in a child process against `port`. */
static struct result run_client(uint16_t port, int nconns, size_t size, bool stream, double dur)
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
    if (read(p[0], &r, sizeof r) != sizeof r)
        r.ok = 0;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return r;
}

/* ---- the rt server ------------------------------------------------------------------------ */

static void rt_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    rt_io_own(fd);
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    static _Thread_local char unused;
    (void)unused;
    char *buf = malloc(1 << 16);
    rt_at_exit(free, buf);
    for (;;) {
        ssize_t n = rt_recv(fd, buf, 1 << 16, RT_INFINITY);
        if (n <= 0 || rt_send_all(fd, buf, (size_t)n, RT_INFINITY) != n)
            return;
    }
}

static void rt_acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    rt_io_own(l);
    for (;;) {
        int fd = rt_accept(l, NULL, NULL, RT_INFINITY);
        if (fd < 0)
            return;
        rt_io_disown(fd);
        if (rt_spawn(rt_conn, (void *)(intptr_t)fd, NULL, NULL))
            close(fd);
    }
}

static struct result rt_server(int backend, int nconns, size_t size, bool stream, double dur,
                               double *sys_per)
{
    /* one scheduler on the server's CPU, as the blocking server's threads */
    if (rt_start(&(rt_opts){.schedulers = 1, .io = backend}) != 0)
        die("rt_start");
    uint16_t port;
    int l = listener(&port);
    rt_spawn(rt_acceptor, (void *)(intptr_t)l, NULL, NULL);
    rt_stats s0, s1;
    rt_stats_get(&s0);
    struct result r = run_client(port, nconns, size, stream, dur);
    rt_stats_get(&s1);
    rt_stats leaks;
    if (rt_stop(2000, &leaks) != 0 || leaks.procs_live || leaks.msgs_live)
        die("rt_stop");
    double units = stream ? (double)r.bytes / (double)size : (double)r.trips;
    *sys_per = units > 0 ? (double)(s1.io_syscalls - s0.io_syscalls) / units : 0;
    return r;
}

/* ---- the blocking server ------------------------------------------------------------------- */

static _Atomic long blk_syscalls;

static void *blk_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    char *buf = malloc(1 << 16);
    long calls = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, 1 << 16, 0);
        calls++;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            calls++;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    atomic_fetch_add(&blk_syscalls, calls);
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
        pthread_t t;
        if (pthread_create(&t, &a, blk_conn, (void *)(intptr_t)fd))
            close(fd);
    }
}

static struct result blk_server(int nconns, size_t size, bool stream, double dur, double *sys_per)
{
    uint16_t port;
    int l = listener(&port);
    pthread_t acc;
    atomic_store(&blk_syscalls, 0);
    pthread_create(&acc, NULL, blk_acceptor, (void *)(intptr_t)l);
    struct result r = run_client(port, nconns, size, stream, dur);
    shutdown(l, SHUT_RDWR);
    pthread_join(acc, NULL);
    close(l);
    usleep(200000); /* the connection threads see the client's close */
    double units = stream ? (double)r.bytes / (double)size : (double)r.trips;
    *sys_per = units > 0 ? (double)atomic_load(&blk_syscalls) / units : 0;
    return r;
}

/* ---- main -------------------------------------------------------------------------------------
 */

/* The index of the median of v[0..n) (the lower middle for even n). */
static int median_index(const double *v, int n)
{
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            below += v[j] < v[i];
            equal += v[j] == v[i];
        }
        if (below <= (n - 1) / 2 && below + equal > (n - 1) / 2)
            return i;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bool quick = false;
    int runs = 0;
    FILE *csv = NULL;
    int only_conns = 0;
    size_t only_size = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv = fopen(argv[++i], "w");
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            only_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: io_echo [--quick] [--runs N] [--csv FILE] [--conns N] "
                            "[--size BYTES]\n");
            return 2;
        }
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        server_cpu = 0;
        client_cpu = 1;
        pin(server_cpu); /* threads made from here on inherit it */
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);
    double dur = quick ? 0.4 : 2.0;
    if (runs <= 0 || runs > 9)
        runs = quick ? 3 : 5;
    int conns[] = {1, 10, 100, 1000};
    size_t sizes[] = {64, 1024, 16384, 65536};
    if (csv)
        fprintf(csv, "mode,conns,size,server,rate,unit,p50_us,p99_us,syscalls_per_unit\n");
    printf("server: rt processes on 1 scheduler (io_uring / epoll) or a thread per connection,\n"
           "pinned to CPU %d; client: a separate process, one epoll thread, pinned to CPU %d.\n"
           "%.1f s per run, median of %d runs per point. ratio = io_uring / peer.\n\n",
           server_cpu, client_cpu, dur, runs);
    printf("%-6s %5s %6s | %12s %12s %12s | %6s %6s | %7s %7s %7s | %s\n", "mode", "conns", "size",
           "io_uring", "epoll", "blocking", "/epoll", "/block", "sys/op", "sys/op", "sys/op",
           "p50/p99 us (io_uring, epoll, blocking)");
    for (int mode = 0; mode < 2; mode++) {
        bool stream = mode == 1;
        for (unsigned ci = 0; ci < 4; ci++) {
            if (only_conns && conns[ci] != only_conns)
                continue;
            for (unsigned si = 0; si < 4; si++) {
                if (only_size && sizes[si] != only_size)
                    continue;
                /* `runs` rounds, servers interleaved so that drift in the
                 * machine hits all three alike; each figure is the median
                 * run (by rate), with its latency and system calls */
                struct result r[3], all[3][9];
                double sys[3], allsys[3][9], v[3], rates[3][9];
                for (int run = 0; run < runs; run++) {
                    fprintf(stderr, "[%s %d conns %zu B] run %d/%d\n", stream ? "stream" : "rr",
                            conns[ci], sizes[si], run + 1, runs);
                    all[0][run] =
                        rt_server(RT_IO_URING, conns[ci], sizes[si], stream, dur, &allsys[0][run]);
                    all[1][run] =
                        rt_server(RT_IO_EPOLL, conns[ci], sizes[si], stream, dur, &allsys[1][run]);
                    all[2][run] = blk_server(conns[ci], sizes[si], stream, dur, &allsys[2][run]);
                    for (int k = 0; k < 3; k++) {
                        if (!all[k][run].ok)
                            die("a client failed");
                        rates[k][run] = stream ? (double)all[k][run].bytes / all[k][run].secs / 1e6
                                               : all[k][run].trips / all[k][run].secs;
                    }
                }
                for (int k = 0; k < 3; k++) {
                    int med = median_index(rates[k], runs);
                    r[k] = all[k][med];
                    sys[k] = allsys[k][med];
                    v[k] = rates[k][med];
                }
                const char *unit = stream ? "MB/s" : "trips/s";
                printf("%-6s %5d %6zu | %12.0f %12.0f %12.0f | %6.2f %6.2f | %7.2f %7.2f %7.2f | "
                       "%.0f/%.0f %.0f/%.0f %.0f/%.0f  (%s)\n",
                       stream ? "stream" : "rr", conns[ci], sizes[si], v[0], v[1], v[2],
                       v[1] > 0 ? v[0] / v[1] : 0, v[2] > 0 ? v[0] / v[2] : 0, sys[0], sys[1],
                       sys[2], r[0].p50_us, r[0].p99_us, r[1].p50_us, r[1].p99_us, r[2].p50_us,
                       r[2].p99_us, unit);
                fflush(stdout);
                const char *names[3] = {"rt-io_uring", "rt-epoll", "blocking-threads"};
                for (int k = 0; csv && k < 3; k++)
                    fprintf(csv, "%s,%d,%zu,%s,%.1f,%s,%.1f,%.1f,%.2f\n", stream ? "stream" : "rr",
                            conns[ci], sizes[si], names[k], v[k], unit, r[k].p50_us, r[k].p99_us,
                            sys[k]);
            }
        }
    }
    if (csv)
        fclose(csv);
    return 0;
}
