/* rt_savina.c: rt_micro's workloads from the Savina actor benchmark suite
 * (Imam and Sarkar, 2014): chameneos (the shootout's chameneos-redux, with
 * Savina's mall), big, fork-join create and fork-join throughput. The
 * actors are callback actors (the runtime's cheap kind), the main of each
 * workload a stackful process. Each workload runs on 1 and on 2
 * schedulers, beside POSIX threads doing the same protocol through a
 * mutex-and-condvar mailbox per thread (struct tbox), and checks its own
 * result; the Go and Erlang peers (bench/peers) do the same with the same
 * sizes and the same checks. See rt_micro.h for what is shared with
 * rt_micro.c.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rt/rt.h>

#include "bench.h"
#include "rt_micro.h"

static void send_or_die(rt_pid to, uint32_t tag, const void *data, size_t size)
{
    if (rt_send(to, tag, data, size) != 0)
        die("send");
}

static rt_msg *receive_or_die(void)
{
    rt_msg *m;
    if (rt_receive(RT_INFINITY, &m) != 0)
        die("receive");
    return m;
}

/* ---- the threads' peer: a bounded mailbox per thread ------------------------------------ */

struct tmsg {
    int kind, from;
    long a, b;
};

struct tbox {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    struct tmsg *q;
    unsigned cap, head, n;
};

static void tbox_init(struct tbox *b, unsigned cap)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->nonempty, NULL);
    pthread_cond_init(&b->nonfull, NULL);
    b->q = malloc(cap * sizeof *b->q);
    if (b->q == NULL)
        die("malloc");
    b->cap = cap;
    b->head = b->n = 0;
}

static void tbox_destroy(struct tbox *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->nonempty);
    pthread_cond_destroy(&b->nonfull);
    free(b->q);
}

/* Waits while the box is full. */
static void tbox_put(struct tbox *b, struct tmsg m)
{
    pthread_mutex_lock(&b->mu);
    while (b->n == b->cap)
        pthread_cond_wait(&b->nonfull, &b->mu);
    b->q[(b->head + b->n++) % b->cap] = m;
    pthread_cond_signal(&b->nonempty);
    pthread_mutex_unlock(&b->mu);
}

static struct tmsg tbox_get(struct tbox *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->n == 0)
        pthread_cond_wait(&b->nonempty, &b->mu);
    struct tmsg m = b->q[b->head];
    b->head = (b->head + 1) % b->cap;
    b->n--;
    pthread_cond_signal(&b->nonfull);
    pthread_mutex_unlock(&b->mu);
    return m;
}

/* ---- chameneos: creatures meet in a mall ------------------------------------------------
 *
 * Each creature asks the mall for a meeting (CH_MEET, with its colour and
 * id). The mall keeps the first asker waiting; the second makes a meeting:
 * each of the two is told the other's colour and id (CH_MET), takes the
 * complement of the two colours as its own and asks again. After `meetings`
 * meetings the mall answers every request with CH_STOP; each creature then
 * gives the mall its count (CH_COUNT) and ends, and the mall, having heard
 * from all, hands the totals to the main and ends. Check: the counts add up
 * to twice the meetings, and no creature met itself. Four messages a
 * meeting; the mall takes half of them. */

enum { CH_MEET = 1, CH_MET, CH_STOP, CH_COUNT, CH_RESULT };

enum { CH_CREATURES = 100 };

struct ch_colour {
    int colour, id; /* CH_MEET: the asker's; CH_MET: the partner's */
};

struct ch_count {
    long meetings, self;
};

/* The colour two creatures of colours a and b both take when they meet
 * (blue 0, red 1, yellow 2): a's own if they are the same, else the third. */
static int complement(int a, int b)
{
    return a == b ? a : 3 - a - b;
}

struct mall {
    rt_pid report, waiting; /* waiting: RT_PID_NONE when nobody waits */
    struct ch_colour w;     /* the waiting creature's */
    long left;
    struct ch_count total;
    int creatures, counted;
};

