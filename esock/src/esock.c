/* esock.c: the application (esock_sup), the handle tables, and the calls
 * that are not one process's own (see esock.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct esock_g es__g = {.lock = PTHREAD_RWLOCK_INITIALIZER};

ESOCK_API const char *esock_version(void)
{
    return "0.1.0";
}

ESOCK_API int esock_sctp_available(void)
{
    /* a kernel without SCTP answers ESOCKTNOSUPPORT for SOCK_SEQPACKET and
     * EPROTONOSUPPORT for SOCK_STREAM (TEST-VM.md): both mean "no" */
    int fd = socket(AF_INET, SOCK_SEQPACKET | SOCK_CLOEXEC, IPPROTO_SCTP);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

ESOCK_API const char *esock_strerror(int err)
{
    switch (err) {
#define ESOCK_ERR_CASE(name, value, text)                                                          \
    case value:                                                                                    \
        return text;
        ESOCK_ERRORS(ESOCK_ERR_CASE)
#undef ESOCK_ERR_CASE
    default:
        return rt_strerror(err);
    }
}

ESOCK_API const char *esock_down_reason_name(int reason)
{
    static const char *const names[] = {
        [ESOCK_DOWN_COMM_LOST] = "comm_lost",   [ESOCK_DOWN_SHUTDOWN] = "shutdown",
        [ESOCK_DOWN_ABORT] = "abort",           [ESOCK_DOWN_RESTART] = "restart",
        [ESOCK_DOWN_CANT_START] = "cant_start", [ESOCK_DOWN_ENDPOINT] = "endpoint_closed",
        [ESOCK_DOWN_OWNER] = "owner_ended",     [ESOCK_DOWN_CRASH] = "crash",
        [ESOCK_DOWN_PROTOCOL] = "protocol",
    };
    if (reason <= 0 || (size_t)reason >= sizeof names / sizeof names[0])
        return "unknown";
    return names[reason];
}

/* ---- addresses -------------------------------------------------------------------------- */

ESOCK_API int esock_addr_parse(const char *text, uint16_t port, esock_addr *out)
{
    if (text == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, &out->in4.sin_addr) == 1) {
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, text, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(port);
        return 0;
    }
    return -EINVAL;
}

ESOCK_API const char *esock_addr_format(const esock_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (buf == NULL || len == 0)
        return buf;
    if (a == NULL) {
        snprintf(buf, len, "(none)");
    } else if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, ntohs(a->in4.sin_port));
    } else if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
    } else {
        snprintf(buf, len, "(family %d)", a->sa.sa_family);
    }
    return buf;
}

static size_t addr_len(const esock_addr *a)
{
    return a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in4;
}

static bool addr_valid(const esock_addr *a)
{
    return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

static bool addr_wild(const esock_addr *a)
{
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
}

/* Same IP (ports ignored). */
static bool addr_same_ip(const esock_addr *a, const esock_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return false;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_addr.s_addr == b->in4.sin_addr.s_addr;
    return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
}

/* Would the two bindings take an address from each other? A wildcard of
 * one family covers the family (an IPv6 wildcard covers IPv4 as well). */
static bool addr_overlap(const esock_addr *a, const esock_addr *b)
{
    if (addr_same_ip(a, b))
        return true;
    if (addr_wild(a) && (a->sa.sa_family == b->sa.sa_family || a->sa.sa_family == AF_INET6))
        return true;
    if (addr_wild(b) && (a->sa.sa_family == b->sa.sa_family || b->sa.sa_family == AF_INET6))
        return true;
    return false;
}

void es__sockaddr_port(esock_addr *a, uint16_t *port_out)
{
    if (port_out)
        *port_out = ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port : a->in4.sin_port);
}

/* ---- tables ------------------------------------------------------------------------------- */

static int grow(void *pv, uint32_t *cap, uint32_t n)
{
    void ***v = pv;
    if (n < *cap)
        return 0;
    uint32_t nc = *cap ? *cap * 2 : 64;
    void **nv = realloc(*v, nc * sizeof *nv);
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = nc;
    return 0;
}

