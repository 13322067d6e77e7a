/* esock_sctp: esock against a plain blocking libsctp program doing the same
 * work over 127.0.0.1, measured in the same run:
 *
 *   - stream: one-way streaming over 1 association (or, with --assocs N,
 *     over N in parallel, aggregate), messages of 64 B, 1 KiB, 16 KiB,
 *     64 KiB on stream 0 with a payload protocol id; messages/s and MB/s
 *     at the receiver;
 *   - rr: request/response of 64 B over one association (ping-pong):
 *     round trips/s, p50 and p99 latency.
 *
 * esock: the sending side of each association is a stackful process that
 * made it (esock_assoc_create, so it is its owner) and calls esock_send in
 * a loop, waiting for ESOCK_MSG_SEND_READY (rt_receive_tag) when it gets
 * ESOCK_EWOULDBLOCK; the receiving side is a stackful process registered as
 * an owner of the server endpoint, taking ESOCK_MSG_DATA messages and
 * freeing them. Endpoints use esock's defaults (1 MiB SO_SNDBUF/SO_RCVBUF,
 * SCTP_NODELAY, 4 MiB send queue). The runtime has one scheduler per CPU.
 *
 * plain: what a C programmer writes without esock: one-to-one style
 * sockets (SOCK_STREAM, IPPROTO_SCTP), a blocking thread per socket,
 * sctp_sendmsg to send and recvmsg with SCTP_RCVINFO to receive, SCTP_NODELAY
 * and 1 MiB SO_SNDBUF/SO_RCVBUF set on every socket.
 *
 * Each sender runs for a fixed time, then sends an end marker (another ppid)
 * carrying how many messages and bytes it sent; its receiver checks that it
 * got exactly those, each message whole (MSG_EOR, `size` bytes, the data
 * ppid), and takes the time the marker arrived: a rate is what the receivers
 * got divided by the time from the first sender's start to the last
 * receiver's end marker. Any loss, a wrong size or a hang exits non-zero.
 *
 *   esock_sctp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--size BYTES]
 *              [--assocs N] [--schedulers N] [--io-buf-size BYTES] [--epoll]
 *
 * --assocs N (N > 1): only the streaming case, over N associations at once,
 * each with its own sender and receiver (not in the default set: in the
 * test VM esock's receivers stall there with 100).
 * --schedulers, --io-buf-size, --epoll: the runtime's options (rt_opts), to
 * look into a stall: esock over io_uring stalls on messages larger than one
 * provided buffer (16 KiB by default), not with bigger buffers or epoll.
 * A failing case is not run again (its timeouts cost 25 s).
 *
 * --quick: one run of 1 s per point (well under a minute, even in the
 * test VM); default: the median of 3 runs of 2 s (2-3 minutes in the VM).
 * The CSV goes to build/bench/esock_sctp.csv under the current directory
 * unless --csv names a file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/sctp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <esock/esock.h>
#include <rt/rt.h>

#define PPID_DATA  51u
#define PPID_END   52u
#define PPID_PING  53u
#define TAG_DONE   7u        /* receiver -> esock sender: your end marker arrived */
#define BUFSZ      (1 << 20) /* SO_SNDBUF / SO_RCVBUF of the plain program: esock's default */
#define MAX_ASSOCS 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "esock_sctp: %s: %s\n", what, esock_strerror(err));
    exit(1);
}

/* The end marker: what its sender sent before it. */
struct end_marker {
    uint64_t msgs, bytes;
    rt_pid sender; /* esock: whom to tell it arrived */
};

/* One association's figures, filled by its sender and its receiver. */
struct flow {
    size_t size;
    double dur;
    /* the sender's */
    double t0;
    uint64_t sent, sent_bytes;
    int err;
    /* the receiver's */
    double t1;
    uint64_t got, got_bytes, bad; /* bad: a message of the wrong size or ppid */
    struct end_marker end;
    bool ended;
    int rerr;
    const char *what;  /* what went wrong, when err or rerr */
    esock_assoc assoc; /* esock: the association this side has */
};

/* The total of one measurement. */
struct result {
    double secs;
    uint64_t msgs, bytes;
    double rate, mbs; /* messages (or round trips)/s, MB/s */
    double p50_us, p99_us;
    bool ok;
};

/* Sum up the flows. Receiver i need not have sender i's association (an
 * accept callback or accept(2) pairs them), so each receiver is checked
 * against the end marker it got, and the totals against what was sent. */
