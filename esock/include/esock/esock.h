/* esock/esock.h: SCTP (and TCP) endpoints and associations as processes
 * of the rt runtime (<rt/rt.h>), whose owners receive data and events as
 * messages. TCP works through the same calls: see "TCP" below.
 *
 *   rt root supervisor
 *   └── esock_sup (simple_one_for_one)
 *       └── endpoint process, one per {protocol, local addresses, port}
 *           └── association process, one per association (linked; the
 *               endpoint traps exits, so an association that crashes never
 *               takes its endpoint down)
 *
 * An endpoint owns one SCTP one-to-many socket bound with sctp_bindx to all
 * its addresses. Every association, made (esock_assoc_create: sctp_connectx
 * from the endpoint's socket, so it shares the endpoint's port) or accepted,
 * is peeled off into its own one-to-one socket owned by its association
 * process, which reads it when the ring says it is readable and hands each
 * complete message to its owner as one message (ESOCK_MSG_DATA).
 *
 * Handles (esock_ep, esock_assoc) carry a generation: a handle never reaches
 * another object. The handle of an association that has ended gets
 * ESOCK_ECLOSED; one esock never issued (or of an endpoint that has been
 * closed) gets ESOCK_ESTALE. Errors are negative: the kernel's
 * -errno passed through, or an ESOCK_E* code (esock_strerror names both).
 *
 * Threads: every call may be made from any thread or process unless it
 * says otherwise. Calls that start or ask a process (esock_ep_create,
 * esock_owner_register, ...) wait for its answer, so they are for stackful
 * processes and plain threads, not callback actors (RT_ENOTPROC there);
 * esock_send and the queries never wait for a process and work anywhere.
 */
#ifndef ESOCK_ESOCK_H
#define ESOCK_ESOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <rt/rt.h>

#if defined(ESOCK_BUILDING)
#define ESOCK_API __attribute__((visibility("default")))
#else
#define ESOCK_API
#endif

/* ---- errors -------------------------------------------------------------------------- */

#define ESOCK_ERRORS(X)                                                                            \
    X(ESOCK_ENOTSTARTED, -6001, "esock is not started (esock_start)")                              \
    X(ESOCK_ESTALE, -6002, "stale or unknown handle")                                              \
    X(ESOCK_ECLOSED, -6003, "the association is closed")                                           \
    X(ESOCK_ENOTUP, -6004, "the association is not up yet")                                        \
    X(ESOCK_EBADSTREAM, -6005, "stream number beyond the association's outbound streams")          \
    X(ESOCK_EWOULDBLOCK, -6006,                                                                    \
      "send queue above its high watermark: wait for ESOCK_MSG_SEND_READY")                        \
    X(ESOCK_EOVERLAP, -6007, "addresses overlap another endpoint's binding")                       \
    X(ESOCK_ENOOWNER, -6008, "no such owner registered")

enum {
#define ESOCK_ERR_ENUM(name, value, text) name = value,
    ESOCK_ERRORS(ESOCK_ERR_ENUM)
#undef ESOCK_ERR_ENUM
};

/* esock_strerror: text for an esock code, a runtime code or a -errno.
 * Static string. */
ESOCK_API const char *esock_strerror(int err);

/* ---- the application ------------------------------------------------------------------ */

/* esock_version: the library's version, "MAJOR.MINOR.PATCH". Static. */
ESOCK_API const char *esock_version(void);

/* esock_sctp_available: 0 if the running kernel can open SCTP sockets,
 * else the negative errno of the probe (-EPROTONOSUPPORT,
 * -ESOCKTNOSUPPORT: no SCTP in this kernel; -EACCES, -EMFILE: the probe
 * could not tell). Opens and closes one socket. */
ESOCK_API int esock_sctp_available(void);

/* esock_start: start esock_sup under the runtime's root supervisor (the
 * runtime must be running). Returns 0, -EALREADY if started, RT_ENORUNTIME,
 * the supervisor's errors. esock_stop: stop it, closing every endpoint and
 * association (owners get their down messages). Returns 0 or
 * ESOCK_ENOTSTARTED. Both wait: not from a callback actor. */
