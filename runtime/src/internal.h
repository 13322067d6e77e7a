/* internal.h: the runtime's private structures, shared by its .c files. */
#ifndef RT_INTERNAL_H
#define RT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rt/rt.h>

#include "ctx.h"
#include "mailbox.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define likely(x)                       __builtin_expect(!!(x), 1)
#define unlikely(x)                     __builtin_expect(!!(x), 0)

#if defined(__has_attribute)
#if __has_attribute(noipa)
#define RT_NOIPA __attribute__((noinline, noipa))
#endif
#endif
#ifndef RT_NOIPA
#define RT_NOIPA __attribute__((noinline))
#endif

struct sched;
struct stack;

/* ---- pool.c: small blocks from per-scheduler caches ---------------------- */

#define POOL_NCLASS       14
#define POOL_MAX_BLOCK    4096
#define POOL_CLASS_MALLOC 0xFFu /* bigger than POOL_MAX_BLOCK: plain malloc */

struct pool_cache {
    void *free; /* blocks linked through their first word */
    uint32_t n;
};

int rt__pool_init(void);
void rt__pool_fini(void);
unsigned rt__pool_class(size_t size);
void *rt__pool_alloc(unsigned cls);
void rt__pool_free(void *blk, unsigned cls);
/* the same, `s` being this thread's scheduler (NULL: none), looked up once
 * by a caller that needs it several times */
struct sched;
void *rt__pool_alloc_on(struct sched *s, unsigned cls);
void rt__pool_free_on(struct sched *s, void *blk, unsigned cls);
void rt__pool_flush(struct pool_cache *caches);

/* ---- stack.c: guarded, pooled stacks -------------------------------------- */

struct stack {
    void *lo;    /* lowest usable byte */
    size_t size; /* usable bytes */
    void *map;   /* the mapping, guard page included */
    size_t map_len;
    struct stack *next; /* in a pool */
    bool guarded;
};

int rt__stack_init(void);
struct stack *rt__stack_get(size_t size);
void rt__stack_put(struct stack *st);
void rt__stack_flush(struct sched *s);
size_t rt__stack_round(size_t size);
bool rt__stack_canary_ok(const struct stack *st);

/* ---- processes ------------------------------------------------------------- */

enum proc_kind { PROC_STACKFUL = 1, PROC_ACTOR = 2 };

/* Where a stackful process is when it gives its scheduler back. */
enum proc_state {
    PS_RUNNING = 0,
    PS_YIELD, /* runnable again at once */
    PS_WAIT,  /* blocked until a message or a wake-up */
    PS_EXIT,  /* finished: tear down */
};

/* Signal kinds (rt_msg.rt__kind). 0 is a plain message. */
enum sig_kind {
    SIG_EXIT = 1, /* data: rt_exit_info; rt__aux: SIGF_LINK if from a link */
    SIG_LINK,
    SIG_UNLINK,
    SIG_MONITOR,    /* rt__aux: the reference */
    SIG_DEMONITOR,  /* rt__aux: the reference */
    SIG_DOWN,       /* data: rt_down_info; delivered if the ref is still wanted */
    SIG_WAKE,       /* internal: wake a waiting process (never delivered) */
    SIG_REPLY,      /* rt__aux: the call's reference; delivered if still awaited */
    SIG_IO_TIMEOUT, /* internal: rt_io_timeout's time is up for request rt__aux (never delivered) */
};
#define SIGF_LINK 1u

struct monitor {
    rt_ref ref;
    rt_pid pid;
};

/* What few processes need: links, monitors. Allocated on first use. */
struct proc_ext {
    rt_pid *links;
    uint32_t nlinks, caplinks;
    struct monitor *mons; /* processes this one monitors */
    uint32_t nmons, capmons;
    struct monitor *watchers; /* processes monitoring this one */
    uint32_t nwatchers, capwatchers;
    int *fds; /* owned: closed when the process ends (io.c) */
    uint32_t nfds, capfds;
    /* per scheduler: its requests there not yet ended (io.c: its fds are
     * closed only once none of them can act on a reused fd number) */
    _Atomic uint32_t *live;
    struct at_exit *at_exit; /* rt_at_exit handlers, newest first */
};

