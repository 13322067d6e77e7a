/* assoc.c: the association process (a callback actor linked to its
 * endpoint) and the send path.
 *
 * The process owns the association's one-to-one socket, waits for it to be
 * readable (a multishot poll on its scheduler's ring), reads it with
 * recvmsg(2) until it is empty and turns each message into an owner
 * message: data (gathered first when the kernel hands it over in parts),
 * notifications as typed messages. See "Receiving" below.
 *
 * Sending does not go through the process: esock_send writes to the socket
 * from the caller's thread (one system call, under the association's
 * lock). Only when the socket's buffer is full does the message wait, in a
 * queue the process drains when the socket is writable again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Receive credit: how many bytes of its messages the owner holds (each
 * message counts ESOCK_RCV_MSG_COST more than its payload). The messages
 * hold a reference (they may be freed on any thread, after the process
 * ended), through a tag placed after their payload, inside the message's
 * own memory. Reading stops at the endpoint's rcv_hiwat and starts again when
 * the owner is down to half of it: the kernel's window closes meanwhile,
 * which is SCTP's own backpressure to the peer. It is a last resort, hence
 * the high default: with small messages the kernel's receive memory fills
 * long before its window closes, it then drops, and the peer falls back to
 * retransmission timeouts (seconds). */
struct rx_credit {
    _Atomic uint64_t held;
    _Atomic uint32_t refs;
    _Atomic bool stalled;
    rt_pid pid;
    uint64_t lowat;
};

/* After a data message's payload: what its release gives back. */
struct rx_tag {
    struct rx_credit *c;
    uint64_t cost;
};

/* Room a data message needs for its tag, beyond sizeof(esock_data) + payload. */
#define ES_TAG_ROOM (sizeof(struct rx_tag) + _Alignof(struct rx_tag))

