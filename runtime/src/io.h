/* io.h: the I/O layer's private structures and its backend contract.
 *
 * Each scheduler owns an io_sched: a table of its requests (ids with
 * generations), the provided buffers, the requests paused for want of a
 * buffer, and queues through which other threads hand it work (buffers
 * given back, "cancel everything of this process"). A backend (io_uring.c,
 * io_epoll.c) moves requests through the kernel and reports completions
 * with io__complete(); everything else is common (io.c). Only the owning
 * scheduler's thread touches its io_sched, except where marked.
 */
#ifndef RT_IO_INTERNAL_H
#define RT_IO_INTERNAL_H

#include <rt/io.h>

#include "internal.h"

enum req_state { R_FREE = 0, R_LIVE, R_PAUSED };
#define R_CANCELLED 0x100u /* flag bit next to RT_IO_MULTISHOT / RT_IO_BUFSEL */
#define R_PINNED    0x200u /* uses its owner's memory: holds one of its io_pins */
#define R_NOBUF     0x400u /* restarted at once after an ENOBUFS, with nothing received since */
#define R_TIMEDOUT  0x800u /* cancelled by its rt_io_timeout: ends -ETIMEDOUT, not -ECANCELED */

struct ioreq {
    struct io_sched *io;
    rt_pid owner;
    uint64_t id;
    int fd;
    uint8_t op;
    uint8_t state;
    unsigned flags;
    uint32_t idx;
    uint32_t gen;
    const void *buf;
    size_t len;
    int msg_flags;
    unsigned poll_events;
    struct msghdr *mh;  /* the caller's (not RT_IO_BUFSEL) */
    struct msghdr tmpl; /* RT_IO_BUFSEL recvmsg: name/control room */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct ioreq *next; /* paused list */
    uint32_t next_free_idx;
    uint32_t nobuf_gen; /* io->buf_gen when an ENOBUFS restarted it (R_NOBUF) */
    uint32_t fd_epoch;  /* its fd number's close count when it started (io__fd_stale) */
    uint64_t backend;   /* the backend's own use */
    struct proc *pin;   /* the owner, referenced until the request ends (its ext->live) */
    uint64_t timer;     /* its rt_io_timeout's timer (0: none), cancelled when it ends */
    uint64_t timer_seq; /* the rt_io_timeout call that set it (a later call's is greater) */
};

struct io_sched;

/* The fd numbers of an ended process with requests still on other
 * schedulers, or of an fd closed by a process with requests on other
 * schedulers (rt_io_close): the sockets already closed, the numbers held
 * by the placeholder (close_holding in io.c). Each of those schedulers
 * ends the requests, hands its batch to the kernel and drops its
 * reference; the last one frees the numbers. */
struct fd_close {
    _Atomic unsigned refs;
    unsigned n;
    int fds[];
};

/* A request from another thread, done by the scheduler's own thread:
 * "end request `id` of `owner`", or all of owner's when id is 0 (not with
 * only_fds). With `fc`
 * (numbers held, close_holding): also end every request on fc's numbers
 * that is owner's or started before their close (a stale fd epoch),
 * whoever's; then flush, and drop a reference to fc. With set_timeout:
 * only give request `id` of `owner` an rt_io_timeout of timeout_ms; with
 * timed_out: only end it, if its timer is still `timer` (that fired). */
struct io_cmd {
    rt_pid owner;
    rt_io_req id;
    bool only_fds;
    bool timed_out;
    bool set_timeout;
    int64_t deadline_ns; /* set_timeout: when (absolute), and which call (timer_seq) */
    uint64_t seq;
    uint64_t timer;
    struct fd_close *fc;
};

struct io_backend {
    const char *name;
    int (*init)(struct io_sched *io);
    void (*fini)(struct io_sched *io);
    /* start (or restart) r; 0 or -errno */
    int (*start)(struct io_sched *io, struct ioreq *r);
    void (*cancel)(struct io_sched *io, struct ioreq *r);
    /* handle what completed; the number of completions */
    int (*reap)(struct io_sched *io);
    /* true if completions wait to be reaped */
    bool (*ready)(struct io_sched *io);
    /* hand queued work to the kernel */
    void (*flush)(struct io_sched *io);
    /* block until a completion, a wake or the deadline (INT64_MAX: none) */
    void (*wait)(struct io_sched *io, int64_t deadline);
    /* any thread: end a wait */
    void (*wake)(struct io_sched *io);
    /* a provided buffer is free again */
    void (*buf_return)(struct io_sched *io, unsigned bid);
    /* fd is about to be closed: end what is started on it here (epoll:
     * what waits for its readiness; io_uring: what is in the kernel). True
     * if that is queued, to be handed over before the fd closes */
    bool (*fd_closing)(struct io_sched *io, int fd);
    /* optional: on the scheduler's thread, before its first turn (the ring
     * is made by rt_start's thread, and used only by the scheduler's) */
    void (*bind)(struct io_sched *io);
};

