/* rt_micro: the runtime's micro-benchmarks, each beside a peer measured in
 * the same run on the same machine (POSIX threads doing the same work, or
 * plain function calls where threads cannot: a million of them), with the
 * ratio. Erlang and Go peers run from bench/run.
 *
 *   rt_micro [--quick] [--csv FILE] [--compare FILE] [--only NAME] [--scheds N]
 *
 * --only NAME: one workload (spawn, memory, pingpong, fanin, ring, skynet,
 * chameneos, big, fjcreate, fjthroughput);
 * --scheds N: only its variants on N schedulers (for profiling one).
 *
 * Prints a table; with --csv, one line per measurement:
 *   workload,variant,value,unit,peer,peer_value,ratio
 * where ratio > 1 means the runtime did better than the peer. Every
 * workload checks its own result and exits 1 if it is wrong.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rt/rt.h>

#include "bench.h"
#include "rt_micro.h"

bool quick;
static FILE *csv;
static FILE *cmp; /* --compare FILE: rows in the Go/Erlang peers' format */
static const char *only;
static unsigned only_scheds; /* --scheds N: only the variants on N schedulers */

void die(const char *what)
{
    fprintf(stderr, "rt_micro: %s\n", what);
    exit(1);
}

/* A text field for the CSV: commas become semicolons (static buffer, one
 * call per argument list is fine: each call gets its own slot). */
static const char *csv_text(const char *s)
{
    static char bufs[4][128];
    static unsigned k;
    char *b = bufs[k++ % 4];
    snprintf(b, 128, "%s", s);
    for (char *p = b; *p; p++)
        if (*p == ',')
            *p = ';';
    return b;
}

void report(const char *workload, const char *variant, double v, const char *unit, const char *peer,
            double pv, bool higher_better)
{
    double ratio = pv > 0 && v > 0 ? (higher_better ? v / pv : pv / v) : 0;
    printf("%-20s %-28s %14.*f %-13s | %-32s %14.*f | x%.3g\n", workload, variant, v < 10 ? 3 : 1,
           v, unit, peer, pv < 10 ? 3 : 1, pv, ratio);
    fflush(stdout);
    if (csv)
        fprintf(csv, "%s,%s,%.3f,%s,%s,%.3f,%.3f\n", csv_text(workload), csv_text(variant), v, unit,
                csv_text(peer), pv, ratio);
}

void compare(const char *workload, unsigned sched, double v, const char *unit)
{
    if (cmp)
        fprintf(cmp, "%s,%u sched,%.3f,%s\n", workload, sched, v, unit);
}

static bool want(const char *name)
{
    return only == NULL || strcmp(only, name) == 0;
}

bool scheds_wanted(unsigned scheds)
{
    return only_scheds == 0 || only_scheds == scheds;
}

void start(unsigned scheds)
{
    /* RT_BATCH: try another rt_opts.batch (messages per turn) */
    const char *b = getenv("RT_BATCH");
    if (rt_start(&(rt_opts){.schedulers = scheds, .batch = b ? (unsigned)atoi(b) : 0}) != 0)
        die("rt_start");
}

void stop(void)
{
    rt_stats l;
    if (rt_stop(5000, &l) != 0 || l.procs_live || l.msgs_live)
        die("the runtime did not stop clean");
}

void run_main(void (*fn)(void *), void *arg)
{
    rt_pid p;
    int reason = -1;
    if (rt_spawn(fn, arg, &(rt_spawn_opts){.joinable = true}, &p) != 0 ||
        rt_join(p, -1, &reason) != 0 || reason != 0)
        die("a benchmark process failed");
}

/* ---- spawn + exit -------------------------------------------------------------- */

static void nothing(void *arg) {}
static void nothing_handle(void *st, rt_msg *m) {}
static int exit_at_init(void *st, void *arg)
{
    rt_exit(rt_self(), 0);
    return 0;
}
static const rt_actor_ops quick_ops = {.init = exit_at_init, .handle = nothing_handle};

struct spawn_arg {
    int n;
    bool actor;
    double secs;
};

