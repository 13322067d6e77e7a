/* sctp_echo, tcp_echo: an echo server and client on esock, over SCTP or
 * over TCP through the same calls, where owners receive data and
 * association events as messages. One source, two programs: tcp_echo is
 * built with ECHO_TCP, and its endpoints are TCP with length-prefixed
 * framing (ESOCK_FRAME_LEN32), so each echo is a whole message as over
 * SCTP; TCP has one stream and no ppid, so those stay 0 there.
 *
 * What it shows:
 *  - the server: an endpoint whose owner is a callback actor; every message
 *    it gets (ESOCK_MSG_DATA, with stream and ppid) it sends back on the
 *    same stream with the same ppid; when a send would block
 *    (ESOCK_EWOULDBLOCK) it keeps the message and sends it on
 *    ESOCK_MSG_SEND_READY, so nothing is dropped;
 *  - the client: a stackful process that creates its own endpoint, an
 *    association to the server, waits for ESOCK_MSG_ASSOC_UP, sends
 *    messages on several streams with their own ppids, receives the echoes
 *    in a blocking style (rt_receive_tag) and ends the association
 *    gracefully; both sides see ESOCK_MSG_ASSOC_DOWN (shutdown).
 *
 * Run (SCTP: the kernel must have it; where it has not, in the test VM):
 *   sctp_echo                          server and client in one program
 *   sctp_echo server [ADDR [PORT]]     serve until interrupted (Ctrl-C)
 *   sctp_echo client ADDR PORT [N]     send N messages (default 8), check echoes
 *   tools/sctp-vm -- build/release/examples/sctp_echo     (host without SCTP)
 *   tcp_echo ...                       the same over TCP, on any kernel
 * Exits 0 when every echo came back intact.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <esock/esock.h>
#include <rt/rt.h>

#ifdef ECHO_TCP
#define PROTO      ESOCK_TCP
#define PROTO_NAME "TCP"
#define PROG       "tcp_echo"
#else
#define PROTO      ESOCK_SCTP
#define PROTO_NAME "SCTP"
#define PROG       "sctp_echo"
#endif

/* An endpoint's options: SCTP's defaults, or TCP with whole messages. */
static esock_ep_opts echo_opts(void)
{
    return (esock_ep_opts){.proto = PROTO,
                           .naddrs = 1,
                           .framing = PROTO == ESOCK_TCP ? ESOCK_FRAME_LEN32 : ESOCK_FRAME_NONE};
}

/* ---- the server's owner: a callback actor ------------------------------------------------- */

struct pending {
    struct pending *next;
    esock_assoc assoc;
    uint16_t stream, flags;
    uint32_t ppid;
    size_t len;
    unsigned char data[];
};

struct server {
    struct pending *head, *tail; /* echoes waiting for room in a send queue */
    unsigned long echoed;
};

static void server_keep(struct server *s, const esock_data *d)
{
    struct pending *p = malloc(sizeof *p + d->len);
    if (p == NULL) {
        fprintf(stderr, "server: out of memory, echo lost\n");
        return;
    }
    *p = (struct pending){NULL, d->assoc, d->stream, d->flags, d->ppid, d->len};
    memcpy(p->data, d->data, d->len);
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
}

/* Send what waited, in order, until a send would block again. */
static void server_flush(struct server *s)
{
    while (s->head) {
        struct pending *p = s->head;
        int rc = esock_send(p->assoc, p->stream, p->ppid, p->flags, p->data, p->len, NULL);
        if (rc == ESOCK_EWOULDBLOCK)
            return;
        if (rc < 0)
            fprintf(stderr, "server: echo dropped: %s\n", esock_strerror(rc));
        s->head = p->next;
        if (s->head == NULL)
            s->tail = NULL;
        free(p);
        s->echoed++;
    }
}

static void server_handle(void *state, rt_msg *m)
{
    struct server *s = state;
    char a[64];
    const esock_data *d;
    const esock_up *u;
    const esock_down *dn;
    if ((d = esock_data_of(m)) != NULL) {
        if (s->head) { /* keep the order: behind what already waits */
            server_keep(s, d);
            return;
        }
        int rc = esock_send(d->assoc, d->stream, d->ppid, d->flags, d->data, d->len, NULL);
        if (rc == ESOCK_EWOULDBLOCK)
            server_keep(s, d);
        else if (rc < 0)
            fprintf(stderr, "server: echo failed: %s\n", esock_strerror(rc));
        else
            s->echoed++;
    } else if (esock_send_ready_of(m) != NULL) {
        server_flush(s);
    } else if ((u = esock_up_of(m)) != NULL) {
        printf("server: association up from %s (%u address%s), streams out %u in %u\n",
               esock_addr_format(&u->peer.addrs[0], a, sizeof a), u->peer.naddrs,
               u->peer.naddrs == 1 ? "" : "es", u->peer.ostreams, u->peer.istreams);
    } else if ((dn = esock_down_of(m)) != NULL) {
        printf("server: association down (%s), %lu messages echoed so far\n",
               esock_down_reason_name(dn->reason), s->echoed);
    } else if (esock_ep_down_of(m) != NULL) {
        printf("server: endpoint closed\n");
    }
}

