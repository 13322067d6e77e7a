/* call.c: rt_call and rt_reply. */
#include <errno.h>
#include <string.h>

#include "internal.h"

struct down_or_reply {
    rt_ref mon;
    rt_ref call;
};

static bool match_reply(const rt_msg *m, void *arg)
{
    const struct down_or_reply *w = arg;
    if (m->tag == RT_MSG_REPLY && m->rt__aux == w->call)
        return true;
    if (m->tag == RT_MSG_DOWN && m->size == sizeof(rt_down_info)) {
        rt_down_info d;
        memcpy(&d, m->data, sizeof d);
        return d.ref == w->mon;
    }
    return false;
}

static int call_here(struct proc *p, rt_pid server, uint32_t tag, const void *req, size_t size,
                     int timeout_ms, rt_msg **reply)
{
    if (size > RT_MSG_MAX_SIZE)
        return -EMSGSIZE;
    if ((size && req == NULL) || (tag >= RT_TAG_SYSTEM && tag < RT_TAG_LIB_BASE))
        return -EINVAL;
    struct proc *t = rt__proc_get(server);
    if (t == NULL)
        return -ESRCH;
    rt__proc_put(t);
    struct down_or_reply w;
    int rc = rt_monitor(server, &w.mon);
    if (rc < 0)
        return rc;
    /* relaxed: uniqueness only */
    w.call = atomic_fetch_add_explicit(&rt__rt.next_ref, 1, memory_order_relaxed) + 1;
    rt_msg *m = rt__msg_new(tag, size);
    if (m == NULL) {
        rt_demonitor(w.mon);
        return -ENOMEM;
    }
    if (size)
        memcpy(m->data, req, size);
    m->rt__aux = w.call;
    p->u.s.call_ref = w.call;
    rc = rt__send_msg(server, m);
    if (rc < 0) {
        rt__msg_free(m);
    } else {
        rt_msg *got;
        rc = rt_receive_match(match_reply, &w, timeout_ms, &got);
        if (rc == 0 && got->tag == RT_MSG_DOWN) {
            rt_msg_free(got);
            p->u.s.call_ref = 0;
            return RT_ECALLDOWN; /* the monitor fired: nothing to demonitor */
        }
        if (rc == 0) {
            if (reply)
                *reply = got;
            else
                rt_msg_free(got);
        }
    }
    p->u.s.call_ref = 0;
    rt_demonitor(w.mon);
    return rc;
}

/* A call from a thread that is not a scheduler runs in a helper process. */
struct outside_call {
    rt_pid server;
    uint32_t tag;
    const void *req;
    size_t size;
    int timeout_ms;
    rt_msg *reply;
    int rc;
};

static void outside_call_main(void *arg)
{
    struct outside_call *c = arg;
    c->rc =
        call_here(rt__proc_current(), c->server, c->tag, c->req, c->size, c->timeout_ms, &c->reply);
}

RT_API int rt_call(rt_pid server, uint32_t tag, const void *req, size_t size, int timeout_ms,
                   rt_msg **reply)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    struct proc *p = rt__proc_current();
    if (p && p->kind == PROC_STACKFUL)
        return call_here(p, server, tag, req, size, timeout_ms, reply);
    if (p || rt__sched_self())
        return RT_ENOTPROC; /* a callback actor must not block */
    struct outside_call c = {server, tag, req, size, timeout_ms, NULL, 0};
    rt_pid helper;
    int rc = rt_spawn(outside_call_main, &c, &(rt_spawn_opts){.joinable = true}, &helper);
    if (rc < 0)
        return rc;
    int reason;
    rc = rt_join(helper, RT_INFINITY, &reason);
    if (rc == 0 && reason != RT_EXIT_NORMAL)
        rc = reason; /* the helper was killed (the runtime is stopping) */
    else if (rc == 0)
        rc = c.rc;
    if (rc == 0 && reply)
        *reply = c.reply;
    else if (c.reply)
        rt_msg_free(c.reply);
    return rc;
}

RT_API bool rt_is_call(const rt_msg *msg)
{
    return msg && msg->rt__kind == 0 && msg->rt__aux != 0 &&
           (msg->tag < RT_TAG_SYSTEM || msg->tag >= RT_TAG_LIB_BASE);
}

RT_API int rt_reply(const rt_msg *request, const void *data, size_t size)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (!rt_is_call(request) || (size && data == NULL))
        return -EINVAL;
    if (size > RT_MSG_MAX_SIZE)
        return -EMSGSIZE;
    rt_msg *m = rt__signal_new(SIG_REPLY, RT_MSG_REPLY, rt_self(), size, request->rt__aux);
    if (m == NULL)
        return -ENOMEM;
    if (size)
        memcpy(m->data, data, size);
    int rc = rt__send_msg(request->from, m);
    if (rc < 0)
        rt__msg_free(m);
    return rc;
}