/* Caller holds the write lock. */
struct as_ent *es__as_new(void)
{
    struct esock_g *g = &es__g;
    for (uint32_t k = 0; k < g->nas; k++) {
        uint32_t i = (g->as_free + k) % g->nas;
        struct as_ent *a = g->as[i];
        if (!a->used) {
            g->as_free = i + 1;
            pthread_mutex_lock(&a->lock);
            if (++a->gen == 0)
                a->gen = 1;
            a->used = true;
            a->state = ESOCK_ASSOC_CONNECTING;
            a->fd = -1;
            a->pid = a->owner = RT_PID_NONE;
            a->kid = 0;
            a->ostreams = a->istreams = 0;
            memset(&a->peer, 0, sizeof a->peer);
            a->head = a->tail = NULL;
            a->queued = 0;
            a->want_ready = a->kicked = a->held = false;
            a->broken = 0;
            a->proto = ESOCK_SCTP;
            a->framed = false;
            pthread_mutex_unlock(&a->lock);
            return a;
        }
    }
    if (grow(&g->as, &g->capas, g->nas) < 0)
        return NULL;
    struct as_ent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    a->idx = g->nas;
    a->gen = 1;
    a->used = true;
    a->state = ESOCK_ASSOC_CONNECTING;
    a->fd = -1;
    g->as[g->nas++] = a;
    return a;
}

void es__as_release(struct as_ent *a)
{
    pthread_rwlock_wrlock(&es__g.lock);
    pthread_mutex_lock(&a->lock);
    a->used = false;
    struct sq_item *q = a->head;
    a->head = a->tail = NULL;
    a->queued = 0;
    pthread_mutex_unlock(&a->lock);
    pthread_rwlock_unlock(&es__g.lock);
    while (q) {
        struct sq_item *n = q->next;
        free(q);
        q = n;
    }
}

/* Caller holds the lock (either mode). */
struct as_ent *es__as_get(esock_assoc h)
{
    uint32_t idx = (uint32_t)h.id, gen = (uint32_t)(h.id >> 32);
    if (idx == 0 || idx > es__g.nas)
        return NULL;
    struct as_ent *a = es__g.as[idx - 1];
    return a->used && a->gen == gen ? a : NULL;
}

/* Caller holds the lock. Why es__as_get found nothing: a handle this slot
 * once had is an association that has ended (closed); any other is not
 * ours (stale or unknown). */
static int as_miss(esock_assoc h)
{
    uint32_t idx = (uint32_t)h.id, gen = (uint32_t)(h.id >> 32);
    if (!es__g.started)
        return ESOCK_ESTALE;
    if (idx == 0 || idx > es__g.nas || gen == 0 || gen > es__g.as[idx - 1]->gen)
        return ESOCK_ESTALE;
    return ESOCK_ECLOSED;
}

/* The association's entry, its lock held; or why not. */
static int as_lock(esock_assoc h, struct as_ent **out)
{
    pthread_rwlock_rdlock(&es__g.lock);
    struct as_ent *a = es__g.started ? es__as_get(h) : NULL;
    if (a == NULL) {
        int rc = as_miss(h);
        pthread_rwlock_unlock(&es__g.lock);
        return rc;
    }
    pthread_mutex_lock(&a->lock);
    pthread_rwlock_unlock(&es__g.lock);
    *out = a;
    return 0;
}

struct ep_ent *es__ep_get(esock_ep h)
{
    uint32_t idx = (uint32_t)h.id, gen = (uint32_t)(h.id >> 32);
    if (idx == 0 || idx > es__g.neps)
        return NULL;
    struct ep_ent *e = es__g.eps[idx - 1];
    return e->used && e->gen == gen ? e : NULL;
}

static struct ep_ent *ep_new(void)
{
    struct esock_g *g = &es__g;
    for (uint32_t i = 0; i < g->neps; i++) {
        struct ep_ent *e = g->eps[i];
        if (!e->used) {
            if (++e->gen == 0)
                e->gen = 1;
            e->used = true;
            e->ready = false;
            e->pid = RT_PID_NONE;
            e->fd = -1;
            return e;
        }
    }
    if (grow(&g->eps, &g->capeps, g->neps) < 0)
        return NULL;
    struct ep_ent *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->idx = g->neps;
    e->gen = 1;
    e->used = true;
    e->fd = -1;
    g->eps[g->neps++] = e;
    return e;
}

/* ---- the application ------------------------------------------------------------------------ */

