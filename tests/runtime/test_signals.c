/* test_signals: links, exit signals, trap_exits, monitors, the registry. */
#include <unistd.h>

#include "rt_test.h"

static rt_exit_info recv_exit(void)
{
    rt_msg *m = test_recv_tag(RT_MSG_EXIT, 5000);
    rt_exit_info e;
    memcpy(&e, m->data, sizeof e);
    rt_msg_free(m);
    return e;
}

static rt_down_info recv_down(void)
{
    rt_msg *m = test_recv_tag(RT_MSG_DOWN, 5000);
    rt_down_info d;
    memcpy(&d, m->data, sizeof d);
    rt_msg_free(m);
    return d;
}

static void forever(void *arg)
{
    rt_msg *m;
    for (;;) {
        if (rt_receive(RT_INFINITY, &m) == 0) {
            int r = m->tag == 66 ? -EIO : 0;
            rt_msg_free(m);
            if (r)
                rt_exit_self(r);
        }
    }
}

static void returns(void *arg) {}

/* ---- links ----------------------------------------------------------------------- */

#define CHAIN 10

static void chain_body(void *arg)
{
    rt_trap_exits(true);
    rt_pid chain[CHAIN];
    rt_ref refs[CHAIN];
    /* linked to ten processes, one at spawn and nine by rt_link; one dies
     * with an error: we (trapping) get a message and live, the others are
     * untouched; then each killed one is a message too */
    cr_assert_eq(rt_spawn(forever, NULL, &(rt_spawn_opts){.link = true}, &chain[0]), 0);
    for (int i = 1; i < CHAIN; i++)
        cr_assert_eq(rt_spawn(forever, NULL, NULL, &chain[i]), 0);
    for (int i = 1; i < CHAIN; i++)
        cr_assert_eq(rt_link(chain[i]), 0);
    for (int i = 0; i < CHAIN; i++)
        rt_monitor(chain[i], &refs[i]);
    rt_send(chain[CHAIN - 1], 66, NULL, 0);
    rt_exit_info e = recv_exit();
    cr_assert(rt_pid_eq(e.from, chain[CHAIN - 1]));
    cr_assert_eq(e.reason, -EIO);
    /* the others are still alive: they were linked only to us */
    for (int i = 0; i < CHAIN - 1; i++)
        cr_assert(rt_alive(chain[i]));
    for (int i = 0; i < CHAIN - 1; i++)
        rt_exit(chain[i], RT_EXIT_KILL);
    for (int i = 0; i < CHAIN - 1; i++) {
        e = recv_exit();
        cr_assert_eq(e.reason, RT_EXIT_KILLED);
    }
    for (int i = 0; i < CHAIN; i++)
        recv_down();
}

Test(signals, trap_exits_turns_signals_into_messages)
{
    test_start(2);
    cr_assert_eq(test_run(chain_body, NULL, 20000), 0);
    test_stop();
}

/* A real chain: each link spawns the next linked to itself; the last dies
 * with an error, which travels back along the chain to the trapping head. */
static void chain_link(void *arg)
{
    intptr_t left = (intptr_t)arg;
    if (left > 0) {
        cr_assert_eq(rt_spawn(chain_link, (void *)(left - 1), &(rt_spawn_opts){.link = true}, NULL),
                     0);
        forever(NULL);
    }
    rt_sleep(20);
    rt_exit_self(-ECONNRESET);
}

static void propagate_body(void *arg)
{
    rt_trap_exits(true);
    rt_pid first;
    cr_assert_eq(
        rt_spawn(chain_link, (void *)(intptr_t)CHAIN, &(rt_spawn_opts){.link = true}, &first), 0);
    rt_exit_info e = recv_exit();
    cr_assert(rt_pid_eq(e.from, first));
    cr_assert_eq(e.reason, -ECONNRESET, "the error travelled the chain: got %s",
                 rt_strerror(e.reason));
}

Test(signals, exit_propagates_along_a_chain_of_links)
{
    test_start(2);
    cr_assert_eq(test_run(propagate_body, NULL, 20000), 0);
    test_stop();
}

