/* rt/sup.h: supervisors with OTP semantics.
 *
 * A supervisor is a process that starts children from child specs, links to
 * them, traps exits, and restarts them when they end, following its
 * strategy:
 *  - RT_ONE_FOR_ONE: only the child that ended is restarted;
 *  - RT_ONE_FOR_ALL: all other children are stopped (in reverse start order),
 *    then all are started again (in order);
 *  - RT_REST_FOR_ONE: the children started after it are stopped (in reverse
 *    order), then it and they are started again (in order);
 *  - RT_SIMPLE_ONE_FOR_ONE: one spec, and children of it started on demand
 *    with rt_sup_start_child() and an argument each; restarted one for one.
 * and each child's restart type:
 *  - RT_PERMANENT: always restarted;
 *  - RT_TRANSIENT: restarted only if it ended abnormally (a reason other than
 *    RT_EXIT_NORMAL and RT_EXIT_SHUTDOWN);
 *  - RT_TEMPORARY: never restarted (and forgotten when it ends).
 * More than `intensity` restarts within `period_ms` make the supervisor stop
 * all its children and end with RT_EXIT_SHUTDOWN, which its own supervisor
 * then sees, as in OTP.
 *
 * Stopping a child (shutdown): RT_SHUTDOWN_BRUTAL kills it at once;
 * a positive time sends the exit signal RT_EXIT_SHUTDOWN and kills the
 * child if it has not ended within that many milliseconds;
 * RT_SHUTDOWN_INFINITY waits for as long as it takes (the default for
 * children that are supervisors). Children are started in order and stopped
 * in reverse order; the children of a simple_one_for_one supervisor are
 * stopped all at once. A supervisor ends (stopping its children first) when
 * its parent (the process that started it) ends or sends it an exit signal,
 * when an exit signal comes from outside any process (rt_exit called from a
 * thread, or rt_stop), or on rt_exit(sup, RT_EXIT_KILL); as in OTP, exit
 * signals from other processes that are not its children are ignored.
 *
 * Deliberate differences from OTP's supervisor:
 *  - a child is started by a C function that returns its pid; the
 *    supervisor links to the pid it gets (spawning with opts.link is fine:
 *    links are idempotent);
 *  - a start function that returns an error fails the supervisor's start
 *    (or the restart, which then counts toward intensity and is retried);
 *    OTP's `ignore` is start returning 0 with *out = RT_PID_NONE: the child
 *    is kept as "not running" (and, as in OTP, simple_one_for_one forgets it);
 *  - ids are strings of up to RT_NAME_MAX bytes; for simple_one_for_one
 *    children, functions taking an id take the child's pid instead
 *    (rt_sup_terminate_child_pid);
 *  - OTP 24's significant children and auto_shutdown are left out: a
 *    supervisor ends only as described above;
 *  - a supervisor is a stackful process (DESIGN.md wants callback actors
 *    for the runtime's own processes; supervisors are few, and their
 *    shutdown protocol is much clearer as straight-line code).
 *
 * All functions below except rt_sup_start are requests to the supervisor
 * (rt_call): from a stackful process or a non-scheduler thread, not from a
 * callback actor (RT_ENOTPROC). A dead supervisor gives -ESRCH or
 * RT_ECALLDOWN.
 */
#ifndef RT_SUP_H
#define RT_SUP_H

#include <stddef.h>

#include <rt/export.h>
#include <rt/proc.h>

typedef enum rt_strategy {
    RT_ONE_FOR_ONE = 0,
    RT_ONE_FOR_ALL,
    RT_REST_FOR_ONE,
    RT_SIMPLE_ONE_FOR_ONE,
} rt_strategy;

typedef enum rt_restart {
    RT_PERMANENT = 0,
    RT_TRANSIENT,
    RT_TEMPORARY,
} rt_restart;

typedef enum rt_child_type {
    RT_WORKER = 0,
    RT_SUPERVISOR,
} rt_child_type;

#define RT_SHUTDOWN_BRUTAL   0
#define RT_SHUTDOWN_INFINITY (-1)

/* A child spec. Zero-initialise, then set what you need. */
typedef struct rt_child_spec {
    const char *id; /* unique among the supervisor's children; copied */
    /* Starts the child, in the supervisor process (rt_self() is the
     * supervisor), and stores its pid in *out. Returns 0 or an error.
     * For simple_one_for_one, `arg` is the argument of rt_sup_start_child;
     * otherwise it is the spec's `arg`. */
    int (*start)(void *arg, rt_pid *out);
    void *arg;
    rt_restart restart;
    /* RT_SHUTDOWN_BRUTAL (0), a time in ms (> 0) or RT_SHUTDOWN_INFINITY.
     * Note that a zeroed spec therefore means brutal kill for a worker;
     * for a child of type RT_SUPERVISOR a zero means infinity, as OTP's
     * default. */
    int shutdown_ms;
    rt_child_type type;
} rt_child_spec;

