/* sup.c: supervisors (see rt/sup.h for the semantics).
 *
 * A supervisor is a stackful process that traps exits. Its children are an
 * array in start order; a simple_one_for_one supervisor also keeps a hash
 * from pid to index, since it may have many children. Requests
 * (rt_sup_add_child and friends) are rt_calls to it; it answers between
 * restarts, never in the middle of one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum {
    REQ_ADD = RT_TAG_LIB_BASE + 1,
    REQ_START,
    REQ_TERMINATE,
    REQ_TERMINATE_PID,
    REQ_RESTART,
    REQ_DELETE,
    REQ_WHICH,
    REQ_COUNT,
    MSG_ACK,
    MSG_LOST, /* a child ended before the supervisor could link to it */
};

struct child {
    char id[RT_NAME_MAX + 1];
    int (*start)(void *arg, rt_pid *out);
    void *arg;
    rt_restart restart;
    int shutdown_ms; /* normalised: -1 infinity, 0 brutal, > 0 ms */
    rt_child_type type;
    rt_pid pid; /* RT_PID_NONE: not running */
};

/* pid -> child index, open addressing (simple_one_for_one only) */
struct pidmap {
    uint64_t *keys; /* pid.id; 0 empty, 1 deleted */
    uint32_t *vals;
    uint32_t cap, used;
};

struct sup {
    rt_sup_flags flags;
    rt_pid parent;
    struct child *kids;
    size_t n, cap;
    struct child tmpl; /* simple_one_for_one */
    struct pidmap map;
    int64_t *stamps; /* restart times (ms), a ring of intensity + 1 */
    unsigned nstamps, head;
    unsigned long restarts;
    struct sup_init *init; /* until the starter has its answer */
};

/* What the starter hands the new supervisor (owned by the supervisor). */
struct sup_init {
    rt_sup_flags flags;
    struct child *kids;
    size_t n;
    rt_pid parent;
    rt_pid waiter; /* process to ack, or NONE */
    struct outside_ack *oack;
};

/* A start from a thread outside the runtime waits on this. */
struct outside_ack {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
};

/* ---- pid map -------------------------------------------------------------------- */

static uint32_t pm_hash(uint64_t k, uint32_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k & (cap - 1);
}

static int pm_grow(struct pidmap *m)
{
    uint32_t oc = m->cap, nc = oc ? oc * 2 : 64;
    uint64_t *ok = m->keys;
    uint32_t *ov = m->vals;
    m->keys = calloc(nc, sizeof *m->keys);
    m->vals = calloc(nc, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        free(m->keys);
        free(m->vals);
        m->keys = ok;
        m->vals = ov;
        return -ENOMEM;
    }
    m->cap = nc;
    m->used = 0;
    for (uint32_t i = 0; i < oc; i++) {
        if (ok[i] > 1) {
            uint32_t j = pm_hash(ok[i], nc);
            while (m->keys[j])
                j = (j + 1) & (nc - 1);
            m->keys[j] = ok[i];
            m->vals[j] = ov[i];
            m->used++;
        }
    }
    free(ok);
    free(ov);
    return 0;
}

static int pm_put(struct pidmap *m, rt_pid pid, uint32_t v)
{
    if ((m->used + 1) * 2 > m->cap && pm_grow(m) < 0)
        return -ENOMEM;
    uint32_t j = pm_hash(pid.id, m->cap);
    while (m->keys[j] > 1 && m->keys[j] != pid.id)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] != pid.id)
        m->used++;
    m->keys[j] = pid.id;
    m->vals[j] = v;
    return 0;
}

