/* failpoint.h: faults made on purpose, for the tests of paths the kernel
 * here never takes (the kernel losing provided buffers, a ring it refuses
 * to a later scheduler, no queue entry for a cancel, a kernel older than
 * DEFER_TASKRUN).
 *
 * RT_FAILPOINTS, read by rt_start, is a comma-separated list of
 * name[@skip][:count]: the point passes `skip` times, then fails `count`
 * times (without a count: every time after); a name given twice keeps the
 * last. The counts start again at each rt_start and are the whole
 * program's, shared by its schedulers. An unknown name or a malformed or
 * empty entry fails rt_start with -EINVAL. The points are in every build:
 * RT_FAILPOINTS set where a program runs in earnest makes it fail there.
 * Without it each point costs one load of a flag that is never set. */
#ifndef RT_FAILPOINT_H
#define RT_FAILPOINT_H

#include <stdatomic.h>
#include <stdbool.h>

#include <rt/export.h>

enum rt_fp {
    RT_FP_URING_SETUP, /* io_uring_setup of a scheduler's ring: -ENOMEM */
    RT_FP_URING_DEFER, /* io_uring_setup with DEFER_TASKRUN: -EINVAL, as before Linux 6.1 */
    RT_FP_CANCEL_SQE,  /* io_uring: no queue entry for a cancel, even after a submit */
    RT_FP_BUF_LOSE,    /* io_uring: a provided buffer given back never reaches the
                          ring, though the runtime counts it back: the kernel has
                          lost it, as Linux 6.1.7's multishot recvmsg did (liburing
                          issue #778) */
    RT_FP_N
};

extern atomic_bool rt__fp_any;

int rt__fp_init(void); /* at rt_start: 0, or -EINVAL for a bad RT_FAILPOINTS */
bool rt__fp_fail_slow(enum rt_fp fp);

/* For the tests: how often the point `name` has failed since rt_start
 * (exported, though no public header has it; 0 for an unknown name). */
RT_API unsigned long rt__fp_hits(const char *name);

/* Should the point `fp` fail now? */
static inline bool rt__fp_fail(enum rt_fp fp)
{
    return atomic_load_explicit(&rt__fp_any, memory_order_relaxed) && rt__fp_fail_slow(fp);
}

#endif
