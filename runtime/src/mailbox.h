/* mailbox.h: the intrusive multi-producer single-consumer queue under every
 * mailbox and every scheduler's inject queue: Vyukov's queue with a stub
 * node, plus Pony's "empty" mark that makes it schedule its owner.
 *
 * Any thread may push; only the owner pops. A consumer that finds its queue
 * empty marks it so with one CAS on the head (the low bit of the stub's
 * address); the next push swaps that marked head out and learns it was
 * empty, and that pusher alone schedules the owner. Once the mark is set the
 * consumer must not touch the owner again: it may already run elsewhere.
 *
 * A pop may return NULL while a push is half done (the producer swapped the
 * head but has not linked its node yet); mq_mark_empty() then fails, so the
 * consumer keeps its turn and retries rather than losing the node.
 */
#ifndef RT_MAILBOX_H
#define RT_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rt/msg.h>

struct mq {
    struct rt__node *_Atomic head; /* producers swap themselves in here */
    struct rt__node *tail;         /* consumer only */
    struct rt__node stub;
};

#define MQ_EMPTY_BIT ((uintptr_t)1)

/* A new queue is empty but not marked: its owner is in a run queue (or
 * about to be) and will look at it. */
static inline void mq_init(struct mq *q)
{
    atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
    atomic_store_explicit(&q->head, &q->stub, memory_order_relaxed);
    q->tail = &q->stub;
}

/* Push `n`; returns true if the queue was marked empty, in which case the
 * caller must schedule the owner. Any thread. */
static inline bool mq_push(struct mq *q, struct rt__node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* acq_rel: acquire pairs with the consumer's release CAS in
     * mq_mark_empty (we then see the owner's state as it left it); release
     * publishes n's contents to the consumer through the chain below */
    struct rt__node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    bool was_empty = ((uintptr_t)prev & MQ_EMPTY_BIT) != 0;
    prev = (struct rt__node *)((uintptr_t)prev & ~MQ_EMPTY_BIT);
    /* release: the consumer that reads this link sees n's contents */
    atomic_store_explicit(&prev->next, n, memory_order_release);
    return was_empty;
}

/* Pop the oldest node, or NULL. Owner only, while it holds its turn. */
static inline struct rt__node *mq_pop(struct mq *q)
{
    struct rt__node *tail = q->tail;
    /* acquire: pairs with the release link in mq_push */
    struct rt__node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &q->stub) {
        if (next == NULL)
            return NULL;
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    /* acquire: a head other than tail means a push is under way */
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
        return NULL;
    mq_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        q->tail = next;
        return tail;
    }
    return NULL;
}

/* True when nothing is queued nor being pushed. Owner only. */
static inline bool mq_empty(struct mq *q)
{
    return q->tail == &q->stub &&
           atomic_load_explicit(&q->stub.next, memory_order_acquire) == NULL &&
           atomic_load_explicit(&q->head, memory_order_acquire) == &q->stub;
}

/* Give up the turn if the queue is empty: returns true if it was, and is
 * now marked (the caller must not touch the owner any more); false if
 * something is queued or being pushed (the caller keeps the turn). */
static inline bool mq_mark_empty(struct mq *q)
{
    if (q->tail != &q->stub || atomic_load_explicit(&q->stub.next, memory_order_acquire) != NULL)
        return false;
    struct rt__node *expect = &q->stub;
    /* release: everything the owner did before leaving is visible to the
     * pusher that takes the mark (its exchange is acquire) */
    return atomic_compare_exchange_strong_explicit(
        &q->head, &expect, (struct rt__node *)((uintptr_t)&q->stub | MQ_EMPTY_BIT),
        memory_order_release, memory_order_relaxed);
}

#endif
