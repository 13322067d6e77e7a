/* io_epoll.c: the epoll backend, the control for io_uring in benchmarks and
 * the fallback where io_uring is disabled. Same contract (io.h), same
 * messages: an operation is tried without blocking when the scheduler next
 * reaps; if it would block, it waits on its fd (edge-triggered epoll) and
 * is tried again when the fd is ready. Multishot operations repeat until
 * they would block. Provided buffers are taken from a free list here
 * rather than by the kernel. Sends and receives pass MSG_DONTWAIT; fds used
 * for accept and connect are switched to O_NONBLOCK.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <liburing.h> /* struct io_uring_recvmsg_out: the same buffer layout */

#include "io.h"

#define STAGE_CONNECTING 1u
#define STAGE_WATCHED    2u /* epoll was told to watch its fd for it (wait_on_fd) */
#define STAGE_NONBLOCK   4u /* its fd was non-blocking before this backend made it so */

/* attempt()'s results beyond a system call's: try again a moment later
 * (LATER_NS), or end with -EAGAIN (not: wait for readiness) */
#define RES_LATER  (1 << 30)
#define RES_EAGAIN (RES_LATER + 1)
#define LATER_NS   1000000

struct fdent {
    struct ioreq **waiting; /* in the order they were started */
    unsigned n, cap;
    uint32_t events; /* what epoll was last told to watch for (EPOLLET aside) */
};

struct ep {
    int epfd;
    int efd;
    struct fdent *fds;
    unsigned nfds; /* size of fds[] */
    struct ioreq **trying;
    unsigned ntry, captry;
    struct ioreq **later; /* to be tried again at later_due */
    unsigned nlater, caplater;
    int64_t later_due;
};

static int ep_init(struct io_sched *io)
{
    struct ep *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    io->freebufs = malloc(io->nbufs * sizeof *io->freebufs);
    if (io->freebufs == NULL)
        goto out_free;
    for (unsigned i = 0; i < io->nbufs; i++)
        io->freebufs[i] = io->nbufs - 1 - i;
    io->nfree = io->nbufs;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->epfd < 0 || e->efd < 0)
        goto out_fds;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->efd, &ev) < 0)
        goto out_fds;
    io->priv = e;
    return 0;
out_fds:
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->efd >= 0)
        close(e->efd);
    free(io->freebufs);
    io->freebufs = NULL;
out_free:
    free(e);
    return -ENOMEM;
}

static void ep_fini(struct io_sched *io)
{
    struct ep *e = io->priv;
    for (unsigned i = 0; i < e->nfds; i++)
        free(e->fds[i].waiting);
    free(e->fds);
    free(e->trying);
    free(e->later);
    close(e->epfd);
    close(e->efd);
    free(e);
    io->priv = NULL;
}

static int push(struct ioreq ***v, unsigned *n, unsigned *cap, struct ioreq *r)
{
    if (*n == *cap) {
        unsigned nc = *cap ? *cap * 2 : 8;
        struct ioreq **nv = realloc(*v, nc * sizeof *nv);
        if (nv == NULL)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = r;
    return 0;
}

static int prepare_fd(struct ep *e, int fd);

static int ep_start(struct io_sched *io, struct ioreq *r)
{
    struct ep *e = io->priv;
    if (r->op == RT_IO_ACCEPT || r->op == RT_IO_CONNECT) {
        int rc = prepare_fd(e, r->fd);
        if (rc < 0)
            return rc;
        if (rc == 1)
            r->backend |= STAGE_NONBLOCK;
    }
    return push(&e->trying, &e->ntry, &e->captry, r);
}

static struct fdent *fdent(struct ep *e, int fd)
{
    struct fdent *fds = io__fd_room(e->fds, &e->nfds, sizeof *e->fds, fd);
    if (fds == NULL)
        return NULL;
    e->fds = fds;
    return &fds[fd];
}

/* accept and connect have no MSG_DONTWAIT: their fd must not block. 1 if
 * it was non-blocking already. */
static int prepare_fd(struct ep *e, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (fl & O_NONBLOCK)
        return 1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* The readiness a request waits for. */
static uint32_t wants(const struct ioreq *r)
{
    switch (r->op) {
    case RT_IO_SEND:
    case RT_IO_SENDMSG:
    case RT_IO_CONNECT:
        return EPOLLOUT;
    case RT_IO_POLL:
        return r->poll_events;
    default:
        return EPOLLIN | EPOLLRDHUP;
    }
}

/* r would block: park it on its fd until epoll says the fd is ready for
 * what the fd's waiting requests want (only that: waiting for input on a
 * writable socket must not wake us again and again). Every wait re-arms
 * the fd (MOD, or ADD if epoll has forgotten it: an fd closed and reopened
 * under the same number): the kernel then checks its readiness again, so
 * an edge that came before the wait is not lost. */
static int wait_on_fd(struct ep *e, struct ioreq *r)
{
    struct fdent *f = fdent(e, r->fd);
    if (f == NULL)
        return -ENOMEM;
    uint32_t events = wants(r);
    for (unsigned i = 0; i < f->n; i++)
        events |= wants(f->waiting[i]);
    struct epoll_event ev = {.events = events | EPOLLET, .data.u64 = (uint64_t)r->fd};
    io__count(r->io, 1);
    if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, r->fd, &ev) < 0) {
        io__count(r->io, 1);
        if (errno != ENOENT || epoll_ctl(e->epfd, EPOLL_CTL_ADD, r->fd, &ev) < 0)
            return -errno;
    }
    f->events = events;
    r->backend |= STAGE_WATCHED;
    return push(&f->waiting, &f->n, &f->cap, r);
}