static uint32_t *pm_find(struct pidmap *m, rt_pid pid)
{
    if (m->cap == 0)
        return NULL;
    uint32_t j = pm_hash(pid.id, m->cap);
    while (m->keys[j]) {
        if (m->keys[j] == pid.id)
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

static void pm_del(struct pidmap *m, rt_pid pid)
{
    uint32_t *v = pm_find(m, pid);
    if (v)
        m->keys[v - m->vals] = 1; /* tombstone; `used` still counts it */
}

/* ---- children ------------------------------------------------------------------------ */

static bool is_simple(const struct sup *s)
{
    return s->flags.strategy == RT_SIMPLE_ONE_FOR_ONE;
}

static ssize_t find_pid(struct sup *s, rt_pid pid)
{
    if (rt_pid_is_none(pid))
        return -1;
    if (is_simple(s)) {
        uint32_t *v = pm_find(&s->map, pid);
        return v ? (ssize_t)*v : -1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (rt_pid_eq(s->kids[i].pid, pid))
            return (ssize_t)i;
    return -1;
}

static ssize_t find_id(struct sup *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->kids[i].id, id) == 0)
            return (ssize_t)i;
    return -1;
}

/* Remove child i, keeping start order (static) or not (simple). */
static void remove_child(struct sup *s, size_t i)
{
    if (is_simple(s)) {
        pm_del(&s->map, s->kids[i].pid);
        s->n--;
        if (i != s->n) {
            s->kids[i] = s->kids[s->n];
            if (!rt_pid_is_none(s->kids[i].pid))
                pm_put(&s->map, s->kids[i].pid, (uint32_t)i);
        }
    } else {
        memmove(&s->kids[i], &s->kids[i + 1], (s->n - i - 1) * sizeof s->kids[0]);
        s->n--;
    }
}

static int append_child(struct sup *s, const struct child *c)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        struct child *nk = realloc(s->kids, nc * sizeof *nk);
        if (nk == NULL)
            return -ENOMEM;
        s->kids = nk;
        s->cap = nc;
    }
    s->kids[s->n++] = *c;
    return 0;
}

static int start_one(struct sup *s, size_t i)
{
    struct child *c = &s->kids[i];
    rt_pid pid = RT_PID_NONE;
    int rc = c->start(c->arg, &pid);
    if (rc != 0)
        return rc;
    c->pid = pid;
    if (rt_pid_is_none(pid))
        return 0; /* OTP's ignore */
    if (is_simple(s) && pm_put(&s->map, pid, (uint32_t)i) < 0)
        return -ENOMEM;
    if (rt_link(pid) == -ESRCH) {
        /* it ended already, and unless it was spawned linked no exit
         * message will come: say so ourselves (a duplicate is ignored) */
        rt_send(rt_self(), MSG_LOST, &pid, sizeof pid);
    }
    return 0;
}

struct wait_exit {
    rt_pid pid;
    rt_ref mon;
};

static bool match_gone(const rt_msg *m, void *arg)
{
    const struct wait_exit *w = arg;
    if (m->tag == RT_MSG_EXIT && m->size == sizeof(rt_exit_info)) {
        rt_exit_info e;
        memcpy(&e, m->data, sizeof e);
        return rt_pid_eq(e.from, w->pid);
    }
    if (m->tag == RT_MSG_DOWN && m->size == sizeof(rt_down_info)) {
        rt_down_info d;
        memcpy(&d, m->data, sizeof d);
        return d.ref == w->mon;
    }
    return false;
}

/* Wait until w->pid is gone; false on timeout. */
static bool wait_gone(struct wait_exit *w, int timeout_ms)
{
    rt_msg *m;
    if (rt_receive_match(match_gone, w, timeout_ms, &m) < 0)
        return false;
    rt_msg_free(m);
    return true;
}