ESOCK_API int esock_start(void);
ESOCK_API int esock_stop(void);

/* ---- handles and addresses --------------------------------------------------------------- */

typedef struct esock_ep {
    uint64_t id;
} esock_ep;
typedef struct esock_assoc {
    uint64_t id;
} esock_assoc;

#define ESOCK_EP_NONE    ((esock_ep){0})
#define ESOCK_ASSOC_NONE ((esock_assoc){0})

/* An IPv4 or IPv6 address with a port (the port is ignored where the call
 * takes one separately). */
typedef union esock_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} esock_addr;

/* esock_addr_parse: "127.0.0.1", "::1", "0.0.0.0", "::" (wildcards) into
 * *out with `port`. Returns 0 or -EINVAL. esock_addr_format: "addr:port"
 * ("[v6]:port") into buf; returns buf. */
ESOCK_API int esock_addr_parse(const char *text, uint16_t port, esock_addr *out);
ESOCK_API const char *esock_addr_format(const esock_addr *a, char *buf, size_t len);

#define ESOCK_MAX_ADDRS 8

/* What a delivered message costs against rcv_hiwat beyond its payload, and
 * the default high watermark. */
#define ESOCK_RCV_MSG_COST      256u
#define ESOCK_RCV_HIWAT_DEFAULT ((size_t)64 << 20)

enum esock_proto { ESOCK_SCTP = 0, ESOCK_TCP = 1 };

/* How a TCP endpoint's associations cut the byte stream into messages
 * (esock_ep_opts.framing). */
enum esock_framing {
    ESOCK_FRAME_NONE = 0,  /* data as it was read: one ESOCK_MSG_DATA per read, of any
                              size; esock_send writes the bytes as they are */
    ESOCK_FRAME_LEN32 = 1, /* each message after a 4-byte big-endian length: one
                              ESOCK_MSG_DATA per whole message, however the bytes
                              came, as over SCTP */
};

/* The largest message a framed TCP association accepts by default, and at
 * most (a message's room for its header comes out of RT_MSG_MAX_SIZE). */
#define ESOCK_MAX_MSG_DEFAULT ((size_t)16 << 20)
#define ESOCK_MAX_MSG_MAX     ((size_t)RT_MSG_MAX_SIZE - 4096)

/* ---- endpoints ---------------------------------------------------------------------------- */

