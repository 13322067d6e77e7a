/* signal.c: exit signals, links and monitors.
 *
 * Signals travel through the mailbox like messages, so the order between
 * one pair of processes holds for both. Each process alone edits its own
 * link and monitor sets, when it handles a signal (rt__signal_filter), so
 * they need no lock. A signal that reaches a process already gone is
 * answered as Erlang does: a link gets the exit signal RT_EXIT_NOPROC, a
 * monitor a DOWN with RT_EXIT_NOPROC.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io.h"

struct proc_ext *rt__ext_of(struct proc *p)
{
    if (p->ext == NULL)
        p->ext = calloc(1, sizeof *p->ext);
    return p->ext;
}

void rt__ext_free(struct proc_ext *x)
{
    if (x == NULL)
        return;
    while (x->at_exit) {
        struct at_exit *a = x->at_exit;
        x->at_exit = a->next;
        free(a);
    }
    free(x->links);
    free(x->mons);
    free(x->watchers);
    free(x->fds);
    free((void *)x->live);
    free(x);
}

static int grow(void **v, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    uint32_t nc = *cap ? *cap * 2 : 4;
    void *nv = realloc(*v, nc * elem);
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

int rt__link_add(struct proc *p, rt_pid other)
{
    struct proc_ext *x = rt__ext_of(p);
    if (x == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < x->nlinks; i++)
        if (rt_pid_eq(x->links[i], other))
            return 0;
    if (grow((void **)&x->links, &x->caplinks, x->nlinks, sizeof(rt_pid)) < 0)
        return -ENOMEM;
    x->links[x->nlinks++] = other;
    return 0;
}

static bool link_remove(struct proc *p, rt_pid other)
{
    struct proc_ext *x = p->ext;
    if (x == NULL)
        return false;
    for (uint32_t i = 0; i < x->nlinks; i++) {
        if (rt_pid_eq(x->links[i], other)) {
            x->links[i] = x->links[--x->nlinks];
            return true;
        }
    }
    return false;
}

static int mon_add(struct monitor **v, uint32_t *n, uint32_t *cap, rt_ref ref, rt_pid pid)
{
    if (grow((void **)v, cap, *n, sizeof(struct monitor)) < 0)
        return -ENOMEM;
    (*v)[(*n)++] = (struct monitor){ref, pid};
    return 0;
}

static bool mon_remove(struct monitor *v, uint32_t *n, rt_ref ref, rt_pid *pid)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (v[i].ref == ref) {
            if (pid)
                *pid = v[i].pid;
            v[i] = v[--*n];
            return true;
        }
    }
    return false;
}

rt_msg *rt__signal_new(uint32_t kind, uint32_t tag, rt_pid from, size_t size, uint64_t aux)
{
    rt_msg *m = rt__msg_new(tag, size);
    if (m == NULL)
        return NULL;
    m->rt__kind = kind;
    m->from = from;
    m->rt__aux = aux;
    return m;
}

/* Send a signal; a dead target is no error here. Out of memory loses the
 * signal, which only a process table in distress would see. */
static void post(rt_pid to, rt_msg *m)
{
    if (m && rt__send_msg(to, m) < 0)
        rt__msg_free(m);
}

static void post_exit(rt_pid to, rt_pid from, int reason, uint64_t flags)
{
    rt_msg *m = rt__signal_new(SIG_EXIT, RT_MSG_EXIT, from, sizeof(rt_exit_info), flags);
    if (m) {
        rt_exit_info info = {from, reason};
        memcpy(m->data, &info, sizeof info);
    }
    post(to, m);
}

static void post_down(rt_pid to, rt_ref ref, rt_pid dead, int reason)
{
    rt_msg *m = rt__signal_new(SIG_DOWN, RT_MSG_DOWN, dead, sizeof(rt_down_info), 0);
    if (m) {
        rt_down_info info = {ref, dead, reason};
        memcpy(m->data, &info, sizeof info);
    }
    post(to, m);
}

