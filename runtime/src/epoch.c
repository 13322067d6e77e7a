/* epoch.c: when the memory of an ended process may be reused.
 *
 * A message sent from a process goes to its receiver without taking a
 * reference on the receiver's slot (rt__proc_send_fast): the sender reads
 * the slot (generation, ALIVE) and pushes into the mailbox, and nothing
 * stops the receiver from ending between the two. So the memory of an
 * ended process (its mailbox, its slot) is not reused at once: the end
 * (rt__proc_free) is done as before, and the process then waits in its
 * scheduler's limbo list until every scheduler has been seen between two
 * turns since, when no send that read it as alive can still be under way
 * (epoch-based reclamation, as in Fraser's thesis or crossbeam-epoch).
 *
 * - A global epoch. A scheduler announces the epoch it saw before each
 *   turn (ep_local; a store and a fence only when the epoch moved), and 0
 *   while it is idle or outside turns: only then does it send the fast way.
 * - An ended process is retired with the epoch read (seq_cst) after the
 *   seq_cst RMW of its slot that dropped its last reference (the ALIVE
 *   bit was cleared before): a sender whose turn was announced (a store
 *   and a seq_cst fence) after that RMW sees it ended.
 * - The epoch moves from g to g + 1 once every scheduler announces g or 0;
 *   a process retired at e is reclaimed at e + 2: by then every scheduler
 *   has announced again since, so its turns that might have sent to it are
 *   over (their next announcement, a release, is what the advance read).
 * - Threads that are not schedulers take references (rt__send_msg); a
 *   process whose last reference one of them drops waits in a shared list.
 * What a late sender pushed is freed with the process; signals never go
 * the fast way, so nothing that needs an answer waits in the limbo.
 */
#include "internal.h"

/* Processes a scheduler keeps in limbo before it tries to move the epoch
 * at each turn (below that, every 64 turns and when it goes idle). */
#define LIMBO_PUSH 64u

static inline uint32_t tag_of(struct proc *p)
{
    return p->turn; /* unused once the process has ended */
}

static void limbo_add(struct limbo *l, struct proc *p)
{
    atomic_store_explicit(&p->rq_link.next, NULL, memory_order_relaxed);
    if (l->tail)
        atomic_store_explicit(&l->tail->next, &p->rq_link, memory_order_relaxed);
    else
        l->head = &p->rq_link;
    l->tail = &p->rq_link;
    l->n++;
}

/* Reclaim from the front of `l` what was retired two epochs before `g`
 * or earlier (all of it if `all`). */
static void limbo_reclaim(struct limbo *l, uint64_t g, bool all)
{
    while (l->head) {
        struct proc *p = container_of(l->head, struct proc, rq_link);
        if (!all && (uint32_t)((uint32_t)g - tag_of(p)) < 2)
            return;
        l->head = atomic_load_explicit(&l->head->next, memory_order_relaxed);
        if (l->head == NULL)
            l->tail = NULL;
        l->n--;
        rt__proc_reclaim(p);
    }
}

/* Move the epoch past `g` if every scheduler is at g or idle. */
static void try_advance(uint64_t g)
{
    for (unsigned i = 0; i < rt__rt.nsched; i++) {
        /* acquire: pairs with the release of the announcement, after which
         * that scheduler's earlier turns are over */
        uint64_t v = atomic_load_explicit(&rt__rt.sched[i].ep_local, memory_order_acquire);
        if (v != 0 && v != g)
            return;
    }
    atomic_compare_exchange_strong_explicit(&rt__rt.epoch, &g, g + 1, memory_order_seq_cst,
                                            memory_order_relaxed);
}

/* Ended processes waiting here or in the shared list. */
static bool limbo_waiting(struct sched *s)
{
    return s->limbo.head || atomic_load_explicit(&rt__rt.limbo_n, memory_order_relaxed);
}

/* A quiescent point of `s`: announce the epoch if it moved (a store, then
 * a fence); returns it. */
