/* sctp_supervised: an owner that crashes and is restarted by its
 * supervisor, while its SCTP association stays up.
 *
 * What it shows:
 *  - a server endpoint with esock_ep_opts.handover_wait_ms: when the owner
 *    of an association ends and no other owner is registered, the
 *    association stays up, reading nothing (SCTP's flow control holds the
 *    peer back), until an owner registers; it then goes to that owner,
 *    which gets ESOCK_MSG_ASSOC_UP with `handed_over` set;
 *  - the owner (a callback actor) under a supervisor (rt/sup.h,
 *    one_for_one, permanent): the child's start function spawns it and
 *    registers it with the endpoint, so a restarted owner is registered
 *    again and gets the association back;
 *  - "let it crash": one request hits a bug in the owner, which crashes;
 *    that request, still unanswered, is lost with the owner's mailbox. The
 *    client (a stackful process) sends a request again when its answer is
 *    late, and the restarted owner answers it;
 *  - the client never sees its association go down: same association,
 *    no ESOCK_MSG_ASSOC_DOWN until it shuts it down itself at the end.
 *
 * Run (the kernel must have SCTP; where it has not, in the test VM):
 *   sctp_supervised
 *   tools/sctp-vm -- build/release/examples/sctp_supervised    (host without SCTP)
 * Exits 0 when every request was answered, the owner was restarted once,
 * the new owner got the same association handed over, the client's
 * association never went down, and everything stopped clean.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <esock/esock.h>
#include <rt/rt.h>

#define REQUESTS    8
#define BAD_REQ     4     /* the owner crashes on this one, the first time */
#define RETRY_MS    300   /* the client sends a request again if unanswered by then */
#define HANDOVER_MS 5000  /* how long an association waits for a new owner */
#define WAIT_MS     10000 /* any other single wait (the whole run takes well under 1 s) */

enum { TAG_OWNER_UP = 1, TAG_CLIENT_DONE };

/* What an owner tells the director when it gets an association. */
struct owner_up {
    int number;
    esock_assoc assoc;
    bool handed_over;
};

/* What the client tells the director at the end. */
struct client_report {
    unsigned answered, retries, downs;
    bool ok;
};

/* ---- the owner: a callback actor ---------------------------------------------------------- */

/* One bug, once (a rare input that the restarted owner, by luck, handles).
 * Atomic: the restarted owner may run on another scheduler thread; relaxed
 * is enough, only one owner runs at a time and the exchange alone decides. */
static atomic_bool bug_armed = true;

struct owner_args {
    int number;
    rt_pid director;
};

struct owner {
    struct owner_args a;
    unsigned answered;
};

static int owner_init(void *state, void *arg)
{
    struct owner *o = state;
    o->a = *(const struct owner_args *)arg;
    return 0;
}

static void owner_handle(void *state, rt_msg *m)
{
    struct owner *o = state;
    const esock_data *d;
    const esock_up *u;
    const esock_down *dn;
    if ((d = esock_data_of(m)) != NULL) {
        char text[32];
        size_t n = d->len < sizeof text - 1 ? d->len : sizeof text - 1;
        memcpy(text, d->data, n);
        text[n] = '\0';
        unsigned k;
        if (sscanf(text, "req %u", &k) != 1)
            return;
        if (k == BAD_REQ && atomic_exchange_explicit(&bug_armed, false, memory_order_relaxed)) {
            printf("owner #%d: request %u hits a bug: crashing\n", o->a.number, k);
            rt_exit(rt_self(), -EPROTO); /* ends when this handler returns */
            return;
        }
        int len = snprintf(text, sizeof text, "resp %u from owner #%d", k, o->a.number);
        if (esock_send(d->assoc, d->stream, 0, 0, text, (size_t)len, NULL) == 0)
            o->answered++;
    } else if ((u = esock_up_of(m)) != NULL) {
        printf("owner #%d: association %s\n", o->a.number,
               u->handed_over ? "handed over to me, still up: serving it from here"
                              : "up: serving it");
        struct owner_up r = {o->a.number, u->assoc, u->handed_over};
        rt_send(o->a.director, TAG_OWNER_UP, &r, sizeof r);
    } else if ((dn = esock_down_of(m)) != NULL) {
        printf("owner #%d: association down (%s) after %u answers\n", o->a.number,
               esock_down_reason_name(dn->reason), o->answered);
    }
}

static const rt_actor_ops owner_ops = {
    .state_size = sizeof(struct owner),
    .init = owner_init,
    .handle = owner_handle,
};

/* ---- the supervisor's child spec --------------------------------------------------------------
 */