static int mall_init(void *st, void *arg)
{
    memcpy(st, arg, sizeof(struct mall));
    return 0;
}

static void mall_handle(void *st, rt_msg *m)
{
    struct mall *s = st;
    if (m->tag == CH_MEET) {
        struct ch_colour c;
        memcpy(&c, m->data, sizeof c);
        if (s->left == 0) {
            send_or_die(m->from, CH_STOP, NULL, 0);
        } else if (rt_pid_is_none(s->waiting)) {
            s->waiting = m->from;
            s->w = c;
        } else {
            s->left--;
            send_or_die(m->from, CH_MET, &s->w, sizeof s->w);
            send_or_die(s->waiting, CH_MET, &c, sizeof c);
            s->waiting = RT_PID_NONE;
        }
    } else if (m->tag == CH_COUNT) {
        struct ch_count c;
        memcpy(&c, m->data, sizeof c);
        s->total.meetings += c.meetings;
        s->total.self += c.self;
        if (++s->counted == s->creatures) {
            send_or_die(s->report, CH_RESULT, &s->total, sizeof s->total);
            rt_exit(rt_self(), 0);
        }
    }
}

static const rt_actor_ops mall_ops = {
    .state_size = sizeof(struct mall), .init = mall_init, .handle = mall_handle};

struct creature {
    rt_pid mall;
    struct ch_colour me;
    struct ch_count count;
};

static int creature_init(void *st, void *arg)
{
    struct creature *s = st;
    memcpy(s, arg, sizeof *s);
    return rt_send(s->mall, CH_MEET, &s->me, sizeof s->me);
}

static void creature_handle(void *st, rt_msg *m)
{
    struct creature *s = st;
    if (m->tag == CH_MET) {
        struct ch_colour p;
        memcpy(&p, m->data, sizeof p);
        s->count.self += p.id == s->me.id;
        s->count.meetings++;
        s->me.colour = complement(s->me.colour, p.colour);
        send_or_die(s->mall, CH_MEET, &s->me, sizeof s->me);
    } else if (m->tag == CH_STOP) {
        send_or_die(s->mall, CH_COUNT, &s->count, sizeof s->count);
        rt_exit(rt_self(), 0);
    }
}

static const rt_actor_ops creature_ops = {
    .state_size = sizeof(struct creature), .init = creature_init, .handle = creature_handle};

struct ch_arg {
    long meetings;
    struct ch_count total;
    double secs;
};

static void ch_main(void *arg)
{
    struct ch_arg *a = arg;
    double t0 = now_s();
    rt_pid mall;
    struct mall m0 = {.report = rt_self(), .left = a->meetings, .creatures = CH_CREATURES};
    if (rt_spawn_actor(&mall_ops, &m0, NULL, &mall))
        die("spawn");
    for (int i = 0; i < CH_CREATURES; i++) {
        struct creature c = {.mall = mall, .me = {.colour = i % 3, .id = i}};
        if (rt_spawn_actor(&creature_ops, &c, NULL, NULL))
            die("spawn");
    }
    rt_msg *m = receive_or_die();
    memcpy(&a->total, m->data, sizeof a->total);
    rt_msg_free(m);
    a->secs = now_s() - t0;
}

static void ch_check(long meetings, struct ch_count total)
{
    if (total.meetings != 2 * meetings || total.self != 0)
        die("chameneos: the creatures' counts do not add up to twice the meetings");
}

/* the peer: the same protocol between threads, a struct tbox each */
struct tch {
    struct tbox mall, box[CH_CREATURES];
};

struct tcreature {
    struct tch *t;
    int id;
};

