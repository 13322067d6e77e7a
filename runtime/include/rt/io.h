/* rt/io.h: asynchronous I/O for processes, through io_uring.
 *
 * Each scheduler thread has one io_uring ring (or, as a control and where
 * io_uring is disabled, an epoll set with the same behaviour: rt_opts.io).
 * A process starts an operation and carries on; the completion arrives in
 * its mailbox as an RT_MSG_IO message, which rt_io_result_of() reads.
 * Multishot operations (accept, recv, recvmsg) produce one message per
 * completion until one without RT_IO_F_MORE. Stackful processes may use the
 * blocking-style calls at the end of this header instead (rt_recv,
 * rt_send_all, rt_accept, rt_connect): they block the process, never the
 * thread.
 *
 * Buffers and ownership:
 *  - a buffer passed to an operation (send, recv into the caller's buffer,
 *    sendmsg/recvmsg msghdr and everything it points to) belongs to the
 *    kernel from the call until the operation's last completion message
 *    has been received; the caller must not touch or free it meanwhile.
 *    Addresses given to rt_io_connect are copied.
 *  - a receive with RT_IO_BUFSEL (buf NULL) reads into a buffer of the
 *    scheduler's provided-buffer ring; the completion message lends it:
 *    msg->data and msg->size are the bytes received, no copy was made, and
 *    the buffer returns to the ring when the message is freed. When all
 *    buffers are lent out, receiving pauses (nothing is dropped: data waits
 *    in the socket) and resumes by itself when messages are freed. Should
 *    the kernel find no buffer while every one is back in the ring (a
 *    kernel that loses provided buffers: Linux 6.1.7 and later under
 *    multishot recvmsg, liburing issue #778), the receive ends with
 *    -ENOBUFS instead: start it again, or receive without RT_IO_BUFSEL.
 *  - an fd accepted by an RT_IO_ACCEPT completion is closed when its message
 *    is freed, unless the receiver takes it with rt_io_take_fd().
 *  - fds a process owns (rt_io_own, rt_io_take_fd, rt_accept, rt_socket)
 *    are closed when it ends; its operations still in flight are cancelled
 *    and their completions discarded (buffers return to the ring). None
 *    acts on a later socket that gets the same number: one still waiting
 *    in its scheduler's batch never reaches the kernel (a close does, in
 *    its turn), or reaches it only on the placeholder below. Its sockets
 *    are closed before its monitors hear of its end; when it still has
 *    requests on another scheduler (it moved), the fd numbers stay taken
 *    (by the placeholder, a pipe's read end) until that scheduler has
 *    ended them.
 *  - closing an fd through the runtime (rt_io_close, rt_close, or its
 *    owner's end) ends the requests on it, with -ECANCELED unless one
 *    completed first, so that none acts on the next file to get the
 *    number (a receive waiting for buffers ends instead of starting
 *    again):
 *     - on the closing process's scheduler, every request on it, whoever
 *       started it. The socket closes then (the peer sees the end;
 *       io_uring no longer holds it). On io_uring that end is by file: a
 *       request on another number for the same socket (dup) ends too; on
 *       epoll it is by number.
 *     - on each other scheduler where the closing process has requests
 *       (it moved since it started them), every request on the fd from
 *       before the close, whoever started it. The close completes at once,
 *       before those ends; the socket is closed then (a request in the
 *       kernel there still holds it until it ends), but its number stays
 *       taken by the placeholder until that scheduler has handed those
 *       ends to the kernel, in its next round (after the turn it is
 *       running). On the placeholder a request can only fail or wait to
 *       be ended; meanwhile a close of the number, rt_io_own of it or a
 *       new operation on it is refused (-EBADF).
 *     - on any other scheduler, a request on the fd is that scheduler's:
 *       on io_uring it ends when the kernel ends it (it holds the socket),
 *       on epoll when it is cancelled or its owner ends (or, -ECANCELED,
 *       when that scheduler next watches the number). Closing the fd while
 *       one there is still in its batch is a race, as closing an fd that
 *       another thread is using: that request may act on the next file to
 *       get the number. So is closing one number from two processes at
 *       once.
 *    A request that fails after its fd was closed through the runtime
 *    ends -ECANCELED, whatever its error. Close with close(2) only an fd
 *    with no request on it.
 *
 * Errors are the kernel's, passed through: rt_io_result.res is cqe->res
 * (bytes, a new fd, or a negative errno). The calls here return 0 or a
 * negative errno / project code themselves; they are for processes
 * (RT_ENOTPROC elsewhere). Operations run on the ring of the scheduler the
 * calling process runs on.
 */