struct session {
    esock_ep ep;
    rt_pid director;
    int started; /* owners started so far; only the supervisor touches it */
};

/* Runs in the supervisor, at its start and at every restart: a new owner,
 * registered with the endpoint, which hands it what waited for an owner. */
static int start_owner(void *arg, rt_pid *out)
{
    struct session *s = arg;
    struct owner_args a = {++s->started, s->director};
    int rc = rt_spawn_actor(&owner_ops, &a, NULL, out);
    if (rc == 0 && (rc = esock_owner_register(s->ep, *out, NULL, NULL)) < 0)
        rt_exit(*out, RT_EXIT_KILL);
    if (rc == 0)
        printf("supervisor: started owner #%d and registered it with the endpoint\n", a.number);
    return rc;
}

/* ---- the client: a stackful process -----------------------------------------------------------
 */

struct client_args {
    rt_pid director;
    uint16_t port;
};

static bool client_msg(const rt_msg *m, void *arg)
{
    return m->tag == ESOCK_MSG_DATA || m->tag == ESOCK_MSG_ASSOC_DOWN;
}

/* Send request k until it is answered (at most 5 tries). */
static bool client_request(esock_assoc as, unsigned k, struct client_report *r)
{
    char req[32], want[32];
    int n = snprintf(req, sizeof req, "req %u", k);
    int wn = snprintf(want, sizeof want, "resp %u ", k);
    for (int attempt = 0; attempt < 5; attempt++) {
        if (attempt > 0) {
            r->retries++;
            printf("client: no answer to request %u within %d ms: sending it again\n", k, RETRY_MS);
        }
        int rc = esock_send(as, 0, 0, 0, req, (size_t)n, NULL);
        if (rc < 0) {
            printf("client: send: %s\n", esock_strerror(rc));
            return false;
        }
        rt_msg *m;
        while (rt_receive_match(client_msg, NULL, RETRY_MS, &m) == 0) {
            const esock_data *d = esock_data_of(m);
            if (d == NULL) {
                printf("client: association down (%s)\n",
                       esock_down_reason_name(esock_down_of(m)->reason));
                r->downs++;
                rt_msg_free(m);
                return false;
            }
            bool mine = d->len > (size_t)wn && memcmp(d->data, want, (size_t)wn) == 0;
            if (mine)
                printf("client: request %u answered: \"%.*s\"\n", k, (int)d->len,
                       (const char *)d->data);
            rt_msg_free(m);
            if (mine)
                return true;
            /* a late answer to an earlier try: ignore it */
        }
    }
    return false;
}

static void client(void *arg)
{
    struct client_args *a = arg;
    struct client_report r = {0};
    esock_ep ep;
    esock_assoc as = ESOCK_ASSOC_NONE;
    esock_addr server;
    esock_addr_parse("127.0.0.1", 0, &server);
    int rc = esock_ep_create(NULL, &ep);
    if (rc < 0) {
        printf("client: endpoint: %s\n", esock_strerror(rc));
        goto out;
    }
    rt_msg *m;
    if ((rc = esock_assoc_create(ep, &server, 1, a->port, NULL, &as)) < 0 ||
        (rc = rt_receive_tag(ESOCK_MSG_ASSOC_UP, WAIT_MS, &m)) < 0) {
        printf("client: association: %s\n", esock_strerror(rc));
        goto out_close_ep;
    }
    rt_msg_free(m);
    printf("client: association up; %d requests, one at a time\n", REQUESTS);
    bool all = true;
    for (unsigned k = 1; all && k <= REQUESTS; k++) {
        all = client_request(as, k, &r);
        r.answered += all;
    }
    if (r.downs == 0 && esock_assoc_shutdown(as) == 0 &&
        rt_receive_tag(ESOCK_MSG_ASSOC_DOWN, WAIT_MS, &m) == 0) {
        printf("client: association shut down (%s), by the client, at the end\n",
               esock_down_reason_name(esock_down_of(m)->reason));
        rt_msg_free(m);
    }
    r.ok = all;
out_close_ep:
    esock_ep_close(ep);
out:
    rt_send(a->director, TAG_CLIENT_DONE, &r, sizeof r);
}

/* ---- the director ------------------------------------------------------------------------------
 */

