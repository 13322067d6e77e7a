/* test_supervision: supervisors with OTP semantics, and rt_call/rt_reply. */
#include <stdio.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "rt_test.h"

#define CRASH 66
#define STOP  67

/* A log of events, shared by children and the test body. */
static struct {
    _Atomic int n;
    char ev[256][16];
} log_;

static void log_event(const char *fmt, const char *id)
{
    int i = atomic_fetch_add(&log_.n, 1);
    if (i < 256)
        snprintf(log_.ev[i], sizeof log_.ev[i], fmt, id);
}

static int count_event(const char *e)
{
    int c = 0, n = atomic_load(&log_.n);
    for (int i = 0; i < n && i < 256; i++)
        c += strcmp(log_.ev[i], e) == 0;
    return c;
}

/* A child: logs its start; on CRASH exits with -EIO, on STOP returns; on
 * the shutdown exit signal (it traps exits) logs "stop:<id>" and exits. */
static void child(void *arg)
{
    const char *id = arg;
    rt_trap_exits(true);
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) != 0)
            continue;
        uint32_t tag = m->tag;
        int reason = 0;
        if (tag == RT_MSG_EXIT)
            memcpy(&reason, (char *)m->data + offsetof(rt_exit_info, reason), sizeof reason);
        rt_msg_free(m);
        if (tag == CRASH)
            rt_exit_self(-EIO);
        if (tag == STOP)
            return;
        if (tag == RT_MSG_EXIT) {
            log_event("stop:%s", id);
            rt_exit_self(reason);
        }
    }
}

static int start_child(void *arg, rt_pid *out)
{
    log_event("start:%s", arg);
    return rt_spawn(child, arg, &(rt_spawn_opts){.link = true}, out);
}

static rt_pid child_pid(rt_pid sup, const char *id)
{
    rt_sup_child_info info[16];
    int n = rt_sup_which_children(sup, info, 16);
    for (int i = 0; i < n && i < 16; i++)
        if (strcmp(info[i].id, id) == 0)
            return info[i].pid;
    return RT_PID_NONE;
}

/* Send `tag` to child `id` and wait until its slot shows a new pid (or
 * none). */
static rt_pid poke(rt_pid sup, const char *id, uint32_t tag)
{
    rt_pid old = child_pid(sup, id);
    cr_assert_eq(rt_send(old, tag, NULL, 0), 0);
    for (int i = 0; i < 500; i++) {
        rt_sleep(2);
        rt_pid now = child_pid(sup, id);
        if (!rt_pid_eq(now, old) && !rt_alive(old))
            return now;
    }
    cr_assert_fail("child %s did not end", id);
    return RT_PID_NONE;
}

struct strat_case {
    rt_strategy strategy;
    rt_restart restart;
    uint32_t how;             /* CRASH or STOP */
    char expect_restarted[4]; /* ids restarted ("b", "abc", ""): no pointers, the
                               * parameters cross into a re-executed worker */
};

static void strategy_body(void *arg)
{
    const struct strat_case *c = arg;
    atomic_store(&log_.n, 0);
    rt_child_spec specs[3] = {
        {.id = "a", .start = start_child, .arg = "a", .restart = c->restart, .shutdown_ms = 1000},
        {.id = "b", .start = start_child, .arg = "b", .restart = c->restart, .shutdown_ms = 1000},
        {.id = "c", .start = start_child, .arg = "c", .restart = c->restart, .shutdown_ms = 1000}};
    rt_pid sup;
    int rc = rt_sup_start(&(rt_sup_flags){c->strategy, 5, 5000}, specs, 3, &sup);
    cr_assert_eq(rc, 0, "rt_sup_start: %s", rt_strerror(rc));
    rt_pid before[3] = {child_pid(sup, "a"), child_pid(sup, "b"), child_pid(sup, "c")};
    poke(sup, "b", c->how);
    rt_sleep(20);
    const char *ids[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        bool restarted = strchr(c->expect_restarted, ids[i][0]) != NULL;
        char ev[16];
        snprintf(ev, sizeof ev, "start:%s", ids[i]);
        cr_assert_eq(count_event(ev), restarted ? 2 : 1, "%s started %d times", ids[i],
                     count_event(ev));
        rt_pid now = child_pid(sup, ids[i]);
        if (restarted)
            cr_assert(!rt_pid_eq(now, before[i]) && rt_alive(now), "%s not restarted", ids[i]);
        else if (i != 1)
            cr_assert(rt_pid_eq(now, before[i]), "%s was touched", ids[i]);
    }
    /* a temporary child, or a transient one that ended normally, is gone */
    bool b_gone = c->restart == RT_TEMPORARY || (c->restart == RT_TRANSIENT && c->how == STOP);
    if (b_gone && c->restart == RT_TEMPORARY)
        cr_assert(rt_pid_is_none(child_pid(sup, "b")) && rt_sup_which_children(sup, NULL, 0) == 2,
                  "a temporary child is forgotten");
    rt_unlink(sup);
    rt_exit(sup, RT_EXIT_KILL);
}

