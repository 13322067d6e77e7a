/* proc.c: the process table, spawning, and the end of a process.
 *
 * A pid is (generation << 32 | slot). Each slot's `ctl` word holds the
 * generation, an ALIVE bit and a count of references. Looking a pid up takes
 * a reference with a CAS that also checks generation and ALIVE, so a stale
 * pid fails and a live one cannot be freed under the caller. The process
 * itself holds one reference while alive; whoever drops the last reference
 * after ALIVE is cleared frees the process (drains its mailbox, recycles the
 * slot with the next generation).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define CHUNK_BITS 16u
#define CHUNK      (1u << CHUNK_BITS)
#define MAX_CHUNKS 1024u /* 64M processes */

#define CTL_ALIVE (1ull << 31)
#define CTL_REFS  0x7FFFFFFFull

struct slot {
    _Atomic uint64_t ctl;
    struct proc *_Atomic proc;
    /* free: the next free slot of its batch (index + 1, 0 ends it), and,
     * in a batch's first slot, the next batch of the global list */
    _Atomic uint32_t next_free;
    _Atomic uint32_t next_batch;
};

static struct slot *_Atomic chunks[MAX_CHUNKS];
static _Atomic uint32_t nslots; /* slots ever handed out */
/* free slots not held by a scheduler: a stack of batches, as
 * tag << 32 | (first slot + 1), the low half 0 when empty; the tag changes
 * with every update, so a pop that read a head since popped and pushed
 * again fails (ABA) */
static _Atomic uint64_t free_head;
static pthread_mutex_t grow_lock = PTHREAD_MUTEX_INITIALIZER;
/* the actor whose init runs on a thread that is not a scheduler (see
 * tls_sched in sched.c for the TLS model) */
static _Thread_local struct proc *tls_cur __attribute__((tls_model("initial-exec")));

static inline struct slot *slot_at(uint32_t idx)
{
    /* acquire: the chunk's zeroed contents are visible */
    struct slot *c = atomic_load_explicit(&chunks[idx >> CHUNK_BITS], memory_order_acquire);
    return &c[idx & (CHUNK - 1)];
}

int rt__proc_table_init(void)
{
    atomic_store_explicit(&nslots, 0, memory_order_relaxed);
    atomic_store_explicit(&free_head, 0, memory_order_relaxed);
    return 0;
}

void rt__proc_table_fini(void)
{
    for (unsigned i = 0; i < MAX_CHUNKS; i++) {
        struct slot *c = atomic_exchange_explicit(&chunks[i], NULL, memory_order_relaxed);
        free(c);
    }
}

#define SLOT_BATCH 256u /* a scheduler keeps at most this many freed slots */

/* Pop a batch of free slots from the global stack: its first slot, or
 * false if there is none. */
static bool batch_pop(uint32_t *first)
{
    /* acquire: the batch's links, written before its push, are visible */
    uint64_t head = atomic_load_explicit(&free_head, memory_order_acquire);
    while ((uint32_t)head != 0) {
        uint32_t idx = (uint32_t)head - 1;
        uint32_t next = atomic_load_explicit(&slot_at(idx)->next_batch, memory_order_relaxed);
        uint64_t nh = (((head >> 32) + 1) << 32) | next;
        if (atomic_compare_exchange_weak_explicit(&free_head, &head, nh, memory_order_acquire,
                                                  memory_order_acquire)) {
            *first = idx;
            return true;
        }
    }
    return false;
}

/* Push a batch: slots linked through next_free from `first`, the last with
 * 0. */
