/* esock_tcp: esock over TCP against a plain blocking C program doing the
 * same work over 127.0.0.1 (and Go's net package, when --go names the peer
 * program, bench/peers/go/tcppeer; and Erlang/OTP's gen_tcp, when --erl
 * names the folder of bench/peers/erlang/tcppeer.beam), measured in the
 * same run:
 *
 *   - stream: one-way streaming over 1 and over 100 connections, messages
 *     of 64 B, 1 KiB, 16 KiB, 64 KiB, each after a 4-byte big-endian length
 *     (esock: ESOCK_FRAME_LEN32, whole messages): messages/s and MB/s;
 *   - bulk: the same bytes unframed (esock: ESOCK_FRAME_NONE, data as it
 *     was read), sends of 64 KiB: MB/s;
 *   - rr: request/response of 64 B (framed), on 1 connection and on 100
 *     at once: round trips/s, p50 and p99 latency; rr-local: over one
 *     connection with esock's client and echo actor spawned on one
 *     scheduler (rr: where rt_spawn from main puts them, round robin). For
 *     one connection the table says in how many runs esock's two ends
 *     ended up on two schedulers (stealing can move one), which decides its
 *     figure;
 *   - setup: connections set up and closed, one after another by 1 client
 *     and by 10 at once: connect, up, a graceful close both ways.
 *
 * Every message is counted and its content checked at the receiver: a
 * framed message carries its sequence number in its first 8 bytes and a
 * fixed pattern after them; it must have the right length, the next number
 * and the pattern. An unframed stream's byte at offset o is pat[o % 65521],
 * checked however the reads cut it. A sender sends for a fixed time, then
 * ends its stream (FIN: esock_assoc_shutdown, shutdown(SHUT_WR), CloseWrite)
 * and its receiver must see the end after the last byte; the receivers'
 * counts must equal the senders' (as a multiset: accept pairs a receiver
 * with some sender). A rate is what the receivers got divided by the time
 * from the first sender's start to the last receiver's end. Any loss, a
 * wrong byte, an error or a hang fails the point and the exit status.
 *
 * esock, written as a user writes it: the sending side of each connection
 * is a stackful process that made it (esock_assoc_create from one client
 * endpoint, so it is its owner) and calls esock_send in a loop, waiting for
 * ESOCK_MSG_SEND_READY when it gets ESOCK_EWOULDBLOCK; the receiving side
 * is a stackful process per connection registered as an owner of the server
 * endpoint (an accept callback takes one connection each), taking
 * ESOCK_MSG_DATA and freeing it. The rr echo side is a callback actor per
 * connection (esock_send back from its handler; what would block waits in
 * its own queue until ESOCK_MSG_SEND_READY, never dropped); the setup
 * server one callback actor for all (the client's side closes first, as
 * in plain and Go, so its ports collect the TIME_WAITs). Endpoints use
 * esock's defaults (TCP_NODELAY, the kernel's buffer autotuning) but a 256 KiB send
 * queue (send_hiwat), so that esock holds about what a socket buffer holds
 * beyond the kernel's. The runtime has one scheduler per CPU; nothing is
 * pinned.
 *
 * plain: what a C programmer writes without esock: blocking sockets with
 * TCP_NODELAY, a thread per socket (the setup server a thread per accepted
 * connection); one send(2) per message (length and payload from one
 * buffer), and reads of up to 256 KiB cut into messages in place.
 *
 * Go: goroutines and net.Conn, one Write per message, a bufio.Reader of
 * 256 KiB and io.ReadFull per message; a separate process started for each
 * run, checking the same things (bench/peers/go/tcppeer).
 *
 * Erlang: gen_tcp, a process per socket, {packet, 4} (gen_tcp's own 4-byte
 * big-endian length; bulk: raw), one gen_tcp:send per message, receivers
 * in {active, N}, a 256 KiB user-level buffer, the rr client passive
 * (gen_tcp:recv); one erl (its default schedulers, one per CPU) started for
 * each run, checking the same things (bench/peers/erlang/tcppeer.erl).
 *
 *   esock_tcp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--json FILE] [--go PROGRAM]
 *             [--erl BEAM_DIR] [--case stream|bulk|rr|setup] [--conns N] [--size BYTES]
 *             [--peers LIST] [--schedulers N] [--client-addr ADDR]
 *
 * --quick: one run of 0.3 s per point (about half a minute); default: the
 * median of 3 runs of 2 s (min and max beside it; about 5 minutes on 2
 * CPUs).
 * --peers: a comma-separated subset of esock,plain,go,erlang (a peer
 * program not given or not there is left out). --case, --conns,
 * --size: only those points (--conns N: each case and size once, over N
 * connections). --schedulers: the runtime's (rt_opts; 0: one per CPU).
 * --client-addr: the address of esock's set-up clients' endpoint (default
 * 127.0.0.1, whose connections esock binds to it before connecting; 0.0.0.0:
 * not bound). The CSV goes to
 * build/bench/esock_tcp.csv under the current directory unless --csv names
 * a file; the JSON (every run) only with --json.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <esock/esock.h>
#include <rt/rt.h>

#define MAX_CONNS 1000
#define MAX_RUNS  9
#define PERIOD    65521u       /* the unframed pattern's period (a prime) */
#define BULK      (64u << 10)  /* unframed send size */
#define RD_BUF    (256u << 10) /* the plain receiver's read buffer */
#define RR_SIZE   64u
#define TAG_STOP  9u /* main -> a callback actor: end */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "esock_tcp: %s: %s\n", what, esock_strerror(err));
    exit(1);
}

/* ---- what is sent, and its check ---------------------------------------------------------- */

static unsigned char *msg_pat; /* a framed message's payload after its sequence number */
static unsigned char
    *bulk_pat; /* PERIOD + BULK bytes: byte o of a stream is bulk_pat[o % PERIOD] */

static void patterns_init(void)
{
    msg_pat = malloc(BULK);
    bulk_pat = malloc(PERIOD + BULK);
    if (msg_pat == NULL || bulk_pat == NULL)
        die("malloc", -ENOMEM);
    for (size_t i = 0; i < BULK; i++)
        msg_pat[i] = (unsigned char)(i * 7 + 1);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PERIOD; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        bulk_pat[i] = (unsigned char)x;
    }
    for (size_t i = PERIOD; i < PERIOD + BULK; i++)
        bulk_pat[i] = bulk_pat[i - PERIOD];
}

/* A framed message `seq` of `size` bytes into buf (the payload only). */
static void msg_fill(unsigned char *buf, size_t size, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
    memcpy(buf + 8, msg_pat + 8, size - 8);
}

static void msg_set_seq(unsigned char *buf, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
}

/* Is (p, len) message `seq` of `size` bytes? */
static bool msg_ok(const void *p, size_t len, size_t size, uint64_t seq)
{
    uint64_t s;
    if (len != size)
        return false;
    memcpy(&s, p, sizeof s);
    return s == seq && memcmp((const unsigned char *)p + 8, msg_pat + 8, size - 8) == 0;
}

/* Are (p, len) the bytes of an unframed stream from offset `off` on? */
static bool bulk_ok(const unsigned char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        size_t n = len < BULK ? len : BULK;
        if (memcmp(p, bulk_pat + off % PERIOD, n) != 0)
            return false;
        p += n, len -= n, off += n;
    }
    return true;
}

/* ---- figures ----------------------------------------------------------------------------------
 */

/* One connection's figures, its sender's and its receiver's (filled by
 * different threads or processes; read after both have been joined). */
struct flow {
    double t0;
    uint64_t sent, sent_bytes;
    int err;
    const char *what;
    double t1;
    uint64_t got, got_bytes;
    bool bad, ended;
    int rerr;
    const char *rwhat;
};