static struct result total(const char *peer, struct flow *f, struct flow *rf, int n)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    uint64_t sent = 0, sent_bytes = 0;
    for (int i = 0; i < n; i++) {
        if (f[i].err) {
            fprintf(stderr, "esock_sctp: %s, sender %d of %d, %zu B: %s: %s (sent %llu msgs)\n",
                    peer, i + 1, n, f[i].size, f[i].what, esock_strerror(f[i].err),
                    (unsigned long long)f[i].sent);
            r.ok = false;
        }
        if (rf[i].rerr || !rf[i].ended || rf[i].bad || rf[i].got != rf[i].end.msgs ||
            rf[i].got_bytes != rf[i].end.bytes) {
            fprintf(stderr,
                    "esock_sctp: %s, receiver %d of %d, %zu B: received %llu msgs (%llu B), "
                    "%llu bad, end marker %s (its sender sent %llu msgs, %llu B)%s%s%s\n",
                    peer, i + 1, n, rf[i].size, (unsigned long long)rf[i].got,
                    (unsigned long long)rf[i].got_bytes, (unsigned long long)rf[i].bad,
                    rf[i].ended ? "received" : "NOT received", (unsigned long long)rf[i].end.msgs,
                    (unsigned long long)rf[i].end.bytes, rf[i].rerr ? "; " : "",
                    rf[i].rerr ? rf[i].what : "", rf[i].rerr ? "" : "");
            r.ok = false;
        }
        sent += f[i].sent;
        sent_bytes += f[i].sent_bytes;
        r.msgs += rf[i].got;
        r.bytes += rf[i].got_bytes;
        if (f[i].t0 > 0 && f[i].t0 < t0)
            t0 = f[i].t0;
        if (rf[i].t1 > t1)
            t1 = rf[i].t1;
    }
    if (r.ok && (r.msgs != sent || r.bytes != sent_bytes)) {
        fprintf(stderr, "esock_sctp: %s, %zu B: %llu msgs (%llu B) sent, %llu (%llu B) received\n",
                peer, f[0].size, (unsigned long long)sent, (unsigned long long)sent_bytes,
                (unsigned long long)r.msgs, (unsigned long long)r.bytes);
        r.ok = false;
    }
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    return r;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Round-trip times, in microseconds. */
struct lat {
    double *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, double us)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 65536;
        double *nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL)
            return;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = us;
}

static void lat_done(struct lat *l, struct result *r)
{
    if (l->n) {
        qsort(l->v, l->n, sizeof *l->v, cmp_d);
        r->p50_us = l->v[l->n / 2];
        r->p99_us = l->v[l->n * 99 / 100];
    }
    free(l->v);
    *l = (struct lat){0};
}

static unsigned char *pattern(size_t size)
{
    unsigned char *b = malloc(size);
    if (b == NULL)
        die("malloc", -ENOMEM);
    for (size_t i = 0; i < size; i++)
        b[i] = (unsigned char)(i * 7 + 1);
    return b;
}

/* ================================ esock ================================ */

/* What esock says of an association that stalled. */
static void es_diag(const char *who, esock_assoc a)
{
    esock_assoc_info in;
    int rc = esock_assoc_status(a, &in);
    if (rc < 0) {
        fprintf(stderr, "esock_sctp:   %s: esock_assoc_status: %s\n", who, esock_strerror(rc));
        return;
    }
    rt_stats st = {0};
    rt_stats_get(&st);
    fprintf(stderr,
            "esock_sctp:   %s: state %d, kernel state %d, esock send queue %zu B, unacked %u, "
            "pending %u, peer rwnd %u, cwnd %u, srtt %u ms, rto %u ms; runtime: %llu msgs live\n",
            who, in.state, in.kernel_state, in.queued, in.unacked, in.pending, in.peer_rwnd,
            in.cwnd, in.srtt_ms, in.rto_ms, (unsigned long long)st.msgs_live);
}

static rt_msg *es_wait_tag(uint32_t tag, int ms)
{
    rt_msg *m = NULL;
    return rt_receive_tag(tag, ms, &m) == 0 ? m : NULL;
}

struct es_send_arg {
    struct flow *f;
    esock_ep cep;
    uint16_t port;
};