static void *tcreature_run(void *arg)
{
    struct tcreature *c = arg;
    struct tch *t = c->t;
    int colour = c->id % 3;
    long meetings = 0, self = 0;
    for (;;) {
        tbox_put(&t->mall, (struct tmsg){CH_MEET, c->id, colour, 0});
        struct tmsg m = tbox_get(&t->box[c->id]);
        if (m.kind == CH_STOP)
            break;
        self += m.from == c->id;
        meetings++;
        colour = complement(colour, (int)m.a);
    }
    tbox_put(&t->mall, (struct tmsg){CH_COUNT, c->id, meetings, self});
    return NULL;
}

static double thread_chameneos(long meetings)
{
    struct tch *t = malloc(sizeof *t);
    struct tcreature cs[CH_CREATURES];
    pthread_t ts[CH_CREATURES];
    if (t == NULL)
        die("malloc");
    tbox_init(&t->mall, CH_CREATURES + 1);
    for (int i = 0; i < CH_CREATURES; i++)
        tbox_init(&t->box[i], 2);
    double t0 = now_s();
    for (int i = 0; i < CH_CREATURES; i++) {
        cs[i] = (struct tcreature){t, i};
        pthread_create(&ts[i], NULL, tcreature_run, &cs[i]);
    }
    struct tmsg waiting = {0};
    bool have = false;
    long left = meetings;
    struct ch_count total = {0};
    for (int counted = 0; counted < CH_CREATURES;) {
        struct tmsg m = tbox_get(&t->mall);
        if (m.kind == CH_COUNT) {
            total.meetings += m.a;
            total.self += m.b;
            counted++;
        } else if (left == 0) {
            tbox_put(&t->box[m.from], (struct tmsg){CH_STOP, 0, 0, 0});
        } else if (!have) {
            waiting = m;
            have = true;
        } else {
            left--;
            tbox_put(&t->box[m.from], (struct tmsg){CH_MET, waiting.from, waiting.a, 0});
            tbox_put(&t->box[waiting.from], (struct tmsg){CH_MET, m.from, m.a, 0});
            have = false;
        }
    }
    double secs = now_s() - t0;
    for (int i = 0; i < CH_CREATURES; i++) {
        pthread_join(ts[i], NULL);
        tbox_destroy(&t->box[i]);
    }
    tbox_destroy(&t->mall);
    free(t);
    ch_check(meetings, total);
    return meetings / secs;
}

void bench_chameneos(void)
{
    long meetings = quick ? 200000 : 2000000;
    double peer = thread_chameneos(quick ? 20000 : 100000);
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct ch_arg a = {.meetings = meetings};
        start(sc);
        run_main(ch_main, &a);
        stop();
        ch_check(meetings, a.total);
        char v[48];
        snprintf(v, sizeof v, "%d creatures, %u sched", CH_CREATURES, sc);
        report("chameneos", v, meetings / a.secs, "meetings/s", "threads + condvar mailboxes", peer,
               true);
        compare("chameneos", sc, meetings / a.secs, "meetings/s");
    }
}

/* ---- big: many-to-many pings ------------------------------------------------------------
 *
 * BIG_WORKERS workers, each knowing all of them. On BIG_GO each pings one
 * picked at random (itself included), which answers with a pong; on the
 * pong it pings the next, until it has sent `pings`; then it tells the sink
 * (the main) it is done, and goes on answering the others' pings. Once all
 * are done no ping is left unanswered; the sink stops them (BIG_STOP) and
 * each ends after telling it how many pings it answered. Check: each sent
 * its pings and all of them were answered. */

enum { BIG_GO = 1, BIG_PING, BIG_PONG, BIG_DONE, BIG_STOP, BIG_COUNT };

enum { BIG_WORKERS = 120 };

struct big_all {
    rt_pid pid[BIG_WORKERS];
    rt_pid sink;
    long pings;
};

struct big {
    const struct big_all *all;
    uint64_t rng;
    long sent, answered;
};

struct big_init {
    const struct big_all *all;
    int id;
};

/* xorshift64*: the worker's own random sequence */
static unsigned next_random(uint64_t *x, unsigned n)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return (unsigned)((*x * 0x2545F4914F6CDD1DULL) >> 32) % n;
}