static void credit_put(struct rx_credit *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

struct as_st {
    struct as_ent *a;
    esock_assoc h;
    esock_ep ep;
    rt_pid owner;
    rt_ref mon;
    int fd;
    rt_io_req rreq, preq;
    bool reading, polling;
    bool down_sent;
    bool shutdown_pending; /* graceful shutdown once the queue is empty */
    bool local_end;        /* its own side is ending it: no reconnection */
    bool aborting;         /* its ABORT is on its way: COMM_LOST will say so */
    bool ending;           /* ended: reading what is left, then stop */
    bool read_pending;     /* an ES_AS_READ to itself is on its way */
    bool orphaned;         /* its owner ended: waiting for one (handover_wait_ms) */
    unsigned handover_wait_ms;
    rt_timer orphan_timer;
    size_t guess; /* the size of the last message read */
    struct rx_credit *credit;
    uint64_t hiwat; /* esock_ep_opts.rcv_hiwat */
    int end_reason, end_error;
    /* reconnection (esock_assoc_create with esock_reconnect) */
    rt_pid ep_pid;
    struct es_connect conn;
    esock_reconnect rc;
    unsigned attempts; /* failed tries since it was last up */
    rt_timer timer;    /* the backoff timer, while waiting */
    uint64_t rng;
    /* a message the kernel hands over in parts */
    unsigned char *rbuf;
    size_t rlen, rcap;
    bool rnotif; /* what is gathered is a notification */
    struct sctp_rcvinfo rinfo;
};

static void send_down(struct as_st *st, int reason, int error)
{
    if (st->down_sent)
        return;
    st->down_sent = true;
    esock_down d = {st->h, st->ep, reason, error, false};
    es__send_owner(st->owner, ESOCK_MSG_ASSOC_DOWN, &d, sizeof d);
}

/* Close the socket (an ABORT when `abort`) and hand queued messages back to
 * the owner; the association is then closed for good (`final`), or
 * connecting again. */
static void close_socket(struct as_st *st, bool abort, bool final)
{
    struct as_ent *a = st->a;
    /* a receive or poll in flight holds the socket open: end them */
    if (st->reading)
        rt_io_cancel(st->rreq);
    if (st->polling)
        rt_io_cancel(st->preq);
    /* and whatever they still deliver is not for the socket to come */
    st->rreq = st->preq = 0;
    st->ending = false;
    st->reading = st->polling = false;
    st->shutdown_pending = false;
    st->rlen = 0;
    st->rnotif = false;
    pthread_mutex_lock(&a->lock);
    a->state = final ? ESOCK_ASSOC_CLOSED : ESOCK_ASSOC_CONNECTING;
    int fd = a->fd;
    a->fd = -1;
    struct sq_item *q = a->head;
    a->head = a->tail = NULL;
    a->queued = 0;
    a->kicked = a->want_ready = false;
    if (fd >= 0) {
        if (abort) {
            struct linger l = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        rt_io_disown(fd);
        close(fd);
    }
    pthread_mutex_unlock(&a->lock);
    st->fd = -1;
    while (q) {
        struct sq_item *n = q->next;
        rt_msg *m = rt_msg_alloc(ESOCK_MSG_SEND_FAILED, sizeof(esock_send_failed) + q->len);
        if (m) {
            esock_send_failed f = {st->h,
                                   ESOCK_ECLOSED,
                                   q->stream,
                                   q->ppid,
                                   q->context,
                                   q->len,
                                   (char *)m->data + sizeof(esock_send_failed),
                                   false};
            memcpy(m->data, &f, sizeof f);
            memcpy((char *)m->data + sizeof f, q->data, q->len);
            if (rt_forward(st->owner, m) < 0)
                rt_msg_free(m);
        }
        free(q);
        q = n;
    }
}

static void finish(struct as_st *st, bool abort)
{
    close_socket(st, abort, true);
}

/* The k-th retry's delay: a random time in [d/2, d], d = min(min * 2^(k-1), max). */
static unsigned backoff(struct as_st *st)
{
    uint64_t d = st->rc.min_ms;
    for (unsigned k = 1; k < st->attempts && d < st->rc.max_ms; k++)
        d *= 2;
    if (d > st->rc.max_ms)
        d = st->rc.max_ms;
    st->rng ^= st->rng << 13;
    st->rng ^= st->rng >> 7;
    st->rng ^= st->rng << 17;
    uint64_t half = d / 2;
    return (unsigned)(d - half + (half ? st->rng % (half + 1) : 0));
}

static bool retryable(const struct as_st *st, int reason)
{
    return st->rc.max_attempts > 0 && !st->local_end &&
           (reason == ESOCK_DOWN_COMM_LOST || reason == ESOCK_DOWN_SHUTDOWN ||
            reason == ESOCK_DOWN_ABORT || reason == ESOCK_DOWN_CANT_START);
}

static void send_reconnect(struct as_st *st, unsigned delay, int error, bool gave_up)
{
    esock_reconnect_ev ev = {st->h, st->attempts, delay, error, gave_up};
    es__send_owner(st->owner, ESOCK_MSG_RECONNECT, &ev, sizeof ev);
}

/* The association has ended (reason, error): try again after a while when
 * it may, else tell the owner and end the process. */
static void stop(struct as_st *st, int reason, int error, bool abort)
{
    if (retryable(st, reason)) {
        if (st->attempts < st->rc.max_attempts) {
            esock_down d = {st->h, st->ep, reason, error, true};
            es__send_owner(st->owner, ESOCK_MSG_ASSOC_DOWN, &d, sizeof d);
            close_socket(st, abort, false);
            st->attempts++;
            unsigned delay = backoff(st);
            send_reconnect(st, delay, error, false);
            if (rt_send_after(rt_self(), (int)delay, ES_AS_RETRY, NULL, 0, &st->timer) == 0)
                return;
            error = -ENOMEM;
        } else {
            send_reconnect(st, 0, error, true);
        }
    }
    send_down(st, reason, error);
    finish(st, abort);
    rt_exit(rt_self(), RT_EXIT_NORMAL);
}

/* The backoff timer: ask the endpoint to connect again. */
static void retry(struct as_st *st)
{
    st->timer = 0;
    struct reconnect_req r = {st->h, st->conn};
    if (rt_send(st->ep_pid, ES_EP_RECONNECT, &r, sizeof r) < 0)
        stop(st, ESOCK_DOWN_ENDPOINT, -ESRCH, true);
}

/* Its own side ends it: no reconnection; a pending retry is called off. */
static void end_locally(struct as_st *st)
{
    st->local_end = true;
    if (st->timer) {
        rt_cancel_timer(st->timer);
        st->timer = 0;
    }
    if (st->orphan_timer) {
        rt_cancel_timer(st->orphan_timer);
        st->orphan_timer = 0;
    }
}

static void arm_recv(struct as_st *st)
{
    if (st->reading || st->fd < 0)
        return;
    /* readiness, then recvmsg(2) from here until the socket is empty: see
     * the top of "receiving" below for why not a multishot recvmsg into
     * the runtime's provided buffers */
    int rc = rt_io_poll(st->fd, POLLIN, RT_IO_MULTISHOT, &st->rreq);
    if (rc < 0)
        stop(st, ESOCK_DOWN_CRASH, rc, true);
    else
        st->reading = true;
}

/* The association is up on `fd`. */
static void go_up(struct as_st *st, int fd, uint16_t os, uint16_t is)
{
    struct as_ent *a = st->a;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &one, sizeof one);
    esock_up up = {.assoc = st->h, .ep = st->ep};
    pthread_mutex_lock(&a->lock);
    a->fd = fd;
    a->state = ESOCK_ASSOC_UP;
    if (os)
        a->ostreams = os;
    if (is)
        a->istreams = is;
    es__fill_peer(fd, 0, &a->peer);
    a->peer.ostreams = a->ostreams;
    a->peer.istreams = a->istreams;
    up.peer = a->peer;
    pthread_mutex_unlock(&a->lock);
    st->fd = fd;
    st->attempts = 0;
    arm_recv(st);
    es__send_owner(st->owner, ESOCK_MSG_ASSOC_UP, &up, sizeof up);
}

static int as_init(void *state, void *arg)
{
    struct as_st *st = state;
    const struct as_start *s = arg;
    memset(st, 0, sizeof *st);
    st->a = s->ent;
    st->owner = s->owner;
    st->fd = -1;
    int rc = rt_monitor(s->owner, &st->mon);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&st->a->lock);
    st->a->pid = rt_self();
    st->a->owner = s->owner;
    st->h = es__as_handle(st->a);
    st->ep = st->a->ep;
    pthread_mutex_unlock(&st->a->lock);
    st->ep_pid = s->ep;
    st->credit = calloc(1, sizeof *st->credit);
    if (st->credit == NULL) {
        rt_demonitor(st->mon);
        return -ENOMEM;
    }
    pthread_rwlock_rdlock(&es__g.lock);
    struct ep_ent *e = es__ep_get(st->ep);
    st->hiwat = e ? e->opts.rcv_hiwat : ESOCK_RCV_HIWAT_DEFAULT;
    st->handover_wait_ms = e ? e->opts.handover_wait_ms : 0;
    pthread_rwlock_unlock(&es__g.lock);
    st->credit->refs = 1;
    st->credit->pid = rt_self();
    st->credit->lowat = st->hiwat / 2;
    if (s->made) {
        st->conn = s->made->c;
        st->rc = s->made->rc;
    }
    st->rng = st->h.id * 0x9E3779B97F4A7C15ull ^ (uint64_t)rt_now_ms();
    if (st->rng == 0)
        st->rng = 1;
    if (s->fd >= 0) {
        /* accepted: up already; start once running (a message to self) */
        rc = rt_io_own(s->fd);
        if (rc < 0)
            return rc;
        struct {
            int fd, err;
            uint16_t os, is;
        } up = {s->fd, 0, 0, 0};
        rt_send(rt_self(), ES_AS_FD, &up, sizeof up);
    }
    return 0;
}