static int sup_start(void *arg, rt_pid *out)
{
    (void)arg;
    rt_child_spec tmpl = {
        .id = "endpoint",
        .start = es__ep_start,
        .restart = RT_TEMPORARY,
        .shutdown_ms = 5000,
        .type = RT_WORKER,
    };
    return rt_sup_start(
        &(rt_sup_flags){.strategy = RT_SIMPLE_ONE_FOR_ONE, .intensity = 10, .period_ms = 10000},
        &tmpl, 1, out);
}

ESOCK_API int esock_start(void)
{
    rt_pid root = rt_sup_root();
    if (rt_pid_is_none(root))
        return RT_ENORUNTIME;
    pthread_rwlock_wrlock(&es__g.lock);
    bool started = es__g.started;
    pthread_rwlock_unlock(&es__g.lock);
    if (started)
        return -EALREADY;
    rt_child_spec spec = {
        .id = "esock_sup",
        .start = sup_start,
        .restart = RT_PERMANENT,
        .shutdown_ms = RT_SHUTDOWN_INFINITY,
        .type = RT_SUPERVISOR,
    };
    rt_pid sup;
    int rc = rt_sup_add_child(root, &spec, &sup);
    if (rc == -EEXIST)
        return -EALREADY;
    if (rc < 0)
        return rc;
    pthread_rwlock_wrlock(&es__g.lock);
    es__g.sup = sup;
    es__g.started = true;
    pthread_rwlock_unlock(&es__g.lock);
    return 0;
}

ESOCK_API int esock_stop(void)
{
    pthread_rwlock_wrlock(&es__g.lock);
    bool started = es__g.started;
    es__g.started = false;
    pthread_rwlock_unlock(&es__g.lock);
    if (!started)
        return ESOCK_ENOTSTARTED;
    rt_pid root = rt_sup_root();
    rt_sup_terminate_child(root, "esock_sup");
    rt_sup_delete_child(root, "esock_sup");
    /* every process is gone: free the tables */
    pthread_rwlock_wrlock(&es__g.lock);
    for (uint32_t i = 0; i < es__g.nas; i++) {
        struct as_ent *a = es__g.as[i];
        for (struct sq_item *q = a->head, *n; q; q = n) {
            n = q->next;
            free(q);
        }
        pthread_mutex_destroy(&a->lock);
        free(a);
    }
    for (uint32_t i = 0; i < es__g.neps; i++)
        free(es__g.eps[i]);
    free(es__g.as);
    free(es__g.eps);
    es__g.as = NULL;
    es__g.eps = NULL;
    es__g.nas = es__g.capas = es__g.neps = es__g.capeps = es__g.as_free = 0;
    es__g.sup = RT_PID_NONE;
    pthread_rwlock_unlock(&es__g.lock);
    return 0;
}

/* ---- endpoints ------------------------------------------------------------------------------- */

static int ep_fill_opts(const esock_ep_opts *in, esock_ep_opts *o)
{
    if (in)
        *o = *in;
    else
        memset(o, 0, sizeof *o);
    if ((o->proto != ESOCK_SCTP && o->proto != ESOCK_TCP) || o->naddrs > ESOCK_MAX_ADDRS ||
        o->sndbuf < 0 || o->rcvbuf < 0 || o->backlog < 0)
        return -EINVAL;
    if (o->proto == ESOCK_SCTP && (o->framing || o->max_msg))
        return -EINVAL; /* TCP's */
    if (o->proto == ESOCK_TCP) {
        if (o->rto_initial_ms || o->rto_min_ms || o->rto_max_ms || o->ostreams > 1 ||
            o->istreams > 1 || o->default_ppid ||
            (o->framing != ESOCK_FRAME_NONE && o->framing != ESOCK_FRAME_LEN32) ||
            o->max_msg > ESOCK_MAX_MSG_MAX)
            return -EINVAL; /* SCTP's, or nothing */
        o->ostreams = o->istreams = 1;
        if (o->max_msg == 0)
            o->max_msg = ESOCK_MAX_MSG_DEFAULT;
    }
    if ((o->rto_min_ms && o->rto_max_ms && o->rto_min_ms > o->rto_max_ms) ||
        (o->rto_initial_ms && o->rto_max_ms && o->rto_initial_ms > o->rto_max_ms) ||
        (o->rto_initial_ms && o->rto_min_ms && o->rto_initial_ms < o->rto_min_ms))
        return -EINVAL;
    if (o->handover_wait_ms > 3600000u)
        return -EINVAL;
    if (o->naddrs == 0) {
        esock_addr_parse("127.0.0.1", 0, &o->addrs[0]);
        o->naddrs = 1;
    }
    for (unsigned i = 0; i < o->naddrs; i++) {
        if (!addr_valid(&o->addrs[i]))
            return -EINVAL;
        if (o->addrs[i].sa.sa_family == AF_INET)
            o->addrs[i].in4.sin_port = 0;
        else
            o->addrs[i].in6.sin6_port = 0;
        for (unsigned j = 0; j < i; j++)
            if (addr_same_ip(&o->addrs[i], &o->addrs[j]))
                return -EINVAL; /* the same address twice */
    }
    if (o->ostreams == 0)
        o->ostreams = 16;
    if (o->istreams == 0)
        o->istreams = 16;
    /* sndbuf/rcvbuf 0 stay 0: the default (see es__set_sock_opts) */
    if (o->backlog == 0)
        o->backlog = 128;
    if (o->rcv_hiwat == 0)
        o->rcv_hiwat = ESOCK_RCV_HIWAT_DEFAULT;
    if (o->send_hiwat == 0)
        o->send_hiwat = 4u << 20;
    return 0;
}