bool rt__signal_filter(struct proc *p, rt_msg *m)
{
    struct proc_ext *x;
    switch (m->rt__kind) {
    case SIG_EXIT: {
        rt_exit_info info;
        memcpy(&info, m->data, sizeof info);
        bool from_link = m->rt__aux & SIGF_LINK;
        /* a link removed by rt_unlink no longer carries exit signals */
        if (from_link && !link_remove(p, info.from))
            break;
        if (!from_link && info.reason == RT_EXIT_KILL) {
            rt__proc_set_exit(p, RT_EXIT_KILLED);
            break;
        }
        if (p->trap_exits) {
            m->rt__kind = 0;
            m->rt__aux = 0;
            return true;
        }
        if (info.reason != RT_EXIT_NORMAL)
            rt__proc_set_exit(p, info.reason);
        break;
    }
    case SIG_LINK:
        if (rt__link_add(p, m->from) < 0)
            post_exit(m->from, proc_pid(p), -ENOMEM, SIGF_LINK);
        break;
    case SIG_UNLINK:
        link_remove(p, m->from);
        break;
    case SIG_MONITOR:
        x = rt__ext_of(p);
        if (x == NULL ||
            mon_add(&x->watchers, &x->nwatchers, &x->capwatchers, m->rt__aux, m->from) < 0)
            post_down(m->from, m->rt__aux, proc_pid(p), -ENOMEM);
        break;
    case SIG_DEMONITOR:
        if (p->ext)
            mon_remove(p->ext->watchers, &p->ext->nwatchers, m->rt__aux, NULL);
        break;
    case SIG_DOWN: {
        rt_down_info info;
        memcpy(&info, m->data, sizeof info);
        /* only a monitor still wanted is delivered (demonitor flushes) */
        if (p->ext && mon_remove(p->ext->mons, &p->ext->nmons, info.ref, NULL)) {
            m->rt__kind = 0;
            m->rt__aux = 0;
            return true;
        }
        break;
    }
    case SIG_REPLY:
        /* a reply to a call given up on is dropped, like Erlang's aliases */
        if (p->kind == PROC_STACKFUL && p->u.s.call_ref == m->rt__aux) {
            m->rt__kind = 0;
            return true;
        }
        break;
    case SIG_IO_TIMEOUT: {
        uint64_t t;
        memcpy(&t, m->data, sizeof t);
        rt__io_timed_out(p, m->rt__aux, t);
        break;
    }
    default: /* SIG_WAKE: its arrival was the point */
        break;
    }
    rt__msg_free(m);
    return false;
}

void rt__signal_notify_exit(struct proc *p)
{
    struct proc_ext *x = p->ext;
    if (x == NULL)
        return;
    rt_pid self = proc_pid(p);
    for (uint32_t i = 0; i < x->nlinks; i++)
        post_exit(x->links[i], self, p->exit_reason, SIGF_LINK);
    x->nlinks = 0;
    for (uint32_t i = 0; i < x->nwatchers; i++)
        post_down(x->watchers[i].pid, x->watchers[i].ref, self, p->exit_reason);
    x->nwatchers = 0;
    for (uint32_t i = 0; i < x->nmons; i++)
        post(x->mons[i].pid, rt__signal_new(SIG_DEMONITOR, 0, self, 0, x->mons[i].ref));
    x->nmons = 0;
}

void rt__signal_drain_dead(rt_msg *m, rt_pid dead)
{
    if (m->rt__kind == SIG_LINK)
        post_exit(m->from, dead, RT_EXIT_NOPROC, SIGF_LINK);
    else if (m->rt__kind == SIG_MONITOR)
        post_down(m->from, m->rt__aux, dead, RT_EXIT_NOPROC);
    rt__msg_free(m);
}

/* ---- the API ---------------------------------------------------------------- */

RT_API int rt_exit(rt_pid pid, int reason)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    struct proc *cur = rt__proc_current();
    if (cur && rt_pid_eq(pid, proc_pid(cur))) {
        if (reason == RT_EXIT_KILL)
            reason = RT_EXIT_KILLED;
        rt__proc_set_exit(cur, reason);
        if (cur->kind == PROC_STACKFUL)
            rt__sched_switch_out(cur, PS_EXIT);
        return 0;
    }
    rt_pid from = cur ? proc_pid(cur) : RT_PID_NONE;
    rt_msg *m = rt__signal_new(SIG_EXIT, RT_MSG_EXIT, from, sizeof(rt_exit_info), 0);
    if (m == NULL)
        return -ENOMEM;
    rt_exit_info info = {from, reason};
    memcpy(m->data, &info, sizeof info);
    int rc = rt__send_msg(pid, m);
    if (rc < 0)
        rt__msg_free(m);
    return rc;
}

RT_API int rt_exit_self(int reason)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL || cur->kind != PROC_STACKFUL)
        return RT_ENOTPROC;
    if (reason == RT_EXIT_KILL)
        reason = RT_EXIT_KILLED;
    rt__proc_set_exit(cur, reason);
    rt__sched_switch_out(cur, PS_EXIT);
    return 0; /* not reached */
}