/* Stop one child per its shutdown; it stays in the array, not running. */
static void terminate_one(struct sup *s, size_t i)
{
    struct child *c = &s->kids[i];
    if (rt_pid_is_none(c->pid))
        return;
    struct wait_exit w = {c->pid, 0};
    /* a monitor too, in case the child unlinked itself */
    bool monitored = rt_monitor(c->pid, &w.mon) == 0;
    /* -ESRCH: gone already; its exit message, if any, is then ignored */
    if (rt_exit(c->pid, c->shutdown_ms == 0 ? RT_EXIT_KILL : RT_EXIT_SHUTDOWN) == 0 &&
        !wait_gone(&w, c->shutdown_ms == 0 ? RT_INFINITY : c->shutdown_ms)) {
        rt_exit(c->pid, RT_EXIT_KILL);
        wait_gone(&w, RT_INFINITY);
    }
    if (monitored)
        rt_demonitor(w.mon);
    rt_unlink(c->pid);
    if (is_simple(s))
        pm_del(&s->map, c->pid);
    c->pid = RT_PID_NONE;
}

static bool match_any_child_exit(const rt_msg *m, void *arg)
{
    struct sup *s = arg;
    if (m->tag != RT_MSG_EXIT || m->size != sizeof(rt_exit_info))
        return false;
    rt_exit_info e;
    memcpy(&e, m->data, sizeof e);
    return pm_find(&s->map, e.from) != NULL;
}

/* simple_one_for_one: stop all children at once. */
static void terminate_all_simple(struct sup *s)
{
    int sd = s->tmpl.shutdown_ms;
    size_t live = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!rt_pid_is_none(s->kids[i].pid) &&
            rt_exit(s->kids[i].pid, sd == 0 ? RT_EXIT_KILL : RT_EXIT_SHUTDOWN) == 0)
            live++;
    int64_t deadline = sd > 0 ? rt_now_ms() + sd : 0;
    bool killed = sd == 0;
    while (live > 0) {
        int wait = RT_INFINITY;
        if (!killed && deadline) {
            int64_t left = deadline - rt_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        rt_msg *m;
        if (rt_receive_match(match_any_child_exit, s, wait, &m) < 0) {
            for (size_t i = 0; i < s->n; i++)
                if (!rt_pid_is_none(s->kids[i].pid))
                    rt_exit(s->kids[i].pid, RT_EXIT_KILL);
            killed = true;
            continue;
        }
        rt_exit_info e;
        memcpy(&e, m->data, sizeof e);
        rt_msg_free(m);
        uint32_t *v = pm_find(&s->map, e.from);
        s->kids[*v].pid = RT_PID_NONE;
        pm_del(&s->map, e.from);
        live--;
    }
    s->n = 0;
}

/* Stop children in reverse start order, from the last down to `from`. */
static void terminate_from(struct sup *s, size_t from)
{
    if (is_simple(s)) {
        terminate_all_simple(s);
        return;
    }
    for (size_t i = s->n; i-- > from;)
        terminate_one(s, i);
}

/* Start children from..n-1 in order; on failure stop those just started. */
static int start_from(struct sup *s, size_t from)
{
    for (size_t i = from; i < s->n; i++) {
        int rc = start_one(s, i);
        if (rc != 0) {
            for (size_t j = i; j-- > from;)
                terminate_one(s, j);
            return rc;
        }
    }
    return 0;
}

/* Record a restart; false if that exceeds the intensity. */
static bool add_restart(struct sup *s)
{
    s->restarts++;
    if (s->flags.intensity < 0)
        return false;
    int64_t now = rt_now_ms();
    s->stamps[s->head] = now;
    s->head = (s->head + 1) % s->nstamps;
    /* the oldest of the last intensity + 1 restarts */
    int64_t oldest = s->stamps[s->head];
    return !(oldest != INT64_MIN && now - oldest < s->flags.period_ms);
}

RT_NORETURN static void give_up(struct sup *s, int reason)
{
    terminate_from(s, 0);
    rt_exit_self(reason);
    __builtin_unreachable();
}

/* Restart per strategy after child i ended; retries failed starts, each
 * counting as a restart. */