static void server_terminate(void *state, int reason)
{
    struct server *s = state;
    while (s->head) {
        struct pending *p = s->head;
        s->head = p->next;
        free(p);
    }
}

static const rt_actor_ops server_ops = {
    .state_size = sizeof(struct server),
    .handle = server_handle,
    .terminate = server_terminate,
};

/* Start an endpoint on addr:port with an echo owner. */
static int server_start(const char *addr, uint16_t port, esock_ep *ep, rt_pid *owner)
{
    esock_ep_opts o = echo_opts();
    o.port = port;
    int rc = esock_addr_parse(addr, 0, &o.addrs[0]);
    if (rc < 0) {
        fprintf(stderr, "server: bad address %s\n", addr);
        return rc;
    }
    rc = esock_ep_create(&o, ep);
    if (rc < 0) {
        fprintf(stderr, "server: endpoint on %s:%u: %s\n", addr, port, esock_strerror(rc));
        return rc;
    }
    rc = rt_spawn_actor(&server_ops, NULL, NULL, owner);
    if (rc == 0)
        rc = esock_owner_register(*ep, *owner, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "server: owner: %s\n", esock_strerror(rc));
        esock_ep_close(*ep);
        return rc;
    }
    printf("server: echoing on " PROTO_NAME " %s port %d\n", addr, esock_ep_port(*ep));
    return 0;
}

/* ---- the client: a stackful process -------------------------------------------------------------
 */

struct client_args {
    const char *addr;
    uint16_t port;
    int count;
    int failures;
};

static rt_msg *wait_for(uint32_t tag, esock_assoc assoc)
{
    for (;;) {
        rt_msg *m;
        if (rt_receive(5000, &m) != 0)
            return NULL;
        if (m->tag == tag)
            return m;
        const esock_down *d = esock_down_of(m);
        if (d && d->assoc.id == assoc.id) {
            printf("client: association down (%s, error %d)\n", esock_down_reason_name(d->reason),
                   d->error);
            rt_msg_free(m);
            return NULL;
        }
        rt_msg_free(m);
    }
}