struct result {
    double secs;
    uint64_t msgs, bytes;
    double rate, mbs; /* messages (round trips, connections)/s, MB/s */
    double p50_us, p99_us;
    bool ok;
    int placed; /* esock rr over one connection: 1 its two ends' owners ran on one
                   scheduler, 2 on two; 0 unknown */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sum up n connections; every receiver must have got exactly what some
 * sender sent, and ended cleanly. */
static struct result total(const char *peer, const struct flow *f, int n, size_t size, bool framed)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    uint64_t *sent = calloc((size_t)n, sizeof *sent), *got = calloc((size_t)n, sizeof *got);
    if (sent == NULL || got == NULL)
        die("calloc", -ENOMEM);
    for (int i = 0; i < n; i++) {
        if (f[i].err) {
            fprintf(stderr, "esock_tcp: %s, sender %d of %d, %zu B: %s: %s (sent %llu msgs)\n",
                    peer, i + 1, n, size, f[i].what, esock_strerror(f[i].err),
                    (unsigned long long)f[i].sent);
            r.ok = false;
        }
        if (f[i].rerr || !f[i].ended || f[i].bad) {
            fprintf(stderr, "esock_tcp: %s, receiver %d of %d, %zu B: %llu msgs (%llu B)%s%s%s%s\n",
                    peer, i + 1, n, size, (unsigned long long)f[i].got,
                    (unsigned long long)f[i].got_bytes, f[i].bad ? ", a WRONG message" : "",
                    f[i].ended ? "" : ", no clean end", f[i].rerr ? ": " : "",
                    f[i].rerr ? f[i].rwhat : "");
            r.ok = false;
        }
        sent[i] = f[i].sent_bytes;
        got[i] = f[i].got_bytes;
        r.msgs += f[i].got;
        r.bytes += f[i].got_bytes;
        if (f[i].t0 > 0 && f[i].t0 < t0)
            t0 = f[i].t0;
        if (f[i].t1 > t1)
            t1 = f[i].t1;
    }
    qsort(sent, (size_t)n, sizeof *sent, cmp_u64);
    qsort(got, (size_t)n, sizeof *got, cmp_u64);
    uint64_t smsgs = 0;
    for (int i = 0; i < n; i++) {
        smsgs += f[i].sent;
        if (r.ok && sent[i] != got[i]) {
            fprintf(stderr, "esock_tcp: %s, %zu B: a sender sent %llu B, its receiver got %llu B\n",
                    peer, size, (unsigned long long)sent[i], (unsigned long long)got[i]);
            r.ok = false;
        }
    }
    if (r.ok && framed && smsgs != r.msgs) { /* unframed: reads, not messages */
        fprintf(stderr, "esock_tcp: %s: %llu msgs sent, %llu received\n", peer,
                (unsigned long long)smsgs, (unsigned long long)r.msgs);
        r.ok = false;
    }
    free(sent), free(got);
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    if (!framed)
        r.rate = r.mbs; /* reads are not messages: bytes are the figure */
    return r;
}

/* Round-trip times, in microseconds. */
struct lat {
    double *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, double us)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16384;
        double *nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL)
            return;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = us;
}

/* One rr client's figures. */
struct rr_flow {
    double t0, t1;
    uint64_t trips;
    struct lat lat;
    int err;
    const char *what;
    int sched; /* esock: the scheduler the client ran on last */
};

static struct result rr_total(const char *peer, const char *cas, struct rr_flow *c, int n)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    struct lat all = {0};
    for (int i = 0; i < n; i++) {
        if (c[i].err) {
            fprintf(stderr, "esock_tcp: %s %s, client %d of %d: %s: %s (%llu done)\n", peer, cas,
                    i + 1, n, c[i].what, esock_strerror(c[i].err), (unsigned long long)c[i].trips);
            r.ok = false;
        }
        r.msgs += c[i].trips;
        if (c[i].t0 > 0 && c[i].t0 < t0)
            t0 = c[i].t0;
        if (c[i].t1 > t1)
            t1 = c[i].t1;
        for (size_t k = 0; k < c[i].lat.n; k++)
            lat_add(&all, c[i].lat.v[k]);
        free(c[i].lat.v);
        c[i].lat = (struct lat){0};
    }
    if (all.n) {
        qsort(all.v, all.n, sizeof *all.v, cmp_d);
        r.p50_us = all.v[all.n / 2];
        r.p99_us = all.v[all.n * 99 / 100];
    }
    free(all.v);
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.bytes = r.msgs * RR_SIZE;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    return r;
}

/* ================================ esock ================================ */

static esock_ep es_ep(int framing, const char *addr)
{
    esock_ep_opts o = {.proto = ESOCK_TCP,
                       .naddrs = 1,
                       .framing = framing,
                       .backlog = 1024,
                       .send_hiwat = 256 << 10};
    esock_addr_parse(addr, 0, &o.addrs[0]);
    esock_ep ep;
    int rc = esock_ep_create(&o, &ep);
    if (rc < 0)
        die("esock_ep_create", rc);
    return ep;
}

struct es_match {
    uint32_t tag;
    uint64_t assoc;
};

static bool match_assoc(const rt_msg *m, void *arg)
{
    const struct es_match *w = arg;
    if (m->tag != w->tag)
        return false;
    const esock_up *u = esock_up_of(m);
    const esock_down *d = esock_down_of(m);
    const esock_send_ready *s = esock_send_ready_of(m);
    uint64_t id = u ? u->assoc.id : d ? d->assoc.id : s ? s->assoc.id : 0;
    return id == w->assoc;
}

/* The next message with `tag` about association `a`, or NULL after ms. */
static rt_msg *es_wait_for(uint32_t tag, esock_assoc a, int ms)
{
    struct es_match w = {tag, a.id};
    rt_msg *m = NULL;
    return rt_receive_match(match_assoc, &w, ms, &m) == 0 ? m : NULL;
}

/* Connect from `cep` to 127.0.0.1:port and wait until it is up. */
static int es_connect(esock_ep cep, uint16_t port, esock_assoc *as)
{
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    int rc = esock_assoc_create(cep, &ra, 1, port, NULL, as);
    if (rc < 0)
        return rc;
    rt_msg *m = es_wait_for(ESOCK_MSG_ASSOC_UP, *as, 30000);
    if (m == NULL) {
        rt_msg *d = es_wait_for(ESOCK_MSG_ASSOC_DOWN, *as, 0);
        rc = d && esock_down_of(d)->error ? esock_down_of(d)->error : -ETIMEDOUT;
        rt_msg_free(d);
        return rc;
    }
    rt_msg_free(m);
    return 0;
}

/* End the connection gracefully and wait for its end: the peer's FIN comes
 * only after its side has read everything. A message handed back means
 * something was not sent. */
static int es_close(esock_assoc as, const char **what)
{
    int rc = esock_assoc_shutdown(as);
    if (rc < 0) {
        *what = "esock_assoc_shutdown";
        return rc;
    }
    for (;;) {
        rt_msg *m = NULL;
        if (rt_receive(30000, &m) < 0) {
            *what = "no ESOCK_MSG_ASSOC_DOWN within 30 s of esock_assoc_shutdown";
            return -ETIMEDOUT;
        }
        if (m->tag == ESOCK_MSG_SEND_FAILED) {
            rt_msg_free(m);
            *what = "ESOCK_MSG_SEND_FAILED: a message was not sent";
            return -EIO;
        }
        const esock_down *d = esock_down_of(m);
        if (d == NULL || d->assoc.id != as.id) {
            rt_msg_free(m); /* a late SEND_READY */
            continue;
        }
        rc = d->reason == ESOCK_DOWN_SHUTDOWN ? d->error : ESOCK_ECLOSED;
        rt_msg_free(m);
        if (rc)
            *what = "the connection did not end cleanly";
        return rc;
    }
}

struct es_send_arg {
    struct flow *f;
    esock_ep cep;
    uint16_t port;
    size_t size;
    bool framed;
    double dur;
};