static int big_init(void *st, void *arg)
{
    struct big *s = st;
    const struct big_init *in = arg;
    s->all = in->all;
    s->rng = (uint64_t)(in->id + 1) * 0x9E3779B97F4A7C15ULL;
    return 0;
}

static void big_ping(struct big *s)
{
    s->sent++;
    send_or_die(s->all->pid[next_random(&s->rng, BIG_WORKERS)], BIG_PING, NULL, 0);
}

static void big_handle(void *st, rt_msg *m)
{
    struct big *s = st;
    switch (m->tag) {
    case BIG_PING:
        s->answered++;
        send_or_die(m->from, BIG_PONG, NULL, 0);
        break;
    case BIG_PONG:
        if (s->sent < s->all->pings)
            big_ping(s);
        else
            send_or_die(s->all->sink, BIG_DONE, &s->sent, sizeof s->sent);
        break;
    case BIG_GO:
        big_ping(s);
        break;
    case BIG_STOP:
        send_or_die(s->all->sink, BIG_COUNT, &s->answered, sizeof s->answered);
        rt_exit(rt_self(), 0);
        break;
    }
}

static const rt_actor_ops big_ops = {
    .state_size = sizeof(struct big), .init = big_init, .handle = big_handle};

struct big_arg {
    long pings, answered;
    bool all_sent;
    double secs;
};

static void big_main(void *arg)
{
    struct big_arg *a = arg;
    struct big_all *all = malloc(sizeof *all);
    if (all == NULL)
        die("malloc");
    all->sink = rt_self();
    all->pings = a->pings;
    for (int i = 0; i < BIG_WORKERS; i++)
        if (rt_spawn_actor(&big_ops, &(struct big_init){all, i}, NULL, &all->pid[i]))
            die("spawn");
    double t0 = now_s();
    for (int i = 0; i < BIG_WORKERS; i++)
        send_or_die(all->pid[i], BIG_GO, NULL, 0);
    a->all_sent = true;
    for (int i = 0; i < BIG_WORKERS; i++) {
        rt_msg *m = receive_or_die();
        long sent;
        memcpy(&sent, m->data, sizeof sent);
        a->all_sent &= m->tag == BIG_DONE && sent == a->pings;
        rt_msg_free(m);
    }
    a->secs = now_s() - t0;
    for (int i = 0; i < BIG_WORKERS; i++)
        send_or_die(all->pid[i], BIG_STOP, NULL, 0);
    for (int i = 0; i < BIG_WORKERS; i++) {
        rt_msg *m = receive_or_die();
        long n;
        memcpy(&n, m->data, sizeof n);
        a->answered += n;
        rt_msg_free(m);
    }
    free(all); /* the workers have all answered BIG_STOP: none reads it again */
}

static void big_check(long pings, bool all_sent, long answered)
{
    if (!all_sent || answered != BIG_WORKERS * pings)
        die("big: a worker did not send its pings, or not all were answered");
}

/* the peer: the same protocol between threads, a struct tbox each (room
 * for a ping from every worker, its own pong and BIG_STOP: no put waits) */
struct tbig {
    struct tbox box[BIG_WORKERS], sink;
    long pings;
};

struct tbig_worker {
    struct tbig *t;
    int id;
};

static void *tbig_run(void *arg)
{
    struct tbig_worker *w = arg;
    struct tbig *t = w->t;
    uint64_t rng = (uint64_t)(w->id + 1) * 0x9E3779B97F4A7C15ULL;
    long sent = 1, answered = 0;
    tbox_put(&t->box[next_random(&rng, BIG_WORKERS)], (struct tmsg){BIG_PING, w->id, 0, 0});
    for (;;) {
        struct tmsg m = tbox_get(&t->box[w->id]);
        if (m.kind == BIG_PING) {
            answered++;
            tbox_put(&t->box[m.from], (struct tmsg){BIG_PONG, w->id, 0, 0});
        } else if (m.kind == BIG_PONG && sent < t->pings) {
            sent++;
            tbox_put(&t->box[next_random(&rng, BIG_WORKERS)], (struct tmsg){BIG_PING, w->id, 0, 0});
        } else if (m.kind == BIG_PONG) {
            tbox_put(&t->sink, (struct tmsg){BIG_DONE, w->id, sent, 0});
        } else {
            tbox_put(&t->sink, (struct tmsg){BIG_COUNT, w->id, answered, 0});
            return NULL;
        }
    }
}

