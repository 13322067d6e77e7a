/* timer.c: per-scheduler timer heaps.
 *
 * Each scheduler owns a binary min-heap of timers under a mutex (timers are
 * armed and cancelled from any thread, fired by the owner). A timer holds
 * the message it will deliver, built when armed: a plain message for
 * rt_send_after, an internal wake-up for a receive with a timeout. The
 * scheduler parks until its earliest deadline. O(log n) to arm and cancel.
 *
 * A handle is (scheduler + 1) << 56 | node << 32 | generation, so a stale
 * handle fails with -ENOENT instead of cancelling a newer timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NO_POS    UINT32_MAX
#define MAX_NODES (1u << 24)

struct tnode {
    int64_t deadline;
    rt_msg *msg;
    rt_pid to;
    uint32_t gen;
    uint32_t pos; /* in the heap, or NO_POS when free */
    uint32_t next_free;
};

struct timer_heap {
    struct tnode *nodes;
    uint32_t nnodes, capnodes;
    uint32_t free_head; /* node + 1; 0: none */
    uint32_t *heap;
    uint32_t n, cap;
};

int rt__timer_init(struct sched *s)
{
    pthread_mutex_init(&s->tlock, NULL);
    s->timers = calloc(1, sizeof *s->timers);
    return s->timers ? 0 : -ENOMEM;
}

void rt__timer_fini(struct sched *s)
{
    struct timer_heap *h = s->timers;
    if (h) {
        for (uint32_t i = 0; i < h->n; i++)
            rt__msg_free(h->nodes[h->heap[i]].msg);
        free(h->nodes);
        free(h->heap);
        free(h);
        s->timers = NULL;
    }
    pthread_mutex_destroy(&s->tlock);
}

static inline bool earlier(struct timer_heap *h, uint32_t a, uint32_t b)
{
    return h->nodes[h->heap[a]].deadline < h->nodes[h->heap[b]].deadline;
}

static inline void swap(struct timer_heap *h, uint32_t a, uint32_t b)
{
    uint32_t t = h->heap[a];
    h->heap[a] = h->heap[b];
    h->heap[b] = t;
    h->nodes[h->heap[a]].pos = a;
    h->nodes[h->heap[b]].pos = b;
}

static void sift_up(struct timer_heap *h, uint32_t i)
{
    while (i > 0 && earlier(h, i, (i - 1) / 2)) {
        swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(struct timer_heap *h, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && earlier(h, l, m))
            m = l;
        if (r < h->n && earlier(h, r, m))
            m = r;
        if (m == i)
            return;
        swap(h, i, m);
        i = m;
    }
}

/* Take node at heap position i out of the heap and free it; returns its message. */
static rt_msg *heap_remove(struct timer_heap *h, uint32_t i)
{
    uint32_t ni = h->heap[i];
    struct tnode *nd = &h->nodes[ni];
    rt_msg *m = nd->msg;
    h->n--;
    if (i != h->n) {
        h->heap[i] = h->heap[h->n];
        h->nodes[h->heap[i]].pos = i;
        sift_down(h, i);
        sift_up(h, i);
    }
    nd->pos = NO_POS;
    nd->msg = NULL;
    if (++nd->gen == 0)
        nd->gen = 1;
    nd->next_free = h->free_head;
    h->free_head = ni + 1;
    /* relaxed: a count */
    atomic_fetch_sub_explicit(&rt__rt.timers_live, 1, memory_order_relaxed);
    return m;
}

static void publish_next(struct sched *s)
{
    struct timer_heap *h = s->timers;
    /* release: pairs with the scheduler's acquire before it parks */
    atomic_store_explicit(&s->next_deadline, h->n ? h->nodes[h->heap[0]].deadline : INT64_MAX,
                          memory_order_release);
}

