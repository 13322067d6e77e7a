/* sctp_esock.c: bench/esock_sctp's esock side: senders and receivers as
 * stackful processes of the runtime, associations made and owned with
 * esock (see esock_sctp.c for what is measured). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sctp_bench.h"

static void es_diag(const char *who, esock_assoc a)
{
    esock_assoc_info in;
    int rc = esock_assoc_status(a, &in);
    if (rc < 0) {
        fprintf(stderr, "esock_sctp:   %s: esock_assoc_status: %s\n", who, esock_strerror(rc));
        return;
    }
    rt_stats st = {0};
    rt_stats_get(&st);
    fprintf(stderr,
            "esock_sctp:   %s: state %d, kernel state %d, esock send queue %zu B, unacked %u, "
            "pending %u, peer rwnd %u, cwnd %u, srtt %u ms, rto %u ms; runtime: %llu msgs live\n",
            who, in.state, in.kernel_state, in.queued, in.unacked, in.pending, in.peer_rwnd,
            in.cwnd, in.srtt_ms, in.rto_ms, (unsigned long long)st.msgs_live);
}

static rt_msg *es_wait_tag(uint32_t tag, int ms)
{
    rt_msg *m = NULL;
    return rt_receive_tag(tag, ms, &m) == 0 ? m : NULL;
}

struct es_send_arg {
    struct flow *f;
    esock_ep cep;
    uint16_t port;
};

/* Connect from `cep`, wait for the association, send for f->dur. */
static void es_sender(void *arg)
{
    struct es_send_arg *a = arg;
    struct flow *f = a->f;
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    esock_assoc as;
    int rc = esock_assoc_create(a->cep, &ra, 1, a->port, NULL, &as);
    if (rc < 0) {
        f->err = rc, f->what = "esock_assoc_create";
        return;
    }
    rt_msg *m = es_wait_tag(ESOCK_MSG_ASSOC_UP, 30000);
    if (m == NULL) {
        f->err = -ETIMEDOUT, f->what = "no ESOCK_MSG_ASSOC_UP within 30 s";
        return;
    }
    rt_msg_free(m);
    f->assoc = as;
    unsigned char *buf = pattern(f->size);
    f->t0 = now_s();
    double end = f->t0 + f->dur;
    uint64_t n = 0;
    for (;;) {
        if ((n & 63) == 0 && now_s() >= end)
            break;
        rc = esock_send(as, 0, PPID_DATA, 0, buf, f->size, NULL);
        if (rc == 0) {
            n++;
            continue;
        }
        if (rc != ESOCK_EWOULDBLOCK) {
            f->err = rc, f->what = "esock_send";
            break;
        }
        m = es_wait_tag(ESOCK_MSG_SEND_READY, 10000);
        if (m == NULL) {
            f->err = -ETIMEDOUT, f->what = "no ESOCK_MSG_SEND_READY within 10 s";
            es_diag("sending side, after 10 s without SEND_READY", as);
            break;
        }
        rt_msg_free(m);
    }
    f->sent = n;
    f->sent_bytes = n * f->size;
    free(buf);
    if (f->err)
        return;
    struct end_marker em = {n, n * f->size, rt_self()};
    while ((rc = esock_send(as, 0, PPID_END, 0, &em, sizeof em, NULL)) == ESOCK_EWOULDBLOCK) {
        m = es_wait_tag(ESOCK_MSG_SEND_READY, 30000);
        if (m == NULL) {
            rc = -ETIMEDOUT;
            break;
        }
        rt_msg_free(m);
    }
    if (rc < 0) {
        f->err = rc, f->what = "esock_send (end marker)";
        return;
    }
    /* stay the association's owner until the receiver has everything: an
     * owner that ends closes its association */
    m = es_wait_tag(TAG_DONE, 10000);
    if (m == NULL) {
        f->err = -ETIMEDOUT, f->what = "the receiver never confirmed the end marker (10 s)";
        es_diag("sending side, 10 s after its end marker", as);
    }
    rt_msg_free(m);
}

