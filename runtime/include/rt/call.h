/* rt/call.h: request and reply, in the spirit of gen_server:call.
 *
 * rt_call sends a request to a process and waits for its reply, watching
 * the server with a monitor: if the server ends first, the call returns an
 * error instead of hanging. A reply that comes after the call gave up (a
 * timeout) is dropped by the runtime, never left in the caller's mailbox.
 * The server answers from its own code, callback actor or stackful, with
 * rt_reply(request, ...).
 */
#ifndef RT_CALL_H
#define RT_CALL_H

#include <stddef.h>
#include <stdint.h>

#include <rt/export.h>
#include <rt/msg.h>
#include <rt/proc.h>

/* The tag of a reply message. */
#define RT_MSG_REPLY 0xFFFF0003u

/* rt_call: send `server` a copy of `size` bytes at `req` with `tag` and
 * wait up to `timeout_ms` (RT_INFINITY: forever) for the reply, which is
 * stored in *reply (tag RT_MSG_REPLY, from the server; the caller owns it
 * and frees it with rt_msg_free). `reply` may be NULL to drop the reply.
 * Returns 0; -ESRCH if the server was not alive; RT_ECALLDOWN if it ended
 * before replying; -ETIMEDOUT; the errors of rt_send.
 * From a stackful process, or from a thread that is not a scheduler (the
 * call then runs in a short-lived helper process). Not from a callback
 * actor (it must not block): RT_ENOTPROC. */
RT_API int rt_call(rt_pid server, uint32_t tag, const void *req, size_t size, int timeout_ms,
                   rt_msg **reply);

/* rt_reply: answer the call that `request` belongs to with a copy of `size`
 * bytes at `data`. The request stays the caller's (free it as usual).
 * Returns 0, -EINVAL if `request` is not a call's request, -ESRCH if the
 * caller is gone (nothing to do then), -ENOMEM. Any process or thread. */
RT_API int rt_reply(const rt_msg *request, const void *data, size_t size);

/* rt_is_call: whether `msg` is a request made by rt_call. */
RT_API bool rt_is_call(const rt_msg *msg);

#endif