static void forget_fd(struct io_sched *io, struct ep *e, int fd, int res)
{
    struct fdent *f = (unsigned)fd < e->nfds ? &e->fds[fd] : NULL;
    if (f == NULL)
        return;
    /* the fd is gone: what waited on it can never complete (and epoll
     * has forgotten it) */
    unsigned n = f->n;
    f->n = 0;
    f->events = 0;
    for (unsigned i = 0; i < n; i++)
        io__complete(io, f->waiting[i], res, false, -1);
}

/* One non-blocking attempt. Returns the result, or -EAGAIN (wait on the fd),
 * or 1 for "paused for a buffer" via *paused. */
static int attempt(struct io_sched *io, struct ioreq *r, int *bid)
{
    *bid = -1;
    io__count(io, 1); /* one system call per attempt (two for a connect check) */
    char *b;
    ssize_t n;
    switch (r->op) {
    case RT_IO_ACCEPT: {
        socklen_t len = sizeof r->addr;
        int fd = accept4(r->fd, (r->flags & RT_IO_MULTISHOT) ? NULL : (struct sockaddr *)&r->addr,
                         (r->flags & RT_IO_MULTISHOT) ? NULL : &len, SOCK_CLOEXEC);
        if (fd >= 0 && !(r->flags & RT_IO_MULTISHOT))
            r->addrlen = len;
        return fd >= 0 ? fd : -errno;
    }
    case RT_IO_CONNECT:
        if (r->backend & STAGE_CONNECTING) {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return -errno;
            if (err == 0) {
                /* not yet writable means still in progress */
                struct pollfd p = {.fd = r->fd, .events = POLLOUT};
                if (poll(&p, 1, 0) == 0)
                    return -EAGAIN;
            }
            return -err;
        }
        if (connect(r->fd, (struct sockaddr *)&r->addr, r->addrlen) == 0)
            return 0;
        if (errno == EINPROGRESS) {
            r->backend |= STAGE_CONNECTING;
            return -EAGAIN;
        }
        /* EAGAIN: nothing started (an AF_UNIX listener's backlog is full).
         * As io_uring: a socket that was non-blocking gets EAGAIN; on one
         * that was blocking, io_uring waits in the kernel for room. epoll
         * cannot wait for that (the unconnected socket is ready at once:
         * waiting on it spun a scheduler at 100%), so it connects again a
         * millisecond later, and so on */
        if (errno == EAGAIN)
            return r->backend & STAGE_NONBLOCK ? RES_EAGAIN : RES_LATER;
        return -errno;
    case RT_IO_SEND:
        n = send(r->fd, r->buf, r->len, r->msg_flags | MSG_DONTWAIT);
        return n >= 0 ? (int)n : -errno;
    case RT_IO_SENDMSG:
        n = sendmsg(r->fd, r->mh, r->msg_flags | MSG_DONTWAIT);
        return n >= 0 ? (int)n : -errno;
    case RT_IO_RECV:
    case RT_IO_RECVMSG:
        if (!(r->flags & RT_IO_BUFSEL)) {
            n = r->op == RT_IO_RECV
                    ? recv(r->fd, (void *)r->buf, r->len, r->msg_flags | MSG_DONTWAIT)
                    : recvmsg(r->fd, r->mh, r->msg_flags | MSG_DONTWAIT);
            return n >= 0 ? (int)n : -errno;
        }
        {
            unsigned k;
            if (!io__take_buf(io, &k))
                return -ENOBUFS;
            *bid = (int)k;
        }
        b = io->bufs + (size_t)*bid * io->bufsize;
        if (r->op == RT_IO_RECV) {
            n = recv(r->fd, b, io->bufsize, r->msg_flags | MSG_DONTWAIT);
        } else {
            /* lay the buffer out as io_uring's multishot recvmsg does */
            struct io_uring_recvmsg_out *o = (struct io_uring_recvmsg_out *)b;
            size_t hdr = sizeof *o + r->tmpl.msg_namelen + r->tmpl.msg_controllen;
            struct iovec iov = {.iov_base = b + hdr, .iov_len = io->bufsize - hdr};
            struct msghdr mh = {
                .msg_name = r->tmpl.msg_namelen ? b + sizeof *o : NULL,
                .msg_namelen = r->tmpl.msg_namelen,
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = r->tmpl.msg_controllen ? b + sizeof *o + r->tmpl.msg_namelen : NULL,
                .msg_controllen = r->tmpl.msg_controllen};
            n = recvmsg(r->fd, &mh, r->msg_flags | MSG_DONTWAIT);
            /* nothing received (the end of a stream, an empty datagram)
             * ends a multishot recvmsg with 0, as io_uring's does */
            if (n > 0) {
                o->namelen = mh.msg_namelen;
                o->controllen = (unsigned)mh.msg_controllen;
                o->payloadlen = (unsigned)n;
                o->flags = (unsigned)mh.msg_flags;
                n += (ssize_t)hdr;
            }
        }
        if (n > 0)
            return (int)n;
        int err = n == 0 ? 0 : -errno;
        io->be->buf_return(io, (unsigned)*bid); /* nothing in it */
        *bid = -1;
        return err;
    case RT_IO_POLL: {
        struct pollfd p = {.fd = r->fd, .events = (short)r->poll_events};
        int k = poll(&p, 1, 0);
        if (k < 0)
            return -errno;
        return k == 0 ? -EAGAIN : p.revents;
    }
    case RT_IO_CLOSE:
        return close(r->fd) == 0 ? 0 : -errno;
    }
    return -EINVAL;
}