static struct strat_case cases[] = {
    {RT_ONE_FOR_ONE, RT_PERMANENT, CRASH, "b"},   {RT_ONE_FOR_ONE, RT_PERMANENT, STOP, "b"},
    {RT_ONE_FOR_ONE, RT_TRANSIENT, CRASH, "b"},   {RT_ONE_FOR_ONE, RT_TRANSIENT, STOP, ""},
    {RT_ONE_FOR_ONE, RT_TEMPORARY, CRASH, ""},    {RT_ONE_FOR_ALL, RT_PERMANENT, CRASH, "abc"},
    {RT_ONE_FOR_ALL, RT_TRANSIENT, STOP, ""},     {RT_ONE_FOR_ALL, RT_TEMPORARY, CRASH, ""},
    {RT_REST_FOR_ONE, RT_PERMANENT, CRASH, "bc"}, {RT_REST_FOR_ONE, RT_TRANSIENT, CRASH, "bc"},
    {RT_REST_FOR_ONE, RT_TEMPORARY, CRASH, ""},
};

ParameterizedTestParameters(sup, strategies)
{
    return cr_make_param_array(struct strat_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct strat_case *c, sup, strategies)
{
    test_start(2);
    cr_assert_eq(test_run(strategy_body, c, 20000), 0);
    test_stop();
}

/* ---- intensity ----------------------------------------------------------------------- */

static void storm_body(void *arg)
{
    rt_trap_exits(true);
    atomic_store(&log_.n, 0);
    rt_child_spec spec = {.id = "w", .start = start_child, .arg = "w", .shutdown_ms = 100};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(&(rt_sup_flags){RT_ONE_FOR_ONE, 3, 10000}, &spec, 1, &sup), 0);
    /* three restarts are allowed within the period... */
    for (int i = 0; i < 3; i++)
        poke(sup, "w", CRASH);
    cr_assert(rt_alive(sup));
    /* ...the fourth is one too many: the supervisor ends with shutdown */
    rt_send(child_pid(sup, "w"), CRASH, NULL, 0);
    rt_msg *m = test_recv_tag(RT_MSG_EXIT, 5000);
    rt_exit_info e;
    memcpy(&e, m->data, sizeof e);
    rt_msg_free(m);
    cr_assert(rt_pid_eq(e.from, sup));
    cr_assert_eq(e.reason, RT_EXIT_SHUTDOWN, "got %s", rt_strerror(e.reason));
}

Test(sup, restart_intensity)
{
    test_start(2);
    cr_assert_eq(test_run(storm_body, NULL, 20000), 0);
    test_stop();
}

static void spread_body(void *arg)
{
    rt_child_spec spec = {.id = "w", .start = start_child, .arg = "w", .shutdown_ms = 100};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(&(rt_sup_flags){RT_ONE_FOR_ONE, 1, 100}, &spec, 1, &sup), 0);
    for (int i = 0; i < 4; i++) {
        poke(sup, "w", CRASH);
        rt_sleep(150); /* restarts further apart than the period are fine */
    }
    cr_assert(rt_alive(sup));
    rt_sup_counts c;
    cr_assert_eq(rt_sup_count_children(sup, &c), 0);
    cr_assert_eq(c.restarts, 4);
    cr_assert_eq(c.active, 1);
    rt_unlink(sup);
    rt_exit(sup, RT_EXIT_KILL);
}

Test(sup, restarts_spread_over_the_period_are_allowed)
{
    test_start(2);
    cr_assert_eq(test_run(spread_body, NULL, 20000), 0);
    test_stop();
}

/* ---- shutdown ------------------------------------------------------------------------------ */

static void stubborn(void *arg)
{
    rt_trap_exits(true);
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) == 0)
            rt_msg_free(m); /* ignores the shutdown signal */
    }
}

static int start_stubborn(void *arg, rt_pid *out)
{
    return rt_spawn(stubborn, arg, &(rt_spawn_opts){.link = true}, out);
}

static void shutdown_sender(void *arg)
{
    rt_exit(*(rt_pid *)arg, RT_EXIT_SHUTDOWN);
}