static void normal_body(void *arg)
{
    rt_pid p;
    /* not trapping: a linked process ending normally changes nothing */
    cr_assert_eq(rt_spawn(returns, NULL, &(rt_spawn_opts){.link = true}, &p), 0);
    rt_sleep(50);
    /* trapping: it is a message */
    rt_trap_exits(true);
    cr_assert_eq(rt_spawn(returns, NULL, &(rt_spawn_opts){.link = true}, &p), 0);
    rt_exit_info e = recv_exit();
    cr_assert(rt_pid_eq(e.from, p));
    cr_assert_eq(e.reason, RT_EXIT_NORMAL);
    /* kill is not trappable */
    cr_assert_eq(rt_trap_exits(true), 1);
    cr_assert_eq(rt_spawn(forever, NULL, NULL, &p), 0);
    rt_ref r;
    rt_monitor(p, &r);
    rt_exit(p, RT_EXIT_NORMAL); /* ignored by a non-trapping process */
    rt_sleep(20);
    cr_assert(rt_alive(p));
    rt_exit(p, RT_EXIT_SHUTDOWN);
    cr_assert_eq(recv_down().reason, RT_EXIT_SHUTDOWN);
}

Test(signals, normal_exits_and_trapping)
{
    test_start(2);
    cr_assert_eq(test_run(normal_body, NULL, 20000), 0);
    test_stop();
}

static void trapper(void *arg)
{
    rt_trap_exits(true);
    forever(NULL);
}

static void kill_body(void *arg)
{
    rt_pid t;
    cr_assert_eq(rt_spawn(trapper, NULL, NULL, &t), 0);
    rt_sleep(10);
    rt_ref r;
    rt_monitor(t, &r);
    rt_exit(t, RT_EXIT_SHUTDOWN); /* trapped: it lives */
    rt_sleep(20);
    cr_assert(rt_alive(t));
    rt_exit(t, RT_EXIT_KILL);
    rt_down_info d = recv_down();
    cr_assert_eq(d.reason, RT_EXIT_KILLED, "got %s", rt_strerror(d.reason));
}

Test(signals, kill_is_untrappable)
{
    test_start(2);
    cr_assert_eq(test_run(kill_body, NULL, 20000), 0);
    test_stop();
}

static void unlink_body(void *arg)
{
    rt_pid p;
    cr_assert_eq(rt_spawn(forever, NULL, NULL, &p), 0);
    cr_assert_eq(rt_link(p), 0);
    cr_assert_eq(rt_link(p), 0, "links are idempotent");
    cr_assert_eq(rt_unlink(p), 0);
    cr_assert_eq(rt_link(rt_self()), -EINVAL);
    rt_send(p, 66, NULL, 0); /* it dies with -EIO; we are no longer linked */
    rt_sleep(50);
    cr_assert_not(rt_alive(p));
    cr_assert_eq(rt_link(p), -ESRCH);
}

Test(signals, unlink_stops_propagation)
{
    test_start(2);
    cr_assert_eq(test_run(unlink_body, NULL, 20000), 0);
    test_stop();
}

/* ---- monitors ------------------------------------------------------------------------ */

