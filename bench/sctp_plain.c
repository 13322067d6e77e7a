/* sctp_plain.c: bench/esock_sctp's peer written the way a C programmer
 * does without esock: one-to-one SCTP sockets, a blocking thread for each,
 * sctp_sendmsg and recvmsg with SCTP_RCVINFO (see esock_sctp.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/sctp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sctp_bench.h"

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
struct result pl_stream(int n, size_t size, double dur)
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

struct result pl_rr(double dur)
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
    if (x.err) {
        fprintf(stderr, "esock_sctp: plain rr: %s: %s\n", x.what, esock_strerror(x.err));
        snprintf(r.why, sizeof r.why, "%s: %s", x.what, esock_strerror(x.err));
    }
    r.rate = x.secs > 0 ? (double)x.trips / x.secs : 0;
    r.bytes = x.trips * 64;
    r.mbs = x.secs > 0 ? (double)r.bytes / x.secs / 1e6 : 0;
    lat_done(&x.lat, &r.p50_us, &r.p99_us);
    close(x.fd);
    close(s);
    close(l);
    return r;
}

/* Association set-up rate: the client connects a new socket (connect(2)
 * returns once the association is up) and waits until the server thread
 * has accepted it, closes it (a graceful SHUTDOWN) and waits until the
 * server thread, reading it to its end, has closed its side, again and
 * again. */
struct pl_setup {
    int l;
    atomic_bool stop;
    sem_t up, ended; /* posted by the server for each association it accepted, saw end */
    uint64_t accepted;
    int err;
    const char *what;
};

static void *pl_setup_server(void *arg)
{
    struct pl_setup *x = arg;
    unsigned char buf[256];
    /* relaxed: a flag to stop polling; the counts are read after the join */
    while (!atomic_load_explicit(&x->stop, memory_order_relaxed)) {
        struct pollfd p = {.fd = x->l, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int s = accept4(x->l, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            x->err = -errno, x->what = "accept";
            break;
        }
        x->accepted++;
        sem_post(&x->up);
        uint32_t ppid;
        ssize_t n;
        while ((n = pl_recv_msg(s, buf, sizeof buf, &ppid)) > 0) {
        }
        close(s);
        /* an association that ended before accept(2) reads as ENOTCONN */
        if (n < 0 && n != -ECONNRESET && n != -ENOTCONN) {
            x->err = (int)n, x->what = "recvmsg on an accepted socket";
            break;
        }
        sem_post(&x->ended);
    }
    return NULL;
}

static int sem_wait_10s(sem_t *s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 10;
    int rc;
    while ((rc = sem_timedwait(s, &t)) < 0 && errno == EINTR) {
    }
    return rc < 0 ? -errno : 0;
}

struct result pl_setup(double dur)
{
    struct pl_setup x = {0};
    uint16_t port;
    x.l = pl_listener(&port, 16);
    atomic_init(&x.stop, false);
    sem_init(&x.up, 0, 0);
    sem_init(&x.ended, 0, 0);
    pthread_t ts = pl_thread(pl_setup_server, &x);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    uint64_t n = 0;
    int err = 0;
    const char *what = NULL;
    double t0 = now_s(), end = t0 + dur, t = t0;
    while (t < end) {
        int fd = pl_socket();
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            err = -errno, what = "connect";
            close(fd);
            break;
        }
        int rc = sem_wait_10s(&x.up);
        close(fd);
        if (rc < 0)
            what = "the server did not accept the association within 10 s";
        else if ((rc = sem_wait_10s(&x.ended)) < 0)
            what = "the server did not see the association end within 10 s";
        if (rc < 0) {
            err = rc;
            fprintf(stderr,
                    "esock_sctp: plain setup: after %llu associations, the server "
                    "accepted %llu%s%s%s%s\n",
                    (unsigned long long)n, (unsigned long long)x.accepted,
                    x.err ? "; the server stopped: " : "", x.err ? x.what : "", x.err ? ": " : "",
                    x.err ? esock_strerror(x.err) : "");
            kernel_diag("setup");
            break;
        }
        n++;
        t = now_s();
    }
    atomic_store_explicit(&x.stop, true, memory_order_relaxed);
    pthread_join(ts, NULL);
    close(x.l);
    sem_destroy(&x.up);
    sem_destroy(&x.ended);
    struct result r = {.ok = err == 0 && x.err == 0, .msgs = n, .secs = t - t0};
    if (!r.ok) {
        snprintf(r.why, sizeof r.why, "%s: %s", err ? what : x.what,
                 esock_strerror(err ? err : x.err));
        fprintf(stderr, "esock_sctp: plain setup: %s\n", r.why);
    } else if (x.accepted != n) {
        r.ok = false;
        snprintf(r.why, sizeof r.why, "the client made %llu, the server accepted %llu",
                 (unsigned long long)n, (unsigned long long)x.accepted);
    }
    r.rate = r.ok && r.secs > 0 ? (double)n / r.secs : 0;
    return r;
}
