/* io.c: the I/O layer common to both backends (see io.h and rt/io.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <liburing.h>

#include "io.h"

#define MSG_HDR ((sizeof(rt_msg) + 15) & ~(size_t)15)

/* The result sits inline after the message header; an accept's peer
 * address follows it. */
struct io_payload {
    rt_io_result res;
    struct sockaddr_storage addr;
};

/* ---- fd numbers closed -------------------------------------------------------------
 *
 * A request names its fd by number. Where it is not in the kernel (paused
 * for a buffer, or on epoll waiting for readiness or still to be tried) a
 * close through the runtime (rt_io_close, an owner's end) must end it
 * before the number can name another file, on whichever scheduler it is.
 * Each number has a count of such closes; a request keeps the count it
 * started with, and one that finds it changed ends with -ECANCELED instead
 * of acting on the number (io__fd_stale). The low bit says the number is
 * held by a placeholder (close_holding): a close adds 2, holding and
 * freeing the number 1 each, so a count only ever rises. The
 * counts are one mapping for the life of the program, sized by the hard
 * limit on open files, pages touched only where fds are closed. Numbers
 * past it are not counted. */
static _Atomic uint32_t *fd_epochs;
static unsigned nfd_epochs;
static pthread_once_t fd_epochs_once = PTHREAD_ONCE_INIT;

static void fd_epochs_init(void)
{
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_max : 1u << 20;
    if (n == RLIM_INFINITY || n > (1u << 22))
        n = 1u << 22;
    void *m = mmap(NULL, (size_t)n * sizeof *fd_epochs, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) {
        fd_epochs = m;
        nfd_epochs = (unsigned)n;
    }
}

static uint32_t fd_epoch(int fd)
{
    /* acquire: pairs with the release in fd_closed (what was closed is
     * seen closed) */
    return (unsigned)fd < nfd_epochs ? atomic_load_explicit(&fd_epochs[fd], memory_order_acquire)
                                     : 0;
}

static void fd_closed(int fd)
{
    if ((unsigned)fd < nfd_epochs)
        atomic_fetch_add_explicit(&fd_epochs[fd], 2, memory_order_release);
}

#define FD_HELD 1u

/* The number is held from now, or no longer (it is, then). */
static void fd_hold_flip(int fd)
{
    if ((unsigned)fd < nfd_epochs)
        atomic_fetch_add_explicit(&fd_epochs[fd], FD_HELD, memory_order_release);
}

/* Whether a close has closed the socket under fd and the placeholder still
 * holds the number (it is not the caller's to close again). */
static bool fd_held(int fd)
{
    return fd_epoch(fd) & FD_HELD;
}

bool io__fd_stale(const struct ioreq *r)
{
    return fd_epoch(r->fd) != r->fd_epoch;
}

/* ---- set-up ---------------------------------------------------------------------- */