static double thread_big(long pings)
{
    struct tbig *t = malloc(sizeof *t);
    struct tbig_worker ws[BIG_WORKERS];
    pthread_t ts[BIG_WORKERS];
    if (t == NULL)
        die("malloc");
    t->pings = pings;
    tbox_init(&t->sink, BIG_WORKERS);
    for (int i = 0; i < BIG_WORKERS; i++)
        tbox_init(&t->box[i], BIG_WORKERS + 2);
    double t0 = now_s();
    for (int i = 0; i < BIG_WORKERS; i++) {
        ws[i] = (struct tbig_worker){t, i};
        pthread_create(&ts[i], NULL, tbig_run, &ws[i]);
    }
    bool all_sent = true;
    for (int i = 0; i < BIG_WORKERS; i++)
        all_sent &= tbox_get(&t->sink).a == pings;
    double secs = now_s() - t0;
    for (int i = 0; i < BIG_WORKERS; i++)
        tbox_put(&t->box[i], (struct tmsg){BIG_STOP, 0, 0, 0});
    long answered = 0;
    for (int i = 0; i < BIG_WORKERS; i++)
        answered += tbox_get(&t->sink).a;
    for (int i = 0; i < BIG_WORKERS; i++) {
        pthread_join(ts[i], NULL);
        tbox_destroy(&t->box[i]);
    }
    tbox_destroy(&t->sink);
    free(t);
    big_check(pings, all_sent, answered);
    return 2.0 * BIG_WORKERS * pings / secs;
}

void bench_big(void)
{
    long pings = quick ? 2000 : 20000;
    double peer = thread_big(quick ? 200 : 1000);
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct big_arg a = {.pings = pings};
        start(sc);
        run_main(big_main, &a);
        stop();
        big_check(pings, a.all_sent, a.answered);
        char v[48];
        snprintf(v, sizeof v, "%d workers, %u sched", BIG_WORKERS, sc);
        double rate = 2.0 * BIG_WORKERS * pings / a.secs; /* pings and pongs */
        report("big", v, rate, "msgs/s", "threads + condvar mailboxes", peer, true);
        compare("big", sc, rate, "msgs/s");
    }
}

/* ---- fork-join create: an actor per message ------------------------------------------------
 *
 * The main spawns n actors, one after another, and sends each one message
 * (its index); each hands the index to a sink and ends. The sink sums them
 * and tells the main when it has all n. Savina's actors also compute a
 * little on the message; here they do not, so the figure is the runtime's
 * own: spawn, send, handle, send, end. Check: the sum of the indices. The
 * main yields every 1024 spawns so that the actors run (Go and Erlang
 * preempt their spawner). */

enum { FJ_WORK = 1, FJ_DONE, FJ_RESULT };

struct fj_sink {
    rt_pid report;
    long n, got, sum;
};

static int fj_sink_init(void *st, void *arg)
{
    memcpy(st, arg, sizeof(struct fj_sink));
    return 0;
}

static void fj_sink_handle(void *st, rt_msg *m)
{
    struct fj_sink *s = st;
    long v;
    memcpy(&v, m->data, sizeof v);
    s->sum += v;
    if (++s->got == s->n) {
        send_or_die(s->report, FJ_RESULT, &s->sum, sizeof s->sum);
        rt_exit(rt_self(), 0);
    }
}

static const rt_actor_ops fj_sink_ops = {
    .state_size = sizeof(struct fj_sink), .init = fj_sink_init, .handle = fj_sink_handle};