static void es_sender(void *arg)
{
    struct es_send_arg *a = arg;
    struct flow *f = a->f;
    esock_assoc as;
    int rc = es_connect(a->cep, a->port, &as);
    if (rc < 0) {
        f->err = rc, f->what = "connect";
        return;
    }
    unsigned char *buf = malloc(a->size);
    if (buf == NULL) {
        f->err = -ENOMEM, f->what = "malloc";
        return;
    }
    if (a->framed)
        msg_fill(buf, a->size, 0);
    f->t0 = now_s();
    double end = f->t0 + a->dur;
    uint64_t n = 0, off = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        const unsigned char *p = buf;
        if (a->framed)
            msg_set_seq(buf, n);
        else
            p = bulk_pat + off % PERIOD;
        rc = esock_send(as, 0, 0, 0, p, a->size, NULL);
        if (rc == 0) {
            n++;
            off += a->size;
            continue;
        }
        if (rc != ESOCK_EWOULDBLOCK) {
            f->err = rc, f->what = "esock_send";
            break;
        }
        rt_msg *m = es_wait_for(ESOCK_MSG_SEND_READY, as, 10000);
        if (m == NULL) {
            f->err = -ETIMEDOUT, f->what = "no ESOCK_MSG_SEND_READY within 10 s";
            break;
        }
        rt_msg_free(m);
    }
    free(buf);
    f->sent = n;
    f->sent_bytes = off;
    if (f->err) {
        esock_assoc_abort(as);
        return;
    }
    rc = es_close(as, &f->what);
    if (rc)
        f->err = rc;
}

struct es_recv_arg {
    struct flow *f;
    size_t size;
    bool framed;
};

static void es_receiver(void *arg)
{
    struct es_recv_arg *a = arg;
    struct flow *f = a->f;
    for (;;) {
        rt_msg *m;
        if (rt_receive(15000, &m) < 0) {
            f->rerr = -ETIMEDOUT, f->rwhat = "the receiver got nothing for 15 s";
            return;
        }
        const esock_data *d = esock_data_of(m);
        if (d) {
            if (!f->bad)
                f->bad = a->framed ? !msg_ok(d->data, d->len, a->size, f->got)
                                   : !bulk_ok(d->data, d->len, f->got_bytes);
            f->got++;
            f->got_bytes += d->len;
        } else if (m->tag == ESOCK_MSG_ASSOC_DOWN) {
            const esock_down *dn = esock_down_of(m);
            f->t1 = now_s();
            if (dn->reason == ESOCK_DOWN_SHUTDOWN && dn->error == 0)
                f->ended = true;
            else
                f->rerr = dn->error ? dn->error : ESOCK_ECLOSED,
                f->rwhat = "the connection went down uncleanly";
            rt_msg_free(m);
            return;
        }
        rt_msg_free(m);
    }
}

/* An accept callback that takes one connection, for one owner. */
static bool take_one(void *arg, esock_assoc assoc, const esock_peer *peer)
{
    atomic_bool *taken = arg;
    /* relaxed: only the endpoint process calls it; atomic for the main
     * thread's read after the run */
    return !atomic_exchange_explicit(taken, true, memory_order_relaxed);
}

static void es_join(rt_pid p, int ms)
{
    int rc = rt_join(p, ms, NULL);
    if (rc < 0)
        die("rt_join (a benchmark process hangs)", rc);
}

