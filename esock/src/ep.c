/* ep.c: the endpoint process (a callback actor under esock_sup).
 *
 * SCTP: it owns the one-to-many socket. It reads it only while someone may
 * want what comes (an owner is registered, or an association it made is
 * being set up), one message at a time: each association that comes up is
 * peeled off before the next read, so the kernel moves everything queued
 * for it to the new socket and nothing of it is ever read here. Except
 * for one that has ended by the time its COMM_UP is read (it came and went
 * while nobody read): the kernel has let it go, so it cannot be peeled
 * off, but what it sent and its end are still queued here. Its process
 * (a "ghost", ES_GHOST_FD) gets each of those reads from here.
 *
 * TCP: it owns a listening socket per local address and accepts (multishot)
 * only while it has an owner; until then connections wait in the backlog.
 * Associations it makes connect by themselves (tcp.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>

#include "internal.h"

struct owner {
    rt_pid pid;
    esock_accept_fn fn;
    void *arg;
    rt_ref mon;
    uint64_t seq; /* its registration: the endpoint's count of them */
};

struct conn {
    sctp_assoc_t kid;
    struct as_ent *a;
    rt_pid pid;
};

/* An association that ended before it could be peeled off (top of file). */
struct ghost {
    sctp_assoc_t kid;
    struct as_ent *a;
    rt_pid pid;    /* its process, once it has one */
    bool owned;    /* has one */
    bool ended;    /* its end has been read */
    rt_msg **held; /* read before it had a process (no owner yet): in order */
    unsigned nheld, capheld;
};

struct ep_st {
    struct ep_ent *ent;
    esock_ep h;
    int fd;
    rt_pid sup;
    struct owner *owners; /* oldest first */
    unsigned nowners, capowners;
    struct conn *conns; /* associations being set up (ours) */
    unsigned nconns, capconns;
    struct conn *pend; /* incoming, up, waiting for a first owner */
    unsigned npend, cappend;
    struct es_owner_ref *orphans; /* associations whose owner ended, waiting for one */
    uint64_t nregs;               /* registrations so far */
    unsigned norphans, caporphans;
    bool reading;
    rt_io_req rreq;
    /* TCP */
    int proto;
    int lfds[ESOCK_MAX_ADDRS]; /* listening sockets */
    unsigned nlfds;
    rt_io_req areq[ESOCK_MAX_ADDRS]; /* their multishot accepts (0: none) */
    bool accept_wait;                /* out of fds: accepting again after a pause */
    rt_timer accept_timer;
    struct ghost *ghosts; /* associations that ended before they were peeled off */
    unsigned nghosts, capghosts;
    struct msghdr mh; /* the read in flight */
    struct iovec iov;
    struct sockaddr_storage rname;                       /* its peer (COMM_UP: a ghost's) */
    char rcbuf[CMSG_SPACE(sizeof(struct sctp_rcvinfo))]; /* a ghost's data: its association */
    union {
        union sctp_notification n;
        char b[65536]; /* a ghost's data comes here too */
    } nbuf;
};

static int grow(void **v, unsigned *cap, unsigned n, size_t elem)
{
    if (n < *cap)
        return 0;
    unsigned nc = *cap ? *cap * 2 : 8;
    void *nv = realloc(*v, nc * elem);
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

/* A buffer size: one the user chose, as asked where the process may
 * (CAP_NET_ADMIN), else as far as net.core.[rw]mem_max lets it; the default
 * (0) asks for 1 MiB within those limits, which the administrator set for
 * the machine: forcing it on every one of thousands of associations would
 * put SCTP under global memory pressure (net.sctp.sctp_mem), where it
 * drops and stalls. */
#define ES_DEFAULT_BUF (1 << 20)

static int set_buf(int fd, int force, int plain, int size)
{
    if (size == 0) {
        size = ES_DEFAULT_BUF;
        return setsockopt(fd, SOL_SOCKET, plain, &size, sizeof size);
    }
    if (setsockopt(fd, SOL_SOCKET, force, &size, sizeof size) == 0)
        return 0;
    return setsockopt(fd, SOL_SOCKET, plain, &size, sizeof size);
}

int es__set_sock_opts(int fd, const esock_ep_opts *o)
{
    int one = 1, nd = o->no_nodelay ? 0 : 1;
    if (setsockopt(fd, IPPROTO_SCTP, SCTP_NODELAY, &nd, sizeof nd) < 0 ||
        set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, o->sndbuf) < 0 ||
        set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, o->rcvbuf) < 0 ||
        setsockopt(fd, IPPROTO_SCTP, SCTP_RECVRCVINFO, &one, sizeof one) < 0)
        return -errno;
    struct sctp_initmsg im = {.sinit_num_ostreams = o->ostreams,
                              .sinit_max_instreams = o->istreams};
    if (setsockopt(fd, IPPROTO_SCTP, SCTP_INITMSG, &im, sizeof im) < 0)
        return -errno;
    if (o->rto_initial_ms || o->rto_min_ms || o->rto_max_ms) {
        struct sctp_rtoinfo rto = {.srto_initial = o->rto_initial_ms,
                                   .srto_max = o->rto_max_ms,
                                   .srto_min = o->rto_min_ms};
        if (setsockopt(fd, IPPROTO_SCTP, SCTP_RTOINFO, &rto, sizeof rto) < 0)
            return -errno;
    }
    if (o->hb_interval_ms || o->path_max_retrans) {
        struct sctp_paddrparams pp;
        memset(&pp, 0, sizeof pp);
        pp.spp_hbinterval = o->hb_interval_ms;
        pp.spp_pathmaxrxt = o->path_max_retrans;
        pp.spp_flags = o->hb_interval_ms ? SPP_HB_ENABLE : 0;
        if (setsockopt(fd, IPPROTO_SCTP, SCTP_PEER_ADDR_PARAMS, &pp, sizeof pp) < 0)
            return -errno;
    }
    if (o->assoc_max_retrans) {
        struct sctp_assocparams ap;
        memset(&ap, 0, sizeof ap);
        ap.sasoc_asocmaxrxt = o->assoc_max_retrans;
        if (setsockopt(fd, IPPROTO_SCTP, SCTP_ASSOCINFO, &ap, sizeof ap) < 0)
            return -errno;
    }
    struct sctp_event_subscribe ev;
    memset(&ev, 0, sizeof ev);
    ev.sctp_association_event = 1;
    ev.sctp_address_event = 1;
    ev.sctp_send_failure_event = 1;
    ev.sctp_peer_error_event = 1;
    ev.sctp_shutdown_event = 1;
    ev.sctp_partial_delivery_event = 1;
    if (setsockopt(fd, IPPROTO_SCTP, SCTP_EVENTS, &ev, sizeof ev) < 0)
        return -errno;
    return 0;
}

