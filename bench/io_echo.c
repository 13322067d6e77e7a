/* io_echo: TCP echo over loopback, three servers measured in the same run
 * against the same client:
 *   - rt on io_uring: a stackful process per connection (rt_recv,
 *     rt_send_all), an acceptor process (rt_accept);
 *   - rt on epoll: the same code, rt_opts.io = RT_IO_EPOLL (the control);
 *   - blocking C: a thread per connection doing recv/send.
 * The client is another OS process (forked): one thread, non-blocking
 * sockets and epoll, driving every connection, the same for all three
 * servers. Server and client are pinned to a CPU each (the server's
 * runtime gets one scheduler; the blocking server's threads share its CPU).
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
 * says so. CPU time per message is the server's too (this process's threads:
 * the main thread only waits); the client's CPU use says where it was the
 * limit, as it is when streaming small messages over few connections: there
 * a server that echoes sooner, in smaller pieces, costs the client more
 * receives and so measures slower.
 *
 *   io_echo [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--mode rr|stream]
 *           [--conns N] [--size BYTES] [--window BYTES]
 *
 * --quick: one run of 0.2 s per point (about half a minute on 2 CPUs).
 * --mode, --conns, --size: only the points of that workload, count, size.
 * Without --csv the CSV is printed to stdout after the table.
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
    long long bytes;
    double p50_us, p99_us;
    double cpu; /* the client's CPU time over `secs` */
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

/* Connects, writes one byte to `out_fd` when it starts measuring, then
 * its result when it stops, then closes its connections. */
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
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    if (write(out_fd, "s", 1) != 1)
        _exit(1);
    double start = now_s(), end = start + dur, cpu0 = cpu_self();
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
    r.ok = 1;
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
    uint64_t perf; /* kernel-counted system calls of the server's threads */
    uint64_t self; /* the server's own count */
    double cpu;    /* CPU time of this process: the server's threads (main waits) */
};

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
    return r;
}

/* ---- the servers -------------------------------------------------------------------------- */

enum { SRV_URING, SRV_EPOLL, SRV_BLOCKING, NSRV };
static const char *srv_names[NSRV] = {"rt-io_uring", "rt-epoll", "blocking-threads"};

/* A server runs under a thread of its own, which opens the syscall counter
 * first so that every thread the server makes inherits it (and the client,
 * forked from main, does not). */
struct server {
    int kind;
    uint16_t port;
    int perf_fd;
    int lfd;
    pthread_t acc;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 starting, 1 running, 2 stop asked, 3 stopped */
};

static _Atomic long blk_syscalls;