struct at_exit {
    struct at_exit *next;
    void (*fn)(void *);
    void *arg;
};

struct proc {
    struct mq mq;            /* mailbox: any thread pushes, the process pops */
    struct rt__node rq_link; /* in an inject or global run queue */
    uint8_t kind;            /* enum proc_kind */
    uint8_t state;           /* enum proc_state (stackful) */
    bool trap_exits;
    bool exiting; /* exit decided; acted on at the next safe point */
    bool joinable;
    bool msg_taken; /* actor: handle forwarded the current message */
    bool did_io;    /* has started I/O: cancel its requests when it ends */
    /* operations in flight that use the process's own memory (a send from,
     * or a receive into, its stack, state or buffers): each holds a
     * reference, and the stack and rt_at_exit handlers wait for them */
    _Atomic uint32_t io_pins;
    _Atomic bool named; /* in the registry (registry lock) */
    uint32_t idx;       /* slot */
    uint32_t gen;
    int exit_reason;
    uint32_t turn;               /* messages handled this turn */
    uint32_t pool_class;         /* of this struct */
    struct sched *_Atomic sched; /* last scheduler it ran on (its home) */
    struct proc_ext *ext;
    union {
        struct {
            const rt_actor_ops *ops;
            rt_msg *cur;
            /* state_size bytes of state follow the struct */
        } a;
        struct {
            struct ctx ctx;
            struct stack *stack;
            void (*fn)(void *);
            void *arg;
            struct rt__node *priv_head; /* drained, unmatched messages, oldest first */
            struct rt__node *priv_tail;
            uint64_t wake_timer; /* armed by a receive with a timeout */
            rt_ref call_ref;     /* the rt_call in progress, 0 if none */
        } s;
    } u;
};

/* A callback actor's block ends after its part of the union (the stackful
 * part is five times bigger), then its state: a skynet actor takes 160
 * bytes instead of 256. Nothing reads u.s of an actor. */
#define PROC_ACTOR_HDR                                                                             \
    ((offsetof(struct proc, u) + sizeof(((struct proc *)0)->u.a) + 15) & ~(size_t)15)

static inline void *actor_state(struct proc *p)
{
    return (char *)p + PROC_ACTOR_HDR;
}

static inline rt_pid proc_pid(const struct proc *p)
{
    return (rt_pid){((uint64_t)p->gen << 32) | p->idx};
}

/* proc.c */
struct proc *rt__proc_get(rt_pid pid); /* takes a reference, or NULL */
void rt__proc_put(struct proc *p);     /* drops it */
void rt__proc_hold(struct proc *p);    /* one more reference to a process the caller holds */
struct proc *rt__proc_current(void);   /* the process running on this thread */
void rt__proc_deliver(struct proc *p, rt_msg *m); /* push and make runnable */
int rt__send_msg(rt_pid to, rt_msg *m);           /* deliver or -ESRCH */
void rt__proc_terminate(struct proc *p);          /* on the scheduler stack */
void rt__proc_set_exit(struct proc *p, int reason);
int rt__proc_table_init(void);
void rt__proc_table_fini(void);
void rt__proc_sched_idle(struct sched *s, bool stopping); /* credits (and slots) back */
/* A send from a scheduler's announced turn (epoch.c says why that is
 * safe) without a reference on the receiver: -ESRCH, or 0 with `m`
 * delivered. */
int rt__proc_send_fast(rt_pid to, rt_msg *m);
void rt__proc_reclaim(struct proc *p); /* an ended process's memory, at last */

/* epoch.c */
void rt__epoch_init(void);
void rt__epoch_fini(void);
void rt__epoch_enter(struct sched *s); /* before each turn */
void rt__epoch_idle(struct sched *s);  /* no turns for now */
void rt__epoch_quiet(struct sched *s); /* between two runtime calls of a turn */
void rt__epoch_retire(struct proc *p);
void rt__proc_kill_all(int reason);

