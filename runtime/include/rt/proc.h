/* rt/proc.h: processes, links, monitors and the name registry.
 *
 * A process is either
 *  - stackful: `void fn(void *arg)` on a stack of its own (mmap'd, with a
 *    guard page, pooled), which may block in rt_receive(), rt_sleep() and the
 *    I/O calls without blocking its scheduler thread; or
 *  - a callback actor: rt_actor_ops callbacks run to completion, one message
 *    at a time, with no stack of its own (a few hundred bytes per actor).
 * Both share one mailbox design and one scheduler.
 *
 * A process is named by an rt_pid, an id with a generation: once a process
 * is gone its pid stays dead forever (calls taking it return -ESRCH), even
 * after its slot is reused by a new process.
 *
 * Exit signals and monitors follow Erlang:
 *  - a process that ends sends an exit signal with its reason to every linked
 *    process; a linked process that does not trap exits dies with the same
 *    reason, unless the reason is RT_EXIT_NORMAL (ignored); one that traps
 *    exits receives it as an RT_MSG_EXIT message instead;
 *  - rt_exit(pid, RT_EXIT_KILL) kills even a trapping process; it dies with
 *    RT_EXIT_KILLED (which links propagate, trappably);
 *  - a monitor delivers one RT_MSG_DOWN message when the target ends, with
 *    its reason, or RT_EXIT_NOPROC if it was already gone.
 * Signals between one pair of processes arrive in the order they were sent,
 * messages included. A process acts on signals when it next receives (or, for
 * a callback actor, between messages): C has no preemption, so a stackful
 * process computing in a loop is not stopped until it receives or yields.
 */
#ifndef RT_PROC_H
#define RT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rt/export.h>

/* A process id. Compare with rt_pid_eq; RT_PID_NONE (all zero) is never a
 * process. The value is opaque: index and generation. */
typedef struct rt_pid {
    uint64_t id;
} rt_pid;

#define RT_PID_NONE ((rt_pid){0})

static inline bool rt_pid_eq(rt_pid a, rt_pid b)
{
    return a.id == b.id;
}
static inline bool rt_pid_is_none(rt_pid p)
{
    return p.id == 0;
}

/* A monitor reference (never 0). */
typedef uint64_t rt_ref;

struct rt_msg;

/* Callbacks of a callback actor. `state_size` bytes of zeroed state live
 * inside the process and are handed to every callback. */
typedef struct rt_actor_ops {
    size_t state_size;
    /* Runs inside rt_spawn_actor(), on the caller's thread, with rt_self()
     * naming the new actor. Returns 0, or a nonzero error that makes
     * rt_spawn_actor() fail with it (the actor then never existed: no link or
     * monitor fires, terminate is not called). May be NULL. */
    int (*init)(void *state, void *arg);
    /* Handles one message. The runtime frees `msg` after handle returns,
     * unless handle passed it on with rt_forward(). To stop, call
     * rt_exit(rt_self(), reason): the actor ends after handle returns. */
    void (*handle)(void *state, struct rt_msg *msg);
    /* Runs once when the actor ends, whatever the reason (kill included),
     * before links and monitors are told. It must not block. May be NULL. */
    void (*terminate)(void *state, int reason);
} rt_actor_ops;

/* Options for a spawn. Zero-initialise; zero fields are defaults. */
typedef struct rt_spawn_opts {
    size_t stack_size; /* stackful only; 0 = the runtime's default */
    bool link;         /* link the new process to the caller, atomically */
    bool trap_exits;   /* start with trap_exits on */
    bool joinable;     /* keep the exit reason for rt_join() */
    int sched;         /* scheduler index; 0 = beside the caller (or round
                          robin from a non-process thread); k > 0 = k-1 */
} rt_spawn_opts;

/* rt_spawn: start a stackful process running fn(arg). `opts` may be NULL.
 * On success stores the new pid in *out (may be NULL) and returns 0.
 * Errors: RT_ENORUNTIME, RT_ESTOPPING, -EINVAL (fn NULL, bad stack size or
 * scheduler), -ENOMEM, RT_ENOTPROC if opts->link is set outside a process.
 * `arg` is handed over as is; the runtime never touches it.
 * Any thread. */
RT_API int rt_spawn(void (*fn)(void *arg), void *arg, const rt_spawn_opts *opts, rt_pid *out);

/* rt_spawn_actor: start a callback actor; its init runs before this returns.
 * `ops` must stay valid until the actor has ended (usually static const).
 * Errors as rt_spawn, plus init's own error. Any thread. */
RT_API int rt_spawn_actor(const rt_actor_ops *ops, void *arg, const rt_spawn_opts *opts,
                          rt_pid *out);

/* rt_self: the calling process, or RT_PID_NONE outside a process. */
RT_API rt_pid rt_self(void);

/* rt_alive: whether `pid` names a process that has not ended. Any thread. */
RT_API bool rt_alive(rt_pid pid);

/* rt_sched_of: the index of the scheduler a process last ran on (a hint:
 * it may move), for rt_spawn_opts.sched = index + 1, to start a process
 * beside the one it will talk to. Returns the index, or -ESRCH. Any
 * thread. */
