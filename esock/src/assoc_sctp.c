/* assoc_sctp.c: the SCTP half of the association process: reading its
 * one-to-one socket (data, gathered when it comes in parts, and
 * notifications as typed owner messages) and writing to it. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assoc.h"

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
                es__as_ending(st, ESOCK_DOWN_ABORT, 0);
            else
                es__as_ending(
                    st, cause == SCTP_ERROR_USER_ABORT ? ESOCK_DOWN_ABORT : ESOCK_DOWN_COMM_LOST,
                    cause);
            break;
        }
        case SCTP_SHUTDOWN_COMP:
            es__as_ending(st, ESOCK_DOWN_SHUTDOWN, 0);
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
static bool deliver(struct as_st *st, const struct sctp_rcvinfo *ri, const void *p, size_t n)
{
    esock_data d = data_head(st, ri);
    rt_msg *m = rt_msg_alloc(ESOCK_MSG_DATA, sizeof d + n + ES_TAG_ROOM);
    if (m == NULL) {
        /* not dropped in silence: the association ends, and says why */
        es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
        return false;
    }
    m->size = (uint32_t)(sizeof d + n);
    d.len = n;
    d.data = (char *)m->data + sizeof d;
    memcpy(m->data, &d, sizeof d);
    memcpy((char *)m->data + sizeof d, p, n);
    es__as_deliver_msg(st, m, n);
    return true;
}

/* What one read brought: n bytes at buf (inside dm, the owner's message,
 * when that is not NULL), the read's flags and SCTP_RCVINFO. `done` is
 * what a whole message returns. Returns as es__sctp_read_one. */
static int got(struct as_st *st, unsigned char *buf, size_t n, int msg_flags,
               const struct sctp_rcvinfo *rip, rt_msg *dm, int done)
{
    bool eor = (msg_flags & MSG_EOR) != 0;
    struct sctp_rcvinfo ri = *rip;
    if (msg_flags & MSG_NOTIFICATION) {
        /* a notification can come in parts too (a SEND_FAILED carries the
         * payload it hands back) */
        int rc = 1;
        if (!eor) {
            st->rnotif = true;
            if (!es__as_gather(st, buf, n)) {
                es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
                rc = -1;
            }
        } else if (st->rlen && st->rnotif) {
            if (es__as_gather(st, buf, n))
                notification(st, st->rbuf, st->rlen);
            st->rlen = 0;
            st->rnotif = false;
        } else {
            notification(st, buf, n);
        }
        rt_msg_free(dm);
        return rc < 0 || st->fd < 0 ? -1 : eor ? done : 1;
    }
    if (eor && st->rlen == 0) {
        st->guess = n;
        if (dm != NULL) {
            esock_data d = data_head(st, &ri);
            d.len = n;
            d.data = buf;
            memcpy(dm->data, &d, sizeof d);
            dm->size = (uint32_t)(sizeof d + n);
            es__as_deliver_msg(st, dm, n);
        } else if (!deliver(st, &ri, buf, n)) {
            return -1;
        }
        return done;
    }
    /* a message in parts (larger than the buffer, or than what the kernel
     * hands over at once: partial delivery) */
    if (st->rlen == 0)
        st->rinfo = ri;
    bool ok = es__as_gather(st, buf, n);
    rt_msg_free(dm);
    if (!ok) {
        es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
        return -1;
    }
    if (eor) {
        st->guess = st->rlen <= ES_SCRATCH ? st->rlen : ES_SCRATCH;
        bool delivered = deliver(st, &st->rinfo, st->rbuf, st->rlen);
        st->rlen = 0;
        if (st->rcap > (1u << 20)) { /* keep a big one only for a while */
            free(st->rbuf);
            st->rbuf = NULL;
            st->rcap = 0;
        }
        if (!delivered)
            return -1;
        return done;
    }
    return 1;
}

/* One recvmsg. Returns 1 (something read), 0 (the socket is empty), -1
 * (the association ended meanwhile). */
int es__sctp_read_one(struct as_st *st)
{
    rt_msg *dm = NULL; /* the owner's message, read into directly */
    unsigned char *buf;
    size_t cap;
    if (st->rlen == 0 && st->guess > ES_COPY_MAX &&
        (dm = rt_msg_alloc(ESOCK_MSG_DATA, sizeof(esock_data) + st->guess + ES_TAG_ROOM)) != NULL) {
        buf = (unsigned char *)dm->data + sizeof(esock_data);
        cap = st->guess;
    } else {
        buf = es__as_scratch();
        cap = ES_SCRATCH;
        if (buf == NULL) {
            es__as_stop(st, ESOCK_DOWN_CRASH, -ENOMEM, true);
            return -1;
        }
    }
    char cbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo)) + CMSG_SPACE(sizeof(struct sctp_nxtinfo))];
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
        es__as_stop(st, ESOCK_DOWN_COMM_LOST, -e, true);
        return -1;
    }
    bool eor = (mh.msg_flags & MSG_EOR) != 0;
    /* SCTP_NXTINFO comes when another message is already queued behind
     * this one: without it the socket is empty now, and what comes later
     * wakes the poll again (saves the read that would say EAGAIN) */
    struct sctp_rcvinfo ri;
    memset(&ri, 0, sizeof ri);
    bool more = !st->nxtinfo || (mh.msg_flags & MSG_CTRUNC);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO)
            memcpy(&ri, CMSG_DATA(c), sizeof ri);
        else if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_NXTINFO)
            more = true;
    }
    int done = more ? 1 : ES_READ_DRAINED; /* what a whole message read returns */
    if (n == 0 && !eor && !(mh.msg_flags & MSG_NOTIFICATION)) {
        /* end of stream: the association is gone (its notification, when
         * there is one, came first) */
        rt_msg_free(dm);
        es__as_stop(st, ESOCK_DOWN_SHUTDOWN, 0, false);
        return -1;
    }
    return got(st, buf, (size_t)n, mh.msg_flags, &ri, dm, done);
}

/* An association that ended before its endpoint could peel it off: what
 * the endpoint read for it from its own socket (struct es_ghost_read, then
 * the bytes), in the order it came. */
void es__sctp_ghost(struct as_st *st, const rt_msg *m)
{
    struct es_ghost_read g;
    if (m->size < sizeof g)
        return;
    memcpy(&g, m->data, sizeof g);
    unsigned char *p = (unsigned char *)m->data + sizeof g;
    got(st, p, m->size - sizeof g, g.msg_flags, &g.ri, NULL, 1);
    if (st->ending && !st->down_sent) { /* its last notification: all has come */
        st->ending = false;
        es__as_stop(st, st->end_reason, st->end_error, false);
    }
}

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

/* A graceful SHUTDOWN. A peeled-off socket is one-to-many in style, where
 * shutdown(2) does nothing: it is an empty message with SCTP_EOF. The
 * owner hears of the end from the SHUTDOWN_COMP notification. */
int es__sctp_send_flag(struct as_st *st, uint16_t flag)
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

int es__sctp_write(struct as_ent *a, struct sq_item *q, const void *data)
{
    ssize_t n =
        sctp_out(a->fd, q->stream, q->ppid, q->flags, q->context, q->lifetime, data, q->len);
    if (n >= 0)
        return 1;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}