static bool same_binding(const esock_ep_opts *a, const esock_ep_opts *b)
{
    if (a->proto != b->proto || a->naddrs != b->naddrs)
        return false;
    for (unsigned i = 0; i < a->naddrs; i++) {
        bool found = false;
        for (unsigned j = 0; j < b->naddrs && !found; j++)
            found = addr_same_ip(&a->addrs[i], &b->addrs[j]);
        if (!found)
            return false;
    }
    return true;
}

ESOCK_API int esock_ep_create(const esock_ep_opts *opts, esock_ep *out)
{
    if (out == NULL)
        return -EINVAL;
    esock_ep_opts o;
    int rc = ep_fill_opts(opts, &o);
    if (rc < 0)
        return rc;
    pthread_rwlock_wrlock(&es__g.lock);
    if (!es__g.started) {
        pthread_rwlock_unlock(&es__g.lock);
        return ESOCK_ENOTSTARTED;
    }
    rt_pid sup = es__g.sup;
    if (o.port != 0) {
        for (uint32_t i = 0; i < es__g.neps; i++) {
            struct ep_ent *e = es__g.eps[i];
            if (!e->used || e->opts.port != o.port || e->opts.proto != o.proto)
                continue;
            if (same_binding(&e->opts, &o)) {
                *out = es__ep_handle(e);
                pthread_rwlock_unlock(&es__g.lock);
                return 1; /* already started */
            }
            for (unsigned a = 0; a < o.naddrs; a++)
                for (unsigned b = 0; b < e->opts.naddrs; b++)
                    if (addr_overlap(&o.addrs[a], &e->opts.addrs[b])) {
                        pthread_rwlock_unlock(&es__g.lock);
                        return ESOCK_EOVERLAP;
                    }
        }
    }
    struct ep_ent *e = ep_new();
    if (e == NULL) {
        pthread_rwlock_unlock(&es__g.lock);
        return -ENOMEM;
    }
    e->opts = o;
    esock_ep h = es__ep_handle(e);
    pthread_rwlock_unlock(&es__g.lock);

    rt_pid pid;
    rc = rt_sup_start_child(sup, e, &pid);
    pthread_rwlock_wrlock(&es__g.lock);
    if (rc < 0) {
        e->used = false;
    } else {
        e->pid = pid;
        e->ready = true;
    }
    pthread_rwlock_unlock(&es__g.lock);
    if (rc < 0)
        return rc;
    *out = h;
    return 0;
}

/* The endpoint's pid, or an error. */
static int ep_pid(esock_ep ep, rt_pid *pid, rt_pid *sup)
{
    pthread_rwlock_rdlock(&es__g.lock);
    int rc = 0;
    if (!es__g.started) {
        rc = ESOCK_ENOTSTARTED;
    } else {
        struct ep_ent *e = es__ep_get(ep);
        if (e == NULL || !e->ready)
            rc = ESOCK_ESTALE;
        else
            *pid = e->pid;
        if (sup)
            *sup = es__g.sup;
    }
    pthread_rwlock_unlock(&es__g.lock);
    return rc;
}