RT_API int rt_sched_of(rt_pid pid);

/* rt_exit: send the exit signal `reason` to `pid`, as from the caller (or
 * from no process when called outside one). Erlang's exit/2:
 *  - RT_EXIT_KILL: the target dies with RT_EXIT_KILLED, trapping or not;
 *  - RT_EXIT_NORMAL: ignored unless the target traps exits (it then gets an
 *    RT_MSG_EXIT message) or the target is the caller (it ends normally);
 *  - anything else: the target dies with that reason unless it traps exits.
 * When `pid` is the caller: a stackful process does not return from this
 * call; a callback actor ends when its handle returns.
 * Returns 0, -ESRCH for a dead pid, RT_ENORUNTIME. Any thread. */
RT_API int rt_exit(rt_pid pid, int reason);

/* rt_exit_self: end the calling stackful process now with `reason`. Does not
 * return. Outside a stackful process it returns RT_ENOTPROC (for a callback
 * actor use rt_exit(rt_self(), reason)). */
RT_API int rt_exit_self(int reason);

/* rt_trap_exits: turn the caller's trapping of exit signals on or off; when
 * on, exit signals arrive as RT_MSG_EXIT messages. Returns the previous
 * setting (0 or 1), or RT_ENOTPROC. */
RT_API int rt_trap_exits(bool on);

/* rt_link: link the caller and `pid` (idempotent). Returns 0, -ESRCH if `pid`
 * is already gone (nothing is linked), -EINVAL for the caller itself,
 * RT_ENOTPROC. If `pid` ends while the link is being made, the caller gets
 * the exit signal RT_EXIT_NOPROC, as in Erlang. */
RT_API int rt_link(rt_pid pid);

/* rt_unlink: remove the link between the caller and `pid` (no error if there
 * was none). An exit signal already on its way may still arrive.
 * Returns 0, RT_ENOTPROC. */
RT_API int rt_unlink(rt_pid pid);

/* rt_monitor: monitor `pid`; one RT_MSG_DOWN message with the returned
 * reference follows when it ends (reason RT_EXIT_NOPROC if it already had).
 * Returns 0 and stores the reference in *ref, or RT_ENOTPROC, -EINVAL. */
RT_API int rt_monitor(rt_pid pid, rt_ref *ref);

/* rt_demonitor: cancel a monitor. No RT_MSG_DOWN for it is received after
 * this returns, even one already queued (Erlang's demonitor with flush).
 * Returns 0, -ENOENT for an unknown reference, RT_ENOTPROC. */
RT_API int rt_demonitor(rt_ref ref);

/* rt_register: give `pid` the name `name` (copied; 1..RT_NAME_MAX bytes).
 * Returns 0, -EEXIST if the name is taken or the process already has a name,
 * -ESRCH for a dead pid, -EINVAL for a bad name, RT_ENORUNTIME. A name is
 * freed when its process ends. Any thread. */
#define RT_NAME_MAX 63
RT_API int rt_register(const char *name, rt_pid pid);

/* rt_unregister: free `name`. Returns 0, -ENOENT, -EINVAL. Any thread. */
RT_API int rt_unregister(const char *name);

/* rt_whereis: the process registered as `name`, or RT_PID_NONE. Any thread. */
RT_API rt_pid rt_whereis(const char *name);

/* rt_at_exit: run fn(arg) when the calling process ends, whatever the
 * reason, kill included (C cannot unwind a killed process's stack: this is
 * where it frees what it holds). Handlers run last registered first, on
 * the scheduler's stack, before links and monitors are told; a stackful
 * process's stack is still mapped then, so `arg` may point into it. They
 * must not block or receive. When the process still had I/O in flight into
 * or out of its own memory (rt/io.h: rt_io_send, rt_io_recv into a buffer,
 * ...), the runtime cancels it first and the handlers run only once the
 * kernel is done with that memory, so a handler may free such a buffer:
 * then they run later, possibly on another scheduler thread and after links
 * and monitors were told. The process's stack is kept until then too. Returns 0, -ENOMEM, -EINVAL
 * (fn NULL), RT_ENOTPROC. */
RT_API int rt_at_exit(void (*fn)(void *arg), void *arg);

/* rt_yield: let other processes run; the caller is resumed later.
 * Returns 0, RT_ENOTPROC outside a stackful process. */
RT_API int rt_yield(void);

/* rt_sleep: suspend the calling stackful process for `ms` milliseconds.
 * Exit signals still act during the sleep. Returns 0, -EINVAL for a negative
 * time, RT_ENOTPROC. */
RT_API int rt_sleep(int ms);

/* rt_join: block the calling thread, which must not be a scheduler thread,
 * until `pid`, spawned with opts.joinable, has ended, and store its exit
 * reason in *reason (may be NULL). A pid is joined once; until then its exit
 * reason is kept. Returns 0, -ETIMEDOUT after `timeout_ms` (negative:
 * forever; the pid stays joinable), -ESRCH for a pid that is not (or no
 * longer) joinable, -EDEADLK on a scheduler thread, RT_ENORUNTIME. */
RT_API int rt_join(rt_pid pid, int timeout_ms, int *reason);

#endif