static void server_counts(struct server *s, struct count *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    c->cpu = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    c->perf = read_counter(s->perf_fd);
    if (s->kind == SRV_BLOCKING) {
        c->self = (uint64_t)atomic_load(&blk_syscalls);
    } else {
        rt_stats st;
        c->self = rt_stats_get(&st) == 0 ? st.io_syscalls : 0;
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
        if (n <= 0 || rt_send_all(fd, buf, (size_t)n, RT_INFINITY) != n)
            break;
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
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            atomic_fetch_add_explicit(&blk_syscalls, 1, memory_order_relaxed);
            if (w <= 0)
                goto out;
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

static void *server_main(void *arg)
{
    struct server *s = arg;
    s->perf_fd = open_syscall_counter();
    s->lfd = listener(&s->port);
    if (s->kind == SRV_BLOCKING) {
        atomic_store(&blk_syscalls, 0);
        pthread_create(&s->acc, NULL, blk_acceptor, (void *)(intptr_t)s->lfd);
    } else {
        /* one scheduler, on the server's CPU like the blocking server's threads */
        rt_opts o = {.schedulers = 1, .io = s->kind == SRV_URING ? RT_IO_URING : RT_IO_EPOLL};
        if (rt_start(&o) != 0)
            die("rt_start");
        rt_spawn(rt_acceptor, (void *)(intptr_t)s->lfd, NULL, NULL);
    }
    set_state(s, 1);
    wait_state(s, 2);
    if (s->kind == SRV_BLOCKING) {
        shutdown(s->lfd, SHUT_RDWR);
        pthread_join(s->acc, NULL);
        close(s->lfd);
        usleep(100000); /* the connection threads see the client's close */
    } else {
        rt_stats leaks;
        if (rt_stop(2000, &leaks) != 0 || leaks.procs_live || leaks.msgs_live)
            die("rt_stop");
    }
    if (s->perf_fd >= 0)
        close(s->perf_fd);
    set_state(s, 3);
    return NULL;
}

struct point {
    struct result r;
    double rate;    /* round trips/s (rr) or MB/s (stream) */
    double mbs;     /* MB/s either way (bytes echoed back to the client) */
    double sys_per; /* server system calls per message */
    double cpu_per; /* server CPU time per message, µs */
    double cli_pct; /* the client's CPU use, % of the run */
    bool perf;      /* sys_per from the kernel's count (else the server's own) */
    long long kmem; /* TCP memory pressure (entries, ms) and drops meanwhile */
};

static struct point measure(int kind, int nconns, size_t size, bool stream, double dur)
{
    struct server s = {.kind = kind, .perf_fd = -1};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pthread_t t;
    long long k0[NTCPMEM], k1[NTCPMEM];
    tcp_mem_read(k0);
    pthread_create(&t, NULL, server_main, &s);
    wait_state(&s, 1);
    struct count d;
    struct point p = {0};
    p.r = run_client(&s, s.port, nconns, size, stream, dur, &d);
    tcp_mem_read(k1);
    p.kmem = tcp_mem_events(k0, k1);
    if (!p.r.ok)
        die("a client failed");
    p.perf = s.perf_fd >= 0;
    set_state(&s, 2);
    pthread_join(t, NULL);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    /* a message: one request (rr) or `size` bytes sent one way (stream) */
    double msgs = stream ? (double)p.r.bytes / (double)size : (double)p.r.trips;
    p.mbs = (double)p.r.bytes / p.r.secs / 1e6;
    p.rate = stream ? p.mbs : msgs / p.r.secs;
    p.sys_per = msgs > 0 ? (double)(p.perf ? d.perf : d.self) / msgs : 0;
    p.cpu_per = msgs > 0 ? d.cpu * 1e6 / msgs : 0;
    p.cli_pct = 100 * p.r.cpu / p.r.secs;
    return p;
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
    double dur = 0;
    const char *csv_path = NULL;
    int only_conns = 0, only_mode = -1; /* mode: 0 rr, 1 stream */
    size_t only_size = 0;
    static const char usage[] = "usage: io_echo [--quick] [--runs N] [--dur SECONDS] [--csv FILE] "
                                "[--mode rr|stream] [--conns N] [--size BYTES] [--window BYTES]\n";
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
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            only_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dur") == 0 && i + 1 < argc)
            dur = atof(argv[++i]);
        else {
            fputs(usage, stderr);
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
    find_tracepoint();
    int probe = open_syscall_counter();
    if (probe < 0)
        syscall_tp_id = -1;
    else
        close(probe);
    if (dur <= 0)
        dur = quick ? 0.2 : 1.0;
    if (runs <= 0 || runs > 9)
        runs = quick ? 1 : 3;
    FILE *csv = NULL;
    char *csv_buf = NULL;
    size_t csv_len = 0;
    csv = csv_path ? fopen(csv_path, "w") : open_memstream(&csv_buf, &csv_len);
    if (csv == NULL)
        die("csv");
    int conns[] = {1, 10, 100, 1000};
    size_t sizes[] = {64, 1024, 16384, 65536};
    fprintf(csv, "mode,conns,size,server,rate,unit,mb_per_s,p50_us,p99_us,syscalls_per_msg,"
                 "syscall_source,tcp_mem_runs,server_cpu_us_per_msg,client_cpu_pct\n");
    printf(
        "servers: rt (1 scheduler; a stackful process per connection) on io_uring and on epoll,\n"
        "and blocking C (a thread per connection), pinned to CPU %d. client: a separate\n"
        "process, one epoll thread, non-blocking sockets, pinned to CPU %d; the same for all.\n"
        "%.2f s per run, median of %d run(s) per point. ratios: io_uring / epoll and\n"
        "io_uring / blocking (>1: io_uring better). sys/msg: the server's system calls per\n"
        "message (rr: per round trip; stream: per `size` bytes), %s.\n",
        server_cpu, client_cpu, dur, runs,
        syscall_tp_id >= 0 ? "counted by the kernel (perf, raw_syscalls:sys_enter)"
                           : "perf unavailable: the servers' own counts");
    if (window_opt == SIZE_MAX)
        printf("stream window: 256 MiB (or tcp_mem's low mark / 4) / conns bytes sent and not\n"
               "yet echoed per connection, at most 4 MiB, at least 2 messages.\n");
    else if (window_opt == 0)
        printf("stream window: none (the kernel's buffers are the only limit).\n");
    else
        printf("stream window: %zu bytes per connection.\n", window_opt);
    printf("cpu us/msg: the server's CPU time per message. client cpu%%: the client's CPU use\n"
           "(near 100: the client is the limit, and a server that answers sooner, in smaller\n"
           "pieces, makes it slower). \"! tcp mem u/e/b\": runs of each server in which the\n"
           "kernel was short of TCP memory (TcpExt TCPMemoryPressures, TCPRcvQDrop: the whole\n"
           "machine's).\n\n");
    printf("%-6s %5s %6s | %10s %10s %10s | %6s %6s | %6s %6s %6s | %6s %6s %6s | %11s | %s\n",
           "mode", "conns", "size", "io_uring", "epoll", "blocking", "/epoll", "/block", "sys/msg",
           "", "", "cpu us", "/msg", "", "client cpu%", "p50/p99 us: io_uring  epoll  blocking");
    double t_start = now_s();
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
                 * the machine hits all three alike; each figure is the
                 * median run (by rate), with its latency and system calls */
                struct point all[NSRV][9], p[NSRV];
                double rates[NSRV][9];
                for (int run = 0; run < runs; run++) {
                    fprintf(stderr, "[%s %d conns %zu B] run %d/%d\n", stream ? "stream" : "rr",
                            conns[ci], sizes[si], run + 1, runs);
                    for (int k = 0; k < NSRV; k++) {
                        all[k][run] = measure(k, conns[ci], sizes[si], stream, dur);
                        rates[k][run] = all[k][run].rate;
                    }
                }
                int short_runs[NSRV] = {0};
                for (int k = 0; k < NSRV; k++) {
                    p[k] = all[k][median_index(rates[k], runs)];
                    for (int run = 0; run < runs; run++)
                        short_runs[k] += all[k][run].kmem > 0;
                }
                double v[NSRV] = {p[0].rate, p[1].rate, p[2].rate};
                printf("%-6s %5d %6zu | %10.0f %10.0f %10.0f | %6.2f %6.2f | %6.2f %6.2f %6.2f | "
                       "%6.2f %6.2f %6.2f | %3.0f %3.0f %3.0f | ",
                       stream ? "stream" : "rr", conns[ci], sizes[si], v[0], v[1], v[2],
                       v[1] > 0 ? v[0] / v[1] : 0, v[2] > 0 ? v[0] / v[2] : 0, p[0].sys_per,
                       p[1].sys_per, p[2].sys_per, p[0].cpu_per, p[1].cpu_per, p[2].cpu_per,
                       p[0].cli_pct, p[1].cli_pct, p[2].cli_pct);
                if (stream)
                    printf("-  (%s)", unit);
                else
                    printf("%.0f/%.0f %.0f/%.0f %.0f/%.0f  (%s)", p[0].r.p50_us, p[0].r.p99_us,
                           p[1].r.p50_us, p[1].r.p99_us, p[2].r.p50_us, p[2].r.p99_us, unit);
                if (short_runs[0] + short_runs[1] + short_runs[2])
                    printf("  ! tcp mem %d/%d/%d of %d", short_runs[0], short_runs[1],
                           short_runs[2], runs);
                printf("\n");
                fflush(stdout);
                for (int k = 0; k < NSRV; k++)
                    fprintf(csv, "%s,%d,%zu,%s,%.1f,%s,%.2f,%.1f,%.1f,%.2f,%s,%d,%.3f,%.0f\n",
                            stream ? "stream" : "rr", conns[ci], sizes[si], srv_names[k], v[k],
                            unit, p[k].mbs, stream ? 0 : p[k].r.p50_us, stream ? 0 : p[k].r.p99_us,
                            p[k].sys_per, p[k].perf ? "perf" : "self", short_runs[k], p[k].cpu_per,
                            p[k].cli_pct);
            }
        }
    }
    printf("\n%.1f s in all\n", now_s() - t_start);
    fclose(csv);
    if (csv_path == NULL) {
        printf("\n%s", csv_buf);
        free(csv_buf);
    }
    return 0;
}
