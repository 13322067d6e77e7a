/* assoc.c: the association process (a callback actor linked to its
 * endpoint) and the send path, the parts SCTP and TCP share.
 *
 * The process owns the association's socket (SCTP: peeled off, one-to-one;
 * TCP: the connection), waits for it to be readable (a multishot poll on
 * its scheduler's ring), reads it until it is empty and turns what came
 * into owner messages: data, and SCTP's notifications as typed messages
 * (assoc_sctp.c; TCP: tcp.c).
 *
 * Sending does not go through the process: esock_send writes to the socket
 * from the caller's thread (one system call, under the association's
 * lock). When the socket's buffer is full the message waits, in a queue
 * the process drains when the socket is writable again. TCP: small
 * messages that follow another in their sender's turn wait in that queue
 * too (`held`), and the process, kicked, writes them all at once after the
 * sender's turn (may_hold): one segment for many, where each would
 * otherwise be a packet of its own (TCP_NODELAY).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc.h"

static void credit_put(struct rx_credit *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

static void send_down(struct as_st *st, int reason, int error)
{
    if (st->down_sent)
        return;
    st->down_sent = true;
    esock_down d = {st->h, st->ep, reason, error, false};
    es__send_owner(st->owner, ESOCK_MSG_ASSOC_DOWN, &d, sizeof d);
}

/* Close an fd the process owns through its ring: after any operation on
 * it queued this turn (a plain close could free the number before the
 * ring hands such an operation to the kernel, which would then run it on
 * the next socket to get that number). */
