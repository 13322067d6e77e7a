/* sctp_multistream: one SCTP association, several streams, and a receiver
 * that dispatches on the payload protocol id (ppid).
 *
 * What it shows:
 *  - streams: the sender interleaves messages on streams 1..4, each with
 *    its own sequence numbers 0, 1, 2...; the receiver checks that on every
 *    stream they arrive in order. SCTP orders messages within a stream
 *    only: a message lost and retransmitted on one stream holds back that
 *    stream, never the others (no head-of-line blocking across streams);
 *  - the unordered flag (ESOCK_UNORDERED): stream 5 carries messages the
 *    receiver may get in any order; it checks that each arrives exactly
 *    once and counts those that overtook an earlier one;
 *  - ppid-based dispatch: the receiver (a callback actor) looks each
 *    message's ppid up in a table of handlers: "control" (BEGIN, END,
 *    REPORT on stream 0), "data", "heartbeat" (answered at once with a
 *    "heartbeat ack"); a ppid it has no handler for is counted and dropped;
 *  - since ordering is per stream, the END on stream 0 may overtake the last
 *    data on streams 1..5: the receiver reports only once END has come and
 *    every message it announced has arrived;
 *  - the sender (a stackful process) waits for ESOCK_MSG_SEND_READY when a
 *    send would block (ESOCK_EWOULDBLOCK), so nothing is dropped.
 *
 * Run (the kernel must have SCTP; where it has not, in the test VM):
 *   sctp_multistream
 *   tools/sctp-vm -- build/release/examples/sctp_multistream   (host without SCTP)
 * Exits 0 when every stream arrived in order, every unordered message
 * arrived once, every heartbeat was answered, and esock and the runtime
 * stopped clean.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <esock/esock.h>
#include <rt/rt.h>

/* What travels where. */
#define PPID_CONTROL       1
#define PPID_DATA          2
#define PPID_HEARTBEAT     3
#define PPID_HEARTBEAT_ACK 4
#define PPID_UNKNOWN       99 /* nobody handles this one */

#define STREAM_CONTROL   0
#define ORDERED_STREAMS  4 /* streams 1..4 */
#define UNORDERED_STREAM 5
#define PER_STREAM       250 /* messages on each ordered stream */
#define UNORDERED_COUNT  100
#define HEARTBEAT_EVERY  25 /* rounds between heartbeats */
#define STREAMS_NEEDED   (UNORDERED_STREAM + 1)
#define WAIT_MS          10000 /* any single wait; the whole run takes well under a second */
#define TRACE_LEN        20    /* arrivals the receiver prints */

/* A data message: a big-endian sequence number, then 0..63 bytes of a
 * pattern the receiver checks. */
static size_t data_fill(uint8_t *buf, uint16_t stream, uint32_t seq)
{
    uint32_t be = htonl(seq);
    size_t n = 4 + seq % 64;
    memcpy(buf, &be, 4);
    for (size_t i = 4; i < n; i++)
        buf[i] = (uint8_t)(seq * 7 + stream + i);
    return n;
}

static bool data_check(const uint8_t *buf, size_t n, uint16_t stream, uint32_t *seq)
{
    uint8_t want[4 + 64];
    uint32_t be;
    if (n < 4)
        return false;
    memcpy(&be, buf, 4);
    *seq = ntohl(be);
    return data_fill(want, stream, *seq) == n && memcmp(want, buf, n) == 0;
}

/* ---- the receiver: a callback actor with a table of handlers by ppid ---------------------- */

struct rx {
    esock_assoc assoc;
    uint32_t next[ORDERED_STREAMS + 1]; /* the sequence number expected next per stream */
    unsigned ordered, unordered, overtaken, heartbeats, unknown, errors;
    uint32_t unordered_max;
    bool unordered_seen[UNORDERED_COUNT];
    bool begun, ended, reported;
    unsigned want_per_stream, want_unordered; /* from BEGIN */
    char trace[TRACE_LEN * 8];
    unsigned traced;
};

static void rx_error(struct rx *r, const char *what, const esock_data *d)
{
    if (r->errors++ < 5)
        printf("receiver: %s (stream %u, ppid %u, %zu bytes)\n", what, d->stream, d->ppid, d->len);
}

/* Send on the control stream; the receiver's messages are few, so a full
 * send queue is an error here. */
static void rx_send(struct rx *r, uint32_t ppid, const void *p, size_t n)
{
    int rc = esock_send(r->assoc, STREAM_CONTROL, ppid, 0, p, n, NULL);
    if (rc < 0) {
        r->errors++;
        printf("receiver: send failed: %s\n", esock_strerror(rc));
    }
}