typedef struct esock_ep_opts {
    int proto;                         /* ESOCK_SCTP or ESOCK_TCP (see "TCP" below) */
    esock_addr addrs[ESOCK_MAX_ADDRS]; /* local addresses; naddrs 0: 127.0.0.1 (TCP:
                                          a listening socket each, one port) */
    unsigned naddrs;
    uint16_t port;               /* 0: the kernel picks a free one */
    uint16_t ostreams, istreams; /* 0: 16 each (SCTP_INITMSG) */
    int sndbuf, rcvbuf;          /* per association. 0: ask for 1 MiB within
                                    net.core.wmem_max/rmem_max (the machine's
                                    limits, often 208 KiB). Set: that size,
                                    with SO_SNDBUFFORCE/SO_RCVBUFFORCE where
                                    allowed (CAP_NET_ADMIN), else capped as
                                    for 0. Mind net.sctp.sctp_mem: buffers
                                    times associations beyond it put SCTP
                                    under memory pressure. A message larger
                                    than the send buffer gets -EMSGSIZE */
    bool no_nodelay;             /* SCTP_NODELAY is on unless this is set */
    uint32_t default_ppid;       /* used when esock_send gets ppid 0 */
    uint16_t default_stream;     /* unused by esock_send (it always names one) */
    int backlog;                 /* 0: 128 */
    size_t send_hiwat;           /* bytes queued per association before
                                    ESOCK_EWOULDBLOCK; 0: 4 MiB */
    size_t rcv_hiwat;            /* bytes of an association's messages its owner has not
                                    freed yet (each counts ESOCK_RCV_MSG_COST more than its
                                    payload) before the association stops reading, until the
                                    owner is down to half: the kernel's window then closes
                                    and the peer is held back. A last resort (small messages
                                    then make the kernel drop and retransmit): 0: 64 MiB */
    bool handover;               /* when an association's owner ends, hand
                                    it to the endpoint's newest live owner
                                    (ESOCK_MSG_ASSOC_UP with handed_over)
                                    instead of closing it */
    unsigned handover_wait_ms;   /* when an association's owner ends and no
                                    other live owner is registered (or handover
                                    is off), keep it up this long for one to
                                    register: it reads nothing meanwhile (the
                                    peer is held back by flow control), then
                                    goes to the first owner that registers
                                    (ESOCK_MSG_ASSOC_UP with handed_over), so
                                    an owner restarted by its supervisor gets
                                    its associations back. What was already in
                                    the ended owner's mailbox ended with it.
                                    0: close at once. At most 1 h */
    /* Failure detection, for every association of the endpoint; 0: the
     * kernel's default (net.sctp.*). Signalling links usually want them
     * shorter than the defaults (RTO 3 s/1 s/60 s, heartbeat 30 s, 5 path
     * and 10 association retransmissions). */
    unsigned rto_initial_ms, rto_min_ms, rto_max_ms; /* SCTP_RTOINFO */
    unsigned hb_interval_ms;                         /* SCTP_PEER_ADDR_PARAMS */
    uint16_t path_max_retrans;                       /* per path, before it is unreachable */
    uint16_t assoc_max_retrans;                      /* SCTP_ASSOCINFO: before comm lost */
    /* TCP only (-EINVAL for SCTP when set) */
    int framing;    /* enum esock_framing */
    size_t max_msg; /* ESOCK_FRAME_LEN32: the largest message taken from the peer (a
                       longer length ends the association, ESOCK_DOWN_PROTOCOL);
                       0: ESOCK_MAX_MSG_DEFAULT, at most ESOCK_MAX_MSG_MAX */
} esock_ep_opts;

/* TCP. The same calls and messages as SCTP, with these differences:
 *  - an endpoint is a listening socket per local address (SO_REUSEADDR; with
 *    several addresses, IPv6 ones are IPV6_V6ONLY), accepting only while it
 *    has an owner (until then connections wait in the kernel's backlog); an
 *    association is a connection, accepted or made by esock_assoc_create,
 *    which tries the remote addresses in turn and is up on the first that
 *    answers (its local port is then one the kernel picks; its local
 *    address the endpoint's first of that family, unless a wildcard);
 *  - one stream each way: stream 0 only (ESOCK_EBADSTREAM otherwise), ppid
 *    0 in what arrives (a ppid given to esock_send is not sent), context 0;
 *    ESOCK_UNORDERED and lifetime_ms are accepted and mean nothing (TCP
 *    delivers in order, and takes nothing back);
 *  - data arrives as read (ESOCK_FRAME_NONE) or as whole messages
 *    (ESOCK_FRAME_LEN32). An esock_send is never interleaved with another;
 *    a message the socket cannot take at once waits in the send queue, and
 *    one written in part comes back in ESOCK_MSG_SEND_FAILED whole, with
 *    on_wire set, when the association ends before the rest went out;
 *  - sends are batched per turn, so that a process sending many small
 *    messages does not make a packet of each: the first esock_send of a
 *    process's turn goes to the socket at once (request/response waits for
 *    nothing); small messages (up to 2 KiB) that follow it in the same
 *    turn wait in the send queue, up to 64 KiB, and go out together (one
 *    sendmsg(2) per 64 of them) when the sender's turn ends (it blocks,
 *    yields or ends, or its callback returns): the association's process,
 *    which runs after it on the sender's scheduler, writes them. A larger
 *    message, or one past the 64 KiB, goes out at once, after those
 *    waiting. Only a sender on the association process's scheduler
 *    batches (rt_sched_of: a hint, as stealing may move either); from
 *    another scheduler or a thread that is not a process, each esock_send
 *    writes at once. What
 *    waits counts as queued (esock_assoc_info.queued) and comes first, in
 *    order; esock_assoc_shutdown and a graceful close write it before the
 *    FIN; an abort hands it back (ESOCK_MSG_SEND_FAILED, never on the wire);
 *  - the peer's end of its stream (FIN) ends the association, as an SCTP
 *    SHUTDOWN does (ESOCK_DOWN_SHUTDOWN, after every byte before it has been
 *    delivered; so a peer that ends its side and then waits for an answer,
 *    a half-close, gets none); a reset is ESOCK_DOWN_ABORT (error -ECONNRESET); a timeout
 *    is ESOCK_DOWN_COMM_LOST. esock_assoc_shutdown writes what was queued,
 *    then a FIN, delivers what the peer still sends, and is done when the
 *    peer's FIN comes (or after 10 s: error -ETIMEDOUT);
 *    esock_assoc_abort resets it;
 *  - hb_interval_ms turns on TCP keepalive (idle time and interval that
 *    long; path_max_retrans, else assoc_max_retrans, probes, 0: 5) and
 *    bounds how long data may stay unacknowledged (TCP_USER_TIMEOUT:
 *    hb_interval_ms * (probes + 1)) before comm lost; the RTO options, ostreams/istreams other
 *    than 0 or 1 and default_ppid are -EINVAL for TCP; sndbuf/rcvbuf 0
 *    leave the kernel's autotuning;
 *  - paths: one, the peer's address; status from TCP_INFO (rto_ms, srtt_ms,
 *    cwnd in segments, unacked segments, kernel_state: the TCP state). */