/* Receive one association's messages until its end marker. */
static void es_receiver(void *arg)
{
    struct flow *f = arg;
    for (;;) {
        rt_msg *m;
        int rc = rt_receive(15000, &m);
        if (rc < 0) {
            f->rerr = rc, f->what = "the receiver got nothing for 15 s";
            fprintf(stderr, "esock_sctp: a receiver stalled after %llu messages (%llu B)\n",
                    (unsigned long long)f->got, (unsigned long long)f->got_bytes);
            es_diag("receiving side", f->assoc);
            return;
        }
        if (m->tag == ESOCK_MSG_ASSOC_UP)
            f->assoc = esock_up_of(m)->assoc;
        if (m->tag == ESOCK_MSG_DATA) {
            const esock_data *d = esock_data_of(m);
            if (d->ppid == PPID_DATA) {
                f->got++;
                f->got_bytes += d->len;
                f->bad += d->len != f->size || d->stream != 0;
            } else if (d->ppid == PPID_END && d->len == sizeof f->end) {
                f->t1 = now_s();
                memcpy(&f->end, d->data, sizeof f->end);
                f->ended = true;
                rt_send(f->end.sender, TAG_DONE, NULL, 0);
                rt_msg_free(m);
                return;
            } else {
                f->bad++;
            }
        } else if (m->tag == ESOCK_MSG_ASSOC_DOWN) {
            f->rerr = ESOCK_ECLOSED, f->what = "the association went down";
            rt_msg_free(m);
            return;
        }
        rt_msg_free(m);
    }
}

/* An accept callback that takes one association, for one receiver. */
static bool take_one(void *arg, esock_assoc assoc, const esock_peer *peer)
{
    atomic_bool *taken = arg;
    /* relaxed: only the endpoint process calls it; atomic for the main
     * thread's read after the run */
    return !atomic_exchange_explicit(taken, true, memory_order_relaxed);
}

static esock_ep es_ep(void)
{
    /* a send queue about the size of the plain program's socket buffer,
     * so that neither side has far more in flight than the other */
    esock_ep_opts o = {.naddrs = 1, .send_hiwat = 256 << 10};
    esock_addr_parse("127.0.0.1", 0, &o.addrs[0]);
    esock_ep ep;
    int rc = esock_ep_create(&o, &ep);
    if (rc < 0)
        die("esock_ep_create", rc);
    return ep;
}

static void es_join(rt_pid p, int ms)
{
    int rc = rt_join(p, ms, NULL);
    if (rc < 0)
        die("rt_join (a benchmark process hangs)", rc);
}

/* `n` associations, each from its own client endpoint to one server
 * endpoint, each with its own sender and receiver process. */