static void restart(struct sup *s, size_t i)
{
    for (;;) {
        if (!add_restart(s))
            give_up(s, RT_EXIT_SHUTDOWN);
        int rc;
        switch (s->flags.strategy) {
        case RT_ONE_FOR_ALL:
            terminate_from(s, 0);
            /* temporary children stopped for the restart are forgotten */
            for (size_t j = s->n; j-- > 0;) {
                if (s->kids[j].restart == RT_TEMPORARY && j != i) {
                    remove_child(s, j);
                    if (j < i)
                        i--;
                }
            }
            rc = start_from(s, 0);
            break;
        case RT_REST_FOR_ONE:
            terminate_from(s, i + 1);
            rc = start_from(s, i);
            break;
        default:
            rc = start_one(s, i);
            break;
        }
        if (rc == 0)
            return;
    }
}

static void child_exited(struct sup *s, rt_pid pid, int reason)
{
    ssize_t i = find_pid(s, pid);
    if (i < 0)
        return; /* not (or no longer) ours */
    struct child *c = &s->kids[i];
    if (is_simple(s))
        pm_del(&s->map, pid);
    c->pid = RT_PID_NONE;
    bool normal = reason == RT_EXIT_NORMAL || reason == RT_EXIT_SHUTDOWN;
    if (c->restart == RT_TEMPORARY || (c->restart == RT_TRANSIENT && normal)) {
        if (c->restart == RT_TEMPORARY || is_simple(s))
            remove_child(s, (size_t)i);
        return;
    }
    restart(s, (size_t)i);
}

/* ---- requests ---------------------------------------------------------------------- */

struct req {
    rt_child_spec spec;
    char id[RT_NAME_MAX + 1];
    rt_pid pid;
    void *arg;
    size_t cap;
};

struct rep {
    int rc;
    rt_pid pid;
};

/* A which_children reply: the count, then the entries, aligned for them. */
#define WHICH_HDR                                                                                  \
    ((sizeof(int) + _Alignof(rt_sup_child_info) - 1) & ~(_Alignof(rt_sup_child_info) - 1))

static int check_spec(const rt_child_spec *sp, struct child *c)
{
    if (sp->start == NULL || sp->id == NULL)
        return -EINVAL;
    size_t n = strnlen(sp->id, RT_NAME_MAX + 1);
    if (n > RT_NAME_MAX || sp->shutdown_ms < -1 || (unsigned)sp->restart > RT_TEMPORARY ||
        (unsigned)sp->type > RT_SUPERVISOR)
        return -EINVAL;
    memset(c, 0, sizeof *c);
    memcpy(c->id, sp->id, n);
    c->start = sp->start;
    c->arg = sp->arg;
    c->restart = sp->restart;
    c->type = sp->type;
    c->shutdown_ms = sp->shutdown_ms;
    if (c->type == RT_SUPERVISOR && c->shutdown_ms == 0)
        c->shutdown_ms = RT_SHUTDOWN_INFINITY;
    c->pid = RT_PID_NONE;
    return 0;
}

static void reply_rc(const rt_msg *m, int rc, rt_pid pid)
{
    struct rep r = {rc, pid};
    rt_reply(m, &r, sizeof r);
}