/* esock_ep_create: start an endpoint (opts NULL: SCTP on 127.0.0.1, a
 * free port) and store its handle. Returns 0; ESOCK_EALREADY-style reuse:
 * 1 (not an error) when an endpoint on the same {protocol, addresses, port}
 * exists, whose handle is then stored; ESOCK_EOVERLAP when the addresses
 * overlap another endpoint's on the same port; -EINVAL (bad option,
 * address family, more than ESOCK_MAX_ADDRS); -EPROTONOSUPPORT (no SCTP in
 * the kernel); the kernel's bind errors (-EADDRINUSE,
 * -EADDRNOTAVAIL); ESOCK_ENOTSTARTED. Waits: not from a callback actor. */
ESOCK_API int esock_ep_create(const esock_ep_opts *opts, esock_ep *out);

/* esock_ep_close: stop an endpoint: its associations are aborted (their
 * owners get ESOCK_MSG_ASSOC_DOWN, reason ESOCK_DOWN_ENDPOINT) and its
 * owners get ESOCK_MSG_EP_DOWN; these come from different processes, in no
 * fixed order. Returns 0,
 * ESOCK_ESTALE. Waits until it is gone: not from a callback actor. */
ESOCK_API int esock_ep_close(esock_ep ep);

/* esock_ep_port: the endpoint's local port (the one the kernel picked for
 * port 0). Returns the port or ESOCK_ESTALE. */
ESOCK_API int esock_ep_port(esock_ep ep);

/* ---- owners --------------------------------------------------------------------------------- */

/* The peer of a new association, as given to an accept callback and in
 * ESOCK_MSG_ASSOC_UP. */
typedef struct esock_peer {
    esock_addr addrs[ESOCK_MAX_ADDRS]; /* the peer's addresses (port set) */
    unsigned naddrs;
    uint16_t port;
    uint16_t ostreams, istreams; /* negotiated outbound / inbound streams */
} esock_peer;

/* An accept callback: runs in the endpoint process, once per new incoming
 * association, and returns true to take it. It must not block; it may
 * send. */
typedef bool (*esock_accept_fn)(void *arg, esock_assoc assoc, const esock_peer *peer);