int rt__io_init(struct sched *s, int kind, unsigned nbufs, unsigned bufsize)
{
    pthread_once(&fd_epochs_once, fd_epochs_init);
    struct io_sched *io = calloc(1, sizeof *io);
    if (io == NULL)
        return -ENOMEM;
    io->s = s;
    io->nbufs = nbufs;
    io->bufsize = bufsize;
    pthread_mutex_init(&io->lock, NULL);
    io->bufs_len = (size_t)nbufs * bufsize;
    io->bufs = mmap(NULL, io->bufs_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (io->bufs == MAP_FAILED) {
        free(io);
        return -ENOMEM;
    }
    int ph[2];
    if (pipe2(ph, O_CLOEXEC) < 0) {
        int e = -errno;
        munmap(io->bufs, io->bufs_len);
        free(io);
        return e;
    }
    io->dead_fd = ph[0];
    io->dead_wfd = ph[1];
    s->io = io;
    /* io_uring_setup itself says where the kernel disables io_uring
     * (/proc/sys/kernel/io_uring_disabled: 2 for everyone, 1 for a process
     * without CAP_SYS_ADMIN outside kernel.io_uring_group) or a seccomp
     * filter forbids it: -EPERM, and RT_IO_AUTO goes on with epoll */
    int rc = -ENOSYS;
    if (kind != RT_IO_EPOLL) {
        io->be = &rt__io_uring_backend;
        rc = io->be->init(io);
        if (rc < 0 && kind == RT_IO_URING)
            goto out_fail;
    }
    if (rc < 0) {
        io->be = &rt__io_epoll_backend;
        rc = io->be->init(io);
        if (rc < 0)
            goto out_fail;
    }
    return 0;
out_fail:
    close(io->dead_fd);
    close(io->dead_wfd);
    munmap(io->bufs, io->bufs_len);
    pthread_mutex_destroy(&io->lock);
    free(io);
    s->io = NULL;
    return rc;
}

/* The last of the schedulers an ended process waited for closes its fds. */
static void fd_close_release(struct fd_close *fc)
{
    if (atomic_fetch_sub_explicit(&fc->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (unsigned i = 0; i < fc->n; i++) {
        fd_hold_flip(fc->fds[i]);
        close(fc->fds[i]);
    }
    free(fc);
}

void rt__io_bind(struct sched *s)
{
    if (s->io->be->bind)
        s->io->be->bind(s->io);
}

void rt__io_fini(struct sched *s)
{
    struct io_sched *io = s->io;
    if (io == NULL)
        return;
    io->be->fini(io);
    for (uint32_t i = 0; i < io->ntab; i++)
        free(io->tab[i]);
    free(io->tab);
    free(io->freebufs);
    free(io->hot);
    free(io->fdreq);
    free(io->ret);
    for (unsigned k = 0; k < io->ncmds; k++)
        if (io->cmds[k].fc)
            fd_close_release(io->cmds[k].fc);
    free(io->cmds);
    close(io->dead_fd);
    close(io->dead_wfd);
    munmap(io->bufs, io->bufs_len);
    pthread_mutex_destroy(&io->lock);
    free(io);
    s->io = NULL;
}

int rt__io_kind(struct sched *s)
{
    return s->io->be == &rt__io_uring_backend ? RT_IO_URING : RT_IO_EPOLL;
}

RT_API const char *rt_io_backend(void)
{
    if (!rt__running() || rt__rt.sched == NULL || rt__rt.sched[0].io == NULL)
        return NULL;
    return rt__rt.sched[0].io->be->name;
}

/* ---- requests ------------------------------------------------------------------------ */

void *io__fd_room(void *arr, unsigned *n, size_t size, int fd)
{
    if ((unsigned)fd < *n)
        return arr;
    unsigned k = *n ? *n : 64;
    while (k <= (unsigned)fd)
        k *= 2;
    char *na = realloc(arr, (size_t)k * size);
    if (na == NULL)
        return NULL;
    memset(na + (size_t)*n * size, 0, (size_t)(k - *n) * size);
    *n = k;
    return na;
}

static struct ioreq *req_new(struct io_sched *io, struct proc *p, int op, int fd, unsigned flags)
{
    if ((unsigned)fd >= io->nfdreq) {
        uint32_t *fdreq = io__fd_room(io->fdreq, &io->nfdreq, sizeof *io->fdreq, fd);
        if (fdreq == NULL)
            return NULL;
        io->fdreq = fdreq;
    }
    struct ioreq *r;
    if (io->free_head) {
        r = io->tab[io->free_head - 1];
        io->free_head = (uint32_t)r->next_free_idx;
    } else {
        if (io->ntab == io->captab) {
            uint32_t nc = io->captab ? io->captab * 2 : 64;
            struct ioreq **nt = realloc(io->tab, nc * sizeof *nt);
            if (nt == NULL)
                return NULL;
            io->tab = nt;
            io->captab = nc;
        }
        r = calloc(1, sizeof *r);
        if (r == NULL)
            return NULL;
        r->idx = io->ntab;
        r->gen = 1;
        io->tab[io->ntab++] = r;
        atomic_store_explicit(&io->ntab_pub, io->ntab, memory_order_relaxed);
    }
    uint32_t idx = r->idx, gen = r->gen;
    memset(r, 0, sizeof *r);
    r->idx = idx;
    r->gen = gen;
    r->io = io;
    r->owner = proc_pid(p);
    r->op = (uint8_t)op;
    r->fd = fd;
    r->flags = flags;
    r->state = R_LIVE;
    r->id = ((uint64_t)(io->s->idx + 1) << 56) | ((uint64_t)idx << 32) | gen;
    io->live++;
    io->fdreq[fd]++;
    p->did_io = true;
    return r;
}

static void req_free(struct io_sched *io, struct ioreq *r)
{
    if (r->timer) {
        rt_cancel_timer(r->timer); /* (-ENOENT: it fired, and its signal finds no request) */
        r->timer = 0;
    }
    struct proc *p = r->pin;
    if (p) {
        r->pin = NULL;
        /* release: pairs with the acquires in rt__proc_terminate (io_pins:
         * the kernel is done with the owner's memory) and rt__io_proc_close */
        if (r->flags & R_PINNED)
            atomic_fetch_sub_explicit(&p->io_pins, 1, memory_order_release);
        r->flags &= ~R_PINNED;
        atomic_fetch_sub_explicit(&p->ext->live[io->s->idx], 1, memory_order_release);
        rt__proc_put(p);
    }
    r->state = R_FREE;
    if (++r->gen == 0)
        r->gen = 1;
    r->next_free_idx = io->free_head;
    io->free_head = r->idx + 1;
    io->live--;
    io->fdreq[r->fd]--;
}

static struct ioreq *req_find(rt_io_req id, struct io_sched **io_out)
{
    unsigned si = (unsigned)(id >> 56);
    if (si == 0 || si > rt__rt.nsched)
        return NULL;
    struct io_sched *io = rt__rt.sched[si - 1].io;
    uint32_t idx = (uint32_t)(id >> 32) & 0xFFFFFFu, gen = (uint32_t)id;
    *io_out = io;
    if (idx >= io->ntab)
        return NULL;
    struct ioreq *r = io->tab[idx];
    return r->gen == gen && r->state != R_FREE ? r : NULL;
}

/* ---- completions ---------------------------------------------------------------------- */

static void buf_return_here(struct io_sched *io, unsigned bid);

static unsigned bid_of(struct io_sched *io, const void *p)
{
    return (unsigned)(((const char *)p - io->bufs) / io->bufsize);
}

/* The rt__free of a message that lends a provided buffer. Any thread. */
static void buf_release(void *p)
{
    for (unsigned i = 0; i < rt__rt.nsched; i++) {
        struct io_sched *io = rt__rt.sched[i].io;
        if ((char *)p < io->bufs || (char *)p >= io->bufs + io->bufs_len)
            continue;
        unsigned bid = bid_of(io, p);
        if (rt__sched_self() == io->s) {
            buf_return_here(io, bid);
            return;
        }
        pthread_mutex_lock(&io->lock);
        if (io->nret == io->capret) {
            unsigned nc = io->capret ? io->capret * 2 : 64;
            unsigned *nr = realloc(io->ret, nc * sizeof *nr);
            if (nr == NULL) {
                /* cannot queue it: the buffer stays lent (one buffer lost
                 * until the runtime stops), which beats corrupting it */
                pthread_mutex_unlock(&io->lock);
                return;
            }
            io->ret = nr;
            io->capret = nc;
        }
        io->ret[io->nret++] = bid;
        /* release: the list is under the lock; the flag only says "look" */
        atomic_store_explicit(&io->pending, true, memory_order_release);
        pthread_mutex_unlock(&io->lock);
        rt__unpark(io->s);
        return;
    }
}

static void flush_now(struct io_sched *io)
{
    io->since_flush = 0;
    io->handing_held = io->hold_since != 0;
    io->hold_since = 0;
    if ((++io->handovers & 511) == 0)
        /* a quarter more, for the latency it costs */
        io->hold_pays = io->bytes_held > io->bytes_free + io->bytes_free / 4;
    io->be->flush(io);
    io->handing_held = false;
}

static void cancel_here(struct io_sched *io, struct ioreq *r);
static bool fd_closing(struct io_sched *io, int fd, uint32_t own);
static bool post_cmd(struct io_sched *io, struct io_cmd cmd);

static void resume_paused(struct io_sched *io)
{
    while (io->paused) {
        struct ioreq *r = io->paused;
        io->paused = r->next;
        r->state = R_LIVE;
        /* (an ended owner's requests are still its: its fds stay taken
         * until their cancel has come here, rt__io_proc_close) */
        int rc = io__fd_stale(r) ? -ECANCELED : io->be->start(io, r);
        if (rc < 0)
            io__complete(io, r, rc, false, -1);
        if (io->paused == r) /* paused again at once: still no buffer */
            break;
    }
}

static void buf_return_here(struct io_sched *io, unsigned bid)
{
    io->bufs_out--;
    io->buf_gen++;
    io->be->buf_return(io, bid);
    if (io->paused)
        resume_paused(io);
}

void io__pause(struct io_sched *io, struct ioreq *r)
{
    r->state = R_PAUSED;
    r->next = io->paused;
    io->paused = r;
}

bool io__take_buf(struct io_sched *io, unsigned *bid)
{
    if (io->nfree == 0)
        return false;
    *bid = io->freebufs[--io->nfree];
    return true;
}

/* An ENOBUFS that ends `r` means the kernel has lost buffers (as Linux
 * 6.1.7 and later did under multishot recvmsg, liburing issue #778) when
 * it is the second in a row (R_NOBUF), no buffer is lent out, and none has
 * come back since it started again: so every buffer was in the ring all
 * along. The owner then hears it, instead of the scheduler retrying
 * without end. (Without the last test, buffers lent out when the kernel
 * looked and all given back before this completion made a false loss.) */
static bool lost_bufs(const struct io_sched *io, const struct ioreq *r)
{
    return (r->flags & R_NOBUF) && io->bufs_out == 0 && r->nobuf_gen == io->buf_gen;
}

void io__complete(struct io_sched *io, struct ioreq *r, int res, bool more, int bid)
{
    if (bid >= 0) {
        io->bufs_out++;
        r->flags &= ~R_NOBUF;
    }
    /* its fd was closed through the runtime since it started: a receive
     * waiting for a buffer would start again on whatever the number names
     * now, and any other failure is the close's doing, or came from the
     * placeholder that holds the number (close_holding) */
    if (res < 0 && !more && r->op != RT_IO_CLOSE && io__fd_stale(r))
        res = -ECANCELED;
    /* cancelled by its limit: however the kernel ended it (-EINTR: work
     * its worker threads had begun; -ENOBUFS: a buffered receive that ran
     * out as the cancel came) */
    if ((r->flags & R_TIMEDOUT) && !more &&
        (res == -ECANCELED || res == -EINTR || (res == -ENOBUFS && (r->flags & RT_IO_BUFSEL))))
        res = -ETIMEDOUT;
    if (res == -ENOBUFS && (r->flags & RT_IO_BUFSEL) && !(r->flags & R_CANCELLED) &&
        (more || !lost_bufs(io, r))) {
        /* the buffers are all lent out: wait for one instead of failing */
        if (!more) {
            bool again = r->flags & R_NOBUF;
            io__pause(io, r);
            /* but some may have come back between the kernel's finding
             * none and this completion: then no return is left to wake it.
             * So it starts again at once: the first time if any buffer is
             * back, and again as long as none is lent out (a second
             * ENOBUFS while some are lent waits for their return) */
            if (again ? io->bufs_out == 0 : io->bufs_out < io->nbufs) {
                r->flags |= R_NOBUF;
                r->nobuf_gen = io->buf_gen;
                resume_paused(io);
            }
        }
        return;
    }
    bool final = !more;
    struct io_payload pl = {.res = {.req = r->id, .op = r->op, .fd = r->fd, .res = res}};
    if (more)
        pl.res.flags |= RT_IO_F_MORE;
    size_t extra = 0;
    if (r->op == RT_IO_ACCEPT && res >= 0 && !(r->flags & RT_IO_MULTISHOT) && r->addrlen) {
        memcpy(&pl.addr, &r->addr, sizeof pl.addr);
        extra = sizeof pl.addr;
    }
    rt_msg *m = rt__msg_new(RT_MSG_IO, sizeof pl.res + extra);
    if (m == NULL) {
        /* nothing to deliver it in: give back what it holds */
        if (bid >= 0)
            buf_return_here(io, (unsigned)bid);
        if (r->op == RT_IO_ACCEPT && res >= 0)
            close(res);
        goto out;
    }
    m->from = RT_PID_NONE;
    struct io_payload *mp = m->data;
    if (extra)
        pl.res.name = &mp->addr, pl.res.namelen = r->addrlen;
    if (bid >= 0) {
        char *b = io->bufs + (size_t)bid * io->bufsize;
        void *payload = b;
        size_t len = res > 0 ? (size_t)res : 0;
        if (r->op == RT_IO_RECVMSG) {
            struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b, res, &r->tmpl);
            if (o == NULL) {
                pl.res.res = -EMSGSIZE;
                len = 0;
            } else {
                pl.res.name = io_uring_recvmsg_name(o);
                pl.res.namelen = o->namelen;
                pl.res.control = o->controllen ? (char *)pl.res.name + r->tmpl.msg_namelen : NULL;
                pl.res.controllen = o->controllen;
                pl.res.msg_flags = (int)o->flags;
                payload = io_uring_recvmsg_payload(o, &r->tmpl);
                len = io_uring_recvmsg_payload_length(o, res, &r->tmpl);
                pl.res.res = (int)len;
            }
        }
        memcpy(mp, &pl, sizeof pl.res);
        m->data = payload;
        m->size = (uint32_t)len;
        m->rt__free = buf_release;
        m->rt__lent = b;
    } else {
        memcpy(mp, &pl, sizeof pl.res + extra);
    }
    if (r->op == RT_IO_ACCEPT && res >= 0)
        m->rt__aux = (uint64_t)res + 1; /* closed with the message unless taken */
    if (rt__send_msg(r->owner, m) < 0)
        rt__msg_free(m); /* the owner is gone: buffers back, fds closed */
out:
    if (final)
        req_free(io, r);
}

RT_API const rt_io_result *rt_io_result_of(const rt_msg *msg)
{
    if (msg == NULL || msg->tag != RT_MSG_IO || msg->rt__kind != 0)
        return NULL;
    return (const rt_io_result *)((const char *)msg + MSG_HDR);
}

bool rt__io_msg_release(rt_msg *m)
{
    if (m->tag == RT_MSG_IO && m->rt__aux) {
        close((int)(m->rt__aux - 1));
        m->rt__aux = 0;
    }
    return true;
}

/* ---- ownership of fds ------------------------------------------------------------------- */

static struct proc *io_proc(void)
{
    struct proc *p = rt__proc_current();
    return p && rt__sched_self() ? p : NULL;
}

static int fd_index(struct proc *p, int fd)
{
    if (p->ext == NULL)
        return -1;
    for (uint32_t i = 0; i < p->ext->nfds; i++)
        if (p->ext->fds[i] == fd)
            return (int)i;
    return -1;
}

static int own(struct proc *p, int fd)
{
    /* (a held number is the placeholder's, closed already) */
    if (fd < 0 || fd_held(fd) || fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    if (fd_index(p, fd) >= 0)
        return -EEXIST;
    struct proc_ext *x = rt__ext_of(p);
    if (x == NULL)
        return -ENOMEM;
    if (x->nfds == x->capfds) {
        uint32_t nc = x->capfds ? x->capfds * 2 : 4;
        int *nf = realloc(x->fds, nc * sizeof *nf);
        if (nf == NULL)
            return -ENOMEM;
        x->fds = nf;
        x->capfds = nc;
    }
    x->fds[x->nfds++] = fd;
    p->did_io = true; /* rt__io_proc_close closes it, even with no operation made */
    return 0;
}

static int disown(struct proc *p, int fd)
{
    int i = fd_index(p, fd);
    if (i < 0)
        return -ENOENT;
    p->ext->fds[i] = p->ext->fds[--p->ext->nfds];
    return 0;
}

RT_API int rt_io_own(int fd)
{
    struct proc *p = io_proc();
    return p ? own(p, fd) : RT_ENOTPROC;
}

RT_API int rt_io_disown(int fd)
{
    struct proc *p = io_proc();
    return p ? disown(p, fd) : RT_ENOTPROC;
}

RT_API int rt_io_take_fd(rt_msg *msg)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (rt_io_result_of(msg) == NULL || msg->rt__aux == 0)
        return -EINVAL;
    int fd = (int)(msg->rt__aux - 1);
    int rc = own(p, fd);
    if (rc < 0)
        return rc;
    msg->rt__aux = 0;
    return fd;
}

/* ---- starting operations ------------------------------------------------------------------ */

/* A request of p's on this scheduler, counted and pinned as below, not
 * yet started; NULL with *rc set. */
static struct ioreq *prepare(struct proc *p, int op, int fd, unsigned flags,
                             const struct ioreq *tmpl, int *rc)
{
    struct io_sched *io = rt__sched_self()->io;
    *rc = -EBADF;
    if (fd < 0)
        return NULL;
    *rc = -ENOMEM;
    struct proc_ext *x = rt__ext_of(p);
    if (x == NULL ||
        (x->live == NULL && (x->live = calloc(rt__rt.nsched, sizeof *x->live)) == NULL))
        return NULL;
    struct ioreq *r = req_new(io, p, op, fd, flags);
    if (r == NULL)
        return NULL;
    r->buf = tmpl->buf;
    r->len = tmpl->len;
    r->msg_flags = tmpl->msg_flags;
    r->poll_events = tmpl->poll_events;
    r->mh = tmpl->mh;
    r->tmpl = tmpl->tmpl;
    r->addr = tmpl->addr;
    r->addrlen = tmpl->addrlen;
    /* counted until it ends, wherever the owner is then (rt__io_proc_close) */
    r->pin = p;
    rt__proc_hold(p);
    atomic_fetch_add_explicit(&x->live[io->s->idx], 1, memory_order_relaxed);
    if (op == RT_IO_SEND || op == RT_IO_SENDMSG ||
        ((op == RT_IO_RECV || op == RT_IO_RECVMSG) && !(flags & RT_IO_BUFSEL))) {
        /* the kernel reads or writes the caller's memory until the request
         * ends: keep the process's stack and state (and its rt_at_exit
         * handlers, which may free such buffers) until then */
        r->flags |= R_PINNED;
        atomic_fetch_add_explicit(&p->io_pins, 1, memory_order_relaxed);
    }
    return r;
}

/* Start a prepared request: 0 and its handle in *out, or -errno (then it
 * is gone). */
static int launch(struct ioreq *r, rt_io_req *out)
{
    struct io_sched *io = r->io;
    r->fd_epoch = fd_epoch(r->fd); /* the fd as it is now */
    /* its number is held: the socket was closed (only the placeholder's
     * close may act on it) */
    int rc = r->fd_epoch & FD_HELD ? -EBADF : io->be->start(io, r);
    if (rc < 0) {
        req_free(io, r);
        return rc;
    }
    if (out)
        *out = r->id;
    return 0;
}

static int submit(struct proc *p, int op, int fd, unsigned flags, struct ioreq *tmpl,
                  rt_io_req *out)
{
    int rc;
    struct ioreq *r = prepare(p, op, fd, flags, tmpl, &rc);
    return r ? launch(r, out) : rc;
}

RT_API int rt_io_accept(int fd, unsigned flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (flags & ~RT_IO_MULTISHOT)
        return -EINVAL;
    struct ioreq t = {.addrlen = flags & RT_IO_MULTISHOT ? 0 : sizeof(struct sockaddr_storage)};
    return submit(p, RT_IO_ACCEPT, fd, flags, &t, req);
}

RT_API int rt_io_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (addr == NULL || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
        return -EINVAL;
    struct ioreq t = {.addrlen = addrlen};
    memcpy(&t.addr, addr, addrlen);
    return submit(p, RT_IO_CONNECT, fd, 0, &t, req);
}

RT_API int rt_io_send(int fd, const void *buf, size_t len, int msg_flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if ((buf == NULL && len) || len > INT32_MAX)
        return -EINVAL;
    struct ioreq t = {.buf = buf, .len = len, .msg_flags = msg_flags | MSG_NOSIGNAL};
    return submit(p, RT_IO_SEND, fd, 0, &t, req);
}

RT_API int rt_io_sendmsg(int fd, const struct msghdr *mh, int msg_flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (mh == NULL)
        return -EINVAL;
    struct ioreq t = {.mh = (struct msghdr *)mh, .msg_flags = msg_flags | MSG_NOSIGNAL};
    return submit(p, RT_IO_SENDMSG, fd, 0, &t, req);
}

RT_API int rt_io_recv(int fd, void *buf, size_t len, int msg_flags, unsigned flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if ((flags & ~(RT_IO_MULTISHOT | RT_IO_BUFSEL)) || len > INT32_MAX)
        return -EINVAL;
    /* a multishot receive needs provided buffers; provided buffers need no buf */
    if (((flags & RT_IO_MULTISHOT) && !(flags & RT_IO_BUFSEL)) ||
        ((flags & RT_IO_BUFSEL) != 0) != (buf == NULL) || (buf && len == 0))
        return -EINVAL;
    struct ioreq t = {.buf = buf, .len = len, .msg_flags = msg_flags};
    return submit(p, RT_IO_RECV, fd, flags, &t, req);
}

RT_API int rt_io_recvmsg(int fd, struct msghdr *mh, int msg_flags, unsigned flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    /* provided buffers only with multishot: a single-shot recvmsg has the
     * kernel write name and control through the msghdr, not into the
     * buffer, so there would be nowhere to hand them over */
    if (mh == NULL || (flags & ~(RT_IO_MULTISHOT | RT_IO_BUFSEL)) ||
        ((flags & RT_IO_MULTISHOT) != 0) != ((flags & RT_IO_BUFSEL) != 0))
        return -EINVAL;
    struct ioreq t = {.msg_flags = msg_flags};
    if (flags & RT_IO_BUFSEL) {
        struct io_sched *io = rt__sched_self()->io;
        /* the header, name and control must leave room for a payload */
        if ((size_t)mh->msg_namelen + mh->msg_controllen + sizeof(struct io_uring_recvmsg_out) >=
            io->bufsize)
            return -EINVAL;
        t.tmpl.msg_namelen = mh->msg_namelen;
        t.tmpl.msg_controllen = mh->msg_controllen;
    } else {
        t.mh = mh;
    }
    return submit(p, RT_IO_RECVMSG, fd, flags, &t, req);
}

static struct fd_close *fd_close_new(unsigned n)
{
    struct fd_close *fc = malloc(sizeof *fc + n * sizeof(int));
    if (fc) {
        atomic_init(&fc->refs, 1);
        fc->n = 0;
    }
    return fc;
}

/* Close the sockets fds[0..n) now, but keep their numbers taken until no
 * other scheduler can act on them. p has requests on other schedulers
 * (it moved), which may name these numbers: one in that scheduler's batch,
 * or one it is about to try again. A number freed meanwhile could name the
 * next file opened, which they would then act on. So the placeholder
 * (dup3 over the number: the socket closes here, though a request in the
 * kernel still holds it) takes each number; each scheduler where p has
 * requests gets `cmd` (end p's requests, or those on the fd), hands its
 * batch over and drops its reference to fc; the last reference frees the
 * numbers. On the placeholder a request can only fail, or wait until it is
 * ended. */
static void close_holding(struct io_sched *self, struct proc *p, struct fd_close *fc,
                          const int *fds, unsigned n, struct io_cmd cmd)
{
    for (unsigned i = 0; i < n; i++) {
        /* held before the dup3: a close of the number meanwhile is refused */
        fd_hold_flip(fds[i]);
        if (dup3(self->dead_fd, fds[i], O_CLOEXEC) >= 0) {
            fc->fds[fc->n++] = fds[i];
        } else {
            fd_hold_flip(fds[i]);
            close(fds[i]); /* (cannot hold it: closed as by close(2)) */
        }
    }
    struct proc_ext *x = p->ext;
    cmd.fc = fc;
    for (unsigned i = 0; x->live && i < rt__rt.nsched; i++) {
        struct io_sched *io = rt__rt.sched[i].io;
        /* acquire: pairs with the release in req_free; only p adds
         * requests, and it is here, so a count seen at 0 stays there */
        if (io == self || atomic_load_explicit(&x->live[i], memory_order_acquire) == 0)
            continue;
        atomic_fetch_add_explicit(&fc->refs, 1, memory_order_relaxed);
        /* no memory to tell that scheduler: its requests may still act on
         * the numbers, so they stay held for good (its reference is never
         * dropped): a leak beats closing a stranger's file */
        (void)post_cmd(io, cmd);
    }
    fd_close_release(fc); /* ours */
}

/* Whether p has requests on a scheduler other than io's. */
static bool live_elsewhere(struct proc *p, const struct io_sched *io)
{
    const struct proc_ext *x = p->ext;
    for (unsigned i = 0; x->live && i < rt__rt.nsched; i++)
        /* acquire: pairs with the release in req_free (that scheduler is
         * done with the request) */
        if (rt__rt.sched[i].io != io && atomic_load_explicit(&x->live[i], memory_order_acquire))
            return true;
    return false;
}

/* End `r`, prepared but not started, with `res` now: its completion is in
 * the caller's mailbox when this returns 0. */
static int complete_now(struct ioreq *r, int res, rt_io_req *out)
{
    if (out)
        *out = r->id;
    io__complete(r->io, r, res, false, -1);
    return 0;
}

/* rt_io_close's close `r` of a process with requests on other schedulers
 * (it has moved since it started them). Those may still act on the number:
 * one waiting in that scheduler's batch, or being retried there. So, as at
 * the end of a moved process, the socket is closed now but its number held
 * until each of those schedulers has ended what it has on the fd from
 * before the close (close_holding). The close completes at once. */
static int close_held(struct proc *p, struct ioreq *r, rt_io_req *out)
{
    struct io_sched *self = r->io;
    int fd = r->fd;
    /* a number that is not open: -EBADF, as close(2) says, and nothing is
     * held (dup3 would open it) */
    if (fcntl(fd, F_GETFD) < 0)
        return complete_now(r, -errno, out);
    struct fd_close *fc = fd_close_new(1);
    if (fc == NULL) {
        req_free(self, r);
        return -ENOMEM;
    }
    /* what this scheduler has on the fd ends, as at any close here; its
     * cancels by fd, and what its batch holds for the number, go to the
     * kernel while the number still names the socket */
    (void)fd_closing(self, fd, 1);
    flush_now(self);
    close_holding(self, p, fc, &fd, 1, (struct io_cmd){.owner = proc_pid(p), .only_fds = true});
    return complete_now(r, 0, out);
}

RT_API int rt_io_close(int fd, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    struct ioreq t = {0};
    int rc;
    /* the request first: a close that cannot be had leaves the fd and its
     * requests as they were */
    struct ioreq *r = prepare(p, RT_IO_CLOSE, fd, 0, &t, &rc);
    if (r == NULL)
        return rc;
    bool owned = disown(p, fd) == 0;
    if (fd_held(fd)) {
        /* closed already, its number held (a second close): not the
         * caller's to close, nor the placeholder's to lose early */
        rc = complete_now(r, -EBADF, req);
    } else if (live_elsewhere(p, r->io)) {
        rc = close_held(p, r, req);
    } else {
        (void)fd_closing(r->io, fd, 1); /* (handed over with the close) */
        rc = launch(r, req);
    }
    if (rc < 0 && owned)
        (void)own(p, fd); /* not closed: still the caller's, to close again or at its end */
    return rc;
}

RT_API int rt_io_poll(int fd, unsigned poll_events, unsigned flags, rt_io_req *req)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (flags & ~RT_IO_MULTISHOT)
        return -EINVAL;
    struct ioreq t = {.poll_events = poll_events};
    return submit(p, RT_IO_POLL, fd, flags, &t, req);
}

/* Cancel r on its own scheduler's thread. */
static void cancel_here(struct io_sched *io, struct ioreq *r)
{
    if (r->flags & R_CANCELLED)
        return;
    r->flags |= R_CANCELLED;
    if (r->state == R_PAUSED) {
        /* not in the kernel: finish it now */
        for (struct ioreq **pp = &io->paused; *pp; pp = &(*pp)->next) {
            if (*pp == r) {
                *pp = r->next;
                break;
            }
        }
        r->state = R_LIVE;
        io__complete(io, r, -ECANCELED, false, -1);
        return;
    }
    io->be->cancel(io, r);
}

/* fd is about to be closed through the runtime on this scheduler: count
 * the close (what started on the number before it, on any scheduler, ends
 * instead of acting on it again), end what is paused on it here, and have
 * the backend end what it started on it here (only if this scheduler has
 * a request on it): true if that waits to be handed to the kernel. */
static bool fd_closing(struct io_sched *io, int fd, uint32_t own)
{
    fd_closed(fd);
    /* (own: the caller's requests on it that are not to end, its close) */
    if ((unsigned)fd >= io->nfdreq || io->fdreq[fd] <= own)
        return false; /* nothing on it here: nothing paused, waiting or in the kernel */
    for (struct ioreq *r = io->paused; r;) {
        if (r->fd != fd) {
            r = r->next;
            continue;
        }
        cancel_here(io, r); /* (off the list: look again from its head) */
        r = io->paused;
    }
    return io->be->fd_closing(io, fd);
}

/* Have io's scheduler do `cmd` (struct io_cmd); false for no memory. */
static bool post_cmd(struct io_sched *io, struct io_cmd cmd)
{
    pthread_mutex_lock(&io->lock);
    if (io->ncmds == io->capcmds) {
        unsigned nc = io->capcmds ? io->capcmds * 2 : 16;
        struct io_cmd *n = realloc(io->cmds, nc * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&io->lock);
            return false;
        }
        io->cmds = n;
        io->capcmds = nc;
    }
    io->cmds[io->ncmds++] = cmd;
    atomic_store_explicit(&io->pending, true, memory_order_release);
    pthread_mutex_unlock(&io->lock);
    rt__unpark(io->s);
    return true;
}

