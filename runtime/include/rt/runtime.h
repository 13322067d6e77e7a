/* rt/runtime.h: starting and stopping the runtime.
 *
 * One runtime exists per OS process at a time (like one Erlang VM): the
 * functions of this library find it without being handed a pointer. It is
 * started with rt_start() and stopped with rt_stop(); it may be started again
 * afterwards.
 */
#ifndef RT_RUNTIME_H
#define RT_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rt/export.h>

/* Options for rt_start(). Zero-initialise, then set what you need; a zero
 * field means "the default". */
typedef struct rt_opts {
    /* Scheduler threads. 0: one per online CPU. At most RT_MAX_SCHEDULERS. */
    unsigned schedulers;
    /* Default stack size of a stackful process, in bytes (rounded up to
     * pages). 0: RT_DEFAULT_STACK_SIZE. */
    size_t stack_size;
    /* Messages a process handles per scheduling turn before others get the
     * CPU. 0: 1024 (at tens of ns a message, a turn stays in the tens of
     * microseconds; a small batch starves a busy receiver: with 64, four
     * senders into one counter ran 19x slower, bench/rt_micro fan-in). */
    unsigned batch;
    /* Microseconds an idle scheduler looks for work before it parks.
     * 0: 50 us; a negative value: never spin. */
    int spin_us;
    /* I/O backend (rt/io.h), one for every scheduler: RT_IO_AUTO (io_uring,
     * or epoll where the kernel refuses it: kernel.io_uring_disabled, a
     * seccomp filter, an old kernel), RT_IO_URING (rt_start fails with the
     * kernel's error, -EPERM where it is disabled), RT_IO_EPOLL. */
    int io;
    /* Provided receive buffers per scheduler (a power of 2, at most 32768;
     * 0: 512) and their size in bytes (0: 16384). */
    unsigned io_bufs;
    unsigned io_buf_size;
    /* Leave glibc's malloc as it is. Otherwise rt_start keeps freed memory
     * (M_TRIM_THRESHOLD 64 MiB, M_TOP_PAD 16 MiB, M_MMAP_THRESHOLD 4 MiB):
     * with glibc's defaults a thread's heap goes back to the kernel as soon
     * as 128 KiB of its top is free, and messages of tens of KiB, allocated
     * on one scheduler and freed on another, fault their pages in again on
     * every allocation (a 64 KiB TCP stream ran at 0.37 of a blocking
     * program for it, 0.57 without). It is left alone too when the
     * environment sets MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or
     * MALLOC_MMAP_THRESHOLD_. Process-wide, and kept after rt_stop. */
    bool malloc_as_is;
    /* Microseconds an io_uring scheduler may hold back its batch of
     * submissions, when it would otherwise hand it over at once. Meanwhile
     * the batch grows and data gathers in the sockets, so an io_uring_enter
     * takes more requests and a receive brings more than a segment: without
     * it a streaming server took its requests one per enter, echoed 64 B
     * messages in 72-byte pieces and ran at 0.87 of the epoll control
     * (bench/io_echo, 100 connections). It holds only a batch with a
     * receive in it, only while the kernel has been completing the
     * receives it is given at once (their data was there already: a stream,
     * a peer that keeps up; never for receives that wait, as in
     * request/response with one peer), and only while receives from held
     * batches bring a quarter more than the others (it tries both, one run
     * of hand-overs in eight). The cost: up to this long on each request
     * of a held batch. 0: 10 us; a negative value: never; at most 1000.
     * Needs Linux 6.1 (IORING_SETUP_DEFER_TASKRUN, to tell a receive done
     * at once from one that waited); never holds before. epoll has no
     * batch to hold (each operation is its own system call). */
    int io_hold_us;
} rt_opts;

#define RT_IO_AUTO  0
#define RT_IO_URING 1
#define RT_IO_EPOLL 2

#define RT_MAX_SCHEDULERS 64
#if defined(RT_SANITIZE_ADDRESS) || defined(RT_SANITIZE_THREAD)
#define RT_DEFAULT_STACK_SIZE (256u * 1024u)
#else
#define RT_DEFAULT_STACK_SIZE (64u * 1024u)
#endif
#define RT_MIN_STACK_SIZE (16u * 1024u)
#define RT_MAX_STACK_SIZE (256u * 1024u * 1024u)

/* Counters of what the runtime holds now. Live counts are exact once the
 * runtime is quiet; while processes run they are a snapshot. */
typedef struct rt_stats {
    unsigned schedulers;
    uint64_t procs_live;       /* processes not yet freed (any kind) */
    uint64_t procs_spawned;    /* since rt_start */
    uint64_t msgs_live;        /* messages allocated and not yet freed */
    uint64_t timers_live;      /* timers armed and not yet fired or cancelled */
    uint64_t stacks_cached;    /* stacks kept in pools for reuse */
    uint64_t stacks_unguarded; /* stacks without a guard page (vm.max_map_count reached) */
    uint64_t parks;            /* times a scheduler parked */
    uint64_t steals;           /* processes moved by work stealing */
    uint64_t io_syscalls;      /* system calls the I/O backend made (io_uring_enter,
                                  epoll_wait, recv...), for "syscalls per message" */
    uint64_t io_holds;         /* batches of submissions held back (rt_opts.io_hold_us) */
} rt_stats;

/* rt_start: start the runtime with its scheduler threads. `opts` may be NULL
 * (all defaults); it is read during the call only.
 * Returns 0, -EALREADY if a runtime is running, -EINVAL for a bad option,
 * -ENOMEM, or an error from thread creation. Call from a thread that is not a
 * scheduler (typically main). */
RT_API int rt_start(const rt_opts *opts);

/* rt_stop: stop the runtime. Every live process is sent the exit signal
 * RT_EXIT_SHUTDOWN, then, after `grace_ms` (negative: wait forever), killed;
 * the schedulers are joined and every pool returned to the system.
 * A stackful process that never reaches a receive, a sleep or a yield cannot
 * be stopped (C has no preemption): rt_stop then returns -ETIMEDOUT after
 * grace_ms plus one second and leaves the runtime running.
 * Fills `leaks` (may be NULL) with what was still held after the stop
 * (all zero for a clean stop). Returns 0, -ETIMEDOUT, RT_ENORUNTIME, or
 * -EDEADLK when called from a scheduler thread (a process cannot stop the
 * runtime it runs on; tell main to do it). */
RT_API int rt_stop(int grace_ms, rt_stats *leaks);

/* rt_stats_get: fill `out` with the current counters. Returns 0 or
 * RT_ENORUNTIME, -EINVAL for NULL. Any thread. */
RT_API int rt_stats_get(rt_stats *out);

/* rt_running: true between a successful rt_start and rt_stop. Any thread. */
RT_API bool rt_running(void);

/* rt_wait_idle: block the calling thread, which must not be a scheduler,
 * until no process is left, or `timeout_ms` passed (negative: forever).
 * Returns 0, -ETIMEDOUT, RT_ENORUNTIME, or -EDEADLK from a scheduler thread. */
RT_API int rt_wait_idle(int timeout_ms);

#endif
