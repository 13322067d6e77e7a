/* internal.h: esock's tables and the messages between its processes. */
#ifndef ESOCK_INTERNAL_H
#define ESOCK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <netinet/sctp.h>

#include <esock/esock.h>
#include <rt/io.h>

/* Tags of the messages between esock's own processes. */
#define ES_CALL_REG_OWNER    (ESOCK_MSG_BASE + 0x100)
#define ES_CALL_UNREG_OWNER  (ESOCK_MSG_BASE + 0x101)
#define ES_CALL_CONNECT      (ESOCK_MSG_BASE + 0x102)
#define ES_EP_RECONNECT      (ESOCK_MSG_BASE + 0x103) /* assoc -> ep: connect me again */
#define ES_AS_FD             (ESOCK_MSG_BASE + 0x110) /* ep -> assoc: peeled-off socket, up */
#define ES_AS_CANT_START     (ESOCK_MSG_BASE + 0x111) /* ep -> assoc */
#define ES_AS_SHUTDOWN       (ESOCK_MSG_BASE + 0x112)
#define ES_AS_ABORT          (ESOCK_MSG_BASE + 0x113)
#define ES_AS_KICK           (ESOCK_MSG_BASE + 0x114) /* a sender queued: write the queue */
#define ES_AS_RETRY          (ESOCK_MSG_BASE + 0x115) /* its own backoff timer */
#define ES_AS_READ           (ESOCK_MSG_BASE + 0x116) /* go on reading (its budget ran out) */
#define ES_EP_ACCEPT_AGAIN   (ESOCK_MSG_BASE + 0x105) /* TCP: out of fds a while ago */
#define ES_EP_ORPHAN         (ESOCK_MSG_BASE + 0x104) /* assoc -> ep: struct es_owner_ref */
#define ES_AS_ADOPT          (ESOCK_MSG_BASE + 0x117) /* ep -> assoc: struct es_owner_ref */
#define ES_AS_CONNECT        (ESOCK_MSG_BASE + 0x119) /* TCP: connect (again) */
#define ES_AS_SHUT_TIMEOUT   (ESOCK_MSG_BASE + 0x11a) /* TCP: the peer did not end its side */
#define ES_AS_ORPHAN_TIMEOUT (ESOCK_MSG_BASE + 0x118) /* nobody came within handover_wait_ms */
#define ES_AS_GHOST          (ESOCK_MSG_BASE + 0x11b) /* ep -> assoc: struct es_ghost_read */

/* An incoming SCTP association that had ended by the time its endpoint
 * read its COMM_UP cannot be peeled off, but what it sent, and its end,
 * are still queued on the endpoint's socket: its process starts with
 * as_start.fd ES_GHOST_FD, without a socket, and the endpoint hands it
 * each read for it (ES_AS_GHOST: this, then the bytes) until its end. */
#define ES_GHOST_FD (-2)
struct es_ghost_read {
    int msg_flags;
    struct sctp_rcvinfo ri;
};

/* An owner and when it registered (the endpoint's count of registrations):
 * ES_AS_ADOPT names the new owner; ES_EP_ORPHAN the association (h) and
 * the registration of the owner it lost (an association waiting for an
 * owner goes to one registered after that, or to any with handover). */
struct es_owner_ref {
    rt_pid pid;
    esock_assoc h;
    uint64_t seq;
};

/* Where and how an association connects (kept for reconnection). */
struct es_connect {
    esock_addr remote[ESOCK_MAX_ADDRS]; /* ports set */
    unsigned nremote;
    uint16_t port;
    uint16_t ostreams, istreams; /* 0: the endpoint's */
};

/* ES_CALL_CONNECT's request; the reply is this with `rc` set. */
struct connect_req {
    struct es_connect c;
    rt_pid owner;
    esock_reconnect rc;
    esock_assoc out;
    int result;
};

/* ES_EP_RECONNECT's payload. */
struct reconnect_req {
    esock_assoc h;
    struct es_connect c;
};

/* One queued outgoing message. */
struct sq_item {
    struct sq_item *next;
    uint16_t stream;
    uint16_t flags;
    uint32_t ppid;
    uint32_t context;
    uint32_t lifetime;
    size_t len;
    size_t off; /* TCP: bytes written (of the length prefix, then data) */
    unsigned char data[];
};

/* An association's shared record: the handle table's entry. Its lock
 * guards everything below it; the table lock guards gen/used. */