void es__fill_peer(int fd, sctp_assoc_t id, esock_peer *peer)
{
    struct sockaddr *addrs = NULL;
    memset(peer, 0, sizeof *peer);
    int n = sctp_getpaddrs(fd, id, &addrs);
    if (n <= 0)
        return;
    char *p = (char *)addrs;
    for (int i = 0; i < n; i++) {
        struct sockaddr *sa = (struct sockaddr *)p;
        size_t l =
            sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        if (peer->naddrs < ESOCK_MAX_ADDRS) {
            memcpy(&peer->addrs[peer->naddrs], sa, l);
            if (peer->naddrs == 0)
                es__sockaddr_port(&peer->addrs[0], &peer->port);
            peer->naddrs++;
        }
        p += l;
    }
    sctp_freepaddrs(addrs);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

/* A TCP endpoint: its listening sockets. */
static int tcp_init(struct ep_st *st, struct ep_ent *e)
{
    esock_ep_opts o = e->opts;
    int rc = es__tcp_listen(&o, st->lfds, &st->nlfds);
    if (rc < 0)
        return rc;
    for (unsigned i = 0; i < st->nlfds; i++) {
        rc = rt_io_own(st->lfds[i]);
        if (rc < 0) {
            for (unsigned k = 0; k < st->nlfds; k++) {
                if (k < i)
                    rt_io_disown(st->lfds[k]);
                close(st->lfds[k]);
            }
            st->nlfds = 0;
            return rc;
        }
    }
    st->fd = st->lfds[0];
    pthread_rwlock_wrlock(&es__g.lock);
    e->fd = st->fd;
    e->opts.port = o.port;
    pthread_rwlock_unlock(&es__g.lock);
    return 0;
}

static int ep_init(void *state, void *arg)
{
    struct ep_st *st = state;
    struct ep_ent *e = arg;
    memset(st, 0, sizeof *st);
    st->ent = e;
    st->fd = -1;
    const esock_ep_opts *o = &e->opts;
    pthread_rwlock_rdlock(&es__g.lock);
    st->h = es__ep_handle(e);
    st->sup = es__g.sup;
    pthread_rwlock_unlock(&es__g.lock);
    st->proto = o->proto;
    if (o->proto == ESOCK_TCP)
        return tcp_init(st, e);
    int family = AF_INET;
    for (unsigned i = 0; i < o->naddrs; i++)
        if (o->addrs[i].sa.sa_family == AF_INET6)
            family = AF_INET6;
    int fd = socket(family, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_SCTP);
    if (fd < 0)
        return errno == ESOCKTNOSUPPORT ? -EPROTONOSUPPORT : -errno;
    int rc = es__set_sock_opts(fd, o);
    if (rc < 0)
        goto fail;
    /* the first address fixes the port (the kernel's pick for 0), the
     * others join it */
    esock_addr first = o->addrs[0];
    if (first.sa.sa_family == AF_INET)
        first.in4.sin_port = htons(o->port);
    else
        first.in6.sin6_port = htons(o->port);
    if (bind(fd, &first.sa, (socklen_t)es__addr_len(&first)) < 0) {
        rc = -errno;
        goto fail;
    }
    esock_addr bound;
    socklen_t bl = sizeof bound;
    if (getsockname(fd, &bound.sa, &bl) < 0) {
        rc = -errno;
        goto fail;
    }
    uint16_t port;
    es__sockaddr_port(&bound, &port);
    if (o->naddrs > 1) {
        char packed[ESOCK_MAX_ADDRS * sizeof(struct sockaddr_in6)];
        size_t off = 0;
        for (unsigned i = 1; i < o->naddrs; i++) {
            esock_addr a = o->addrs[i];
            if (a.sa.sa_family == AF_INET)
                a.in4.sin_port = htons(port);
            else
                a.in6.sin6_port = htons(port);
            memcpy(packed + off, &a, es__addr_len(&a));
            off += es__addr_len(&a);
        }
        if (sctp_bindx(fd, (struct sockaddr *)packed, (int)o->naddrs - 1, SCTP_BINDX_ADD_ADDR) <
            0) {
            rc = -errno;
            goto fail;
        }
    }
    if (listen(fd, o->backlog) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = rt_io_own(fd);
    if (rc < 0)
        goto fail;
    st->fd = fd;
    pthread_rwlock_wrlock(&es__g.lock);
    e->fd = fd;
    e->opts.port = port;
    pthread_rwlock_unlock(&es__g.lock);
    return 0;
fail:
    close(fd);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------------
 */

/* Is anyone waiting for what the endpoint's socket brings? An owner, an
 * association of its own being set up, or a ghost's process still to hear
 * its end (one without a process yet waits, like the rest, for an owner). */
static bool wanted(const struct ep_st *st)
{
    if (st->nowners || st->nconns)
        return true;
    for (unsigned i = 0; i < st->nghosts; i++)
        if (st->ghosts[i].owned)
            return true;
    return false;
}

static void ep_read(struct ep_st *st)
{
    if (st->proto == ESOCK_TCP) {
        /* accept only for an owner: otherwise they wait in the backlog */
        if (st->nowners == 0 || st->accept_wait)
            return;
        for (unsigned i = 0; i < st->nlfds; i++)
            if (st->areq[i] == 0 && rt_io_accept(st->lfds[i], RT_IO_MULTISHOT, &st->areq[i]) < 0)
                st->areq[i] = 0;
        return;
    }
    if (st->reading || !wanted(st))
        return;
    /* into the endpoint's own buffer: only notifications come here, and a
     * single-shot read leaves the rest queued in the kernel */
    st->iov = (struct iovec){st->nbuf.b, sizeof st->nbuf};
    st->mh = (struct msghdr){.msg_name = &st->rname,
                             .msg_namelen = sizeof st->rname,
                             .msg_iov = &st->iov,
                             .msg_iovlen = 1,
                             .msg_control = st->rcbuf,
                             .msg_controllen = sizeof st->rcbuf};
    if (rt_io_recvmsg(st->fd, &st->mh, 0, 0, &st->rreq) == 0)
        st->reading = true;
}

static void abort_fd(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* Offer a new incoming association to the owners, newest first: true if
 * one took it (*pid: its process). */
static bool offer(struct ep_st *st, struct as_ent *a, int fd, rt_pid *pid)
{
    esock_peer peer;
    pthread_mutex_lock(&a->lock);
    peer = a->peer;
    esock_assoc h = es__as_handle(a);
    pthread_mutex_unlock(&a->lock);
    for (unsigned i = st->nowners; i-- > 0;) {
        struct owner *o = &st->owners[i];
        if (o->fn && !o->fn(o->arg, h, &peer))
            continue;
        struct as_start s = {
            .ent = a, .fd = fd, .owner = o->pid, .ep = rt_self(), .owner_seq = o->seq};
        if (es__as_spawn(&s, pid) == 0)
            return true;
        break; /* no process for it (out of memory): the others would fare no better */
    }
    /* nobody took it: an ABORT, not an association left up */
    if (fd >= 0)
        abort_fd(fd);
    es__as_release(a);
    return false;
}

static void incoming(struct ep_st *st, int fd, sctp_assoc_t kid, uint16_t os, uint16_t is);
static struct as_ent *incoming_ent(struct ep_st *st, sctp_assoc_t kid, uint16_t os, uint16_t is);

/* An incoming association that ended before its COMM_UP was read (see the
 * top of this file); its peer is the address its COMM_UP was read from. */
/* The peer a ghost's COMM_UP was read from. */
static void ghost_peer(struct ep_st *st, struct as_ent *a)
{
    esock_addr pa;
    memset(&pa, 0, sizeof pa);
    memcpy(&pa, &st->rname, sizeof pa < sizeof st->rname ? sizeof pa : sizeof st->rname);
    pthread_mutex_lock(&a->lock);
    if (pa.sa.sa_family == AF_INET || pa.sa.sa_family == AF_INET6) {
        es__sockaddr_port(&pa, &a->peer.port);
        a->peer.addrs[0] = pa;
        a->peer.naddrs = 1;
    }
    pthread_mutex_unlock(&a->lock);
}

static void ghost_drop(struct ghost *g)
{
    for (unsigned k = 0; k < g->nheld; k++)
        rt_msg_free(g->held[k]);
    free(g->held);
    g->held = NULL;
    g->nheld = g->capheld = 0;
}

/* An incoming ghost: offered to the owners like any other association. Read
 * with none registered (the endpoint reads then only for an association of
 * its own being set up), it waits for the first, its reads kept here: it
 * cannot wait in the kernel like the others, only its reads remain of it. */
static void ghost(struct ep_st *st, const struct sctp_assoc_change *sac)
{
    if ((st->nowners == 0 && st->nghosts >= (unsigned)st->ent->opts.backlog) ||
        grow((void **)&st->ghosts, &st->capghosts, st->nghosts, sizeof *st->ghosts) < 0)
        return;
    struct as_ent *a =
        incoming_ent(st, sac->sac_assoc_id, sac->sac_outbound_streams, sac->sac_inbound_streams);
    if (a == NULL)
        return;
    ghost_peer(st, a);
    struct ghost g = {.kid = sac->sac_assoc_id, .a = a};
    if (st->nowners == 0 || offer(st, a, ES_GHOST_FD, &g.pid)) {
        g.owned = st->nowners > 0;
        st->ghosts[st->nghosts++] = g;
    }
}

/* The first owner is here: the ghosts that waited for one, in order. */
static void ghosts_offer(struct ep_st *st)
{
    for (unsigned i = 0; i < st->nghosts;) {
        struct ghost *g = &st->ghosts[i];
        if (g->owned) {
            i++;
            continue;
        }
        bool taken = offer(st, g->a, ES_GHOST_FD, &g->pid); /* (releases a if not) */
        for (unsigned k = 0; taken && k < g->nheld; k++) {
            if (rt_forward(g->pid, g->held[k]) == 0)
                g->held[k] = NULL;
        }
        ghost_drop(g);
        g->owned = taken;
        if (!taken || g->ended)
            st->ghosts[i] = st->ghosts[--st->nghosts];
        else
            i++;
    }
}

/* A read for a ghost: handed to its process; false if it is none's. */
static bool ghost_read(struct ep_st *st, sctp_assoc_t kid, const void *p, size_t n, int flags,
                       const struct sctp_rcvinfo *ri, bool last)
{
    unsigned i = 0;
    while (i < st->nghosts && st->ghosts[i].kid != kid)
        i++;
    if (i == st->nghosts)
        return false;
    struct ghost *gh = &st->ghosts[i];
    struct es_ghost_read g = {.msg_flags = flags, .ri = *ri};
    rt_msg *m = rt_msg_alloc(ES_AS_GHOST, sizeof g + n);
    if (m != NULL) {
        memcpy(m->data, &g, sizeof g);
        memcpy((char *)m->data + sizeof g, p, n);
    }
    /* to its process, or kept for its first owner; when neither can be
     * (it has ended: shutdown, owner gone; or no memory) it is dropped */
    bool kept;
    if (gh->owned)
        kept = m != NULL && rt_forward(gh->pid, m) == 0;
    else if ((kept = m != NULL &&
                     grow((void **)&gh->held, &gh->capheld, gh->nheld, sizeof *gh->held) == 0))
        gh->held[gh->nheld++] = m;
    if (!kept)
        rt_msg_free(m);
    if (!gh->owned) {
        if (kept) {
            gh->ended |= last; /* it waits for its owner all the same */
            return true;
        }
        ghost_drop(gh); /* as if rejected */
        es__as_release(gh->a);
    }
    if (last || !kept)
        st->ghosts[i] = st->ghosts[--st->nghosts];
    return true;
}

static void comm_up(struct ep_st *st, const struct sctp_assoc_change *sac)
{
    for (unsigned i = 0; i < st->nconns; i++) {
        struct conn *c = &st->conns[i];
        if (c->kid != sac->sac_assoc_id)
            continue;
        int fd = sctp_peeloff(st->fd, sac->sac_assoc_id);
        struct {
            int fd, err;
            uint16_t os, is;
        } up = {fd, fd < 0 ? -errno : 0, sac->sac_outbound_streams, sac->sac_inbound_streams};
        bool gone = fd < 0 && errno == EINVAL; /* it came and went: a ghost (top of file) */
        if (gone) {
            if (grow((void **)&st->ghosts, &st->capghosts, st->nghosts, sizeof *st->ghosts) < 0) {
                gone = false; /* no room to follow it: it could not start */
                up.err = -ENOMEM;
            } else {
                ghost_peer(st, c->a);
                up.fd = ES_GHOST_FD;
            }
        }
        if (rt_send(c->pid, ES_AS_FD, &up, sizeof up) < 0) {
            if (fd >= 0)
                close(fd); /* it ended meanwhile (shutdown, abort, owner gone) */
        } else if (gone) {
            st->ghosts[st->nghosts++] =
                (struct ghost){.kid = sac->sac_assoc_id, .a = c->a, .pid = c->pid, .owned = true};
        }
        st->conns[i] = st->conns[--st->nconns];
        return;
    }
    /* an incoming association */
    int fd = sctp_peeloff(st->fd, sac->sac_assoc_id);
    if (fd >= 0) {
        incoming(st, fd, sac->sac_assoc_id, sac->sac_outbound_streams, sac->sac_inbound_streams);
    } else if (errno == EINVAL) { /* gone already */
        ghost(st, sac);
    } else {
        /* out of fds or memory: it cannot have a process; abort it rather
         * than leave it up here, where its data would be read and lost */
        struct sctp_sndrcvinfo si = {.sinfo_flags = SCTP_ABORT,
                                     .sinfo_assoc_id = sac->sac_assoc_id};
        sctp_send(st->fd, NULL, 0, &si, MSG_DONTWAIT);
    }
}

/* A new incoming association (SCTP: peeled off; TCP: accepted) on `fd`,
 * which nobody owns: offered to the owners, or kept for the first. */
static struct as_ent *incoming_ent(struct ep_st *st, sctp_assoc_t kid, uint16_t os, uint16_t is)
{
    pthread_rwlock_wrlock(&es__g.lock);
    struct as_ent *a = es__as_new();
    pthread_rwlock_unlock(&es__g.lock);
    if (a == NULL)
        return NULL;
    const esock_ep_opts *o = &st->ent->opts;
    pthread_mutex_lock(&a->lock);
    a->ep = st->h;
    a->proto = o->proto;
    a->framed = o->framing == ESOCK_FRAME_LEN32;
    a->kid = kid;
    a->lport = (uint16_t)o->port;
    a->default_ppid = o->default_ppid;
    a->hiwat = o->send_hiwat;
    a->ostreams = os;
    a->istreams = is;
    a->peer.ostreams = a->ostreams;
    a->peer.istreams = a->istreams;
    pthread_mutex_unlock(&a->lock);
    return a;
}

static void incoming(struct ep_st *st, int fd, sctp_assoc_t kid, uint16_t os, uint16_t is)
{
    struct as_ent *a = incoming_ent(st, kid, os, is);
    if (a == NULL) {
        abort_fd(fd);
        return;
    }
    const esock_ep_opts *o = &st->ent->opts;
    pthread_mutex_lock(&a->lock);
    if (o->proto == ESOCK_TCP)
        es__tcp_fill_peer(fd, &a->peer);
    else
        es__fill_peer(fd, 0, &a->peer); /* (which clears the stream counts) */
    a->peer.ostreams = a->ostreams;
    a->peer.istreams = a->istreams;
    pthread_mutex_unlock(&a->lock);
    if (st->nowners == 0) {
        /* nobody to give it to yet: it waits, unread, for the first owner
         * (at most a backlog of them: TCP stops accepting meanwhile) */
        if (st->npend >= (unsigned)o->backlog ||
            grow((void **)&st->pend, &st->cappend, st->npend, sizeof *st->pend) < 0) {
            abort_fd(fd);
            es__as_release(a);
            return;
        }
        rt_io_own(fd);
        st->pend[st->npend++] = (struct conn){.kid = fd, .a = a};
        return;
    }
    rt_pid pid;
    offer(st, a, fd, &pid);
}

static void conn_failed(struct ep_st *st, sctp_assoc_t kid, int error)
{
    for (unsigned i = 0; i < st->nconns; i++) {
        if (st->conns[i].kid != kid)
            continue;
        rt_send(st->conns[i].pid, ES_AS_CANT_START, &error, sizeof error);
        st->conns[i] = st->conns[--st->nconns];
        return;
    }
}

/* A TCP accept's completion. */
static void tcp_accepted(struct ep_st *st, rt_msg *m, const rt_io_result *r)
{
    unsigned i = 0;
    while (i < st->nlfds && st->areq[i] != r->req)
        i++;
    if (i == st->nlfds)
        return;
    if (r->res >= 0) {
        int fd = rt_io_take_fd(m);
        if (fd >= 0) {
            rt_io_disown(fd);
            if (es__tcp_set_opts(fd, &st->ent->opts) < 0)
                abort_fd(fd);
            else
                incoming(st, fd, 0, 1, 1);
        }
    }
    if (r->flags & RT_IO_F_MORE)
        return;
    st->areq[i] = 0;
    bool transient = r->res >= 0 || r->res == -ECANCELED || r->res == -EINTR ||
                     r->res == -ECONNABORTED || r->res == -EAGAIN || r->res == -EPROTO;
    if (!transient) {
        /* out of descriptors or memory, or worse: the connections wait in
         * the backlog; try again in a while rather than spin */
        if (!st->accept_wait &&
            rt_send_after(rt_self(), 100, ES_EP_ACCEPT_AGAIN, NULL, 0, &st->accept_timer) == 0)
            st->accept_wait = true;
        return;
    }
    ep_read(st); /* again, while it has an owner (cancelled: one may be back) */
}

/* One message read from the endpoint's socket (n bytes in nbuf, its
 * control in mh): notifications, and what is queued for ghosts. */
static void ep_got(struct ep_st *st, ssize_t n, const struct msghdr *mh, int msg_flags)
{
    if (n < 0)
        return;
    if (!(msg_flags & MSG_NOTIFICATION)) {
        /* data: only a ghost's can be here (see the top of this file) */
        struct sctp_rcvinfo ri;
        memset(&ri, 0, sizeof ri);
        bool have = false;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
            if (c->cmsg_level == IPPROTO_SCTP && c->cmsg_type == SCTP_RCVINFO) {
                memcpy(&ri, CMSG_DATA(c), sizeof ri);
                have = true;
            }
        }
        if (have)
            ghost_read(st, ri.rcv_assoc_id, st->nbuf.b, (size_t)n, msg_flags, &ri, false);
        return;
    }
    if (n < 8)
        return;
    const union sctp_notification *no = &st->nbuf.n;
    if (no->sn_header.sn_type != SCTP_ASSOC_CHANGE || (size_t)n < sizeof(struct sctp_assoc_change))
        return;
    const struct sctp_assoc_change *sac = &no->sn_assoc_change;
    if (sac->sac_state != SCTP_COMM_UP) {
        struct sctp_rcvinfo none;
        memset(&none, 0, sizeof none);
        bool last = sac->sac_state == SCTP_COMM_LOST || sac->sac_state == SCTP_SHUTDOWN_COMP ||
                    sac->sac_state == SCTP_CANT_STR_ASSOC;
        if (ghost_read(st, sac->sac_assoc_id, st->nbuf.b, (size_t)n, msg_flags, &none, last))
            return;
    }
    switch (sac->sac_state) {
    case SCTP_COMM_UP:
        comm_up(st, sac);
        break;
    case SCTP_CANT_STR_ASSOC:
    case SCTP_COMM_LOST:
    case SCTP_SHUTDOWN_COMP:
        conn_failed(st, sac->sac_assoc_id, sac->sac_error ? sac->sac_error : -ECONNREFUSED);
        break;
    default:
        break;
    }
}

#define EP_READ_BUDGET 64 /* notifications read per turn before the ring is asked again */

static void ep_io(struct ep_st *st, rt_msg *m)
{
    const rt_io_result *r = rt_io_result_of(m);
    if (st->proto == ESOCK_TCP) {
        if (r->op == RT_IO_ACCEPT)
            tcp_accepted(st, m, r);
        return;
    }
    if (r->req != st->rreq)
        return;
    st->reading = false;
    ep_got(st, r->res, &st->mh, st->mh.msg_flags | r->msg_flags);
    /* what else is queued, read now: until an association's COMM_UP is read
     * and it is peeled off, what its peer sends fills the endpoint's own
     * socket, which all of them share; falling behind there (100
     * associations coming up while the first already send) dropped
     * packets, set-ups among them */
    for (int k = 0; k < EP_READ_BUDGET && wanted(st); k++) {
        struct iovec iov = {st->nbuf.b, sizeof st->nbuf};
        struct msghdr mh = {.msg_name = &st->rname,
                            .msg_namelen = sizeof st->rname,
                            .msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = st->rcbuf,
                            .msg_controllen = sizeof st->rcbuf};
        ssize_t n = recvmsg(st->fd, &mh, MSG_DONTWAIT);
        if (n < 0)
            break; /* EAGAIN: the ring says when there is more */
        ep_got(st, n, &mh, mh.msg_flags);
    }
    ep_read(st);
}

/* ---- calls
 * ---------------------------------------------------------------------------------------- */

struct reg_req {
    rt_pid owner;
    esock_accept_fn accept;
    void *arg;
};

static void reply_int(const rt_msg *m, int rc)
{
    rt_reply(m, &rc, sizeof rc);
}

/* Publish the owners (see ep_ent.owners). */
static void publish_owners(struct ep_st *st)
{
    rt_pid *v = NULL;
    if (st->nowners) {
        v = malloc(st->nowners * sizeof *v);
        if (v == NULL)
            return; /* the old list stays: a handover may pick a gone owner, and skip it */
        for (unsigned i = 0; i < st->nowners; i++)
            v[i] = st->owners[i].pid;
    }
    pthread_rwlock_wrlock(&es__g.lock);
    rt_pid *old = st->ent->owners;
    st->ent->owners = v;
    st->ent->nowners = st->nowners;
    pthread_rwlock_unlock(&es__g.lock);
    free(old);
}

/* Hand the waiting orphans to the newest owner (esock_ep_opts.handover_wait_ms):
 * with handover, any; without, those whose owner registered before it
 * (a new owner, such as one restarted by its supervisor, not one that was
 * there all along). Its accept callback decides, as for a new association.
 * One whose wait ran out has closed: it is dropped. */
static void adopt_orphans(struct ep_st *st)
{
    if (st->nowners == 0)
        return;
    const struct owner *o = &st->owners[st->nowners - 1];
    unsigned keep = 0;
    for (unsigned i = 0; i < st->norphans; i++) {
        struct es_owner_ref *w = &st->orphans[i];
        esock_peer peer;
        bool alive = false;
        pthread_rwlock_rdlock(&es__g.lock);
        struct as_ent *a = es__as_get(w->h);
        if (a != NULL) {
            pthread_mutex_lock(&a->lock);
            alive = rt_pid_eq(a->pid, w->pid) && a->state != ESOCK_ASSOC_CLOSED;
            peer = a->peer;
            pthread_mutex_unlock(&a->lock);
        }
        pthread_rwlock_unlock(&es__g.lock);
        if (!alive)
            continue;
        struct es_owner_ref to = {o->pid, w->h, o->seq};
        bool eligible = st->ent->opts.handover || o->seq > w->seq;
        if (!eligible || (o->fn && !o->fn(o->arg, w->h, &peer)) ||
            rt_send(w->pid, ES_AS_ADOPT, &to, sizeof to) < 0)
            st->orphans[keep++] = *w;
    }
    st->norphans = keep;
}

static void orphan(struct ep_st *st, const rt_msg *m)
{
    if (grow((void **)&st->orphans, &st->caporphans, st->norphans, sizeof *st->orphans) < 0)
        return; /* its wait runs out, and it closes */
    struct es_owner_ref w;
    memcpy(&w, m->data, sizeof w);
    w.pid = m->from; /* the association's process */
    st->orphans[st->norphans++] = w;
    adopt_orphans(st); /* one may have registered before this came */
}

static void reg_owner(struct ep_st *st, const rt_msg *m)
{
    const struct reg_req *r = m->data;
    for (unsigned i = 0; i < st->nowners; i++) {
        if (rt_pid_eq(st->owners[i].pid, r->owner)) {
            reply_int(m, -EEXIST);
            return;
        }
    }
    if (grow((void **)&st->owners, &st->capowners, st->nowners, sizeof *st->owners) < 0) {
        reply_int(m, -ENOMEM);
        return;
    }
    rt_ref mon;
    int rc = rt_monitor(r->owner, &mon);
    if (rc < 0) {
        reply_int(m, rc);
        return;
    }
    st->owners[st->nowners++] = (struct owner){r->owner, r->accept, r->arg, mon, ++st->nregs};
    publish_owners(st);
    reply_int(m, 0);
    /* associations whose owner ended go to the newest owner */
    adopt_orphans(st);
    /* what waited for a first owner */
    for (unsigned i = 0; i < st->npend; i++) { /* in the order they came */
        rt_io_disown(st->pend[i].kid);
        rt_pid pid;
        offer(st, st->pend[i].a, st->pend[i].kid, &pid);
    }
    st->npend = 0;
    ghosts_offer(st);
    ep_read(st);
}

static void remove_owner(struct ep_st *st, unsigned i)
{
    memmove(&st->owners[i], &st->owners[i + 1], (st->nowners - i - 1) * sizeof *st->owners);
    st->nowners--;
    publish_owners(st);
    /* TCP: nobody to accept for: connections wait in the backlog again */
    if (st->proto == ESOCK_TCP && st->nowners == 0)
        for (unsigned k = 0; k < st->nlfds; k++)
            if (st->areq[k] != 0)
                rt_io_cancel(st->areq[k]); /* its last completion clears areq[k] */
}

static void unreg_owner(struct ep_st *st, const rt_msg *m)
{
    const struct reg_req *r = m->data;
    for (unsigned i = 0; i < st->nowners; i++) {
        if (rt_pid_eq(st->owners[i].pid, r->owner)) {
            rt_demonitor(st->owners[i].mon);
            remove_owner(st, i);
            reply_int(m, 0);
            return;
        }
    }
    reply_int(m, ESOCK_ENOOWNER);
}

/* Start connecting the endpoint's socket to c's peer: the kernel's id of
 * the new association in *kid. */
static int ep_connectx(struct ep_st *st, const struct es_connect *c, sctp_assoc_t *kid)
{
    const esock_ep_opts *o = &st->ent->opts;
    char packed[ESOCK_MAX_ADDRS * sizeof(struct sockaddr_in6)];
    size_t off = 0;
    for (unsigned i = 0; i < c->nremote; i++) {
        memcpy(packed + off, &c->remote[i], es__addr_len(&c->remote[i]));
        off += es__addr_len(&c->remote[i]);
    }
    bool own_streams = c->ostreams || c->istreams;
    if (own_streams) {
        struct sctp_initmsg im = {.sinit_num_ostreams = c->ostreams ? c->ostreams : o->ostreams,
                                  .sinit_max_instreams = c->istreams ? c->istreams : o->istreams};
        setsockopt(st->fd, IPPROTO_SCTP, SCTP_INITMSG, &im, sizeof im);
    }
    *kid = 0;
    int rc = sctp_connectx(st->fd, (struct sockaddr *)packed, (int)c->nremote, kid);
    int err = errno;
    if (own_streams) {
        struct sctp_initmsg im = {.sinit_num_ostreams = o->ostreams,
                                  .sinit_max_instreams = o->istreams};
        setsockopt(st->fd, IPPROTO_SCTP, SCTP_INITMSG, &im, sizeof im);
    }
    if (rc < 0 && err != EINPROGRESS)
        return err == EALREADY ? -EISCONN : -err;
    return 0;
}

static void connect_call(struct ep_st *st, const rt_msg *m)
{
    struct connect_req r;
    memcpy(&r, m->data, sizeof r);
    pthread_rwlock_wrlock(&es__g.lock);
    struct as_ent *a = es__as_new();
    pthread_rwlock_unlock(&es__g.lock);
    if (a == NULL || grow((void **)&st->conns, &st->capconns, st->nconns, sizeof *st->conns) < 0) {
        if (a)
            es__as_release(a);
        r.result = -ENOMEM;
        rt_reply(m, &r, sizeof r);
        return;
    }
    const esock_ep_opts *o = &st->ent->opts;
    pthread_mutex_lock(&a->lock);
    a->ep = st->h;
    a->proto = o->proto;
    a->framed = o->framing == ESOCK_FRAME_LEN32;
    if (o->proto == ESOCK_TCP)
        a->ostreams = a->istreams = 1;
    a->owner = r.owner;
    a->lport = (uint16_t)o->port;
    a->default_ppid = o->default_ppid;
    a->hiwat = o->send_hiwat;
    a->peer.naddrs = r.c.nremote;
    memcpy(a->peer.addrs, r.c.remote, sizeof r.c.remote);
    a->peer.port = r.c.port;
    pthread_mutex_unlock(&a->lock);

    if (o->proto == ESOCK_TCP) {
        /* it connects by itself */
        struct as_start s = {.ent = a,
                             .fd = -1,
                             .owner = r.owner,
                             .ep = rt_self(),
                             .made = &r,
                             .owner_seq = st->nregs};
        rt_pid pid;
        int rc = es__as_spawn(&s, &pid);
        if (rc < 0)
            es__as_release(a);
        else
            r.out = es__as_handle(a);
        r.result = rc;
        rt_reply(m, &r, sizeof r);
        return;
    }
    sctp_assoc_t kid;
    int rc = ep_connectx(st, &r.c, &kid);
    if (rc < 0) {
        es__as_release(a);
        r.result = rc;
        rt_reply(m, &r, sizeof r);
        return;
    }
    pthread_mutex_lock(&a->lock);
    a->kid = kid;
    pthread_mutex_unlock(&a->lock);
    struct as_start s = {
        .ent = a, .fd = -1, .owner = r.owner, .ep = rt_self(), .made = &r, .owner_seq = st->nregs};
    rt_pid pid;
    rc = es__as_spawn(&s, &pid);
    if (rc < 0) {
        /* nobody to hand it to: end the attempt */
        struct sctp_sndrcvinfo sri = {.sinfo_flags = SCTP_ABORT, .sinfo_assoc_id = kid};
        sctp_send(st->fd, NULL, 0, &sri, 0);
        es__as_release(a);
        r.result = rc;
        rt_reply(m, &r, sizeof r);
        return;
    }
    st->conns[st->nconns++] = (struct conn){.kid = kid, .a = a, .pid = pid};
    r.out = es__as_handle(a);
    r.result = 0;
    rt_reply(m, &r, sizeof r);
    ep_read(st);
}

/* An association of ours asks to be connected again (esock_reconnect). */
static void reconnect(struct ep_st *st, const rt_msg *m)
{
    struct reconnect_req r;
    memcpy(&r, m->data, sizeof r);
    /* the asker may have ended since (its handle is then gone) */
    pthread_rwlock_rdlock(&es__g.lock);
    struct as_ent *a = es__as_get(r.h);
    bool asker = false;
    if (a != NULL) {
        pthread_mutex_lock(&a->lock);
        asker = rt_pid_eq(a->pid, m->from);
        pthread_mutex_unlock(&a->lock);
    }
    pthread_rwlock_unlock(&es__g.lock);
    if (!asker)
        return;
    sctp_assoc_t kid;
    int rc = grow((void **)&st->conns, &st->capconns, st->nconns, sizeof *st->conns);
    if (rc == 0)
        rc = ep_connectx(st, &r.c, &kid);
    if (rc < 0) {
        rt_send(m->from, ES_AS_CANT_START, &rc, sizeof rc);
        return;
    }
    pthread_mutex_lock(&a->lock);
    a->kid = kid;
    pthread_mutex_unlock(&a->lock);
    st->conns[st->nconns++] = (struct conn){.kid = kid, .a = a, .pid = m->from};
    ep_read(st);
}

/* ---- the actor
 * -------------------------------------------------------------------------------------- */

static void ep_handle(void *state, rt_msg *m)
{
    struct ep_st *st = state;
    switch (m->tag) {
    case RT_MSG_IO:
        ep_io(st, m);
        break;
    case ES_CALL_REG_OWNER:
        reg_owner(st, m);
        break;
    case ES_CALL_UNREG_OWNER:
        unreg_owner(st, m);
        break;
    case ES_CALL_CONNECT:
        connect_call(st, m);
        break;
    case ES_EP_RECONNECT:
        reconnect(st, m);
        break;
    case ES_EP_ORPHAN:
        orphan(st, m);
        break;
    case ES_EP_ACCEPT_AGAIN:
        st->accept_wait = false;
        st->accept_timer = 0;
        ep_read(st);
        break;
    case RT_MSG_DOWN: {
        const rt_down_info *d = m->data;
        for (unsigned i = 0; i < st->nowners; i++) {
            if (st->owners[i].mon == d->ref) {
                remove_owner(st, i);
                break;
            }
        }
        break;
    }
    case RT_MSG_EXIT: {
        const rt_exit_info *x = m->data;
        /* from the supervisor: stop. From an association: it has told its
         * owner itself; an endpoint outlives its associations */
        if (rt_pid_eq(x->from, st->sup))
            rt_exit(rt_self(), x->reason);
        break;
    }
    default:
        if (rt_is_call(m))
            reply_int(m, -EINVAL);
        break;
    }
}

static void ep_terminate(void *state, int reason)
{
    struct ep_st *st = state;
    /* associations being set up or waiting for an owner */
    for (unsigned i = 0; i < st->npend; i++) {
        rt_io_disown(st->pend[i].kid);
        abort_fd(st->pend[i].kid);
        es__as_release(st->pend[i].a);
    }
    esock_ep_down d = {st->h, reason};
    for (unsigned i = 0; i < st->nowners; i++)
        es__send_owner(st->owners[i].pid, ESOCK_MSG_EP_DOWN, &d, sizeof d);
    free(st->owners);
    free(st->conns);
    free(st->pend);
    for (unsigned i = 0; i < st->nghosts; i++) {
        if (!st->ghosts[i].owned) {
            ghost_drop(&st->ghosts[i]);
            es__as_release(st->ghosts[i].a);
        }
    }
    free(st->ghosts);
    free(st->orphans);
    if (st->accept_timer)
        rt_cancel_timer(st->accept_timer);
    pthread_rwlock_wrlock(&es__g.lock);
    st->ent->used = false;
    st->ent->ready = false;
    st->ent->fd = -1;
    rt_pid *owners = st->ent->owners;
    st->ent->owners = NULL;
    st->ent->nowners = 0;
    pthread_rwlock_unlock(&es__g.lock);
    free(owners);
    /* the socket is owned: the runtime closes it, which aborts whatever
     * association is still on it */
}

static const rt_actor_ops ep_ops = {
    .state_size = sizeof(struct ep_st),
    .init = ep_init,
    .handle = ep_handle,
    .terminate = ep_terminate,
};

int es__ep_start(void *arg, rt_pid *out)
{
    return rt_spawn_actor(&ep_ops, arg, &(rt_spawn_opts){.link = true, .trap_exits = true}, out);
}