/* Connect from `cep`, wait for the association, send for f->dur. */
static void es_sender(void *arg)
{
    struct es_send_arg *a = arg;
    struct flow *f = a->f;
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    esock_assoc as;
    int rc = esock_assoc_create(a->cep, &ra, 1, a->port, NULL, &as);
    if (rc < 0) {
        f->err = rc, f->what = "esock_assoc_create";
        return;
    }
    rt_msg *m = es_wait_tag(ESOCK_MSG_ASSOC_UP, 30000);
    if (m == NULL) {
        f->err = -ETIMEDOUT, f->what = "no ESOCK_MSG_ASSOC_UP within 30 s";
        return;
    }
    rt_msg_free(m);
    f->assoc = as;
    unsigned char *buf = pattern(f->size);
    f->t0 = now_s();
    double end = f->t0 + f->dur;
    uint64_t n = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        rc = esock_send(as, 0, PPID_DATA, 0, buf, f->size, NULL);
        if (rc == 0) {
            n++;
            continue;
        }
        if (rc != ESOCK_EWOULDBLOCK) {
            f->err = rc, f->what = "esock_send";
            break;
        }
        m = es_wait_tag(ESOCK_MSG_SEND_READY, 10000);
        if (m == NULL) {
            f->err = -ETIMEDOUT, f->what = "no ESOCK_MSG_SEND_READY within 10 s";
            es_diag("sending side, after 10 s without SEND_READY", as);
            break;
        }
        rt_msg_free(m);
    }
    f->sent = n;
    f->sent_bytes = n * f->size;
    free(buf);
    if (f->err)
        return;
    struct end_marker em = {n, n * f->size, rt_self()};
    while ((rc = esock_send(as, 0, PPID_END, 0, &em, sizeof em, NULL)) == ESOCK_EWOULDBLOCK) {
        m = es_wait_tag(ESOCK_MSG_SEND_READY, 30000);
        if (m == NULL) {
            rc = -ETIMEDOUT;
            break;
        }
        rt_msg_free(m);
    }
    if (rc < 0) {
        f->err = rc, f->what = "esock_send (end marker)";
        return;
    }
    /* stay the association's owner until the receiver has everything: an
     * owner that ends closes its association */
    m = es_wait_tag(TAG_DONE, 10000);
    if (m == NULL) {
        f->err = -ETIMEDOUT, f->what = "the receiver never confirmed the end marker (10 s)";
        es_diag("sending side, 10 s after its end marker", as);
    }
    rt_msg_free(m);
}

/* Receive one association's messages until its end marker. */
static void es_receiver(void *arg)
{
    struct flow *f = arg;
    for (;;) {
        rt_msg *m;
        int rc = rt_receive(15000, &m);
        if (rc < 0) {
            f->rerr = rc, f->what = "the receiver got nothing for 15 s";
            fprintf(stderr, "esock_sctp: a receiver stalled after %llu messages (%llu B)\n",
                    (unsigned long long)f->got, (unsigned long long)f->got_bytes);
            es_diag("receiving side", f->assoc);
            return;
        }
        if (m->tag == ESOCK_MSG_ASSOC_UP)
            f->assoc = esock_up_of(m)->assoc;
        if (m->tag == ESOCK_MSG_DATA) {
            const esock_data *d = esock_data_of(m);
            if (d->ppid == PPID_DATA) {
                f->got++;
                f->got_bytes += d->len;
                f->bad += d->len != f->size || d->stream != 0;
            } else if (d->ppid == PPID_END && d->len == sizeof f->end) {
                f->t1 = now_s();
                memcpy(&f->end, d->data, sizeof f->end);
                f->ended = true;
                rt_send(f->end.sender, TAG_DONE, NULL, 0);
                rt_msg_free(m);
                return;
            } else {
                f->bad++;
            }
        } else if (m->tag == ESOCK_MSG_ASSOC_DOWN) {
            f->rerr = ESOCK_ECLOSED, f->what = "the association went down";
            rt_msg_free(m);
            return;
        }
        rt_msg_free(m);
    }
}

/* An accept callback that takes one association, for one receiver. */
static bool take_one(void *arg, esock_assoc assoc, const esock_peer *peer)
{
    atomic_bool *taken = arg;
    /* relaxed: only the endpoint process calls it; atomic for the main
     * thread's read after the run */
    return !atomic_exchange_explicit(taken, true, memory_order_relaxed);
}

static esock_ep es_ep(void)
{
    /* a send queue about the size of the plain program's socket buffer,
     * so that neither side has far more in flight than the other */
    esock_ep_opts o = {.naddrs = 1, .send_hiwat = 256 << 10};
    esock_addr_parse("127.0.0.1", 0, &o.addrs[0]);
    esock_ep ep;
    int rc = esock_ep_create(&o, &ep);
    if (rc < 0)
        die("esock_ep_create", rc);
    return ep;
}

static void es_join(rt_pid p, int ms)
{
    int rc = rt_join(p, ms, NULL);
    if (rc < 0)
        die("rt_join (a benchmark process hangs)", rc);
}