static void post_cancel(struct io_sched *io, rt_pid owner, rt_io_req id)
{
    /* if it cannot be queued, its completions are still discarded, only later */
    post_cmd(io, (struct io_cmd){.owner = owner, .id = id});
}

RT_API int rt_io_cancel(rt_io_req id)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    struct io_sched *io;
    unsigned si = (unsigned)(id >> 56);
    if (si == 0 || si > rt__rt.nsched)
        return -ENOENT;
    io = rt__rt.sched[si - 1].io;
    if (io->s != rt__sched_self()) {
        /* the request lives on another scheduler's ring (the process has
         * moved since it started it): its table is that thread's, so only
         * a handle that cannot exist is refused here; ask that thread */
        uint32_t idx = (uint32_t)(id >> 32) & 0xFFFFFFu;
        if ((uint32_t)id == 0 || idx >= atomic_load_explicit(&io->ntab_pub, memory_order_relaxed))
            return -ENOENT;
        post_cancel(io, proc_pid(p), id);
        return 0;
    }
    struct ioreq *r = req_find(id, &io);
    if (r == NULL || !rt_pid_eq(r->owner, proc_pid(p)))
        return -ENOENT;
    cancel_here(io, r);
    return 0;
}

/* rt_io_timeout calls, numbered: one owner's calls get increasing numbers
 * (the counter's order includes the order of its calls) */