/* Try r until it completes, would block or (multishot) stops. */
static void try_req(struct io_sched *io, struct ep *e, struct ioreq *r)
{
    for (;;) {
        /* a close is done even so (its process may have ended, and the fd
         * is no longer anybody's to close), as io_uring does it in order */
        if ((r->flags & R_CANCELLED) && r->op != RT_IO_CLOSE) {
            io__complete(io, r, -ECANCELED, false, -1);
            return;
        }
        /* its fd was closed through the runtime since it started: the
         * number may name another file now (a close too: that file is not
         * its to close) */
        if (io__fd_stale(r)) {
            io__complete(io, r, r->op == RT_IO_CLOSE ? -EBADF : -ECANCELED, false, -1);
            return;
        }
        int bid, res = attempt(io, r, &bid);
        if (res == -EAGAIN || res == -EWOULDBLOCK) {
            int rc = wait_on_fd(e, r);
            if (rc < 0)
                io__complete(io, r, rc, false, -1);
            return;
        }
        if (res == -ENOBUFS) {
            io__pause(io, r);
            return;
        }
        if (res == RES_LATER) {
            if (e->nlater == 0)
                e->later_due = rt__now_ns() + LATER_NS;
            if (push(&e->later, &e->nlater, &e->caplater, r) < 0)
                io__complete(io, r, -ENOMEM, false, -1);
            return;
        }
        if (res == RES_EAGAIN)
            res = -EAGAIN;
        if (r->op == RT_IO_CLOSE) {
            int fd = r->fd;
            io__complete(io, r, res, false, -1);
            forget_fd(io, e, fd, -ECANCELED);
            return;
        }
        /* a multishot operation goes on after a success, as io_uring's does */
        bool more = (r->flags & RT_IO_MULTISHOT) && res > 0;
        if (r->op == RT_IO_ACCEPT && (r->flags & RT_IO_MULTISHOT) && res >= 0)
            more = true;
        io__complete(io, r, res, more, bid);
        if (!more)
            return;
        if (r->op == RT_IO_POLL) {
            /* io_uring's multishot poll fires on each new wake-up of the
             * fd, not for as long as it stays ready: wait for the next edge.
             * Without a MOD: the fd is still registered for it, and a MOD
             * would look at its readiness again, firing at once while it
             * stays readable (a reader holding back made it spin) */
            struct fdent *f = fdent(e, r->fd);
            bool watched =
                f != NULL && (r->backend & STAGE_WATCHED) && (f->events & wants(r)) == wants(r);
            int rc = f == NULL ? -ENOMEM
                     : watched ? push(&f->waiting, &f->n, &f->cap, r)
                               : wait_on_fd(e, r);
            if (rc < 0)
                io__complete(io, r, rc, false, -1);
            return;
        }
    }
}

