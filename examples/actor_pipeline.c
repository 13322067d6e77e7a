/* actor_pipeline: a supervised pipeline of processes, runtime only (no
 * sockets), that survives one of its stages crashing.
 *
 * What it shows:
 *  - a pipeline of stages, each a process found by its registered name:
 *
 *      producer ──▶ "square" ──▶ "triple" ──▶ "sum" ──ack──▶ producer
 *      stackful     callback      stackful     callback
 *                   actor         process      actor
 *
 *    work item i goes in as the number i and adds 3 * i * i to the sum;
 *  - a supervisor (rt/sup.h, one_for_one) that starts the three stages and
 *    restarts one when it crashes, the others untouched;
 *  - "let it crash": the square stage meets a bad item and crashes
 *    (rt_exit with a reason); the items waiting in its mailbox are lost
 *    with it. The producer notices through a monitor, and, since the sum
 *    acknowledges every item, sends again those not acknowledged after a
 *    while: nothing is lost overall, and the sum ignores an item it has
 *    already counted, so nothing counts twice either;
 *  - rt_call / rt_reply: the producer asks the sum for its total;
 *  - a clean end: the producer stops the supervisor (which stops its
 *    stages in reverse order), then main stops the runtime, which reports
 *    0 processes, messages and timers left.
 *
 * Run:
 *   actor_pipeline            (build/<tree>/examples/actor_pipeline)
 * Exits 0 when the total is right, exactly one restart happened and the
 * runtime stopped clean.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <rt/rt.h>

#define ITEMS       100 /* work items 1..ITEMS */
#define WINDOW      16  /* items in flight before the producer waits for acks */
#define RESEND_MS   100 /* an item not acknowledged by then is sent again */
#define BAD_ITEM    13  /* the square stage crashes on this one, the first time */
#define DEADLINE_MS 5000

enum { TAG_ITEM = 1, TAG_ACK, TAG_TOTAL };

/* A work item, copied from stage to stage. */
struct item {
    uint32_t id;
    int64_t value;
    rt_pid producer; /* where the sum sends its acknowledgement */
};

/* What the sum answers to TAG_TOTAL. */
struct total {
    int64_t sum;
    unsigned distinct, duplicates;
};

/* Send an item to the stage registered as `name`. A stage that is down
 * (crashed, not yet restarted) gives -ESRCH: the item is then lost, and
 * the producer's resend makes up for it. */
static int send_to(const char *name, const struct item *it)
{
    return rt_send(rt_whereis(name), TAG_ITEM, it, sizeof *it);
}

/* ---- stage 1, "square": a callback actor ----------------------------------------------------- */

/* One bad item, once: the fault is transient (think of a flaky disk), so the
 * restarted stage handles the resent item. Atomic because the restarted
 * stage may run on another scheduler thread; relaxed is enough, since only
 * one instance runs at a time and the exchange alone decides who crashes. */
static atomic_bool fault_armed = true;

static int square_init(void *state, void *arg)
{
    /* rt_self() is the new actor here: take the stage's name before anyone
     * can look for it (the supervisor waits for this start) */
    return rt_register("square", rt_self());
}

static void square_handle(void *state, rt_msg *m)
{
    if (m->tag != TAG_ITEM || m->size != sizeof(struct item))
        return;
    struct item it;
    memcpy(&it, m->data, sizeof it);
    if (it.id == BAD_ITEM && atomic_exchange_explicit(&fault_armed, false, memory_order_relaxed)) {
        printf("square:   item %u is bad: crashing (the items queued behind it go with me)\n",
               it.id);
        rt_exit(rt_self(), -EBADMSG); /* ends when this handler returns */
        return;
    }
    it.value *= it.value;
    send_to("triple", &it);
}

static const rt_actor_ops square_ops = {
    .init = square_init,
    .handle = square_handle,
};

static int start_square(void *arg, rt_pid *out)
{
    return rt_spawn_actor(&square_ops, NULL, NULL, out);
}

/* ---- stage 2, "triple": a stackful process ------------------------------------------------------
 */

/* Blocks in rt_receive like ordinary sequential code; the supervisor's
 * shutdown signal ends it there. */
static void triple_main(void *arg)
{
    for (;;) {
        rt_msg *m;
        if (rt_receive(RT_INFINITY, &m) < 0)
            continue;
        if (m->tag == TAG_ITEM && m->size == sizeof(struct item)) {
            struct item it;
            memcpy(&it, m->data, sizeof it);
            it.value *= 3;
            send_to("sum", &it);
        }
        rt_msg_free(m);
    }
}

