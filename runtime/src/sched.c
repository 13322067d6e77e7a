/* sched.c: scheduler threads, run queues and work stealing.
 *
 * Each scheduler has a local ring of runnable processes (Go's design: the
 * owner puts at the tail, the owner and thieves take from the head with a
 * CAS), an inject queue that other threads push to, and the global queue
 * that takes a ring's overflow. A process made runnable by a scheduler goes
 * into that scheduler's ring, so processes that talk end up together; a
 * process made runnable by a thread that is not a scheduler, or placed on
 * another scheduler than the one spawning it, goes to that scheduler's
 * inject queue, which joins the ring's tail before each pick. Idle
 * schedulers steal half of a busy ring, spin
 * briefly, then park (park.c) until work or their next timer.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call on
 * every runtime operation (the library is linked, not dlopen'ed late; glibc
 * keeps static TLS room for the few bytes even then) */
_Thread_local struct sched *rt__tls_sched __attribute__((tls_model("initial-exec")));

RT_NOIPA struct sched *rt__sched_self(void)
{
    return rt__tls_sched;
}

/* Turns in a row the process to run next may take before the ring's head:
 * two processes that answer each other keep the CPU between them for this
 * many turns, then wait behind the others once. */
#define NEXT_STREAK 16u

static uint32_t runq_len(struct sched *s);

/* May the process to run next take one more turn of the streak? */
static bool next_may_run(struct sched *s)
{
    return s->next_streak + 1 < NEXT_STREAK || runq_len(s) == 0;
}

/* ---- the local ring ---------------------------------------------------------- */

/* Room for `n` more in the global ring, doubling it; false when out of
 * memory. gq_lock held. */
static bool global_grow(uint32_t n)
{
    uint32_t cap = rt__rt.gq_cap;
    if (rt__rt.gq_n + n <= cap)
        return true;
    uint32_t ncap = cap ? cap : 1024;
    while (ncap < rt__rt.gq_n + n) {
        if (ncap > UINT32_MAX / 2)
            return false;
        ncap *= 2;
    }
    struct proc **r = malloc(sizeof *r * ncap);
    if (r == NULL)
        return false;
    for (uint32_t i = 0; i < rt__rt.gq_n; i++)
        r[i] = rt__rt.gq_ring[(rt__rt.gq_first + i) & (cap - 1)];
    free(rt__rt.gq_ring);
    rt__rt.gq_ring = r;
    rt__rt.gq_cap = ncap;
    rt__rt.gq_first = 0;
    return true;
}

/* Append batch[0..n) to the global queue. Pointers only: taking a batch
 * back out does not touch the processes, which a list through them did,
 * one cache miss after another (skynet's million actors wait there, cold:
 * a quarter of its time went to walking that list). */
static void global_put_batch(struct proc **batch, uint32_t n)
{
    pthread_mutex_lock(&rt__rt.gq_lock);
    if (rt__rt.gq_head == NULL && global_grow(n)) {
        uint32_t mask = rt__rt.gq_cap - 1;
        for (uint32_t i = 0; i < n; i++)
            rt__rt.gq_ring[(rt__rt.gq_first + rt__rt.gq_n + i) & mask] = batch[i];
        rt__rt.gq_n += n;
    } else {
        /* out of memory for the ring (or already past it): the list keeps
         * the order */
        for (uint32_t i = 0; i < n; i++) {
            struct rt__node *l = &batch[i]->rq_link;
            atomic_store_explicit(&l->next, NULL, memory_order_relaxed);
            if (rt__rt.gq_tail)
                atomic_store_explicit(&rt__rt.gq_tail->next, l, memory_order_relaxed);
            else
                rt__rt.gq_head = l;
            rt__rt.gq_tail = l;
        }
    }
    /* relaxed: a hint for idle schedulers; the lock orders the queue */
    atomic_fetch_add_explicit(&rt__rt.gq_len, n, memory_order_relaxed);
    pthread_mutex_unlock(&rt__rt.gq_lock);
}

static void runq_put(struct sched *s, struct proc *p);

