/* test_timers: rt_sleep, rt_send_after, rt_cancel_timer. Tolerance for
 * lateness on this shared 2-core machine: 60 ms. Never early. */
#include "rt_test.h"

#define LATE_MS 60

static void sleep_body(void *arg)
{
    int64_t *worst = arg;
    int ms[] = {1, 10, 50, 120};
    for (unsigned i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        int64_t t0 = rt_now_ms();
        cr_assert_eq(rt_sleep(ms[i]), 0);
        int64_t dt = rt_now_ms() - t0;
        cr_assert_geq(dt, ms[i], "rt_sleep(%d) returned after %lld ms", ms[i], (long long)dt);
        if (dt - ms[i] > *worst)
            *worst = dt - ms[i];
    }
    cr_assert_eq(rt_sleep(-1), -EINVAL);
    cr_assert_eq(rt_sleep(0), 0);
}

Test(timers, sleep_never_early_rarely_late)
{
    test_start(2);
    int64_t worst = 0;
    cr_assert_eq(test_run(sleep_body, &worst, 10000), 0);
    cr_log_info("worst rt_sleep lateness: %lld ms", (long long)worst);
    cr_assert_leq(worst, LATE_MS);
    test_stop();
}

static void after_body(void *arg)
{
    rt_pid self = rt_self();
    int order[] = {30, 10, 20};
    int64_t t0 = rt_now_ms();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rt_send_after(self, order[i], 5, &order[i], sizeof(int), NULL), 0);
    int expect[] = {10, 20, 30};
    for (int i = 0; i < 3; i++) {
        rt_msg *m = test_recv_tag(5, 2000);
        int64_t dt = rt_now_ms() - t0;
        cr_assert_eq(*(int *)m->data, expect[i]);
        cr_assert_geq(dt, expect[i], "timer %d fired at %lld ms", expect[i], (long long)dt);
        cr_assert_leq(dt, expect[i] + LATE_MS);
        rt_msg_free(m);
    }
}

Test(timers, send_after_in_deadline_order)
{
    test_start(2);
    cr_assert_eq(test_run(after_body, NULL, 10000), 0);
    test_stop();
}

static void cancel_body(void *arg)
{
    rt_pid self = rt_self();
    rt_timer t;
    cr_assert_eq(rt_send_after(self, 50, 6, NULL, 0, &t), 0);
    cr_assert_eq(rt_cancel_timer(t), 0);
    cr_assert_eq(rt_cancel_timer(t), -ENOENT, "cancelled twice");
    rt_msg *m;
    cr_assert_eq(rt_receive_tag(6, 150, &m), -ETIMEDOUT, "a cancelled timer fired");
    cr_assert_eq(rt_send_after(self, 1, 7, NULL, 0, &t), 0);
    m = test_recv_tag(7, 1000);
    rt_msg_free(m);
    cr_assert_eq(rt_cancel_timer(t), -ENOENT, "cancel after firing");
    cr_assert_eq(rt_cancel_timer(0), -EINVAL);
    cr_assert_eq(rt_send_after(self, -1, 7, NULL, 0, NULL), -EINVAL);
    cr_assert_eq(rt_send_after(self, 1, RT_MSG_DOWN, NULL, 0, NULL), -EINVAL);
    cr_assert_eq(rt_send_after(self, 1, 7, NULL, 4, NULL), -EINVAL);
}

Test(timers, cancel_before_and_after)
{
    test_start(2);
    cr_assert_eq(test_run(cancel_body, NULL, 10000), 0);
    test_stop();
}

static void gone(void *arg) {}

static void many_body(void *arg)
{
    rt_pid self = rt_self(), dead;
    cr_assert_eq(rt_spawn(gone, NULL, NULL, &dead), 0);
    cr_assert_eq(rt_send_after(dead, 5, 8, "x", 1, NULL), 0, "to a pid about to be gone");
    const int n = 10000;
    for (int i = 0; i < n; i++)
        cr_assert_eq(rt_send_after(self, i % 100, 9, &i, sizeof i, NULL), 0);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        rt_msg *m = test_recv_tag(9, 5000);
        sum += *(int *)m->data;
        rt_msg_free(m);
    }
    cr_assert_eq(sum, (long)n * (n - 1) / 2);
    rt_sleep(20); /* the timer to the dead pid has fired into nothing */
    rt_stats st;
    rt_stats_get(&st);
    cr_assert_eq(st.timers_live, 0);
}

Test(timers, ten_thousand_timers_and_a_dead_target)
{
    test_start(2);
    cr_assert_eq(test_run(many_body, NULL, 20000), 0);
    test_stop();
}

Test(timers, from_outside_a_process)
{
    test_start(2);
    rt_pid p;
    cr_assert_eq(rt_spawn(gone, NULL, &(rt_spawn_opts){.joinable = true}, &p), 0);
    cr_assert_eq(rt_join(p, 1000, NULL), 0);
    rt_timer t;
    cr_assert_eq(rt_send_after(p, 1000, 1, NULL, 0, &t), 0);
    cr_assert_eq(rt_cancel_timer(t), 0);
    test_stop();
}
