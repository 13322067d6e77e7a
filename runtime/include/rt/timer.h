/* rt/timer.h: timers that send messages. Millisecond resolution; a timer
 * never fires early. */
#ifndef RT_TIMER_H
#define RT_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include <rt/export.h>
#include <rt/proc.h>

/* A timer handle (never 0). */
typedef uint64_t rt_timer;

/* rt_send_after: after `ms` milliseconds send `to` a copy of `size` bytes at
 * `data` with `tag`, as from the caller. The payload is copied now. Stores
 * the timer in *out (may be NULL). Returns 0, -EINVAL (negative ms, bad tag,
 * data NULL with size > 0), -EMSGSIZE (size > RT_MSG_MAX_SIZE), -ENOMEM,
 * RT_ENORUNTIME. If `to` is gone when the timer fires, nothing is sent.
 * Any thread. */
RT_API int rt_send_after(rt_pid to, int ms, uint32_t tag, const void *data, size_t size,
                         rt_timer *out);

/* rt_cancel_timer: cancel a timer. Returns 0 if it had not fired (its
 * message will never be sent), -ENOENT if it had fired or was cancelled
 * already, -EINVAL for 0. Any thread. */
RT_API int rt_cancel_timer(rt_timer t);

/* rt_now_ms: the runtime's monotonic clock, in milliseconds. Any thread. */
RT_API int64_t rt_now_ms(void);

#endif