static void spawn_main(void *arg)
{
    struct spawn_arg *a = arg;
    double t0 = now_s();
    for (int i = 0; i < a->n; i++) {
        int rc = a->actor ? rt_spawn_actor(&quick_ops, NULL, NULL, NULL)
                          : rt_spawn(nothing, NULL, NULL, NULL);
        if (rc != 0)
            die("spawn");
        if ((i & 1023) == 1023)
            rt_yield(); /* let them run and exit */
    }
    rt_stats st;
    do {
        rt_yield();
        rt_stats_get(&st);
    } while (st.procs_live > 1);
    a->secs = now_s() - t0;
}

static void *thread_nothing(void *arg)
{
    return arg;
}

static void bench_spawn(void)
{
    int n = quick ? 100000 : 1000000;
    double tp0 = now_s();
    int tn = quick ? 5000 : 20000;
    for (int i = 0; i < tn; i++) {
        pthread_t t;
        pthread_create(&t, NULL, thread_nothing, NULL);
        pthread_join(t, NULL);
    }
    double peer_ns = (now_s() - tp0) / tn * 1e9;
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        for (int k = 0; k < 2; k++) {
            struct spawn_arg a = {.n = n, .actor = k == 0};
            start(sc);
            run_main(spawn_main, &a);
            stop();
            char v[48];
            snprintf(v, sizeof v, "%s, %u sched", a.actor ? "callback actor" : "stackful", sc);
            report("spawn+exit", v, a.secs / n * 1e9, "ns each", "pthread_create+join", peer_ns,
                   false);
            if (a.actor)
                compare("spawn+exit", sc, a.secs / n * 1e9, "ns each");
        }
    }
}

/* ---- memory per idle process ------------------------------------------------------ */

static long rss(void)
{
    long pages = 0, r = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &r) != 2)
            r = 0;
        fclose(f);
    }
    return r * sysconf(_SC_PAGESIZE);
}

static void idle_stackful(void *arg)
{
    rt_msg *m;
    rt_receive(RT_INFINITY, &m);
}

static const rt_actor_ops idle_ops = {.handle = nothing_handle};

static void *idle_thread(void *arg)
{
    pthread_barrier_wait(arg);
    return NULL;
}

static void bench_memory(void)
{
    /* peer: idle threads with 64 KiB stacks (the runtime's default) */
    int tn = 1000;
    pthread_t *ts = malloc(tn * sizeof *ts);
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, (unsigned)tn + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    long r0 = rss();
    for (int i = 0; i < tn; i++)
        pthread_create(&ts[i], &attr, idle_thread, &b);
    usleep(100000);
    double peer = (double)(rss() - r0) / tn;
    pthread_barrier_wait(&b);
    for (int i = 0; i < tn; i++)
        pthread_join(ts[i], NULL);
    free(ts);
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        for (int k = 0; k < 2; k++) {
            int n = k == 0 ? (quick ? 200000 : 1000000) : (quick ? 20000 : 100000);
            /* what an earlier runtime of this process freed goes back to the
             * system first: reused, it would not show in the resident size */
            malloc_trim(0);
            start(sc);
            long before = rss();
            for (int i = 0; i < n; i++) {
                int rc = k == 0 ? rt_spawn_actor(&idle_ops, NULL, NULL, NULL)
                                : rt_spawn(idle_stackful, NULL, NULL, NULL);
                if (rc)
                    die("spawn");
            }
            rt_stats st;
            do {
                usleep(10000);
                rt_stats_get(&st);
            } while (st.procs_live < (uint64_t)n);
            usleep(100000);
            double per = (double)(rss() - before) / n;
            stop();
            char v[48];
            snprintf(v, sizeof v, "%s, %u sched",
                     k == 0 ? "callback actor (idle)" : "stackful (idle, 64 KiB)", sc);
            report("memory per process", v, per, "bytes", "pthread (idle, 64 KiB)", peer, false);
            if (k == 0)
                compare("memory per process", sc, per, "bytes");
        }
    }
}

/* ---- ping-pong ------------------------------------------------------------------------ */

struct pp {
    int n;
    double secs;
    int sched_b; /* scheduler option for the partner */
};