/* `n` associations, each from its own client endpoint to one server
 * endpoint, each with its own sender and receiver process. */
static struct result es_stream(int n, size_t size, double dur)
{
    struct flow *f = calloc((size_t)n, sizeof *f), *rf = calloc((size_t)n, sizeof *rf);
    struct es_send_arg *sa = calloc((size_t)n, sizeof *sa);
    atomic_bool *taken = calloc((size_t)n, sizeof *taken);
    esock_ep *ceps = calloc((size_t)n, sizeof *ceps);
    rt_pid *rp = calloc((size_t)n, sizeof *rp), *sp = calloc((size_t)n, sizeof *sp);
    if (!f || !rf || !sa || !taken || !ceps || !rp || !sp)
        die("calloc", -ENOMEM);
    esock_ep sep = es_ep();
    uint16_t port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    for (int i = 0; i < n; i++) {
        f[i].size = rf[i].size = size;
        f[i].dur = dur;
        atomic_init(&taken[i], false);
        int rc = rt_spawn(es_receiver, &rf[i], &jo, &rp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
        rc = esock_owner_register(sep, rp[i], take_one, &taken[i]);
        if (rc < 0)
            die("esock_owner_register", rc);
        ceps[i] = es_ep();
    }
    for (int i = 0; i < n; i++) {
        sa[i] = (struct es_send_arg){&f[i], ceps[i], port};
        int rc = rt_spawn(es_sender, &sa[i], &jo, &sp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
    }
    int wait_ms = (int)(dur * 1000) + 120000;
    for (int i = 0; i < n; i++) {
        es_join(sp[i], wait_ms);
        es_join(rp[i], wait_ms);
    }
    struct result r = total("esock", f, rf, n);
    for (int i = 0; i < n; i++)
        esock_ep_close(ceps[i]);
    esock_ep_close(sep);
    free(f), free(rf), free(sa), free(taken), free(ceps), free(rp), free(sp);
    return r;
}

/* ping-pong: the client process owns its association and measures. */
struct es_rr {
    esock_ep cep;
    uint16_t port;
    double dur;
    struct lat lat;
    uint64_t trips;
    double secs;
    int err;
    const char *what;
};

static void es_rr_client(void *arg)
{
    struct es_rr *x = arg;
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    esock_assoc as;
    int rc = esock_assoc_create(x->cep, &ra, 1, x->port, NULL, &as);
    if (rc < 0) {
        x->err = rc, x->what = "esock_assoc_create";
        return;
    }
    rt_msg *m = es_wait_tag(ESOCK_MSG_ASSOC_UP, 30000);
    if (m == NULL) {
        x->err = -ETIMEDOUT, x->what = "no ESOCK_MSG_ASSOC_UP";
        return;
    }
    rt_msg_free(m);
    unsigned char *buf = pattern(64);
    double t0 = now_s(), end = t0 + x->dur, t = t0;
    while (t < end) {
        rc = esock_send(as, 0, PPID_PING, 0, buf, 64, NULL);
        if (rc < 0) {
            x->err = rc, x->what = "esock_send";
            break;
        }
        m = es_wait_tag(ESOCK_MSG_DATA, 10000);
        if (m == NULL) {
            x->err = -ETIMEDOUT, x->what = "no reply within 10 s";
            break;
        }
        const esock_data *d = esock_data_of(m);
        bool good = d->len == 64 && d->ppid == PPID_PING && memcmp(d->data, buf, 64) == 0;
        rt_msg_free(m);
        if (!good) {
            x->err = -EBADMSG, x->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&x->lat, (t2 - t) * 1e6);
        x->trips++;
        t = t2;
    }
    x->secs = t - t0;
    free(buf);
    struct end_marker em = {x->trips, 0, rt_self()};
    esock_send(as, 0, PPID_END, 0, &em, sizeof em, NULL);
    m = es_wait_tag(TAG_DONE, 10000);
    rt_msg_free(m);
}

static void es_rr_server(void *arg)
{
    struct es_rr *x = arg;
    for (;;) {
        rt_msg *m;
        if (rt_receive(30000, &m) < 0) {
            x->err = -ETIMEDOUT, x->what = "the echo server got nothing for 30 s";
            return;
        }
        const esock_data *d = esock_data_of(m);
        if (d && d->ppid == PPID_END && d->len == sizeof(struct end_marker)) {
            struct end_marker em;
            memcpy(&em, d->data, sizeof em);
            rt_send(em.sender, TAG_DONE, NULL, 0);
            rt_msg_free(m);
            return;
        }
        if (d) {
            int rc = esock_send(d->assoc, d->stream, d->ppid, 0, d->data, d->len, NULL);
            if (rc < 0) {
                x->err = rc, x->what = "esock_send (echo)";
                rt_msg_free(m);
                return;
            }
        }
        rt_msg_free(m);
    }
}

static struct result es_rr(double dur)
{
    struct es_rr x = {.dur = dur};
    esock_ep sep = es_ep();
    x.cep = es_ep();
    x.port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    rt_pid sp, cp;
    int rc = rt_spawn(es_rr_server, &x, &jo, &sp);
    if (rc == 0)
        rc = esock_owner_register(sep, sp, NULL, NULL);
    if (rc == 0)
        rc = rt_spawn(es_rr_client, &x, &jo, &cp);
    if (rc < 0)
        die("rr set-up", rc);
    es_join(cp, (int)(dur * 1000) + 60000);
    es_join(sp, 60000);
    struct result r = {.ok = x.err == 0, .msgs = x.trips, .secs = x.secs};
    if (x.err)
        fprintf(stderr, "esock_sctp: esock rr: %s: %s\n", x.what, esock_strerror(x.err));
    r.rate = x.secs > 0 ? (double)x.trips / x.secs : 0;
    r.bytes = x.trips * 64;
    r.mbs = x.secs > 0 ? (double)r.bytes / x.secs / 1e6 : 0;
    lat_done(&x.lat, &r);
    esock_ep_close(x.cep);
    esock_ep_close(sep);
    return r;
}

/* ================================ plain ================================ */

static void pl_opts(int fd)
{
    int one = 1, sz = BUFSZ;
    if (setsockopt(fd, IPPROTO_SCTP, SCTP_NODELAY, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz) < 0 ||
        setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &one, sizeof one) < 0)
        die("setsockopt", -errno);
}

static int pl_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_SCTP);
    if (fd < 0)
        die("socket(SOCK_STREAM, IPPROTO_SCTP)", -errno);
    pl_opts(fd);
    return fd;
}

