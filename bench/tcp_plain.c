/* tcp_plain.c: bench/esock_tcp's plain C program, what a C programmer
 * writes without esock: blocking sockets with TCP_NODELAY, a thread per
 * socket (the setup server a thread per accepted connection); one send(2)
 * per message (length and payload from one buffer), and reads of up to
 * 256 KiB cut into messages in place.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <esock/esock.h>

#include "tcp_bench.h"

#define RD_BUF (256u << 10) /* the receivers' read buffer */

static void pl_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt(TCP_NODELAY)", -errno);
}

static int pl_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0 || listen(fd, 1024) < 0)
        die("bind/listen", -errno);
    *port = ntohs(a.sin_port);
    return fd;
}

static int pl_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (fd < 0)
        return -errno;
    pl_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int pl_accept(int l)
{
    for (;;) {
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s >= 0) {
            pl_nodelay(s);
            return s;
        }
        if (errno != EINTR && errno != ECONNABORTED)
            return -errno;
    }
}

/* Write all of (p, len). 0 or -errno. */
static int pl_send_all(int fd, const void *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p = (const char *)p + w;
        len -= (size_t)w;
    }
    return 0;
}

/* Cutting a byte stream into messages, in place in one read buffer. */
struct frd {
    int fd;
    unsigned char *buf;
    size_t cap, start, end;
};

static int frd_init(struct frd *r, int fd, size_t max_msg)
{
    r->fd = fd;
    r->cap = RD_BUF + 4 + max_msg;
    r->start = r->end = 0;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : -ENOMEM;
}

/* The next message: 1 with (*p, *len) in the buffer until the next call, 0
 * at the peer's end between messages, -EPROTO at its end inside one,
 * -EMSGSIZE, -errno. */
static int frd_next(struct frd *r, const unsigned char **p, size_t *len)
{
    for (;;) {
        size_t have = r->end - r->start;
        if (have >= 4) {
            uint32_t be;
            memcpy(&be, r->buf + r->start, 4);
            size_t n = ntohl(be);
            if (n > r->cap - 4)
                return -EMSGSIZE;
            if (have >= 4 + n) {
                *p = r->buf + r->start + 4;
                *len = n;
                r->start += 4 + n;
                return 1;
            }
            if (r->start + 4 + n > r->cap) { /* no room for its rest: to the front */
                memmove(r->buf, r->buf + r->start, have);
                r->start = 0, r->end = have;
            }
        } else if (r->start == r->end) {
            r->start = r->end = 0;
        } else if (r->cap - r->end < 4) {
            memmove(r->buf, r->buf + r->start, have);
            r->start = 0, r->end = have;
        }
        ssize_t got = recv(r->fd, r->buf + r->end, r->cap - r->end, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return r->end == r->start ? 0 : -EPROTO;
        r->end += (size_t)got;
    }
}

struct pl_flow {
    struct flow *f;
    int fd;
    size_t size;
    bool framed;
    double dur;
};

static void *pl_sender(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    unsigned char *buf = malloc(p->size + 4);
    uint32_t be = htonl((uint32_t)p->size);
    memcpy(buf, &be, 4);
    if (p->framed)
        msg_fill(buf + 4, p->size, 0);
    f->t0 = now_s();
    double end = f->t0 + p->dur;
    uint64_t n = 0, off = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        int rc;
        if (p->framed) {
            msg_set_seq(buf + 4, n);
            rc = pl_send_all(p->fd, buf, p->size + 4);
        } else {
            rc = pl_send_all(p->fd, bulk_pat + off % PERIOD, p->size);
        }
        if (rc < 0) {
            f->err = rc, f->what = "send";
            break;
        }
        n++;
        off += p->size;
    }
    free(buf);
    f->sent = n;
    f->sent_bytes = off;
    shutdown(p->fd, SHUT_WR);
    return NULL;
}

static void *pl_receiver(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    if (p->framed) {
        struct frd r;
        if (frd_init(&r, p->fd, p->size) < 0) {
            f->rerr = -ENOMEM, f->rwhat = "malloc";
            return NULL;
        }
        for (;;) {
            const unsigned char *m;
            size_t len;
            int rc = frd_next(&r, &m, &len);
            if (rc <= 0) {
                f->t1 = now_s();
                if (rc == 0)
                    f->ended = true;
                else
                    f->rerr = rc, f->rwhat = "recv";
                break;
            }
            f->bad = f->bad || !msg_ok(m, len, p->size, f->got);
            f->got++;
            f->got_bytes += len;
        }
        free(r.buf);
        return NULL;
    }
    unsigned char *buf = malloc(RD_BUF);
    for (;;) {
        ssize_t n = recv(p->fd, buf, RD_BUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            f->t1 = now_s();
            if (n == 0)
                f->ended = true;
            else
                f->rerr = -errno, f->rwhat = "recv";
            break;
        }
        f->bad = f->bad || !bulk_ok(buf, (size_t)n, f->got_bytes);
        f->got++;
        f->got_bytes += (size_t)n;
    }
    free(buf);
    return NULL;
}