static _Atomic uint64_t timeout_calls;

/* Arm r's timeout for deadline_ns (INT64_MAX: drop it; this is r's scheduler's thread),
 * replacing one it had, unless that one is from a later call (`seq`): its
 * owner gets SIG_IO_TIMEOUT then, with the timer's handle, which ends r
 * only if r still has that timer (not one replaced, its signal on the way).
 * 0 or -ENOMEM. */
static int set_timeout(struct ioreq *r, int64_t deadline_ns, uint64_t seq)
{
    if (seq < r->timer_seq)
        return 0;   /* a later call's limit came first: this one is replaced already */
    uint64_t t = 0; /* RT_INFINITY: none (a signal on its way finds no timer) */
    if (deadline_ns != INT64_MAX) {
        rt_msg *m = rt__signal_new(SIG_IO_TIMEOUT, 0, RT_PID_NONE, sizeof(uint64_t), r->id);
        if (m == NULL)
            return -ENOMEM;
        if (rt__timer_signal_at(r->owner, deadline_ns, m, &t) < 0) {
            rt__msg_free(m);
            return -ENOMEM;
        }
        /* (only this thread fires the timers it arms: m is not gone yet) */
        memcpy(m->data, &t, sizeof t);
    }
    if (r->timer)
        rt_cancel_timer(r->timer);
    r->timer = t;
    r->timer_seq = seq;
    return 0;
}