#ifndef RT_IO_H
#define RT_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <rt/export.h>
#include <rt/msg.h>
#include <rt/proc.h>

/* The tag of a completion message. */
#define RT_MSG_IO 0xFFFF0004u

/* An operation's handle (never 0). */
typedef uint64_t rt_io_req;

enum rt_io_op {
    RT_IO_ACCEPT = 1,
    RT_IO_CONNECT,
    RT_IO_SEND,
    RT_IO_SENDMSG,
    RT_IO_RECV,
    RT_IO_RECVMSG,
    RT_IO_CLOSE,
    RT_IO_POLL,
};

/* Flags for starting operations. */
#define RT_IO_MULTISHOT 0x1u /* accept, recv, recvmsg, poll: until stopped */
#define RT_IO_BUFSEL    0x2u /* recv, recvmsg: into a provided buffer (buf NULL) */

/* Flags of a completion. */
#define RT_IO_F_MORE 0x1u /* more completions of this request will come */

/* What a completion says. Valid while its message is. */
typedef struct rt_io_result {
    rt_io_req req;
    int op;         /* enum rt_io_op */
    int fd;         /* the fd the operation was on */
    int res;        /* cqe->res: bytes, new fd, 0, or -errno */
    unsigned flags; /* RT_IO_F_* */
    /* RT_IO_RECVMSG with RT_IO_BUFSEL: where the kernel put the rest, inside
     * the lent buffer (NULL/0 otherwise) */
    void *name;
    unsigned namelen;
    void *control;
    unsigned controllen;
    int msg_flags; /* MSG_TRUNC, MSG_CTRUNC, MSG_EOR, MSG_NOTIFICATION... */
} rt_io_result;

/* rt_io_result_of: the result in an RT_MSG_IO message, NULL for any other. */
RT_API const rt_io_result *rt_io_result_of(const rt_msg *msg);

/* rt_io_take_fd: take the fd an RT_IO_ACCEPT completion created: it is no
 * longer closed with the message, and the calling process owns it (closed
 * when it ends; rt_io_disown to keep it). Returns the fd, -EINVAL if the
 * message has none (or it was taken), RT_ENOTPROC. */
RT_API int rt_io_take_fd(rt_msg *msg);

/* rt_io_own / rt_io_disown: make the calling process the owner of `fd`
 * (closed when the process ends), or stop owning it. Returns 0, -EBADF,
 * -EEXIST (already owned), -ENOENT (not owned), RT_ENOTPROC. */
RT_API int rt_io_own(int fd);
RT_API int rt_io_disown(int fd);

/* Starting operations. Each stores the request's handle in *req (may be
 * NULL) and returns 0, or -EBADF, -EINVAL (bad flags or arguments), -ENOMEM,
 * RT_ENOTPROC. The completion(s) come as RT_MSG_IO messages. */
RT_API int rt_io_accept(int fd, unsigned flags, rt_io_req *req);
RT_API int rt_io_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, rt_io_req *req);
RT_API int rt_io_send(int fd, const void *buf, size_t len, int msg_flags, rt_io_req *req);
RT_API int rt_io_sendmsg(int fd, const struct msghdr *mh, int msg_flags, rt_io_req *req);
/* buf NULL with RT_IO_BUFSEL: provided buffers (then len is ignored). */
RT_API int rt_io_recv(int fd, void *buf, size_t len, int msg_flags, unsigned flags, rt_io_req *req);
/* RT_IO_BUFSEL goes with RT_IO_MULTISHOT here (one without the other is
 * -EINVAL): a single-shot recvmsg reads into `mh` itself. With them, `mh`
 * is only a template: its msg_namelen and
 * msg_controllen say how much room to leave for the peer address and the
 * ancillary data (read them from rt_io_result); it is copied. Without, the
 * kernel fills `mh` itself (which must stay valid). */