/* The oldest of the global queue, or NULL. gq_lock held. */
static struct proc *global_take(void)
{
    if (rt__rt.gq_n) {
        struct proc *p = rt__rt.gq_ring[rt__rt.gq_first];
        rt__rt.gq_first = (rt__rt.gq_first + 1) & (rt__rt.gq_cap - 1);
        rt__rt.gq_n--;
        return p;
    }
    struct rt__node *n = rt__rt.gq_head;
    if (n == NULL)
        return NULL;
    rt__rt.gq_head = atomic_load_explicit(&n->next, memory_order_relaxed);
    if (rt__rt.gq_head == NULL)
        rt__rt.gq_tail = NULL;
    return container_of(n, struct proc, rq_link);
}

/* Take a share of the global queue (Go's globrunqget): one process to run
 * now, and up to half a ring more into the local ring, so that a scheduler
 * does not come back for them one at a time. */
static struct proc *global_get(struct sched *s)
{
    if (atomic_load_explicit(&rt__rt.gq_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&rt__rt.gq_lock);
    uint32_t len = atomic_load_explicit(&rt__rt.gq_len, memory_order_relaxed);
    uint32_t want = len / rt__rt.nsched + 1;
    uint32_t room = RQ_SIZE / 2 - (runq_len(s) < RQ_SIZE / 2 ? runq_len(s) : RQ_SIZE / 2);
    if (want > room + 1)
        want = room + 1;
    struct proc *first = NULL, *p;
    uint32_t got = 0;
    for (; got < want && (p = global_take()) != NULL; got++) {
        if (first == NULL)
            first = p;
        else
            runq_put(s, p); /* room was checked: never overflows back */
    }
    atomic_fetch_sub_explicit(&rt__rt.gq_len, got, memory_order_relaxed);
    pthread_mutex_unlock(&rt__rt.gq_lock);
    return first;
}

/* Half the ring and p go to the global queue. False if thieves raced us. */
static bool runq_put_slow(struct sched *s, struct proc *p, uint32_t h, uint32_t t)
{
    uint32_t n = (t - h) / 2;
    struct proc *batch[RQ_SIZE / 2 + 1];
    for (uint32_t i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&s->rq[(h + i) % RQ_SIZE], memory_order_relaxed);
    /* release: our reads of the slots happen before thieves reuse them */
    if (!atomic_compare_exchange_strong_explicit(&s->rq_head, &h, h + n, memory_order_release,
                                                 memory_order_relaxed))
        return false;
    batch[n] = p;
    global_put_batch(batch, n + 1);
    return true;
}

static void runq_put(struct sched *s, struct proc *p)
{
    for (;;) {
        /* acquire: slots up to head are no longer read by thieves */
        uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
        if (t - h < RQ_SIZE) {
            atomic_store_explicit(&s->rq[t % RQ_SIZE], p, memory_order_relaxed);
            /* release: the slot (and p's state) is visible with the tail */
            atomic_store_explicit(&s->rq_tail, t + 1, memory_order_release);
            return;
        }
        if (runq_put_slow(s, p, h, t))
            return;
    }
}

/* How far ahead in the ring runq_get starts loading a process. */
#define PREFETCH_AHEAD 4u

/* A hint: p's first lines (its state, mailbox and, for an actor, the start
 * of its state) on their way to the cache. p may be stale: a prefetch of
 * any address is harmless. */
static inline void prefetch_proc(const struct proc *p)
{
    __builtin_prefetch(p);
    __builtin_prefetch((const char *)p + 64);
    __builtin_prefetch((const char *)p + 128);
    __builtin_prefetch((const char *)p + 192);
}

static struct proc *runq_get(struct sched *s)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&s->rq_head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
        if (t == h)
            return NULL;
        struct proc *p = atomic_load_explicit(&s->rq[h % RQ_SIZE], memory_order_relaxed);
        /* release: the slot was read before it can be reused */
        if (atomic_compare_exchange_weak_explicit(&s->rq_head, &h, h + 1, memory_order_release,
                                                  memory_order_relaxed)) {
            /* start loading the process after next: many processes that
             * waited (a million actors in skynet) are no longer in cache,
             * and their misses then overlap instead of coming one a turn */
            if (t - h > PREFETCH_AHEAD)
                prefetch_proc(atomic_load_explicit(&s->rq[(h + PREFETCH_AHEAD) % RQ_SIZE],
                                                   memory_order_relaxed));
            return p;
        }
    }
}