RT_API int rt_at_exit(void (*fn)(void *), void *arg)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    if (fn == NULL)
        return -EINVAL;
    struct proc_ext *x = rt__ext_of(cur);
    struct at_exit *a = malloc(sizeof *a);
    if (x == NULL || a == NULL) {
        free(a);
        return -ENOMEM;
    }
    a->fn = fn;
    a->arg = arg;
    a->next = x->at_exit;
    x->at_exit = a;
    return 0;
}

void rt__run_at_exit(struct proc *p)
{
    while (p->ext && p->ext->at_exit) {
        struct at_exit *a = p->ext->at_exit;
        p->ext->at_exit = a->next;
        a->fn(a->arg);
        free(a);
    }
}

RT_API int rt_trap_exits(bool on)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    bool old = cur->trap_exits;
    cur->trap_exits = on;
    return old;
}

RT_API int rt_link(rt_pid pid)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    rt_pid self = proc_pid(cur);
    if (rt_pid_eq(pid, self))
        return -EINVAL;
    struct proc *t = rt__proc_get(pid);
    if (t == NULL)
        return -ESRCH;
    int rc = -ENOMEM;
    rt_msg *m = rt__signal_new(SIG_LINK, 0, self, 0, 0);
    if (m && (rc = rt__link_add(cur, pid)) == 0)
        rt__proc_deliver(t, m);
    else
        rt__msg_free(m);
    rt__proc_put(t);
    return rc;
}

RT_API int rt_unlink(rt_pid pid)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    if (link_remove(cur, pid))
        post(pid, rt__signal_new(SIG_UNLINK, 0, proc_pid(cur), 0, 0));
    return 0;
}

RT_API int rt_monitor(rt_pid pid, rt_ref *ref)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    if (ref == NULL)
        return -EINVAL;
    struct proc_ext *x = rt__ext_of(cur);
    /* relaxed: uniqueness only */
    rt_ref r = atomic_fetch_add_explicit(&rt__rt.next_ref, 1, memory_order_relaxed) + 1;
    if (x == NULL || mon_add(&x->mons, &x->nmons, &x->capmons, r, pid) < 0)
        return -ENOMEM;
    rt_pid self = proc_pid(cur);
    struct proc *t = rt__proc_get(pid);
    if (t == NULL) {
        post_down(self, r, pid, RT_EXIT_NOPROC);
    } else {
        rt_msg *m = rt__signal_new(SIG_MONITOR, 0, self, 0, r);
        if (m == NULL) {
            rt__proc_put(t);
            mon_remove(x->mons, &x->nmons, r, NULL);
            return -ENOMEM;
        }
        rt__proc_deliver(t, m);
        rt__proc_put(t);
    }
    *ref = r;
    return 0;
}

static bool is_down_for(const rt_msg *m, rt_ref ref)
{
    rt_down_info info;
    if (m->tag != RT_MSG_DOWN || m->rt__kind != 0 || m->size != sizeof info)
        return false;
    memcpy(&info, m->data, sizeof info);
    return info.ref == ref;
}

RT_API int rt_demonitor(rt_ref ref)
{
    struct proc *cur = rt__proc_current();
    if (cur == NULL)
        return RT_ENOTPROC;
    rt_pid target;
    if (cur->ext == NULL || !mon_remove(cur->ext->mons, &cur->ext->nmons, ref, &target)) {
        /* maybe its DOWN already reached the private queue: flush it */
        if (cur->kind == PROC_STACKFUL) {
            struct rt__node *prev = NULL, *n = cur->u.s.priv_head;
            while (n) {
                struct rt__node *next = atomic_load_explicit(&n->next, memory_order_relaxed);
                rt_msg *m = container_of(n, rt_msg, rt__link);
                if (is_down_for(m, ref)) {
                    if (prev)
                        atomic_store_explicit(&prev->next, next, memory_order_relaxed);
                    else
                        cur->u.s.priv_head = next;
                    if (cur->u.s.priv_tail == n)
                        cur->u.s.priv_tail = prev;
                    rt__msg_free(m);
                    return 0;
                }
                prev = n;
                n = next;
            }
        }
        return -ENOENT;
    }
    post(target, rt__signal_new(SIG_DEMONITOR, 0, proc_pid(cur), 0, ref));
    return 0;
}