/* A supervisor's flags. A zeroed struct is one_for_one, intensity 1,
 * period 5000 ms (OTP's defaults). */
typedef struct rt_sup_flags {
    rt_strategy strategy;
    int intensity; /* 0 with period 0: the default 1; -1: no restarts allowed */
    int period_ms; /* 0: 5000 */
} rt_sup_flags;

/* rt_sup_start: start a supervisor and its children (in order) and return
 * once all are started: stores its pid in *out. Called from a process, the
 * supervisor is linked to the caller (OTP's start_link): the caller is its
 * parent. From a non-scheduler thread the supervisor has no parent. `specs`
 * and the strings in them are copied. For simple_one_for_one, `specs` holds
 * exactly one spec (the template) and no child is started now.
 * Returns 0; the error of the first child that failed to start (children
 * already started are stopped, in reverse order); -EINVAL for bad flags or
 * specs (NULL start, duplicate or bad id, bad shutdown); -ENOMEM; the
 * errors of rt_spawn. Not from a callback actor (RT_ENOTPROC). */
RT_API int rt_sup_start(const rt_sup_flags *flags, const rt_child_spec *specs, size_t nspecs,
                        rt_pid *out);

/* rt_sup_root: the runtime's root supervisor (one_for_one, intensity 10 in
 * 10 s), started on first use and stopped, with its tree in order, first
 * thing by rt_stop. Add children with rt_sup_add_child. RT_PID_NONE when the
 * runtime is not running or the supervisor could not start. Any thread. */
RT_API rt_pid rt_sup_root(void);

/* rt_sup_add_child: add a spec to a running supervisor and start its child
 * (OTP's start_child with a spec). Stores the pid in *child (may be NULL).
 * Returns 0; -EEXIST for an id in use; -EINVAL (or simple_one_for_one:
 * use rt_sup_start_child); the start function's error (the spec is then
 * not kept). */
RT_API int rt_sup_add_child(rt_pid sup, const rt_child_spec *spec, rt_pid *child);

/* rt_sup_start_child: simple_one_for_one only: start a new child of the
 * template with `arg`. Returns 0, -EINVAL for another strategy, the start
 * function's error. */
RT_API int rt_sup_start_child(rt_pid sup, void *arg, rt_pid *child);

/* rt_sup_terminate_child: stop the child `id` per its shutdown; its spec
 * stays (restart it with rt_sup_restart_child) unless it is temporary.
 * Returns 0, -ENOENT. */
RT_API int rt_sup_terminate_child(rt_pid sup, const char *id);

/* rt_sup_terminate_child_pid: simple_one_for_one: stop the child `pid`.
 * Returns 0, -ENOENT. */
RT_API int rt_sup_terminate_child_pid(rt_pid sup, rt_pid pid);

/* rt_sup_restart_child: start again a child that was terminated.
 * Returns 0 and the pid in *child, -ENOENT, -EBUSY if it is running, the
 * start error. */
RT_API int rt_sup_restart_child(rt_pid sup, const char *id, rt_pid *child);

/* rt_sup_delete_child: forget the spec of a terminated child.
 * Returns 0, -ENOENT, -EBUSY if it is running. */
RT_API int rt_sup_delete_child(rt_pid sup, const char *id);

typedef struct rt_sup_child_info {
    char id[RT_NAME_MAX + 1]; /* "" for simple_one_for_one children */
    rt_pid pid;               /* RT_PID_NONE when not running */
    rt_child_type type;
    rt_restart restart;
} rt_sup_child_info;

/* rt_sup_which_children: fill up to `cap` entries of `out`, in start order.
 * Returns the number of children (which may exceed cap), or an error. */
RT_API int rt_sup_which_children(rt_pid sup, rt_sup_child_info *out, size_t cap);

typedef struct rt_sup_counts {
    int specs;       /* child specs (simple_one_for_one: 1) */
    int active;      /* running children */
    int supervisors; /* children of type supervisor */
    int workers;
    unsigned long restarts; /* restarts since the supervisor started */
} rt_sup_counts;

/* rt_sup_count_children: counts, in *out. Returns 0 or an error. */
RT_API int rt_sup_count_children(rt_pid sup, rt_sup_counts *out);

#endif