static uint32_t runq_len(struct sched *s)
{
    return atomic_load_explicit(&s->rq_tail, memory_order_relaxed) -
           atomic_load_explicit(&s->rq_head, memory_order_relaxed);
}

/* Move half of v's ring into s's ring; return one of them to run now. */
static struct proc *runq_steal(struct sched *s, struct sched *v)
{
    uint32_t t = atomic_load_explicit(&s->rq_tail, memory_order_relaxed);
    uint32_t n;
    for (;;) {
        /* acquire on both: see the slots the victim published */
        uint32_t h = atomic_load_explicit(&v->rq_head, memory_order_acquire);
        uint32_t vt = atomic_load_explicit(&v->rq_tail, memory_order_acquire);
        n = vt - h;
        /* a single waiting process is left to its scheduler, which runs
         * it next: taking it would split processes that talk to each
         * other (ping-pong) across threads for nothing */
        if (n < 2)
            return NULL;
        n = n - n / 2;
        if (n > RQ_SIZE / 2)
            continue; /* read a torn head/tail pair: retry */
        for (uint32_t i = 0; i < n; i++) {
            struct proc *p = atomic_load_explicit(&v->rq[(h + i) % RQ_SIZE], memory_order_relaxed);
            atomic_store_explicit(&s->rq[(t + i) % RQ_SIZE], p, memory_order_relaxed);
        }
        /* acq_rel: commits the grab; release for the victim's reuse of slots */
        if (atomic_compare_exchange_weak_explicit(&v->rq_head, &h, h + n, memory_order_acq_rel,
                                                  memory_order_relaxed))
            break;
    }
    n--;
    struct proc *p = atomic_load_explicit(&s->rq[(t + n) % RQ_SIZE], memory_order_relaxed);
    if (n > 0)
        atomic_store_explicit(&s->rq_tail, t + n, memory_order_release);
    atomic_store_explicit(&s->n_steals,
                          atomic_load_explicit(&s->n_steals, memory_order_relaxed) + n + 1,
                          memory_order_relaxed);
    return p;
}

/* ---- making processes runnable ----------------------------------------------- */

static void inject(struct sched *s, struct proc *p)
{
    mq_push(&s->inject, &p->rq_link);
    rt__unpark(s);
}

/* A scheduler with more work than it can start now wakes one parked peer,
 * unless one is already out looking. */
static void maybe_wake_peer(struct sched *s)
{
    if (runq_len(s) < 2 || atomic_load_explicit(&rt__rt.n_spinning, memory_order_relaxed) > 0 ||
        atomic_load_explicit(&rt__rt.n_parked, memory_order_relaxed) == 0)
        return;
    for (unsigned i = 1; i < rt__rt.nsched; i++) {
        struct sched *o = &rt__rt.sched[(s->idx + i) % rt__rt.nsched];
        if (atomic_load_explicit(&o->sleeping, memory_order_relaxed)) {
            rt__unpark(o);
            return;
        }
    }
}

/* Runnable processes here: the ring and the one to run next. Owner only. */
static uint32_t local_len(struct sched *s)
{
    return runq_len(s) + (s->next != NULL);
}

void rt__sched_ready(struct proc *p)
{
    struct sched *s = rt__sched_self();
    if (s) {
        atomic_store_explicit(&p->sched, s, memory_order_relaxed);
        /* made runnable by the running process (a message, a reply): it
         * runs as soon as that one's turn ends, without the ring's CAS; the
         * one it displaces joins the ring */
        if (s->cur) {
            struct proc *old = s->next;
            s->next = p;
            if (old == NULL)
                return;
            p = old;
        }
        runq_put(s, p);
        maybe_wake_peer(s);
    } else {
        inject(atomic_load_explicit(&p->sched, memory_order_relaxed), p);
    }
}

void rt__sched_place(struct proc *p, int sched_opt)
{
    struct sched *s = rt__sched_self();
    struct sched *target;
    if (sched_opt > 0)
        target = &rt__rt.sched[sched_opt - 1];
    else if (s)
        target = s;
    else
        target = &rt__rt.sched[atomic_fetch_add_explicit(&rt__rt.rr, 1, memory_order_relaxed) %
                               rt__rt.nsched];
    atomic_store_explicit(&p->sched, target, memory_order_relaxed);
    if (target == s) {
        runq_put(s, p);
        maybe_wake_peer(s);
    } else {
        inject(target, p);
    }
}

