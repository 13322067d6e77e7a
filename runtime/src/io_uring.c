/* io_uring.c: the io_uring backend (see io.h for the contract).
 *
 * One ring per scheduler, made by rt_start's thread and used only by the
 * scheduler's (nothing else submits). Submissions are batched: they go to
 * the kernel at the end of a turn that leaves the run queue empty, every
 * 32 turns otherwise, and when the scheduler waits; a batch that would go
 * at once may be held back a few microseconds while that pays
 * (rt_opts.io_hold_us; io.c, rt__io_after_turn). The ring's task work
 * runs only when the scheduler asks for completions (DEFER_TASKRUN, where
 * the kernel has it). A read on an eventfd stays armed on the ring so
 * another thread can end a wait. The provided buffers are a buffer ring
 * (IORING_REGISTER_PBUF_RING) mapped here, since Debian's liburing 2.3
 * has no io_uring_setup_buf_ring.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "failpoint.h"
#include "io.h"

#define ENTRIES    1024u
#define CQ_ENTRIES 8192u
#define BGID       0
#define UD_WAKE    1ull
#define UD_IGNORE  2ull
_Static_assert(ENTRIES <= 0x10000, "an entry's index takes 16 bits of ioreq.backend");

struct uring {
    struct io_sched *io;
    struct io_uring ring;
    int efd;
    uint64_t efd_val;
    bool efd_armed;
    struct io_uring_buf_ring *br;
    size_t br_len;
    unsigned mask;
    /* batches handed to the kernel, from 1: a request keeps the number of
     * the batch it went into in ioreq.backend (BATCH_OF), with its entry's
     * index below it, and a cancel before that batch is handed over takes
     * it out. 48 bits: a multishot request can live for years, and its
     * number must not come round again (at a million batches a second,
     * 2^32 would in 72 minutes; 2^48 takes 9 years) */
    uint64_t batch;
    uint64_t held;  /* of the last 64 batches (bit: batch % 64), those held back */
    bool cancel_fd; /* the kernel cancels by fd (5.19; so has the first ring's flags) */
    /* its task work runs only when asked (DEFER_TASKRUN, 6.1; with
     * SINGLE_ISSUER, and made disabled, for the scheduler's thread to
     * enable: ur_bind): then a hand-over's completions are exactly the
     * requests the kernel did at once (count_at_once) */
    bool deferred;
    unsigned dropped; /* completions the kernel dropped, last seen (cq.koverflow) */
    /* cancels that found no queue entry (the kernel refused a submit):
     * made at the next hand-over */
    struct {
        struct ioreq *r;
        uint64_t id;
    } * later;
    unsigned nlater, caplater;
};

#define BATCH_OF(backend) ((backend) >> 16)
#define BATCH_MASK        ((UINT64_C(1) << 48) - 1)

static void handed_over(struct uring *u)
{
    uint64_t bit = UINT64_C(1) << (u->batch & 63);
    u->held = u->io->handing_held ? u->held | bit : u->held & ~bit;
    u->batch++;
    u->io->batch_recvs = 0;
}

static bool single_recv(const struct ioreq *r)
{
    return (r->op == RT_IO_RECV || r->op == RT_IO_RECVMSG) && !(r->flags & RT_IO_MULTISHOT);
}

/* Batch `batch`, just handed over by ur_flush: of its `nrecv` single-shot
 * receives, how many the kernel completed in that enter (their
 * completions follow the `before` already in the completion queue; others
 * there are from task work run in the enter, for requests of earlier
 * batches), into the moving average rt__io_after_turn reads
 * (rt_opts.io_hold_us). Completions that went to the overflow list are
 * not seen: they count as waiting. */
static void count_at_once(struct uring *u, uint64_t batch, unsigned before, unsigned nrecv)
{
    if (nrecv == 0)
        return;
    /* only the new ones: from the head, past those that were there */
    const struct io_uring_cq *cq = &u->ring.cq;
    unsigned head = *cq->khead, ready = io_uring_cq_ready(&u->ring), quick = 0;
    for (unsigned k = before; k < ready; k++) {
        const struct io_uring_cqe *cqe = &cq->cqes[(head + k) & cq->ring_mask];
        if (cqe->user_data <= UD_IGNORE)
            continue;
        const struct ioreq *r = (const struct ioreq *)(uintptr_t)cqe->user_data;
        quick += single_recv(r) && BATCH_OF(r->backend) == (batch & BATCH_MASK);
    }
    struct io_sched *io = u->io;
    io->recvs_at_once = io__avg(io->recvs_at_once, quick * 256 / nrecv, 8);
}