static void handle_request(struct sup *s, rt_msg *m)
{
    struct req q;
    if (m->size != sizeof q) {
        reply_rc(m, -EINVAL, RT_PID_NONE);
        return;
    }
    memcpy(&q, m->data, sizeof q);
    ssize_t i = -1;
    int rc = 0;
    switch (m->tag) {
    case REQ_ADD: {
        struct child c;
        q.spec.id = q.id;
        if (is_simple(s) || (rc = check_spec(&q.spec, &c)) < 0) {
            reply_rc(m, -EINVAL, RT_PID_NONE);
            return;
        }
        if (find_id(s, c.id) >= 0) {
            reply_rc(m, -EEXIST, RT_PID_NONE);
            return;
        }
        if ((rc = append_child(s, &c)) == 0 && (rc = start_one(s, s->n - 1)) != 0)
            s->n--;
        reply_rc(m, rc, rc == 0 ? s->kids[s->n - 1].pid : RT_PID_NONE);
        return;
    }
    case REQ_START: {
        if (!is_simple(s)) {
            reply_rc(m, -EINVAL, RT_PID_NONE);
            return;
        }
        struct child c = s->tmpl;
        c.arg = q.arg;
        if ((rc = append_child(s, &c)) == 0 && (rc = start_one(s, s->n - 1)) != 0)
            s->n--;
        rt_pid pid = rc == 0 ? s->kids[s->n - 1].pid : RT_PID_NONE;
        if (rc == 0 && rt_pid_is_none(pid))
            s->n--; /* ignored: not kept */
        reply_rc(m, rc, pid);
        return;
    }
    case REQ_TERMINATE_PID:
        i = is_simple(s) ? find_pid(s, q.pid) : -1;
        if (i < 0) {
            reply_rc(m, -ENOENT, RT_PID_NONE);
            return;
        }
        terminate_one(s, (size_t)i);
        remove_child(s, (size_t)i);
        reply_rc(m, 0, RT_PID_NONE);
        return;
    case REQ_TERMINATE:
    case REQ_RESTART:
    case REQ_DELETE:
        i = is_simple(s) ? -1 : find_id(s, q.id);
        if (i < 0) {
            reply_rc(m, -ENOENT, RT_PID_NONE);
            return;
        }
        if (m->tag == REQ_TERMINATE) {
            terminate_one(s, (size_t)i);
            if (s->kids[i].restart == RT_TEMPORARY)
                remove_child(s, (size_t)i);
        } else if (!rt_pid_is_none(s->kids[i].pid)) {
            rc = -EBUSY;
        } else if (m->tag == REQ_DELETE) {
            remove_child(s, (size_t)i);
        } else {
            rc = start_one(s, (size_t)i);
        }
        reply_rc(m, rc, rc == 0 && m->tag == REQ_RESTART ? s->kids[i].pid : RT_PID_NONE);
        return;
    case REQ_WHICH: {
        size_t k = q.cap < s->n ? q.cap : s->n;
        size_t sz = WHICH_HDR + k * sizeof(rt_sup_child_info);
        char *buf = calloc(1, sz);
        if (buf == NULL) {
            int e = -ENOMEM;
            rt_reply(m, &e, sizeof e);
            return;
        }
        int count = (int)s->n;
        memcpy(buf, &count, sizeof count);
        rt_sup_child_info *out = (rt_sup_child_info *)(buf + WHICH_HDR);
        for (size_t j = 0; j < k; j++) {
            memcpy(out[j].id, s->kids[j].id, sizeof out[j].id);
            out[j].pid = s->kids[j].pid;
            out[j].type = s->kids[j].type;
            out[j].restart = s->kids[j].restart;
        }
        rt_reply(m, buf, sz);
        free(buf);
        return;
    }
    case REQ_COUNT: {
        rt_sup_counts c = {.specs = is_simple(s) ? 1 : (int)s->n, .restarts = s->restarts};
        for (size_t j = 0; j < s->n; j++) {
            c.active += !rt_pid_is_none(s->kids[j].pid);
            c.supervisors += s->kids[j].type == RT_SUPERVISOR;
            c.workers += s->kids[j].type == RT_WORKER;
        }
        rt_reply(m, &c, sizeof c);
        return;
    }
    default:
        reply_rc(m, -EINVAL, RT_PID_NONE);
    }
}

/* ---- the supervisor process ------------------------------------------------------------ */

static void ack(struct sup_init *in, int rc)
{
    if (in->oack) {
        pthread_mutex_lock(&in->oack->lock);
        in->oack->rc = rc;
        in->oack->done = true;
        pthread_cond_signal(&in->oack->cond);
        pthread_mutex_unlock(&in->oack->lock);
    } else if (!rt_pid_is_none(in->waiter)) {
        rt_send(in->waiter, MSG_ACK, &rc, sizeof rc);
    }
}