static void monitor_body(void *arg)
{
    rt_pid p;
    rt_ref r1, r2;
    cr_assert_eq(rt_spawn(forever, NULL, NULL, &p), 0);
    cr_assert_eq(rt_monitor(p, &r1), 0);
    cr_assert_eq(rt_monitor(p, &r2), 0);
    cr_assert_neq(r1, r2);
    rt_send(p, 66, NULL, 0);
    rt_down_info a = recv_down(), b = recv_down();
    cr_assert(a.ref == r1 || a.ref == r2);
    cr_assert(b.ref == r1 || b.ref == r2);
    cr_assert_neq(a.ref, b.ref);
    cr_assert_eq(a.reason, -EIO);
    cr_assert(rt_pid_eq(a.pid, p));
    /* an already dead pid: DOWN with noproc */
    rt_ref r3;
    cr_assert_eq(rt_monitor(p, &r3), 0);
    rt_down_info c = recv_down();
    cr_assert_eq(c.ref, r3);
    cr_assert_eq(c.reason, RT_EXIT_NOPROC);
    /* demonitor flushes a DOWN already queued */
    rt_pid q;
    rt_ref r4;
    cr_assert_eq(rt_spawn(returns, NULL, NULL, &q), 0);
    cr_assert_eq(rt_monitor(q, &r4), 0);
    rt_sleep(50); /* its DOWN is in our mailbox by now */
    cr_assert_eq(rt_demonitor(r4), 0);
    rt_msg *m;
    cr_assert_eq(rt_receive_tag(RT_MSG_DOWN, 50, &m), -ETIMEDOUT, "a DOWN after demonitor");
    cr_assert_eq(rt_demonitor(r4), -ENOENT);
    cr_assert_eq(rt_monitor(q, NULL), -EINVAL);
}

Test(signals, monitors_and_demonitor_flush)
{
    test_start(2);
    cr_assert_eq(test_run(monitor_body, NULL, 20000), 0);
    test_stop();
}

/* ---- registry ------------------------------------------------------------------------------ */

static void registry_body(void *arg)
{
    rt_pid a, b;
    cr_assert_eq(rt_spawn(forever, NULL, NULL, &a), 0);
    cr_assert_eq(rt_spawn(forever, NULL, NULL, &b), 0);
    cr_assert_eq(rt_register("alpha", a), 0);
    cr_assert(rt_pid_eq(rt_whereis("alpha"), a));
    cr_assert_eq(rt_register("alpha", b), -EEXIST, "a taken name");
    cr_assert_eq(rt_register("beta", a), -EEXIST, "a process with a name already");
    cr_assert_eq(rt_register(NULL, a), -EINVAL);
    cr_assert_eq(rt_register("", a), -EINVAL);
    char longname[RT_NAME_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    cr_assert_eq(rt_register(longname, a), -EINVAL);
    cr_assert(rt_pid_is_none(rt_whereis("nobody")));
    cr_assert_eq(rt_unregister("alpha"), 0);
    cr_assert_eq(rt_unregister("alpha"), -ENOENT);
    cr_assert(rt_pid_is_none(rt_whereis("alpha")));
    cr_assert_eq(rt_register("alpha", b), 0);
    /* a name is freed when its process ends */
    rt_ref r;
    rt_monitor(b, &r);
    rt_exit(b, RT_EXIT_KILL);
    recv_down();
    cr_assert(rt_pid_is_none(rt_whereis("alpha")));
    cr_assert_eq(rt_register("gamma", b), -ESRCH);
    rt_exit(a, RT_EXIT_KILL);
}

Test(signals, registry)
{
    test_start(2);
    cr_assert_eq(test_run(registry_body, NULL, 20000), 0);
    test_stop();
}

Test(signals, exit_from_outside_a_process)
{
    test_start(2);
    rt_pid p;
    cr_assert_eq(rt_spawn(forever, NULL, &(rt_spawn_opts){.joinable = true}, &p), 0);
    cr_assert_eq(rt_exit(p, -ETIME), 0);
    int reason = 0;
    cr_assert_eq(rt_join(p, 5000, &reason), 0);
    cr_assert_eq(reason, -ETIME);
    cr_assert_eq(rt_exit(p, -ETIME), -ESRCH);
    test_stop();
}

Test(signals, strerror_names_every_code)
{
    cr_assert_str_eq(rt_strerror(0), "normal");
    cr_assert_str_eq(rt_errname(RT_ENOTPROC), "RT_ENOTPROC");
    cr_assert_str_eq(rt_errname(-ESRCH), "ESRCH");
    cr_assert_str_eq(rt_strerror(RT_EXIT_KILLED), "killed");
    cr_assert_str_eq(rt_strerror(-ECONNREFUSED), "Connection refused");
    cr_assert_str_eq(rt_strerror(42), "exit reason 42");
    cr_assert_null(rt_errname(42));
}