void es__close_fd(int fd)
{
    if (rt_io_close(fd, NULL) < 0) {
        rt_io_disown(fd);
        close(fd);
    }
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
    if (st->proto == ESOCK_TCP)
        es__tcp_cleanup(st, abort);
    pthread_mutex_lock(&a->lock);
    /* TCP, a quiet end: what was held for the end of its sender's turn was
     * as good as sent (what waits for a full socket comes back) */
    if (!abort && a->held && a->fd >= 0)
        (void)es__tcp_write_queue(a);
    a->state = final ? ESOCK_ASSOC_CLOSED : ESOCK_ASSOC_CONNECTING;
    int fd = a->fd;
    a->fd = -1;
    struct sq_item *q = a->head;
    a->head = a->tail = NULL;
    a->queued = 0;
    a->kicked = a->want_ready = a->held = false;
    a->broken = 0;
    /* TCP with framing: a message written in part leaves the peer inside
     * it; a quiet end would have it take what comes next as the rest */
    if (a->proto == ESOCK_TCP && a->framed && q != NULL && q->off > 0)
        abort = true;
    if (fd >= 0) {
        if (abort) {
            struct linger l = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        es__close_fd(fd);
    }
    pthread_mutex_unlock(&a->lock);
    st->fd = -1;
    while (q) {
        struct sq_item *n = q->next;
        rt_msg *m = rt_msg_alloc(ESOCK_MSG_SEND_FAILED, sizeof(esock_send_failed) + q->len);
        if (m == NULL) {
            /* no memory for the payload: the owner still hears of it */
            esock_send_failed f = {st->h,      -ENOMEM, q->stream, q->ppid,
                                   q->context, q->len,  NULL,      q->off > 0};
            es__send_owner(st->owner, ESOCK_MSG_SEND_FAILED, &f, sizeof f);
        } else {
            esock_send_failed f = {st->h,
                                   ESOCK_ECLOSED,
                                   q->stream,
                                   q->ppid,
                                   q->context,
                                   q->len,
                                   (char *)m->data + sizeof(esock_send_failed),
                                   q->off > 0}; /* TCP: partly written */
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
void es__as_stop(struct as_st *st, int reason, int error, bool abort)
{
    if (retryable(st, reason)) {
        if (st->attempts < st->rc.max_attempts) {
            /* what never went out first, then the down: nothing about
             * this connection comes after it */
            close_socket(st, abort, false);
            esock_down d = {st->h, st->ep, reason, error, true};
            es__send_owner(st->owner, ESOCK_MSG_ASSOC_DOWN, &d, sizeof d);
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
    finish(st, abort);
    send_down(st, reason, error);
    rt_exit(rt_self(), RT_EXIT_NORMAL);
}

/* The backoff timer: connect again (SCTP: the endpoint's socket does). */
static void retry(struct as_st *st)
{
    st->timer = 0;
    if (st->proto == ESOCK_TCP) {
        st->conn_idx = 0;
        es__tcp_connect(st);
        return;
    }
    struct reconnect_req r = {st->h, st->conn};
    if (rt_send(st->ep_pid, ES_EP_RECONNECT, &r, sizeof r) < 0)
        es__as_stop(st, ESOCK_DOWN_ENDPOINT, -ESRCH, true);
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
    /* TCP: the peer's end, and urgent data (a read stops at its mark) */
    unsigned ev = st->proto == ESOCK_TCP ? POLLIN | POLLRDHUP | POLLPRI : POLLIN;
    int rc = rt_io_poll(st->fd, ev, RT_IO_MULTISHOT, &st->rreq);
    if (rc < 0)
        es__as_stop(st, ESOCK_DOWN_CRASH, rc, true);
    else
        st->reading = true;
}

/* The association is up on `fd`. */
void es__as_go_up(struct as_st *st, int fd, uint16_t os, uint16_t is)
{
    struct as_ent *a = st->a;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (st->proto == ESOCK_SCTP) {
        int one = 1;
        setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &one, sizeof one);
        st->nxtinfo = setsockopt(fd, IPPROTO_SCTP, SCTP_RECVNXTINFO, &one, sizeof one) == 0;
    }
    esock_up up = {.assoc = st->h, .ep = st->ep};
    pthread_mutex_lock(&a->lock);
    a->fd = fd;
    a->state = ESOCK_ASSOC_UP;
    if (os)
        a->ostreams = os;
    if (is)
        a->istreams = is;
    if (st->proto == ESOCK_TCP) {
        esock_addr me;
        socklen_t ml = sizeof me;
        if (getsockname(fd, &me.sa, &ml) == 0)
            es__sockaddr_port(&me, &a->lport); /* made: the kernel's pick */
        es__tcp_fill_peer(fd, &a->peer);
        if (a->peer.naddrs == 0 && st->conn.nremote > 0) {
            /* reset already: the address it connected to */
            a->peer.addrs[0] = st->conn.remote[st->conn_idx];
            a->peer.naddrs = 1;
            a->peer.port = st->conn.port;
        }
    } else {
        es__fill_peer(fd, 0, &a->peer);
    }
    a->peer.ostreams = a->ostreams;
    a->peer.istreams = a->istreams;
    up.peer = a->peer;
    pthread_mutex_unlock(&a->lock);
    st->fd = fd;
    st->attempts = 0;
    es__send_owner(st->owner, ESOCK_MSG_ASSOC_UP, &up, sizeof up);
    arm_recv(st); /* a failure here comes as a DOWN after the UP */
}

/* Up, for an association that has ended already (ES_GHOST_FD): the owner
 * hears of it as of any other, then gets what it sent, then its DOWN;
 * sends meanwhile are ESOCK_ECLOSED. */
static void ghost_up(struct as_st *st, uint16_t os, uint16_t is)
{
    struct as_ent *a = st->a;
    esock_up up = {.assoc = st->h, .ep = st->ep};
    pthread_mutex_lock(&a->lock);
    a->state = ESOCK_ASSOC_SHUTTING_DOWN;
    if (os)
        a->ostreams = os;
    if (is)
        a->istreams = is;
    a->peer.ostreams = a->ostreams;
    a->peer.istreams = a->istreams;
    up.peer = a->peer;
    pthread_mutex_unlock(&a->lock);
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
    st->cfd = -1;
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
    st->owner_seq = s->owner_seq;
    st->credit = calloc(1, sizeof *st->credit);
    if (st->credit == NULL) {
        rt_demonitor(st->mon);
        return -ENOMEM;
    }
    pthread_rwlock_rdlock(&es__g.lock);
    struct ep_ent *e = es__ep_get(st->ep);
    if (e)
        st->opts = e->opts;
    pthread_rwlock_unlock(&es__g.lock);
    if (e == NULL) {
        free(st->credit);
        rt_demonitor(st->mon);
        return ESOCK_ESTALE; /* its endpoint is closing */
    }
    st->proto = st->opts.proto;
    st->credit->refs = 1;
    st->credit->pid = rt_self();
    st->credit->lowat = st->opts.rcv_hiwat / 2;
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
        if (rc < 0) {
            free(st->credit);
            rt_demonitor(st->mon);
            return rc; /* terminate does not run: nothing else to give back */
        }
        struct {
            int fd, err;
            uint16_t os, is;
        } up = {s->fd, 0, 0, 0};
        rt_send(rt_self(), ES_AS_FD, &up, sizeof up);
    } else if (s->fd == ES_GHOST_FD) {
        /* ended before it could be peeled off: up and down, from what its
         * endpoint hands over (ES_AS_GHOST) */
        struct {
            int fd, err;
            uint16_t os, is;
        } up = {ES_GHOST_FD, 0, 0, 0};
        rt_send(rt_self(), ES_AS_FD, &up, sizeof up);
    } else if (st->proto == ESOCK_TCP) {
        /* made: it connects itself once running (SCTP: the endpoint has) */
        rt_send(rt_self(), ES_AS_CONNECT, NULL, 0);
    }
    return 0;
}

static void as_terminate(void *state, int reason)
{
    struct as_st *st = state;
    end_locally(st);
    pthread_mutex_lock(&st->a->lock);
    bool open = st->a->state != ESOCK_ASSOC_CLOSED || st->a->head != NULL;
    pthread_mutex_unlock(&st->a->lock);
    if (open)
        finish(st, true);
    if (!st->down_sent) {
        /* its endpoint went (the link), or it crashed */
        int why = reason == RT_EXIT_SHUTDOWN || reason == RT_EXIT_KILL || reason == RT_EXIT_KILLED
                      ? ESOCK_DOWN_ENDPOINT
                      : ESOCK_DOWN_CRASH;
        send_down(st, why, reason);
    }
    if (st->proto == ESOCK_TCP)
        es__tcp_cleanup(st, true);
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

bool es__as_gather(struct as_st *st, const void *p, size_t n)
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

/* The association has ended (its last notification): what the kernel
 * queued behind it (SEND_FAILED for what it still held) is still to be
 * read. Stop the receive and end once its last completion is in: those
 * come in order before it. */
void es__as_ending(struct as_st *st, int reason, int error)
{
    if (st->ending)
        return;
    st->ending = true;
    st->end_reason = reason;
    st->end_error = error;
}

static _Thread_local unsigned char *es_scratch; /* per scheduler thread */

static pthread_key_t es_scratch_key;
static pthread_once_t es_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_init(void)
{
    /* the buffer is freed when its thread ends */
    if (pthread_key_create(&es_scratch_key, free) != 0)
        abort();
}

unsigned char *es__as_scratch(void)
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

void es__as_deliver_msg(struct as_st *st, rt_msg *m, size_t payload)
{
    credit_attach(st, m, payload);
    if (rt_forward(st->owner, m) < 0)
        rt_msg_free(m);
}

/* May it read another message? */
static bool credit_ok(struct as_st *st)
{
    struct rx_credit *c = st->credit;
    if (atomic_load(&c->held) < st->opts.rcv_hiwat)
        return true;
    atomic_store(&c->stalled, true);
    if (atomic_load(&c->held) > c->lowat)
        return false; /* a release below the low mark will say so */
    /* released meanwhile: go on, unless that release already woke it */
    return atomic_exchange(&c->stalled, false);
}

/* Read what is there, up to a budget per turn. */
static void read_some(struct as_st *st)
{
    for (int k = 0; k < ES_READ_BUDGET; k++) {
        if (st->fd < 0 || st->down_sent || st->orphaned || !credit_ok(st))
            return;
        int rc = st->proto == ESOCK_TCP ? es__tcp_read_one(st) : es__sctp_read_one(st);
        if (rc < 0)
            return;
        if (rc == 0 || (rc == ES_READ_DRAINED && !st->rdhup)) {
            /* empty: an association that has ended has said all */
            if (st->ending) {
                st->ending = false;
                es__as_stop(st, st->end_reason, st->end_error, false);
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
        es__as_stop(st, ESOCK_DOWN_COMM_LOST, r->res, true);
        return;
    }
    /* the peer's end (or an error) is in: read to it, not to a short read */
    st->rdhup = r->res > 0 && (r->res & (POLLRDHUP | POLLHUP | POLLERR | POLLPRI));
    read_some(st);
    if (!st->reading && st->fd >= 0 && !st->down_sent)
        arm_recv(st);
}

/* ---- sending
 * ---------------------------------------------------------------------------------------- */

int es__lost_reason(int err)
{
    return err == -ECONNRESET || err == -EPIPE ? ESOCK_DOWN_ABORT : ESOCK_DOWN_COMM_LOST;
}

int es__map_send_err(int e)
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

static int proto_write(struct as_ent *a, struct sq_item *q, const void *data)
{
    return a->proto == ESOCK_TCP ? es__tcp_write(a, q, data) : es__sctp_write(a, q, data);
}

/* The last esock_send to a TCP association on this thread: by whom, to
 * which. An association process that runs on the thread clears it: the
 * turn of the process that sent has ended by then. */
static _Thread_local struct {
    uint64_t pid, assoc;
} last_send;

/* Whether a send from the caller may wait in the queue until the end of
 * the caller's turn, and make sure a kick is on its way then: TCP, a small
 * message with room beside those held; one that follows another from the
 * same process in the same turn (the first of a turn goes out at once, so
 * request/response pays nothing), or any while a kick is on its way
 * anyway; and the caller a process of the association process's
 * scheduler, which runs the kick after the caller's turn (from another
 * thread or scheduler the kick could come late: the message goes out
 * now). A process can run again before the association process did (the
 * others of its scheduler need not be association processes): it then
 * holds the first message of that turn too, which costs a kick, no more. */
static bool may_hold(struct as_ent *a, size_t len)
{
    if (a->proto != ESOCK_TCP || len > ES_TCP_HOLD_MSG || a->queued + len > ES_TCP_HOLD_MAX)
        return false;
    rt_pid self = rt_self();
    if (rt_pid_is_none(self))
        return false;
    uint64_t h = es__as_handle(a).id;
    bool follows = last_send.pid == self.id && last_send.assoc == h;
    last_send.pid = self.id;
    last_send.assoc = h;
    if (!follows && !a->kicked)
        return false;
    int here = rt_sched_of(self);
    if (here < 0 || rt_sched_of(a->pid) != here)
        return false;
    if (!a->kicked)
        a->kicked = rt_send(a->pid, ES_AS_KICK, NULL, 0) == 0;
    return a->kicked;
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
    if (len == 0 && !(a->proto == ESOCK_TCP && a->framed))
        return -EMSGSIZE; /* framed TCP: a length of 0 is a message */
    if (ppid == 0)
        ppid = a->default_ppid;
    struct sq_item it = {NULL, stream, (uint16_t)flags, ppid, context, lifetime, len, 0};
    bool hold = (a->head == NULL || a->held) && may_hold(a, len);
    if (a->held && !hold) {
        /* TCP: what is held goes out first, this one after it */
        int rc = es__tcp_write_queue(a);
        if (rc < 0)
            return es__map_send_err(-rc);
        a->held = false; /* all out, or the socket is full: the kick on its way
                            then watches for POLLOUT */
    }
    if (hold) {
        a->held = true;
    } else if (a->head == NULL) {
        /* straight to the socket; what it cannot take now waits */
        int rc = proto_write(a, &it, data);
        if (rc != 0)
            return rc < 0 ? es__map_send_err(-rc) : 0;
    } else if (a->queued + len > a->hiwat) {
        a->want_ready = true;
        return ESOCK_EWOULDBLOCK;
    }
    struct sq_item *q = malloc(sizeof *q + len);
    if (q == NULL) {
        /* TCP: a message written in part cannot be taken back, and what
         * follows it would be read as its rest: the connection ends */
        if (it.off > 0 && !a->broken) {
            a->broken = -ENOMEM;
            if (!a->kicked && rt_send(a->pid, ES_AS_KICK, NULL, 0) == 0)
                a->kicked = true;
        }
        return -ENOMEM;
    }
    *q = it;
    memcpy(q->data, data, len);
    if (a->tail)
        a->tail->next = q;
    else
        a->head = q;
    a->tail = q;
    a->queued += len;
    if (!a->kicked) {
        /* if that cannot be sent, the next send tries again */
        a->kicked = rt_send(a->pid, ES_AS_KICK, NULL, 0) == 0;
    }
    return 0;
}

static void begin_shutdown(struct as_st *st)
{
    if (st->proto == ESOCK_TCP) {
        es__tcp_shutdown(st);
        return;
    }
    int rc = es__sctp_send_flag(st, SCTP_EOF);
    if (rc < 0)
        es__as_stop(st, ESOCK_DOWN_SHUTDOWN, rc, true);
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
    if (a->broken) {
        /* TCP: a sender could not queue the rest of a message it had
         * written in part: the stream cannot go on */
        err = a->broken;
        pthread_mutex_unlock(&a->lock);
        es__as_stop(st, ESOCK_DOWN_CRASH, err, true);
        return;
    }
    a->held = false; /* written now: all of it, or up to a full socket */
    if (a->proto == ESOCK_TCP) {
        int rc = a->head && a->fd >= 0 ? es__tcp_write_queue(a) : 1;
        if (rc == 0)
            again = true;
        else if (rc < 0)
            err = rc;
    }
    while (a->proto == ESOCK_SCTP && a->head && a->fd >= 0) {
        struct sq_item *q = a->head;
        int rc = proto_write(a, q, q->data);
        if (rc <= 0) {
            if (rc == 0)
                again = true;
            else
                err = rc;
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
        /* the kernel's -errno: the peer's reset is an abort (hands the queue back) */
        es__as_stop(st, es__lost_reason(err), err, true);
        return;
    }
    if (again && !st->polling && st->fd >= 0) {
        int prc = rt_io_poll(st->fd, POLLOUT, 0, &st->preq);
        if (prc < 0) {
            es__as_stop(st, ESOCK_DOWN_CRASH, prc, true);
            return;
        }
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
/* `owner` (monitored with `mon`) has it now: it is told, as an ASSOC_UP
 * with handed_over. */
static void take_owner(struct as_st *st, rt_pid owner, rt_ref mon, uint64_t seq)
{
    st->owner = owner;
    st->owner_seq = seq;
    st->mon = mon;
    esock_up up = {.assoc = st->h, .ep = st->ep, .handed_over = true};
    pthread_mutex_lock(&st->a->lock);
    st->a->owner = owner;
    up.peer = st->a->peer;
    pthread_mutex_unlock(&st->a->lock);
    es__send_owner(owner, ESOCK_MSG_ASSOC_UP, &up, sizeof up);
}

/* Ask the endpoint for an owner (handover_wait_ms). */
static int ask_for_owner(struct as_st *st)
{
    struct es_owner_ref ref = {st->owner, st->h, st->owner_seq};
    return rt_send(st->ep_pid, ES_EP_ORPHAN, &ref, sizeof ref);
}

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
        take_owner(st, cand[i], mon, st->owner_seq);
        return true;
    }
    return false;
}

/* Its owner ended and nobody took it: wait handover_wait_ms for an owner
 * to register on the endpoint, reading nothing. Returns whether it waits. */
static bool orphan(struct as_st *st)
{
    if (st->opts.handover_wait_ms == 0 || st->fd < 0)
        return false;
    if (rt_send_after(rt_self(), (int)st->opts.handover_wait_ms, ES_AS_ORPHAN_TIMEOUT, NULL, 0,
                      &st->orphan_timer) < 0)
        return false;
    if (ask_for_owner(st) < 0) {
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
static void adopt(struct as_st *st, rt_pid owner, uint64_t seq)
{
    rt_ref mon;
    if (!st->orphaned)
        return; /* not waiting any more */
    if (!rt_alive(owner) || rt_monitor(owner, &mon) < 0) {
        /* that one has ended too: the endpoint hears of it first (its
         * monitor fired before this reached it), so asking again finds the
         * next, or waits for one */
        (void)ask_for_owner(st);
        return;
    }
    st->orphaned = false;
    if (st->orphan_timer) {
        rt_cancel_timer(st->orphan_timer);
        st->orphan_timer = 0;
    }
    take_owner(st, owner, mon, seq);
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
    last_send.pid = 0; /* whoever sent last on this thread, its turn is over */
    switch (m->tag) {
    case RT_MSG_IO: {
        const rt_io_result *r = rt_io_result_of(m);
        if (r->req == st->rreq && r->op == RT_IO_POLL && st->rreq) {
            on_ready(st, r);
        } else if (r->req == st->preq && r->op == RT_IO_POLL) {
            st->polling = false;
            flush(st);
        } else if (r->req == st->creq && st->creq && r->op == RT_IO_CONNECT) {
            es__tcp_connected(st, r);
        }
        break;
    }
    case ES_AS_CONNECT:
        es__tcp_connect(st);
        break;
    case ES_AS_SHUT_TIMEOUT:
        /* its own shutdown: the peer never ended its side */
        if (st->shut_timer) {
            st->shut_timer = 0;
            es__as_stop(st, ESOCK_DOWN_SHUTDOWN, -ETIMEDOUT, true);
        }
        break;
    case ES_AS_FD: {
        struct {
            int fd, err;
            uint16_t os, is;
        } up;
        memcpy(&up, m->data, sizeof up);
        if (up.fd == ES_GHOST_FD) {
            ghost_up(st, up.os, up.is);
            break;
        }
        if (up.fd < 0) {
            es__as_stop(st, ESOCK_DOWN_CANT_START, up.err, false);
            break;
        }
        (void)rt_io_own(up.fd); /* -EEXIST: accepted, owned since init */
        es__as_go_up(st, up.fd, up.os, up.is);
        break;
    }
    case ES_AS_CANT_START: {
        int err;
        memcpy(&err, m->data, sizeof err);
        es__as_stop(st, ESOCK_DOWN_CANT_START, err, false);
        break;
    }
    case ES_AS_GHOST:
        es__sctp_ghost(st, m);
        break;
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
            es__as_stop(st, ESOCK_DOWN_SHUTDOWN, 0, true);
            break;
        }
        /* TCP: the queue written and the peer's end in by then, or it is
         * reset (what is still queued comes back) */
        if (st->proto == ESOCK_TCP && st->shut_timer == 0 &&
            rt_send_after(rt_self(), ES_TCP_SHUTDOWN_MS, ES_AS_SHUT_TIMEOUT, NULL, 0,
                          &st->shut_timer) < 0) {
            es__as_stop(st, ESOCK_DOWN_SHUTDOWN, -ENOMEM, true);
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
        /* SCTP: an ABORT through the socket, not a close: the kernel then
         * hands back what it still held (SCTP_SEND_FAILED, before
         * COMM_LOST), and the owner gets those first, then esock's own
         * queue. TCP: a reset (a close that lingers 0 s) */
        if (st->proto == ESOCK_SCTP && st->fd >= 0 && !st->aborting &&
            es__sctp_send_flag(st, SCTP_ABORT) == 0) {
            /* the kernel has queued its notifications during that call:
             * read them now, then end */
            st->aborting = true;
            es__as_ending(st, ESOCK_DOWN_ABORT, 0);
            read_some(st);
            break;
        }
        es__as_stop(st, ESOCK_DOWN_ABORT, 0, true);
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
        struct es_owner_ref ref;
        memcpy(&ref, m->data, sizeof ref);
        adopt(st, ref.pid, ref.seq);
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
