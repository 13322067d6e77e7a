/* rt/msg.h: messages, sending and receiving.
 *
 * A message has a tag (the application's own, below RT_TAG_SYSTEM), a
 * payload and the sender's pid. Send by copy (rt_send: the payload is copied
 * into the message; small payloads live inline, in memory from per-thread
 * pools), by move (rt_send_move: the message carries the caller's buffer and
 * frees it with the given function), or pass a received message on without a
 * copy (rt_forward). Messages from one process to another arrive in the order
 * they were sent.
 *
 * A received message belongs to the receiver until it calls rt_msg_free()
 * (stackful processes) or its handle callback returns (callback actors).
 */
#ifndef RT_MSG_H
#define RT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rt/export.h>
#include <rt/proc.h>

/* Tags from here up are the runtime's and its libraries'. */
#define RT_TAG_SYSTEM 0xFFFF0000u
/* An exit signal turned into a message (trap_exits): data is rt_exit_info. */
#define RT_MSG_EXIT 0xFFFF0001u
/* A monitored process ended: data is rt_down_info. */
#define RT_MSG_DOWN 0xFFFF0002u
/* First tag of the range for libraries built on the runtime: the
 * runtime's own (supervisors) use RT_TAG_LIB_BASE to RT_TAG_LIB_BASE +
 * 0xFFF, esock's messages start at RT_TAG_LIB_BASE + 0x1000. */
#define RT_TAG_LIB_BASE 0xFFFF1000u

/* Largest payload a message may carry, copy or move. */
#define RT_MSG_MAX_SIZE (1u << 30)

/* Infinite timeout for receives. */
#define RT_INFINITY (-1)

typedef struct rt_exit_info {
    rt_pid from; /* the process whose exit signal this is (NONE: not a process) */
    int reason;
} rt_exit_info;

typedef struct rt_down_info {
    rt_ref ref;
    rt_pid pid;
    int reason;
} rt_down_info;

/* A message. The public fields are read-only for the receiver; the fields
 * starting with rt__ are the runtime's. */
struct rt__node {
    struct rt__node *_Atomic next;
};

typedef struct rt_msg {
    struct rt__node rt__link; /* mailbox link */
    rt_pid from;              /* sender (RT_PID_NONE: not a process) */
    uint32_t tag;
    uint32_t size;            /* payload bytes */
    void *data;               /* payload (aligned to 16); NULL when size 0 */
    void (*rt__free)(void *); /* a moved or lent buffer: how to release it */
    void *rt__lent;           /* that buffer (often, not always, `data`) */
    uint32_t rt__kind;        /* signal kind, 0 for a plain message */
    uint32_t rt__class;       /* pool size class of this block */
    uint64_t rt__aux;         /* signal argument (monitor ref) */
} rt_msg;

/* rt_send: send a copy of `size` bytes at `data` to `to`. `data` may be NULL
 * only when size is 0; the caller keeps its buffer. Returns 0, -ESRCH (dead or
 * recycled pid: nothing is sent), -EINVAL (bad tag: the runtime's own,
 * RT_TAG_SYSTEM to RT_TAG_LIB_BASE - 1, or
 * data NULL with size > 0), -EMSGSIZE (size > RT_MSG_MAX_SIZE), -ENOMEM,
 * RT_ENORUNTIME. Any thread. A message sent to a process that ends before
 * receiving it is freed with its mailbox. */
RT_API int rt_send(rt_pid to, uint32_t tag, const void *data, size_t size);

/* rt_send_move: send `data` itself: on success the message owns it and calls
 * free_fn(data) when it is freed (free_fn NULL: the buffer is not freed, e.g.
 * static data). On failure the buffer stays the caller's.
 * Errors as rt_send. Any thread. */
RT_API int rt_send_move(rt_pid to, uint32_t tag, void *data, size_t size, void (*free_fn)(void *));

/* rt_forward: send a message the caller owns (received, or from
 * rt_msg_alloc) to `to`, without a copy; its tag, payload and `from` are kept.
 * On success the message is no longer the caller's (a callback actor may
 * forward the message it is handling; the runtime then does not free it).
 * On failure (-ESRCH, -EINVAL for NULL) the caller still owns it.
 * Any thread. */
RT_API int rt_forward(rt_pid to, rt_msg *msg);

/* rt_msg_alloc: a message with room for `size` payload bytes to fill in at
 * msg->data before rt_forward(); `from` is the caller. The caller owns it.
 * Returns NULL on bad arguments (tag reserved, size too big) or no memory.
 * Any thread. */
RT_API rt_msg *rt_msg_alloc(uint32_t tag, size_t size);

/* rt_msg_adopt: move the buffer `src` carries (moved in with rt_send_move,
 * or lent by the I/O layer) to `dst`, so that it is released when `dst` is
 * freed instead of `src`. `src` keeps pointing at the bytes but no longer
 * owns them: free `src` whenever convenient, and read them through `dst`
 * (set dst->data/size as needed: the bytes stay where they are, no copy).
 * Both messages must be the caller's. Returns 0, -EINVAL if `src` carries
 * no such buffer or `dst` already does. Any thread. */
RT_API int rt_msg_adopt(rt_msg *dst, rt_msg *src);

/* rt_msg_lend: attach `buf` to a message the caller owns: free_fn(buf) runs
 * when the message is freed (the bytes are read through whatever pointer
 * the caller stores in the payload). Returns 0, -EINVAL if the message
 * carries such a buffer already or an argument is NULL. Any thread. */
RT_API int rt_msg_lend(rt_msg *msg, void *buf, void (*free_fn)(void *));

/* rt_msg_free: free a message (NULL is ignored). Any thread. */
RT_API void rt_msg_free(rt_msg *msg);

/* rt_receive: take the oldest message from the caller's mailbox, waiting up
 * to `timeout_ms` (0: do not wait; RT_INFINITY: forever). On success stores
 * it in *out; the caller owns it. Returns 0, -ETIMEDOUT, -EINVAL (out NULL),
 * RT_ENOTPROC outside a stackful process. Exit signals act here. */
RT_API int rt_receive(int timeout_ms, rt_msg **out);

/* A match function for selective receive: true takes the message. It must
 * not send, receive or free. */
typedef bool (*rt_match_fn)(const rt_msg *msg, void *arg);

/* rt_receive_match: take the oldest message for which match(msg, arg) is
 * true; messages that do not match stay queued in their order. Returns as
 * rt_receive. */
RT_API int rt_receive_match(rt_match_fn match, void *arg, int timeout_ms, rt_msg **out);

/* rt_receive_tag: take the oldest message with tag `tag`. */
RT_API int rt_receive_tag(uint32_t tag, int timeout_ms, rt_msg **out);

/* rt_mailbox_len: messages waiting for the caller (a snapshot).
 * Returns the count or RT_ENOTPROC. */
RT_API int rt_mailbox_len(void);

#endif
