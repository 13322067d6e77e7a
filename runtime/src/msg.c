/* msg.c: messages, sending, and receiving in stackful processes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define HDR ((sizeof(rt_msg) + 15) & ~(size_t)15)

static inline void *inline_data(rt_msg *m)
{
    return (char *)m + HDR;
}

static inline void count(struct sched *s, bool alloc)
{
    if (s) {
        _Atomic uint64_t *c = alloc ? &s->n_alloc : &s->n_free;
        /* relaxed load+store: only this thread writes its counter */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    } else {
        /* relaxed: a count */
        atomic_fetch_add_explicit(alloc ? &rt__rt.msgs_alloc_ext : &rt__rt.msgs_free_ext, 1,
                                  memory_order_relaxed);
    }
}

/* `s`: this thread's scheduler or NULL (one look-up per call of the API) */
static rt_msg *msg_block(struct sched *s, size_t payload_inline)
{
    size_t total = HDR + payload_inline;
    unsigned cls = rt__pool_class(total);
    rt_msg *m = cls == POOL_CLASS_MALLOC ? malloc(total) : rt__pool_alloc_on(s, cls);
    if (m == NULL)
        return NULL;
    atomic_store_explicit(&m->rt__link.next, NULL, memory_order_relaxed);
    m->rt__class = cls;
    m->rt__kind = 0;
    m->rt__aux = 0;
    m->rt__free = NULL;
    m->rt__lent = NULL;
    count(s, true);
    return m;
}

static rt_msg *msg_new_on(struct sched *s, uint32_t tag, size_t size)
{
    rt_msg *m = msg_block(s, size);
    if (m == NULL)
        return NULL;
    m->from = s ? s->cur_pid : rt_self();
    m->tag = tag;
    m->size = (uint32_t)size;
    m->data = size ? inline_data(m) : NULL;
    return m;
}

rt_msg *rt__msg_new(uint32_t tag, size_t size)
{
    return msg_new_on(rt__sched_self(), tag, size);
}

void rt__msg_free(rt_msg *m)
{
    if (unlikely(m->tag == RT_MSG_IO))
        rt__io_msg_release(m);
    if (m->rt__free)
        m->rt__free(m->rt__lent);
    struct sched *s = rt__sched_self(); /* after the callbacks: they may switch */
    unsigned cls = m->rt__class;
    if (cls == POOL_CLASS_MALLOC)
        free(m);
    else
        rt__pool_free_on(s, m, cls);
    count(s, false);
}

static int check_send(uint32_t tag, const void *data, size_t size)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (tag >= RT_TAG_SYSTEM && tag < RT_TAG_LIB_BASE)
        return -EINVAL;
    if (size > RT_MSG_MAX_SIZE)
        return -EMSGSIZE;
    if (size > 0 && data == NULL)
        return -EINVAL;
    return 0;
}

/* May this thread's scheduler `s` (NULL: none) send the fast way now: is
 * it in an announced turn (epoch.c)? */
static inline bool may_send_fast(struct sched *s)
{
    if (s == NULL || atomic_load_explicit(&s->ep_local, memory_order_relaxed) == 0)
        return false;
    rt__epoch_quiet(s); /* before the send: nothing of it is under way yet */
    return true;
}

/* Deliver `m`, made for `to`: without a reference on the receiver when
 * `fast`, otherwise with one. -ESRCH leaves `m` to the caller. */
static int deliver(bool fast, rt_pid to, rt_msg *m)
{
    return fast ? rt__proc_send_fast(to, m) : rt__send_msg(to, m);
}

RT_API int rt_send(rt_pid to, uint32_t tag, const void *data, size_t size)
{
    int rc = check_send(tag, data, size);
    if (rc < 0)
        return rc;
    struct sched *s = rt__sched_self();
    bool fast = may_send_fast(s);
    rt_msg *m = msg_new_on(s, tag, size);
    if (m == NULL)
        return -ENOMEM;
    if (size)
        memcpy(m->data, data, size);
    rc = deliver(fast, to, m);
    if (rc < 0)
        rt__msg_free(m);
    return rc;
}