struct as_ent {
    uint32_t gen;
    bool used;
    uint32_t idx;
    pthread_mutex_t lock;
    int state;   /* enum esock_assoc_state */
    int proto;   /* ESOCK_SCTP, ESOCK_TCP */
    bool framed; /* TCP: a 4-byte length before each message */
    int fd;      /* the peeled-off socket (TCP: the connection), -1 before it
                    is up and after close */
    rt_pid pid, owner;
    esock_ep ep;
    sctp_assoc_t kid; /* the kernel's id on the endpoint's socket */
    uint16_t ostreams, istreams;
    uint16_t lport;
    esock_peer peer;
    uint32_t default_ppid;
    /* send queue: when the socket's buffer is full, or (TCP, `held`) small
     * messages held for one write at the end of their sender's turn */
    struct sq_item *head, *tail;
    size_t queued, hiwat;
    bool want_ready; /* a sender was refused: tell the owner when it drains */
    int broken;      /* TCP: the rest of a message written in part could not be
                        queued (-ENOMEM): the process ends the association */
    bool kicked;     /* the process has been asked to write the queue (ES_AS_KICK:
                        it watches for POLLOUT when the socket is full) */
    bool held;       /* TCP: the queue is held by choice, not because the socket
                        was full; the ES_AS_KICK on its way writes it */
};

struct ep_ent {
    uint32_t gen;
    bool used;
    bool ready; /* its process has started */
    uint32_t idx;
    rt_pid pid;
    esock_ep_opts opts; /* with the defaults filled in; port: the real one */
    int fd;
    /* its owners, oldest first, as its process last published them (for
     * an association handing itself over when its owner ends) */
    rt_pid *owners;
    unsigned nowners;
};

/* The library's global state. */
struct esock_g {
    pthread_rwlock_t lock;
    bool started;
    rt_pid sup;
    struct ep_ent **eps;
    uint32_t neps, capeps;
    struct as_ent **as;
    uint32_t nas, capas;
    uint32_t as_free; /* a free-slot hint */
};

extern struct esock_g es__g;

/* table.c-ish helpers (esock.c) */
struct as_ent *es__as_new(void);          /* locked table: a fresh entry (gen bumped), or NULL */
void es__as_release(struct as_ent *a);    /* free the slot (any thread) */
struct as_ent *es__as_get(esock_assoc h); /* under the read lock: entry or NULL */
struct ep_ent *es__ep_get(esock_ep h);
static inline esock_assoc es__as_handle(const struct as_ent *a)
{
    return (esock_assoc){((uint64_t)a->gen << 32) | (a->idx + 1)};
}
static inline esock_ep es__ep_handle(const struct ep_ent *e)
{
    return (esock_ep){((uint64_t)e->gen << 32) | (e->idx + 1)};
}

/* ep.c */
int es__ep_start(void *arg, rt_pid *out); /* the esock_sup child template */

/* assoc.c */
struct as_start {
    struct as_ent *ent;
    int fd; /* >= 0: already up (accepted); ES_GHOST_FD: ended already */
    rt_pid owner;
    rt_pid ep;                      /* its endpoint's process */
    uint64_t owner_seq;             /* the owner's registration (es_owner_ref) */
    const struct connect_req *made; /* esock_assoc_create's, else NULL */
};
int es__as_spawn(struct as_start *st, rt_pid *out);
void es__sockaddr_port(esock_addr *a, uint16_t *port_out);
size_t es__addr_len(const esock_addr *a);
int es__set_sock_opts(int fd, const esock_ep_opts *o);
void es__fill_peer(int fd, sctp_assoc_t id, esock_peer *peer);
int es__send_locked(struct as_ent *a, uint16_t stream, uint32_t ppid, unsigned flags,
                    uint32_t context, uint32_t lifetime, const void *data, size_t len);
void es__send_owner(rt_pid owner, uint32_t tag, const void *data, size_t size);

/* tcp.c: sockets for TCP endpoints */
int es__tcp_listen(esock_ep_opts *o, int *fds, unsigned *nfds); /* o->port: the real one */
int es__tcp_set_opts(int fd, const esock_ep_opts *o);
void es__tcp_fill_peer(int fd, esock_peer *peer);
int es__tcp_status(int fd, esock_assoc_info *out);
int es__tcp_paths(int fd, const esock_addr *peer, esock_path_info *out, size_t cap);

#endif