static void ack(struct sup_init *in, int rc);

/* rt_at_exit handler: whatever ends the supervisor, a kill included. A
 * starter still waiting is told the supervisor ended. */
static void sup_free(void *arg)
{
    struct sup *s = arg;
    if (s->init) {
        ack(s->init, RT_ECALLDOWN);
        free(s->init->kids);
        free(s->init);
        s->init = NULL;
    }
    free(s->kids);
    free(s->map.keys);
    free(s->map.vals);
    free(s->stamps);
}

static void sup_main(void *arg)
{
    struct sup_init *in = arg;
    struct sup s = {.flags = in->flags, .parent = in->parent, .init = in};
    rt_trap_exits(true);
    int rc = rt_at_exit(sup_free, &s);
    if (rc < 0) {
        ack(in, rc);
        free(in->kids);
        free(in);
        rt_exit_self(rc);
    }
    s.nstamps = (unsigned)(s.flags.intensity > 0 ? s.flags.intensity : 0) + 1;
    s.stamps = malloc(s.nstamps * sizeof *s.stamps);
    if (s.stamps == NULL)
        rc = -ENOMEM;
    for (unsigned k = 0; rc == 0 && k < s.nstamps; k++)
        s.stamps[k] = INT64_MIN;
    if (rc == 0 && is_simple(&s)) {
        s.tmpl = in->kids[0];
    } else if (rc == 0) {
        s.kids = in->kids;
        s.n = s.cap = in->n;
        in->kids = NULL;
        rc = start_from(&s, 0);
    }
    free(in->kids);
    ack(in, rc);
    free(in);
    s.init = NULL;
    if (rc != 0) {
        if (!rt_pid_is_none(s.parent))
            rt_unlink(s.parent);
        rt_exit_self(rc);
    }
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) < 0)
            continue;
        if (m->tag == RT_MSG_EXIT && m->size == sizeof(rt_exit_info)) {
            rt_exit_info e;
            memcpy(&e, m->data, sizeof e);
            rt_msg_free(m);
            if (rt_pid_is_none(e.from) || rt_pid_eq(e.from, s.parent)) {
                terminate_from(&s, 0);
                rt_exit_self(e.reason);
            }
            child_exited(&s, e.from, e.reason);
            continue;
        }
        if (m->tag == MSG_LOST && m->size == sizeof(rt_pid)) {
            rt_pid pid;
            memcpy(&pid, m->data, sizeof pid);
            child_exited(&s, pid, RT_EXIT_NOPROC);
        } else if (rt_is_call(m)) {
            handle_request(&s, m);
        }
        rt_msg_free(m);
    }
}

static int check_flags(const rt_sup_flags *f, rt_sup_flags *out)
{
    rt_sup_flags d = {RT_ONE_FOR_ONE, 1, 5000};
    if (f) {
        if ((unsigned)f->strategy > RT_SIMPLE_ONE_FOR_ONE || f->intensity < -1 || f->period_ms < 0)
            return -EINVAL;
        d.strategy = f->strategy;
        if (f->intensity != 0 || f->period_ms != 0)
            d.intensity = f->intensity;
        if (f->period_ms)
            d.period_ms = f->period_ms;
    }
    *out = d;
    return 0;
}

static bool match_ack(const rt_msg *m, void *arg)
{
    return m->tag == MSG_ACK && rt_pid_eq(m->from, *(rt_pid *)arg);
}