RT_API int rt_send_move(rt_pid to, uint32_t tag, void *data, size_t size, void (*free_fn)(void *))
{
    int rc = check_send(tag, data, size);
    if (rc < 0)
        return rc;
    struct sched *s = rt__sched_self();
    bool fast = may_send_fast(s);
    rt_msg *m = msg_new_on(s, tag, 0);
    if (m == NULL)
        return -ENOMEM;
    m->size = (uint32_t)size;
    m->data = data;
    m->rt__free = free_fn;
    m->rt__lent = data;
    rc = deliver(fast, to, m);
    if (rc < 0) { /* not sent: `data` stays the caller's */
        m->rt__free = NULL;
        m->rt__lent = NULL;
        rt__msg_free(m);
    }
    return rc;
}

RT_API int rt_forward(rt_pid to, rt_msg *msg)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (msg == NULL)
        return -EINVAL;
    struct proc *cur = rt__proc_current();
    bool handling = cur && cur->kind == PROC_ACTOR && cur->u.a.cur == msg;
    /* signals take a reference */
    bool fast = msg->rt__kind == 0 && may_send_fast(rt__sched_self());
    int rc = deliver(fast, to, msg);
    if (rc == 0 && handling)
        cur->msg_taken = true;
    return rc;
}

RT_API rt_msg *rt_msg_alloc(uint32_t tag, size_t size)
{
    if (check_send(tag, NULL, 0) < 0 || size > RT_MSG_MAX_SIZE)
        return NULL;
    return rt__msg_new(tag, size);
}

RT_API int rt_msg_adopt(rt_msg *dst, rt_msg *src)
{
    if (dst == NULL || src == NULL || dst == src || src->rt__free == NULL || dst->rt__free)
        return -EINVAL;
    dst->rt__free = src->rt__free;
    dst->rt__lent = src->rt__lent;
    src->rt__free = NULL;
    src->rt__lent = NULL;
    return 0;
}

RT_API int rt_msg_lend(rt_msg *msg, void *buf, void (*free_fn)(void *))
{
    if (msg == NULL || buf == NULL || free_fn == NULL || msg->rt__free)
        return -EINVAL;
    msg->rt__free = free_fn;
    msg->rt__lent = buf;
    return 0;
}

RT_API void rt_msg_free(rt_msg *msg)
{
    if (msg)
        rt__msg_free(msg);
}

/* ---- receiving (stackful processes) ------------------------------------------ */

static struct proc *stackful_self(void)
{
    struct proc *p = rt__proc_current();
    return p && p->kind == PROC_STACKFUL ? p : NULL;
}

RT_NORETURN static void exit_now(struct proc *p)
{
    rt__sched_switch_out(p, PS_EXIT);
    __builtin_unreachable();
}

#define DRAIN_MAX 256u

/* The mailbox's oldest message, acting on the signals before it (an exit
 * decided by one ends the process here); NULL when it is empty. */
static rt_msg *pop_message(struct proc *p)
{
    struct rt__node *n;
    while ((n = mq_pop(&p->mq)) != NULL) {
        rt_msg *m = container_of(n, rt_msg, rt__link);
        if (m->rt__kind && !rt__signal_filter(p, m)) {
            if (p->exiting)
                exit_now(p);
            continue;
        }
        atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
        return m;
    }
    return NULL;
}

/* Move up to `limit` messages from the mailbox to the private queue;
 * returns false once the mailbox is empty. Bounded so that a receive
 * scanning for a match looks at what it drained while it is still in
 * cache, and a sender that keeps pushing cannot hold the receiver in
 * here. */
static bool drain(struct proc *p, unsigned limit)
{
    for (unsigned k = 0; k < limit; k++) {
        rt_msg *m = pop_message(p);
        if (m == NULL)
            return false;
        if (p->u.s.priv_tail)
            atomic_store_explicit(&p->u.s.priv_tail->next, &m->rt__link, memory_order_relaxed);
        else
            p->u.s.priv_head = &m->rt__link;
        p->u.s.priv_tail = &m->rt__link;
    }
    return true;
}

static void cancel_wake(uint64_t *timer)
{
    if (*timer) {
        rt_cancel_timer(*timer);
        *timer = 0;
    }
}