static void as_terminate(void *state, int reason)
{
    struct as_st *st = state;
    if (!st->down_sent) {
        /* its endpoint went (the link), or it crashed */
        int why = reason == RT_EXIT_SHUTDOWN || reason == RT_EXIT_KILL || reason == RT_EXIT_KILLED
                      ? ESOCK_DOWN_ENDPOINT
                      : ESOCK_DOWN_CRASH;
        send_down(st, why, reason);
    }
    end_locally(st);
    if (st->a->state != ESOCK_ASSOC_CLOSED || st->a->head)
        finish(st, true);
    free(st->rbuf);
    st->rbuf = NULL;
    if (st->credit) {
        credit_put(st->credit);
        st->credit = NULL;
    }
    es__as_release(st->a);
}

/* ---- receiving
 * ------------------------------------------------------------------------------------- */

static bool gather(struct as_st *st, const void *p, size_t n)
{
    if (st->rlen + n > st->rcap) {
        size_t nc = st->rcap ? st->rcap : 65536;
        while (nc < st->rlen + n)
            nc *= 2;
        unsigned char *nb = realloc(st->rbuf, nc);
        if (nb == NULL)
            return false;
        st->rbuf = nb;
        st->rcap = nc;
    }
    memcpy(st->rbuf + st->rlen, p, n);
    st->rlen += n;
    return true;
}

static int path_state(int s)
{
    switch (s) {
    case SCTP_ADDR_AVAILABLE:
        return ESOCK_PATH_AVAILABLE;
    case SCTP_ADDR_UNREACHABLE:
        return ESOCK_PATH_UNREACHABLE;
    case SCTP_ADDR_REMOVED:
        return ESOCK_PATH_REMOVED;
    case SCTP_ADDR_ADDED:
        return ESOCK_PATH_ADDED;
    case SCTP_ADDR_MADE_PRIM:
        return ESOCK_PATH_PRIMARY;
    case SCTP_ADDR_CONFIRMED:
        return ESOCK_PATH_CONFIRMED;
    default:
        return ESOCK_PATH_POTENTIALLY_FAILED;
    }
}

#ifndef SCTP_ERROR_USER_ABORT
#define SCTP_ERROR_USER_ABORT 12
#endif

/* The association has ended (its last notification): what the kernel
 * queued behind it (SEND_FAILED for what it still held) is still to be
 * read. Stop the receive and end once its last completion is in: those
 * come in order before it. */
static void ending(struct as_st *st, int reason, int error)
{
    if (st->ending)
        return;
    st->ending = true;
    st->end_reason = reason;
    st->end_error = error;
}

