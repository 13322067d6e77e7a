/* sctp_reconnect: a client that survives its server restarting, with
 * esock's reconnection (esock_assoc_opts.reconnect).
 *
 * What it shows, in one program:
 *  - a server: an endpoint on 127.0.0.1 whose owner (a callback actor)
 *    echoes what it gets;
 *  - a client (a stackful process) with its own endpoint and one
 *    association to the server, made with reconnection on: it pings every
 *    20 ms and checks each echo;
 *  - a director (a stackful process) that lets the client run, then stops
 *    the server (closes its endpoint: the association is aborted), waits,
 *    and starts a new server on the same port;
 *  - what the client sees meanwhile: ESOCK_MSG_ASSOC_DOWN with
 *    `reconnecting` set (the handle lives on), an ESOCK_MSG_RECONNECT per
 *    attempt with its backoff delay (capped, jittered, growing), attempts
 *    that fail while nobody listens, then ESOCK_MSG_ASSOC_UP again on the
 *    same handle, and the pings carry on where they stopped;
 *  - the client ends the association itself (esock_assoc_shutdown), which
 *    ends it for good: no reconnection after that.
 *
 * Run (the kernel must have SCTP; where it has not, in the test VM):
 *   sctp_reconnect
 *   tools/sctp-vm -- build/release/examples/sctp_reconnect     (host without SCTP)
 * Exits 0 when the client reconnected on its own and its pings were echoed
 * before and after, within a time limit, and everything stopped clean.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <esock/esock.h>
#include <rt/rt.h>

#define PING_MS    20    /* the client pings this often while up */
#define PINGS      5     /* echoes the client waits for on each association */
#define OFFLINE_MS 600   /* how long the server stays down */
#define WAIT_MS    10000 /* any single wait (the whole run takes about a second) */

enum { TAG_TICK = 1, TAG_READY, TAG_DONE };

/* ---- the server: an echo owner --------------------------------------------------------------- */

struct server {
    int number; /* 1 for the first server, 2 for its restart */
    unsigned long echoed;
};

static int server_init(void *state, void *arg)
{
    struct server *s = state;
    s->number = (int)(intptr_t)arg;
    return 0;
}

static void server_handle(void *state, rt_msg *m)
{
    struct server *s = state;
    const esock_data *d;
    if ((d = esock_data_of(m)) != NULL) {
        /* pings are small and one at a time: the send queue cannot be full */
        if (esock_send(d->assoc, d->stream, d->ppid, 0, d->data, d->len, NULL) == 0)
            s->echoed++;
    } else if (esock_up_of(m) != NULL) {
        printf("server #%d: association up\n", s->number);
    } else if (esock_ep_down_of(m) != NULL) {
        printf("server #%d: endpoint closed after %lu echoes; this server is gone\n", s->number,
               s->echoed);
        rt_exit(rt_self(), RT_EXIT_NORMAL);
    }
}

static const rt_actor_ops server_ops = {
    .state_size = sizeof(struct server),
    .init = server_init,
    .handle = server_handle,
};

/* Start server number `n` on 127.0.0.1:port (0: a free port). */
static int server_start(int n, uint16_t port, esock_ep *ep)
{
    rt_pid owner;
    int rc = esock_ep_create(&(esock_ep_opts){.port = port}, ep);
    if (rc < 0) {
        printf("server #%d: endpoint on port %u: %s\n", n, port, esock_strerror(rc));
        return rc;
    }
    rc = rt_spawn_actor(&server_ops, (void *)(intptr_t)n, NULL, &owner);
    if (rc == 0 && (rc = esock_owner_register(*ep, owner, NULL, NULL)) < 0)
        rt_exit(owner, RT_EXIT_KILL);
    if (rc < 0) {
        printf("server #%d: owner: %s\n", n, esock_strerror(rc));
        esock_ep_close(*ep);
        return rc;
    }
    printf("server #%d: listening on 127.0.0.1 port %d\n", n, esock_ep_port(*ep));
    return 0;
}

/* ---- the client ---------------------------------------------------------------------------------
 */

/* What the client saw, for the director to check. */
struct client_report {
    unsigned ups, downs_reconnecting, attempts, failed_attempts, echoes, lost;
    bool gave_up, bad_echo, finished;
};

struct client_args {
    rt_pid director;
    uint16_t port;
};

struct client {
    esock_assoc as;
    struct client_report r;
    bool up, waiting;     /* association up; a ping is out, its echo not back */
    unsigned seq;         /* the ping out or next */
    unsigned life_echoes; /* echoes on the current association */
    bool ended;           /* down for good */
    rt_timer tick;        /* the next TAG_TICK */
};