/* ---- running processes --------------------------------------------------------- */

/* What the scheduler does with a stackful process that gave the CPU back,
 * on a stack that is not the process's own: once its mailbox is marked
 * empty another thread may run it. */
static void after_turn(struct sched *s, struct proc *p)
{
    switch (p->state) {
    case PS_YIELD:
        runq_put(s, p);
        break;
    case PS_WAIT:
        if (!mq_mark_empty(&p->mq))
            runq_put(s, p);
        break;
    case PS_EXIT:
        rt__proc_terminate(p);
        break;
    default:
        abort(); /* a process switched out without saying why: our bug */
    }
}

/* Every context that a stackful process switched to straight away
 * finishes that process's turn first. */
static inline void finish_handoff(struct sched *s)
{
    struct proc *h = s->handoff;
    if (h) {
        s->handoff = NULL;
        after_turn(s, h);
    }
}

void rt__sched_switched_in(void)
{
    finish_handoff(rt__sched_self());
}

/* Switches in a row from one stackful process straight to the next before
 * the scheduler's loop runs again (timers, I/O completions, the epoch). */
#define DIRECT_MAX 16u

void rt__sched_switch_out(struct proc *p, enum proc_state st)
{
    struct sched *s = rt__sched_self();
    p->state = (uint8_t)st;
    if (!p->u.s.stack->guarded && !rt__stack_canary_ok(p->u.s.stack)) {
        fprintf(stderr, "rt: stack overflow in process <%u.%u> (stack of %zu bytes)\n", p->idx,
                p->gen, p->u.s.stack->size);
        abort();
    }
    /* the process this one made runnable is stackful too (ping-pong, a
     * call and its reply): switch to it at once, without the scheduler's
     * loop in between, within the limits find_local keeps for it */
    struct proc *n = s->next;
    if (st != PS_EXIT && n && n->kind == PROC_STACKFUL && !n->exiting && s->direct < DIRECT_MAX &&
        next_may_run(s)) {
        s->next = NULL;
        s->next_streak++;
        s->direct++;
        s->handoff = p;
        atomic_store_explicit(&n->sched, s, memory_order_relaxed);
        sched_set_cur(s, n);
        n->state = PS_RUNNING;
        n->turn = 0;
        ctx_switch(&p->u.s.ctx, &n->u.s.ctx, 0);
        /* running again, maybe on another scheduler */
        finish_handoff(rt__sched_self());
        return;
    }
    ctx_switch(&p->u.s.ctx, &s->ctx, st == PS_EXIT);
    finish_handoff(rt__sched_self());
}

static void run_stackful(struct sched *s, struct proc *p)
{
    p->state = PS_RUNNING;
    p->turn = 0;
    ctx_switch(&s->ctx, &p->u.s.ctx, 0);
    /* the process that gave the CPU back: p, or one p switched to */
    after_turn(s, s->cur);
}

static void run_actor(struct sched *s, struct proc *p)
{
    unsigned n = 0;
    void *state = actor_state(p);
    while (!p->exiting && n < rt__rt.batch) {
        struct rt__node *node = mq_pop(&p->mq);
        if (node == NULL)
            break;
        n++;
        rt_msg *m = container_of(node, rt_msg, rt__link);
        if (m->rt__kind && !rt__signal_filter(p, m))
            continue;
        p->u.a.cur = m;
        p->msg_taken = false;
        p->u.a.ops->handle(state, m);
        p->u.a.cur = NULL;
        if (!p->msg_taken)
            rt__msg_free(m);
    }
    if (p->exiting)
        rt__proc_terminate(p);
    else if (n == rt__rt.batch || !mq_mark_empty(&p->mq))
        runq_put(s, p);
}

static void run(struct sched *s, struct proc *p)
{
    atomic_store_explicit(&p->sched, s, memory_order_relaxed);
    sched_set_cur(s, p);
    if (p->kind == PROC_ACTOR)
        run_actor(s, p);
    else
        run_stackful(s, p);
    sched_set_cur(s, NULL);
}