static void notification(struct as_st *st, const void *p, size_t len)
{
    const union sctp_notification *n = p;
    if (len < 8u)
        return;
    switch (n->sn_header.sn_type) {
    case SCTP_ASSOC_CHANGE: {
        const struct sctp_assoc_change *sac = &n->sn_assoc_change;
        switch (sac->sac_state) {
        case SCTP_COMM_LOST: {
            /* an ABORT from the peer carries its cause code as it came off
             * the wire (network order); a user-initiated one is the peer
             * aborting, anything else a lost association */
            int cause = ntohs(sac->sac_error);
            if (st->aborting) /* ours */
                ending(st, ESOCK_DOWN_ABORT, 0);
            else
                ending(st, cause == SCTP_ERROR_USER_ABORT ? ESOCK_DOWN_ABORT : ESOCK_DOWN_COMM_LOST,
                       cause);
            break;
        }
        case SCTP_SHUTDOWN_COMP:
            ending(st, ESOCK_DOWN_SHUTDOWN, 0);
            break;
        case SCTP_RESTART: {
            /* the peer restarted: the old association's state is gone,
             * this one goes on */
            esock_down d = {st->h, st->ep, ESOCK_DOWN_RESTART, 0, true};
            es__send_owner(st->owner, ESOCK_MSG_ASSOC_DOWN, &d, sizeof d);
            break;
        }
        default:
            break;
        }
        break;
    }
    case SCTP_PEER_ADDR_CHANGE: {
        const struct sctp_paddr_change *pc = &n->sn_paddr_change;
        esock_path ev = {
            .assoc = st->h, .state = path_state(pc->spc_state), .error = pc->spc_error};
        memcpy(&ev.addr, &pc->spc_aaddr,
               pc->spc_aaddr.ss_family == AF_INET6 ? sizeof ev.addr.in6 : sizeof ev.addr.in4);
        es__send_owner(st->owner, ESOCK_MSG_PATH, &ev, sizeof ev);
        break;
    }
    case SCTP_SEND_FAILED: {
        const struct sctp_send_failed *sf = &n->sn_send_failed;
        size_t dl =
            sf->ssf_length > sizeof *sf && sf->ssf_length <= len ? sf->ssf_length - sizeof *sf : 0;
        rt_msg *m = rt_msg_alloc(ESOCK_MSG_SEND_FAILED, sizeof(esock_send_failed) + dl);
        if (m == NULL)
            break;
        esock_send_failed f = {st->h,
                               (int)sf->ssf_error,
                               sf->ssf_info.sinfo_stream,
                               ntohl(sf->ssf_info.sinfo_ppid),
                               sf->ssf_info.sinfo_context,
                               dl,
                               (char *)m->data + sizeof f,
                               (sf->ssf_flags & SCTP_DATA_SENT) != 0};
        memcpy(m->data, &f, sizeof f);
        memcpy((char *)m->data + sizeof f, sf->ssf_data, dl);
        if (rt_forward(st->owner, m) < 0)
            rt_msg_free(m);
        break;
    }
    case SCTP_SHUTDOWN_EVENT:
        pthread_mutex_lock(&st->a->lock);
        if (st->a->state == ESOCK_ASSOC_UP)
            st->a->state = ESOCK_ASSOC_SHUTTING_DOWN;
        pthread_mutex_unlock(&st->a->lock);
        break;
    case SCTP_PARTIAL_DELIVERY_EVENT:
        /* the rest of a message will not come: drop what was gathered */
        st->rlen = 0;
        break;
    default:
        break;
    }
}

/* Receiving.
 *
 * The association waits for readiness (a multishot poll on the ring) and
 * then reads with recvmsg(2) until the socket is empty, a message straight
 * into the message its owner gets. Not a multishot recvmsg into the
 * runtime's provided buffers, for two reasons found under load: Debian
 * 12's kernel (6.1) loses provided buffers with multishot recvmsg (the
 * ring reports ENOBUFS with every buffer back in it, and every receive of
 * the scheduler stops for good; liburing issue #778), and one slow owner
 * holding buffers would stop every other association of its scheduler,
 * since they share the ring. A read here costs one system call, as a
 * blocking reader's does, and the owner's message is sized to what came.
 */

#define ES_READ_BUDGET 64 /* messages per turn before the others get theirs */
#define ES_SCRATCH     (256u << 10)

static _Thread_local unsigned char *es_scratch; /* per scheduler thread */

static pthread_key_t es_scratch_key;
static pthread_once_t es_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    /* the buffer is freed when its thread ends */
    if (pthread_key_create(&es_scratch_key, free) != 0)
        abort();
}

static unsigned char *scratch(void)
{
    if (es_scratch == NULL) {
        pthread_once(&es_scratch_once, scratch_key_init);
        es_scratch = malloc(ES_SCRATCH);
        if (es_scratch != NULL && pthread_setspecific(es_scratch_key, es_scratch) != 0) {
            free(es_scratch);
            es_scratch = NULL;
        }
    }
    return es_scratch;
}

/* A data message was freed (any thread). */
static void credit_release(void *p)
{
    const struct rx_tag *t = p;
    struct rx_credit *c = t->c;
    uint64_t held = atomic_fetch_sub(&c->held, t->cost) - t->cost;
    if (held <= c->lowat && atomic_load(&c->stalled) && atomic_exchange(&c->stalled, false))
        rt_send(c->pid, ES_AS_READ, NULL, 0);
    credit_put(c);
}