/* esock_owner_register: make `owner` an owner of the endpoint's incoming
 * associations. Owners are asked newest first; the first whose callback
 * returns true (accept NULL: always) gets the association; when none
 * does, it is aborted. Registering the first owner starts reading: until
 * then new associations wait, and their data waits in the kernel under
 * SCTP flow control. An SCTP association that ended meanwhile (its peer
 * sent, then shut down or aborted, before anyone read) still comes like
 * the others: the owner gets its UP (the peer's primary address only),
 * what it sent, then its DOWN; sends to it are ESOCK_ECLOSED. (The
 * same for one that comes and goes while the endpoint is busy, and for
 * one made by esock_assoc_create that ends before the endpoint reads that
 * it came up.) Limits: such an association is not handed over when its
 * owner ends and gets no PATH messages. The
 * endpoint monitors the owner and forgets it when it
 * ends. Returns 0, -EEXIST (already an owner), -ESRCH (owner not alive),
 * ESOCK_ESTALE. Waits, so not from a callback actor: an owner that is a
 * supervised callback actor is registered by its child's start function
 * (which runs in the supervisor, a stackful process), so that each restart
 * registers it again (see examples/sctp_supervised.c). */
ESOCK_API int esock_owner_register(esock_ep ep, rt_pid owner, esock_accept_fn accept, void *arg);
/* esock_owner_unregister: returns 0, ESOCK_ENOOWNER, ESOCK_ESTALE. Waits. */
ESOCK_API int esock_owner_unregister(esock_ep ep, rt_pid owner);

/* ---- associations --------------------------------------------------------------------------- */

/* Reconnection of an association made by esock_assoc_create. When it could
 * not start, or ends other than by its own side's doing (comm lost, the
 * peer's ABORT or SHUTDOWN), esock tries again after a delay: the k-th
 * retry waits a random time between half of and the whole of
 * min(min_ms * 2^(k-1), max_ms), so a refusing peer is never hammered.
 * The handle and the owner stay the same; the owner gets, for the end and
 * then for every attempt that fails, an ESOCK_MSG_ASSOC_DOWN with
 * `reconnecting` set (the first with the reason it ended, the others
 * ESOCK_DOWN_CANT_START) followed by an ESOCK_MSG_RECONNECT announcing the
 * next attempt and its delay; then ESOCK_MSG_ASSOC_UP again, or, after
 * max_attempts failed retries, an ESOCK_MSG_RECONNECT with `gave_up` and a
 * last ESOCK_MSG_ASSOC_DOWN without `reconnecting`. The
 * counter starts again each time the association comes up. Its own
 * esock_assoc_shutdown/abort, the owner's end and the endpoint's close end
 * it for good. */
typedef struct esock_reconnect {
    unsigned max_attempts; /* 0: no reconnection */
    unsigned min_ms;       /* first delay; 0: 100 ms */
    unsigned max_ms;       /* cap; 0: 30 s. min_ms <= max_ms <= 1 h */
} esock_reconnect;

typedef struct esock_assoc_opts {
    rt_pid owner;                /* who gets its messages; RT_PID_NONE: the caller */
    uint16_t ostreams, istreams; /* 0: the endpoint's */
    esock_reconnect reconnect;
} esock_assoc_opts;

/* esock_assoc_create: connect the endpoint to a peer with `nremote`
 * addresses (sctp_connectx to all of them) and `port`. Stores the handle at
 * once; the owner gets ESOCK_MSG_ASSOC_UP, or ESOCK_MSG_ASSOC_DOWN with
 * ESOCK_DOWN_CANT_START (opts->reconnect: it keeps trying). Returns 0,
 * -EINVAL (no or too many addresses, port 0, no owner, bad reconnect
 * delays), -EISCONN (already associated with that peer: the kernel
 * allows one association per pair of endpoints), ESOCK_ESTALE, the
 * kernel's connect errors. Waits for the endpoint (not for the peer). */
ESOCK_API int esock_assoc_create(esock_ep ep, const esock_addr *remote, unsigned nremote,
                                 uint16_t port, const esock_assoc_opts *opts, esock_assoc *out);

/* Flags for esock_send. */
#define ESOCK_UNORDERED 0x1u

typedef struct esock_send_opts {
    uint32_t context;     /* returned in ESOCK_MSG_SEND_FAILED */
    uint32_t lifetime_ms; /* 0: no limit; else PR-SCTP timed reliability */
} esock_send_opts;