ESOCK_API int esock_ep_close(esock_ep ep)
{
    rt_pid pid, sup;
    int rc = ep_pid(ep, &pid, &sup);
    if (rc < 0)
        return rc;
    rc = rt_sup_terminate_child_pid(sup, pid);
    return rc == -ENOENT ? ESOCK_ESTALE : rc;
}

ESOCK_API int esock_ep_port(esock_ep ep)
{
    pthread_rwlock_rdlock(&es__g.lock);
    struct ep_ent *e = es__g.started ? es__ep_get(ep) : NULL;
    int rc = e && e->ready ? e->opts.port : ESOCK_ESTALE;
    pthread_rwlock_unlock(&es__g.lock);
    return rc;
}

/* Ask the endpoint; its reply is an int. */
static int ep_call(esock_ep ep, uint32_t tag, const void *req, size_t size)
{
    rt_pid pid;
    int rc = ep_pid(ep, &pid, NULL);
    if (rc < 0)
        return rc;
    rt_msg *reply;
    rc = rt_call(pid, tag, req, size, 30000, &reply);
    if (rc == -ESRCH || rc == RT_ECALLDOWN)
        return ESOCK_ESTALE;
    if (rc < 0)
        return rc;
    memcpy(&rc, reply->data, sizeof rc);
    rt_msg_free(reply);
    return rc;
}

struct reg_req {
    rt_pid owner;
    esock_accept_fn accept;
    void *arg;
};

ESOCK_API int esock_owner_register(esock_ep ep, rt_pid owner, esock_accept_fn accept, void *arg)
{
    if (!rt_alive(owner))
        return -ESRCH;
    struct reg_req r = {owner, accept, arg};
    return ep_call(ep, ES_CALL_REG_OWNER, &r, sizeof r);
}

ESOCK_API int esock_owner_unregister(esock_ep ep, rt_pid owner)
{
    struct reg_req r = {owner, NULL, NULL};
    return ep_call(ep, ES_CALL_UNREG_OWNER, &r, sizeof r);
}

/* ---- associations ------------------------------------------------------------------------------
 */

ESOCK_API int esock_assoc_create(esock_ep ep, const esock_addr *remote, unsigned nremote,
                                 uint16_t port, const esock_assoc_opts *opts, esock_assoc *out)
{
    if (remote == NULL || nremote == 0 || nremote > ESOCK_MAX_ADDRS || port == 0 || out == NULL)
        return -EINVAL;
    struct connect_req r = {.c = {.nremote = nremote, .port = port}};
    for (unsigned i = 0; i < nremote; i++) {
        if (!addr_valid(&remote[i]))
            return -EINVAL;
        r.c.remote[i] = remote[i];
        if (r.c.remote[i].sa.sa_family == AF_INET)
            r.c.remote[i].in4.sin_port = htons(port);
        else
            r.c.remote[i].in6.sin6_port = htons(port);
    }
    r.owner = opts && !rt_pid_is_none(opts->owner) ? opts->owner : rt_self();
    if (rt_pid_is_none(r.owner))
        return -EINVAL;
    if (!rt_alive(r.owner))
        return -ESRCH;
    if (opts) {
        r.c.ostreams = opts->ostreams;
        r.c.istreams = opts->istreams;
        r.rc = opts->reconnect;
        if (r.rc.max_attempts) {
            if (r.rc.min_ms == 0)
                r.rc.min_ms = 100;
            if (r.rc.max_ms == 0)
                r.rc.max_ms = r.rc.min_ms > 30000 ? r.rc.min_ms : 30000;
            if (r.rc.min_ms > r.rc.max_ms || r.rc.max_ms > 3600000)
                return -EINVAL;
        }
    }
    rt_pid pid;
    int rc = ep_pid(ep, &pid, NULL);
    if (rc < 0)
        return rc;
    rt_msg *reply;
    rc = rt_call(pid, ES_CALL_CONNECT, &r, sizeof r, 30000, &reply);
    if (rc == -ESRCH || rc == RT_ECALLDOWN)
        return ESOCK_ESTALE;
    if (rc < 0)
        return rc;
    struct connect_req ans;
    memcpy(&ans, reply->data, sizeof ans);
    rc = ans.result;
    if (rc == 0)
        *out = ans.out;
    rt_msg_free(reply);
    return rc;
}

#define ES_SEND_BUDGET 64