static int start_triple(void *arg, rt_pid *out)
{
    int rc = rt_spawn(triple_main, NULL, NULL, out);
    if (rc == 0 && (rc = rt_register("triple", *out)) < 0)
        rt_exit(*out, RT_EXIT_KILL);
    return rc;
}

/* ---- stage 3, "sum": a callback actor
 * ------------------------------------------------------------ */

struct sum {
    bool seen[ITEMS + 1];
    struct total t;
};

static int sum_init(void *state, void *arg)
{
    return rt_register("sum", rt_self());
}

static void sum_handle(void *state, rt_msg *m)
{
    struct sum *s = state;
    if (m->tag == TAG_ITEM && m->size == sizeof(struct item)) {
        struct item it;
        memcpy(&it, m->data, sizeof it);
        if (it.id < 1 || it.id > ITEMS || s->seen[it.id]) {
            s->t.duplicates++; /* sent again while the first copy was still on its way */
        } else {
            s->seen[it.id] = true;
            s->t.sum += it.value;
            s->t.distinct++;
        }
        /* acknowledge even a duplicate: its sender must stop resending */
        rt_send(it.producer, TAG_ACK, &it.id, sizeof it.id);
    } else if (m->tag == TAG_TOTAL && rt_is_call(m)) {
        rt_reply(m, &s->t, sizeof s->t);
    }
}

static const rt_actor_ops sum_ops = {
    .state_size = sizeof(struct sum),
    .init = sum_init,
    .handle = sum_handle,
};

static int start_sum(void *arg, rt_pid *out)
{
    return rt_spawn_actor(&sum_ops, NULL, NULL, out);
}

/* ---- the producer, which also runs the show ----------------------------------------------------
 */

struct result {
    bool ok;
};

struct flight {
    bool sent, acked;
    int64_t resend_at;
};

/* Send every item that is due: new ones while fewer than WINDOW are in
 * flight, and those whose acknowledgement is late. Returns how many were
 * sent again. */
static unsigned send_due(struct flight *f, unsigned *in_flight, int64_t now)
{
    unsigned resent = 0;
    for (uint32_t id = 1; id <= ITEMS; id++) {
        if (f[id].acked || (f[id].sent && now < f[id].resend_at))
            continue;
        if (!f[id].sent && *in_flight >= WINDOW)
            break;
        struct item it = {id, id, rt_self()};
        send_to("square", &it); /* lost if the stage is down: sent again later */
        resent += f[id].sent;
        if (!f[id].sent)
            ++*in_flight;
        f[id].sent = true;
        f[id].resend_at = now + RESEND_MS;
    }
    return resent;
}

/* Milliseconds until the earliest resend (at least 1). */
static int next_resend(const struct flight *f, int64_t now)
{
    int64_t first = now + RESEND_MS;
    for (uint32_t id = 1; id <= ITEMS; id++)
        if (f[id].sent && !f[id].acked && f[id].resend_at < first)
            first = f[id].resend_at;
    return first > now ? (int)(first - now) : 1;
}

/* Monitor the stage registered as `name`, waiting up to 1 s for it to exist
 * (a restarted stage registers itself again). Returns 0 or -ETIMEDOUT. */
static int watch(const char *name, rt_ref *ref)
{
    for (int i = 0; i < 1000; i++) {
        rt_pid p = rt_whereis(name);
        if (!rt_pid_is_none(p))
            return rt_monitor(p, ref);
        rt_sleep(1);
    }
    return -ETIMEDOUT;
}

