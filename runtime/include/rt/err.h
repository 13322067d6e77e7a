/* rt/err.h: error codes and exit reasons.
 *
 * Every action in this library returns an int: 0 (or a count) on success, a
 * negative errno on failure, or one of the project codes below (all under
 * -4095, so they never collide with an errno). Exit reasons share the same
 * space: RT_EXIT_NORMAL is 0, the runtime's own reasons are project codes, and
 * a process may exit with any other int (a negative errno says "failed with
 * this error"; positive values are the application's own).
 *
 * One table (RT_ERRORS) feeds rt_strerror() and rt_errname().
 */
#ifndef RT_ERR_H
#define RT_ERR_H

#include <rt/export.h>

#define RT_ERRORS(X)                                                                               \
    X(RT_ENOTPROC, -5001, "not called from a process of the runtime")                              \
    X(RT_ENORUNTIME, -5002, "the runtime is not started")                                          \
    X(RT_ESTOPPING, -5003, "the runtime is stopping")                                              \
    X(RT_ECALLDOWN, -5004, "the called process ended before replying")                             \
    X(RT_EXIT_KILL, -5100, "kill (an untrappable exit signal)")                                    \
    X(RT_EXIT_KILLED, -5101, "killed")                                                             \
    X(RT_EXIT_SHUTDOWN, -5102, "shutdown")                                                         \
    X(RT_EXIT_NOPROC, -5103, "no such process")                                                    \
    X(RT_EXIT_STACK_OVERFLOW, -5104, "stack overflow")                                             \
    X(RT_EXIT_NOCONNECTION, -5105, "no connection")

enum rt_error {
#define RT_ERR_ENUM(name, value, text) name = value,
    RT_ERRORS(RT_ERR_ENUM)
#undef RT_ERR_ENUM
};

/* The exit reason of a process that finished its work (returned from its
 * function, or stopped itself with this reason). */
#define RT_EXIT_NORMAL 0

/* rt_strerror: a human-readable text for any code this library returns or any
 * exit reason: project codes, negative errnos ("Connection refused"), 0
 * ("normal") and application reasons ("exit reason 42"). The text is static or
 * thread-local; it stays valid until the calling thread calls it again.
 * Any thread. */
RT_API const char *rt_strerror(int code);

/* rt_errname: the symbolic name of a code ("RT_ENOTPROC", "ESRCH",
 * "RT_EXIT_NORMAL"), or NULL if it has none. Static string. Any thread. */
RT_API const char *rt_errname(int code);

#endif