/* When END has come and everything it announced is here: report. */
static void rx_maybe_report(struct rx *r)
{
    if (!r->ended || r->reported || r->ordered < ORDERED_STREAMS * r->want_per_stream ||
        r->unordered < r->want_unordered)
        return;
    r->reported = true;
    printf("receiver: first arrivals as stream:seq (streams interleave):\n          %s\n",
           r->trace);
    printf("receiver: %u ordered messages, each stream in order; %u unordered, %u of them "
           "overtook an earlier one\n",
           r->ordered, r->unordered, r->overtaken);
    printf("receiver: %u heartbeats answered, %u message(s) with an unknown ppid dropped\n",
           r->heartbeats, r->unknown);
    char text[128];
    int n =
        snprintf(text, sizeof text, "REPORT %s ordered=%u unordered=%u heartbeats=%u unknown=%u",
                 r->errors ? "failed" : "ok", r->ordered, r->unordered, r->heartbeats, r->unknown);
    rx_send(r, PPID_CONTROL, text, (size_t)n);
}

static void on_control(struct rx *r, const esock_data *d)
{
    char text[128];
    size_t n = d->len < sizeof text - 1 ? d->len : sizeof text - 1;
    memcpy(text, d->data, n);
    text[n] = '\0';
    if (sscanf(text, "BEGIN each=%u unordered=%u", &r->want_per_stream, &r->want_unordered) == 2) {
        r->begun = true;
        printf("receiver: control: %s\n", text);
    } else if (strcmp(text, "END") == 0 && r->begun) {
        r->ended = true;
        unsigned here = r->ordered + r->unordered;
        unsigned all = ORDERED_STREAMS * r->want_per_stream + r->want_unordered;
        if (here == all)
            printf("receiver: control: END, and all %u messages are here\n", all);
        else
            printf("receiver: control: END, with %u of %u messages here: END came on stream 0, "
                   "which does not wait for the other streams\n",
                   here, all);
    } else {
        rx_error(r, "bad control message", d);
    }
}

static void on_data(struct rx *r, const esock_data *d)
{
    uint32_t seq;
    if (!data_check(d->data, d->len, d->stream, &seq)) {
        rx_error(r, "corrupt data", d);
        return;
    }
    if (r->traced < TRACE_LEN) {
        size_t at = strlen(r->trace);
        snprintf(r->trace + at, sizeof r->trace - at, "%s%u:%u", r->traced ? " " : "", d->stream,
                 seq);
        r->traced++;
    }
    if (d->stream >= 1 && d->stream <= ORDERED_STREAMS && !(d->flags & ESOCK_UNORDERED)) {
        if (seq != r->next[d->stream]) {
            rx_error(r, "out of order on an ordered stream", d);
            r->next[d->stream] = seq;
        }
        r->next[d->stream]++;
        r->ordered++;
    } else if (d->stream == UNORDERED_STREAM && (d->flags & ESOCK_UNORDERED) &&
               seq < UNORDERED_COUNT && !r->unordered_seen[seq]) {
        r->unordered_seen[seq] = true;
        if (seq < r->unordered_max)
            r->overtaken++;
        if (seq > r->unordered_max)
            r->unordered_max = seq;
        r->unordered++;
    } else {
        rx_error(r, "data where it does not belong, or twice", d);
    }
}

static void on_heartbeat(struct rx *r, const esock_data *d)
{
    r->heartbeats++;
    rx_send(r, PPID_HEARTBEAT_ACK, d->data, d->len); /* echo its counter */
}

struct handler {
    uint32_t ppid;
    const char *name;
    void (*fn)(struct rx *r, const esock_data *d);
};

static const struct handler handlers[] = {
    {PPID_CONTROL, "control", on_control},
    {PPID_DATA, "data", on_data},
    {PPID_HEARTBEAT, "heartbeat", on_heartbeat},
};