/* signal.c */
bool rt__signal_filter(struct proc *p, rt_msg *m); /* true: deliver m to the user */
void rt__signal_notify_exit(struct proc *p);
void rt__signal_drain_dead(rt_msg *m, rt_pid dead);
rt_msg *rt__signal_new(uint32_t kind, uint32_t tag, rt_pid from, size_t size, uint64_t aux);
void rt__ext_free(struct proc_ext *x);
struct proc_ext *rt__ext_of(struct proc *p);
void rt__run_at_exit(struct proc *p);

/* msg.c */
rt_msg *rt__msg_new(uint32_t tag, size_t size);
void rt__msg_free(rt_msg *m);
int rt__stackful_wait(struct proc *p, int64_t deadline_ns, uint64_t *timer);

/* registry.c */
int rt__registry_init(void);
void rt__registry_fini(void);
void rt__registry_remove_pid(struct proc *p);

/* timer.c */
struct timer_heap;
int rt__timer_init(struct sched *s);
void rt__timer_fini(struct sched *s);
int64_t rt__timer_run(struct sched *s, int64_t now_ns); /* fires due; returns next deadline or -1 */
int rt__timer_wake_at(rt_pid pid, int64_t deadline_ns, uint64_t *out);
/* a timer on this thread's scheduler that delivers `m` (a signal) to pid at
 * deadline_ns: 0 (the timer takes m) or -ENOMEM */
int rt__timer_signal_at(rt_pid pid, int64_t deadline_ns, rt_msg *m, uint64_t *out);
int64_t rt__now_ns(void);

/* ---- schedulers ------------------------------------------------------------ */

#define RQ_SIZE 256u

/* ended processes whose memory waits for an epoch (epoch.c), oldest
 * first, through their rq_link */
struct limbo {
    struct rt__node *head, *tail;
    uint32_t n;
};

struct sched {
    unsigned idx;
    pthread_t thread;
    struct ctx ctx;   /* the scheduler loop's own context */
    struct proc *cur; /* running process */
    rt_pid cur_pid;   /* its pid: rt_self without a look at its struct, whose
                       * first line other threads write (mailbox pushes) */
    /* local run queue (Go's design): owner puts at tail; owner and thieves
     * take from head with a CAS */
    _Atomic uint32_t rq_head;
    _Atomic uint32_t rq_tail;
    struct proc *_Atomic rq[RQ_SIZE];
    struct mq inject; /* processes made runnable by other threads */
    /* owner only: the process the running one made runnable, run next (Go's
     * runnext), and how many turns in a row went to such processes */
    struct proc *next;
    uint32_t next_streak;
    /* a stackful process that switched straight to another (sched.c):
     * what the scheduler does after a turn (mark it waiting, or requeue
     * it) is done by whichever context runs next here; and how many such
     * switches in a row since the scheduler's loop last ran */
    struct proc *handoff;
    uint32_t direct;
    /* parking (park.c) */
    _Atomic uint32_t park_seq;
    _Atomic bool sleeping;
    /* timers (timer.c) */
    pthread_mutex_t tlock;
    struct timer_heap *timers;
    _Atomic int64_t next_deadline; /* earliest timer, INT64_MAX if none */
    struct io_sched *io;           /* io.c */
    /* caches */
    struct pool_cache pool[POOL_NCLASS];
    struct stack *stacks;
    struct stack *dead_stacks; /* put while the runtime stops: unmapped after the join */
    _Atomic uint32_t nstacks;  /* owner writes; rt_stats_get reads (relaxed) */
    uint32_t tick;
    /* process slots freed here, reused here first (proc.c): a list through
     * the slots' next_free, as slot index + 1 (0: none) */
    uint32_t slot_head, slot_n;
    /* rt__rt.procs_live counts live processes plus every scheduler's
     * credits: a spawn here spends one, an end here earns one, and the
     * shared counter moves a batch at a time (owner writes; relaxed reads
     * by rt_stats_get) */
    _Atomic int64_t credits;
    /* epoch.c: the epoch announced before this turn, 0 while idle; and the
     * processes ended here whose memory waits */
    _Atomic uint64_t ep_local;
    struct limbo limbo;
    uint32_t ep_calls; /* spawns and sends in this thread (rt__epoch_quiet) */
    /* counters (written by the owner only; relaxed atomics for readers) */
    _Atomic uint64_t n_alloc;
    _Atomic uint64_t n_free;
    _Atomic uint64_t n_parks;
    _Atomic uint64_t n_steals;
    _Atomic uint64_t n_spawned;
} __attribute__((aligned(64)));