static int pl_listener(uint16_t *port, int backlog)
{
    int fd = pl_socket();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0 || listen(fd, backlog) < 0)
        die("bind/listen", -errno);
    *port = ntohs(a.sin_port);
    return fd;
}

static int pl_connect(uint16_t port)
{
    int fd = pl_socket();
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect", -errno);
    return fd;
}

/* recvmsg one whole message (MSG_EOR) into buf; its length, ppid from
 * SCTP_RCVINFO. Returns the length, 0 at the end of the association, or
 * -errno. Notifications are skipped. */
static ssize_t pl_recv_msg(int fd, unsigned char *buf, size_t cap, uint32_t *ppid)
{
    size_t len = 0;
    bool have_ppid = false;
    for (;;) {
        char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))];
        struct iovec iov = {buf + len, cap - len};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        ssize_t n = recvmsg(fd, &mh, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0 && !(mh.msg_flags & MSG_EOR))
            return 0;
        if (mh.msg_flags & MSG_NOTIFICATION) {
            if (mh.msg_flags & MSG_EOR)
                len = 0;
            continue;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c && !have_ppid; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO) {
                struct sctp_rcvinfo ri;
                memcpy(&ri, CMSG_DATA(c), sizeof ri);
                *ppid = ntohl(ri.rcv_ppid);
                have_ppid = true;
            }
        }
        len += (size_t)n;
        if (mh.msg_flags & MSG_EOR)
            return have_ppid ? (ssize_t)len : -EBADMSG;
        if (len == cap)
            return -EMSGSIZE;
    }
}