/* esock_send: send one message of `len` bytes (a copy is made when it must
 * wait; the caller keeps its buffer; data may be NULL when len is 0). Returns 0; ESOCK_ECLOSED (the
 * association ended), ESOCK_ENOTUP (still connecting), ESOCK_EBADSTREAM
 * (stream >= the negotiated outbound streams), -EMSGSIZE (len 0, but for
 * framed TCP, where it is an empty message; or larger than the association
 * accepts), ESOCK_EWOULDBLOCK (the send queue is above
 * its high watermark: nothing was sent; the owner gets ESOCK_MSG_SEND_READY
 * once it drains), -EINVAL (data NULL with len > 0, bad flags), ESOCK_ESTALE, another
 * -errno from the kernel. Never blocks; any thread. `opts` may be NULL.
 * TCP: a small message that follows another in the sender's turn may wait
 * for the end of that turn (see "TCP" above).
 * Called from a stackful process, every 64th call yields (rt_yield), as a
 * send costs reductions in Erlang: a process sending in a loop cannot
 * starve the processes of its scheduler that read, flush and consume. */
ESOCK_API int esock_send(esock_assoc assoc, uint16_t stream, uint32_t ppid, unsigned flags,
                         const void *data, size_t len, const esock_send_opts *opts);

/* esock_assoc_shutdown: graceful SHUTDOWN (queued data is delivered
 * first; from its return on, esock_send gets ESOCK_ECLOSED);
 * esock_assoc_abort: ABORT now. The owner gets ESOCK_MSG_ASSOC_DOWN
 * (ESOCK_DOWN_SHUTDOWN / ESOCK_DOWN_ABORT) when it is done. Returns 0,
 * ESOCK_ECLOSED, ESOCK_ESTALE, -ENOMEM (the request could not be sent to
 * the association's process: nothing was done). Never wait. */
ESOCK_API int esock_assoc_shutdown(esock_assoc assoc);
ESOCK_API int esock_assoc_abort(esock_assoc assoc);

/* ---- owner messages --------------------------------------------------------------------------
 * Each is an rt message whose data is the struct named; read it with the
 * esock_*_of() helpers (NULL for another message). The message belongs to
 * the owner as usual: a data payload is valid until rt_msg_free (or the
 * handler's return in a callback actor); keep it longer with rt_forward.
 * A data message carries its own accounting (rcv_hiwat): free it whole,
 * do not rt_msg_adopt from it. */

#define ESOCK_MSG_BASE        (RT_TAG_LIB_BASE + 0x1000u)
#define ESOCK_MSG_DATA        (ESOCK_MSG_BASE + 1)
#define ESOCK_MSG_ASSOC_UP    (ESOCK_MSG_BASE + 2)
#define ESOCK_MSG_ASSOC_DOWN  (ESOCK_MSG_BASE + 3)
#define ESOCK_MSG_PATH        (ESOCK_MSG_BASE + 4)
#define ESOCK_MSG_SEND_FAILED (ESOCK_MSG_BASE + 5)
#define ESOCK_MSG_EP_DOWN     (ESOCK_MSG_BASE + 6)
#define ESOCK_MSG_SEND_READY  (ESOCK_MSG_BASE + 7)
#define ESOCK_MSG_RECONNECT   (ESOCK_MSG_BASE + 8)

/* ESOCK_MSG_DATA: one complete message (reassembled when the kernel handed
 * it over in parts). Notifications never arrive as data. */
typedef struct esock_data {
    esock_assoc assoc;
    esock_ep ep;
    uint16_t stream;
    uint16_t flags; /* ESOCK_UNORDERED */
    uint32_t ppid;
    uint32_t context;
    uint32_t tsn;
    size_t len;
    const void *data; /* len bytes, inside the message (or lent to it) */
} esock_data;

typedef struct esock_up {
    esock_assoc assoc;
    esock_ep ep;
    esock_peer peer;
    bool handed_over; /* up for a while: its owner ended and it is yours now
                         (esock_ep_opts.handover, handover_wait_ms) */
} esock_up;