static pthread_t pl_thread(void *(*fn)(void *), void *arg, bool detach)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (detach)
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &a, fn, arg);
    pthread_attr_destroy(&a);
    if (rc)
        die("pthread_create", -rc);
    return t;
}

struct result pl_stream(int n, size_t size, bool framed, double dur)
{
    struct flow *f = calloc((size_t)n, sizeof *f);
    struct pl_flow *snd = calloc((size_t)n, sizeof *snd), *rcv = calloc((size_t)n, sizeof *rcv);
    pthread_t *st = calloc((size_t)n, sizeof *st), *rt = calloc((size_t)n, sizeof *rt);
    if (!f || !snd || !rcv || !st || !rt)
        die("calloc", -ENOMEM);
    uint16_t port;
    int l = pl_listener(&port);
    for (int i = 0; i < n; i++) {
        int c = pl_connect(port), s = c < 0 ? c : pl_accept(l);
        if (c < 0 || s < 0)
            die("connect/accept", c < 0 ? c : s);
        snd[i] = (struct pl_flow){&f[i], c, size, framed, dur};
        rcv[i] = (struct pl_flow){&f[i], s, size, framed, dur};
    }
    for (int i = 0; i < n; i++)
        rt[i] = pl_thread(pl_receiver, &rcv[i], false);
    for (int i = 0; i < n; i++)
        st[i] = pl_thread(pl_sender, &snd[i], false);
    for (int i = 0; i < n; i++) {
        pthread_join(st[i], NULL);
        pthread_join(rt[i], NULL);
    }
    struct result r = total("plain", f, n, size, framed);
    for (int i = 0; i < n; i++) {
        close(snd[i].fd);
        close(rcv[i].fd);
    }
    close(l);
    free(f), free(snd), free(rcv), free(st), free(rt);
    return r;
}

struct pl_rr {
    struct rr_flow *c;
    int fd;
    double dur;
};

static void *pl_rr_client(void *arg)
{
    struct pl_rr *x = arg;
    struct rr_flow *c = x->c;
    unsigned char buf[4 + RR_SIZE];
    uint32_t be = htonl(RR_SIZE);
    memcpy(buf, &be, 4);
    msg_fill(buf + 4, RR_SIZE, 0);
    struct frd r;
    if (frd_init(&r, x->fd, RR_SIZE) < 0) {
        c->err = -ENOMEM, c->what = "malloc";
        return NULL;
    }
    c->t0 = now_s();
    double end = c->t0 + x->dur, t = c->t0;
    while (t < end) {
        msg_set_seq(buf + 4, c->trips);
        int rc = pl_send_all(x->fd, buf, sizeof buf);
        if (rc < 0) {
            c->err = rc, c->what = "send";
            break;
        }
        const unsigned char *m;
        size_t len;
        rc = frd_next(&r, &m, &len);
        if (rc <= 0 || !msg_ok(m, len, RR_SIZE, c->trips)) {
            c->err = rc < 0 ? rc : -EBADMSG, c->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&c->lat, (t2 - t) * 1e6);
        c->trips++;
        t = t2;
    }
    c->t1 = t;
    /* a graceful end both ways, as esock's */
    shutdown(x->fd, SHUT_WR);
    const unsigned char *m;
    size_t len;
    if (c->err == 0 && frd_next(&r, &m, &len) != 0)
        c->err = -EPROTO, c->what = "no clean end";
    free(r.buf);
    return NULL;
}

static void *pl_rr_server(void *arg)
{
    int fd = *(int *)arg;
    struct frd r;
    if (frd_init(&r, fd, 1 << 16) < 0)
        return NULL;
    const unsigned char *m;
    size_t len;
    while (frd_next(&r, &m, &len) > 0)
        if (pl_send_all(fd, m - 4, len + 4) < 0) /* the length is in front of it */
            break;
    shutdown(fd, SHUT_WR);
    free(r.buf);
    return NULL;
}