static void director(void *arg)
{
    bool *ok = arg;
    /* trap exits: the supervisor is linked to us (we start it: its
     * parent), and its end must come as a message */
    rt_trap_exits(true);
    struct session s = {.director = rt_self()};
    int rc = esock_ep_create(&(esock_ep_opts){.handover_wait_ms = HANDOVER_MS}, &s.ep);
    if (rc < 0) {
        printf("director: endpoint: %s\n", esock_strerror(rc));
        return;
    }
    printf("server: endpoint on 127.0.0.1 port %d; an association whose owner ends waits up to "
           "%d ms for a new one\n",
           esock_ep_port(s.ep), HANDOVER_MS);
    const rt_child_spec spec = {.id = "owner",
                                .start = start_owner,
                                .arg = &s,
                                .restart = RT_PERMANENT,
                                .shutdown_ms = 500};
    rt_pid sup;
    if ((rc = rt_sup_start(&(rt_sup_flags){RT_ONE_FOR_ONE, 3, 5000}, &spec, 1, &sup)) < 0) {
        printf("director: supervisor: %s\n", rt_strerror(rc));
        esock_ep_close(s.ep);
        return;
    }
    struct client_args ca = {rt_self(), (uint16_t)esock_ep_port(s.ep)};
    rt_pid cp;
    rt_spawn(client, &ca, NULL, &cp);

    /* gather what the owners and the client say */
    struct owner_up ups[4];
    unsigned nups = 0;
    struct client_report r = {0};
    esock_assoc_info info = {0};
    bool done = false, owner_ok = false;
    int64_t deadline = rt_now_ms() + 2 * WAIT_MS;
    while (!done) {
        int64_t left = deadline - rt_now_ms();
        rt_msg *m;
        if (left <= 0 || rt_receive((int)left, &m) < 0) {
            printf("director: the client did not finish in time\n");
            break;
        }
        if (m->tag == TAG_OWNER_UP && nups < 4) {
            memcpy(&ups[nups], m->data, sizeof ups[0]);
            /* ask esock itself: whose is the association now? */
            if (ups[nups].handed_over && esock_assoc_status(ups[nups].assoc, &info) == 0) {
                owner_ok = info.state == ESOCK_ASSOC_UP && rt_pid_eq(info.owner, m->from);
                printf("server: esock says the association is %s and owner #%d owns it\n",
                       info.state == ESOCK_ASSOC_UP ? "up" : "NOT up",
                       rt_pid_eq(info.owner, m->from) ? ups[nups].number : 0);
            }
            nups++;
        } else if (m->tag == TAG_CLIENT_DONE) {
            memcpy(&r, m->data, sizeof r);
            done = true;
        }
        rt_msg_free(m);
    }

    rt_sup_counts counts = {0};
    rt_sup_count_children(sup, &counts);
    printf("supervisor: %lu restart%s\n", counts.restarts, counts.restarts == 1 ? "" : "s");
    bool same = nups == 2 && ups[0].assoc.id == ups[1].assoc.id;
    /* at least the one the crash lost; on a slow machine an answer may be late too */
    printf("summary: %u of %d requests answered, %u sent again\n", r.answered, REQUESTS, r.retries);
    if (nups == 2)
        printf("summary: owner #%d took the association when it came up; owner #%d got %s, "
               "handed over\n",
               ups[0].number, ups[1].number, same ? "the same one" : "ANOTHER one");
    printf("summary: the client saw its association go down %u times before its own shutdown\n",
           r.downs);

    /* stop the supervisor (it stops the owner), then the endpoint */
    rt_exit(sup, RT_EXIT_SHUTDOWN);
    rt_msg *m;
    int sup_reason = -1;
    while (rt_receive_tag(RT_MSG_EXIT, WAIT_MS, &m) == 0) {
        rt_exit_info e;
        memcpy(&e, m->data, sizeof e);
        rt_msg_free(m);
        if (rt_pid_eq(e.from, sup)) {
            sup_reason = e.reason;
            break;
        }
    }
    esock_ep_close(s.ep);
    *ok = done && r.ok && r.answered == REQUESTS && r.retries >= 1 && r.downs == 0 && same &&
          !ups[0].handed_over && ups[1].handed_over && ups[1].number == 2 && owner_ok &&
          counts.restarts == 1 && sup_reason == RT_EXIT_SHUTDOWN;
}

/* ---- main ---------------------------------------------------------------------------------------
 */

int main(int argc, char **argv)
{
    int rc = esock_sctp_available();
    if (rc < 0) {
        fprintf(stderr,
                "sctp_supervised: this kernel has no SCTP (%s); run it in the test VM: "
                "tools/sctp-vm -- %s\n",
                esock_strerror(rc), argv[0]);
        return 1;
    }
    if ((rc = rt_start(NULL)) < 0 || (rc = esock_start()) < 0) {
        fprintf(stderr, "sctp_supervised: start: %s\n", esock_strerror(rc));
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
    printf("sctp_supervised: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
