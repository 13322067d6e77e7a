/* park.c: how an idle scheduler sleeps and how another thread wakes it.
 *
 * The contract is two calls: rt__park(s, deadline) sleeps until rt__unpark(s),
 * an I/O completion, or the deadline (absolute, CLOCK_MONOTONIC ns;
 * INT64_MAX: none), and may return early; rt__unpark(s) is called by any
 * thread after it published work for s. The sleeping itself is the I/O
 * backend's: waiting on the scheduler's io_uring ring (or epoll set), which
 * a waker ends through an eventfd the ring keeps a read armed on.
 *
 * No lost wake-up: the sleeper reads the sequence, announces itself
 * (sleeping = true), checks for work, and sleeps only if the sequence is
 * unchanged and it found none; the waker publishes work, bumps the
 * sequence, and signals the eventfd if the sleeper announced itself.
 * seq_cst on `sleeping` and the bump order the two sides (a Dekker pair);
 * a wake that lands between the check and the wait stays pending in the
 * eventfd, so the wait returns at once.
 */
#include <time.h>

#include "io.h"

int64_t rt__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rt__park(struct sched *s, int64_t deadline)
{
    /* acquire: pairs with the waker's bump */
    uint32_t seq = atomic_load_explicit(&s->park_seq, memory_order_acquire);
    atomic_store_explicit(&s->sleeping, true, memory_order_seq_cst);
    atomic_fetch_add_explicit(&rt__rt.n_parked, 1, memory_order_seq_cst);
    if (!rt__sched_has_work(s) && atomic_load_explicit(&s->park_seq, memory_order_seq_cst) == seq)
        rt__io_wait(s, deadline);
    atomic_fetch_sub_explicit(&rt__rt.n_parked, 1, memory_order_relaxed);
    atomic_store_explicit(&s->sleeping, false, memory_order_relaxed);
}

void rt__unpark(struct sched *s)
{
    /* seq_cst: ordered after the work we published, before reading
     * `sleeping` (see the top of this file) */
    atomic_fetch_add_explicit(&s->park_seq, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&s->sleeping, memory_order_seq_cst))
        rt__io_wake(s);
}