static void producer(void *arg)
{
    struct result *res = arg;
    static const rt_child_spec stages[] = {
        {.id = "square", .start = start_square, .restart = RT_PERMANENT, .shutdown_ms = 500},
        {.id = "triple", .start = start_triple, .restart = RT_PERMANENT, .shutdown_ms = 500},
        {.id = "sum", .start = start_sum, .restart = RT_PERMANENT, .shutdown_ms = 500},
    };
    /* trap exits: the supervisor is linked to us (we are its parent), and
     * its end must reach us as a message, not kill us */
    rt_trap_exits(true);
    rt_pid sup;
    int rc = rt_sup_start(&(rt_sup_flags){RT_ONE_FOR_ONE, 3, 5000}, stages, 3, &sup);
    if (rc < 0) {
        printf("producer: the supervisor did not start: %s\n", rt_strerror(rc));
        return;
    }
    printf("supervisor: started the stages square, triple and sum (one_for_one: a stage that\n"
           "            crashes is restarted alone)\n");
    rt_ref square_ref;
    if (watch("square", &square_ref) < 0)
        return;

    struct flight f[ITEMS + 1] = {{0}};
    unsigned in_flight = 0, acked = 0, resent = 0, crashes = 0;
    int64_t deadline = rt_now_ms() + DEADLINE_MS;
    printf("producer: sending items 1..%d, at most %d unacknowledged at a time\n", ITEMS, WINDOW);
    while (acked < ITEMS) {
        int64_t now = rt_now_ms();
        if (now >= deadline) {
            printf("producer: gave up after %d ms with %u of %d items acknowledged\n", DEADLINE_MS,
                   acked, ITEMS);
            return;
        }
        resent += send_due(f, &in_flight, now);
        rt_msg *m;
        if (rt_receive(next_resend(f, now), &m) < 0)
            continue; /* a resend is due */
        if (m->tag == TAG_ACK && m->size == sizeof(uint32_t)) {
            uint32_t id;
            memcpy(&id, m->data, sizeof id);
            if (id >= 1 && id <= ITEMS && !f[id].acked) {
                f[id].acked = true;
                in_flight--;
                acked++;
            }
        } else if (m->tag == RT_MSG_DOWN) {
            rt_down_info d;
            memcpy(&d, m->data, sizeof d);
            crashes++;
            printf("producer: stage square is down (%s); items not acknowledged within %d ms\n"
                   "          will be sent again, to the stage the supervisor restarts\n",
                   rt_strerror(d.reason), RESEND_MS);
            if (watch("square", &square_ref) == 0)
                printf("producer: square is back: a new process under the same name\n");
        }
        rt_msg_free(m);
    }
    rt_demonitor(square_ref);
    printf("producer: all %d items acknowledged; %u sent again after the crash\n", ITEMS, resent);

    rt_msg *reply;
    struct total t = {0};
    rc = rt_call(rt_whereis("sum"), TAG_TOTAL, NULL, 0, 1000, &reply);
    if (rc == 0) {
        memcpy(&t, reply->data, sizeof t);
        rt_msg_free(reply);
    }
    int64_t expect = 3LL * ITEMS * (ITEMS + 1) * (2 * ITEMS + 1) / 6; /* 3 * (1² + ... + N²) */
    printf("sum:      total %lld (expected %lld) from %u distinct items; %u duplicate%s ignored\n",
           (long long)t.sum, (long long)expect, t.distinct, t.duplicates,
           t.duplicates == 1 ? "" : "s");

    rt_sup_counts counts = {0};
    rt_sup_count_children(sup, &counts);
    printf("supervisor: %lu restart%s, %d of %d stages running\n", counts.restarts,
           counts.restarts == 1 ? "" : "s", counts.active, counts.specs);

    /* stop the supervisor as its parent does: it stops the stages (sum,
     * triple, square) and ends with the same reason, which comes back to
     * us over the link */
    rt_exit(sup, RT_EXIT_SHUTDOWN);
    rt_msg *m;
    int down = -1;
    while (rt_receive_tag(RT_MSG_EXIT, 2000, &m) == 0) {
        rt_exit_info e;
        memcpy(&e, m->data, sizeof e);
        rt_msg_free(m);
        if (rt_pid_eq(e.from, sup)) {
            down = e.reason;
            break;
        }
    }
    printf("supervisor: stopped its stages and ended (%s)\n",
           down == -1 ? "not seen" : rt_strerror(down));
    res->ok = rc == 0 && t.sum == expect && t.distinct == ITEMS && crashes == 1 &&
              counts.restarts == 1 && counts.active == 3 && down == RT_EXIT_SHUTDOWN;
}

int main(void)
{
    int rc = rt_start(NULL);
    if (rc < 0) {
        fprintf(stderr, "rt_start: %s\n", rt_strerror(rc));
        return 1;
    }
    struct result res = {false};
    rt_pid p;
    int reason = -1;
    rc = rt_spawn(producer, &res, &(rt_spawn_opts){.joinable = true}, &p);
    if (rc == 0)
        rc = rt_join(p, 20000, &reason);
    if (rc < 0)
        fprintf(stderr, "producer: %s\n", rt_strerror(rc));

    rt_stats left;
    int stop = rt_stop(1000, &left);
    printf("runtime stopped (%s): %llu processes, %llu messages, %llu timers left\n",
           stop == 0 ? "ok" : rt_strerror(stop), (unsigned long long)left.procs_live,
           (unsigned long long)left.msgs_live, (unsigned long long)left.timers_live);
    bool ok = rc == 0 && reason == RT_EXIT_NORMAL && res.ok && stop == 0 && left.procs_live == 0 &&
              left.msgs_live == 0 && left.timers_live == 0;
    printf("actor_pipeline: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