/* The running process of scheduler `s` (NULL: none). */
static inline void sched_set_cur(struct sched *s, struct proc *p)
{
    s->cur = p;
    s->cur_pid = p ? proc_pid(p) : RT_PID_NONE;
}

struct io_sched;
struct sched *rt__sched_self(void);
/* this thread's scheduler: read only in RT_NOIPA functions (a stackful
 * process may resume on another thread; see rt__sched_self) */
extern _Thread_local struct sched *rt__tls_sched __attribute__((tls_model("initial-exec")));
void rt__sched_ready(struct proc *p);                /* p's scheduled flag was just taken */
void rt__sched_place(struct proc *p, int sched_opt); /* first run of a new process */
void rt__sched_switch_out(struct proc *p, enum proc_state st); /* stackful: give the CPU back */
void rt__sched_switched_in(void); /* a stackful process's first code (handoffs) */
int rt__sched_start(unsigned n);
void rt__sched_stop(void);
bool rt__sched_has_work(struct sched *s);

/* fault.c: stack overflow of a stackful process */
int rt__fault_install(void);
void rt__fault_uninstall(void);
void *rt__fault_thread_init(void);
void rt__fault_thread_fini(void *mem);

/* park.c: the parking contract (io_uring replaces the futex later) */
void rt__park(struct sched *s, int64_t deadline_ns);
void rt__unpark(struct sched *s);

/* ---- the runtime ----------------------------------------------------------- */

enum rt_state { RT_STOPPED, RT_RUNNING, RT_STOPPING };

struct runtime {
    _Atomic int state; /* enum rt_state */
    unsigned nsched;
    size_t stack_size;
    unsigned batch;
    int64_t spin_ns;
    int64_t hold_ns;
    int io_kind;
    unsigned io_bufs, io_buf_size;
    struct sched *sched;
    _Atomic uint64_t procs_live;
    _Atomic uint64_t msgs_alloc_ext; /* allocations by non-scheduler threads */
    _Atomic uint64_t msgs_free_ext;
    _Atomic uint64_t spawned_ext;
    _Atomic uint64_t timers_live;
    _Atomic uint64_t stacks_unguarded;
    _Atomic uint64_t next_ref;
    _Atomic unsigned rr; /* round robin for spawns from outside */
    _Atomic int n_spinning;
    _Atomic int n_parked;
    _Atomic bool shutdown; /* schedulers leave their loops */
    rt_pid root_sup;       /* started on first use (sup.c, under its lock) */
    /* global run queue, the local rings' overflow (sched.c): a ring of
     * pointers that grows, and past it, when it cannot grow (out of
     * memory), a list through the processes' rq_link */
    pthread_mutex_t gq_lock;
    struct proc **gq_ring;
    uint32_t gq_cap, gq_first, gq_n; /* capacity (a power of 2), oldest, count */
    struct rt__node *gq_head, *gq_tail;
    _Atomic uint32_t gq_len; /* both; read without the lock as a hint */
    /* epoch.c: the global epoch, and ended processes whose last
     * reference a thread that is not a scheduler dropped */
    _Atomic uint64_t epoch;
    pthread_mutex_t limbo_lock;
    struct limbo limbo;
    _Atomic uint32_t limbo_n;
    /* idle waiters (rt_wait_idle) and joiners (rt_join) */
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;
    struct joinent *joins;
};

extern struct runtime rt__rt;

static inline bool rt__running(void)
{
    /* acquire: see the runtime's structures set up by rt_start */
    return atomic_load_explicit(&rt__rt.state, memory_order_acquire) != RT_STOPPED;
}

int rt__sup_stop_root(int grace_ms);
int rt__join_register(rt_pid pid);
void rt__join_record(rt_pid pid, int reason);
bool rt__proc_alive(rt_pid pid);
int rt__link_add(struct proc *p, rt_pid other);
void rt__idle_check(void);

#endif