/* Start a supervisor; `wait`: block until it has started its children. */
static int sup_start(const rt_sup_flags *flags, const rt_child_spec *specs, size_t n, bool link,
                     rt_pid *out)
{
    struct sup_init *in = calloc(1, sizeof *in);
    if (in == NULL)
        return -ENOMEM;
    int rc = check_flags(flags, &in->flags);
    if (rc == 0 && n > 0 && (in->kids = calloc(n, sizeof *in->kids)) == NULL)
        rc = -ENOMEM;
    if (rc == 0 && in->flags.strategy == RT_SIMPLE_ONE_FOR_ONE && n != 1)
        rc = -EINVAL;
    if (rc == 0 && n > 0 && specs == NULL)
        rc = -EINVAL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = check_spec(&specs[i], &in->kids[i]);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(in->kids[i].id, in->kids[j].id) == 0)
                rc = -EINVAL;
    }
    in->n = n;
    if (rc < 0) {
        free(in->kids);
        free(in);
        return rc;
    }
    struct proc *cur = rt__proc_current();
    struct outside_ack oack = {.done = false};
    if (cur == NULL) {
        pthread_mutex_init(&oack.lock, NULL);
        pthread_cond_init(&oack.cond, NULL);
        in->oack = &oack;
    } else {
        in->waiter = proc_pid(cur);
        if (link)
            in->parent = proc_pid(cur);
    }
    rt_pid pid;
    rc = rt_spawn(sup_main, in, &(rt_spawn_opts){.link = link && cur != NULL}, &pid);
    if (rc < 0) {
        free(in->kids);
        free(in);
    } else if (cur == NULL) {
        pthread_mutex_lock(&oack.lock);
        while (!oack.done)
            pthread_cond_wait(&oack.cond, &oack.lock);
        rc = oack.rc;
        pthread_mutex_unlock(&oack.lock);
    } else {
        rt_msg *m;
        rc = rt_receive_match(match_ack, &pid, RT_INFINITY, &m);
        if (rc == 0) {
            memcpy(&rc, m->data, sizeof rc);
            rt_msg_free(m);
        }
    }
    if (cur == NULL) {
        pthread_cond_destroy(&oack.cond);
        pthread_mutex_destroy(&oack.lock);
    }
    if (rc == 0 && out)
        *out = pid;
    return rc;
}

RT_API int rt_sup_start(const rt_sup_flags *flags, const rt_child_spec *specs, size_t nspecs,
                        rt_pid *out)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    struct proc *cur = rt__proc_current();
    if ((cur && cur->kind != PROC_STACKFUL) || (!cur && rt__sched_self()))
        return RT_ENOTPROC;
    return sup_start(flags, specs, nspecs, true, out);
}

/* ---- the root supervisor --------------------------------------------------------------- */

static pthread_mutex_t root_lock = PTHREAD_MUTEX_INITIALIZER;

RT_API rt_pid rt_sup_root(void)
{
    if (!rt__running())
        return RT_PID_NONE;
    pthread_mutex_lock(&root_lock);
    rt_pid root = rt__rt.root_sup;
    if (rt_pid_is_none(root) &&
        atomic_load_explicit(&rt__rt.state, memory_order_acquire) == RT_RUNNING) {
        /* no children yet: nothing to wait for, so any thread may start it */
        struct sup_init *in = calloc(1, sizeof *in);
        if (in) {
            in->flags = (rt_sup_flags){RT_ONE_FOR_ONE, 10, 10000};
            if (rt_spawn(sup_main, in, &(rt_spawn_opts){.joinable = true}, &root) == 0)
                rt__rt.root_sup = root;
            else
                free(in);
        }
    }
    pthread_mutex_unlock(&root_lock);
    return root;
}

/* rt_stop: stop the tree under the root in order. */
int rt__sup_stop_root(int grace_ms)
{
    pthread_mutex_lock(&root_lock);
    rt_pid root = rt__rt.root_sup;
    rt__rt.root_sup = RT_PID_NONE;
    pthread_mutex_unlock(&root_lock);
    if (rt_pid_is_none(root))
        return 0;
    rt_exit(root, RT_EXIT_SHUTDOWN);
    return rt_join(root, grace_ms, NULL);
}