ESOCK_API int esock_send(esock_assoc assoc, uint16_t stream, uint32_t ppid, unsigned flags,
                         const void *data, size_t len, const esock_send_opts *opts)
{
    if ((data == NULL && len > 0) || (flags & ~ESOCK_UNORDERED))
        return -EINVAL;
    if (len > RT_MSG_MAX_SIZE)
        return -EMSGSIZE;
    struct as_ent *a;
    int lrc = as_lock(assoc, &a);
    if (lrc < 0)
        return lrc;
    int rc = es__send_locked(a, stream, ppid, flags, opts ? opts->context : 0,
                             opts ? opts->lifetime_ms : 0, data, len);
    pthread_mutex_unlock(&a->lock);
    /* A send costs a little of the caller's turn, as in Erlang: a stackful
     * process sending in a loop lets the others of its scheduler run (the
     * association processes that read and flush, and the owners that take
     * what they read) every so often, instead of starving them until its
     * queue is full */
    static _Thread_local unsigned budget;
    if (++budget >= ES_SEND_BUDGET) {
        budget = 0;
        (void)rt_yield(); /* RT_ENOTPROC outside a stackful process: fine */
    }
    return rc;
}

static int as_tell(esock_assoc assoc, uint32_t tag)
{
    struct as_ent *a;
    int lrc = as_lock(assoc, &a);
    if (lrc < 0)
        return lrc;
    rt_pid pid = a->pid;
    int state = a->state;
    if (tag == ES_AS_SHUTDOWN && state == ESOCK_ASSOC_UP)
        a->state = ESOCK_ASSOC_SHUTTING_DOWN; /* no send from now on gets in */
    pthread_mutex_unlock(&a->lock);
    if (state == ESOCK_ASSOC_CLOSED)
        return ESOCK_ECLOSED;
    int rc = rt_send(pid, tag, NULL, 0);
    return rc == -ESRCH ? ESOCK_ECLOSED : rc;
}

ESOCK_API int esock_assoc_shutdown(esock_assoc assoc)
{
    return as_tell(assoc, ES_AS_SHUTDOWN);
}

ESOCK_API int esock_assoc_abort(esock_assoc assoc)
{
    return as_tell(assoc, ES_AS_ABORT);
}

/* ---- owner messages
 * ------------------------------------------------------------------------------ */

#define MSG_OF(type, fn, tag_)                                                                     \
    ESOCK_API const type *fn(const rt_msg *m)                                                      \
    {                                                                                              \
        return m && m->tag == (tag_) && m->size >= sizeof(type) ? m->data : NULL;                  \
    }
MSG_OF(esock_data, esock_data_of, ESOCK_MSG_DATA)
MSG_OF(esock_up, esock_up_of, ESOCK_MSG_ASSOC_UP)
MSG_OF(esock_down, esock_down_of, ESOCK_MSG_ASSOC_DOWN)
MSG_OF(esock_path, esock_path_of, ESOCK_MSG_PATH)
MSG_OF(esock_send_failed, esock_send_failed_of, ESOCK_MSG_SEND_FAILED)
MSG_OF(esock_ep_down, esock_ep_down_of, ESOCK_MSG_EP_DOWN)
MSG_OF(esock_send_ready, esock_send_ready_of, ESOCK_MSG_SEND_READY)
MSG_OF(esock_reconnect_ev, esock_reconnect_of, ESOCK_MSG_RECONNECT)

void es__send_owner(rt_pid owner, uint32_t tag, const void *data, size_t size)
{
    /* the owner may be gone: then there is nobody to tell */
    (void)rt_send(owner, tag, data, size);
}

/* ---- queries
 * ------------------------------------------------------------------------------------- */

ESOCK_API int esock_endpoints(esock_ep *out, size_t cap)
{
    if (out == NULL && cap)
        return -EINVAL;
    pthread_rwlock_rdlock(&es__g.lock);
    if (!es__g.started) {
        pthread_rwlock_unlock(&es__g.lock);
        return ESOCK_ENOTSTARTED;
    }
    int n = 0;
    for (uint32_t i = 0; i < es__g.neps; i++) {
        struct ep_ent *e = es__g.eps[i];
        if (!e->used || !e->ready)
            continue;
        if ((size_t)n < cap)
            out[n] = es__ep_handle(e);
        n++;
    }
    pthread_rwlock_unlock(&es__g.lock);
    return n;
}