/* r's timer `t` has fired (on r's scheduler's thread): end r, unless it
 * ended or has another timer since */
static void time_out(struct io_sched *io, struct ioreq *r, rt_pid owner, uint64_t t)
{
    if (r == NULL || !rt_pid_eq(r->owner, owner) || r->timer != t || (r->flags & R_CANCELLED))
        return;
    r->timer = 0; /* it fired */
    r->flags |= R_TIMEDOUT;
    cancel_here(io, r);
}

RT_API int rt_io_timeout(rt_io_req id, int timeout_ms)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    if (timeout_ms < 0 && timeout_ms != RT_INFINITY)
        return -EINVAL;
    /* from now, wherever it is armed */
    int64_t deadline =
        timeout_ms == RT_INFINITY ? INT64_MAX : rt__now_ns() + (int64_t)timeout_ms * 1000000;
    uint64_t seq = atomic_fetch_add_explicit(&timeout_calls, 1, memory_order_relaxed) + 1;
    unsigned si = (unsigned)(id >> 56);
    if (si == 0 || si > rt__rt.nsched)
        return -ENOENT;
    struct io_sched *io = rt__rt.sched[si - 1].io;
    if (io->s != rt__sched_self()) {
        /* on another scheduler's ring (as rt_io_cancel): that thread arms it */
        uint32_t idx = (uint32_t)(id >> 32) & 0xFFFFFFu;
        if ((uint32_t)id == 0 || idx >= atomic_load_explicit(&io->ntab_pub, memory_order_relaxed))
            return -ENOENT;
        struct io_cmd cmd = {.owner = proc_pid(p),
                             .id = id,
                             .set_timeout = true,
                             .deadline_ns = deadline,
                             .seq = seq};
        return post_cmd(io, cmd) ? 0 : -ENOMEM;
    }
    struct ioreq *r = req_find(id, &io);
    if (r == NULL || !rt_pid_eq(r->owner, proc_pid(p)))
        return -ENOENT;
    if (r->flags & R_CANCELLED)
        return 0; /* ending already */
    return set_timeout(r, deadline, seq);
}