static struct result es_stream(int n, size_t size, bool framed, double dur)
{
    int framing = framed ? ESOCK_FRAME_LEN32 : ESOCK_FRAME_NONE;
    struct flow *f = calloc((size_t)n, sizeof *f);
    struct es_send_arg *sa = calloc((size_t)n, sizeof *sa);
    struct es_recv_arg *ra = calloc((size_t)n, sizeof *ra);
    atomic_bool *taken = calloc((size_t)n, sizeof *taken);
    rt_pid *rp = calloc((size_t)n, sizeof *rp), *sp = calloc((size_t)n, sizeof *sp);
    if (!f || !sa || !ra || !taken || !rp || !sp)
        die("calloc", -ENOMEM);
    esock_ep sep = es_ep(framing, "127.0.0.1"), cep = es_ep(framing, "127.0.0.1");
    uint16_t port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    for (int i = 0; i < n; i++) {
        atomic_init(&taken[i], false);
        ra[i] = (struct es_recv_arg){&f[i], size, framed};
        int rc = rt_spawn(es_receiver, &ra[i], &jo, &rp[i]);
        if (rc == 0)
            rc = esock_owner_register(sep, rp[i], take_one, &taken[i]);
        if (rc < 0)
            die("receiver", rc);
    }
    for (int i = 0; i < n; i++) {
        sa[i] = (struct es_send_arg){&f[i], cep, port, size, framed, dur};
        int rc = rt_spawn(es_sender, &sa[i], &jo, &sp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
    }
    /* flow i: sender i and receiver i, though not necessarily of the same
     * connection: total() compares them as multisets */
    int wait_ms = (int)(dur * 1000) + 120000;
    for (int i = 0; i < n; i++) {
        es_join(sp[i], wait_ms);
        es_join(rp[i], wait_ms);
    }
    struct result r = total("esock", f, n, size, framed);
    esock_ep_close(cep);
    esock_ep_close(sep);
    free(f), free(sa), free(ra), free(taken), free(rp), free(sp);
    return r;
}

/* ---- rr: an echo callback actor per connection ---- */

/* An echo that would block, waiting for ESOCK_MSG_SEND_READY. */
struct pending {
    struct pending *next;
    esock_assoc assoc;
    size_t len;
    unsigned char data[];
};

struct echo_shared {
    atomic_ulong ups, downs, errors; /* relaxed: counters read after the actor ended */
};

struct echo_st {
    struct echo_shared *sh;
    struct pending *head, *tail;
};

static int echo_init(void *state, void *arg)
{
    struct echo_st *s = state;
    s->sh = arg;
    return 0;
}

static void echo_queue(struct echo_st *s, esock_assoc a, const void *p, size_t len)
{
    struct pending *q = malloc(sizeof *q + len);
    if (q == NULL) {
        atomic_fetch_add_explicit(&s->sh->errors, 1, memory_order_relaxed);
        return;
    }
    q->next = NULL, q->assoc = a, q->len = len;
    memcpy(q->data, p, len);
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
}

/* Send what waits, in order, until the socket is full again. */
static void echo_flush(struct echo_st *s)
{
    while (s->head) {
        struct pending *q = s->head;
        int rc = esock_send(q->assoc, 0, 0, 0, q->data, q->len, NULL);
        if (rc == ESOCK_EWOULDBLOCK)
            return;
        if (rc < 0)
            atomic_fetch_add_explicit(&s->sh->errors, 1, memory_order_relaxed);
        s->head = q->next;
        if (s->head == NULL)
            s->tail = NULL;
        free(q);
    }
}

static void echo_handle(void *state, rt_msg *m)
{
    struct echo_st *s = state;
    const esock_data *d = esock_data_of(m);
    if (d) {
        if (s->head) { /* keep the order */
            echo_queue(s, d->assoc, d->data, d->len);
            return;
        }
        int rc = esock_send(d->assoc, 0, 0, 0, d->data, d->len, NULL);
        if (rc == ESOCK_EWOULDBLOCK)
            echo_queue(s, d->assoc, d->data, d->len);
        else if (rc < 0)
            atomic_fetch_add_explicit(&s->sh->errors, 1, memory_order_relaxed);
        return;
    }
    switch (m->tag) {
    case ESOCK_MSG_SEND_READY:
        echo_flush(s);
        break;
    case ESOCK_MSG_ASSOC_UP:
        atomic_fetch_add_explicit(&s->sh->ups, 1, memory_order_relaxed);
        break;
    case ESOCK_MSG_ASSOC_DOWN:
        atomic_fetch_add_explicit(&s->sh->downs, 1, memory_order_relaxed);
        break;
    case TAG_STOP:
        rt_exit(rt_self(), RT_EXIT_NORMAL);
        break;
    }
}

static void echo_terminate(void *state, int reason)
{
    struct echo_st *s = state;
    while (s->head) {
        struct pending *q = s->head;
        s->head = q->next;
        free(q);
        atomic_fetch_add_explicit(&s->sh->errors, 1, memory_order_relaxed);
    }
}

static const rt_actor_ops echo_ops = {
    .state_size = sizeof(struct echo_st),
    .init = echo_init,
    .handle = echo_handle,
    .terminate = echo_terminate,
};

struct es_rr_arg {
    struct rr_flow *c;
    esock_ep cep;
    uint16_t port;
    double dur;
};

static void es_rr_client(void *arg)
{
    struct es_rr_arg *a = arg;
    struct rr_flow *c = a->c;
    esock_assoc as;
    int rc = es_connect(a->cep, a->port, &as);
    if (rc < 0) {
        c->err = rc, c->what = "connect";
        return;
    }
    unsigned char buf[RR_SIZE];
    msg_fill(buf, RR_SIZE, 0);
    c->t0 = now_s();
    double end = c->t0 + a->dur, t = c->t0;
    while (t < end) {
        msg_set_seq(buf, c->trips);
        rc = esock_send(as, 0, 0, 0, buf, RR_SIZE, NULL);
        if (rc < 0) { /* one in flight: it never has to wait */
            c->err = rc, c->what = "esock_send";
            break;
        }
        rt_msg *m = NULL;
        if (rt_receive_tag(ESOCK_MSG_DATA, 10000, &m) < 0) {
            c->err = -ETIMEDOUT, c->what = "no reply within 10 s";
            break;
        }
        const esock_data *d = esock_data_of(m);
        bool good = msg_ok(d->data, d->len, RR_SIZE, c->trips);
        rt_msg_free(m);
        if (!good) {
            c->err = -EBADMSG, c->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&c->lat, (t2 - t) * 1e6);
        c->trips++;
        t = t2;
    }
    c->t1 = t;
    c->sched = rt_sched_of(rt_self());
    if (c->err) {
        esock_assoc_abort(as);
        return;
    }
    rc = es_close(as, &c->what);
    if (rc)
        c->err = rc;
}

/* local: each echo actor and client on scheduler i % schedulers (for one
 * connection: both ends on one), instead of where rt_spawn from main puts
 * them (round robin). */
static struct result es_rr(int n, double dur, bool local)
{
    rt_stats st;
    rt_stats_get(&st);
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct es_rr_arg *ca = calloc((size_t)n, sizeof *ca);
    atomic_bool *taken = calloc((size_t)n, sizeof *taken);
    rt_pid *ep = calloc((size_t)n, sizeof *ep), *cp = calloc((size_t)n, sizeof *cp);
    if (!c || !ca || !taken || !ep || !cp)
        die("calloc", -ENOMEM);
    struct echo_shared sh = {0};
    esock_ep sep = es_ep(ESOCK_FRAME_LEN32, "127.0.0.1"),
             cep = es_ep(ESOCK_FRAME_LEN32, "127.0.0.1");
    uint16_t port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    for (int i = 0; i < n; i++) {
        atomic_init(&taken[i], false);
        if (local)
            jo.sched = (int)((unsigned)i % st.schedulers) + 1;
        int rc = rt_spawn_actor(&echo_ops, &sh, &jo, &ep[i]);
        if (rc == 0)
            rc = esock_owner_register(sep, ep[i], take_one, &taken[i]);
        if (rc < 0)
            die("echo actor", rc);
    }
    for (int i = 0; i < n; i++) {
        ca[i] = (struct es_rr_arg){&c[i], cep, port, dur};
        if (local)
            jo.sched = (int)((unsigned)i % st.schedulers) + 1;
        int rc = rt_spawn(es_rr_client, &ca[i], &jo, &cp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
    }
    for (int i = 0; i < n; i++)
        es_join(cp[i], (int)(dur * 1000) + 60000);
    /* which schedulers the two ends ran on (each end's association process
     * runs beside its owner) */
    int es0 = n == 1 ? rt_sched_of(ep[0]) : -1, placed = 0;
    if (es0 >= 0 && c[0].sched >= 0)
        placed = es0 == c[0].sched ? 1 : 2;
    /* every client's connection has ended both ways; the echo actors saw it */
    for (int i = 0; i < n; i++) {
        rt_send(ep[i], TAG_STOP, NULL, 0);
        es_join(ep[i], 10000);
    }
    struct result r = rr_total("esock", "rr", c, n);
    r.placed = placed;
    unsigned long errs = atomic_load(&sh.errors);
    if (errs) {
        fprintf(stderr, "esock_tcp: esock rr: %lu echoes could not be sent\n", errs);
        r.ok = false, r.rate = r.mbs = 0;
    }
    esock_ep_close(cep);
    esock_ep_close(sep);
    free(c), free(ca), free(taken), free(ep), free(cp);
    return r;
}

/* ---- setup: connect, up, close, again ---- */

struct es_setup_arg {
    struct rr_flow *c; /* trips: connections */
    esock_ep cep;
    uint16_t port;
    double dur;
};

static void es_setup_client(void *arg)
{
    struct es_setup_arg *a = arg;
    struct rr_flow *c = a->c;
    c->t0 = now_s();
    double end = c->t0 + a->dur;
    while ((c->t1 = now_s()) < end) {
        esock_assoc as;
        int rc = es_connect(a->cep, a->port, &as);
        if (rc < 0) {
            c->err = rc, c->what = "connect";
            return;
        }
        rc = es_close(as, &c->what);
        if (rc < 0) {
            c->err = rc;
            return;
        }
        c->trips++;
    }
}

/* --client-addr: the set-up clients' endpoint address */
static const char *setup_client_addr = "127.0.0.1";

static struct result es_setup(int n, double dur)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct es_setup_arg *ca = calloc((size_t)n, sizeof *ca);
    rt_pid *cp = calloc((size_t)n, sizeof *cp);
    if (!c || !ca || !cp)
        die("calloc", -ENOMEM);
    struct echo_shared sh = {0};
    esock_ep sep = es_ep(ESOCK_FRAME_LEN32, "127.0.0.1"),
             cep = es_ep(ESOCK_FRAME_LEN32, setup_client_addr);
    uint16_t port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    rt_pid srv;
    int rc = rt_spawn_actor(&echo_ops, &sh, &jo, &srv);
    if (rc == 0)
        rc = esock_owner_register(sep, srv, NULL, NULL);
    if (rc < 0)
        die("setup server", rc);
    for (int i = 0; i < n; i++) {
        ca[i] = (struct es_setup_arg){&c[i], cep, port, dur};
        rc = rt_spawn(es_setup_client, &ca[i], &jo, &cp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
    }
    for (int i = 0; i < n; i++)
        es_join(cp[i], (int)(dur * 1000) + 60000);
    struct result r = rr_total("esock", "setup", c, n);
    r.bytes = 0, r.mbs = 0;
    /* the server's side: every connection up and down once */
    unsigned long want = (unsigned long)r.msgs;
    for (int i = 0; i < 1000 && atomic_load(&sh.downs) < want; i++)
        usleep(1000);
    rt_send(srv, TAG_STOP, NULL, 0);
    es_join(srv, 10000);
    if (atomic_load(&sh.ups) != want || atomic_load(&sh.downs) != want) {
        fprintf(stderr,
                "esock_tcp: esock setup: %lu connections, the server saw %lu up, %lu down\n", want,
                atomic_load(&sh.ups), atomic_load(&sh.downs));
        r.ok = false, r.rate = 0;
    }
    esock_ep_close(cep);
    esock_ep_close(sep);
    free(c), free(ca), free(cp);
    return r;
}

/* ================================ plain ================================ */

static void pl_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt(TCP_NODELAY)", -errno);
}

static int pl_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0 || listen(fd, 1024) < 0)
        die("bind/listen", -errno);
    *port = ntohs(a.sin_port);
    return fd;
}

static int pl_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (fd < 0)
        return -errno;
    pl_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int pl_accept(int l)
{
    for (;;) {
        int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (s >= 0) {
            pl_nodelay(s);
            return s;
        }
        if (errno != EINTR && errno != ECONNABORTED)
            return -errno;
    }
}

/* Write all of (p, len). 0 or -errno. */
static int pl_send_all(int fd, const void *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p = (const char *)p + w;
        len -= (size_t)w;
    }
    return 0;
}

/* Cutting a byte stream into messages, in place in one read buffer. */
struct frd {
    int fd;
    unsigned char *buf;
    size_t cap, start, end;
};

static int frd_init(struct frd *r, int fd, size_t max_msg)
{
    r->fd = fd;
    r->cap = RD_BUF + 4 + max_msg;
    r->start = r->end = 0;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : -ENOMEM;
}

/* The next message: 1 with (*p, *len) in the buffer until the next call, 0
 * at the peer's end between messages, -EPROTO at its end inside one,
 * -EMSGSIZE, -errno. */
