/* rt_micro.h: what the parts of bench/rt_micro share: rt_micro.c (the
 * driver and the classic workloads) and rt_savina.c (the Savina ones:
 * chameneos, big, fork-join create and throughput). A benchmark program's
 * private header, never installed. All of it is for the program's main
 * thread, except die(), which any thread may call. */
#ifndef RT_MICRO_H
#define RT_MICRO_H

#include <stdbool.h>

#include <rt/rt.h>

/* --quick: smaller sizes. */
extern bool quick;

/* Say what went wrong on stderr and exit 1 (a workload's result is wrong,
 * or the runtime failed it). */
void die(const char *what);

/* A row of the table (and of --csv): the runtime's figure `v` beside the
 * peer's `pv` measured in the same run, and their ratio; higher_better for
 * rates, false for costs (time, bytes), so that a ratio > 1 always means
 * the runtime did better. */
void report(const char *workload, const char *variant, double v, const char *unit, const char *peer,
            double pv, bool higher_better);

/* A row comparable with bench/peers' (--compare): workload,N sched,value,unit.
 * `workload` must be spelt as the Go and Erlang peers spell it. */
void compare(const char *workload, unsigned sched, double v, const char *unit);

/* Whether --scheds lets the variant on `scheds` schedulers run. */
bool scheds_wanted(unsigned scheds);

/* Start the runtime with `scheds` schedulers; stop it, and die unless it
 * stopped clean (no process or message left). */
void start(unsigned scheds);
void stop(void);

/* Run fn(arg) as a stackful process and wait for it; die unless it ended
 * normally. */
void run_main(void (*fn)(void *), void *arg);

/* The workloads of rt_savina.c; each runs its variants and reports them. */
void bench_chameneos(void);
void bench_big(void);
void bench_fjcreate(void);
void bench_fjthroughput(void);

#endif