static int pl_send(int fd, const void *buf, size_t len, uint32_t ppid)
{
    for (;;) {
        int n = sctp_sendmsg(fd, buf, len, NULL, 0, htonl(ppid), 0, 0, 0, 0);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

struct pl_flow {
    struct flow *f;
    int fd;
};

static void *pl_sender(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    unsigned char *buf = pattern(f->size);
    f->t0 = now_s();
    double end = f->t0 + f->dur;
    uint64_t n = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        int rc = pl_send(p->fd, buf, f->size, PPID_DATA);
        if (rc < 0) {
            f->err = rc, f->what = "sctp_sendmsg";
            break;
        }
        n++;
    }
    free(buf);
    f->sent = n;
    f->sent_bytes = n * f->size;
    struct end_marker em = {n, n * f->size, RT_PID_NONE};
    if (f->err == 0 && pl_send(p->fd, &em, sizeof em, PPID_END) < 0)
        f->err = -errno, f->what = "sctp_sendmsg (end marker)";
    return NULL;
}

static void *pl_receiver(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    size_t cap = f->size > sizeof f->end ? f->size + 1 : sizeof f->end + 1;
    unsigned char *buf = malloc(cap);
    for (;;) {
        uint32_t ppid = 0;
        ssize_t n = pl_recv_msg(p->fd, buf, cap, &ppid);
        if (n <= 0) {
            f->rerr = n < 0 ? (int)n : ESOCK_ECLOSED, f->what = "recvmsg";
            break;
        }
        if (ppid == PPID_DATA) {
            f->got++;
            f->got_bytes += (size_t)n;
            f->bad += (size_t)n != f->size;
        } else if (ppid == PPID_END && (size_t)n == sizeof f->end) {
            f->t1 = now_s();
            memcpy(&f->end, buf, sizeof f->end);
            f->ended = true;
            break;
        } else {
            f->bad++;
        }
    }
    free(buf);
    return NULL;
}

static pthread_t pl_thread(void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    pthread_t t;
    int rc = pthread_create(&t, &a, fn, arg);
    pthread_attr_destroy(&a);
    if (rc)
        die("pthread_create", -rc);
    return t;
}

/* `n` associations, a sender and a receiver thread each. */
static struct result pl_stream(int n, size_t size, double dur)
{
    struct flow *f = calloc((size_t)n, sizeof *f), *rf = calloc((size_t)n, sizeof *rf);
    struct pl_flow *snd = calloc((size_t)n, sizeof *snd), *rcv = calloc((size_t)n, sizeof *rcv);
    pthread_t *st = calloc((size_t)n, sizeof *st), *rt = calloc((size_t)n, sizeof *rt);
    if (!f || !rf || !snd || !rcv || !st || !rt)
        die("calloc", -ENOMEM);
    uint16_t port;
    int l = pl_listener(&port, n + 16);
    for (int i = 0; i < n; i++) {
        f[i].size = rf[i].size = size;
        f[i].dur = dur;
        snd[i] = (struct pl_flow){&f[i], pl_connect(port)};
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0)
            die("accept", -errno);
        pl_opts(s);
        rcv[i] = (struct pl_flow){&rf[i], s};
    }
    /* each accepted socket is some client's: accept order is connect
     * order here, one at a time; either way each receiver checks its own
     * association's end marker */
    for (int i = 0; i < n; i++)
        rt[i] = pl_thread(pl_receiver, &rcv[i]);
    for (int i = 0; i < n; i++)
        st[i] = pl_thread(pl_sender, &snd[i]);
    for (int i = 0; i < n; i++) {
        pthread_join(st[i], NULL);
        pthread_join(rt[i], NULL);
    }
    struct result r = total("plain", f, rf, n);
    for (int i = 0; i < n; i++) {
        close(snd[i].fd);
        close(rcv[i].fd);
    }
    close(l);
    free(f), free(rf), free(snd), free(rcv), free(st), free(rt);
    return r;
}

struct pl_rr {
    int fd;
    double dur;
    struct lat lat;
    uint64_t trips;
    double secs;
    int err;
    const char *what;
};

static void *pl_rr_client(void *arg)
{
    struct pl_rr *x = arg;
    unsigned char *buf = pattern(64), in[128];
    double t0 = now_s(), end = t0 + x->dur, t = t0;
    while (t < end) {
        int rc = pl_send(x->fd, buf, 64, PPID_PING);
        if (rc < 0) {
            x->err = rc, x->what = "sctp_sendmsg";
            break;
        }
        uint32_t ppid = 0;
        ssize_t n = pl_recv_msg(x->fd, in, sizeof in, &ppid);
        if (n != 64 || ppid != PPID_PING || memcmp(in, buf, 64) != 0) {
            x->err = n < 0 ? (int)n : -EBADMSG, x->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&x->lat, (t2 - t) * 1e6);
        x->trips++;
        t = t2;
    }
    x->secs = t - t0;
    free(buf);
    struct end_marker em = {x->trips, 0, RT_PID_NONE};
    pl_send(x->fd, &em, sizeof em, PPID_END);
    return NULL;
}

static void *pl_rr_server(void *arg)
{
    int fd = *(int *)arg;
    unsigned char buf[128];
    for (;;) {
        uint32_t ppid = 0;
        ssize_t n = pl_recv_msg(fd, buf, sizeof buf, &ppid);
        if (n <= 0 || ppid == PPID_END)
            break;
        if (pl_send(fd, buf, (size_t)n, ppid) < 0)
            break;
    }
    return NULL;
}