static int frd_next(struct frd *r, const unsigned char **p, size_t *len)
{
    for (;;) {
        size_t have = r->end - r->start;
        if (have >= 4) {
            uint32_t be;
            memcpy(&be, r->buf + r->start, 4);
            size_t n = ntohl(be);
            if (n > r->cap - 4)
                return -EMSGSIZE;
            if (have >= 4 + n) {
                *p = r->buf + r->start + 4;
                *len = n;
                r->start += 4 + n;
                return 1;
            }
            if (r->start + 4 + n > r->cap) { /* no room for its rest: to the front */
                memmove(r->buf, r->buf + r->start, have);
                r->start = 0, r->end = have;
            }
        } else if (r->start == r->end) {
            r->start = r->end = 0;
        } else if (r->cap - r->end < 4) {
            memmove(r->buf, r->buf + r->start, have);
            r->start = 0, r->end = have;
        }
        ssize_t got = recv(r->fd, r->buf + r->end, r->cap - r->end, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return r->end == r->start ? 0 : -EPROTO;
        r->end += (size_t)got;
    }
}

struct pl_flow {
    struct flow *f;
    int fd;
    size_t size;
    bool framed;
    double dur;
};

static void *pl_sender(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    unsigned char *buf = malloc(p->size + 4);
    uint32_t be = htonl((uint32_t)p->size);
    memcpy(buf, &be, 4);
    if (p->framed)
        msg_fill(buf + 4, p->size, 0);
    f->t0 = now_s();
    double end = f->t0 + p->dur;
    uint64_t n = 0, off = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        int rc;
        if (p->framed) {
            msg_set_seq(buf + 4, n);
            rc = pl_send_all(p->fd, buf, p->size + 4);
        } else {
            rc = pl_send_all(p->fd, bulk_pat + off % PERIOD, p->size);
        }
        if (rc < 0) {
            f->err = rc, f->what = "send";
            break;
        }
        n++;
        off += p->size;
    }
    free(buf);
    f->sent = n;
    f->sent_bytes = off;
    shutdown(p->fd, SHUT_WR);
    return NULL;
}

static void *pl_receiver(void *arg)
{
    struct pl_flow *p = arg;
    struct flow *f = p->f;
    if (p->framed) {
        struct frd r;
        if (frd_init(&r, p->fd, p->size) < 0) {
            f->rerr = -ENOMEM, f->rwhat = "malloc";
            return NULL;
        }
        for (;;) {
            const unsigned char *m;
            size_t len;
            int rc = frd_next(&r, &m, &len);
            if (rc <= 0) {
                f->t1 = now_s();
                if (rc == 0)
                    f->ended = true;
                else
                    f->rerr = rc, f->rwhat = "recv";
                break;
            }
            f->bad = f->bad || !msg_ok(m, len, p->size, f->got);
            f->got++;
            f->got_bytes += len;
        }
        free(r.buf);
        return NULL;
    }
    unsigned char *buf = malloc(RD_BUF);
    for (;;) {
        ssize_t n = recv(p->fd, buf, RD_BUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            f->t1 = now_s();
            if (n == 0)
                f->ended = true;
            else
                f->rerr = -errno, f->rwhat = "recv";
            break;
        }
        f->bad = f->bad || !bulk_ok(buf, (size_t)n, f->got_bytes);
        f->got++;
        f->got_bytes += (size_t)n;
    }
    free(buf);
    return NULL;
}

static pthread_t pl_thread(void *(*fn)(void *), void *arg, bool detach)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (detach)
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &a, fn, arg);
    pthread_attr_destroy(&a);
    if (rc)
        die("pthread_create", -rc);
    return t;
}

static struct result pl_stream(int n, size_t size, bool framed, double dur)
{
    struct flow *f = calloc((size_t)n, sizeof *f);
    struct pl_flow *snd = calloc((size_t)n, sizeof *snd), *rcv = calloc((size_t)n, sizeof *rcv);
    pthread_t *st = calloc((size_t)n, sizeof *st), *rt = calloc((size_t)n, sizeof *rt);
    if (!f || !snd || !rcv || !st || !rt)
        die("calloc", -ENOMEM);
    uint16_t port;
    int l = pl_listener(&port);
    for (int i = 0; i < n; i++) {
        int c = pl_connect(port), s = c < 0 ? c : pl_accept(l);
        if (c < 0 || s < 0)
            die("connect/accept", c < 0 ? c : s);
        snd[i] = (struct pl_flow){&f[i], c, size, framed, dur};
        rcv[i] = (struct pl_flow){&f[i], s, size, framed, dur};
    }
    for (int i = 0; i < n; i++)
        rt[i] = pl_thread(pl_receiver, &rcv[i], false);
    for (int i = 0; i < n; i++)
        st[i] = pl_thread(pl_sender, &snd[i], false);
    for (int i = 0; i < n; i++) {
        pthread_join(st[i], NULL);
        pthread_join(rt[i], NULL);
    }
    struct result r = total("plain", f, n, size, framed);
    for (int i = 0; i < n; i++) {
        close(snd[i].fd);
        close(rcv[i].fd);
    }
    close(l);
    free(f), free(snd), free(rcv), free(st), free(rt);
    return r;
}

struct pl_rr {
    struct rr_flow *c;
    int fd;
    double dur;
};

static void *pl_rr_client(void *arg)
{
    struct pl_rr *x = arg;
    struct rr_flow *c = x->c;
    unsigned char buf[4 + RR_SIZE];
    uint32_t be = htonl(RR_SIZE);
    memcpy(buf, &be, 4);
    msg_fill(buf + 4, RR_SIZE, 0);
    struct frd r;
    if (frd_init(&r, x->fd, RR_SIZE) < 0) {
        c->err = -ENOMEM, c->what = "malloc";
        return NULL;
    }
    c->t0 = now_s();
    double end = c->t0 + x->dur, t = c->t0;
    while (t < end) {
        msg_set_seq(buf + 4, c->trips);
        int rc = pl_send_all(x->fd, buf, sizeof buf);
        if (rc < 0) {
            c->err = rc, c->what = "send";
            break;
        }
        const unsigned char *m;
        size_t len;
        rc = frd_next(&r, &m, &len);
        if (rc <= 0 || !msg_ok(m, len, RR_SIZE, c->trips)) {
            c->err = rc < 0 ? rc : -EBADMSG, c->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&c->lat, (t2 - t) * 1e6);
        c->trips++;
        t = t2;
    }
    c->t1 = t;
    /* a graceful end both ways, as esock's */
    shutdown(x->fd, SHUT_WR);
    const unsigned char *m;
    size_t len;
    if (c->err == 0 && frd_next(&r, &m, &len) != 0)
        c->err = -EPROTO, c->what = "no clean end";
    free(r.buf);
    return NULL;
}

static void *pl_rr_server(void *arg)
{
    int fd = *(int *)arg;
    struct frd r;
    if (frd_init(&r, fd, 1 << 16) < 0)
        return NULL;
    const unsigned char *m;
    size_t len;
    while (frd_next(&r, &m, &len) > 0)
        if (pl_send_all(fd, m - 4, len + 4) < 0) /* the length is in front of it */
            break;
    shutdown(fd, SHUT_WR);
    free(r.buf);
    return NULL;
}

static struct result pl_rr(int n, double dur)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct pl_rr *x = calloc((size_t)n, sizeof *x);
    int *sfd = calloc((size_t)n, sizeof *sfd);
    pthread_t *ct = calloc((size_t)n, sizeof *ct), *stt = calloc((size_t)n, sizeof *stt);
    if (!c || !x || !sfd || !ct || !stt)
        die("calloc", -ENOMEM);
    uint16_t port;
    int l = pl_listener(&port);
    for (int i = 0; i < n; i++) {
        int fd = pl_connect(port);
        sfd[i] = fd < 0 ? fd : pl_accept(l);
        if (fd < 0 || sfd[i] < 0)
            die("connect/accept", fd < 0 ? fd : sfd[i]);
        x[i] = (struct pl_rr){&c[i], fd, dur};
    }
    for (int i = 0; i < n; i++)
        stt[i] = pl_thread(pl_rr_server, &sfd[i], false);
    for (int i = 0; i < n; i++)
        ct[i] = pl_thread(pl_rr_client, &x[i], false);
    for (int i = 0; i < n; i++) {
        pthread_join(ct[i], NULL);
        pthread_join(stt[i], NULL);
        close(x[i].fd);
        close(sfd[i]);
    }
    close(l);
    struct result r = rr_total("plain", "rr", c, n);
    free(c), free(x), free(sfd), free(ct), free(stt);
    return r;
}