static int fjc_init(void *st, void *arg)
{
    memcpy(st, arg, sizeof(rt_pid));
    return 0;
}

static void fjc_handle(void *st, rt_msg *m)
{
    send_or_die(*(rt_pid *)st, FJ_DONE, m->data, m->size);
    rt_exit(rt_self(), 0);
}

static const rt_actor_ops fjc_ops = {
    .state_size = sizeof(rt_pid), .init = fjc_init, .handle = fjc_handle};

struct fjc_arg {
    long n, sum;
    double secs;
};

static void fjc_main(void *arg)
{
    struct fjc_arg *a = arg;
    double t0 = now_s();
    rt_pid sink;
    if (rt_spawn_actor(&fj_sink_ops, &(struct fj_sink){.report = rt_self(), .n = a->n}, NULL,
                       &sink))
        die("spawn");
    for (long i = 0; i < a->n; i++) {
        rt_pid p;
        if (rt_spawn_actor(&fjc_ops, &sink, NULL, &p))
            die("spawn");
        send_or_die(p, FJ_WORK, &i, sizeof i);
        if ((i & 1023) == 1023)
            rt_yield();
    }
    rt_msg *m = receive_or_die();
    memcpy(&a->sum, m->data, sizeof a->sum);
    rt_msg_free(m);
    a->secs = now_s() - t0;
}

static void fjc_check(long n, long sum)
{
    if (sum != n * (n - 1) / 2)
        die("fork-join create: wrong sum of the indices");
}

/* the peer: a thread per message, created with it, joined in batches */
struct tfjc {
    long msg, handled;
};

static void *tfjc_run(void *arg)
{
    struct tfjc *t = arg;
    t->handled = t->msg; /* the main adds them up after the join */
    return NULL;
}

static double thread_fjcreate(long n)
{
    enum { BATCH = 256 };
    pthread_t ts[BATCH];
    struct tfjc vs[BATCH];
    long sum = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i += BATCH) {
        int k = 0;
        for (; k < BATCH && i + k < n; k++) {
            vs[k] = (struct tfjc){.msg = i + k};
            if (pthread_create(&ts[k], NULL, tfjc_run, &vs[k]))
                die("pthread_create");
        }
        for (int j = 0; j < k; j++) {
            pthread_join(ts[j], NULL);
            sum += vs[j].handled;
        }
    }
    double secs = now_s() - t0;
    fjc_check(n, sum);
    return secs / n * 1e9;
}

void bench_fjcreate(void)
{
    long n = quick ? 100000 : 1000000;
    double peer = thread_fjcreate(quick ? 5000 : 20000);
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct fjc_arg a = {.n = n};
        start(sc);
        run_main(fjc_main, &a);
        stop();
        fjc_check(n, a.sum);
        char v[48];
        snprintf(v, sizeof v, "callback actors, %u sched", sc);
        report("fork-join create", v, a.secs / n * 1e9, "ns each",
               "a thread per message (create, join)", peer, false);
        compare("fork-join create", sc, a.secs / n * 1e9, "ns each");
    }
}

/* ---- fork-join throughput: one sender, round robin ------------------------------------------
 *
 * FJT_ACTORS actors; the main sends messages 0, 1, ..., per-1 to each in
 * turn (message i to every actor before i+1 to any); each actor checks it
 * gets them in order and, with the last, tells the main and ends. Savina's
 * actors also compute a little on each message; here they do not. Check:
 * every actor got all its messages, in order. The main yields every 4
 * rounds (240 messages: fan-in's senders yield every 256), without which
 * on one scheduler every message would be queued before any actor ran. */

enum { FJT_ACTORS = 60 };

struct fjt {
    rt_pid report;
    long got, per;
    bool in_order;
};

static int fjt_init(void *st, void *arg)
{
    struct fjt *s = st;
    memcpy(s, arg, sizeof *s);
    s->in_order = true;
    return 0;
}