static int receive(struct proc *p, rt_match_fn match, void *arg, int timeout_ms, rt_msg **out)
{
    if (p->turn >= rt__rt.batch)
        rt__sched_switch_out(p, PS_YIELD);
    int64_t deadline = timeout_ms > 0 ? rt__now_ns() + (int64_t)timeout_ms * 1000000 : 0;
    uint64_t *timer = &p->u.s.wake_timer;
    struct rt__node *prev = NULL; /* last node examined; what follows is new */
    for (;;) {
        /* nothing kept and any message will do: the mailbox's oldest,
         * one pass over it instead of a drain and a scan */
        if (match == NULL && p->u.s.priv_head == NULL) {
            rt_msg *m = pop_message(p);
            if (m) {
                cancel_wake(timer);
                p->turn++;
                *out = m;
                return 0;
            }
            goto none;
        }
        bool more = drain(p, DRAIN_MAX);
        struct rt__node *n =
            prev ? atomic_load_explicit(&prev->next, memory_order_relaxed) : p->u.s.priv_head;
        while (n) {
            struct rt__node *next = atomic_load_explicit(&n->next, memory_order_relaxed);
            rt_msg *m = container_of(n, rt_msg, rt__link);
            if (match == NULL || match(m, arg)) {
                if (prev)
                    atomic_store_explicit(&prev->next, next, memory_order_relaxed);
                else
                    p->u.s.priv_head = next;
                if (p->u.s.priv_tail == n)
                    p->u.s.priv_tail = prev;
                atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
                cancel_wake(timer);
                p->turn++;
                *out = m;
                return 0;
            }
            prev = n;
            n = next;
        }
        if (more)
            continue;
    none:
        if (timeout_ms == 0)
            return -ETIMEDOUT;
        if (deadline) {
            if (rt__now_ns() >= deadline) {
                cancel_wake(timer);
                return -ETIMEDOUT;
            }
            if (*timer == 0) {
                int rc = rt__timer_wake_at(proc_pid(p), deadline, timer);
                if (rc < 0)
                    return rc;
            }
        }
        rt__sched_switch_out(p, PS_WAIT);
    }
}

RT_API int rt_receive_match(rt_match_fn match, void *arg, int timeout_ms, rt_msg **out)
{
    struct proc *p = stackful_self();
    if (p == NULL)
        return RT_ENOTPROC;
    if (out == NULL)
        return -EINVAL;
    return receive(p, match, arg, timeout_ms, out);
}

RT_API int rt_receive(int timeout_ms, rt_msg **out)
{
    return rt_receive_match(NULL, NULL, timeout_ms, out);
}

static bool match_tag(const rt_msg *m, void *arg)
{
    return m->tag == *(const uint32_t *)arg;
}

RT_API int rt_receive_tag(uint32_t tag, int timeout_ms, rt_msg **out)
{
    return rt_receive_match(match_tag, &tag, timeout_ms, out);
}

RT_API int rt_mailbox_len(void)
{
    struct proc *p = rt__proc_current();
    if (p == NULL)
        return RT_ENOTPROC;
    if (p->kind != PROC_STACKFUL)
        return RT_ENOTPROC;
    while (drain(p, DRAIN_MAX))
        ;
    int n = 0;
    for (struct rt__node *q = p->u.s.priv_head; q;
         q = atomic_load_explicit(&q->next, memory_order_relaxed))
        n++;
    return n;
}

static bool match_none(const rt_msg *m, void *arg)
{
    return false;
}

RT_API int rt_sleep(int ms)
{
    struct proc *p = stackful_self();
    if (p == NULL)
        return RT_ENOTPROC;
    if (ms < 0)
        return -EINVAL;
    if (ms == 0)
        return rt_yield();
    rt_msg *m;
    int rc = receive(p, match_none, NULL, ms, &m);
    return rc == -ETIMEDOUT ? 0 : rc;
}

RT_API int rt_yield(void)
{
    struct proc *p = stackful_self();
    if (p == NULL)
        return RT_ENOTPROC;
    rt__sched_switch_out(p, PS_YIELD);
    drain(p, DRAIN_MAX);
    return 0;
}