struct io_sched {
    const struct io_backend *be;
    struct sched *s;
    void *priv; /* the backend's */
    /* requests */
    struct ioreq **tab;
    uint32_t ntab, captab;
    _Atomic uint32_t ntab_pub; /* ntab, for other threads' sanity checks */
    uint32_t free_head;        /* index + 1 */
    uint32_t live;
    unsigned since_flush;
    /* holding a batch back (rt_opts.io_hold_us; io.c, rt__io_after_turn),
     * kept only by a backend that batches submissions (io_uring): since
     * when (0: not held); whether the batch being handed over was held; the
     * single-shot receives in the batch; how many of the receives handed
     * over lately the kernel completed at once, in the enter that took
     * them (in 256ths, a moving average); the bytes a receive brought from
     * a held batch and from one not held (moving averages), and whether
     * holding pays by them. Of every 8 runs of 64 hand-overs the last does
     * the other of what that says, so that both stay measured. */
    int64_t hold_since;
    bool handing_held;
    bool hold_pays;
    unsigned batch_recvs;
    unsigned recvs_at_once;
    uint32_t bytes_held, bytes_free;
    unsigned handovers;
    _Atomic uint64_t holds; /* batches held back (rt_stats.io_holds) */
    unsigned poll_tick;
    /* provided buffers: nbufs * bufsize bytes */
    char *bufs;
    size_t bufs_len;
    unsigned nbufs, bufsize;
    unsigned *freebufs; /* backends that pick buffers themselves (epoll) */
    unsigned nfree;
    unsigned bufs_out; /* buffers handed out by completions, not yet back */
    uint32_t buf_gen;  /* buffers given back to the backend, ever (wraps) */
    struct ioreq *paused;
    /* per fd number: its last rt_recv here was large (io.c, rt_recv) */
    uint32_t *fdreq; /* live requests here, by fd number (fd_closing's cancel) */
    unsigned nfdreq;
    uint8_t *hot;
    unsigned nhot;
    unsigned direct_run; /* transfers done straight in a row here (rt_recv, rt_send_all) */
    /* from other threads (lock) */
    pthread_mutex_t lock;
    unsigned *ret;
    unsigned nret, capret;
    struct io_cmd *cmds; /* requests from other threads (struct io_cmd) */
    unsigned ncmds, capcmds;
    _Atomic bool pending;          /* something in ret or cmds */
    _Atomic uint64_t syscalls;     /* made by the backend here (rt_stats.io_syscalls) */
    _Atomic uint64_t syscalls_any; /* and by other threads for it (wakes) */
    /* the placeholder that holds the number of a socket closed while
     * another scheduler may still act on it (close_holding): a pipe's read
     * end, its write end kept open, so that it never polls ready and
     * every socket operation on it fails */
    int dead_fd, dead_wfd;
};

/* Count system calls: the owner thread only (a relaxed store of load + 1
 * suffices, no other thread writes it), and io__count_any from any (its
 * own counter: an increment there would be lost under the owner's store). */
/* Add to a counter only this scheduler's thread writes (relaxed load and
 * store: others only read it). */
static inline void io__add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void io__count(struct io_sched *io, unsigned n)
{
    io__add(&io->syscalls, n);
}
static inline void io__count_any(struct io_sched *io)
{
    atomic_fetch_add_explicit(&io->syscalls_any, 1, memory_order_relaxed);
}

extern const struct io_backend rt__io_uring_backend;
extern const struct io_backend rt__io_epoll_backend;

/* io.c, for the backends */
/* An array indexed by fd number (arr, *n entries of `size` bytes), grown
 * and zeroed to hold `fd` if need be: the array, or NULL for no memory
 * (arr and *n are then as they were). */
void *io__fd_room(void *arr, unsigned *n, size_t size, int fd);
/* r's fd number was closed through the runtime after r started: the
 * number may name another file now, and r must not act on it */
bool io__fd_stale(const struct ioreq *r);
void io__complete(struct io_sched *io, struct ioreq *r, int res, bool more, int bid);
bool io__take_buf(struct io_sched *io, unsigned *bid); /* epoll: pick a free buffer */
void io__pause(struct io_sched *io, struct ioreq *r);  /* no buffer: wait for one */

/* io.c, for the scheduler */
int rt__io_init(struct sched *s, int kind, unsigned nbufs, unsigned bufsize);
void rt__io_fini(struct sched *s);
void rt__io_bind(struct sched *s); /* on the scheduler's thread, before its first turn */
int rt__io_kind(struct sched *s);  /* RT_IO_URING or RT_IO_EPOLL: what init chose */
void rt__io_poll(struct sched *s); /* between turns */
void rt__io_after_turn(struct sched *s, bool idle_next);
bool rt__io_has_work(struct sched *s);
void rt__io_wait(struct sched *s, int64_t deadline);
void rt__io_wake(struct sched *s);
uint64_t rt__io_syscalls(struct sched *s);
uint64_t rt__io_holds(struct sched *s);

/* A moving average `avg` moved 1/k of the way to `x`. */
static inline uint32_t io__avg(uint32_t avg, int64_t x, int64_t k)
{
    return (uint32_t)((int64_t)avg + (x - (int64_t)avg) / k);
}

/* A single-shot receive brought `res` bytes (> 0), from a held batch or not. */
static inline void io__recv_brought(struct io_sched *io, bool held, int res)
{
    uint32_t *avg = held ? &io->bytes_held : &io->bytes_free;
    *avg = io__avg(*avg, res, 16);
}
/* a process ends: cancel its requests everywhere; then close its fds */
void rt__io_proc_cancel(struct proc *p);
void rt__io_proc_close(struct proc *p);
bool rt__io_msg_release(rt_msg *m); /* msg.c: an I/O message's extra cleanup */
/* signal.c: p's rt_io_timeout for request `id` is up (on p's thread) */
void rt__io_timed_out(struct proc *p, rt_io_req id, uint64_t timer);

#endif
