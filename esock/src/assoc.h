/* assoc.h: the association process's state and what its protocol halves
 * (assoc_sctp.c, tcp.c) share with assoc.c. Private. */
#ifndef ESOCK_ASSOC_H
#define ESOCK_ASSOC_H

#include "internal.h"

/* Receive credit: how many bytes of its messages the owner holds (each
 * message counts ESOCK_RCV_MSG_COST more than its payload). The messages
 * hold a reference (they may be freed on any thread, after the process
 * ended), through a tag placed after their payload, inside the message's
 * own memory. Reading stops at the endpoint's rcv_hiwat and starts again when
 * the owner is down to half of it: the kernel's window closes meanwhile,
 * which is SCTP's own backpressure to the peer. It is a last resort, hence
 * the high default: with small messages the kernel's receive memory fills
 * long before its window closes, it then drops, and the peer falls back to
 * retransmission timeouts (seconds). */
struct rx_credit {
    _Atomic uint64_t held;
    _Atomic uint32_t refs;
    _Atomic bool stalled;
    rt_pid pid;
    uint64_t lowat;
};

/* After a data message's payload: what its release gives back. */
struct rx_tag {
    struct rx_credit *c;
    uint64_t cost;
};

/* Room a data message needs for its tag, beyond sizeof(esock_data) + payload. */
#define ES_TAG_ROOM (sizeof(struct rx_tag) + _Alignof(struct rx_tag))

struct as_st {
    struct as_ent *a;
    esock_assoc h;
    esock_ep ep;
    rt_pid owner;
    rt_ref mon;
    int fd;
    rt_io_req rreq, preq;
    bool reading, polling;
    bool down_sent;
    bool shutdown_pending; /* graceful shutdown once the queue is empty */
    bool local_end;        /* its own side is ending it: no reconnection */
    bool aborting;         /* its ABORT is on its way: COMM_LOST will say so */
    bool ending;           /* ended: reading what is left, then stop */
    bool read_pending;     /* an ES_AS_READ to itself is on its way */
    bool rdhup;            /* TCP: the last readiness said the peer's end is in */
    bool nxtinfo;          /* SCTP: SCTP_RECVNXTINFO is on (ES_READ_DRAINED works) */
    bool orphaned;         /* its owner ended: waiting for one (handover_wait_ms) */
    uint64_t owner_seq;    /* its owner's registration on the endpoint (es_owner_ref) */
    rt_timer orphan_timer;
    size_t guess; /* the size of the last message read */
    struct rx_credit *credit;
    int end_reason, end_error;
    /* reconnection (esock_assoc_create with esock_reconnect) */
    rt_pid ep_pid;
    struct es_connect conn;
    esock_reconnect rc;
    unsigned attempts; /* failed tries since it was last up */
    rt_timer timer;    /* the backoff timer, while waiting */
    uint64_t rng;
    /* a message the kernel hands over in parts */
    unsigned char *rbuf;
    size_t rlen, rcap;
    bool rnotif; /* what is gathered is a notification */
    struct sctp_rcvinfo rinfo;
    /* TCP (tcp.c) */
    int proto;             /* ESOCK_SCTP, ESOCK_TCP */
    esock_ep_opts opts;    /* its endpoint's (defaults filled in): buffers, limits, sockets */
    unsigned conn_idx;     /* the remote address being tried */
    rt_io_req creq;        /* the connect in flight */
    int cfd;               /* its socket while connecting */
    int cerr;              /* why the last address failed */
    rt_timer shut_timer;   /* its own shutdown: the peer's end must come by then */
    unsigned char fhdr[4]; /* framing: the length being read */
    unsigned fhlen;
    rt_msg *fm; /* the message being filled */
    bool fbig;  /* a large one, gathered in rbuf instead */
    size_t fneed, fhave;
};

/* Budgets and sizes of the receive path. */
#define ES_READ_BUDGET 64           /* messages per turn before the others get theirs */
#define ES_SCRATCH     (256u << 10) /* the per-thread read buffer */
/* Messages up to this size are read into the scratch buffer and copied into
 * a message of their size; larger ones are read straight into the owner's
 * message (no copy: bulk flows). */
#define ES_COPY_MAX 2048u

/* TCP: small messages from a process on its association's scheduler are
 * held and written together when that process's turn ends (esock_send):
 * messages up to ES_TCP_HOLD_MSG bytes, up to ES_TCP_HOLD_MAX bytes in
 * all (then they go out at once, as a larger message does, after them). */
#define ES_TCP_HOLD_MSG 2048u
#define ES_TCP_HOLD_MAX (64u << 10)

/* TCP: how long esock_assoc_shutdown gives the queue and the peer's end. */
#define ES_TCP_SHUTDOWN_MS 10000

/* assoc.c: the protocol-independent part */
void es__close_fd(int fd);
void es__as_stop(struct as_st *st, int reason, int error, bool abort);
void es__as_ending(struct as_st *st, int reason, int error);
void es__as_go_up(struct as_st *st, int fd, uint16_t os, uint16_t is);
bool es__as_gather(struct as_st *st, const void *p, size_t n);
unsigned char *es__as_scratch(void);
/* Hand a data message to the owner (m was allocated with ES_TAG_ROOM to
 * spare after m->size; it counts `payload` against rcv_hiwat). */
void es__as_deliver_msg(struct as_st *st, rt_msg *m, size_t payload);
int es__map_send_err(int e);
/* Why a socket that failed with the kernel's `err` ended: a reset is an
 * abort, anything else comm lost. */
int es__lost_reason(int err);

/* assoc_sctp.c. Each read_one returns 1 (something read), 0 (the socket is
 * empty), -1 (the association ended meanwhile), or ES_READ_DRAINED
 * (something read, and that emptied the socket: TCP's short read; what
 * comes later wakes the poll again, which fires on each arrival). */
#define ES_READ_DRAINED 2
int es__sctp_read_one(struct as_st *st);
/* Write q's message (its bytes at data: the caller's, or q->data when
 * queued). Returns 1 (all of it is out), 0 (the socket is full: TCP may
 * have written part, q->off says how much), or the kernel's -errno. */
int es__sctp_write(struct as_ent *a, struct sq_item *q, const void *data);
int es__sctp_send_flag(struct as_st *st, uint16_t flag);
void es__sctp_ghost(struct as_st *st, const rt_msg *m); /* ES_AS_GHOST */

/* tcp.c */
int es__tcp_read_one(struct as_st *st);
int es__tcp_write(struct as_ent *a, struct sq_item *q, const void *data);
/* Write the queue, many messages a call: 1 (all out), 0 (the socket is
 * full), -errno. Under a->lock. */
int es__tcp_write_queue(struct as_ent *a);
void es__tcp_connect(struct as_st *st);                          /* start (or go on) connecting */
void es__tcp_connected(struct as_st *st, const rt_io_result *r); /* its completion */
void es__tcp_shutdown(struct as_st *st);                         /* the queue is empty: FIN */
void es__tcp_cleanup(struct as_st *st, bool abort); /* drop connect and framing state */

#endif