static void client(void *arg)
{
    struct client_args *c = arg;
    c->failures = 1;
    esock_addr remote;
    if (esock_addr_parse(c->addr, 0, &remote) < 0) {
        fprintf(stderr, "client: bad address %s\n", c->addr);
        return;
    }
    /* the client's own endpoint: same family as the server, a free port */
    esock_ep_opts o = echo_opts();
    esock_addr_parse(remote.sa.sa_family == AF_INET6 ? "::1" : "127.0.0.1", 0, &o.addrs[0]);
    if (remote.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_LOOPBACK(&remote.in6.sin6_addr))
        esock_addr_parse("::", 0, &o.addrs[0]);
    else if (remote.sa.sa_family == AF_INET && remote.in4.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        esock_addr_parse("0.0.0.0", 0, &o.addrs[0]);
    esock_ep ep;
    int rc = esock_ep_create(&o, &ep);
    if (rc < 0) {
        fprintf(stderr, "client: endpoint: %s\n", esock_strerror(rc));
        return;
    }
    esock_assoc as;
    rc = esock_assoc_create(ep, &remote, 1, c->port, NULL, &as);
    if (rc < 0) {
        fprintf(stderr, "client: association: %s\n", esock_strerror(rc));
        esock_ep_close(ep);
        return;
    }
    rt_msg *m = wait_for(ESOCK_MSG_ASSOC_UP, as);
    if (m == NULL) {
        fprintf(stderr, "client: the association did not come up\n");
        esock_ep_close(ep);
        return;
    }
    const esock_up *u = esock_up_of(m);
    unsigned streams = u->peer.ostreams;
    printf("client: association up to %s:%u, streams out %u in %u\n", c->addr, c->port,
           u->peer.ostreams, u->peer.istreams);
    rt_msg_free(m);

    int bad = 0;
    for (int i = 0; i < c->count; i++) {
        char text[64];
        uint16_t stream = (uint16_t)(i % streams);
        uint32_t ppid = PROTO == ESOCK_TCP ? 0 : 1000u + (uint32_t)i; /* TCP: none */
        int n = snprintf(text, sizeof text, "hello #%d on stream %u", i, stream);
        rc = esock_send(as, stream, ppid, 0, text, (size_t)n, NULL);
        if (rc < 0) {
            fprintf(stderr, "client: send: %s\n", esock_strerror(rc));
            bad++;
            break;
        }
        m = wait_for(ESOCK_MSG_DATA, as);
        if (m == NULL) {
            bad++;
            break;
        }
        const esock_data *d = esock_data_of(m);
        bool same = d->len == (size_t)n && memcmp(d->data, text, (size_t)n) == 0 &&
                    d->stream == stream && d->ppid == ppid;
        printf("client: sent \"%s\" (stream %u, ppid %u), echo %s\n", text, stream, ppid,
               same ? "matches" : "DIFFERS");
        bad += !same;
        rt_msg_free(m);
    }

    /* end it gracefully: both sides are told */
    esock_assoc_shutdown(as);
    m = wait_for(ESOCK_MSG_ASSOC_DOWN, as);
    if (m) {
        printf("client: association down (%s)\n", esock_down_reason_name(esock_down_of(m)->reason));
        rt_msg_free(m);
    }
    esock_ep_close(ep);
    rt_msg_free(wait_for(ESOCK_MSG_EP_DOWN, as));
    c->failures = bad;
}

static int run_client(struct client_args *c)
{
    rt_pid pid;
    int reason;
    int rc = rt_spawn(client, c, &(rt_spawn_opts){.joinable = true}, &pid);
    if (rc == 0)
        rc = rt_join(pid, -1, &reason);
    if (rc < 0) {
        fprintf(stderr, "client: %s\n", esock_strerror(rc));
        return 1;
    }
    printf("client: %d of %d echoes came back intact\n", c->count - c->failures, c->count);
    return c->failures != 0;
}

/* ---- main
 * ---------------------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    stop_flag = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: " PROG "\n"
                    "       " PROG " server [ADDR [PORT]]\n"
                    "       " PROG " client ADDR PORT [COUNT]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "both";
    if (strcmp(mode, "both") && strcmp(mode, "server") && strcmp(mode, "client"))
        return usage();
    if (!strcmp(mode, "client") && argc < 4)
        return usage();
    int rc = PROTO == ESOCK_SCTP ? esock_sctp_available() : 0;
    if (rc < 0) {
        fprintf(stderr,
                "sctp_echo: this kernel has no SCTP (%s); run it in the test VM: "
                "tools/sctp-vm -- %s\n",
                esock_strerror(rc), argv[0]);
        return 1;
    }
    if ((rc = rt_start(NULL)) < 0 || (rc = esock_start()) < 0) {
        fprintf(stderr, PROG ": start: %s\n", esock_strerror(rc));
        return 1;
    }
    int status = 0;
    esock_ep sep;
    rt_pid owner;
    if (!strcmp(mode, "both")) {
        if (server_start("127.0.0.1", 0, &sep, &owner) < 0) {
            status = 1;
        } else {
            struct client_args c = {"127.0.0.1", (uint16_t)esock_ep_port(sep), 8, 0};
            status = run_client(&c);
        }
    } else if (!strcmp(mode, "server")) {
        const char *addr = argc > 2 ? argv[2] : "0.0.0.0";
        uint16_t port = argc > 3 ? (uint16_t)atoi(argv[3]) : 0;
        if (server_start(addr, port, &sep, &owner) < 0) {
            status = 1;
        } else {
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
            while (!stop_flag)
                pause();
        }
    } else {
        int port = atoi(argv[3]);
        int count = argc > 4 ? atoi(argv[4]) : 8;
        if (port <= 0 || port > 65535 || count <= 0)
            return usage();
        struct client_args c = {argv[2], (uint16_t)port, count, 0};
        status = run_client(&c);
    }
    /* esock_stop closes every endpoint (the server's owner is told), then
     * the runtime stops and reports what was left */
    esock_stop();
    rt_stats left;
    rc = rt_stop(1000, &left);
    printf("stopped (%s): %llu processes, %llu messages left\n", rc == 0 ? "ok" : rt_strerror(rc),
           (unsigned long long)left.procs_live, (unsigned long long)left.msgs_live);
    if (rc != 0 || left.procs_live || left.msgs_live)
        status = 1;
    printf(PROG ": %s\n", status == 0 ? "OK" : "FAILED");
    return status;
}