static void shutdown_body(void *arg)
{
    atomic_store(&log_.n, 0);
    rt_child_spec specs[4] = {{.id = "a", .start = start_child, .arg = "a", .shutdown_ms = 1000},
                              {.id = "b", .start = start_child, .arg = "b", .shutdown_ms = 1000},
                              {.id = "s", .start = start_stubborn, .shutdown_ms = 200},
                              {.id = "c", .start = start_child, .arg = "c", .shutdown_ms = 1000}};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(NULL, specs, 4, &sup), 0);
    rt_pid s = child_pid(sup, "s");
    rt_pid other;
    cr_assert_eq(rt_spawn(shutdown_sender, &sup, NULL, &other), 0);
    rt_sleep(30);
    cr_assert(rt_alive(sup), "a supervisor ignores exit signals from non-children");
    int64_t t0 = rt_now_ms();
    cr_assert_eq(rt_sup_terminate_child(sup, "s"), 0);
    int64_t dt = rt_now_ms() - t0;
    cr_assert_not(rt_alive(s));
    cr_assert_geq(dt, 200, "the stubborn child was killed before its 200 ms (%lld)", (long long)dt);
    cr_assert_leq(dt, 800, "killing took %lld ms", (long long)dt);
    cr_assert_eq(rt_sup_restart_child(sup, "s", NULL), 0);
    cr_assert_eq(rt_sup_restart_child(sup, "s", NULL), -EBUSY);
    cr_assert_eq(rt_sup_delete_child(sup, "s"), -EBUSY);
    cr_assert_eq(rt_sup_terminate_child(sup, "s"), 0);
    cr_assert_eq(rt_sup_delete_child(sup, "s"), 0);
    cr_assert_eq(rt_sup_delete_child(sup, "s"), -ENOENT);
    cr_assert_eq(rt_sup_terminate_child(sup, "nope"), -ENOENT);
    cr_assert_eq(rt_sup_terminate_child(sup, NULL), -EINVAL);
    rt_unlink(sup);
    rt_exit(sup, RT_EXIT_KILL);
}

Test(sup, shutdown_timeouts_and_child_management)
{
    test_start(2);
    cr_assert_eq(test_run(shutdown_body, NULL, 20000), 0);
    test_stop();
}

static int start_order_sup(void *arg, rt_pid *out);

static void order_body(void *arg)
{
    atomic_store(&log_.n, 0);
    rt_child_spec specs[2] = {{.id = "x", .start = start_child, .arg = "x", .shutdown_ms = 1000},
                              {.id = "inner", .start = start_order_sup, .type = RT_SUPERVISOR}};
    rt_pid top;
    cr_assert_eq(rt_sup_start(NULL, specs, 2, &top), 0);
    rt_pid inner = child_pid(top, "inner");
    cr_assert_eq(rt_sup_which_children(inner, NULL, 0), 3, "the nested supervisor's children");
    /* the parent ends: the tree stops, last started first */
    rt_trap_exits(true);
    rt_ref r;
    rt_monitor(top, &r);
    rt_exit(top, RT_EXIT_SHUTDOWN); /* from its parent: stops */
    rt_msg *m = test_recv_tag(RT_MSG_DOWN, 10000);
    rt_msg_free(m);
    const char *expect[] = {"start:x", "start:a", "start:b", "start:c",
                            "stop:c",  "stop:b",  "stop:a",  "stop:x"};
    cr_assert_eq(atomic_load(&log_.n), 8, "4 starts and 4 stops, got %d", atomic_load(&log_.n));
    for (int i = 0; i < 8; i++)
        cr_assert_str_eq(log_.ev[i], expect[i], "event %d", i);
}

static int start_order_sup(void *arg, rt_pid *out)
{
    rt_child_spec specs[3] = {{.id = "a", .start = start_child, .arg = "a", .shutdown_ms = 1000},
                              {.id = "b", .start = start_child, .arg = "b", .shutdown_ms = 1000},
                              {.id = "c", .start = start_child, .arg = "c", .shutdown_ms = 1000}};
    return rt_sup_start(NULL, specs, 3, out);
}

Test(sup, nested_tree_stops_in_reverse_order)
{
    test_start(2);
    cr_assert_eq(test_run(order_body, NULL, 20000), 0);
    test_stop();
}

static int start_fails(void *arg, rt_pid *out)
{
    return -EADDRINUSE;
}

