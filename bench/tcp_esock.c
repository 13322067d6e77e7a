/* tcp_esock.c: bench/esock_tcp's esock side, written as a user writes it
 * (see esock_tcp.c for the workloads): the sending side of each connection
 * is a stackful process that made it (esock_assoc_create from one client
 * endpoint, so it is its owner) and calls esock_send in a loop, waiting for
 * ESOCK_MSG_SEND_READY when it gets ESOCK_EWOULDBLOCK; the receiving side
 * is a stackful process per connection registered as an owner of the
 * server endpoint (an accept callback takes one connection each), taking
 * ESOCK_MSG_DATA and freeing it. The rr echo side is a callback actor per
 * connection; the setup server one callback actor for all.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <esock/esock.h>
#include <rt/rt.h>

#include "tcp_bench.h"

#define TAG_STOP 9u /* main -> a callback actor: end */

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

struct result es_stream(int n, size_t size, bool framed, double dur)
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
struct result es_rr(int n, double dur, bool local)
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

struct result es_setup(int n, double dur, const char *client_addr)
{
    struct rr_flow *c = calloc((size_t)n, sizeof *c);
    struct es_setup_arg *ca = calloc((size_t)n, sizeof *ca);
    rt_pid *cp = calloc((size_t)n, sizeof *cp);
    if (!c || !ca || !cp)
        die("calloc", -ENOMEM);
    struct echo_shared sh = {0};
    esock_ep sep = es_ep(ESOCK_FRAME_LEN32, "127.0.0.1"),
             cep = es_ep(ESOCK_FRAME_LEN32, client_addr);
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