struct result es_stream(int n, size_t size, double dur)
{
    struct flow *f = calloc((size_t)n, sizeof *f), *rf = calloc((size_t)n, sizeof *rf);
    struct es_send_arg *sa = calloc((size_t)n, sizeof *sa);
    atomic_bool *taken = calloc((size_t)n, sizeof *taken);
    esock_ep *ceps = calloc((size_t)n, sizeof *ceps);
    rt_pid *rp = calloc((size_t)n, sizeof *rp), *sp = calloc((size_t)n, sizeof *sp);
    if (!f || !rf || !sa || !taken || !ceps || !rp || !sp)
        die("calloc", -ENOMEM);
    esock_ep sep = es_ep();
    uint16_t port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    for (int i = 0; i < n; i++) {
        f[i].size = rf[i].size = size;
        f[i].dur = dur;
        atomic_init(&taken[i], false);
        int rc = rt_spawn(es_receiver, &rf[i], &jo, &rp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
        rc = esock_owner_register(sep, rp[i], take_one, &taken[i]);
        if (rc < 0)
            die("esock_owner_register", rc);
        ceps[i] = es_ep();
    }
    for (int i = 0; i < n; i++) {
        sa[i] = (struct es_send_arg){&f[i], ceps[i], port};
        int rc = rt_spawn(es_sender, &sa[i], &jo, &sp[i]);
        if (rc < 0)
            die("rt_spawn", rc);
    }
    int wait_ms = (int)(dur * 1000) + 120000;
    for (int i = 0; i < n; i++) {
        es_join(sp[i], wait_ms);
        es_join(rp[i], wait_ms);
    }
    struct result r = total("esock", f, rf, n);
    for (int i = 0; i < n; i++)
        esock_ep_close(ceps[i]);
    esock_ep_close(sep);
    free(f), free(rf), free(sa), free(taken), free(ceps), free(rp), free(sp);
    return r;
}

/* ping-pong: the client process owns its association and measures. */
struct es_rr {
    esock_ep cep;
    uint16_t port;
    double dur;
    struct lat lat;
    uint64_t trips;
    double secs;
    int err;
    const char *what;
};

static void es_rr_client(void *arg)
{
    struct es_rr *x = arg;
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    esock_assoc as;
    int rc = esock_assoc_create(x->cep, &ra, 1, x->port, NULL, &as);
    if (rc < 0) {
        x->err = rc, x->what = "esock_assoc_create";
        return;
    }
    rt_msg *m = es_wait_tag(ESOCK_MSG_ASSOC_UP, 30000);
    if (m == NULL) {
        x->err = -ETIMEDOUT, x->what = "no ESOCK_MSG_ASSOC_UP";
        return;
    }
    rt_msg_free(m);
    unsigned char *buf = pattern(64);
    double t0 = now_s(), end = t0 + x->dur, t = t0;
    while (t < end) {
        rc = esock_send(as, 0, PPID_PING, 0, buf, 64, NULL);
        if (rc < 0) {
            x->err = rc, x->what = "esock_send";
            break;
        }
        m = es_wait_tag(ESOCK_MSG_DATA, 10000);
        if (m == NULL) {
            x->err = -ETIMEDOUT, x->what = "no reply within 10 s";
            break;
        }
        const esock_data *d = esock_data_of(m);
        bool good = d->len == 64 && d->ppid == PPID_PING && memcmp(d->data, buf, 64) == 0;
        rt_msg_free(m);
        if (!good) {
            x->err = -EBADMSG, x->what = "a wrong reply";
            break;
        }
        double t2 = now_s();
        lat_add(&x->lat, (t2 - t) * 1e6);
        x->trips++;
        t = t2;
    }
    x->secs = t - t0;
    free(buf);
    struct end_marker em = {x->trips, 0, rt_self()};
    esock_send(as, 0, PPID_END, 0, &em, sizeof em, NULL);
    m = es_wait_tag(TAG_DONE, 10000);
    rt_msg_free(m);
}

static void es_rr_server(void *arg)
{
    struct es_rr *x = arg;
    for (;;) {
        rt_msg *m;
        if (rt_receive(30000, &m) < 0) {
            x->err = -ETIMEDOUT, x->what = "the echo server got nothing for 30 s";
            return;
        }
        const esock_data *d = esock_data_of(m);
        if (d && d->ppid == PPID_END && d->len == sizeof(struct end_marker)) {
            struct end_marker em;
            memcpy(&em, d->data, sizeof em);
            rt_send(em.sender, TAG_DONE, NULL, 0);
            rt_msg_free(m);
            return;
        }
        if (d) {
            int rc = esock_send(d->assoc, d->stream, d->ppid, 0, d->data, d->len, NULL);
            if (rc < 0) {
                x->err = rc, x->what = "esock_send (echo)";
                rt_msg_free(m);
                return;
            }
        }
        rt_msg_free(m);
    }
}

struct result es_rr(double dur)
{
    struct es_rr x = {.dur = dur};
    esock_ep sep = es_ep();
    x.cep = es_ep();
    x.port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    rt_pid sp, cp;
    int rc = rt_spawn(es_rr_server, &x, &jo, &sp);
    if (rc == 0)
        rc = esock_owner_register(sep, sp, NULL, NULL);
    if (rc == 0)
        rc = rt_spawn(es_rr_client, &x, &jo, &cp);
    if (rc < 0)
        die("rr set-up", rc);
    es_join(cp, (int)(dur * 1000) + 60000);
    es_join(sp, 60000);
    struct result r = {.ok = x.err == 0, .msgs = x.trips, .secs = x.secs};
    if (x.err) {
        fprintf(stderr, "esock_sctp: esock rr: %s: %s\n", x.what, esock_strerror(x.err));
        snprintf(r.why, sizeof r.why, "%s: %s", x.what, esock_strerror(x.err));
    }
    r.rate = x.secs > 0 ? (double)x.trips / x.secs : 0;
    r.bytes = x.trips * 64;
    r.mbs = x.secs > 0 ? (double)r.bytes / x.secs / 1e6 : 0;
    lat_done(&x.lat, &r.p50_us, &r.p99_us);
    esock_ep_close(x.cep);
    esock_ep_close(sep);
    return r;
}

/* Association set-up rate: one client process makes an association and
 * waits until both ends have it up (its own ESOCK_MSG_ASSOC_UP, and the
 * server endpoint's owner telling it of its UP), shuts it down
 * (esock_assoc_shutdown) and waits until both ends have seen it go (its
 * ESOCK_MSG_ASSOC_DOWN, the server owner's word of its DOWN), again and
 * again; the server owner counts every UP and DOWN. */
struct es_setup {
    esock_ep cep;
    uint16_t port;
    double dur;
    bool client_only; /* do not wait for the server owner's word */
    rt_pid server, client;
    uint64_t n; /* the client's: associations made and shut down */
    double secs;
    int err;
    const char *what;
    uint64_t ups, downs; /* the server owner's */
    int serr;
    const char *swhat;
};

/* One association's cycle, as the client has seen it so far. */
struct es_cycle {
    esock_assoc as;
    bool up, down, srv_up, srv_down;
};

/* Take messages until *flag is set; 0, -ETIMEDOUT, or ESOCK_ECLOSED when
 * the association went down otherwise than by a graceful shutdown. */
static int es_cycle_wait(struct es_cycle *c, const bool *flag, int ms)
{
    while (!*flag) {
        rt_msg *m;
        if (rt_receive(ms, &m) < 0)
            return -ETIMEDOUT;
        int rc = 0;
        if (m->tag == ESOCK_MSG_ASSOC_UP && esock_up_of(m)->assoc.id == c->as.id)
            c->up = true;
        else if (m->tag == ESOCK_MSG_ASSOC_DOWN && esock_down_of(m)->assoc.id == c->as.id) {
            c->down = true;
            if (esock_down_of(m)->reason != ESOCK_DOWN_SHUTDOWN)
                rc = ESOCK_ECLOSED;
        } else if (m->tag == TAG_UP)
            c->srv_up = true;
        else if (m->tag == TAG_GONE)
            c->srv_down = true;
        rt_msg_free(m);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void es_setup_client(void *arg)
{
    struct es_setup *x = arg;
    x->client = rt_self();
    esock_addr ra;
    esock_addr_parse("127.0.0.1", 0, &ra);
    double t0 = now_s(), end = t0 + x->dur, t = t0;
    while (t < end) {
        struct es_cycle c = {0};
        int rc = esock_assoc_create(x->cep, &ra, 1, x->port, NULL, &c.as);
        if (rc < 0) {
            x->err = rc, x->what = "esock_assoc_create";
            break;
        }
        if ((rc = es_cycle_wait(&c, &c.up, 10000)) < 0) {
            x->err = rc, x->what = "no ESOCK_MSG_ASSOC_UP within 10 s";
            break;
        }
        if (!x->client_only && (rc = es_cycle_wait(&c, &c.srv_up, 10000)) < 0) {
            x->err = rc, x->what = "the server's owner had no ESOCK_MSG_ASSOC_UP within 10 s";
            break;
        }
        if ((rc = esock_assoc_shutdown(c.as)) < 0) {
            x->err = rc, x->what = "esock_assoc_shutdown";
            break;
        }
        if ((rc = es_cycle_wait(&c, &c.down, 10000)) < 0) {
            x->err = rc, x->what = "no ESOCK_MSG_ASSOC_DOWN (shutdown) within 10 s";
            break;
        }
        if (!x->client_only && (rc = es_cycle_wait(&c, &c.srv_down, 10000)) < 0) {
            x->err = rc, x->what = "the server's owner had no ESOCK_MSG_ASSOC_DOWN within 10 s";
            break;
        }
        x->n++;
        t = now_s();
    }
    x->secs = t - t0;
    rt_send(x->server, TAG_DONE, &x->n, sizeof x->n);
}

static void es_setup_server(void *arg)
{
    struct es_setup *x = arg;
    uint64_t expect = UINT64_MAX;
    while (x->downs < expect || x->ups != x->downs) {
        rt_msg *m;
        if (rt_receive(15000, &m) < 0) {
            x->serr = -ETIMEDOUT, x->swhat = "the server's owner got nothing for 15 s";
            fprintf(stderr,
                    "esock_sctp: esock setup: the server saw %llu up, %llu down; "
                    "the client says %llu\n",
                    (unsigned long long)x->ups, (unsigned long long)x->downs,
                    (unsigned long long)expect);
            kernel_diag("setup");
            return;
        }
        /* x->client was set before the client made its first association */
        if (m->tag == ESOCK_MSG_ASSOC_UP) {
            x->ups++;
            rt_send(x->client, TAG_UP, NULL, 0);
        } else if (m->tag == ESOCK_MSG_ASSOC_DOWN) {
            x->downs++;
            rt_send(x->client, TAG_GONE, NULL, 0);
        } else if (m->tag == TAG_DONE && m->size == sizeof expect) {
            memcpy(&expect, m->data, sizeof expect);
        }
        rt_msg_free(m);
    }
}

struct result es_setup(double dur, bool client_only)
{
    struct es_setup x = {.dur = dur, .client_only = client_only};
    esock_ep sep = es_ep();
    x.cep = es_ep();
    x.port = (uint16_t)esock_ep_port(sep);
    rt_spawn_opts jo = {.joinable = true};
    rt_pid cp;
    int rc = rt_spawn(es_setup_server, &x, &jo, &x.server);
    if (rc == 0)
        rc = esock_owner_register(sep, x.server, NULL, NULL);
    if (rc == 0)
        rc = rt_spawn(es_setup_client, &x, &jo, &cp);
    if (rc < 0)
        die("setup set-up", rc);
    es_join(cp, (int)(dur * 1000) + 60000);
    es_join(x.server, 60000);
    struct result r = {.ok = x.err == 0 && x.serr == 0, .msgs = x.n, .secs = x.secs};
    if (x.err || x.serr) {
        snprintf(r.why, sizeof r.why, "%s: %s", x.err ? x.what : x.swhat,
                 esock_strerror(x.err ? x.err : x.serr));
        fprintf(stderr, "esock_sctp: esock setup: %s\n", r.why);
    } else if (x.ups != x.n || x.downs != x.n) {
        r.ok = false;
        snprintf(r.why, sizeof r.why, "the client made %llu, the server saw %llu up, %llu down",
                 (unsigned long long)x.n, (unsigned long long)x.ups, (unsigned long long)x.downs);
        fprintf(stderr, "esock_sctp: esock setup: %s\n", r.why);
    }
    r.rate = r.ok && x.secs > 0 ? (double)x.n / x.secs : 0;
    esock_ep_close(x.cep);
    esock_ep_close(sep);
    return r;
}