static struct io_uring_sqe *sqe_get(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        io_uring_submit(&u->ring); /* full: hand the batch over now */
        handed_over(u);
        io__count(u->io, 1);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static void arm_wake(struct uring *u)
{
    if (u->efd_armed)
        return;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return;
    io_uring_prep_read(sqe, u->efd, &u->efd_val, sizeof u->efd_val, 0);
    io_uring_sqe_set_data64(sqe, UD_WAKE);
    u->efd_armed = true;
}

static int ur_init(struct io_sched *io)
{
    struct uring *u = calloc(1, sizeof *u);
    if (u == NULL)
        return -ENOMEM;
    /* COOP_TASKRUN: the kernel does not interrupt a busy scheduler to post
     * completions; it raises IORING_SQ_TASKRUN, which ur_ready polls */
    const unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
                          IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    struct io_uring_params p = {.flags = base | IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
                                .cq_entries = CQ_ENTRIES};
    int rc = rt__fp_fail(RT_FP_URING_SETUP)   ? -ENOMEM
             : rt__fp_fail(RT_FP_URING_DEFER) ? -EINVAL
                                              : io_uring_queue_init_params(ENTRIES, &u->ring, &p);
    u->deferred = rc == 0;
    if (rc == -EINVAL) {
        /* before 6.1 */
        p = (struct io_uring_params){.flags = base, .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(ENTRIES, &u->ring, &p);
    }
    u->cancel_fd = rc == 0;
    if (rc == -EINVAL) {
        /* an older kernel: without the task-run flags */
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
        rc = io_uring_queue_init_params(ENTRIES, &u->ring, &p);
    }
    if (rc < 0)
        goto out_free;
    /* without NODROP (before 5.5) a full completion queue drops
     * completions, and their requests never end */
    if (!(p.features & IORING_FEAT_NODROP)) {
        rc = -EOPNOTSUPP;
        goto out_ring;
    }
    u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->efd < 0) {
        rc = -errno;
        goto out_ring;
    }
    u->br_len = io->nbufs * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->br == MAP_FAILED) {
        rc = -ENOMEM;
        goto out_efd;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)u->br, .ring_entries = io->nbufs, .bgid = BGID};
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0)
        goto out_map;
    io_uring_buf_ring_init(u->br);
    u->mask = io_uring_buf_ring_mask(io->nbufs);
    for (unsigned i = 0; i < io->nbufs; i++)
        io_uring_buf_ring_add(u->br, io->bufs + (size_t)i * io->bufsize, io->bufsize,
                              (unsigned short)i, u->mask, (int)i);
    io_uring_buf_ring_advance(u->br, (int)io->nbufs);
    io->priv = u;
    u->io = io;
    u->batch = 1;
    arm_wake(u);
    return 0;
out_map:
    munmap(u->br, u->br_len);
out_efd:
    close(u->efd);
out_ring:
    io_uring_queue_exit(&u->ring);
out_free:
    free(u);
    return rc;
}

/* The ring was made disabled, with a single issuer: the scheduler's
 * thread enables it, and is that issuer from then on. */
static void ur_bind(struct io_sched *io)
{
    struct uring *u = io->priv;
    if (!u->deferred)
        return;
    long rc = syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
                      0); /* (liburing 2.3 has no io_uring_enable_rings) */
    if (rc < 0)
        fprintf(stderr, "rt: io_uring: enabling the ring of scheduler %u failed: %s\n", io->s->idx,
                strerror(errno));
}

static void ur_fini(struct io_sched *io)
{
    struct uring *u = io->priv;
    /* (refused, -EEXIST, for a ring its scheduler enabled: not this thread's
     * to change; closing it frees the buffer ring all the same) */
    io_uring_unregister_buf_ring(&u->ring, BGID);
    io_uring_queue_exit(&u->ring);
    munmap(u->br, u->br_len);
    close(u->efd);
    free(u->later);
    free(u);
    io->priv = NULL;
}