static void ponger(void *arg)
{
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) != 0)
            continue;
        if (m->tag == 2) {
            rt_msg_free(m);
            return;
        }
        rt_send(m->from, 1, m->data, m->size);
        rt_msg_free(m);
    }
}

static void pinger(void *arg)
{
    struct pp *p = arg;
    rt_pid b;
    if (rt_spawn(ponger, NULL, &(rt_spawn_opts){.sched = p->sched_b}, &b))
        die("spawn");
    double t0 = now_s();
    for (int i = 0; i < p->n; i++) {
        rt_send(b, 1, &i, sizeof i);
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) != 0 || *(int *)m->data != i)
            die("ping-pong lost its ball");
        rt_msg_free(m);
    }
    p->secs = now_s() - t0;
    rt_send(b, 2, NULL, 0);
}

/* the peer: two threads handing a token through a mutex and condvars */
struct tpp {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int turn, n;
};

struct tpp_side {
    struct tpp *t;
    int side;
};

static void *tpp_run(void *arg)
{
    struct tpp_side *s = arg;
    struct tpp *t = s->t;
    for (int i = 0; i < t->n; i++) {
        pthread_mutex_lock(&t->mu);
        while (t->turn != s->side)
            pthread_cond_wait(&t->cv, &t->mu);
        t->turn = 1 - s->side;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

static double thread_pingpong(int n)
{
    struct tpp t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .n = n};
    struct tpp_side a = {&t, 0}, b = {&t, 1};
    pthread_t ta, tb;
    double t0 = now_s();
    pthread_create(&ta, NULL, tpp_run, &a);
    pthread_create(&tb, NULL, tpp_run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return n / (now_s() - t0); /* each side passes n times: n round trips */
}

static void bench_pingpong(void)
{
    int n = quick ? 200000 : 2000000;
    double peer = thread_pingpong(quick ? 20000 : 100000);
    if (scheds_wanted(1)) {
        struct pp same = {.n = n, .sched_b = 1};
        start(1);
        run_main(pinger, &same);
        stop();
        report("ping-pong", "1 scheduler", n / same.secs, "round trips/s", "2 pthreads + condvar",
               peer, true);
        compare("ping-pong", 1, n / same.secs, "round trips/s");
    }
    /* two schedulers, the partner placed on the other one; the runtime
     * pulls a process woken by a message to the waker's scheduler, so
     * after the first exchange they share one (DESIGN.md) */
    if (scheds_wanted(2)) {
        struct pp two = {.n = n, .sched_b = 2};
        start(2);
        run_main(pinger, &two);
        stop();
        report("ping-pong", "2 schedulers", n / two.secs, "round trips/s", "2 pthreads + condvar",
               peer, true);
        compare("ping-pong", 2, n / two.secs, "round trips/s");
    }
}

/* ---- fan-in: N senders, one counter -------------------------------------------------------- */

struct fan {
    int senders, per;
    rt_pid to;
    double secs;
};

/* Each sender sends its share and ends, as the Go and Erlang peers' do. */
static void fan_sender(void *arg)
{
    const struct fan *f = arg;
    for (int i = 0; i < f->per; i++) {
        if (rt_send(f->to, 1, NULL, 0))
            die("send");
        if ((i & 255) == 255)
            rt_yield();
    }
}

static void fan_main(void *arg)
{
    struct fan *f = arg;
    f->to = rt_self();
    double t0 = now_s();
    for (int i = 0; i < f->senders; i++)
        if (rt_spawn(fan_sender, f, NULL, NULL))
            die("spawn");
    long total = (long)f->senders * f->per;
    for (long n = 0; n < total; n++) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m))
            die("receive");
        rt_msg_free(m);
    }
    f->secs = now_s() - t0;
}

/* peer: threads pushing into a mutex-protected counter queue */
struct tfan {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long queued, per;
};