void rt__io_timed_out(struct proc *p, rt_io_req id, uint64_t timer)
{
    unsigned si = (unsigned)(id >> 56);
    if (p->exiting || si == 0 || si > rt__rt.nsched)
        return;
    struct io_sched *io = rt__rt.sched[si - 1].io;
    if (io->s != rt__sched_self()) {
        /* (no memory for the command: it goes on until it ends otherwise) */
        post_cmd(
            io, (struct io_cmd){.owner = proc_pid(p), .id = id, .timed_out = true, .timer = timer});
        return;
    }
    time_out(io, req_find(id, &io), proc_pid(p), timer);
}

/* ---- the scheduler's side --------------------------------------------------------------- */

/* Whether cmd ends r (struct io_cmd). */
static bool cmd_ends(const struct io_cmd *cmd, const struct ioreq *r)
{
    bool owners = rt_pid_eq(r->owner, cmd->owner);
    if (!cmd->only_fds && owners && (cmd->id == 0 || cmd->id == r->id))
        return true;
    if (cmd->fc == NULL || !(owners || io__fd_stale(r)))
        return false;
    for (unsigned i = 0; i < cmd->fc->n; i++)
        if (cmd->fc->fds[i] == r->fd)
            return true;
    return false;
}

void rt__io_poll(struct sched *s)
{
    struct io_sched *io = s->io;
    /* acquire: pairs with the release in buf_release / post_cmd */
    if (atomic_load_explicit(&io->pending, memory_order_acquire)) {
        pthread_mutex_lock(&io->lock);
        atomic_store_explicit(&io->pending, false, memory_order_relaxed);
        unsigned nret = io->nret, ncmds = io->ncmds;
        unsigned ret[64];
        struct io_cmd cmds[16];
        nret = nret > 64 ? 64 : nret;
        ncmds = ncmds > 16 ? 16 : ncmds;
        if (nret)
            memcpy(ret, io->ret + io->nret - nret, nret * sizeof *ret);
        io->nret -= nret;
        if (ncmds)
            memcpy(cmds, io->cmds + io->ncmds - ncmds, ncmds * sizeof *cmds);
        io->ncmds -= ncmds;
        if (io->nret || io->ncmds)
            atomic_store_explicit(&io->pending, true, memory_order_relaxed);
        pthread_mutex_unlock(&io->lock);
        /* cancels first: a returned buffer must not restart a paused
         * receive of a process that has ended */
        bool closes = false;
        for (unsigned k = 0; k < ncmds; k++) {
            if (cmds[k].set_timeout || cmds[k].timed_out) {
                struct io_sched *rio;
                struct ioreq *r = req_find(cmds[k].id, &rio);
                if (r && rio == io && cmds[k].timed_out)
                    time_out(io, r, cmds[k].owner, cmds[k].timer);
                else if (r && rio == io && rt_pid_eq(r->owner, cmds[k].owner) &&
                         !(r->flags & R_CANCELLED))
                    /* (no memory: it just gets none) */
                    set_timeout(r, cmds[k].deadline_ns, cmds[k].seq);
                continue;
            }
            for (uint32_t i = 0; i < io->ntab; i++) {
                struct ioreq *r = io->tab[i];
                if (r->state == R_FREE)
                    continue;
                if (cmd_ends(&cmds[k], r))
                    cancel_here(io, r);
            }
            closes |= cmds[k].fc != NULL;
        }
        if (closes) {
            /* the cancels, and what the batch holds for the fds, before they are freed */
            flush_now(io);
            for (unsigned k = 0; k < ncmds; k++)
                if (cmds[k].fc)
                    fd_close_release(cmds[k].fc);
        }
        for (unsigned i = 0; i < nret; i++)
            buf_return_here(io, ret[i]);
    }
    /* epoll cannot tell without a system call: it looks every 64 rounds,
     * busy or spinning for work before it parks. Looking only when busy
     * (as it did), the control saw a reply
     * that came while it spun only when the spin ended, up to
     * rt_opts.spin_us late (rr 1 x 64 B: p50 67 us against io_uring's 21,
     * a third of its round trips), and when streaming read and echoed in
     * larger pieces for being late, which a client at its limit rewards */
    if (io->be->ready(io) || (++io->poll_tick & 63) == 0)
        io->be->reap(io);
    if (io->hold_since && rt__now_ns() - io->hold_since >= rt__rt.hold_ns)
        flush_now(io);
}