static void rx_handle(void *state, rt_msg *m)
{
    struct rx *r = state;
    const esock_data *d;
    const esock_up *u;
    const esock_down *dn;
    if ((d = esock_data_of(m)) != NULL) {
        r->assoc = d->assoc;
        for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
            if (handlers[i].ppid == d->ppid) {
                handlers[i].fn(r, d);
                rx_maybe_report(r);
                return;
            }
        }
        r->unknown++;
        printf("receiver: ppid %u on stream %u: no handler, dropped\n", d->ppid, d->stream);
    } else if ((u = esock_up_of(m)) != NULL) {
        r->assoc = u->assoc;
        printf("receiver: association up, streams in %u out %u; handlers:", u->peer.istreams,
               u->peer.ostreams);
        for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
            printf(" ppid %u = %s%s", handlers[i].ppid, handlers[i].name,
                   i + 1 < sizeof handlers / sizeof handlers[0] ? "," : "\n");
    } else if ((dn = esock_down_of(m)) != NULL) {
        printf("receiver: association down (%s)\n", esock_down_reason_name(dn->reason));
    }
}

static const rt_actor_ops rx_ops = {
    .state_size = sizeof(struct rx),
    .handle = rx_handle,
};

/* ---- the sender: a stackful process -------------------------------------------------------- */

struct tx_args {
    uint16_t port;
    bool ok;
};

struct tx {
    esock_assoc assoc;
    unsigned hb_sent, hb_acked;
    char report[128];
    bool down;
};

/* Handle one message that is not the one being waited for. */
static void tx_other(struct tx *t, rt_msg *m)
{
    const esock_data *d = esock_data_of(m);
    const esock_down *dn = esock_down_of(m);
    if (d && d->ppid == PPID_HEARTBEAT_ACK) {
        t->hb_acked++;
    } else if (d && d->ppid == PPID_CONTROL && d->len < sizeof t->report) {
        memcpy(t->report, d->data, d->len);
        t->report[d->len] = '\0';
    } else if (dn && dn->assoc.id == t->assoc.id) {
        printf("sender: association down (%s)\n", esock_down_reason_name(dn->reason));
        t->down = true;
    }
}

/* Send, waiting for ESOCK_MSG_SEND_READY while the queue is full. */
static int tx_send(struct tx *t, uint16_t stream, uint32_t ppid, unsigned flags, const void *p,
                   size_t n)
{
    for (;;) {
        int rc = esock_send(t->assoc, stream, ppid, flags, p, n, NULL);
        if (rc != ESOCK_EWOULDBLOCK)
            return rc;
        rt_msg *m;
        do {
            if (rt_receive(WAIT_MS, &m) < 0)
                return -ETIMEDOUT;
            bool ready = esock_send_ready_of(m) != NULL;
            tx_other(t, m);
            rt_msg_free(m);
            if (ready)
                break;
        } while (!t->down);
        if (t->down)
            return ESOCK_ECLOSED;
    }
}

/* Wait until `done` says so, handling what comes meanwhile. */
static bool tx_wait(struct tx *t, bool (*done)(const struct tx *t))
{
    int64_t deadline = rt_now_ms() + WAIT_MS;
    while (!done(t) && !t->down) {
        int64_t left = deadline - rt_now_ms();
        rt_msg *m;
        if (left <= 0 || rt_receive((int)left, &m) < 0)
            return false;
        tx_other(t, m);
        rt_msg_free(m);
    }
    return done(t);
}

static bool tx_reported(const struct tx *t)
{
    return t->report[0] != '\0';
}

static bool tx_gone(const struct tx *t)
{
    return t->down;
}

static int tx_run(struct tx *t)
{
    char text[64];
    int n = snprintf(text, sizeof text, "BEGIN each=%u unordered=%u", PER_STREAM, UNORDERED_COUNT);
    int rc = tx_send(t, STREAM_CONTROL, PPID_CONTROL, 0, text, (size_t)n);
    /* round r: message r on each ordered stream, interleaved, and on the
     * unordered stream; a heartbeat every HEARTBEAT_EVERY rounds */
    for (uint32_t r = 0; rc == 0 && r < PER_STREAM; r++) {
        uint8_t buf[4 + 64];
        for (uint16_t s = 1; rc == 0 && s <= ORDERED_STREAMS; s++)
            rc = tx_send(t, s, PPID_DATA, 0, buf, data_fill(buf, s, r));
        if (rc == 0 && r < UNORDERED_COUNT)
            rc = tx_send(t, UNORDERED_STREAM, PPID_DATA, ESOCK_UNORDERED, buf,
                         data_fill(buf, UNORDERED_STREAM, r));
        if (rc == 0 && r % HEARTBEAT_EVERY == 0) {
            uint32_t be = htonl(t->hb_sent++);
            rc = tx_send(t, STREAM_CONTROL, PPID_HEARTBEAT, 0, &be, sizeof be);
        }
        if (rc == 0 && r == PER_STREAM / 2)
            rc = tx_send(t, STREAM_CONTROL, PPID_UNKNOWN, 0, "?", 1);
    }
    if (rc == 0)
        rc = tx_send(t, STREAM_CONTROL, PPID_CONTROL, 0, "END", 3);
    if (rc < 0)
        printf("sender: send: %s\n", esock_strerror(rc));
    else
        printf("sender: sent %u messages on %u ordered streams, %u unordered on stream %u, "
               "%u heartbeats\n",
               PER_STREAM * ORDERED_STREAMS, ORDERED_STREAMS, UNORDERED_COUNT, UNORDERED_STREAM,
               t->hb_sent);
    return rc;
}