static struct result pl_rr(double dur)
{
    uint16_t port;
    int l = pl_listener(&port, 4);
    struct pl_rr x = {.dur = dur, .fd = pl_connect(port)};
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0)
        die("accept", -errno);
    pl_opts(s);
    pthread_t ts = pl_thread(pl_rr_server, &s), tc = pl_thread(pl_rr_client, &x);
    pthread_join(tc, NULL);
    pthread_join(ts, NULL);
    struct result r = {.ok = x.err == 0, .msgs = x.trips, .secs = x.secs};
    if (x.err)
        fprintf(stderr, "esock_sctp: plain rr: %s: %s\n", x.what, esock_strerror(x.err));
    r.rate = x.secs > 0 ? (double)x.trips / x.secs : 0;
    r.bytes = x.trips * 64;
    r.mbs = x.secs > 0 ? (double)r.bytes / x.secs / 1e6 : 0;
    lat_done(&x.lat, &r);
    close(x.fd);
    close(s);
    close(l);
    return r;
}

/* ================================ main ================================ */

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

/* mkdir -p of the folder holding `path`. */
static void make_parent(const char *path)
{
    char *p = strdup(path);
    for (char *s = p + 1; p && *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0777);
        *s = '/';
    }
    free(p);
}

enum { ES, PL, NPEER };
static const char *peer_names[NPEER] = {"esock", "plain"};