/* 3/4 of the receives handed over lately completed at once */
#define HOLD_AT_ONCE 192u

/* Whether to hold a batch now: when holding pays, but for the last of
 * every 8 runs of 64 hand-overs, and the other way round (io.h) */
static bool hold_now(const struct io_sched *io)
{
    return io->hold_pays != (((io->handovers >> 6) & 7) == 7);
}

void rt__io_after_turn(struct sched *s, bool idle_next)
{
    struct io_sched *io = s->io;
    if (idle_next && io->batch_recvs && io->recvs_at_once >= HOLD_AT_ONCE && rt__rt.hold_ns &&
        io->since_flush < 32 && hold_now(io)) {
        /* hold the batch (rt_opts.io_hold_us): rt__io_poll hands it over
         * when the time is up, and the idle scheduler's spin polls */
        int64_t now = rt__now_ns();
        if (io->hold_since == 0) {
            io->hold_since = now;
            io__add(&io->holds, 1);
        }
        if (now - io->hold_since < rt__rt.hold_ns) {
            io->since_flush++;
            return;
        }
    }
    if (idle_next || ++io->since_flush >= 32)
        flush_now(io);
}

bool rt__io_has_work(struct sched *s)
{
    struct io_sched *io = s->io;
    return atomic_load_explicit(&io->pending, memory_order_acquire) || io->be->ready(io);
}

void rt__io_wait(struct sched *s, int64_t deadline)
{
    s->io->hold_since = 0; /* the wait hands the batch over */
    s->io->be->wait(s->io, deadline);
}

uint64_t rt__io_syscalls(struct sched *s)
{
    return atomic_load_explicit(&s->io->syscalls, memory_order_relaxed) +
           atomic_load_explicit(&s->io->syscalls_any, memory_order_relaxed);
}

uint64_t rt__io_holds(struct sched *s)
{
    return atomic_load_explicit(&s->io->holds, memory_order_relaxed);
}

void rt__io_wake(struct sched *s)
{
    s->io->be->wake(s->io);
}

/* A process ends: cancel what it has in flight anywhere. */
void rt__io_proc_cancel(struct proc *p)
{
    struct proc_ext *x = p->ext;
    if (!p->did_io || x == NULL || x->live == NULL)
        return;
    rt_pid pid = proc_pid(p);
    struct sched *self = rt__sched_self();
    for (unsigned i = 0; i < rt__rt.nsched; i++) {
        struct io_sched *io = rt__rt.sched[i].io;
        /* only where it has requests (acquire: as in rt__io_proc_close; an
         * ending process starts none, so a count seen at 0 stays there):
         * a cancel posted elsewhere wakes that scheduler for nothing */
        if (atomic_load_explicit(&x->live[i], memory_order_acquire) == 0)
            continue;
        if (&rt__rt.sched[i] == self) {
            for (uint32_t k = 0; k < io->ntab; k++)
                if (io->tab[k]->state != R_FREE && rt_pid_eq(io->tab[k]->owner, pid))
                    cancel_here(io, io->tab[k]);
        } else {
            post_cancel(io, pid, 0);
        }
    }
}

/* ... and close its fds. The kernel holds its own reference for requests
 * in flight; but one still queued in a scheduler's batch (or, on epoll,
 * waiting for readiness, or paused for a buffer) names its fd by number,
 * and would act on whatever socket gets that number next. Cancelled just
 * before, the process's requests still in this scheduler's batch have left
 * it (io_uring) or will never be tried (epoll); what the batch still holds
 * for these fds (closes, cancels by fd) goes to the kernel before they
 * close. Where another scheduler still has some of the process's requests (the
 * process moved), the sockets are closed now all the same, but their
 * numbers held until those are ended (close_holding). */
void rt__io_proc_close(struct proc *p)
{
    struct proc_ext *x = p->ext;
    if (!p->did_io || x == NULL || x->nfds == 0)
        return;
    struct io_sched *self = rt__sched_self()->io;
    /* others' requests on these fds end too, as at an rt_io_close (on
     * io_uring by a cancel that names the fd: the kernel must have it
     * before the fd closes) */
    bool flush = false;
    for (uint32_t i = 0; i < x->nfds; i++)
        flush |= fd_closing(self, x->fds[i], 0);
    /* (only the process adds requests, so a count seen at 0 stays there) */
    if (flush || (x->live && atomic_load_explicit(&x->live[self->s->idx], memory_order_relaxed)))
        flush_now(self);
    struct fd_close *fc = live_elsewhere(p, self) ? fd_close_new(x->nfds) : NULL;
    if (fc == NULL) { /* (or no memory: close without waiting) */
        for (uint32_t i = 0; i < x->nfds; i++)
            close(x->fds[i]);
    } else {
        close_holding(self, p, fc, x->fds, x->nfds, (struct io_cmd){.owner = proc_pid(p)});
    }
    x->nfds = 0;
}

/* ---- blocking style --------------------------------------------------------------------- */

static bool match_final(const rt_msg *m, void *arg)
{
    const rt_io_result *r = rt_io_result_of(m);
    return r && r->req == *(rt_io_req *)arg && !(r->flags & RT_IO_F_MORE);
}

/* Wait for the last completion of `req`; on timeout cancel it and wait
 * for that. Returns the message (caller frees) or NULL with *rc set. */
static rt_msg *await(rt_io_req req, int timeout_ms, int *rc)
{
    rt_msg *m;
    *rc = rt_receive_match(match_final, &req, timeout_ms, &m);
    if (*rc == 0)
        return m;
    if (*rc != -ETIMEDOUT)
        return NULL;
    rt_io_cancel(req);
    if (rt_receive_match(match_final, &req, RT_INFINITY, &m) != 0)
        return NULL;
    const rt_io_result *r = rt_io_result_of(m);
    if (r->res == -ECANCELED || r->res == -EINTR) {
        rt_msg_free(m);
        return NULL; /* *rc stays -ETIMEDOUT */
    }
    *rc = 0; /* it completed before the cancel took */
    return m;
}

static bool stackful(void)
{
    struct proc *p = io_proc();
    return p && p->kind == PROC_STACKFUL;
}