static int arm(int64_t deadline, rt_pid to, rt_msg *m, uint64_t *out)
{
    struct sched *self = rt__sched_self();
    struct sched *s = self ? self : &rt__rt.sched[0];
    struct timer_heap *h = s->timers;
    pthread_mutex_lock(&s->tlock);
    uint32_t ni;
    if (h->free_head) {
        ni = h->free_head - 1;
        h->free_head = h->nodes[ni].next_free;
    } else {
        if (h->nnodes == h->capnodes) {
            uint32_t nc = h->capnodes ? h->capnodes * 2 : 64;
            struct tnode *nn = nc <= MAX_NODES ? realloc(h->nodes, nc * sizeof *nn) : NULL;
            if (nn == NULL) {
                pthread_mutex_unlock(&s->tlock);
                return -ENOMEM;
            }
            h->nodes = nn;
            h->capnodes = nc;
        }
        ni = h->nnodes++;
        h->nodes[ni].gen = 1;
    }
    if (h->n == h->cap) {
        uint32_t nc = h->cap ? h->cap * 2 : 64;
        uint32_t *nh = realloc(h->heap, nc * sizeof *nh);
        if (nh == NULL) {
            h->nodes[ni].next_free = h->free_head;
            h->free_head = ni + 1;
            pthread_mutex_unlock(&s->tlock);
            return -ENOMEM;
        }
        h->heap = nh;
        h->cap = nc;
    }
    struct tnode *nd = &h->nodes[ni];
    nd->deadline = deadline;
    nd->msg = m;
    nd->to = to;
    nd->pos = h->n;
    h->heap[h->n++] = ni;
    sift_up(h, nd->pos);
    bool first = h->heap[0] == ni;
    publish_next(s);
    atomic_fetch_add_explicit(&rt__rt.timers_live, 1, memory_order_relaxed);
    *out = ((uint64_t)(s->idx + 1) << 56) | ((uint64_t)ni << 32) | nd->gen;
    pthread_mutex_unlock(&s->tlock);
    if (first && s != self)
        rt__unpark(s); /* it may sleep past the new deadline */
    return 0;
}

int64_t rt__timer_run(struct sched *s, int64_t now)
{
    struct timer_heap *h = s->timers;
    for (;;) {
        struct {
            rt_pid to;
            rt_msg *m;
        } due[32];
        unsigned n = 0;
        pthread_mutex_lock(&s->tlock);
        while (n < 32 && h->n && h->nodes[h->heap[0]].deadline <= now) {
            due[n].to = h->nodes[h->heap[0]].to;
            due[n].m = heap_remove(h, 0);
            n++;
        }
        publish_next(s);
        int64_t next = h->n ? h->nodes[h->heap[0]].deadline : INT64_MAX;
        pthread_mutex_unlock(&s->tlock);
        for (unsigned i = 0; i < n; i++)
            if (rt__send_msg(due[i].to, due[i].m) < 0)
                rt__msg_free(due[i].m);
        if (n < 32)
            return next;
    }
}

int rt__timer_wake_at(rt_pid pid, int64_t deadline_ns, uint64_t *out)
{
    rt_msg *m = rt__signal_new(SIG_WAKE, 0, pid, 0, 0);
    if (m == NULL)
        return -ENOMEM;
    int rc = arm(deadline_ns, pid, m, out);
    if (rc < 0)
        rt__msg_free(m);
    return rc;
}

int rt__timer_signal_at(rt_pid pid, int64_t deadline_ns, rt_msg *m, uint64_t *out)
{
    return arm(deadline_ns, pid, m, out);
}

RT_API int rt_send_after(rt_pid to, int ms, uint32_t tag, const void *data, size_t size,
                         rt_timer *out)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (ms < 0 || (tag >= RT_TAG_SYSTEM && tag < RT_TAG_LIB_BASE) || (size && data == NULL))
        return -EINVAL;
    if (size > RT_MSG_MAX_SIZE)
        return -EMSGSIZE;
    rt_msg *m = rt__msg_new(tag, size);
    if (m == NULL)
        return -ENOMEM;
    if (size)
        memcpy(m->data, data, size);
    rt_timer t;
    int rc = arm(rt__now_ns() + (int64_t)ms * 1000000, to, m, &t);
    if (rc < 0) {
        rt__msg_free(m);
        return rc;
    }
    if (out)
        *out = t;
    return 0;
}

RT_API int rt_cancel_timer(rt_timer t)
{
    if (t == 0)
        return -EINVAL;
    if (!rt__running())
        return RT_ENORUNTIME;
    unsigned si = (unsigned)(t >> 56);
    uint32_t ni = (uint32_t)(t >> 32) & (MAX_NODES - 1), gen = (uint32_t)t;
    if (si == 0 || si > rt__rt.nsched)
        return -EINVAL;
    struct sched *s = &rt__rt.sched[si - 1];
    struct timer_heap *h = s->timers;
    rt_msg *m = NULL;
    pthread_mutex_lock(&s->tlock);
    if (ni < h->nnodes && h->nodes[ni].gen == gen && h->nodes[ni].pos != NO_POS) {
        m = heap_remove(h, h->nodes[ni].pos);
        publish_next(s);
    }
    pthread_mutex_unlock(&s->tlock);
    if (m == NULL)
        return -ENOENT;
    rt__msg_free(m);
    return 0;
}

RT_API int64_t rt_now_ms(void)
{
    return rt__now_ns() / 1000000;
}