ESOCK_API int esock_ep_find(int proto, const esock_addr *addr, uint16_t port, esock_ep *out)
{
    if (addr == NULL || out == NULL || !addr_valid(addr))
        return -EINVAL;
    pthread_rwlock_rdlock(&es__g.lock);
    int rc = es__g.started ? -ENOENT : ESOCK_ENOTSTARTED;
    for (uint32_t i = 0; es__g.started && i < es__g.neps && rc == -ENOENT; i++) {
        struct ep_ent *e = es__g.eps[i];
        if (!e->used || !e->ready || e->opts.proto != proto || e->opts.port != port)
            continue;
        for (unsigned k = 0; k < e->opts.naddrs; k++) {
            if (addr_same_ip(&e->opts.addrs[k], addr) ||
                (addr_wild(&e->opts.addrs[k]) &&
                 (e->opts.addrs[k].sa.sa_family == addr->sa.sa_family ||
                  e->opts.addrs[k].sa.sa_family == AF_INET6))) {
                *out = es__ep_handle(e);
                rc = 0;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&es__g.lock);
    return rc;
}

ESOCK_API int esock_ep_assocs(esock_ep ep, esock_assoc *out, size_t cap)
{
    if (out == NULL && cap)
        return -EINVAL;
    pthread_rwlock_rdlock(&es__g.lock);
    if (!es__g.started || es__ep_get(ep) == NULL) {
        int rc = es__g.started ? ESOCK_ESTALE : ESOCK_ENOTSTARTED;
        pthread_rwlock_unlock(&es__g.lock);
        return rc;
    }
    int n = 0;
    for (uint32_t i = 0; i < es__g.nas; i++) {
        struct as_ent *a = es__g.as[i];
        pthread_mutex_lock(&a->lock);
        if (a->used && a->ep.id == ep.id) {
            if ((size_t)n < cap)
                out[n] = es__as_handle(a);
            n++;
        }
        pthread_mutex_unlock(&a->lock);
    }
    pthread_rwlock_unlock(&es__g.lock);
    return n;
}

/* Does the endpoint's binding take `local` (one of its addresses, or its wildcard)? */
static bool ep_binds(const struct ep_ent *e, const esock_addr *local)
{
    for (unsigned k = 0; k < e->opts.naddrs; k++) {
        const esock_addr *b = &e->opts.addrs[k];
        if (addr_same_ip(b, local) || (addr_wild(b) && (b->sa.sa_family == local->sa.sa_family ||
                                                        b->sa.sa_family == AF_INET6)))
            return true;
    }
    return false;
}

ESOCK_API int esock_assoc_find(const esock_addr *local, uint16_t lport, const esock_addr *remote,
                               uint16_t rport, esock_assoc *out)
{
    if (local == NULL || remote == NULL || out == NULL || !addr_valid(local) || !addr_valid(remote))
        return -EINVAL;
    pthread_rwlock_rdlock(&es__g.lock);
    int rc = es__g.started ? -ENOENT : ESOCK_ENOTSTARTED;
    for (uint32_t i = 0; es__g.started && i < es__g.nas && rc == -ENOENT; i++) {
        struct as_ent *a = es__g.as[i];
        pthread_mutex_lock(&a->lock);
        struct ep_ent *e = a->used ? es__ep_get(a->ep) : NULL;
        if (e != NULL && a->lport == lport && a->peer.port == rport && ep_binds(e, local)) {
            for (unsigned k = 0; k < a->peer.naddrs; k++) {
                if (addr_same_ip(&a->peer.addrs[k], remote)) {
                    *out = es__as_handle(a);
                    rc = 0;
                    break;
                }
            }
        }
        pthread_mutex_unlock(&a->lock);
    }
    pthread_rwlock_unlock(&es__g.lock);
    return rc;
}

/* From a sockaddr_storage inside a packed kernel struct (unaligned). */
static void from_storage(const void *ss, esock_addr *a)
{
    sa_family_t fam;
    memset(a, 0, sizeof *a);
    memcpy(&fam, (const char *)ss + offsetof(struct sockaddr_storage, ss_family), sizeof fam);
    if (fam == AF_INET)
        memcpy(&a->in4, ss, sizeof a->in4);
    else if (fam == AF_INET6)
        memcpy(&a->in6, ss, sizeof a->in6);
}

ESOCK_API int esock_assoc_status(esock_assoc assoc, esock_assoc_info *out)
{
    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct as_ent *a;
    int lrc = as_lock(assoc, &a);
    if (lrc < 0)
        return lrc;
    out->state = a->state;
    out->ep = a->ep;
    out->owner = a->owner;
    out->pid = a->pid;
    out->ostreams = a->ostreams;
    out->istreams = a->istreams;
    out->queued = a->queued;
    out->peer = a->peer;
    out->local_port = a->lport;
    if (a->fd >= 0 && a->proto == ESOCK_TCP) {
        out->primary = a->peer.addrs[0];
        (void)es__tcp_status(a->fd, out);
    } else if (a->fd >= 0) {
        struct sctp_status st;
        memset(&st, 0, sizeof st);
        socklen_t len = sizeof st;
        if (getsockopt(a->fd, IPPROTO_SCTP, SCTP_STATUS, &st, &len) == 0) {
            out->kernel_state = st.sstat_state;
            out->unacked = st.sstat_unackdata;
            out->pending = st.sstat_penddata;
            out->peer_rwnd = st.sstat_rwnd;
            out->ostreams = st.sstat_outstrms;
            out->istreams = st.sstat_instrms;
            from_storage((const char *)&st.sstat_primary +
                             offsetof(struct sctp_paddrinfo, spinfo_address),
                         &out->primary);
            out->rto_ms = st.sstat_primary.spinfo_rto;
            out->cwnd = st.sstat_primary.spinfo_cwnd;
            out->srtt_ms = st.sstat_primary.spinfo_srtt;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return 0;
}

ESOCK_API int esock_assoc_paths(esock_assoc assoc, esock_path_info *out, size_t cap)
{
    if (out == NULL && cap)
        return -EINVAL;
    struct as_ent *a;
    int lrc = as_lock(assoc, &a);
    if (lrc < 0)
        return lrc;
    int rc;
    if (a->state == ESOCK_ASSOC_CLOSED) {
        rc = ESOCK_ECLOSED;
    } else if (a->fd < 0) {
        rc = ESOCK_ENOTUP;
    } else if (a->proto == ESOCK_TCP) {
        rc = es__tcp_paths(a->fd, &a->peer.addrs[0], out, cap);
    } else {
        struct sockaddr *addrs = NULL;
        int n = sctp_getpaddrs(a->fd, 0, &addrs);
        if (n < 0) {
            rc = -errno;
        } else {
            struct sctp_status st;
            memset(&st, 0, sizeof st);
            socklen_t sl = sizeof st;
            bool have_st = getsockopt(a->fd, IPPROTO_SCTP, SCTP_STATUS, &st, &sl) == 0;
            char *p = (char *)addrs;
            for (int i = 0; i < n; i++) {
                struct sockaddr *sa = (struct sockaddr *)p;
                size_t l = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_in);
                if ((size_t)i < cap) {
                    esock_path_info *pi = &out[i];
                    memset(pi, 0, sizeof *pi);
                    memcpy(&pi->addr, sa, l);
                    struct sctp_paddrinfo info;
                    memset(&info, 0, sizeof info);
                    memcpy(&info.spinfo_address, sa, l);
                    socklen_t il = sizeof info;
                    if (getsockopt(a->fd, IPPROTO_SCTP, SCTP_GET_PEER_ADDR_INFO, &info, &il) == 0) {
                        pi->state = info.spinfo_state == SCTP_ACTIVE ? ESOCK_PATH_AVAILABLE
                                    : info.spinfo_state == SCTP_PF   ? ESOCK_PATH_POTENTIALLY_FAILED
                                                                     : ESOCK_PATH_UNREACHABLE;
                        pi->cwnd = info.spinfo_cwnd;
                        pi->srtt_ms = info.spinfo_srtt;
                        pi->rto_ms = info.spinfo_rto;
                        pi->mtu = info.spinfo_mtu;
                    }
                    if (have_st) {
                        esock_addr prim;
                        from_storage((const char *)&st.sstat_primary +
                                         offsetof(struct sctp_paddrinfo, spinfo_address),
                                     &prim);
                        pi->primary = addr_same_ip(&prim, &pi->addr);
                    }
                }
                p += l;
            }
            sctp_freepaddrs(addrs);
            rc = n;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

size_t es__addr_len(const esock_addr *a)
{
    return addr_len(a);
}
