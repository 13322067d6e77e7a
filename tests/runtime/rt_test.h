/* rt_test.h: what every runtime test does: start the runtime, run its body
 * in a process, and prove at the end that nothing leaked. */
#ifndef RT_TEST_H
#define RT_TEST_H

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <rt/rt.h>

/* Timing tolerances, for the tests whose behaviour is a time (a timeout
 * firing, a wake-up): sanitizer builds run several times slower. */
#if defined(RT_SANITIZE_ADDRESS) || defined(RT_SANITIZE_THREAD)
#define SLACK_MS 250
#else
#define SLACK_MS 100
#endif

static inline int test_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int test_fds_at_start;

static inline void test_start(unsigned schedulers)
{
    test_fds_at_start = test_count_fds();
    int rc = rt_start(&(rt_opts){.schedulers = schedulers});
    cr_assert_eq(rc, 0, "rt_start: %s", rt_strerror(rc));
}

static inline void test_start_opts(const rt_opts *o)
{
    test_fds_at_start = test_count_fds();
    int rc = rt_start(o);
    cr_assert_eq(rc, 0, "rt_start: %s", rt_strerror(rc));
}

/* Stop within `ms`, and prove the runtime returned everything. */
static inline void test_stop_within(int ms)
{
    rt_stats l;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = rt_stop(ms, &l);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_log_info("rt_stop: %.0f ms",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    cr_assert_eq(rc, 0, "rt_stop: %s", rt_strerror(rc));
    cr_assert_eq(l.procs_live, 0, "%llu processes leaked", (unsigned long long)l.procs_live);
    cr_assert_eq(l.msgs_live, 0, "%llu messages leaked", (unsigned long long)l.msgs_live);
    cr_assert_eq(l.timers_live, 0, "%llu timers left armed", (unsigned long long)l.timers_live);
    cr_assert_eq(test_count_fds(), test_fds_at_start, "file descriptors leaked");
}

static inline void test_stop(void)
{
    test_stop_within(2000);
}

/* Run fn(arg) in a stackful process; return its exit reason. */
static inline int test_run(void (*fn)(void *), void *arg, int timeout_ms)
{
    rt_pid p;
    int rc = rt_spawn(fn, arg, &(rt_spawn_opts){.joinable = true}, &p);
    cr_assert_eq(rc, 0, "rt_spawn: %s", rt_strerror(rc));
    int reason = 0;
    rc = rt_join(p, timeout_ms, &reason);
    cr_assert_eq(rc, 0, "rt_join: %s", rt_strerror(rc));
    return reason;
}

/* Receive one message with `tag` within `ms`, or end the process with a
 * reason the test reports. */
static inline rt_msg *test_recv_tag(uint32_t tag, int ms)
{
    rt_msg *m = NULL;
    int rc = rt_receive_tag(tag, ms, &m);
    if (rc != 0)
        rt_exit_self(rc);
    return m;
}

#endif