static int ur_start(struct io_sched *io, struct ioreq *r)
{
    struct uring *u = io->priv;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return -EAGAIN;
    bool multi = r->flags & RT_IO_MULTISHOT;
    switch (r->op) {
    case RT_IO_ACCEPT:
        if (multi) {
            io_uring_prep_multishot_accept(sqe, r->fd, NULL, NULL, SOCK_CLOEXEC);
        } else {
            r->addrlen = sizeof r->addr;
            io_uring_prep_accept(sqe, r->fd, (struct sockaddr *)&r->addr, &r->addrlen,
                                 SOCK_CLOEXEC);
        }
        break;
    case RT_IO_CONNECT:
        io_uring_prep_connect(sqe, r->fd, (struct sockaddr *)&r->addr, r->addrlen);
        break;
    case RT_IO_SEND:
        io_uring_prep_send(sqe, r->fd, r->buf, r->len, r->msg_flags);
        break;
    case RT_IO_SENDMSG:
        io_uring_prep_sendmsg(sqe, r->fd, r->mh, (unsigned)r->msg_flags);
        break;
    case RT_IO_RECV:
        if (multi)
            io_uring_prep_recv_multishot(sqe, r->fd, NULL, 0, r->msg_flags);
        else /* provided buffers: 0, the buffer's length (len is ignored, rt/io.h) */
            io_uring_prep_recv(sqe, r->fd, (void *)r->buf, r->flags & RT_IO_BUFSEL ? 0 : r->len,
                               r->msg_flags);
        break;
    case RT_IO_RECVMSG:
        if (multi)
            io_uring_prep_recvmsg_multishot(sqe, r->fd, &r->tmpl, (unsigned)r->msg_flags);
        else
            io_uring_prep_recvmsg(sqe, r->fd, r->flags & RT_IO_BUFSEL ? &r->tmpl : r->mh,
                                  (unsigned)r->msg_flags);
        break;
    case RT_IO_CLOSE:
        io_uring_prep_close(sqe, r->fd);
        break;
    case RT_IO_POLL:
        if (multi)
            io_uring_prep_poll_multishot(sqe, r->fd, r->poll_events);
        else
            io_uring_prep_poll_add(sqe, r->fd, r->poll_events);
        break;
    default:
        return -EINVAL;
    }
    if (r->flags & RT_IO_BUFSEL) {
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
    }
    io_uring_sqe_set_data(sqe, r);
    r->backend = (u->batch & BATCH_MASK) << 16 | (uint64_t)(sqe - u->ring.sq.sqes);
    io->batch_recvs += single_recv(r);
    return 0;
}