static void failing_body(void *arg)
{
    atomic_store(&log_.n, 0);
    rt_child_spec specs[3] = {{.id = "a", .start = start_child, .arg = "a", .shutdown_ms = 1000},
                              {.id = "bad", .start = start_fails},
                              {.id = "c", .start = start_child, .arg = "c", .shutdown_ms = 1000}};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(NULL, specs, 3, &sup), -EADDRINUSE);
    cr_assert_eq(count_event("start:a"), 1);
    cr_assert_eq(count_event("stop:a"), 1, "the child started before the failure was stopped");
    cr_assert_eq(count_event("start:c"), 0);
    rt_child_spec dup[2] = {{.id = "a", .start = start_child}, {.id = "a", .start = start_child}};
    cr_assert_eq(rt_sup_start(NULL, dup, 2, &sup), -EINVAL);
    cr_assert_eq(rt_sup_start(&(rt_sup_flags){.strategy = 9}, NULL, 0, &sup), -EINVAL);
    rt_child_spec nostart = {.id = "n"};
    cr_assert_eq(rt_sup_start(NULL, &nostart, 1, &sup), -EINVAL);
}

Test(sup, a_failing_start_fails_the_supervisor)
{
    test_start(2);
    cr_assert_eq(test_run(failing_body, NULL, 20000), 0);
    test_stop();
}

/* ---- simple_one_for_one ---------------------------------------------------------------------- */

static void idle_handle(void *st, rt_msg *m) {}
static const rt_actor_ops idle_ops = {.handle = idle_handle};

static int start_actor(void *arg, rt_pid *out)
{
    return rt_spawn_actor(&idle_ops, arg, NULL, out);
}

static void simple_body(void *arg)
{
    rt_child_spec tmpl = {
        .id = "w", .start = start_actor, .restart = RT_TEMPORARY, .shutdown_ms = 5000};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(&(rt_sup_flags){.strategy = RT_SIMPLE_ONE_FOR_ONE}, &tmpl, 1, &sup),
                 0);
    const int n = 10000;
    rt_pid first = RT_PID_NONE;
    for (int i = 0; i < n; i++) {
        rt_pid p;
        cr_assert_eq(rt_sup_start_child(sup, NULL, &p), 0);
        if (i == 0)
            first = p;
    }
    rt_sup_counts c;
    cr_assert_eq(rt_sup_count_children(sup, &c), 0);
    cr_assert_eq(c.active, n);
    cr_assert_eq(c.specs, 1);
    cr_assert_eq(rt_sup_terminate_child_pid(sup, first), 0);
    cr_assert_not(rt_alive(first));
    cr_assert_eq(rt_sup_terminate_child_pid(sup, first), -ENOENT);
    cr_assert_eq(rt_sup_count_children(sup, &c), 0);
    cr_assert_eq(c.active, n - 1);
    cr_assert_eq(rt_sup_add_child(sup, &tmpl, NULL), -EINVAL, "not for simple_one_for_one");
    rt_stats st;
    rt_stats_get(&st);
    cr_assert_geq(st.procs_live, (uint64_t)n);
    rt_ref r;
    rt_monitor(sup, &r);
    rt_unlink(sup);
    rt_exit(sup, RT_EXIT_KILL);
    rt_msg *m = test_recv_tag(RT_MSG_DOWN, 10000);
    rt_msg_free(m);
}

Test(sup, simple_one_for_one_ten_thousand)
{
    test_start(2);
    cr_assert_eq(test_run(simple_body, NULL, 60000), 0);
    test_stop(); /* the children, linked to the killed supervisor, are gone */
}

/* ---- the root supervisor --------------------------------------------------------------------- */

Test(sup, root_supervisor_stops_with_the_runtime)
{
    test_start(2);
    atomic_store(&log_.n, 0);
    rt_pid root = rt_sup_root();
    cr_assert_not(rt_pid_is_none(root));
    cr_assert(rt_pid_eq(rt_sup_root(), root));
    rt_child_spec s = {.id = "kid", .start = start_child, .arg = "kid", .shutdown_ms = 1000};
    rt_pid kid;
    cr_assert_eq(rt_sup_add_child(root, &s, &kid), 0);
    cr_assert_eq(rt_sup_add_child(root, &s, NULL), -EEXIST);
    cr_assert(rt_alive(kid));
    test_stop();
    cr_assert_eq(count_event("stop:kid"), 1, "the child saw the shutdown");
}

/* ---- a restart storm, measured (no assertion on speed) ----------------------------------------
 */