/* setup: a thread per accepted connection, which reads until the client's
 * end and closes. */
struct pl_setup_srv {
    int l;
    atomic_ulong accepted, closed, live; /* seq_cst: few, and main polls them */
    atomic_int err;
};

struct pl_conn {
    struct pl_setup_srv *s;
    int fd;
};

static void *pl_setup_conn(void *arg)
{
    struct pl_conn *c = arg;
    char buf[64];
    ssize_t n;
    while ((n = recv(c->fd, buf, sizeof buf, 0)) > 0 || (n < 0 && errno == EINTR))
        ;
    if (n < 0)
        atomic_store(&c->s->err, -errno);
    close(c->fd);
    atomic_fetch_add(&c->s->closed, 1);
    atomic_fetch_sub(&c->s->live, 1);
    free(c);
    return NULL;
}

static void *pl_setup_acceptor(void *arg)
{
    struct pl_setup_srv *s = arg;
    for (;;) {
        int fd = pl_accept(s->l);
        if (fd < 0)
            return NULL; /* the listener was shut down */
        struct pl_conn *c = malloc(sizeof *c);
        if (c == NULL)
            die("malloc", -ENOMEM);
        *c = (struct pl_conn){s, fd};
        atomic_fetch_add(&s->accepted, 1);
        atomic_fetch_add(&s->live, 1);
        pl_thread(pl_setup_conn, c, true);
    }
}

struct pl_setup_cl {
    struct rr_flow *c;
    uint16_t port;
    double dur;
};

static void *pl_setup_client(void *arg)
{
    struct pl_setup_cl *x = arg;
    struct rr_flow *c = x->c;
    c->t0 = now_s();
    double end = c->t0 + x->dur;
    while ((c->t1 = now_s()) < end) {
        int fd = pl_connect(x->port);
        if (fd < 0) {
            c->err = fd, c->what = "connect";
            return NULL;
        }
        shutdown(fd, SHUT_WR);
        char b;
        ssize_t n = recv(fd, &b, 1, 0);
        close(fd);
        if (n != 0) {
            c->err = n < 0 ? -errno : -EPROTO, c->what = "no clean end";
            return NULL;
        }
        c->trips++;
    }
    return NULL;
}

static struct result pl_setup(int n, double dur)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct pl_setup_cl *x = calloc((size_t)n, sizeof *x);
    pthread_t *ct = calloc((size_t)n, sizeof *ct);
    if (!c || !x || !ct)
        die("calloc", -ENOMEM);
    uint16_t port;
    struct pl_setup_srv s = {.l = pl_listener(&port)};
    pthread_t at = pl_thread(pl_setup_acceptor, &s, false);
    for (int i = 0; i < n; i++) {
        x[i] = (struct pl_setup_cl){&c[i], port, dur};
        ct[i] = pl_thread(pl_setup_client, &x[i], false);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ct[i], NULL);
    struct result r = rr_total("plain", "setup", c, n);
    r.bytes = 0, r.mbs = 0;
    shutdown(s.l, SHUT_RDWR); /* wakes the acceptor */
    pthread_join(at, NULL);
    for (int i = 0; i < 10000 && atomic_load(&s.live) > 0; i++)
        usleep(1000);
    close(s.l);
    unsigned long want = (unsigned long)r.msgs;
    if (atomic_load(&s.accepted) != want || atomic_load(&s.closed) != want || s.err) {
        fprintf(stderr,
                "esock_tcp: plain setup: %lu connections, the server accepted %lu, "
                "closed %lu (%s)\n",
                want, atomic_load(&s.accepted), atomic_load(&s.closed), esock_strerror(s.err));
        r.ok = false, r.rate = 0;
    }
    free(c), free(x), free(ct);
    return r;
}

/* ============================ Go, Erlang ============================= */

static const char *go_path; /* bench/peers/go/tcppeer, built; NULL: no Go */
static const char *erl_dir; /* the folder of tcppeer.beam; NULL: no Erlang */
extern char **environ;

/* Run a peer program (argv[0], looked up in PATH) for one point and wait
 * for its end, at most dur + 180 s (then it is killed): it prints "ok MSGS
 * BYTES SECS P50_US P99_US" or "fail WHY" (other lines, an Erlang
 * runtime's reports, are passed over). */
static struct result ext_run(const char *peer, char *const argv[], const char *cas, int n,
                             size_t size, bool framed, double dur)
{
    struct result r = {0};
    int pfd[2];
    if (pipe(pfd) < 0)
        die("pipe", -errno);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        fprintf(stderr, "esock_tcp: %s: %s\n", argv[0], strerror(rc));
        return r;
    }
    char out[4096] = {0};
    size_t have = 0;
    bool late = false;
    for (double end = now_s() + dur + 180;;) {
        double left = end - now_s();
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || (poll(&pf, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR)) {
            late = true;
            kill(pid, SIGKILL);
            break;
        }
        char scratch[4096];
        char *to = have < sizeof out - 1 ? out + have : scratch;
        ssize_t k =
            read(pfd[0], to, have < sizeof out - 1 ? sizeof out - 1 - have : sizeof scratch);
        if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
            break;
        if (k > 0 && to != scratch)
            have += (size_t)k;
    }
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    const char *line = out;
    while (strncmp(line, "ok ", 3) != 0 && strncmp(line, "fail ", 5) != 0 && strchr(line, '\n'))
        line = strchr(line, '\n') + 1;
    unsigned long long msgs, bytes;
    if (!late && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
        sscanf(line, "ok %llu %llu %lf %lf %lf", &msgs, &bytes, &r.secs, &r.p50_us, &r.p99_us) ==
            5 &&
        r.secs > 0) {
        r.ok = true;
        r.msgs = msgs, r.bytes = bytes;
        r.rate = (double)msgs / r.secs;
        r.mbs = (double)bytes / r.secs / 1e6;
        if (!framed)
            r.rate = r.mbs;
    } else {
        fprintf(stderr, "esock_tcp: %s peer (%s, %d conns, %zu B): %s%d: %.*s\n", peer, cas, n,
                size, late ? "no answer in time (killed), status " : "status ", st,
                (int)strcspn(line, "\n"), line);
    }
    return r;
}

/* The Go peer, bench/peers/go/tcppeer. */
static struct result go_run(const char *cas, int n, size_t size, bool framed, double dur)
{
    char conns[16], sz[24], d[32];
    snprintf(conns, sizeof conns, "%d", n);
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(d, sizeof d, "%.3f", dur);
    char *argv[] = {(char *)go_path,
                    "-case",
                    (char *)cas,
                    "-conns",
                    conns,
                    "-size",
                    sz,
                    "-dur",
                    d,
                    framed ? "-framed=true" : "-framed=false",
                    NULL};
    return ext_run("go", argv, cas, n, size, framed, dur);
}

/* The Erlang peer, bench/peers/erlang/tcppeer.erl, one erl for each point
 * (as the Go peer is a process for each). */
static struct result erl_run(const char *cas, int n, size_t size, bool framed, double dur)
{
    char conns[16], sz[24], d[32];
    snprintf(conns, sizeof conns, "%d", n);
    snprintf(sz, sizeof sz, "%zu", size);
    snprintf(d, sizeof d, "%.3f", dur);
    char *argv[] = {
        "erl", "-noshell", "-pa", (char *)erl_dir,           "-run", "tcppeer", "main", (char *)cas,
        conns, sz,         d,     framed ? "true" : "false", NULL};
    return ext_run("erlang", argv, cas, n, size, framed, dur);
}

/* ================================ main ================================ */

enum { ES, PL, GO, ER, NPEER };
static const char *peer_names[NPEER] = {"esock", "plain", "go", "erlang"};