static uint64_t announce(struct sched *s)
{
    /* seq_cst: ordered with the retirers' seq_cst RMW and load (see the
     * top) */
    uint64_t g = atomic_load_explicit(&rt__rt.epoch, memory_order_seq_cst);
    if (atomic_load_explicit(&s->ep_local, memory_order_relaxed) != g) {
#if defined(__SANITIZE_THREAD__)
        /* ThreadSanitizer has no fences: a seq_cst exchange, which is the
         * same full barrier on x86 */
        atomic_exchange_explicit(&s->ep_local, g, memory_order_seq_cst);
#else
        /* release: this scheduler's turns so far happen before whatever an
         * advance that reads this allows */
        atomic_store_explicit(&s->ep_local, g, memory_order_release);
        atomic_thread_fence(memory_order_seq_cst);
#endif
    }
    return g;
}

static void shared_reclaim(uint64_t g)
{
    if (atomic_load_explicit(&rt__rt.limbo_n, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&rt__rt.limbo_lock);
    limbo_reclaim(&rt__rt.limbo, g, false);
    atomic_store_explicit(&rt__rt.limbo_n, rt__rt.limbo.n, memory_order_relaxed);
    pthread_mutex_unlock(&rt__rt.limbo_lock);
}

void rt__epoch_enter(struct sched *s)
{
    uint64_t g = announce(s);
    bool now_and_then = (s->tick & 63) == 0;
    if (s->limbo.head == NULL && !now_and_then)
        return;
    limbo_reclaim(&s->limbo, g, false);
    if (now_and_then)
        shared_reclaim(g);
    if (s->limbo.n >= LIMBO_PUSH || (now_and_then && limbo_waiting(s)))
        try_advance(g);
}

/* Inside a turn, between two runtime calls, no send is under way on this
 * thread: a quiescent point too. A long turn that spawns or sends (the
 * root of skynet spawns a million processes in one) calls this now and
 * then, so that the processes ending meanwhile on other schedulers do not
 * all wait for its end (their memory and slots were not reused: skynet on
 * two schedulers ran 300 ms longer). */
void rt__epoch_quiet(struct sched *s)
{
    if ((++s->ep_calls & 255) != 0 || atomic_load_explicit(&s->ep_local, memory_order_relaxed) == 0)
        return;
    uint64_t g = announce(s);
    limbo_reclaim(&s->limbo, g, false);
    try_advance(g);
}

void rt__epoch_idle(struct sched *s)
{
    if (atomic_load_explicit(&s->ep_local, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->ep_local, 0, memory_order_release);
    /* idle, others may be too: two advances reclaim everything */
    for (int k = 0; k < 3 && limbo_waiting(s); k++) {
        uint64_t g = atomic_load_explicit(&rt__rt.epoch, memory_order_seq_cst);
        limbo_reclaim(&s->limbo, g, false);
        shared_reclaim(g);
        if (limbo_waiting(s))
            try_advance(g);
    }
}

void rt__epoch_retire(struct proc *p)
{
    /* seq_cst, as the caller's RMW of the slot before it (the drop of the
     * last reference, after ALIVE was cleared): a turn announced after
     * that RMW in the single total order reads the process as ended, and
     * one announced before it announced at most the epoch read here */
    uint64_t e = atomic_load_explicit(&rt__rt.epoch, memory_order_seq_cst);
    p->turn = (uint32_t)e;
    struct sched *s = rt__sched_self();
    if (s) {
        limbo_add(&s->limbo, p);
        return;
    }
    pthread_mutex_lock(&rt__rt.limbo_lock);
    limbo_add(&rt__rt.limbo, p);
    atomic_store_explicit(&rt__rt.limbo_n, rt__rt.limbo.n, memory_order_relaxed);
    pthread_mutex_unlock(&rt__rt.limbo_lock);
}

void rt__epoch_init(void)
{
    atomic_store_explicit(&rt__rt.epoch, 2, memory_order_relaxed);
    pthread_mutex_init(&rt__rt.limbo_lock, NULL);
    rt__rt.limbo = (struct limbo){0};
    atomic_store_explicit(&rt__rt.limbo_n, 0, memory_order_relaxed);
}

/* Everything, once no scheduler runs (rt_stop, after the threads ended). */
void rt__epoch_fini(void)
{
    for (unsigned i = 0; i < rt__rt.nsched; i++)
        limbo_reclaim(&rt__rt.sched[i].limbo, 0, true);
    limbo_reclaim(&rt__rt.limbo, 0, true);
    atomic_store_explicit(&rt__rt.limbo_n, 0, memory_order_relaxed);
    pthread_mutex_destroy(&rt__rt.limbo_lock);
}