static void fjt_handle(void *st, rt_msg *m)
{
    struct fjt *s = st;
    long v;
    memcpy(&v, m->data, sizeof v);
    s->in_order &= v == s->got;
    if (++s->got == s->per) {
        long ok = s->in_order;
        send_or_die(s->report, FJ_DONE, &ok, sizeof ok);
        rt_exit(rt_self(), 0);
    }
}

static const rt_actor_ops fjt_ops = {
    .state_size = sizeof(struct fjt), .init = fjt_init, .handle = fjt_handle};

struct fjt_arg {
    long per;
    bool ok;
    double secs;
};

static void fjt_main(void *arg)
{
    struct fjt_arg *a = arg;
    rt_pid actors[FJT_ACTORS];
    for (int k = 0; k < FJT_ACTORS; k++)
        if (rt_spawn_actor(&fjt_ops, &(struct fjt){.report = rt_self(), .per = a->per}, NULL,
                           &actors[k]))
            die("spawn");
    double t0 = now_s();
    for (long i = 0; i < a->per; i++) {
        for (int k = 0; k < FJT_ACTORS; k++)
            send_or_die(actors[k], FJ_WORK, &i, sizeof i);
        if ((i & 3) == 3)
            rt_yield();
    }
    a->ok = true;
    for (int k = 0; k < FJT_ACTORS; k++) {
        rt_msg *m = receive_or_die();
        long ok;
        memcpy(&ok, m->data, sizeof ok);
        a->ok &= ok == 1;
        rt_msg_free(m);
    }
    a->secs = now_s() - t0;
}

static void fjt_check(bool ok)
{
    if (!ok)
        die("fork-join throughput: an actor got its messages out of order");
}

/* the peer: the same between threads, a struct tbox of 1024 each */
struct tfjt {
    struct tbox box;
    long per;
    bool in_order;
};

static void *tfjt_run(void *arg)
{
    struct tfjt *t = arg;
    for (long i = 0; i < t->per; i++)
        t->in_order &= tbox_get(&t->box).a == i;
    return NULL;
}

static double thread_fjthroughput(long per)
{
    struct tfjt *ts = calloc(FJT_ACTORS, sizeof *ts);
    pthread_t th[FJT_ACTORS];
    if (ts == NULL)
        die("malloc");
    for (int k = 0; k < FJT_ACTORS; k++) {
        tbox_init(&ts[k].box, 1024);
        ts[k].per = per;
        ts[k].in_order = true;
        pthread_create(&th[k], NULL, tfjt_run, &ts[k]);
    }
    double t0 = now_s();
    for (long i = 0; i < per; i++)
        for (int k = 0; k < FJT_ACTORS; k++)
            tbox_put(&ts[k].box, (struct tmsg){FJ_WORK, 0, i, 0});
    bool ok = true;
    for (int k = 0; k < FJT_ACTORS; k++) {
        pthread_join(th[k], NULL);
        ok &= ts[k].in_order;
        tbox_destroy(&ts[k].box);
    }
    double secs = now_s() - t0;
    free(ts);
    fjt_check(ok);
    return (double)FJT_ACTORS * per / secs;
}

void bench_fjthroughput(void)
{
    long per = quick ? 10000 : 100000;
    double peer = thread_fjthroughput(quick ? 2000 : 10000);
    for (unsigned sc = 1; sc <= 2; sc++) {
        if (!scheds_wanted(sc))
            continue;
        struct fjt_arg a = {.per = per};
        start(sc);
        run_main(fjt_main, &a);
        stop();
        fjt_check(a.ok);
        char v[48];
        snprintf(v, sizeof v, "%d actors, %u sched", FJT_ACTORS, sc);
        double rate = (double)FJT_ACTORS * per / a.secs;
        report("fork-join throughput", v, rate, "msgs/s", "threads + condvar mailboxes", peer,
               true);
        compare("fork-join throughput", sc, rate, "msgs/s");
    }
}