static void *tfan_sender(void *arg)
{
    struct tfan *t = arg;
    for (long i = 0; i < t->per; i++) {
        pthread_mutex_lock(&t->mu);
        t->queued++;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

static double thread_fanin(int senders, long per)
{
    struct tfan t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .per = per};
    pthread_t ts[8];
    double t0 = now_s();
    for (int i = 0; i < senders; i++)
        pthread_create(&ts[i], NULL, tfan_sender, &t);
    long got = 0;
    while (got < senders * per) {
        pthread_mutex_lock(&t.mu);
        while (t.queued == 0)
            pthread_cond_wait(&t.cv, &t.mu);
        got += t.queued;
        t.queued = 0;
        pthread_mutex_unlock(&t.mu);
    }
    for (int i = 0; i < senders; i++)
        pthread_join(ts[i], NULL);
    return senders * per / (now_s() - t0);
}

static void bench_fanin(void)
{
    int per = quick ? 500000 : 5000000;
    for (int senders = 1; senders <= 4; senders *= 4) {
        double peer = thread_fanin(senders, per / 4);
        for (unsigned sc = 1; sc <= 2; sc++) {
            if (!scheds_wanted(sc))
                continue;
            struct fan f = {.senders = senders, .per = per / senders};
            start(sc);
            run_main(fan_main, &f);
            stop();
            char v[64];
            snprintf(v, sizeof v, "%d sender%s, %u sched", senders, senders > 1 ? "s" : "", sc);
            report("fan-in count", v, (double)senders * f.per / f.secs, "msgs/s",
                   "pthreads + mutex counter", peer, true);
            compare(senders == 1 ? "fan-in count 1 sender" : "fan-in count 4 senders", sc,
                    (double)senders * f.per / f.secs, "msgs/s");
        }
    }
}

/* ---- thread ring: 100 processes pass a token ---------------------------------------------------
 */

struct ring {
    rt_pid next;
    rt_pid report;
};

static void ring_node(void *st, rt_msg *m)
{
    struct ring *r = st;
    int left;
    memcpy(&left, m->data, sizeof left);
    if (left == 0)
        rt_send(r->report, 2, NULL, 0);
    else {
        left--;
        rt_send(r->next, 1, &left, sizeof left);
    }
}

static int ring_init(void *st, void *arg)
{
    struct ring *r = st;
    rt_pid *a = arg;
    r->next = a[0];
    r->report = a[1];
    return 0;
}

static const rt_actor_ops ring_ops = {
    .state_size = sizeof(struct ring), .init = ring_init, .handle = ring_node};

struct ringarg {
    int hops;
    double secs;
};

static void ring_main(void *arg)
{
    struct ringarg *ra = arg;
    rt_pid first = RT_PID_NONE, prev, self = rt_self();
    /* build the ring backwards: each node points to the one made before;
     * the first made points to the last, through a forwarder message */
    rt_pid nodes[100];
    for (int i = 0; i < 100; i++) {
        rt_pid a[2] = {i ? nodes[i - 1] : self, self};
        if (rt_spawn_actor(&ring_ops, a, NULL, &nodes[i]))
            die("spawn");
    }
    first = nodes[99];
    prev = nodes[0];
    (void)prev;
    double t0 = now_s();
    int hops = ra->hops;
    rt_send(first, 1, &hops, sizeof hops);
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m))
            die("receive");
        uint32_t tag = m->tag;
        if (tag == 1) { /* the token came round to us: pass it on */
            rt_send(first, 1, m->data, m->size);
            rt_msg_free(m);
            continue;
        }
        rt_msg_free(m);
        break;
    }
    ra->secs = now_s() - t0;
    for (int i = 0; i < 100; i++)
        rt_exit(nodes[i], RT_EXIT_KILL);
}

static void bench_ring(void)
{
    int hops = quick ? 1000000 : 10000000;
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct ringarg ra = {.hops = hops};
        start(sc);
        run_main(ring_main, &ra);
        stop();
        char v[48];
        snprintf(v, sizeof v, "101 processes, %u sched", sc);
        /* peer: the same token passing through a mutex+condvar pair costs
         * one round trip per two hops */
        static double peer;
        if (peer == 0)
            peer = thread_pingpong(quick ? 20000 : 100000) * 2;
        report("thread ring", v, hops / ra.secs, "hops/s", "pthread handoff (from ping-pong)", peer,
               true);
        compare("thread ring", sc, hops / ra.secs, "hops/s");
    }
}