struct result pl_rr(int n, double dur)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct pl_rr *x = calloc((size_t)n, sizeof *x);
    int *sfd = calloc((size_t)n, sizeof *sfd);
    pthread_t *ct = calloc((size_t)n, sizeof *ct), *stt = calloc((size_t)n, sizeof *stt);
    if (!c || !x || !sfd || !ct || !stt)
        die("calloc", -ENOMEM);
    uint16_t port;
    int l = pl_listener(&port);
    for (int i = 0; i < n; i++) {
        int fd = pl_connect(port);
        sfd[i] = fd < 0 ? fd : pl_accept(l);
        if (fd < 0 || sfd[i] < 0)
            die("connect/accept", fd < 0 ? fd : sfd[i]);
        x[i] = (struct pl_rr){&c[i], fd, dur};
    }
    for (int i = 0; i < n; i++)
        stt[i] = pl_thread(pl_rr_server, &sfd[i], false);
    for (int i = 0; i < n; i++)
        ct[i] = pl_thread(pl_rr_client, &x[i], false);
    for (int i = 0; i < n; i++) {
        pthread_join(ct[i], NULL);
        pthread_join(stt[i], NULL);
        close(x[i].fd);
        close(sfd[i]);
    }
    close(l);
    struct result r = rr_total("plain", "rr", c, n);
    free(c), free(x), free(sfd), free(ct), free(stt);
    return r;
}

/* setup: a thread per accepted connection, which reads until the client's
 * end and closes. */
struct pl_setup_srv {
    int l;
    atomic_ulong accepted, closed, live; /* seq_cst: few, and main polls them */
    atomic_int err;
};

struct pl_conn {
    struct pl_setup_srv *s;
    int fd;
};

static void *pl_setup_conn(void *arg)
{
    struct pl_conn *c = arg;
    char buf[64];
    ssize_t n;
    while ((n = recv(c->fd, buf, sizeof buf, 0)) > 0 || (n < 0 && errno == EINTR))
        ;
    if (n < 0)
        atomic_store(&c->s->err, -errno);
    close(c->fd);
    atomic_fetch_add(&c->s->closed, 1);
    atomic_fetch_sub(&c->s->live, 1);
    free(c);
    return NULL;
}

static void *pl_setup_acceptor(void *arg)
{
    struct pl_setup_srv *s = arg;
    for (;;) {
        int fd = pl_accept(s->l);
        if (fd < 0)
            return NULL; /* the listener was shut down */
        struct pl_conn *c = malloc(sizeof *c);
        if (c == NULL)
            die("malloc", -ENOMEM);
        *c = (struct pl_conn){s, fd};
        atomic_fetch_add(&s->accepted, 1);
        atomic_fetch_add(&s->live, 1);
        pl_thread(pl_setup_conn, c, true);
    }
}

struct pl_setup_cl {
    struct rr_flow *c;
    uint16_t port;
    double dur;
};

static void *pl_setup_client(void *arg)
{
    struct pl_setup_cl *x = arg;
    struct rr_flow *c = x->c;
    c->t0 = now_s();
    double end = c->t0 + x->dur;
    while ((c->t1 = now_s()) < end) {
        int fd = pl_connect(x->port);
        if (fd < 0) {
            c->err = fd, c->what = "connect";
            return NULL;
        }
        shutdown(fd, SHUT_WR);
        char b;
        ssize_t n = recv(fd, &b, 1, 0);
        close(fd);
        if (n != 0) {
            c->err = n < 0 ? -errno : -EPROTO, c->what = "no clean end";
            return NULL;
        }
        c->trips++;
    }
    return NULL;
}

struct result pl_setup(int n, double dur)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct pl_setup_cl *x = calloc((size_t)n, sizeof *x);
    pthread_t *ct = calloc((size_t)n, sizeof *ct);
    if (!c || !x || !ct)
        die("calloc", -ENOMEM);
    uint16_t port;
    struct pl_setup_srv s = {.l = pl_listener(&port)};
    pthread_t at = pl_thread(pl_setup_acceptor, &s, false);
    for (int i = 0; i < n; i++) {
        x[i] = (struct pl_setup_cl){&c[i], port, dur};
        ct[i] = pl_thread(pl_setup_client, &x[i], false);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ct[i], NULL);
    struct result r = rr_total("plain", "setup", c, n);
    r.bytes = 0, r.mbs = 0;
    shutdown(s.l, SHUT_RDWR); /* wakes the acceptor */
    pthread_join(at, NULL);
    for (int i = 0; i < 10000 && atomic_load(&s.live) > 0; i++)
        usleep(1000);
    close(s.l);
    unsigned long want = (unsigned long)r.msgs;
    if (atomic_load(&s.accepted) != want || atomic_load(&s.closed) != want || s.err) {
        fprintf(stderr,
                "esock_tcp: plain setup: %lu connections, the server accepted %lu, "
                "closed %lu (%s)\n",
                want, atomic_load(&s.accepted), atomic_load(&s.closed), esock_strerror(s.err));
        r.ok = false, r.rate = 0;
    }
    free(c), free(x), free(ct);
    return r;
}