/* ---- finding work ------------------------------------------------------------------ */

static struct proc *inject_get(struct sched *s)
{
    struct rt__node *n = mq_pop(&s->inject);
    return n ? container_of(n, struct proc, rq_link) : NULL;
}

/* What other threads made runnable here (a process placed on this
 * scheduler by a spawn elsewhere, a wake from outside the schedulers) joins
 * the ring's tail, as a process made runnable here does. Taken one at a
 * time every 61 turns instead, a burst of them waited thousands of turns
 * behind processes that yield and stay runnable: an SCTP endpoint spawning
 * 100 association processes onto their owners' schedulers while senders
 * ran had them start up to 10 s late, their peeled-off sockets full and
 * dropping, the peers in T3 retransmission backoff. Bounded per call: a
 * thread injecting without pause cannot keep this one from running. */
static void inject_drain(struct sched *s)
{
    struct proc *p;
    for (unsigned n = 0; n < RQ_SIZE / 2 && (p = inject_get(s)) != NULL; n++)
        runq_put(s, p);
}

static struct proc *find_local(struct sched *s)
{
    struct proc *p;
    inject_drain(s);
    /* now and then look at the global queue first, so nothing there starves */
    if (++s->tick % 61 == 0 && (p = global_get(s)))
        return p;
    if ((p = s->next) != NULL) {
        s->next = NULL;
        bool may = next_may_run(s);
        s->next_streak++;
        if (may)
            return p;
        runq_put(s, p);
    }
    s->next_streak = 0;
    if ((p = runq_get(s)) || (p = global_get(s)))
        return p;
    return NULL;
}

static struct proc *steal(struct sched *s)
{
    unsigned n = rt__rt.nsched;
    unsigned start = s->tick % n;
    for (unsigned i = 0; i < n; i++) {
        struct sched *v = &rt__rt.sched[(start + i) % n];
        if (v == s)
            continue;
        struct proc *p = runq_steal(s, v);
        if (p)
            return p;
    }
    return NULL;
}

static void fire_timers(struct sched *s)
{
    int64_t nd = atomic_load_explicit(&s->next_deadline, memory_order_acquire);
    if (nd != INT64_MAX && nd <= rt__now_ns())
        rt__timer_run(s, rt__now_ns());
}

/* Nothing to run here for now: what the scheduler holds for the shared
 * counts (live processes, the epoch) goes back. */
static void hand_back(struct sched *s)
{
    rt__proc_sched_idle(s, false);
    rt__epoch_idle(s);
}

static struct proc *idle(struct sched *s)
{
    struct proc *p = NULL;
    hand_back(s);
    if (rt__rt.spin_ns > 0) {
        atomic_fetch_add_explicit(&rt__rt.n_spinning, 1, memory_order_relaxed);
        int64_t until = rt__now_ns() + rt__rt.spin_ns;
        do {
            fire_timers(s);
            rt__io_poll(s);
            if ((p = find_local(s)) || (p = steal(s)))
                break;
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        } while (rt__now_ns() < until &&
                 !atomic_load_explicit(&rt__rt.shutdown, memory_order_relaxed));
        atomic_fetch_sub_explicit(&rt__rt.n_spinning, 1, memory_order_relaxed);
        if (p)
            return p;
    }
    fire_timers(s);
    if ((p = find_local(s)) || (p = steal(s)))
        return p;
    atomic_store_explicit(&s->n_parks, atomic_load_explicit(&s->n_parks, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* again: an end seen while spinning (a completion dropping a process's
     * last reference) earned a credit, and its memory waits */
    hand_back(s);
    rt__park(s, atomic_load_explicit(&s->next_deadline, memory_order_acquire));
    return NULL;
}

/* True if `s` has something to do: asked by park.c after announcing sleep. */
bool rt__sched_has_work(struct sched *s)
{
    if (local_len(s) || !mq_empty(&s->inject) ||
        atomic_load_explicit(&rt__rt.gq_len, memory_order_relaxed) ||
        atomic_load_explicit(&rt__rt.shutdown, memory_order_acquire) || rt__io_has_work(s))
        return true;
    int64_t nd = atomic_load_explicit(&s->next_deadline, memory_order_acquire);
    return nd != INT64_MAX && nd <= rt__now_ns();
}

static void *sched_main(void *arg)
{
    struct sched *s = arg;
    rt__tls_sched = s;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &s->ctx.stack_lo, &s->ctx.stack_size);
        pthread_attr_destroy(&a);
    }
#ifdef RT_TSAN
    s->ctx.tsan_fiber = __tsan_get_current_fiber();
#endif
    char name[16];
    snprintf(name, sizeof name, "rt-sched-%u", s->idx);
    pthread_setname_np(pthread_self(), name);
    void *altstack = rt__fault_thread_init();
    rt__io_bind(s);