static void client_ping(struct client *c)
{
    char text[32];
    int n = snprintf(text, sizeof text, "ping %u", c->seq);
    int rc = esock_send(c->as, 0, 0, 0, text, (size_t)n, NULL);
    if (rc == 0)
        c->waiting = true;
    else
        printf("client: ping %u not sent: %s\n", c->seq, esock_strerror(rc));
}

static const char *nth(unsigned n)
{
    return n == 1 ? "1st" : n == 2 ? "2nd" : n == 3 ? "3rd" : "nth";
}

/* One message. Returns true when the client's work is done. */
static bool client_handle(struct client *c, struct client_args *a, rt_msg *m)
{
    const esock_data *d;
    const esock_up *u;
    const esock_down *dn;
    const esock_reconnect_ev *rc;
    const esock_send_failed *sf;
    if (m->tag == TAG_TICK) {
        if (c->up && !c->waiting)
            client_ping(c);
        rt_send_after(rt_self(), PING_MS, TAG_TICK, NULL, 0, &c->tick);
    } else if ((d = esock_data_of(m)) != NULL) {
        char want[32];
        int n = snprintf(want, sizeof want, "ping %u", c->seq);
        if (!c->waiting || d->len != (size_t)n || memcmp(d->data, want, (size_t)n) != 0) {
            printf("client: unexpected echo \"%.*s\"\n", (int)d->len, (const char *)d->data);
            c->r.bad_echo = true;
            return true;
        }
        c->waiting = false;
        c->seq++;
        c->r.echoes++;
        if (++c->life_echoes == PINGS) {
            printf("client: pings 1..%u echoed so far\n", c->seq - 1);
            if (c->r.ups == 1)
                rt_send(a->director, TAG_READY, NULL, 0);
            else
                return true;
        }
    } else if ((u = esock_up_of(m)) != NULL) {
        c->up = true;
        c->waiting = false; /* a ping lost with the old association goes out again */
        c->life_echoes = 0;
        c->r.ups++;
        printf("client: association up (%s time)%s; pinging every %d ms from ping %u\n",
               nth(c->r.ups), c->r.ups > 1 ? ", same handle" : "", PING_MS, c->seq);
    } else if ((dn = esock_down_of(m)) != NULL) {
        c->up = false;
        if (dn->reconnecting && dn->reason == ESOCK_DOWN_CANT_START) {
            c->r.failed_attempts++;
            printf("client:   attempt failed (%s): nobody listens\n",
                   esock_down_reason_name(dn->reason));
        } else if (dn->reconnecting) {
            c->r.downs_reconnecting++;
            printf("client: association down (%s), reconnecting: esock will try again\n",
                   esock_down_reason_name(dn->reason));
        } else {
            printf("client: association down for good (%s)\n", esock_down_reason_name(dn->reason));
            c->ended = true;
            return true;
        }
    } else if ((rc = esock_reconnect_of(m)) != NULL) {
        if (rc->gave_up) {
            printf("client: esock gave up reconnecting\n");
            c->r.gave_up = true;
            return true;
        }
        c->r.attempts++;
        printf("client:   reconnection attempt %u in %u ms\n", rc->attempt, rc->delay_ms);
    } else if ((sf = esock_send_failed_of(m)) != NULL) {
        /* the ping that was out when the server went away: it comes back */
        c->r.lost++;
        printf("client: ping \"%.*s\" came back undelivered; it goes out again\n", (int)sf->len,
               (const char *)sf->data);
    }
    return false;
}

static void client(void *arg)
{
    struct client_args *a = arg;
    struct client c = {.as = ESOCK_ASSOC_NONE, .seq = 1};
    esock_ep ep;
    esock_addr server;
    esock_addr_parse("127.0.0.1", 0, &server);
    int rc = esock_ep_create(NULL, &ep);
    if (rc < 0) {
        printf("client: endpoint: %s\n", esock_strerror(rc));
        return;
    }
    /* up to 20 retries, 100 ms at first, doubling up to 400 ms (each delay
     * picked at random between half of that and all of it) */
    esock_assoc_opts o = {.reconnect = {.max_attempts = 20, .min_ms = 100, .max_ms = 400}};
    rc = esock_assoc_create(ep, &server, 1, a->port, &o, &c.as);
    if (rc < 0) {
        printf("client: association: %s\n", esock_strerror(rc));
        esock_ep_close(ep);
        return;
    }
    rt_send_after(rt_self(), PING_MS, TAG_TICK, NULL, 0, &c.tick);
    int64_t deadline = rt_now_ms() + 2 * WAIT_MS;
    bool done = false;
    while (!done) {
        int64_t left = deadline - rt_now_ms();
        rt_msg *m;
        if (left <= 0 || rt_receive((int)left, &m) < 0) {
            printf("client: timed out\n");
            break;
        }
        done = client_handle(&c, a, m);
        rt_msg_free(m);
    }
    rt_cancel_timer(c.tick);
    c.r.finished = done && c.r.ups == 2 && c.life_echoes == PINGS;
    if (!c.ended && esock_assoc_shutdown(c.as) == 0) {
        /* a shutdown of our own is final: down without reconnecting */
        rt_msg *m;
        while (rt_receive_tag(ESOCK_MSG_ASSOC_DOWN, WAIT_MS, &m) == 0) {
            const esock_down *dn = esock_down_of(m);
            bool last = !dn->reconnecting;
            if (last)
                printf("client: association shut down (%s), for good\n",
                       esock_down_reason_name(dn->reason));
            rt_msg_free(m);
            if (last)
                break;
        }
    }
    esock_ep_close(ep);
    rt_send(a->director, TAG_DONE, &c.r, sizeof c.r);
}