static void ur_cancel(struct io_sched *io, struct ioreq *r)
{
    struct uring *u = io->priv;
    struct io_uring_sqe *nop = &u->ring.sq.sqes[r->backend & 0xffff];
    if (r->op != RT_IO_CLOSE && r->backend != 0 &&
        BATCH_OF(r->backend) == (u->batch & BATCH_MASK) && nop->user_data == (uintptr_t)r) {
        /* still in the batch: the kernel never sees it (as epoll never
         * tries it), and it ends now. A close is done even so. */
        io_uring_prep_nop(nop);
        io_uring_sqe_set_data64(nop, UD_IGNORE);
        r->backend = 0;
        io__complete(io, r, -ECANCELED, false, -1);
        return;
    }
    struct io_uring_sqe *sqe = rt__fp_fail(RT_FP_CANCEL_SQE) ? NULL : sqe_get(u);
    if (sqe == NULL) {
        /* not lost: the next hand-over makes it (but for no memory) */
        if (u->nlater == u->caplater) {
            unsigned n = u->caplater ? 2 * u->caplater : 16;
            void *nl = realloc(u->later, n * sizeof *u->later);
            if (nl == NULL)
                return;
            u->later = nl;
            u->caplater = n;
        }
        u->later[u->nlater].r = r;
        u->later[u->nlater++].id = r->id;
        return;
    }
    io_uring_prep_cancel(sqe, r, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

/* Before a hand-over: the cancels that had to wait, for requests still
 * live (a request's slot lives as long as the ring; its id changes when
 * it is used again). */
static void cancels_later(struct uring *u)
{
    unsigned k = 0;
    for (; k < u->nlater; k++) {
        struct ioreq *r = u->later[k].r;
        if (r->state == R_FREE || r->id != u->later[k].id)
            continue;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (sqe == NULL)
            break;
        io_uring_prep_cancel(sqe, r, 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
    memmove(u->later, u->later + k, (u->nlater - k) * sizeof *u->later);
    u->nlater -= k;
}

/* A cancel of everything on the fd in this ring, handed over before the
 * close that follows it (the kernel looks the fd up when it runs it). */
static bool ur_fd_closing(struct io_sched *io, int fd)
{
    struct uring *u = io->priv;
    /* before 5.19 a cancel by fd fails, and without SUBMIT_ALL it would
     * hold back the rest of the batch (the close with it) */
    if (!u->cancel_fd)
        return false;
    struct io_uring_sqe *sqe = sqe_get(u);
    if (sqe == NULL)
        return false;
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return true;
}

static bool taskrun_pending(struct uring *u)
{
    /* relaxed: a hint; io_uring_get_events does the real work. Completions
     * that found the completion queue full wait in the kernel's overflow
     * list (IORING_SQ_CQ_OVERFLOW) until an enter flushes them: left
     * there, a receive's buffers stay taken and its data unseen */
    return __atomic_load_n(u->ring.sq.kflags, __ATOMIC_RELAXED) &
           (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

/* Even with NODROP the kernel drops a completion when it has no memory to
 * keep it on its overflow list, and counts it: the request it ended never
 * ends here, its owner waits and its fd stays open. Nothing here can make
 * it up, so it is said (once per count seen), not hidden. */
static void dropped(struct uring *u)
{
    unsigned k = __atomic_load_n(u->ring.cq.koverflow, __ATOMIC_RELAXED);
    if (__builtin_expect(k == u->dropped, 1))
        return;
    fprintf(stderr,
            "rt: io_uring: the kernel dropped %u completion(s); their requests will not end\n",
            k - u->dropped);
    u->dropped = k;
}

static int ur_reap(struct io_sched *io)
{
    struct uring *u = io->priv;
    struct io_uring_cqe *cqe;
    if (taskrun_pending(u)) {
        io_uring_get_events(&u->ring);
        io__count(io, 1);
    }
    unsigned head, n = 0;
    /* copy out first: a completion handler may submit (and so, when the
     * submission queue is full, enter the kernel) */
    struct {
        uint64_t ud;
        int res;
        unsigned flags;
    } batch[64];
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        batch[n].ud = cqe->user_data;
        batch[n].res = cqe->res;
        batch[n].flags = cqe->flags;
        if (++n == 64)
            break;
    }
    io_uring_cq_advance(&u->ring, n);
    dropped(u);
    for (unsigned i = 0; i < n; i++) {
        if (batch[i].ud == UD_WAKE) {
            u->efd_armed = false;
            continue;
        }
        if (batch[i].ud == UD_IGNORE)
            continue;
        struct ioreq *r = (struct ioreq *)(uintptr_t)batch[i].ud;
        uint64_t b = BATCH_OF(r->backend);
        if (batch[i].res > 0 && single_recv(r) && r->backend != 0 &&
            ((u->batch - b) & BATCH_MASK) < 64)
            io__recv_brought(io, u->held >> (b & 63) & 1, batch[i].res);
        int bid = batch[i].flags & IORING_CQE_F_BUFFER
                      ? (int)(batch[i].flags >> IORING_CQE_BUFFER_SHIFT)
                      : -1;
        io__complete(io, r, batch[i].res, batch[i].flags & IORING_CQE_F_MORE, bid);
    }
    return (int)n;
}

static bool ur_ready(struct io_sched *io)
{
    struct uring *u = io->priv;
    return io_uring_cq_ready(&u->ring) > 0 || taskrun_pending(u);
}

static void ur_flush(struct io_sched *io)
{
    struct uring *u = io->priv;
    if (u->nlater)
        cancels_later(u);
    if (io_uring_sq_ready(&u->ring)) {
        unsigned before = io_uring_cq_ready(&u->ring), nrecv = io->batch_recvs;
        uint64_t batch = u->batch;
        /* exact only where task work waits to be asked for, and none is
         * pending (liburing asks for it in the same enter then) */
        bool exact = u->deferred && !taskrun_pending(u);
        io_uring_submit(&u->ring);
        handed_over(u);
        io__count(io, 1);
        if (exact)
            count_at_once(u, batch, before, nrecv);
    }
}

static void ur_wait(struct io_sched *io, int64_t deadline)
{
    struct uring *u = io->priv;
    if (u->nlater)
        cancels_later(u);
    arm_wake(u);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    if (deadline != INT64_MAX) {
        int64_t d = deadline - rt__now_ns();
        if (d < 0)
            d = 0;
        ts.tv_sec = d / 1000000000;
        ts.tv_nsec = d % 1000000000;
        tsp = &ts;
    }
    io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
    handed_over(u);
    io__count(io, 1);
}

static void ur_wake(struct io_sched *io)
{
    struct uring *u = io->priv;
    uint64_t one = 1;
    ssize_t n = write(u->efd, &one, sizeof one);
    io__count_any(io);
    (void)n; /* EAGAIN: the counter is full, so a wake is pending anyway */
}

static void ur_buf_return(struct io_sched *io, unsigned bid)
{
    struct uring *u = io->priv;
    if (rt__fp_fail(RT_FP_BUF_LOSE))
        return;
    io_uring_buf_ring_add(u->br, io->bufs + (size_t)bid * io->bufsize, io->bufsize,
                          (unsigned short)bid, u->mask, 0);
    io_uring_buf_ring_advance(u->br, 1);
}

const struct io_backend rt__io_uring_backend = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .start = ur_start,
    .cancel = ur_cancel,
    .reap = ur_reap,
    .ready = ur_ready,
    .flush = ur_flush,
    .wait = ur_wait,
    .wake = ur_wake,
    .buf_return = ur_buf_return,
    .fd_closing = ur_fd_closing,
    .bind = ur_bind,
};