enum { C_STREAM, C_BULK, C_RR, C_RRL, C_SETUP, NCASE };
static const char *case_names[NCASE] = {"stream", "bulk", "rr", "rr-local", "setup"};
static const char *case_units[NCASE] = {"msgs/s", "MB/s", "trips/s", "trips/s", "conns/s"};

static struct result run_one(int peer, int cas, int n, size_t size, double dur)
{
    bool framed = cas != C_BULK;
    switch (peer) {
    case ES:
        return cas == C_RR || cas == C_RRL ? es_rr(n, dur, cas == C_RRL)
               : cas == C_SETUP            ? es_setup(n, dur)
                                           : es_stream(n, size, framed, dur);
    case PL:
        return cas == C_RR || cas == C_RRL ? pl_rr(n, dur)
               : cas == C_SETUP            ? pl_setup(n, dur)
                                           : pl_stream(n, size, framed, dur);
    case GO:
        return go_run(cas == C_RRL ? "rr" : case_names[cas], n, size, framed, dur);
    default:
        return erl_run(cas == C_RRL ? "rr" : case_names[cas], n, size, framed, dur);
    }
}

/* The index of the median of v[0..n) (the lower middle for even n). */
static int median_index(const double *v, int n)
{
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            below += v[j] < v[i];
            equal += v[j] == v[i];
        }
        if (below <= (n - 1) / 2 && below + equal > (n - 1) / 2)
            return i;
    }
    return 0;
}

/* mkdir -p of the folder holding `path`. */
static void make_parent(const char *path)
{
    char *p = strdup(path);
    for (char *s = p + 1; p && *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0777);
        *s = '/';
    }
    free(p);
}