enum esock_down_reason {
    ESOCK_DOWN_COMM_LOST = 1, /* the peer stopped answering, or the path failed */
    ESOCK_DOWN_SHUTDOWN,      /* graceful shutdown, from either side */
    ESOCK_DOWN_ABORT,         /* ABORT, from either side */
    ESOCK_DOWN_RESTART,       /* the peer restarted: the old association is gone */
    ESOCK_DOWN_CANT_START,    /* esock_assoc_create could not set it up */
    ESOCK_DOWN_ENDPOINT,      /* its endpoint closed */
    ESOCK_DOWN_OWNER,         /* its owner ended */
    ESOCK_DOWN_CRASH,         /* its process ended abnormally */
    ESOCK_DOWN_PROTOCOL,      /* TCP with framing: the peer sent a length beyond
                                 max_msg (error -EMSGSIZE); it is reset. (A peer that
                                 ends its stream inside a message: ESOCK_DOWN_SHUTDOWN,
                                 error -EPROTO.) */
};

typedef struct esock_down {
    esock_assoc assoc;
    esock_ep ep;
    int reason;        /* enum esock_down_reason */
    int error;         /* the kernel's sac_error / cause code, or a -errno; 0 if none;
                          ESOCK_DOWN_CRASH: the process's exit reason (rt_strerror) */
    bool reconnecting; /* the handle lives on: esock tries again (esock_reconnect), or
                          the peer restarted (ESOCK_DOWN_RESTART) and it is up */
} esock_down;

/* ESOCK_MSG_RECONNECT: a reconnection attempt is scheduled (attempt k of
 * max_attempts, in delay_ms), or, with gave_up, there will be no more. */
typedef struct esock_reconnect_ev {
    esock_assoc assoc;
    unsigned attempt;
    unsigned delay_ms;
    int error; /* why the last try failed (as in esock_down.error) */
    bool gave_up;
} esock_reconnect_ev;

enum esock_path_state {
    ESOCK_PATH_AVAILABLE = 1,
    ESOCK_PATH_UNREACHABLE,
    ESOCK_PATH_REMOVED,
    ESOCK_PATH_ADDED,
    ESOCK_PATH_PRIMARY,
    ESOCK_PATH_CONFIRMED,
    ESOCK_PATH_POTENTIALLY_FAILED,
};

typedef struct esock_path {
    esock_assoc assoc;
    esock_addr addr;
    int state; /* enum esock_path_state */
    int error;
} esock_path;

/* ESOCK_MSG_SEND_FAILED: a message that was not delivered, its payload
 * handed back: its lifetime ran out, or the association ended before it was
 * acknowledged. In this order: what the kernel held (error: the kernel's,
 * e.g. ECONNABORTED), the transmitted first (`on_wire`: the peer may have
 * it after all), then the rest, oldest first; then what waited in esock's
 * own queue (error ESOCK_ECLOSED, never on the wire), oldest first. The
 * transmitted ones are the oldest of all but come in the kernel's order,
 * not always oldest first (Linux hands back its list of what is in flight,
 * where one sent again goes to the end, then those it marked for sending
 * again): a sequence number in `context` puts them in order. A message
 * the kernel had split into chunks comes back a chunk at a time. All of
 * them come before the association's ESOCK_MSG_ASSOC_DOWN. */
typedef struct esock_send_failed {
    esock_assoc assoc;
    int error;
    uint16_t stream;
    uint32_t ppid;
    uint32_t context;
    size_t len;
    const void *data; /* len bytes; NULL (error -ENOMEM) if there was no memory for them */
    bool on_wire;
} esock_send_failed;

typedef struct esock_ep_down {
    esock_ep ep;
    int reason; /* the endpoint process's exit reason (0: closed) */
} esock_ep_down;

typedef struct esock_send_ready {
    esock_assoc assoc;
} esock_send_ready;