static void sender(void *arg)
{
    struct tx_args *a = arg;
    struct tx t = {.assoc = ESOCK_ASSOC_NONE};
    esock_ep ep;
    esock_addr server;
    esock_addr_parse("127.0.0.1", 0, &server);
    int rc = esock_ep_create(NULL, &ep);
    if (rc < 0) {
        printf("sender: endpoint: %s\n", esock_strerror(rc));
        return;
    }
    rc = esock_assoc_create(ep, &server, 1, a->port, NULL, &t.assoc);
    rt_msg *m = NULL;
    if (rc == 0 && rt_receive_tag(ESOCK_MSG_ASSOC_UP, WAIT_MS, &m) == 0) {
        const esock_up *u = esock_up_of(m);
        printf("sender: association up, %u outbound streams\n", u->peer.ostreams);
        if (u->peer.ostreams < STREAMS_NEEDED)
            rc = ESOCK_EBADSTREAM;
        rt_msg_free(m);
    } else {
        printf("sender: the association did not come up: %s\n",
               esock_strerror(rc < 0 ? rc : -ETIMEDOUT));
        rc = rc < 0 ? rc : -ETIMEDOUT;
    }
    if (rc == 0 && (rc = tx_run(&t)) == 0 && !tx_wait(&t, tx_reported))
        printf("sender: no report from the receiver\n");
    if (tx_reported(&t))
        printf("sender: the receiver says: %s\n", t.report);
    printf("sender: %u of %u heartbeats answered\n", t.hb_acked, t.hb_sent);
    bool ok = rc == 0 && strncmp(t.report, "REPORT ok ", 10) == 0 && t.hb_acked == t.hb_sent;

    if (esock_assoc_shutdown(t.assoc) == 0 && !tx_wait(&t, tx_gone))
        ok = false;
    esock_ep_close(ep);
    a->ok = ok;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    int rc = esock_sctp_available();
    if (rc < 0) {
        fprintf(stderr,
                "sctp_multistream: this kernel has no SCTP (%s); run it in the test VM: "
                "tools/sctp-vm -- %s\n",
                esock_strerror(rc), argv[0]);
        return 1;
    }
    if ((rc = rt_start(NULL)) < 0 || (rc = esock_start()) < 0) {
        fprintf(stderr, "sctp_multistream: start: %s\n", esock_strerror(rc));
        return 1;
    }
    struct tx_args a = {0};
    esock_ep ep;
    rt_pid rx = RT_PID_NONE, tx;
    int reason = -1;
    if ((rc = esock_ep_create(&(esock_ep_opts){.ostreams = 8, .istreams = 8}, &ep)) < 0 ||
        (rc = rt_spawn_actor(&rx_ops, NULL, NULL, &rx)) < 0 ||
        (rc = esock_owner_register(ep, rx, NULL, NULL)) < 0) {
        fprintf(stderr, "sctp_multistream: receiver: %s\n", esock_strerror(rc));
    } else {
        a.port = (uint16_t)esock_ep_port(ep);
        printf("receiver: listening on 127.0.0.1 port %u\n", a.port);
        if ((rc = rt_spawn(sender, &a, &(rt_spawn_opts){.joinable = true}, &tx)) == 0)
            rc = rt_join(tx, 4 * WAIT_MS, &reason);
    }
    esock_stop(); /* closes the receiver's endpoint */
    if (!rt_pid_is_none(rx))
        rt_exit(rx, RT_EXIT_SHUTDOWN);
    rt_stats left;
    int stop = rt_stop(1000, &left);
    printf("stopped (%s): %llu processes, %llu messages left\n",
           stop == 0 ? "ok" : rt_strerror(stop), (unsigned long long)left.procs_live,
           (unsigned long long)left.msgs_live);
    bool ok = rc == 0 && reason == RT_EXIT_NORMAL && a.ok && stop == 0 && left.procs_live == 0 &&
              left.msgs_live == 0;
    printf("sctp_multistream: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