RT_API int rt_socket(int domain, int type, int protocol)
{
    struct proc *p = io_proc();
    if (p == NULL)
        return RT_ENOTPROC;
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
    int rc = own(p, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static _Thread_local unsigned quick_accepts; /* rt_accept's, in a row, on this thread */

RT_API int rt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int timeout_ms)
{
    if (!stackful())
        return RT_ENOTPROC;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK)) {
        /* a connection already waiting is taken at once: an acceptor on a
         * busy scheduler would otherwise get one per trip round its run
         * queue */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int nfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (nfd >= 0) {
            int rc = own(io_proc(), nfd);
            if (rc < 0) {
                close(nfd);
                return rc;
            }
            if (addr && addrlen) {
                memcpy(addr, &ss, sl < *addrlen ? sl : *addrlen);
                *addrlen = sl;
            }
            if (++quick_accepts % 64 == 0)
                rt_yield(); /* a flood of them still lets the others here run */
            return nfd;
        }
        quick_accepts = 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            return -errno;
    }
    rt_io_req req;
    int rc = rt_io_accept(fd, 0, &req);
    if (rc < 0)
        return rc;
    rt_msg *m = await(req, timeout_ms, &rc);
    if (m == NULL)
        return rc;
    const rt_io_result *r = rt_io_result_of(m);
    rc = r->res;
    if (rc >= 0) {
        if (addr && addrlen && r->name) {
            socklen_t n = r->namelen < *addrlen ? r->namelen : *addrlen;
            memcpy(addr, r->name, n);
            *addrlen = r->namelen;
        }
        rc = rt_io_take_fd(m);
    }
    rt_msg_free(m);
    return rc;
}

/* The result of a request just started (`rc`: what starting it returned). */
static int finish(int rc, const rt_io_req *req, int timeout_ms)
{
    if (rc < 0)
        return rc;
    rt_msg *m = await(*req, timeout_ms, &rc);
    if (m == NULL)
        return rc;
    rc = rt_io_result_of(m)->res;
    rt_msg_free(m);
    return rc;
}

RT_API int rt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int timeout_ms)
{
    if (!stackful())
        return RT_ENOTPROC;
    rt_io_req req;
    int rc = rt_io_connect(fd, addr, addrlen, &req);
    return finish(rc, &req, timeout_ms);
}

/* ---- large transfers straight to the kernel ---------------------------------------------
 *
 * A stackful process echoing 64 KiB at a time through the ring had its
 * receive done in one io_uring_enter (with a batch of others), and its
 * send, from the same buffer, one turn and a batch later: by then the
 * buffer had left the cache (1,000 connections x 64 KiB streaming: 42-58
 * us of CPU per message on either backend, against 26-31 us done at once
 * and 24 for Go's netpoller, which does just that). So rt_recv and
 * rt_send_all move large transfers with the system call itself when the
 * kernel can take them at once (MSG_DONTWAIT), and go through the ring
 * only when it would block; small ones always go through the ring, where
 * many share one io_uring_enter. A receive is large when the last one on
 * that fd, on this scheduler, brought DIRECT_MIN bytes or more (a hint
 * kept per fd number: a wrong one costs one EAGAIN). Only for a process
 * with no request in flight anywhere: one of its own, queued or in the
 * kernel, must not be overtaken on its fd. After 16 in a row the process
 * gives the others a turn (direct()). */
#define DIRECT_MIN (32 * 1024)

static bool nothing_in_flight(struct proc *p)
{
    struct proc_ext *x = p->ext;
    if (x == NULL || x->live == NULL)
        return true;
    for (unsigned i = 0; i < rt__rt.nsched; i++)
        /* acquire: pairs with the release in req_free (the kernel is done
         * with that request before this process acts on the fd) */
        if (atomic_load_explicit(&x->live[i], memory_order_acquire))
            return false;
    return true;
}

static bool fd_hot(struct io_sched *io, int fd)
{
    return (unsigned)fd < io->nhot && io->hot[fd];
}

static void fd_set_hot(struct io_sched *io, int fd, bool hot)
{
    if ((unsigned)fd >= io->nhot) {
        uint8_t *h = hot ? io__fd_room(io->hot, &io->nhot, sizeof *io->hot, fd) : NULL;
        if (h == NULL)
            return; /* (not hot is what an fd past the end is; no memory: only a hint) */
        io->hot = h;
    }
    io->hot[fd] = hot;
}

/* One transfer straight to the kernel, if it can take it at once: its
 * result, or -EAGAIN (then through the ring). */
static ssize_t direct(int fd, void *buf, size_t len, bool out)
{
    struct proc *p = io_proc();
    if (!nothing_in_flight(p))
        return -EAGAIN;
    /* a turn for the others, as waiting for the ring gave them: before a
     * receive (a send goes on with what the process just read and is still
     * in the cache), or a run of sends alone */
    struct io_sched *io = rt__sched_self()->io;
    if (io->direct_run >= (out ? 64u : 16u)) {
        io->direct_run = 0;
        rt_yield();
        io = rt__sched_self()->io; /* it may have moved */
    }
    io->direct_run++;
    io__count(io, 1);
    ssize_t n =
        out ? send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) : recv(fd, buf, len, MSG_DONTWAIT);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return -EAGAIN;
    return -errno;
}

RT_API ssize_t rt_recv(int fd, void *buf, size_t len, int timeout_ms)
{
    if (!stackful())
        return RT_ENOTPROC;
    struct io_sched *io = rt__sched_self()->io;
    ssize_t n = -EAGAIN;
    if (fd >= 0 && buf && len >= DIRECT_MIN && len <= INT32_MAX && fd_hot(io, fd))
        n = direct(fd, buf, len, false);
    if (n == -EAGAIN) {
        rt__sched_self()->io->direct_run = 0;
        rt_io_req req;
        int rc = rt_io_recv(fd, buf, len, 0, 0, &req);
        n = finish(rc, &req, timeout_ms);
    }
    io = rt__sched_self()->io;
    if (fd >= 0)
        fd_set_hot(io, fd, n >= DIRECT_MIN);
    return n;
}

RT_API ssize_t rt_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    if (!stackful())
        return RT_ENOTPROC;
    if (buf == NULL && len)
        return -EINVAL;
    size_t done = 0;
    if (fd >= 0 && len >= DIRECT_MIN && len <= INT32_MAX) {
        ssize_t n = direct(fd, (void *)buf, len, true);
        if (n < 0 && n != -EAGAIN)
            return n;
        if (n > 0)
            done = (size_t)n;
        if (done == len)
            return (ssize_t)len;
    }
    rt__sched_self()->io->direct_run = 0;
    int64_t deadline = timeout_ms >= 0 ? rt_now_ms() + timeout_ms : 0;
    do {
        int left = RT_INFINITY;
        if (timeout_ms >= 0) {
            int64_t l = deadline - rt_now_ms();
            left = l > 0 ? (int)l : 0;
        }
        rt_io_req req;
        int rc = rt_io_send(fd, (const char *)buf + done, len - done, 0, &req);
        rc = finish(rc, &req, left);
        if (rc < 0)
            return rc;
        done += (size_t)rc;
    } while (done < len);
    return (ssize_t)len;
}

RT_API int rt_close(int fd)
{
    if (!stackful())
        return RT_ENOTPROC;
    rt_io_req req;
    int rc = rt_io_close(fd, &req);
    return finish(rc, &req, RT_INFINITY);
}