/* `m` was allocated with ES_TAG_ROOM to spare after its size. */
static void credit_attach(struct as_st *st, rt_msg *m, size_t payload)
{
    uintptr_t at = (uintptr_t)m->data + m->size;
    at = (at + _Alignof(struct rx_tag) - 1) & ~(uintptr_t)(_Alignof(struct rx_tag) - 1);
    struct rx_tag *t = (struct rx_tag *)at;
    t->c = st->credit;
    t->cost = payload + ESOCK_RCV_MSG_COST;
    atomic_fetch_add(&st->credit->held, t->cost);
    atomic_fetch_add(&st->credit->refs, 1);
    rt_msg_lend(m, t, credit_release);
}

/* May it read another message? */
static bool credit_ok(struct as_st *st)
{
    struct rx_credit *c = st->credit;
    if (atomic_load(&c->held) < st->hiwat)
        return true;
    atomic_store(&c->stalled, true);
    if (atomic_load(&c->held) > c->lowat)
        return false; /* a release below the low mark will say so */
    /* released meanwhile: go on, unless that release already woke it */
    return atomic_exchange(&c->stalled, false);
}

static esock_data data_head(struct as_st *st, const struct sctp_rcvinfo *ri)
{
    return (esock_data){
        .assoc = st->h,
        .ep = st->ep,
        .stream = ri->rcv_sid,
        .flags = (ri->rcv_flags & SCTP_UNORDERED) ? ESOCK_UNORDERED : 0,
        .ppid = ntohl(ri->rcv_ppid),
        .context = ri->rcv_context,
        .tsn = ri->rcv_tsn,
    };
}

/* A complete message of n bytes at p, copied into the owner's message. */
static void deliver(struct as_st *st, const struct sctp_rcvinfo *ri, const void *p, size_t n)
{
    esock_data d = data_head(st, ri);
    rt_msg *m = rt_msg_alloc(ESOCK_MSG_DATA, sizeof d + n + ES_TAG_ROOM);
    if (m == NULL)
        return;
    m->size = (uint32_t)(sizeof d + n);
    d.len = n;
    d.data = (char *)m->data + sizeof d;
    memcpy(m->data, &d, sizeof d);
    memcpy((char *)m->data + sizeof d, p, n);
    credit_attach(st, m, n);
    if (rt_forward(st->owner, m) < 0)
        rt_msg_free(m);
}

/* Messages up to this size are read into a scratch buffer and copied into
 * a message of their size; when the last message was larger, the next is
 * read straight into a message of that size (no copy: bulk flows). */
#define ES_COPY_MAX 2048u

/* One recvmsg. Returns 1 (something read), 0 (the socket is empty), -1
 * (the association ended meanwhile). */
static int read_one(struct as_st *st)
{
    rt_msg *dm = NULL; /* the owner's message, read into directly */
    unsigned char *buf;
    size_t cap;
    if (st->rlen == 0 && st->guess > ES_COPY_MAX &&
        (dm = rt_msg_alloc(ESOCK_MSG_DATA, sizeof(esock_data) + st->guess + ES_TAG_ROOM)) != NULL) {
        buf = (unsigned char *)dm->data + sizeof(esock_data);
        cap = st->guess;
    } else {
        buf = scratch();
        cap = ES_SCRATCH;
        if (buf == NULL) {
            stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
            return -1;
        }
    }
    char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))];
    struct iovec iov = {buf, cap};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(st->fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
        int e = errno;
        rt_msg_free(dm);
        /* once it has ended, the socket says so in its own way (ENOTCONN):
         * all there was has been read */
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || st->ending)
            return 0;
        stop(st, ESOCK_DOWN_COMM_LOST, -e, true);
        return -1;
    }
    bool eor = (mh.msg_flags & MSG_EOR) != 0;
    if (mh.msg_flags & MSG_NOTIFICATION) {
        /* a notification can come in parts too (a SEND_FAILED carries the
         * payload it hands back) */
        int rc = 1;
        if (!eor) {
            st->rnotif = true;
            if (!gather(st, buf, (size_t)n)) {
                stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
                rc = -1;
            }
        } else if (st->rlen && st->rnotif) {
            if (gather(st, buf, (size_t)n))
                notification(st, st->rbuf, st->rlen);
            st->rlen = 0;
            st->rnotif = false;
        } else {
            notification(st, buf, (size_t)n);
        }
        rt_msg_free(dm);
        return rc < 0 || st->fd < 0 ? -1 : 1;
    }
    if (n == 0 && !eor) {
        /* end of stream: the association is gone (its notification, when
         * there is one, came first) */
        rt_msg_free(dm);
        stop(st, ESOCK_DOWN_SHUTDOWN, 0, false);
        return -1;
    }
    struct sctp_rcvinfo ri;
    memset(&ri, 0, sizeof ri);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO)
            memcpy(&ri, CMSG_DATA(c), sizeof ri);
    if (eor && st->rlen == 0) {
        st->guess = (size_t)n;
        if (dm != NULL) {
            esock_data d = data_head(st, &ri);
            d.len = (size_t)n;
            d.data = buf;
            memcpy(dm->data, &d, sizeof d);
            dm->size = (uint32_t)(sizeof d + (size_t)n);
            credit_attach(st, dm, (size_t)n);
            if (rt_forward(st->owner, dm) < 0)
                rt_msg_free(dm);
        } else {
            deliver(st, &ri, buf, (size_t)n);
        }
        return 1;
    }
    /* a message in parts (larger than the buffer, or than what the kernel
     * hands over at once: partial delivery) */
    if (st->rlen == 0)
        st->rinfo = ri;
    bool ok = gather(st, buf, (size_t)n);
    rt_msg_free(dm);
    if (!ok) {
        stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
        return -1;
    }
    if (eor) {
        st->guess = st->rlen <= ES_SCRATCH ? st->rlen : ES_SCRATCH;
        deliver(st, &st->rinfo, st->rbuf, st->rlen);
        st->rlen = 0;
        if (st->rcap > (1u << 20)) { /* keep a big one only for a while */
            free(st->rbuf);
            st->rbuf = NULL;
            st->rcap = 0;
        }
    }
    return 1;
}

