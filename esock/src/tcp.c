/* tcp.c: TCP behind esock's API (see "TCP" in esock.h).
 *
 * The endpoint process (ep.c) listens and accepts; the association process
 * (assoc.c) is the same as for SCTP, and calls here for what differs: its
 * own connect (trying the remote addresses in turn), reading a byte stream
 * (as it comes, or cut into messages by a 4-byte big-endian length),
 * writing (a message may go out in parts: the send queue remembers how far
 * it got), and the end of the stream (FIN) in both directions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "assoc.h"

/* Unframed, bulk: a read straight into a message of this size. */
#define ES_TCP_CHUNK (64u << 10)
/* Messages written by one sendmsg(2) when the queue is written (two iovecs
 * each when framed). */
#define ES_TCP_IOV 128
/* Framed: a message up to this size gets its memory when its length comes;
 * a larger one as its bytes come. */
#define ES_FRAME_EAGER (1u << 20)

/* ---- sockets --------------------------------------------------------------------------------- */

static int set_buf(int fd, int force, int plain, int size)
{
    if (size == 0)
        return 0; /* the kernel's autotuning */
    if (setsockopt(fd, SOL_SOCKET, force, &size, sizeof size) == 0)
        return 0;
    return setsockopt(fd, SOL_SOCKET, plain, &size, sizeof size);
}

int es__tcp_set_opts(int fd, const esock_ep_opts *o)
{
    int nd = o->no_nodelay ? 0 : 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, sizeof nd) < 0 ||
        set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, o->sndbuf) < 0 ||
        set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, o->rcvbuf) < 0)
        return -errno;
    if (o->hb_interval_ms) {
        int one = 1;
        int secs = (int)((o->hb_interval_ms + 999) / 1000);
        int probes = o->path_max_retrans    ? o->path_max_retrans
                     : o->assoc_max_retrans ? o->assoc_max_retrans
                                            : 5;
        unsigned user_timeout = o->hb_interval_ms * (unsigned)(probes + 1);
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout) < 0)
            return -errno;
    }
    return 0;
}

static void set_port(esock_addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->in4.sin_port = htons(port);
    else
        a->in6.sin6_port = htons(port);
}

int es__tcp_listen(esock_ep_opts *o, int *fds, unsigned *nfds)
{
    *nfds = 0;
    int rc = 0;
    uint16_t port = o->port;
    for (unsigned i = 0; i < o->naddrs; i++) {
        esock_addr a = o->addrs[i];
        int fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            rc = -errno;
            goto fail;
        }
        fds[(*nfds)++] = fd;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
            rc = -errno;
            goto fail;
        }
        /* several addresses: each family keeps to its own */
        if (a.sa.sa_family == AF_INET6 && o->naddrs > 1 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
            rc = -errno;
            goto fail;
        }
        if ((rc = es__tcp_set_opts(fd, o)) < 0)
            goto fail;
        set_port(&a, port); /* 0 for the first: the kernel's pick, then that one */
        if (bind(fd, &a.sa, (socklen_t)es__addr_len(&a)) < 0 || listen(fd, o->backlog) < 0) {
            rc = -errno;
            goto fail;
        }
        if (i == 0) {
            esock_addr bound;
            socklen_t bl = sizeof bound;
            if (getsockname(fd, &bound.sa, &bl) < 0) {
                rc = -errno;
                goto fail;
            }
            es__sockaddr_port(&bound, &port);
        }
    }
    o->port = port;
    return 0;
fail:
    while (*nfds)
        close(fds[--*nfds]);
    return rc;
}

void es__tcp_fill_peer(int fd, esock_peer *peer)
{
    memset(peer, 0, sizeof *peer);
    socklen_t l = sizeof peer->addrs[0];
    if (getpeername(fd, &peer->addrs[0].sa, &l) == 0) {
        peer->naddrs = 1;
        es__sockaddr_port(&peer->addrs[0], &peer->port);
    }
    peer->ostreams = peer->istreams = 1;
}

static int tcp_info(int fd, struct tcp_info *ti)
{
    memset(ti, 0, sizeof *ti);
    socklen_t l = sizeof *ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &l) < 0 ? -errno : 0;
}

int es__tcp_status(int fd, esock_assoc_info *out)
{
    struct tcp_info ti;
    int rc = tcp_info(fd, &ti);
    if (rc < 0)
        return rc;
    out->kernel_state = ti.tcpi_state;
    out->rto_ms = ti.tcpi_rto / 1000;
    out->srtt_ms = ti.tcpi_rtt / 1000;
    out->cwnd = ti.tcpi_snd_cwnd;
    out->unacked = ti.tcpi_unacked;
    out->pending = ti.tcpi_notsent_bytes;
    out->peer_rwnd = ti.tcpi_snd_wnd;
    out->ostreams = out->istreams = 1;
    return 0;
}