/* ---- skynet: a tree of 1,000,000 actors
 * ------------------------------------------------------------ */

struct sky {
    rt_pid parent;
    long num, size;
    long sum;
    int pending;
};

static const rt_actor_ops sky_ops;

static int sky_init(void *st, void *arg)
{
    struct sky *s = st;
    memcpy(s, arg, sizeof *s);
    if (s->size == 1) {
        rt_send(s->parent, 1, &s->num, sizeof s->num);
        rt_exit(rt_self(), 0);
        return 0;
    }
    long step = s->size / 10;
    s->pending = 10;
    for (int i = 0; i < 10; i++) {
        struct sky c = {.parent = rt_self(), .num = s->num + i * step, .size = step};
        if (rt_spawn_actor(&sky_ops, &c, NULL, NULL))
            return -ENOMEM;
    }
    return 0;
}

static void sky_handle(void *st, rt_msg *m)
{
    struct sky *s = st;
    long v;
    memcpy(&v, m->data, sizeof v);
    s->sum += v;
    if (--s->pending == 0) {
        rt_send(s->parent, 1, &s->sum, sizeof s->sum);
        rt_exit(rt_self(), 0);
    }
}

static const rt_actor_ops sky_ops = {
    .state_size = sizeof(struct sky), .init = sky_init, .handle = sky_handle};

struct skyarg {
    long sum;
    double secs;
};

static void sky_main(void *arg)
{
    struct skyarg *a = arg;
    double t0 = now_s();
    struct sky root = {.parent = rt_self(), .num = 0, .size = 1000000};
    if (rt_spawn_actor(&sky_ops, &root, NULL, NULL))
        die("spawn");
    rt_msg *m;
    if (rt_receive(RT_INFINITY, &m))
        die("receive");
    memcpy(&a->sum, m->data, sizeof a->sum);
    rt_msg_free(m);
    a->secs = now_s() - t0;
}

static long sky_plain(long num, long size)
{
    if (size == 1)
        return num;
    long s = 0, step = size / 10;
    for (int i = 0; i < 10; i++)
        s += sky_plain(num + i * step, step);
    return s;
}

static void bench_skynet(void)
{
    double t0 = now_s();
    volatile long plain = 0;
    for (int i = 0; i < 10; i++)
        plain += sky_plain(0, 1000000);
    double plain_s = (now_s() - t0) / 10;
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct skyarg a;
        start(sc);
        run_main(sky_main, &a);
        stop();
        if (a.sum != 499999500000L)
            die("skynet: wrong sum");
        char v[48];
        snprintf(v, sizeof v, "1M callback actors, %u sched", sc);
        report("skynet", v, a.secs * 1000, "ms", "plain C recursion (no actors)", plain_s * 1000,
               false);
        compare("skynet", sc, a.secs * 1000, "ms");
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv = fopen(argv[++i], "w");
        else if (strcmp(argv[i], "--compare") == 0 && i + 1 < argc)
            cmp = fopen(argv[++i], "w");
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--scheds") == 0 && i + 1 < argc)
            only_scheds = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: rt_micro [--quick] [--csv FILE] [--compare FILE] [--only NAME] "
                            "[--scheds N]\n");
            return 2;
        }
    }
    if (csv)
        fprintf(csv, "workload,variant,value,unit,peer,peer_value,ratio\n");
    printf("%-20s %-28s %14s %-13s | %-32s %14s | %s\n", "workload", "variant", "value", "unit",
           "peer (same run)", "peer value", "ratio (>1: rt better)");
    if (want("spawn"))
        bench_spawn();
    if (want("memory"))
        bench_memory();
    if (want("pingpong"))
        bench_pingpong();
    if (want("fanin"))
        bench_fanin();
    if (want("ring"))
        bench_ring();
    if (want("skynet"))
        bench_skynet();
    if (want("chameneos"))
        bench_chameneos();
    if (want("big"))
        bench_big();
    if (want("fjcreate"))
        bench_fjcreate();
    if (want("fjthroughput"))
        bench_fjthroughput();
    if (csv)
        fclose(csv);
    if (cmp)
        fclose(cmp);
    return 0;
}