RT_API int rt_io_recvmsg(int fd, struct msghdr *mh, int msg_flags, unsigned flags, rt_io_req *req);
/* Close through the ring; an owned fd is disowned first, and the requests
 * on it end (above). */
RT_API int rt_io_close(int fd, rt_io_req *req);
RT_API int rt_io_poll(int fd, unsigned poll_events, unsigned flags, rt_io_req *req);

/* rt_io_cancel: cancel a request the caller started. Its last completion
 * still comes (res -ECANCELED, or the result it reached first); one still
 * in its scheduler's batch (started in this turn) never reaches the
 * kernel: a connect connects nothing, a send sends nothing. Returns 0,
 * -ENOENT if it had already ended or is not the caller's, RT_ENOTPROC.
 * One case is answered later: a request started before the process moved
 * to another scheduler is cancelled by that scheduler's thread, and 0 is
 * returned unless the handle cannot exist (a cancel that arrives after the
 * request ended does nothing). */
RT_API int rt_io_cancel(rt_io_req req);

/* rt_io_timeout: give a request the caller started a time limit: if it is
 * still going timeout_ms from now (0: at once), it is cancelled, and its
 * last completion says -ETIMEDOUT (unless it reached its result first: a
 * multishot request's completions until then come as usual), whatever
 * error the kernel's cancel ended it with. A later call replaces the
 * limit (RT_INFINITY: with none); every limit counts from its call,
 * wherever it is armed. The limit is a timer (rt/timer.h) whose end the
 * caller acts on when it next takes a message (a callback actor at once,
 * a stackful process at its next receive, as with every signal); it is
 * dropped when the request ends. Returns 0, -ENOENT (no such request of
 * the caller's, or it has ended), -EINVAL (timeout_ms < 0 but
 * RT_INFINITY), -ENOMEM, RT_ENOTPROC. A request started before the
 * process moved to another scheduler gets its limit from that scheduler's
 * thread (0 is returned unless the handle cannot exist, as for
 * rt_io_cancel). */
RT_API int rt_io_timeout(rt_io_req req, int timeout_ms);

/* ---- blocking style, for stackful processes ------------------------------------
 * Each waits at most timeout_ms (RT_INFINITY: forever); on timeout the
 * operation is cancelled (and its completion awaited, so buffers are free
 * again) and -ETIMEDOUT returned. RT_ENOTPROC outside a stackful process.
 * Other messages stay queued. */

/* rt_socket: socket(2) with SOCK_CLOEXEC, owned by the caller. Returns the
 * fd or -errno. */
RT_API int rt_socket(int domain, int type, int protocol);
/* rt_accept: one connection; returns its fd, owned by the caller, or -errno.
 * On a listening socket with O_NONBLOCK a connection already waiting is
 * taken at once, without a trip through the ring (so an acceptor on a busy
 * scheduler takes all that wait in one turn); otherwise, and when none
 * waits, it blocks the process until one comes. */
RT_API int rt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int timeout_ms);
/* rt_connect: returns 0 or -errno. */
RT_API int rt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int timeout_ms);
/* rt_recv: up to len bytes; returns the count (0 at end of stream) or -errno.
 * Large receives (len of 32 KiB or more, on an fd whose last rt_recv on
 * this scheduler brought 32 KiB or more) that find data waiting are made
 * with recv(2) itself, not through the ring, when the process has no
 * operation in flight; after 16 such in a row it yields first. */
RT_API ssize_t rt_recv(int fd, void *buf, size_t len, int timeout_ms);
/* rt_send_all: all len bytes (several sends if needed); returns len or
 * -errno (bytes already sent are then unknown to the caller). From 32 KiB
 * on, what the socket takes at once is sent with send(2) itself (as for
 * rt_recv), the rest through the ring. */
RT_API ssize_t rt_send_all(int fd, const void *buf, size_t len, int timeout_ms);
/* rt_close: close through the ring (disowning it); returns 0 or -errno. */
RT_API int rt_close(int fd);

/* rt_io_backend: the name of the running backend ("io_uring" or "epoll"). */
RT_API const char *rt_io_backend(void);

#endif