static void batch_push(uint32_t first)
{
    struct slot *s = slot_at(first);
    uint64_t head = atomic_load_explicit(&free_head, memory_order_relaxed);
    for (;;) {
        atomic_store_explicit(&s->next_batch, (uint32_t)head, memory_order_relaxed);
        uint64_t nh = (((head >> 32) + 1) << 32) | (first + 1);
        /* release: the batch's links and its slots' new generations are
         * visible to the thread that pops it */
        if (atomic_compare_exchange_weak_explicit(&free_head, &head, nh, memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
}

/* A free slot: a scheduler takes one it freed itself, or a batch others
 * handed back, before it makes a new one; another thread takes a batch and
 * hands back the rest. A single list shared by all, with its CAS and the
 * miss on the popped slot's link, was a quarter of the spawning
 * scheduler's time in skynet on two schedulers. */
static int slot_alloc(uint32_t *idx_out)
{
    struct sched *cs = rt__sched_self();
    uint32_t idx;
    if (cs) {
        if (cs->slot_head == 0 && batch_pop(&idx)) {
            cs->slot_head = idx + 1;
            cs->slot_n = SLOT_BATCH; /* at most; only bounds the next spill */
        }
        if (cs->slot_head) {
            idx = cs->slot_head - 1;
            cs->slot_head = atomic_load_explicit(&slot_at(idx)->next_free, memory_order_relaxed);
            if (cs->slot_n)
                cs->slot_n--;
            *idx_out = idx;
            return 0;
        }
    } else if (batch_pop(&idx)) {
        uint32_t rest = atomic_load_explicit(&slot_at(idx)->next_free, memory_order_relaxed);
        if (rest)
            batch_push(rest - 1);
        *idx_out = idx;
        return 0;
    }
    /* relaxed: only uniqueness of the index matters */
    idx = atomic_fetch_add_explicit(&nslots, 1, memory_order_relaxed);
    if (idx >= MAX_CHUNKS * CHUNK) {
        atomic_fetch_sub_explicit(&nslots, 1, memory_order_relaxed);
        return -EAGAIN;
    }
    unsigned ci = idx >> CHUNK_BITS;
    if (atomic_load_explicit(&chunks[ci], memory_order_acquire) == NULL) {
        pthread_mutex_lock(&grow_lock);
        if (atomic_load_explicit(&chunks[ci], memory_order_relaxed) == NULL) {
            struct slot *c = calloc(CHUNK, sizeof *c);
            if (c == NULL) {
                pthread_mutex_unlock(&grow_lock);
                return -ENOMEM; /* the index is lost; harmless */
            }
            for (unsigned i = 0; i < CHUNK; i++)
                atomic_store_explicit(&c[i].ctl, 1ull << 32, memory_order_relaxed);
            /* release: publish the initialised chunk */
            atomic_store_explicit(&chunks[ci], c, memory_order_release);
        }
        pthread_mutex_unlock(&grow_lock);
    }
    *idx_out = idx;
    return 0;
}

/* A slot whose process is gone: kept by the scheduler freeing it, which
 * hands its list back as a batch once it holds SLOT_BATCH; from another
 * thread, a batch of one. */
static void slot_free(uint32_t idx)
{
    struct sched *cs = rt__sched_self();
    struct slot *s = slot_at(idx);
    if (cs == NULL) {
        atomic_store_explicit(&s->next_free, 0, memory_order_relaxed);
        batch_push(idx);
        return;
    }
    if (cs->slot_n >= SLOT_BATCH) {
        batch_push(cs->slot_head - 1);
        cs->slot_head = 0;
        cs->slot_n = 0;
    }
    atomic_store_explicit(&s->next_free, cs->slot_head, memory_order_relaxed);
    cs->slot_head = idx + 1;
    cs->slot_n++;
}

/* procs_live: a spawn on a scheduler spends one of its credits, taking a
 * batch from the shared count when it has none; an end earns one back, and
 * the scheduler returns what it holds past two batches, and everything
 * when it goes idle or stops (rt__proc_sched_idle). So the shared count is
 * the live processes plus the credits held, and reaches 0 only when no
 * process is left and no credit held. A shared counter moved on every
 * spawn and every end was a cache line the schedulers passed back and
 * forth. */
#define CREDITS 64

static void live_inc(void)
{
    struct sched *cs = rt__sched_self();
    if (cs == NULL) {
        /* relaxed: counts only */
        atomic_fetch_add_explicit(&rt__rt.procs_live, 1, memory_order_relaxed);
        return;
    }
    int64_t c = atomic_load_explicit(&cs->credits, memory_order_relaxed);
    if (c == 0) {
        atomic_fetch_add_explicit(&rt__rt.procs_live, CREDITS, memory_order_relaxed);
        c = CREDITS;
    }
    atomic_store_explicit(&cs->credits, c - 1, memory_order_relaxed);
}

static void live_sub(uint64_t n)
{
    /* acq_rel: the last end is seen by rt_wait_idle after every other */
    if (atomic_fetch_sub_explicit(&rt__rt.procs_live, n, memory_order_acq_rel) == n)
        rt__idle_check();
}

static void live_dec(void)
{
    struct sched *cs = rt__sched_self();
    if (cs == NULL) {
        live_sub(1);
        return;
    }
    int64_t c = atomic_load_explicit(&cs->credits, memory_order_relaxed) + 1;
    if (c > 2 * CREDITS) {
        live_sub((uint64_t)(c - CREDITS)); /* keeps CREDITS: cannot reach 0 */
        c = CREDITS;
    }
    atomic_store_explicit(&cs->credits, c, memory_order_relaxed);
}

/* A scheduler with nothing to run, or stopping (`stopping`: its slots go
 * back too), gives its credits back, so that the count reaches 0 once the
 * last process is gone. */
void rt__proc_sched_idle(struct sched *cs, bool stopping)
{
    if (stopping && cs->slot_head) {
        batch_push(cs->slot_head - 1);
        cs->slot_head = 0;
        cs->slot_n = 0;
    }
    int64_t c = atomic_load_explicit(&cs->credits, memory_order_relaxed);
    if (c == 0)
        return;
    atomic_store_explicit(&cs->credits, 0, memory_order_relaxed);
    live_sub((uint64_t)c);
}

/* The slot a pid names (its generation in *gen), or NULL if it names none
 * that was ever handed out. */
static struct slot *slot_of(rt_pid pid, uint32_t *gen)
{
    uint32_t idx = (uint32_t)pid.id;
    *gen = (uint32_t)(pid.id >> 32);
    if (*gen == 0 || idx >= atomic_load_explicit(&nslots, memory_order_acquire) ||
        atomic_load_explicit(&chunks[idx >> CHUNK_BITS], memory_order_acquire) == NULL)
        return NULL;
    return slot_at(idx);
}

struct proc *rt__proc_get(rt_pid pid)
{
    uint32_t gen;
    struct slot *s = slot_of(pid, &gen);
    if (s == NULL)
        return NULL;
    uint64_t c = atomic_load_explicit(&s->ctl, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 32) != gen || !(c & CTL_ALIVE))
            return NULL;
        /* acquire: the process's fields, published with the release store of
         * ctl in publish(), are visible once we hold the reference */
        if (atomic_compare_exchange_weak_explicit(&s->ctl, &c, c + 1, memory_order_acquire,
                                                  memory_order_acquire))
            return atomic_load_explicit(&s->proc, memory_order_relaxed);
    }
}

/* The end of a process once its last reference is gone: what it left
 * runs and goes, and the count of live processes drops. Its memory (the
 * mailbox a send that read it as alive may still push to, and the slot)
 * waits in limbo for an epoch (epoch.c), then rt__proc_reclaim. */
/* Whatever reached the mailbox of the ended `p`: signals answered, all
 * freed (waiting out a push still under way). */
static void drain_dead(struct proc *p)
{
    rt_pid pid = proc_pid(p);
    struct rt__node *n;
    while ((n = mq_pop(&p->mq)) != NULL || !mq_empty(&p->mq)) {
        if (n)
            rt__signal_drain_dead(container_of(n, rt_msg, rt__link), pid);
    }
}

static void proc_free(struct proc *p)
{
    drain_dead(p);
    /* what rt__proc_terminate left for the last in-flight operation that
     * used the process's memory (io_pins): its handlers, then its stack */
    rt__run_at_exit(p);
    if (p->kind == PROC_STACKFUL && p->u.s.stack) {
        rt__stack_put(p->u.s.stack);
        p->u.s.stack = NULL;
#ifdef RT_TSAN
        __tsan_destroy_fiber(p->u.s.ctx.tsan_fiber);
#endif
    }
    rt__ext_free(p->ext);
    p->ext = NULL;
    live_dec();
    /* the caller dropped the last reference with a seq_cst RMW of the slot
     * (after ALIVE was cleared, maybe on another thread): epoch.c needs
     * that ahead of the retirement's epoch load */
    rt__epoch_retire(p);
}

void rt__proc_reclaim(struct proc *p)
{
    drain_dead(p); /* what senders that read it as alive pushed after its end */
    uint32_t idx = p->idx, gen = p->gen + 1;
    if (gen == 0)
        gen = 1;
    struct slot *s = slot_at(idx);
    atomic_store_explicit(&s->proc, NULL, memory_order_relaxed);
    /* relaxed: published by the release CAS in slot_free */
    atomic_store_explicit(&s->ctl, (uint64_t)gen << 32, memory_order_relaxed);
    unsigned cls = p->pool_class;
    if (cls == POOL_CLASS_MALLOC)
        free(p);
    else
        rt__pool_free(p, cls);
    slot_free(idx);
}

void rt__proc_hold(struct proc *p)
{
    atomic_fetch_add_explicit(&slot_at(p->idx)->ctl, 1, memory_order_relaxed);
}

void rt__proc_put(struct proc *p)
{
    struct slot *s = slot_at(p->idx);
    /* acq_rel: the last holder sees every earlier holder's pushes */
    /* seq_cst: the last one retires the process (epoch.c); the same
     * instruction as acq_rel on x86 */
    uint64_t c = atomic_fetch_sub_explicit(&s->ctl, 1, memory_order_seq_cst) - 1;
    if ((c & (CTL_ALIVE | CTL_REFS)) == 0)
        proc_free(p);
}

bool rt__proc_alive(rt_pid pid)
{
    uint32_t gen;
    struct slot *s = slot_of(pid, &gen);
    if (s == NULL)
        return false;
    /* seq_cst: rt_register relies on it (see there) */
    uint64_t c = atomic_load_explicit(&s->ctl, memory_order_seq_cst);
    return (uint32_t)(c >> 32) == gen && (c & CTL_ALIVE);
}

RT_NOIPA struct proc *rt__proc_current(void)
{
    struct sched *s = rt__tls_sched; /* RT_NOIPA: read afresh each call */
    return s ? s->cur : tls_cur;
}

static void set_current(struct proc *p)
{
    struct sched *s = rt__sched_self();
    if (s)
        sched_set_cur(s, p);
    else
        tls_cur = p;
}

void rt__proc_deliver(struct proc *p, rt_msg *m)
{
    if (mq_push(&p->mq, &m->rt__link))
        rt__sched_ready(p);
}

int rt__proc_send_fast(rt_pid to, rt_msg *m)
{
    uint32_t gen;
    struct slot *s = slot_of(to, &gen);
    if (s == NULL)
        return -ESRCH;
    /* acquire: the process's fields, published with the release store of
     * ctl in publish(); its memory stays until this turn is over */
    uint64_t c = atomic_load_explicit(&s->ctl, memory_order_acquire);
    if ((uint32_t)(c >> 32) != gen || !(c & CTL_ALIVE))
        return -ESRCH;
    rt__proc_deliver(atomic_load_explicit(&s->proc, memory_order_relaxed), m);
    return 0;
}

int rt__send_msg(rt_pid to, rt_msg *m)
{
    struct proc *p = rt__proc_get(to);
    if (p == NULL)
        return -ESRCH;
    rt__proc_deliver(p, m);
    rt__proc_put(p);
    return 0;
}

void rt__proc_set_exit(struct proc *p, int reason)
{
    if (!p->exiting) {
        p->exiting = true;
        p->exit_reason = reason;
    }
}

static struct proc *proc_new(size_t size, uint8_t kind, const rt_spawn_opts *o)
{
    unsigned cls = rt__pool_class(size);
    struct proc *p = cls == POOL_CLASS_MALLOC ? malloc(size) : rt__pool_alloc(cls);
    if (p == NULL)
        return NULL;
    memset(p, 0, size);
    p->pool_class = cls;
    p->kind = kind;
    mq_init(&p->mq);
    if (o) {
        p->trap_exits = o->trap_exits;
        p->joinable = o->joinable;
    }
    return p;
}

static void proc_discard(struct proc *p)
{
    unsigned cls = p->pool_class;
    if (cls == POOL_CLASS_MALLOC)
        free(p);
    else
        rt__pool_free(p, cls);
}

/* Give `p` a slot and make its pid valid (one reference: its own). */
static int publish(struct proc *p)
{
    uint32_t idx;
    int rc = slot_alloc(&idx);
    if (rc < 0)
        return rc;
    struct slot *s = slot_at(idx);
    p->idx = idx;
    p->gen = (uint32_t)(atomic_load_explicit(&s->ctl, memory_order_relaxed) >> 32);
    atomic_store_explicit(&s->proc, p, memory_order_relaxed);
    live_inc();
    struct sched *cs = rt__sched_self();
    if (cs)
        atomic_store_explicit(&cs->n_spawned,
                              atomic_load_explicit(&cs->n_spawned, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&rt__rt.spawned_ext, 1, memory_order_relaxed);
    /* release: the process's fields are visible to whoever looks it up */
    atomic_store_explicit(&s->ctl, ((uint64_t)p->gen << 32) | CTL_ALIVE | 1, memory_order_release);
    return 0;
}

static int check_spawn(const rt_spawn_opts *o, struct proc **parent)
{
    struct sched *cs = rt__sched_self();
    if (cs)
        rt__epoch_quiet(cs); /* a turn that spawns without end (epoch.c) */
    int st = atomic_load_explicit(&rt__rt.state, memory_order_acquire);
    if (st == RT_STOPPED)
        return RT_ENORUNTIME;
    if (st == RT_STOPPING)
        return RT_ESTOPPING;
    *parent = rt__proc_current();
    if (o && o->link && *parent == NULL)
        return RT_ENOTPROC;
    if (o && (o->sched < 0 || (unsigned)o->sched > rt__rt.nsched))
        return -EINVAL;
    return 0;
}

/* Links and joins, then the first run. */
static int start(struct proc *p, struct proc *parent, const rt_spawn_opts *o, rt_pid *out)
{
    rt_pid pid = proc_pid(p);
    if (o && o->link) {
        if (rt__link_add(parent, pid) < 0 || rt__link_add(p, proc_pid(parent)) < 0)
            return -ENOMEM;
    }
    if (p->joinable && rt__join_register(pid) < 0)
        p->joinable = false; /* out of memory: rt_join will say -ESRCH */
    if (out)
        *out = pid;
    rt__sched_place(p, o ? o->sched : 0);
    return 0;
}

static void stackful_main(void *arg)
{
    struct proc *p = arg;
    ctx_started();
    rt__sched_switched_in();
    p->u.s.fn(p->u.s.arg);
    rt__proc_set_exit(p, RT_EXIT_NORMAL);
    rt__sched_switch_out(p, PS_EXIT);
    __builtin_unreachable();
}

RT_API int rt_spawn(void (*fn)(void *), void *arg, const rt_spawn_opts *o, rt_pid *out)
{
    struct proc *parent;
    int rc = check_spawn(o, &parent);
    if (rc < 0)
        return rc;
    if (fn == NULL)
        return -EINVAL;
    size_t ss = o && o->stack_size ? o->stack_size : rt__rt.stack_size;
    if (ss < RT_MIN_STACK_SIZE || ss > RT_MAX_STACK_SIZE)
        return -EINVAL;
    ss = rt__stack_round(ss);
    struct proc *p = proc_new(sizeof *p, PROC_STACKFUL, o);
    if (p == NULL)
        return -ENOMEM;
    struct stack *st = rt__stack_get(ss);
    if (st == NULL) {
        proc_discard(p);
        return -ENOMEM;
    }
    p->u.s.stack = st;
    p->u.s.fn = fn;
    p->u.s.arg = arg;
    ctx_init(&p->u.s.ctx, st->lo, st->size, stackful_main, p);
#ifdef RT_TSAN
    p->u.s.ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
    rc = publish(p);
    if (rc < 0) {
#ifdef RT_TSAN
        __tsan_destroy_fiber(p->u.s.ctx.tsan_fiber);
#endif
        rt__stack_put(st);
        proc_discard(p);
        return rc;
    }
    return start(p, parent, o, out);
}

RT_API int rt_spawn_actor(const rt_actor_ops *ops, void *arg, const rt_spawn_opts *o, rt_pid *out)
{
    struct proc *parent;
    int rc = check_spawn(o, &parent);
    if (rc < 0)
        return rc;
    if (ops == NULL || ops->handle == NULL || ops->state_size > RT_MSG_MAX_SIZE)
        return -EINVAL;
    size_t size = PROC_ACTOR_HDR + ops->state_size;
    struct proc *p = proc_new(size, PROC_ACTOR, o);
    if (p == NULL)
        return -ENOMEM;
    p->u.a.ops = ops;
    rc = publish(p);
    if (rc < 0) {
        proc_discard(p);
        return rc;
    }
    if (ops->init) {
        /* init runs here, as the new actor. Its mailbox is not marked
         * empty, so a message that arrives meanwhile (init may hand its pid
         * out) queues without scheduling it: start() does that. */
        struct proc *saved = rt__proc_current();
        set_current(p);
        rc = ops->init(actor_state(p), arg);
        set_current(saved);
        if (rc != 0) {
            /* never existed: no links, no monitors fire; drop our reference */
            p->exiting = true;
            struct slot *s = slot_at(p->idx);
            uint64_t c = atomic_fetch_sub_explicit(&s->ctl, CTL_ALIVE + 1, memory_order_seq_cst);
            if (((c - CTL_ALIVE - 1) & (CTL_ALIVE | CTL_REFS)) == 0)
                proc_free(p);
            return rc;
        }
    }
    return start(p, parent, o, out);
}

/* The end of a process, on its scheduler's own stack. */
void rt__proc_terminate(struct proc *p)
{
    int reason = p->exit_reason;
    rt_pid pid = proc_pid(p);
    if (p->kind == PROC_ACTOR && p->u.a.ops->terminate)
        p->u.a.ops->terminate(actor_state(p), reason);
    /* cancel its I/O first: an operation still using its memory (io_pins)
     * keeps the stack, and delays the rt_at_exit handlers, until the kernel
     * is done with it (proc_free, when its reference goes) */
    rt__io_proc_cancel(p);
    bool pinned = atomic_load_explicit(&p->io_pins, memory_order_acquire) != 0;
    if (!pinned)
        rt__run_at_exit(p);
    struct slot *s = slot_at(p->idx);
    /* from here on lookups fail; we keep our own reference. seq_cst with
     * the load of `named`: the Dekker pair described in rt_register */
    atomic_fetch_sub_explicit(&s->ctl, CTL_ALIVE, memory_order_seq_cst);
    if (atomic_load_explicit(&p->named, memory_order_seq_cst))
        rt__registry_remove_pid(p);
    /* its fds before its monitors hear of its end (unless requests of it
     * on another scheduler make that one close them, a moment later) */
    rt__io_proc_close(p);
    rt__signal_notify_exit(p);
    if (p->joinable)
        rt__join_record(pid, reason);
    if (p->kind == PROC_STACKFUL) {
        if (p->u.s.wake_timer)
            rt_cancel_timer(p->u.s.wake_timer);
        struct rt__node *n = p->u.s.priv_head;
        while (n) {
            struct rt__node *next = atomic_load_explicit(&n->next, memory_order_relaxed);
            rt__msg_free(container_of(n, rt_msg, rt__link));
            n = next;
        }
        p->u.s.priv_head = p->u.s.priv_tail = NULL;
        if (!pinned) {
            rt__stack_put(p->u.s.stack);
            p->u.s.stack = NULL;
#ifdef RT_TSAN
            __tsan_destroy_fiber(p->u.s.ctx.tsan_fiber);
#endif
        }
    }
    /* Our reference is the last one left (seen with acquire, so whoever
     * dropped theirs is done with the process): nobody can take another
     * (lookups fail without ALIVE, and only a holder holds again), so it
     * goes without a second locked operation on the slot (a third of
     * this function's time in skynet). The seq_cst clearing of ALIVE
     * above stands ahead of the retirement's epoch load, as epoch.c needs */
    uint64_t c = atomic_load_explicit(&s->ctl, memory_order_acquire);
    if ((c & (CTL_ALIVE | CTL_REFS)) == 1) {
        atomic_store_explicit(&s->ctl, c - 1, memory_order_relaxed);
        proc_free(p);
    } else {
        rt__proc_put(p);
    }
}

/* Send the exit signal `reason` to every live process (rt_stop). */
void rt__proc_kill_all(int reason)
{
    uint32_t n = atomic_load_explicit(&nslots, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) {
        if (atomic_load_explicit(&chunks[i >> CHUNK_BITS], memory_order_acquire) == NULL)
            continue;
        uint64_t c = atomic_load_explicit(&slot_at(i)->ctl, memory_order_acquire);
        if (c & CTL_ALIVE)
            rt_exit((rt_pid){(c & ~0xFFFFFFFFull) | i}, reason);
    }
}

RT_API rt_pid rt_self(void)
{
    struct sched *s = rt__sched_self();
    if (s)
        return s->cur_pid;
    return tls_cur ? proc_pid(tls_cur) : RT_PID_NONE;
}

RT_API bool rt_alive(rt_pid pid)
{
    return rt__proc_alive(pid);
}

RT_API int rt_sched_of(rt_pid pid)
{
    struct proc *p = rt__proc_get(pid); /* held */
    if (p == NULL)
        return -ESRCH;
    struct sched *s = atomic_load_explicit(&p->sched, memory_order_relaxed);
    int idx = s ? (int)s->idx : -ESRCH;
    rt__proc_put(p);
    return idx;
}
