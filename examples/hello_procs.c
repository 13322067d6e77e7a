/* hello_procs: a tour of the rt runtime in one program.
 *
 *  - a callback actor, registered as "counter", that sums what it is sent;
 *  - stackful workers that send to it by name and exit;
 *  - a boss process that traps exits, links to a worker that crashes, and
 *    sees the crash as a message; monitors another and sees its DOWN;
 *  - a timer message, and a selective receive that leaves others queued.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rt/rt.h>

enum { TAG_ADD = 1, TAG_GET, TAG_TOTAL, TAG_TICK, TAG_OTHER };

/* ---- the counter: a callback actor --------------------------------------- */

struct counter {
    long total;
};

static void counter_handle(void *state, rt_msg *m)
{
    struct counter *c = state;
    if (m->tag == TAG_ADD) {
        long v;
        memcpy(&v, m->data, sizeof v);
        c->total += v;
    } else if (m->tag == TAG_GET) {
        rt_send(m->from, TAG_TOTAL, &c->total, sizeof c->total);
    }
}

static const rt_actor_ops counter_ops = {
    .state_size = sizeof(struct counter),
    .handle = counter_handle,
};

/* ---- workers -------------------------------------------------------------------- */

static void adder(void *arg)
{
    long n = (long)arg;
    rt_pid counter = rt_whereis("counter");
    for (long i = 1; i <= n; i++)
        rt_send(counter, TAG_ADD, &i, sizeof i);
}

static void crasher(void *arg)
{
    rt_sleep(10);
    rt_exit_self(-EPIPE); /* "crash" with an error as the reason */
}

static void napper(void *arg)
{
    rt_sleep(20);
}

static void boss(void *arg)
{
    rt_trap_exits(true);

    /* 1. ten stackful workers add 1..100 each to the counter */
    for (int i = 0; i < 10; i++)
        rt_spawn(adder, (void *)100L, NULL, NULL);

    /* 2. a linked worker crashes: trapping, we get a message, not a crash */
    rt_pid c;
    rt_spawn(crasher, NULL, &(rt_spawn_opts){.link = true}, &c);
    rt_msg *m;
    if (rt_receive_tag(RT_MSG_EXIT, 1000, &m) == 0) {
        rt_exit_info *e = m->data;
        printf("boss: linked worker exited: %s\n", rt_strerror(e->reason));
        rt_msg_free(m);
    }

    /* 3. a monitor on a short-lived worker */
    rt_pid w;
    rt_ref ref;
    rt_spawn(napper, NULL, NULL, &w);
    rt_monitor(w, &ref);
    if (rt_receive_tag(RT_MSG_DOWN, 1000, &m) == 0) {
        rt_down_info *d = m->data;
        printf("boss: monitored worker is down: %s\n", rt_strerror(d->reason));
        rt_msg_free(m);
    }

    /* 4. a timer, and selective receive: TAG_OTHER stays queued meanwhile */
    rt_send(rt_self(), TAG_OTHER, "later", 6);
    rt_send_after(rt_self(), 50, TAG_TICK, NULL, 0, NULL);
    int64_t t0 = rt_now_ms();
    if (rt_receive_tag(TAG_TICK, 1000, &m) == 0) {
        printf("boss: timer fired after %lld ms; %d message(s) still queued\n",
               (long long)(rt_now_ms() - t0), rt_mailbox_len());
        rt_msg_free(m);
    }
    if (rt_receive(0, &m) == 0) {
        printf("boss: then took the queued message: \"%s\"\n", (char *)m->data);
        rt_msg_free(m);
    }

    /* 5. ask the counter for the total (the adders have long finished) */
    rt_sleep(20);
    rt_send(rt_whereis("counter"), TAG_GET, NULL, 0);
    if (rt_receive_tag(TAG_TOTAL, 1000, &m) == 0) {
        long total;
        memcpy(&total, m->data, sizeof total);
        printf("boss: counter total = %ld (expected %ld)\n", total, 10 * 5050L);
        rt_msg_free(m);
        if (total != 10 * 5050L)
            rt_exit_self(-EPROTO);
    }
}

int main(void)
{
    int rc = rt_start(NULL);
    if (rc < 0) {
        fprintf(stderr, "rt_start: %s\n", rt_strerror(rc));
        return 1;
    }
    rt_pid counter, b;
    rt_spawn_actor(&counter_ops, NULL, NULL, &counter);
    rt_register("counter", counter);
    rt_spawn(boss, NULL, &(rt_spawn_opts){.joinable = true}, &b);
    int reason;
    rt_join(b, 10000, &reason);
    printf("boss ended: %s\n", rt_strerror(reason));

    rt_stats leaks;
    rc = rt_stop(1000, &leaks);
    printf("runtime stopped (%s): %llu processes, %llu messages, %llu timers left\n",
           rc == 0 ? "ok" : rt_strerror(rc), (unsigned long long)leaks.procs_live,
           (unsigned long long)leaks.msgs_live, (unsigned long long)leaks.timers_live);
    return reason == RT_EXIT_NORMAL && rc == 0 && leaks.procs_live == 0 && leaks.msgs_live == 0 ? 0
                                                                                                : 1;
}