static FILE *open_out(const char *path)
{
    make_parent(path);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "esock_tcp: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}

struct point {
    int cas, conns;
    size_t size;
};

static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
    bool quick = false;
    int runs = 0, only_conns = 0, only_case = -1;
    double dur = 0;
    size_t only_size = 0;
    rt_opts ro = {0};
    const char *csv_path = "build/bench/esock_tcp.csv", *json_path = NULL, *peers = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json_path = argv[++i];
        else if (strcmp(argv[i], "--go") == 0 && i + 1 < argc)
            go_path = argv[++i];
        else if (strcmp(argv[i], "--erl") == 0 && i + 1 < argc)
            erl_dir = argv[++i];
        else if (strcmp(argv[i], "--peers") == 0 && i + 1 < argc)
            peers = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dur") == 0 && i + 1 < argc)
            dur = atof(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--client-addr") == 0 && i + 1 < argc)
            setup_client_addr = argv[++i];
        else if (strcmp(argv[i], "--schedulers") == 0 && i + 1 < argc)
            ro.schedulers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            only_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
            i++;
            for (int c = 0; c < NCASE; c++)
                if (strcmp(argv[i], case_names[c]) == 0)
                    only_case = c;
            if (only_case < 0) {
                fprintf(stderr, "esock_tcp: --case: stream, bulk, rr or setup\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: esock_tcp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] "
                    "[--json FILE] [--go PROGRAM]\n"
                    "                 [--erl BEAM_DIR] [--case stream|bulk|rr|setup] [--conns N] "
                    "[--size BYTES]\n"
                    "                 [--peers esock,plain,go,erlang]\n"
                    "                 [--schedulers N] [--client-addr ADDR]\n");
            return 2;
        }
    }
    if (dur <= 0)
        dur = quick ? 0.3 : 2.0;
    if (runs <= 0 || runs > MAX_RUNS)
        runs = quick ? 1 : 3;
    if (only_conns > MAX_CONNS)
        only_conns = MAX_CONNS;
    bool use[NPEER];
    for (int k = 0; k < NPEER; k++)
        use[k] = peers == NULL || strstr(peers, peer_names[k]) != NULL;
    if (go_path == NULL || access(go_path, X_OK) != 0) {
        if (go_path)
            fprintf(stderr, "esock_tcp: %s: not there (bench/run-tcp builds it): no Go\n", go_path);
        use[GO] = false;
    }
    char beam[4096];
    snprintf(beam, sizeof beam, "%s/tcppeer.beam", erl_dir ? erl_dir : ".");
    if (erl_dir == NULL || access(beam, R_OK) != 0) {
        if (erl_dir)
            fprintf(stderr, "esock_tcp: %s: not there (bench/run-tcp builds it): no Erlang\n",
                    beam);
        use[ER] = false;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    patterns_init();
    FILE *csv = open_out(csv_path), *json = json_path ? open_out(json_path) : NULL;
    int rc = rt_start(&ro);
    if (rc == 0)
        rc = esock_start();
    if (rc < 0)
        die("start", rc);
    rt_stats st;
    rt_stats_get(&st);
    char kern[256] = "?";
    FILE *kv = fopen("/proc/sys/kernel/osrelease", "r");
    if (kv) {
        if (fgets(kern, sizeof kern, kv))
            kern[strcspn(kern, "\n")] = '\0';
        fclose(kv);
    }
    printf("esock %s over TCP on 127.0.0.1 vs a plain blocking C program%s,\n"
           "kernel %s, %ld CPU(s), nothing pinned.\n"
           "esock: rt with %u schedulers, a process per side of each connection (esock_send,\n"
           "waits for SEND_READY; owners take ESOCK_MSG_DATA). plain: a blocking thread per\n"
           "socket. go: a goroutine per socket (net.Conn). erlang: a process per socket\n"
           "(gen_tcp, {packet,4}, {active,N}; erl's default schedulers). All: TCP_NODELAY, one\n"
           "send per message, 4-byte big-endian length (bulk: unframed). %.2f s per run, median\n"
           "of %d run(s) [min-max]; ratio: esock / peer (> 1: esock better; latency: < 1 better).\n"
           "Every message counted and checked at the receiver.\n",
           esock_version(),
           use[GO] && use[ER] ? ", Go's net and Erlang's gen_tcp"
           : use[GO]          ? " and Go's net"
           : use[ER]          ? " and Erlang's gen_tcp"
                              : "",
           kern, sysconf(_SC_NPROCESSORS_ONLN), st.schedulers, dur, runs);
    for (int k = GO; k <= ER; k++)
        if (!use[k])
            printf("%s: not run (not asked for, not installed, or not built: bench/run-tcp "
                   "builds it).\n",
                   peer_names[k]);
    printf("\n");
    printf("%-6s %5s %6s | %10s %10s %6s | %10s %6s | %10s %6s | %8s %8s %8s %8s | %s\n", "case",
           "conns", "size", "esock", "plain", "ratio", "go", "ratio", "erlang", "ratio", "esock",
           "plain", "go", "erlang", "unit; MB/s");
    fprintf(csv, "case,conns,size,peer,runs,rate,rate_min,rate_max,unit,mb_per_s,p50_us,p99_us,"
                 "esock_ratio,ok,esock_split_runs\n");
    if (json)
        fprintf(json,
                "{\n  \"bench\": \"esock_tcp\",\n  \"esock\": \"%s\",\n  \"kernel\": \"%s\",\n"
                "  \"cpus\": %ld,\n  \"schedulers\": %u,\n  \"dur_s\": %.3f,\n  \"runs\": %d,\n"
                "  \"points\": [",
                esock_version(), kern, sysconf(_SC_NPROCESSORS_ONLN), st.schedulers, dur, runs);
    static const struct point points[] = {
        {C_STREAM, 1, 64},    {C_STREAM, 1, 1024},   {C_STREAM, 1, 16384},   {C_STREAM, 1, 65536},
        {C_STREAM, 100, 64},  {C_STREAM, 100, 1024}, {C_STREAM, 100, 16384}, {C_STREAM, 100, 65536},
        {C_BULK, 1, BULK},    {C_BULK, 100, BULK},   {C_RR, 1, RR_SIZE},     {C_RRL, 1, RR_SIZE},
        {C_RR, 100, RR_SIZE}, {C_SETUP, 1, 0},       {C_SETUP, 10, 0},
    };
    bool all_ok = true, first_point = true;
    double t_start = now_s();
    for (size_t pi = 0; pi < sizeof points / sizeof points[0]; pi++) {
        struct point pt = points[pi];
        if ((only_case >= 0 && pt.cas != only_case) || (only_size && pt.size != only_size))
            continue;
        if (only_conns) { /* each case and size once, with that many */
            bool dup = false;
            for (size_t j = 0; j < pi; j++)
                dup = dup || (points[j].cas == pt.cas && points[j].size == pt.size);
            if (dup)
                continue;
            pt.conns = only_conns;
        }
        struct result all[NPEER][MAX_RUNS], med[NPEER] = {0};
        double rates[NPEER][MAX_RUNS], lo[NPEER] = {0}, hi[NPEER] = {0};
        bool failed[NPEER] = {false};
        for (int run = 0; run < runs; run++) {
            for (int k = 0; k < NPEER; k++) {
                if (!use[k])
                    continue;
                if (failed[k]) { /* once is enough: a failure costs its timeouts */
                    all[k][run] = all[k][0];
                    rates[k][run] = 0;
                    continue;
                }
                fprintf(stderr, "[%s %d conn%s %zu B] %s, run %d/%d\n", case_names[pt.cas],
                        pt.conns, pt.conns > 1 ? "s" : "", pt.size, peer_names[k], run + 1, runs);
                all[k][run] = run_one(k, pt.cas, pt.conns, pt.size, dur);
                rates[k][run] = all[k][run].rate;
                if (!all[k][run].ok) {
                    all_ok = false;
                    failed[k] = true;
                    all[k][0] = all[k][run];
                    for (int j = 0; j < run; j++)
                        rates[k][j] = 0;
                }
            }
        }
        for (int k = 0; k < NPEER; k++) {
            if (!use[k])
                continue;
            med[k] = failed[k] ? all[k][0] : all[k][median_index(rates[k], runs)];
            lo[k] = hi[k] = rates[k][0];
            for (int j = 1; j < runs; j++) {
                lo[k] = rates[k][j] < lo[k] ? rates[k][j] : lo[k];
                hi[k] = rates[k][j] > hi[k] ? rates[k][j] : hi[k];
            }
        }
        const char *unit = case_units[pt.cas];
        /* the external peers' cells: their rate, ratio, MB/s, or "-" */
        char xs[NPEER][16], xr[NPEER][16], xm[NPEER][16];
        for (int k = GO; k <= ER; k++) {
            snprintf(xs[k], sizeof xs[k], "-");
            snprintf(xr[k], sizeof xr[k], "-");
            snprintf(xm[k], sizeof xm[k], "-");
            if (!use[k])
                continue;
            snprintf(xs[k], sizeof xs[k], "%.0f", med[k].rate);
            snprintf(xr[k], sizeof xr[k], "%.2f", ratio(med[ES].rate, med[k].rate));
            snprintf(xm[k], sizeof xm[k], "%.1f", med[k].mbs);
        }
        printf("%-6s %5d %6zu | %10.0f %10.0f %6.2f | %10s %6s | %10s %6s | %8.1f %8.1f %8s %8s | "
               "%s",
               case_names[pt.cas], pt.conns, pt.size, med[ES].rate, med[PL].rate,
               ratio(med[ES].rate, med[PL].rate), xs[GO], xr[GO], xs[ER], xr[ER], med[ES].mbs,
               med[PL].mbs, xm[GO], xm[ER], unit);
        if (runs > 1) {
            printf("; min-max esock %.0f-%.0f plain %.0f-%.0f", lo[ES], hi[ES], lo[PL], hi[PL]);
            for (int k = GO; k <= ER; k++)
                if (use[k])
                    printf(" %s %.0f-%.0f", peer_names[k], lo[k], hi[k]);
        }
        int nsplit = 0, nplaced = 0;
        for (int j = 0; use[ES] && !failed[ES] && j < runs; j++) {
            nsplit += all[ES][j].placed == 2;
            nplaced += all[ES][j].placed != 0;
        }
        if (pt.cas == C_RR || pt.cas == C_RRL) {
            printf(
                "\n%-6s %5s %6s   p50/p99 us: esock %.0f/%.0f, plain %.0f/%.0f (ratio %.2f/%.2f)",
                "", "", "", med[ES].p50_us, med[ES].p99_us, med[PL].p50_us, med[PL].p99_us,
                ratio(med[ES].p50_us, med[PL].p50_us), ratio(med[ES].p99_us, med[PL].p99_us));
            for (int k = GO; k <= ER; k++)
                if (use[k])
                    printf(", %s %.0f/%.0f (ratio %.2f/%.2f)", peer_names[k], med[k].p50_us,
                           med[k].p99_us, ratio(med[ES].p50_us, med[k].p50_us),
                           ratio(med[ES].p99_us, med[k].p99_us));
            if (nplaced)
                printf("; esock's two ends on two schedulers in %d of %d runs", nsplit, nplaced);
        }
        for (int k = 0; k < NPEER; k++)
            if (use[k] && !med[k].ok)
                printf("  %s FAILED", peer_names[k]);
        printf("\n");
        fflush(stdout);
        for (int k = 0; k < NPEER; k++) {
            if (!use[k])
                continue;
            fprintf(csv, "%s,%d,%zu,%s,%d,%.1f,%.1f,%.1f,%s,%.3f,%.1f,%.1f,%.4f,%d,",
                    case_names[pt.cas], pt.conns, pt.size, peer_names[k], runs, med[k].rate, lo[k],
                    hi[k], unit, med[k].mbs, med[k].p50_us, med[k].p99_us,
                    ratio(med[ES].rate, med[k].rate), med[k].ok);
            if (k == ES && nplaced)
                fprintf(csv, "%d", nsplit);
            fprintf(csv, "\n");
            if (!json)
                continue;
            fprintf(json,
                    "%s\n    {\"case\": \"%s\", \"conns\": %d, \"size\": %zu, \"peer\": \"%s\", "
                    "\"unit\": \"%s\", \"median\": %.1f, \"min\": %.1f, \"max\": %.1f, "
                    "\"mb_per_s\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
                    "\"esock_ratio\": %.4f, \"ok\": %s,\n     \"runs\": [",
                    first_point ? "" : ",", case_names[pt.cas], pt.conns, pt.size, peer_names[k],
                    unit, med[k].rate, lo[k], hi[k], med[k].mbs, med[k].p50_us, med[k].p99_us,
                    ratio(med[ES].rate, med[k].rate), med[k].ok ? "true" : "false");
            first_point = false;
            for (int j = 0; j < runs; j++) {
                const struct result *x = &all[k][failed[k] ? 0 : j];
                fprintf(json,
                        "%s{\"rate\": %.1f, \"mb_per_s\": %.3f, \"p50_us\": %.1f, "
                        "\"p99_us\": %.1f, \"msgs\": %llu, \"bytes\": %llu, \"secs\": %.4f, "
                        "\"ok\": %s%s}",
                        j ? ", " : "", x->rate, x->mbs, x->p50_us, x->p99_us,
                        (unsigned long long)x->msgs, (unsigned long long)x->bytes, x->secs,
                        x->ok ? "true" : "false",
                        x->placed == 1   ? ", \"esock_ends\": \"one scheduler\""
                        : x->placed == 2 ? ", \"esock_ends\": \"two schedulers\""
                                         : "");
            }
            fprintf(json, "]}");
        }
    }
    fclose(csv);
    if (json) {
        fprintf(json, "\n  ]\n}\n");
        fclose(json);
    }
    printf("\n%.1f s in all; CSV in %s%s%s\n", now_s() - t_start, csv_path,
           json_path ? ", JSON in " : "", json_path ? json_path : "");
    rc = esock_stop();
    rt_stats leaks = {0};
    int src = rt_stop(5000, &leaks);
    if (rc < 0 || src < 0 || leaks.procs_live || leaks.msgs_live) {
        fprintf(stderr,
                "esock_tcp: unclean stop: esock_stop %d, rt_stop %d (%s), %llu processes and "
                "%llu messages left\n",
                rc, src, esock_strerror(src), (unsigned long long)leaks.procs_live,
                (unsigned long long)leaks.msgs_live);
        all_ok = false;
    }
    if (!all_ok) {
        fprintf(stderr, "esock_tcp: FAILED (above)\n");
        return 1;
    }
    return 0;
}