int es__tcp_paths(int fd, const esock_addr *peer, esock_path_info *out, size_t cap)
{
    struct tcp_info ti;
    int rc = tcp_info(fd, &ti);
    if (rc < 0)
        return rc;
    if (cap > 0) {
        memset(out, 0, sizeof *out);
        out->addr = *peer;
        out->state = ESOCK_PATH_AVAILABLE;
        out->primary = true;
        out->cwnd = ti.tcpi_snd_cwnd;
        out->srtt_ms = ti.tcpi_rtt / 1000;
        out->rto_ms = ti.tcpi_rto / 1000;
        out->mtu = ti.tcpi_pmtu;
    }
    return 1;
}

/* ---- connecting --------------------------------------------------------------------------------
 */

/* A connect in flight ends. Its socket may be connected already (the
 * completion not yet seen): when the association is aborted, the close
 * resets that connection, as it would an association that is up. */
static void drop_connect(struct as_st *st, bool abort)
{
    if (st->creq) {
        rt_io_cancel(st->creq);
        st->creq = 0; /* its last completion is not looked at */
    }
    if (st->cfd >= 0) {
        if (abort) {
            struct linger l = {1, 0};
            setsockopt(st->cfd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        es__close_fd(st->cfd); /* after the connect, if it is still queued */
        st->cfd = -1;
    }
}

/* The endpoint's first address of the family, unless it is a wildcard. */
static const esock_addr *local_for(const struct as_st *st, int family)
{
    for (unsigned i = 0; i < st->opts.naddrs; i++) {
        const esock_addr *a = &st->opts.addrs[i];
        if (a->sa.sa_family != family)
            continue;
        bool wild = family == AF_INET ? a->in4.sin_addr.s_addr == htonl(INADDR_ANY)
                                      : IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
        return wild ? NULL : a;
    }
    return NULL;
}

/* Start connecting to the next remote address (conn_idx); when none is
 * left, the association could not start, with the last one's error. */
void es__tcp_connect(struct as_st *st)
{
    drop_connect(st, false); /* the last one failed */
    while (st->conn_idx < st->conn.nremote) {
        const esock_addr *ra = &st->conn.remote[st->conn_idx];
        int fd = socket(ra->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        int rc = fd < 0 ? -errno : es__tcp_set_opts(fd, &st->opts);
        const esock_addr *la = local_for(st, ra->sa.sa_family);
        if (rc == 0 && la != NULL) {
            /* the endpoint's address; the port at connect time, so that
             * many connections do not each hold one from the bind on */
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            esock_addr l = *la;
            set_port(&l, 0);
            if (bind(fd, &l.sa, (socklen_t)es__addr_len(&l)) < 0)
                rc = -errno;
        }
        if (rc == 0 && (rc = rt_io_own(fd)) == 0) {
            rc = rt_io_connect(fd, &ra->sa, (socklen_t)es__addr_len(ra), &st->creq);
            if (rc == 0) {
                st->cfd = fd;
                return;
            }
            rt_io_disown(fd);
        }
        if (fd >= 0)
            close(fd);
        st->cerr = rc;
        st->conn_idx++;
    }
    es__as_stop(st, ESOCK_DOWN_CANT_START, st->cerr ? st->cerr : -ECONNREFUSED, false);
}

void es__tcp_connected(struct as_st *st, const rt_io_result *r)
{
    st->creq = 0;
    if (r->res == 0) {
        int fd = st->cfd;
        st->cfd = -1;
        es__as_go_up(st, fd, 1, 1);
        st->conn_idx = 0;
        return;
    }
    st->cerr = r->res;
    st->conn_idx++;
    es__tcp_connect(st); /* the next address, or the end */
}

void es__tcp_cleanup(struct as_st *st, bool abort)
{
    drop_connect(st, abort);
    if (st->shut_timer) {
        rt_cancel_timer(st->shut_timer);
        st->shut_timer = 0;
    }
    rt_msg_free(st->fm); /* a message half read */
    st->fm = NULL;
    st->fbig = false;
    st->fhlen = 0;
    st->fneed = st->fhave = 0;
}

/* ---- ending ------------------------------------------------------------------------------------
 */

/* esock_assoc_shutdown, with the queue written: a FIN; the end comes with
 * the peer's (read_one), or when the timer the request armed runs out
 * (ES_TCP_SHUTDOWN_MS). */
void es__tcp_shutdown(struct as_st *st)
{
    if (shutdown(st->fd, SHUT_WR) < 0)
        es__as_stop(st, ESOCK_DOWN_SHUTDOWN, -errno, true);
}

/* A read failed with `e` (not EAGAIN): the association is over. */
static int read_failed(struct as_st *st, int e)
{
    es__as_stop(st, es__lost_reason(-e), -e, true);
    return -1;
}

/* The peer ended its stream: everything before it has been delivered. */
static int peer_ended(struct as_st *st)
{
    int err = st->fm != NULL || st->fbig || st->fhlen ? -EPROTO : 0; /* inside a message */
    es__as_stop(st, ESOCK_DOWN_SHUTDOWN, err, false);
    return -1;
}

/* What a recv that gave n <= 0 (errno set) means for read_one. */
static int read_end(struct as_st *st, ssize_t n)
{
    int e = errno;
    if (n == 0)
        return peer_ended(st);
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR ? 0 : read_failed(st, e);
}

/* ---- reading -----------------------------------------------------------------------------------
 */

/* Hand over a data message whose payload (len bytes) is in place. */
static void deliver(struct as_st *st, rt_msg *m, size_t len)
{
    esock_data d = {.assoc = st->h, .ep = st->ep, .len = len};
    d.data = (char *)m->data + sizeof d;
    memcpy(m->data, &d, sizeof d);
    m->size = (uint32_t)(sizeof d + len);
    es__as_deliver_msg(st, m, len);
}

static rt_msg *data_alloc(size_t len)
{
    return rt_msg_alloc(ESOCK_MSG_DATA, sizeof(esock_data) + len + ES_TAG_ROOM);
}

static unsigned char *body(rt_msg *m)
{
    return (unsigned char *)m->data + sizeof(esock_data);
}

/* As it comes: one message per read. */
static int read_raw(struct as_st *st)
{
    rt_msg *dm = NULL;
    unsigned char *buf;
    size_t cap;
    if (st->guess > ES_COPY_MAX && (dm = data_alloc(ES_TCP_CHUNK)) != NULL) {
        buf = body(dm); /* bulk: no copy */
        cap = ES_TCP_CHUNK;
    } else if ((buf = es__as_scratch()) != NULL) {
        cap = ES_SCRATCH;
    } else {
        es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
        return -1;
    }
    ssize_t n = recv(st->fd, buf, cap, MSG_DONTWAIT);
    if (n <= 0) {
        int e = errno;
        rt_msg_free(dm);
        errno = e;
        return read_end(st, n);
    }
    st->guess = (size_t)n;
    if (dm == NULL || (size_t)n <= ES_COPY_MAX) {
        rt_msg *m = data_alloc((size_t)n);
        if (m == NULL) {
            rt_msg_free(dm);
            es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
            return -1;
        }
        memcpy(body(m), buf, (size_t)n);
        rt_msg_free(dm);
        dm = m;
    }
    deliver(st, dm, (size_t)n);
    /* less than there was room for: that was all (saves the read that
     * would say EAGAIN, one system call in two in request/response) */
    return (size_t)n < cap ? ES_READ_DRAINED : 1;
}

/* Framing: take the bytes at p as they continue the stream. Returns 0, or
 * -1 when the association ended (a length beyond max_msg, no memory). */
static int unframe(struct as_st *st, const unsigned char *p, size_t left)
{
    while (left > 0) {
        if (st->fm == NULL && !st->fbig) { /* a length, or the rest of one */
            size_t take = 4 - st->fhlen < left ? 4 - st->fhlen : left;
            memcpy(st->fhdr + st->fhlen, p, take);
            st->fhlen += (unsigned)take;
            p += take;
            left -= take;
            if (st->fhlen < 4)
                return 0;
            uint32_t be;
            memcpy(&be, st->fhdr, 4);
            size_t len = ntohl(be);
            st->fhlen = 0;
            if (len > st->opts.max_msg) {
                es__as_stop(st, ESOCK_DOWN_PROTOCOL, -EMSGSIZE, true);
                return -1;
            }
            st->fneed = len;
            st->fhave = 0;
            /* a large one is gathered as it comes: a length alone does not
             * get a peer max_msg bytes of our memory */
            st->fbig = len > ES_FRAME_EAGER;
            if (!st->fbig && (st->fm = data_alloc(len)) == NULL) {
                es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
                return -1;
            }
        }
        size_t take = st->fneed - st->fhave < left ? st->fneed - st->fhave : left;
        if (st->fbig) {
            if (!es__as_gather(st, p, take)) {
                es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
                return -1;
            }
        } else {
            memcpy(body(st->fm) + st->fhave, p, take);
        }
        st->fhave += take;
        p += take;
        left -= take;
        if (st->fhave == st->fneed && !st->fbig) {
            rt_msg *m = st->fm;
            st->fm = NULL;
            deliver(st, m, st->fneed);
        } else if (st->fhave == st->fneed) {
            rt_msg *m = data_alloc(st->fneed);
            if (m == NULL) {
                es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
                return -1;
            }
            memcpy(body(m), st->rbuf, st->fneed);
            st->fbig = false;
            st->rlen = 0;
            free(st->rbuf); /* not kept: large ones are rare */
            st->rbuf = NULL;
            st->rcap = 0;
            deliver(st, m, st->fneed);
        }
    }
    return 0;
}

/* Whole messages, each after its length. A large message's rest is read
 * straight into it; everything else through the scratch buffer, where one
 * read may hold many messages and the start of the next. */
static int read_framed(struct as_st *st)
{
    if (st->fm != NULL && st->fneed - st->fhave >= ES_COPY_MAX) {
        ssize_t n = recv(st->fd, body(st->fm) + st->fhave, st->fneed - st->fhave, MSG_DONTWAIT);
        if (n <= 0)
            return read_end(st, n);
        size_t want = st->fneed - st->fhave;
        st->fhave += (size_t)n;
        if (st->fhave == st->fneed) {
            rt_msg *m = st->fm;
            st->fm = NULL;
            deliver(st, m, st->fneed);
        }
        return (size_t)n < want ? ES_READ_DRAINED : 1;
    }
    unsigned char *buf = es__as_scratch();
    if (buf == NULL) {
        es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
        return -1;
    }
    ssize_t n = recv(st->fd, buf, ES_SCRATCH, MSG_DONTWAIT);
    if (n <= 0)
        return read_end(st, n);
    if (unframe(st, buf, (size_t)n) < 0)
        return -1;
    return (size_t)n < ES_SCRATCH ? ES_READ_DRAINED : 1;
}

int es__tcp_read_one(struct as_st *st)
{
    return st->a->framed ? read_framed(st) : read_raw(st);
}

/* ---- writing -----------------------------------------------------------------------------------
 */

/* Write q's message from q->off on (the length prefix first when framed);
 * returns the bytes written or -errno. */
static ssize_t write_from(const struct as_ent *a, const struct sq_item *q, const void *data)
{
    uint32_t be = htonl((uint32_t)q->len);
    size_t hl = a->framed ? 4 : 0;
    struct iovec iov[2];
    int n = 0;
    if (q->off < hl)
        iov[n++] = (struct iovec){(char *)&be + q->off, hl - q->off};
    size_t doff = q->off > hl ? q->off - hl : 0;
    iov[n++] = (struct iovec){(char *)data + doff, q->len - doff};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(a->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    return w < 0 ? -errno : w;
}

int es__tcp_write(struct as_ent *a, struct sq_item *q, const void *data)
{
    ssize_t w = write_from(a, q, data);
    if (w == -EAGAIN || w == -EWOULDBLOCK)
        return 0;
    if (w < 0)
        return (int)w;
    q->off += (size_t)w;
    return q->off == q->len + (a->framed ? 4u : 0u) ? 1 : 0;
}

/* Write the queue from its head, many messages per sendmsg(2): what went
 * out is freed, a message written in part keeps how far it got. Returns 1
 * (the queue is empty), 0 (the socket is full), or the kernel's -errno.
 * The caller holds a->lock. */
int es__tcp_write_queue(struct as_ent *a)
{
    size_t hl = a->framed ? 4 : 0;
    while (a->head != NULL) {
        struct iovec iov[ES_TCP_IOV];
        uint32_t be[ES_TCP_IOV / 2];
        int n = 0, k = 0;
        size_t want = 0;
        for (const struct sq_item *q = a->head; q != NULL && n + 2 <= ES_TCP_IOV; q = q->next) {
            if (q->off < hl) {
                be[k] = htonl((uint32_t)q->len);
                iov[n++] = (struct iovec){(char *)&be[k] + q->off, hl - q->off};
                k++;
            }
            size_t doff = q->off > hl ? q->off - hl : 0;
            if (q->len > doff)
                iov[n++] = (struct iovec){(char *)q->data + doff, q->len - doff};
            want += hl + q->len - q->off;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(a->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        for (size_t left = (size_t)w; left > 0;) {
            struct sq_item *q = a->head;
            size_t rest = hl + q->len - q->off;
            if (left < rest) {
                q->off += left;
                break;
            }
            left -= rest;
            a->head = q->next;
            if (a->head == NULL)
                a->tail = NULL;
            a->queued -= q->len;
            free(q);
        }
        if ((size_t)w < want)
            return 0;
    }
    return 1;
}