/* Read what is there, up to a budget per turn. */
static void read_some(struct as_st *st)
{
    for (int k = 0; k < ES_READ_BUDGET; k++) {
        if (st->fd < 0 || st->down_sent || st->orphaned || !credit_ok(st))
            return;
        int rc = read_one(st);
        if (rc < 0)
            return;
        if (rc == 0) {
            /* empty: an association that has ended has said all */
            if (st->ending) {
                st->ending = false;
                stop(st, st->end_reason, st->end_error, false);
            }
            return;
        }
    }
    /* more may wait: go on after the others of this scheduler had a turn
     * (the poll fires on new arrivals only) */
    if (!st->read_pending) {
        st->read_pending = true;
        rt_send(rt_self(), ES_AS_READ, NULL, 0);
    }
}

static void on_ready(struct as_st *st, const rt_io_result *r)
{
    if (!(r->flags & RT_IO_F_MORE))
        st->reading = false;
    if (r->res < 0 && r->res != -ECANCELED) {
        stop(st, ESOCK_DOWN_COMM_LOST, r->res, true);
        return;
    }
    read_some(st);
    if (!st->reading && st->fd >= 0 && !st->down_sent)
        arm_recv(st);
}

/* ---- sending
 * ---------------------------------------------------------------------------------------- */