static void storm_rate_body(void *arg)
{
    rt_child_spec spec = {.id = "w", .start = start_actor, .shutdown_ms = 100};
    rt_pid sup;
    cr_assert_eq(rt_sup_start(&(rt_sup_flags){RT_ONE_FOR_ONE, 1000000, 1000}, &spec, 1, &sup), 0);
    int64_t t0 = rt_now_ms();
    int n = 0;
    while (rt_now_ms() - t0 < 500) {
        rt_pid p = child_pid(sup, "w");
        rt_exit(p, RT_EXIT_KILL);
        while (rt_pid_eq(child_pid(sup, "w"), p))
            ;
        n++;
    }
    double secs = (double)(rt_now_ms() - t0) / 1000.0;
    cr_log_info("restart storm: %d restarts in %.2f s = %.0f restarts/s (kill, restart, query)", n,
                secs, n / secs);
    cr_assert_gt(n, 0);
    rt_unlink(sup);
    rt_exit(sup, RT_EXIT_KILL);
}

Test(sup, restart_storm_rate)
{
    test_start(2);
    cr_assert_eq(test_run(storm_rate_body, NULL, 20000), 0);
    test_stop();
}

/* ---- rt_call
 * -------------------------------------------------------------------------------------- */

#define ASK  5
#define DIE  6
#define LATE 7

static void server_handle(void *st, rt_msg *m)
{
    if (m->tag == ASK) {
        int v;
        memcpy(&v, m->data, sizeof v);
        v *= 2;
        rt_reply(m, &v, sizeof v);
    } else if (m->tag == DIE) {
        rt_exit(rt_self(), -EIO);
    }
}

static const rt_actor_ops server_ops = {.handle = server_handle};

static void slow_server(void *arg)
{
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) != 0)
            continue;
        if (m->tag == LATE) {
            rt_sleep(100);
            rt_reply(m, "late", 5);
        }
        rt_msg_free(m);
    }
}

struct call_case {
    rt_pid actor, slow;
};

static void call_body(void *arg)
{
    struct call_case *c = arg;
    int v = 21;
    rt_msg *r;
    cr_assert_eq(rt_call(c->actor, ASK, &v, sizeof v, 1000, &r), 0);
    cr_assert_eq(r->tag, RT_MSG_REPLY);
    cr_assert_eq(*(int *)r->data, 42);
    rt_msg_free(r);
    /* timeout, and the late reply never shows up */
    cr_assert_eq(rt_call(c->slow, LATE, NULL, 0, 20, &r), -ETIMEDOUT);
    rt_sleep(200);
    cr_assert_eq(rt_mailbox_len(), 0, "a late reply was left in the mailbox");
    /* the server dies mid-call */
    cr_assert_eq(rt_call(c->actor, DIE, NULL, 0, 5000, &r), RT_ECALLDOWN);
    cr_assert_eq(rt_call(c->actor, ASK, &v, sizeof v, 1000, &r), -ESRCH);
    cr_assert_eq(rt_call(c->slow, RT_MSG_DOWN, NULL, 0, 1000, &r), -EINVAL);
    cr_assert_eq(rt_mailbox_len(), 0);
}

Test(call, call_reply_timeout_and_dead_server)
{
    test_start(2);
    struct call_case c;
    cr_assert_eq(rt_spawn_actor(&server_ops, NULL, NULL, &c.actor), 0);
    cr_assert_eq(rt_spawn(slow_server, NULL, NULL, &c.slow), 0);
    /* from main, a thread outside the runtime */
    int v = 5;
    rt_msg *r;
    cr_assert_eq(rt_call(c.actor, ASK, &v, sizeof v, 1000, &r), 0);
    cr_assert_eq(*(int *)r->data, 10);
    rt_msg_free(r);
    cr_assert_eq(test_run(call_body, &c, 20000), 0);
    rt_exit(c.slow, RT_EXIT_KILL);
    test_stop();
}

static rt_pid target;
static _Atomic int actor_call_rc = 1;

static void caller_handle(void *st, rt_msg *m)
{
    rt_msg *r;
    atomic_store(&actor_call_rc, rt_call(target, ASK, NULL, 0, 10, &r));
}

static const rt_actor_ops caller_ops = {.handle = caller_handle};

Test(call, not_from_a_callback_actor)
{
    test_start(2);
    cr_assert_eq(rt_spawn_actor(&server_ops, NULL, NULL, &target), 0);
    rt_pid a;
    cr_assert_eq(rt_spawn_actor(&caller_ops, NULL, NULL, &a), 0);
    rt_send(a, 1, NULL, 0);
    for (int i = 0; i < 200 && atomic_load(&actor_call_rc) == 1; i++)
        usleep(5000);
    cr_assert_eq(atomic_load(&actor_call_rc), RT_ENOTPROC);
    test_stop();
}