ESOCK_API const esock_data *esock_data_of(const rt_msg *m);
ESOCK_API const esock_up *esock_up_of(const rt_msg *m);
ESOCK_API const esock_down *esock_down_of(const rt_msg *m);
ESOCK_API const esock_path *esock_path_of(const rt_msg *m);
ESOCK_API const esock_send_failed *esock_send_failed_of(const rt_msg *m);
ESOCK_API const esock_ep_down *esock_ep_down_of(const rt_msg *m);
ESOCK_API const esock_send_ready *esock_send_ready_of(const rt_msg *m);
ESOCK_API const esock_reconnect_ev *esock_reconnect_of(const rt_msg *m);

/* esock_down_reason_name: "comm_lost", "shutdown", ... Static. */
ESOCK_API const char *esock_down_reason_name(int reason);

/* ---- queries: snapshots, any thread -----------------------------------------------------------
 */

/* esock_endpoints: up to `cap` endpoint handles into out; returns how many
 * exist (may exceed cap) or ESOCK_ENOTSTARTED. */
ESOCK_API int esock_endpoints(esock_ep *out, size_t cap);
/* esock_ep_find: the endpoint bound to `addr` (any of its addresses, or
 * its wildcard) and `port`. Returns 0 with *out set, or -ENOENT. */
ESOCK_API int esock_ep_find(int proto, const esock_addr *addr, uint16_t port, esock_ep *out);
/* esock_ep_assocs: the endpoint's associations (handles), as
 * esock_endpoints. */
ESOCK_API int esock_ep_assocs(esock_ep ep, esock_assoc *out, size_t cap);
/* esock_assoc_find: the association from local address/port to remote
 * address/port (the local address may be one its endpoint binds through a
 * wildcard). The local port is the endpoint's, except for a TCP connection
 * esock made: its own, which the kernel picked. Returns 0, -ENOENT,
 * -EINVAL, ESOCK_ENOTSTARTED. */
ESOCK_API int esock_assoc_find(const esock_addr *local, uint16_t lport, const esock_addr *remote,
                               uint16_t rport, esock_assoc *out);

enum esock_assoc_state {
    ESOCK_ASSOC_CONNECTING = 1,
    ESOCK_ASSOC_UP,
    ESOCK_ASSOC_SHUTTING_DOWN,
    ESOCK_ASSOC_CLOSED,
};

typedef struct esock_assoc_info {
    int state; /* enum esock_assoc_state */
    esock_ep ep;
    rt_pid owner, pid; /* the owner and the association's process */
    uint16_t ostreams, istreams;
    esock_addr primary; /* the primary path (when up) */
    uint32_t rto_ms;    /* of the primary path, from SCTP_STATUS */
    uint32_t cwnd;
    uint32_t srtt_ms;
    uint32_t unacked, pending; /* chunks unacknowledged, pending */
    uint32_t peer_rwnd;        /* the peer's receive window as last advertised (bytes) */
    int kernel_state;          /* SCTP_STATUS sstat_state (enum sctp_sstat_state) */
    size_t queued;             /* bytes waiting in esock's send queue */
    esock_peer peer;
    uint16_t local_port; /* the endpoint's; a TCP connection esock made: its own */
} esock_assoc_info;

/* esock_assoc_status: returns 0, ESOCK_ECLOSED, ESOCK_ESTALE. */
ESOCK_API int esock_assoc_status(esock_assoc assoc, esock_assoc_info *out);

typedef struct esock_path_info {
    esock_addr addr;
    int state; /* ESOCK_PATH_AVAILABLE, _UNREACHABLE, _POTENTIALLY_FAILED */
    bool primary;
    uint32_t cwnd, srtt_ms, rto_ms, mtu;
} esock_path_info;

/* esock_assoc_paths: the association's paths to the peer, one per remote
 * address, with their state (SCTP_GET_PEER_ADDR_INFO). Returns how many
 * (may exceed cap), ESOCK_ENOTUP, ESOCK_ECLOSED, ESOCK_ESTALE. */
ESOCK_API int esock_assoc_paths(esock_assoc assoc, esock_path_info *out, size_t cap);

#endif