static ssize_t sctp_out(int fd, uint16_t stream, uint32_t ppid, unsigned flags, uint32_t context,
                        uint32_t lifetime, const void *data, size_t len)
{
    char cbuf[CMSG_SPACE(sizeof(struct sctp_sndrcvinfo))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {(void *)data, len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = IPPROTO_SCTP;
    c->cmsg_type = SCTP_SNDRCV;
    c->cmsg_len = CMSG_LEN(sizeof(struct sctp_sndrcvinfo));
    struct sctp_sndrcvinfo *si = (struct sctp_sndrcvinfo *)CMSG_DATA(c);
    si->sinfo_stream = stream;
    si->sinfo_ppid = htonl(ppid);
    si->sinfo_flags = (flags & ESOCK_UNORDERED) ? SCTP_UNORDERED : 0;
    si->sinfo_context = context;
    si->sinfo_timetolive = lifetime;
    return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static int map_send_err(int e)
{
    switch (e) {
    case EPIPE:
    case ENOTCONN:
    case ESHUTDOWN:
    case ECONNRESET:
    case EBADF:
        return ESOCK_ECLOSED;
    default:
        return -e;
    }
}

int es__send_locked(struct as_ent *a, uint16_t stream, uint32_t ppid, unsigned flags,
                    uint32_t context, uint32_t lifetime, const void *data, size_t len)
{
    if (a->state == ESOCK_ASSOC_CLOSED || a->state == ESOCK_ASSOC_SHUTTING_DOWN)
        return ESOCK_ECLOSED;
    if (a->state == ESOCK_ASSOC_CONNECTING || a->fd < 0)
        return ESOCK_ENOTUP;
    if (stream >= a->ostreams)
        return ESOCK_EBADSTREAM;
    if (ppid == 0)
        ppid = a->default_ppid;
    if (a->head == NULL) {
        ssize_t n = sctp_out(a->fd, stream, ppid, flags, context, lifetime, data, len);
        if (n >= 0)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return map_send_err(errno);
    } else if (a->queued + len > a->hiwat) {
        a->want_ready = true;
        return ESOCK_EWOULDBLOCK;
    }
    struct sq_item *q = malloc(sizeof *q + len);
    if (q == NULL)
        return -ENOMEM;
    *q = (struct sq_item){NULL, stream, (uint16_t)flags, ppid, context, lifetime, len};
    memcpy(q->data, data, len);
    if (a->tail)
        a->tail->next = q;
    else
        a->head = q;
    a->tail = q;
    a->queued += len;
    if (!a->kicked) {
        a->kicked = true;
        rt_send(a->pid, ES_AS_KICK, NULL, 0);
    }
    return 0;
}

/* A graceful SHUTDOWN. A peeled-off socket is one-to-many in style, where
 * shutdown(2) does nothing: it is an empty message with SCTP_EOF. The
 * owner hears of the end from the SHUTDOWN_COMP notification. */
static int send_flag(struct as_st *st, uint16_t flag)
{
    char cbuf[CMSG_SPACE(sizeof(struct sctp_sndrcvinfo))];
    memset(cbuf, 0, sizeof cbuf);
    struct msghdr mh = {.msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = IPPROTO_SCTP;
    c->cmsg_type = SCTP_SNDRCV;
    c->cmsg_len = CMSG_LEN(sizeof(struct sctp_sndrcvinfo));
    ((struct sctp_sndrcvinfo *)CMSG_DATA(c))->sinfo_flags = flag;
    return sendmsg(st->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void begin_shutdown(struct as_st *st)
{
    int rc = send_flag(st, SCTP_EOF);
    if (rc < 0)
        stop(st, ESOCK_DOWN_SHUTDOWN, rc, true);
}

/* The socket is writable: drain the queue. */
static void flush(struct as_st *st)
{
    if (st->ending)
        return; /* nothing more goes out; the queue is handed back at the end */
    struct as_ent *a = st->a;
    bool ready = false, again = false;
    int err = 0;
    pthread_mutex_lock(&a->lock);
    while (a->head && a->fd >= 0) {
        struct sq_item *q = a->head;
        ssize_t n =
            sctp_out(a->fd, q->stream, q->ppid, q->flags, q->context, q->lifetime, q->data, q->len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                again = true;
            else
                err = map_send_err(errno);
            break;
        }
        a->head = q->next;
        if (a->head == NULL)
            a->tail = NULL;
        a->queued -= q->len;
        free(q);
    }
    if (a->head == NULL) {
        a->kicked = false;
        ready = a->want_ready;
        a->want_ready = false;
    }
    pthread_mutex_unlock(&a->lock);
    if (err) {
        stop(st, ESOCK_DOWN_COMM_LOST, err, true); /* hands the queue back */
        return;
    }
    if (again && !st->polling && st->fd >= 0) {
        if (rt_io_poll(st->fd, POLLOUT, 0, &st->preq) == 0)
            st->polling = true;
    }
    if (ready) {
        esock_send_ready r = {st->h};
        es__send_owner(st->owner, ESOCK_MSG_SEND_READY, &r, sizeof r);
    }
    if (!again && st->shutdown_pending && st->fd >= 0) {
        st->shutdown_pending = false;
        begin_shutdown(st);
    }
}

/* ---- the actor
 * ----------------------------------------------------------------------------------------- */

/* Its owner `gone` ended: with esock_ep_opts.handover, make the endpoint's
 * newest live owner its owner. Returns whether one took it. */
static bool handover(struct as_st *st, rt_pid gone)
{
    if (st->fd < 0)
        return false;
    rt_pid cand[16];
    unsigned n = 0;
    pthread_rwlock_rdlock(&es__g.lock);
    struct ep_ent *e = es__ep_get(st->ep);
    if (e != NULL && e->opts.handover)
        for (unsigned i = e->nowners; i-- > 0 && n < 16;)
            if (!rt_pid_eq(e->owners[i], gone))
                cand[n++] = e->owners[i];
    pthread_rwlock_unlock(&es__g.lock);
    for (unsigned i = 0; i < n; i++) {
        rt_ref mon;
        if (rt_monitor(cand[i], &mon) < 0)
            continue; /* gone too */
        st->owner = cand[i];
        st->mon = mon;
        esock_up up = {.assoc = st->h, .ep = st->ep, .handed_over = true};
        pthread_mutex_lock(&st->a->lock);
        st->a->owner = cand[i];
        up.peer = st->a->peer;
        pthread_mutex_unlock(&st->a->lock);
        es__send_owner(st->owner, ESOCK_MSG_ASSOC_UP, &up, sizeof up);
        return true;
    }
    return false;
}

/* Its owner ended and nobody took it: wait handover_wait_ms for an owner
 * to register on the endpoint, reading nothing. Returns whether it waits. */
static bool orphan(struct as_st *st)
{
    if (st->handover_wait_ms == 0 || st->fd < 0)
        return false;
    if (rt_send_after(rt_self(), (int)st->handover_wait_ms, ES_AS_ORPHAN_TIMEOUT, NULL, 0,
                      &st->orphan_timer) < 0)
        return false;
    if (rt_send(st->ep_pid, ES_EP_ORPHAN, &st->h, sizeof st->h) < 0) {
        rt_cancel_timer(st->orphan_timer);
        st->orphan_timer = 0;
        return false; /* no endpoint to find one */
    }
    st->orphaned = true;
    if (st->reading) {
        /* wake for nothing meanwhile: the poll starts again with the new owner */
        rt_io_cancel(st->rreq);
        st->rreq = 0;
        st->reading = false;
    }
    pthread_mutex_lock(&st->a->lock);
    st->a->owner = RT_PID_NONE;
    pthread_mutex_unlock(&st->a->lock);
    return true;
}

/* The endpoint found it an owner. */
static void adopt(struct as_st *st, rt_pid owner)
{
    rt_ref mon;
    if (!st->orphaned)
        return; /* not waiting any more */
    if (!rt_alive(owner) || rt_monitor(owner, &mon) < 0) {
        /* that one has ended too: the endpoint hears of it first (its
         * monitor fired before this reached it), so asking again finds the
         * next, or waits for one */
        (void)rt_send(st->ep_pid, ES_EP_ORPHAN, &st->h, sizeof st->h);
        return;
    }
    st->orphaned = false;
    if (st->orphan_timer) {
        rt_cancel_timer(st->orphan_timer);
        st->orphan_timer = 0;
    }
    st->owner = owner;
    st->mon = mon;
    esock_up up = {.assoc = st->h, .ep = st->ep, .handed_over = true};
    pthread_mutex_lock(&st->a->lock);
    st->a->owner = owner;
    up.peer = st->a->peer;
    pthread_mutex_unlock(&st->a->lock);
    es__send_owner(owner, ESOCK_MSG_ASSOC_UP, &up, sizeof up);
    arm_recv(st);
    read_some(st); /* what arrived while it waited */
}

/* Nobody owns it any more: close it gracefully and end. */
static void unowned(struct as_st *st)
{
    end_locally(st);
    st->down_sent = true;
    finish(st, false);
    rt_exit(rt_self(), RT_EXIT_NORMAL);
}

static void as_handle(void *state, rt_msg *m)
{
    struct as_st *st = state;
    switch (m->tag) {
    case RT_MSG_IO: {
        const rt_io_result *r = rt_io_result_of(m);
        if (r->req == st->rreq && r->op == RT_IO_POLL && st->rreq) {
            on_ready(st, r);
        } else if (r->req == st->preq && r->op == RT_IO_POLL) {
            st->polling = false;
            flush(st);
        }
        break;
    }
    case ES_AS_FD: {
        struct {
            int fd, err;
            uint16_t os, is;
        } up;
        memcpy(&up, m->data, sizeof up);
        if (up.fd < 0) {
            stop(st, ESOCK_DOWN_CANT_START, up.err, false);
            break;
        }
        (void)rt_io_own(up.fd); /* -EEXIST: accepted, owned since init */
        go_up(st, up.fd, up.os, up.is);
        break;
    }
    case ES_AS_CANT_START: {
        int err;
        memcpy(&err, m->data, sizeof err);
        stop(st, ESOCK_DOWN_CANT_START, err, false);
        break;
    }
    case ES_AS_READ:
        st->read_pending = false;
        read_some(st);
        break;
    case ES_AS_RETRY:
        if (st->timer)
            retry(st);
        break;
    case ES_AS_SHUTDOWN:
        end_locally(st);
        if (st->fd < 0) {
            stop(st, ESOCK_DOWN_SHUTDOWN, 0, true);
            break;
        }
        pthread_mutex_lock(&st->a->lock);
        st->a->state = ESOCK_ASSOC_SHUTTING_DOWN;
        bool queued = st->a->head != NULL;
        pthread_mutex_unlock(&st->a->lock);
        if (queued)
            st->shutdown_pending = true;
        else
            begin_shutdown(st);
        break;
    case ES_AS_ABORT:
        end_locally(st);
        /* an ABORT through the socket, not a close: the kernel then hands
         * back what it still held (SCTP_SEND_FAILED, before COMM_LOST), and
         * the owner gets those first, then esock's own queue */
        if (st->fd >= 0 && !st->aborting && send_flag(st, SCTP_ABORT) == 0) {
            /* the kernel has queued its notifications during that call:
             * read them now, then end */
            st->aborting = true;
            ending(st, ESOCK_DOWN_ABORT, 0);
            read_some(st);
            break;
        }
        stop(st, ESOCK_DOWN_ABORT, 0, true);
        break;
    case ES_AS_KICK:
        flush(st);
        break;
    case RT_MSG_DOWN: {
        const rt_down_info *d = m->data;
        if (d->ref != st->mon || st->orphaned)
            break;
        /* its owner ended: the next owner, one to come, or nobody to tell
         * (then close it gracefully) */
        if (!handover(st, d->pid) && !orphan(st))
            unowned(st);
        break;
    }
    case ES_AS_ADOPT: {
        rt_pid owner;
        memcpy(&owner, m->data, sizeof owner);
        adopt(st, owner);
        break;
    }
    case ES_AS_ORPHAN_TIMEOUT:
        if (st->orphaned) {
            st->orphan_timer = 0;
            unowned(st);
        }
        break;
    default:
        break;
    }
}

static const rt_actor_ops as_ops = {
    .state_size = sizeof(struct as_st),
    .init = as_init,
    .handle = as_handle,
    .terminate = as_terminate,
};

int es__as_spawn(struct as_start *s, rt_pid *out)
{
    /* linked to the endpoint (the caller), which traps exits; on its
     * owner's scheduler, since every message it reads goes there: a hop
     * to another thread costs more than the rest of the delivery */
    int home = rt_sched_of(s->owner);
    return rt_spawn_actor(&as_ops, s,
                          &(rt_spawn_opts){.link = true, .sched = home >= 0 ? home + 1 : 0}, out);
}