static void ep_cancel(struct io_sched *io, struct ioreq *r)
{
    struct ep *e = io->priv;
    struct fdent *f = (unsigned)r->fd < e->nfds ? &e->fds[r->fd] : NULL;
    if (f) {
        for (unsigned i = 0; i < f->n; i++) {
            if (f->waiting[i] == r) {
                memmove(&f->waiting[i], &f->waiting[i + 1], (f->n - i - 1) * sizeof r);
                f->n--;
                io__complete(io, r, -ECANCELED, false, -1);
                return;
            }
        }
    }
    /* still to be tried: try_req sees the flag and completes it */
}

static void fd_ready(struct io_sched *io, struct ep *e, int fd)
{
    struct fdent *f = (unsigned)fd < e->nfds ? &e->fds[fd] : NULL;
    if (f == NULL || f->n == 0)
        return;
    /* retry everything that waited, in order; what would block again
     * waits anew */
    struct ioreq **w = f->waiting;
    unsigned n = f->n;
    f->waiting = NULL;
    f->n = f->cap = 0;
    for (unsigned i = 0; i < n; i++)
        try_req(io, e, w[i]);
    free(w);
}

static int handle_events(struct io_sched *io, struct ep *e, int timeout_ms)
{
    struct epoll_event ev[64];
    int n = epoll_wait(e->epfd, ev, 64, timeout_ms);
    io__count(io, 1);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == UINT64_MAX) {
            uint64_t v;
            ssize_t k = read(e->efd, &v, sizeof v);
            io__count(io, 1);
            (void)k;
            continue;
        }
        fd_ready(io, e, (int)ev[i].data.u64);
    }
    return n > 0 ? n : 0;
}

static bool later_due(const struct ep *e)
{
    return e->nlater && rt__now_ns() >= e->later_due;
}

static int ep_reap(struct io_sched *io)
{
    struct ep *e = io->priv;
    int done = 0;
    if (later_due(e)) {
        for (unsigned i = 0; i < e->nlater; i++)
            if (push(&e->trying, &e->ntry, &e->captry, e->later[i]) < 0)
                io__complete(io, e->later[i], -ENOMEM, false, -1);
        e->nlater = 0;
    }
    while (e->ntry) {
        unsigned n = e->ntry;
        struct ioreq *batch[64];
        if (n > 64)
            n = 64;
        memcpy(batch, e->trying, n * sizeof *batch);
        memmove(e->trying, e->trying + n, (e->ntry - n) * sizeof *batch);
        e->ntry -= n;
        for (unsigned i = 0; i < n; i++)
            try_req(io, e, batch[i]);
        done += (int)n;
    }
    return done + handle_events(io, e, 0);
}

static bool ep_ready(struct io_sched *io)
{
    struct ep *e = io->priv;
    return e->ntry > 0 || later_due(e);
}

static void ep_flush(struct io_sched *io)
{
    ep_reap(io);
}

static void ep_wait(struct io_sched *io, int64_t deadline)
{
    struct ep *e = io->priv;
    if (e->ntry || later_due(e)) {
        ep_reap(io);
        return;
    }
    if (e->nlater && e->later_due < deadline)
        deadline = e->later_due;
    int ms = -1;
    if (deadline != INT64_MAX) {
        int64_t d = deadline - rt__now_ns();
        ms = d <= 0 ? 0 : (int)((d + 999999) / 1000000);
    }
    handle_events(io, e, ms);
}

static void ep_wake(struct io_sched *io)
{
    struct ep *e = io->priv;
    uint64_t one = 1;
    ssize_t n = write(e->efd, &one, sizeof one);
    io__count_any(io);
    (void)n;
}

static bool ep_fd_closing(struct io_sched *io, int fd)
{
    forget_fd(io, io->priv, fd, -ECANCELED);
    return false;
}

static void ep_buf_return(struct io_sched *io, unsigned bid)
{
    io->freebufs[io->nfree++] = bid;
}

const struct io_backend rt__io_epoll_backend = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .start = ep_start,
    .cancel = ep_cancel,
    .reap = ep_reap,
    .ready = ep_ready,
    .flush = ep_flush,
    .wait = ep_wait,
    .wake = ep_wake,
    .buf_return = ep_buf_return,
    .fd_closing = ep_fd_closing,
};