    while (!atomic_load_explicit(&rt__rt.shutdown, memory_order_acquire)) {
        fire_timers(s);
        rt__io_poll(s);
        struct proc *p = find_local(s);
        if (p == NULL)
            p = idle(s);
        if (p) {
            rt__epoch_enter(s);
            s->direct = 0;
            run(s, p);
            rt__io_after_turn(s, local_len(s) == 0);
        }
    }
    rt__proc_sched_idle(s, true);
    rt__pool_flush(s->pool);
    rt__fault_thread_fini(altstack);
    rt__tls_sched = NULL;
    return NULL;
}

int rt__sched_start(unsigned n)
{
    struct sched *ss = aligned_alloc(64, sizeof(struct sched) * n);
    if (ss == NULL)
        return -ENOMEM;
    memset(ss, 0, sizeof(struct sched) * n);
    rt__rt.sched = ss;
    rt__rt.nsched = n;
    int kind = rt__rt.io_kind;
    for (unsigned i = 0; i < n; i++) {
        struct sched *s = &ss[i];
        s->idx = i;
        mq_init(&s->inject);
        atomic_store_explicit(&s->next_deadline, INT64_MAX, memory_order_relaxed);
        int rc = rt__timer_init(s);
        bool io_failed = false;
        if (rc == 0)
            io_failed = (rc = rt__io_init(s, kind, rt__rt.io_bufs, rt__rt.io_buf_size)) < 0;
        /* every scheduler on one backend (rt_io_backend names one): the
         * first one's; where io_uring then fails for a later one (its
         * rings' locked memory), RT_IO_AUTO puts them all on epoll */
        if (rc == 0 && i == 0)
            kind = rt__io_kind(s);
        if (io_failed && i > 0 && rt__rt.io_kind == RT_IO_AUTO && kind == RT_IO_URING) {
            kind = RT_IO_EPOLL;
            rc = 0;
            for (unsigned j = 0; j <= i && rc == 0; j++) {
                rt__io_fini(&ss[j]);
                rc = rt__io_init(&ss[j], kind, rt__rt.io_bufs, rt__rt.io_buf_size);
            }
        }
        if (rc < 0) {
            for (unsigned j = 0; j <= i; j++) {
                rt__io_fini(&ss[j]);
                rt__timer_fini(&ss[j]);
            }
            return rc;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&ss[i].thread, NULL, sched_main, &ss[i]);
        if (rc != 0) {
            atomic_store_explicit(&rt__rt.shutdown, true, memory_order_release);
            for (unsigned j = 0; j < i; j++) {
                rt__unpark(&ss[j]);
                pthread_join(ss[j].thread, NULL);
            }
            for (unsigned j = 0; j < n; j++) {
                rt__io_fini(&ss[j]);
                rt__timer_fini(&ss[j]);
            }
            return -rc;
        }
    }
    return 0;
}

void rt__sched_stop(void)
{
    atomic_store_explicit(&rt__rt.shutdown, true, memory_order_release);
    for (unsigned i = 0; i < rt__rt.nsched; i++)
        rt__unpark(&rt__rt.sched[i]);
    for (unsigned i = 0; i < rt__rt.nsched; i++)
        pthread_join(rt__rt.sched[i].thread, NULL);
    for (unsigned i = 0; i < rt__rt.nsched; i++) {
        rt__stack_flush(&rt__rt.sched[i]); /* one thread left: no other CPU to interrupt */
        rt__io_fini(&rt__rt.sched[i]);
        rt__timer_fini(&rt__rt.sched[i]);
    }
}