int main(int argc, char **argv)
{
    bool quick = false, multi = false;
    int runs = 0, only_assocs = 0, many = 100;
    double dur = 0;
    size_t only_size = 0;
    rt_opts ro = {0};
    const char *csv_path = "build/bench/esock_sctp.csv";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dur") == 0 && i + 1 < argc)
            dur = atof(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--assocs") == 0 && i + 1 < argc)
            only_assocs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--schedulers") == 0 && i + 1 < argc)
            ro.schedulers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--io-buf-size") == 0 && i + 1 < argc)
            ro.io_buf_size = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--epoll") == 0)
            ro.io = RT_IO_EPOLL;
        else {
            fprintf(stderr, "usage: esock_sctp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] "
                            "[--size BYTES] [--assocs N]\n"
                            "                  [--schedulers N] [--io-buf-size BYTES] [--epoll]\n");
            return 2;
        }
    }
    if (only_assocs > 1) {
        many = only_assocs > MAX_ASSOCS ? MAX_ASSOCS : only_assocs;
        multi = true;
    }
    if (dur <= 0)
        dur = quick ? 1.0 : 2.0;
    if (runs <= 0 || runs > 9)
        runs = quick ? 1 : 3;
    int rc = esock_sctp_available();
    if (rc < 0) {
        fprintf(stderr,
                "esock_sctp: this kernel has no SCTP (%s): run it in the test VM, "
                "bench/run-sctp\n",
                esock_strerror(rc));
        return 77;
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    make_parent(csv_path);
    FILE *csv = fopen(csv_path, "w");
    if (csv == NULL) {
        fprintf(stderr, "esock_sctp: %s: %s\n", csv_path, strerror(errno));
        return 1;
    }
    rc = rt_start(&ro);
    if (rc == 0)
        rc = esock_start();
    if (rc < 0)
        die("start", rc);
    rt_stats st;
    rt_stats_get(&st);
    struct utsname_like {
        char s[256];
    } kern = {{0}};
    FILE *kv = fopen("/proc/sys/kernel/osrelease", "r");
    if (kv) {
        if (fgets(kern.s, sizeof kern.s, kv))
            kern.s[strcspn(kern.s, "\n")] = '\0';
        fclose(kv);
    }
    printf("esock %s vs plain blocking libsctp over 127.0.0.1, kernel %s, %ld CPU(s).\n"
           "esock: rt with %u schedulers, a sender process (esock_send, waits for SEND_READY) "
           "and a\nreceiver process (owner, ESOCK_MSG_DATA) per association. plain: a "
           "blocking thread per\none-to-one socket (sctp_sendmsg / recvmsg). Both: SCTP_NODELAY, "
           "1 MiB SO_SNDBUF/SO_RCVBUF,\nstream 0. %.2f s per run, median of %d run(s); ratio: "
           "esock / plain (> 1: esock better;\nfor latency < 1 is better). Every message is "
           "counted and checked at the receiver.\n\n",
           esock_version(), kern.s, sysconf(_SC_NPROCESSORS_ONLN), st.schedulers, dur, runs);
    printf("%-6s %6s %6s | %12s %12s %6s | %9s %9s | %s\n", "case", "assocs", "size", "esock",
           "plain", "ratio", "esock MB/s", "plain MB/s", "");
    fprintf(csv, "case,assocs,size,peer,rate,unit,mb_per_s,p50_us,p99_us,msgs,bytes,secs,ok\n");
    static const size_t sizes[] = {64, 1024, 16384, 65536};
    int nassocs[2] = {1, many};
    bool all_ok = true;
    double t_start = now_s();
    /* case 0: stream over 1 association; 1: rr; 2: stream over `many` */
    for (int c = 0; c < 3; c++) {
        if (c == 2 && !multi)
            continue;
        int n = c == 2 ? nassocs[1] : 1;
        if (only_assocs && n != only_assocs)
            continue;
        bool rr = c == 1;
        for (unsigned si = 0; si < 4; si++) {
            size_t size = sizes[si];
            if (rr && size != 64)
                continue;
            if (only_size && size != only_size)
                continue;
            struct result all[NPEER][9], p[NPEER];
            double rates[NPEER][9];
            bool failed[NPEER] = {false, false};
            struct result fres[NPEER];
            for (int run = 0; run < runs; run++) {
                for (int k = 0; k < NPEER; k++) {
                    if (failed[k]) { /* once is enough: a failure costs its timeouts */
                        all[k][run] = fres[k];
                        rates[k][run] = 0;
                        continue;
                    }
                    fprintf(stderr, "[%s %d assoc%s %zu B] %s, run %d/%d\n", rr ? "rr" : "stream",
                            n, n > 1 ? "s" : "", size, peer_names[k], run + 1, runs);
                    if (rr)
                        all[k][run] = k == ES ? es_rr(dur) : pl_rr(dur);
                    else
                        all[k][run] = k == ES ? es_stream(n, size, dur) : pl_stream(n, size, dur);
                    rates[k][run] = all[k][run].rate;
                    all_ok &= all[k][run].ok;
                    if (!all[k][run].ok) {
                        failed[k] = true;
                        fres[k] = all[k][run];
                    }
                }
            }
            for (int k = 0; k < NPEER; k++)
                p[k] = failed[k] ? fres[k] : all[k][median_index(rates[k], runs)];
            const char *unit = rr ? "trips/s" : "msgs/s";
            printf("%-6s %6d %6zu | %12.0f %12.0f %6.2f | %9.1f %9.1f | %s", rr ? "rr" : "stream",
                   n, size, p[ES].rate, p[PL].rate, p[PL].rate > 0 ? p[ES].rate / p[PL].rate : 0,
                   p[ES].mbs, p[PL].mbs, unit);
            if (rr)
                printf("; p50/p99 us: esock %.0f/%.0f plain %.0f/%.0f (ratio %.2f/%.2f)",
                       p[ES].p50_us, p[ES].p99_us, p[PL].p50_us, p[PL].p99_us,
                       p[PL].p50_us > 0 ? p[ES].p50_us / p[PL].p50_us : 0,
                       p[PL].p99_us > 0 ? p[ES].p99_us / p[PL].p99_us : 0);
            if (!p[ES].ok || !p[PL].ok)
                printf("  FAILED");
            printf("\n");
            fflush(stdout);
            for (int k = 0; k < NPEER; k++)
                fprintf(csv, "%s,%d,%zu,%s,%.1f,%s,%.3f,%.1f,%.1f,%llu,%llu,%.3f,%d\n",
                        rr ? "rr" : "stream", n, size, peer_names[k], p[k].rate, unit, p[k].mbs,
                        p[k].p50_us, p[k].p99_us, (unsigned long long)p[k].msgs,
                        (unsigned long long)p[k].bytes, p[k].secs, p[k].ok);
        }
    }
    fclose(csv);
    printf("\n%.1f s in all; CSV in %s\n", now_s() - t_start, csv_path);
    rc = esock_stop();
    rt_stats leaks = {0};
    int src = rt_stop(5000, &leaks);
    if (rc < 0 || src < 0 || leaks.procs_live || leaks.msgs_live) {
        fprintf(stderr,
                "esock_sctp: unclean stop: esock_stop %d, rt_stop %d (%s), %llu processes and "
                "%llu messages left\n",
                rc, src, esock_strerror(src), (unsigned long long)leaks.procs_live,
                (unsigned long long)leaks.msgs_live);
        all_ok = false;
    }
    if (!all_ok) {
        fprintf(stderr, "esock_sctp: FAILED: a receiver did not get every message (above)\n");
        return 1;
    }
    return 0;
}