/* ---- requests from outside ----------------------------------------------------------- */

/* Ask the supervisor; on success store the pid it answered in *child
 * (may be NULL). */
static int request(rt_pid sup, uint32_t tag, const struct req *q, rt_pid *child)
{
    rt_msg *m;
    int rc = rt_call(sup, tag, q, sizeof *q, RT_INFINITY, &m);
    if (rc < 0)
        return rc;
    struct rep r = {.rc = -EPROTO};
    if (m->size >= sizeof r)
        memcpy(&r, m->data, sizeof r);
    rt_msg_free(m);
    if (r.rc == 0 && child)
        *child = r.pid;
    return r.rc;
}

/* A request naming a child by id. */
static int id_request(rt_pid sup, uint32_t tag, const char *id, rt_pid *child)
{
    struct req q;
    memset(&q, 0, sizeof q);
    if (id == NULL || strnlen(id, RT_NAME_MAX + 1) > RT_NAME_MAX)
        return -EINVAL;
    strcpy(q.id, id);
    return request(sup, tag, &q, child);
}

RT_API int rt_sup_add_child(rt_pid sup, const rt_child_spec *spec, rt_pid *child)
{
    if (spec == NULL || spec->id == NULL || strnlen(spec->id, RT_NAME_MAX + 1) > RT_NAME_MAX)
        return -EINVAL;
    struct req q;
    memset(&q, 0, sizeof q);
    strcpy(q.id, spec->id);
    q.spec = *spec;
    q.spec.id = NULL;
    return request(sup, REQ_ADD, &q, child);
}

RT_API int rt_sup_start_child(rt_pid sup, void *arg, rt_pid *child)
{
    struct req q = {.arg = arg};
    return request(sup, REQ_START, &q, child);
}

RT_API int rt_sup_terminate_child(rt_pid sup, const char *id)
{
    return id_request(sup, REQ_TERMINATE, id, NULL);
}

RT_API int rt_sup_terminate_child_pid(rt_pid sup, rt_pid pid)
{
    struct req q = {.pid = pid};
    return request(sup, REQ_TERMINATE_PID, &q, NULL);
}

RT_API int rt_sup_restart_child(rt_pid sup, const char *id, rt_pid *child)
{
    return id_request(sup, REQ_RESTART, id, child);
}

RT_API int rt_sup_delete_child(rt_pid sup, const char *id)
{
    return id_request(sup, REQ_DELETE, id, NULL);
}

RT_API int rt_sup_which_children(rt_pid sup, rt_sup_child_info *out, size_t cap)
{
    if (out == NULL && cap > 0)
        return -EINVAL;
    struct req q = {.cap = cap};
    rt_msg *m;
    int rc = rt_call(sup, REQ_WHICH, &q, sizeof q, RT_INFINITY, &m);
    if (rc < 0)
        return rc;
    int count = -EPROTO;
    if (m->size >= sizeof count)
        memcpy(&count, m->data, sizeof count);
    if (count > 0 && cap > 0 && m->size >= WHICH_HDR) {
        size_t k = (m->size - WHICH_HDR) / sizeof(rt_sup_child_info);
        memcpy(out, (char *)m->data + WHICH_HDR, k * sizeof(rt_sup_child_info));
    }
    rt_msg_free(m);
    return count;
}

RT_API int rt_sup_count_children(rt_pid sup, rt_sup_counts *out)
{
    if (out == NULL)
        return -EINVAL;
    struct req q = {0};
    rt_msg *m;
    int rc = rt_call(sup, REQ_COUNT, &q, sizeof q, RT_INFINITY, &m);
    if (rc < 0)
        return rc;
    if (m->size == sizeof *out)
        memcpy(out, m->data, sizeof *out);
    else
        rc = -EPROTO;
    rt_msg_free(m);
    return rc;
}