/* ---- the director ------------------------------------------------------------------------------
 */

static bool is_tag(const rt_msg *m, void *arg)
{
    return m->tag == *(uint32_t *)arg || m->tag == RT_MSG_DOWN;
}

/* Wait for `tag` from the client; false if the client ended first. */
static bool await(uint32_t tag, rt_msg **out)
{
    if (rt_receive_match(is_tag, &tag, 2 * WAIT_MS, out) < 0) {
        printf("director: nothing from the client in time\n");
        return false;
    }
    if ((*out)->tag == RT_MSG_DOWN) {
        printf("director: the client ended early\n");
        rt_msg_free(*out);
        return false;
    }
    return true;
}

static void director(void *arg)
{
    bool *ok = arg;
    esock_ep sep;
    if (server_start(1, 0, &sep) < 0)
        return;
    uint16_t port = (uint16_t)esock_ep_port(sep);
    struct client_args ca = {rt_self(), port};
    rt_pid cp;
    rt_ref ref;
    if (rt_spawn(client, &ca, NULL, &cp) < 0 || rt_monitor(cp, &ref) < 0) {
        esock_ep_close(sep);
        return;
    }
    rt_msg *m;
    if (!await(TAG_READY, &m)) {
        esock_ep_close(sep);
        return;
    }
    rt_msg_free(m);

    printf("director: stopping server #1 (its endpoint closes and aborts the association)\n");
    int64_t t0 = rt_now_ms();
    esock_ep_close(sep);
    rt_sleep(OFFLINE_MS);
    printf("director: starting server #2 on the same port, %lld ms later\n",
           (long long)(rt_now_ms() - t0));
    if (server_start(2, port, &sep) < 0) {
        rt_exit(cp, RT_EXIT_KILL);
        return;
    }
    bool got = await(TAG_DONE, &m);
    struct client_report r = {0};
    if (got) {
        memcpy(&r, m->data, sizeof r);
        rt_msg_free(m);
        rt_demonitor(ref);
    }
    esock_ep_close(sep);
    printf("summary: %u ups, %u down with reconnecting, %u reconnection attempts (%u failed "
           "while the server was away), %u pings echoed in all\n",
           r.ups, r.downs_reconnecting, r.attempts, r.failed_attempts, r.echoes);
    *ok = got && r.finished && !r.gave_up && !r.bad_echo && r.ups == 2 &&
          r.downs_reconnecting == 1 && r.attempts >= 1 && r.echoes == 2 * PINGS;
}

/* ---- main ---------------------------------------------------------------------------------------
 */

int main(int argc, char **argv)
{
    int rc = esock_sctp_available();
    if (rc < 0) {
        fprintf(stderr,
                "sctp_reconnect: this kernel has no SCTP (%s); run it in the test VM: "
                "tools/sctp-vm -- %s\n",
                esock_strerror(rc), argv[0]);
        return 1;
    }
    if ((rc = rt_start(NULL)) < 0 || (rc = esock_start()) < 0) {
        fprintf(stderr, "sctp_reconnect: start: %s\n", esock_strerror(rc));
        return 1;
    }
    bool ok = false;
    rt_pid d;
    int reason = -1;
    if ((rc = rt_spawn(director, &ok, &(rt_spawn_opts){.joinable = true}, &d)) == 0)
        rc = rt_join(d, 6 * WAIT_MS, &reason);
    esock_stop();
    rt_stats left;
    int stop = rt_stop(1000, &left);
    printf("stopped (%s): %llu processes, %llu messages left\n",
           stop == 0 ? "ok" : rt_strerror(stop), (unsigned long long)left.procs_live,
           (unsigned long long)left.msgs_live);
    ok = ok && rc == 0 && reason == RT_EXIT_NORMAL && stop == 0 && left.procs_live == 0 &&
         left.msgs_live == 0;
    printf("sctp_reconnect: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
