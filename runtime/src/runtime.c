/* runtime.c: starting and stopping the runtime, counters, joins. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "failpoint.h"
#include "io.h"

struct runtime rt__rt;

struct joinent {
    struct joinent *next;
    rt_pid pid;
    int reason;
    bool done;
};

static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER; /* start/stop */

static void deadline_ts(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* See rt_opts.malloc_as_is. */
static void tune_malloc(void)
{
    if (getenv("MALLOC_TRIM_THRESHOLD_") || getenv("MALLOC_TOP_PAD_") ||
        getenv("MALLOC_MMAP_THRESHOLD_"))
        return; /* the program's (or its user's) choice */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    /* setting the trim threshold fixes the mmap threshold, which would
     * otherwise have grown with use: messages up to 4 MiB come from the
     * heaps, not a fresh mapping each */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

RT_API int rt_start(const rt_opts *opts)
{
    rt_opts o = {0};
    if (opts)
        o = *opts;
    if (o.schedulers > RT_MAX_SCHEDULERS)
        return -EINVAL;
    if (o.stack_size && (o.stack_size < RT_MIN_STACK_SIZE || o.stack_size > RT_MAX_STACK_SIZE))
        return -EINVAL;
    if (o.io < RT_IO_AUTO || o.io > RT_IO_EPOLL || o.io_bufs > 32768 ||
        (o.io_bufs & (o.io_bufs - 1)) || (o.io_buf_size && o.io_buf_size < 256) ||
        o.io_buf_size > (64u << 20) || o.io_hold_us > 1000)
        return -EINVAL;
    if (o.schedulers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.schedulers = n < 1 ? 1 : n > RT_MAX_SCHEDULERS ? RT_MAX_SCHEDULERS : (unsigned)n;
    }
    pthread_mutex_lock(&life_lock);
    if (atomic_load_explicit(&rt__rt.state, memory_order_acquire) != RT_STOPPED) {
        pthread_mutex_unlock(&life_lock);
        return -EALREADY;
    }
    if (rt__fp_init() < 0) {
        pthread_mutex_unlock(&life_lock);
        return -EINVAL;
    }
    memset(&rt__rt, 0, sizeof rt__rt);
    rt__stack_init();
    rt__rt.stack_size = rt__stack_round(o.stack_size ? o.stack_size : RT_DEFAULT_STACK_SIZE);
    rt__rt.batch = o.batch ? o.batch : 1024;
    rt__rt.io_kind = o.io;
    rt__rt.io_bufs = o.io_bufs ? o.io_bufs : 512;
    rt__rt.io_buf_size = o.io_buf_size ? o.io_buf_size : 16384;
    rt__rt.spin_ns = o.spin_us < 0 ? 0 : (int64_t)(o.spin_us ? o.spin_us : 50) * 1000;
    rt__rt.hold_ns = o.io_hold_us < 0 ? 0 : (int64_t)(o.io_hold_us ? o.io_hold_us : 10) * 1000;
    if (!o.malloc_as_is)
        tune_malloc();
    pthread_mutex_init(&rt__rt.gq_lock, NULL);
    pthread_mutex_init(&rt__rt.wait_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rt__rt.wait_cond, &ca);
    pthread_condattr_destroy(&ca);
    rt__pool_init();
    rt__proc_table_init();
    rt__epoch_init();
    rt__registry_init();
    /* release: everything above is visible to threads that see "running" */
    atomic_store_explicit(&rt__rt.state, RT_RUNNING, memory_order_release);
    int rc = rt__fault_install();
    if (rc == 0)
        rc = rt__sched_start(o.schedulers);
    if (rc < 0) {
        rt__fault_uninstall();
        atomic_store_explicit(&rt__rt.state, RT_STOPPED, memory_order_release);
        rt__epoch_fini();
        free(rt__rt.sched);
        rt__pool_fini();
        rt__proc_table_fini();
    }
    pthread_mutex_unlock(&life_lock);
    return rc;
}

RT_API bool rt_running(void)
{
    return atomic_load_explicit(&rt__rt.state, memory_order_acquire) == RT_RUNNING;
}

void rt__idle_check(void)
{
    pthread_mutex_lock(&rt__rt.wait_lock);
    pthread_cond_broadcast(&rt__rt.wait_cond);
    pthread_mutex_unlock(&rt__rt.wait_lock);
}

/* Wait until no process is left; false on timeout (negative: forever). */
static bool wait_no_procs(int timeout_ms)
{
    struct timespec ts;
    deadline_ts(&ts, timeout_ms < 0 ? 0 : timeout_ms);
    bool ok = true;
    pthread_mutex_lock(&rt__rt.wait_lock);
    while (atomic_load_explicit(&rt__rt.procs_live, memory_order_acquire) > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&rt__rt.wait_cond, &rt__rt.wait_lock);
        } else if (pthread_cond_timedwait(&rt__rt.wait_cond, &rt__rt.wait_lock, &ts) == ETIMEDOUT) {
            ok = atomic_load_explicit(&rt__rt.procs_live, memory_order_acquire) == 0;
            break;
        }
    }
    pthread_mutex_unlock(&rt__rt.wait_lock);
    return ok;
}

RT_API int rt_wait_idle(int timeout_ms)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (rt__sched_self())
        return -EDEADLK;
    return wait_no_procs(timeout_ms) ? 0 : -ETIMEDOUT;
}

static void sum_stats(rt_stats *st)
{
    memset(st, 0, sizeof *st);
    st->schedulers = rt__rt.nsched;
    uint64_t alloc = atomic_load_explicit(&rt__rt.msgs_alloc_ext, memory_order_relaxed);
    uint64_t freed = atomic_load_explicit(&rt__rt.msgs_free_ext, memory_order_relaxed);
    st->procs_spawned = atomic_load_explicit(&rt__rt.spawned_ext, memory_order_relaxed);
    for (unsigned i = 0; i < rt__rt.nsched; i++) {
        struct sched *s = &rt__rt.sched[i];
        alloc += atomic_load_explicit(&s->n_alloc, memory_order_relaxed);
        freed += atomic_load_explicit(&s->n_free, memory_order_relaxed);
        st->parks += atomic_load_explicit(&s->n_parks, memory_order_relaxed);
        st->steals += atomic_load_explicit(&s->n_steals, memory_order_relaxed);
        st->procs_spawned += atomic_load_explicit(&s->n_spawned, memory_order_relaxed);
        st->stacks_cached += atomic_load_explicit(&s->nstacks, memory_order_relaxed);
        if (s->io) {
            st->io_syscalls += rt__io_syscalls(s);
            st->io_holds += rt__io_holds(s);
        }
    }
    st->msgs_live = alloc - freed;
    /* the shared count holds the schedulers' credits too (proc.c) */
    int64_t live = (int64_t)atomic_load_explicit(&rt__rt.procs_live, memory_order_relaxed);
    for (unsigned i = 0; i < rt__rt.nsched; i++)
        live -= atomic_load_explicit(&rt__rt.sched[i].credits, memory_order_relaxed);
    st->procs_live = live > 0 ? (uint64_t)live : 0;
    st->timers_live = atomic_load_explicit(&rt__rt.timers_live, memory_order_relaxed);
    st->stacks_unguarded = atomic_load_explicit(&rt__rt.stacks_unguarded, memory_order_relaxed);
}

RT_API int rt_stats_get(rt_stats *out)
{
    if (out == NULL)
        return -EINVAL;
    if (!rt__running())
        return RT_ENORUNTIME;
    sum_stats(out);
    return 0;
}

RT_API int rt_stop(int grace_ms, rt_stats *leaks)
{
    if (rt__sched_self())
        return -EDEADLK;
    pthread_mutex_lock(&life_lock);
    int expect = RT_RUNNING;
    if (!atomic_compare_exchange_strong_explicit(&rt__rt.state, &expect, RT_STOPPING,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        pthread_mutex_unlock(&life_lock);
        return RT_ENORUNTIME;
    }
    /* the supervision tree first, in order; then whatever is left */
    rt__sup_stop_root(grace_ms);
    rt__proc_kill_all(RT_EXIT_SHUTDOWN);
    if (!wait_no_procs(grace_ms)) {
        rt__proc_kill_all(RT_EXIT_KILL);
        if (!wait_no_procs(1000)) {
            atomic_store_explicit(&rt__rt.state, RT_RUNNING, memory_order_release);
            pthread_mutex_unlock(&life_lock);
            return -ETIMEDOUT;
        }
    }
    rt__sched_stop(); /* joins the threads, frees their timers */
    rt__epoch_fini(); /* the ended processes still in limbo */
    rt__fault_uninstall();
    rt_stats st;
    sum_stats(&st);
    free(rt__rt.sched);
    rt__rt.sched = NULL;
    rt__rt.nsched = 0;
    while (rt__rt.joins) {
        struct joinent *j = rt__rt.joins;
        rt__rt.joins = j->next;
        free(j);
    }
    rt__registry_fini();
    rt__proc_table_fini();
    rt__pool_fini();
    pthread_cond_destroy(&rt__rt.wait_cond);
    pthread_mutex_destroy(&rt__rt.wait_lock);
    pthread_mutex_destroy(&rt__rt.gq_lock);
    free(rt__rt.gq_ring);
    rt__rt.gq_ring = NULL;
    rt__rt.gq_cap = rt__rt.gq_first = rt__rt.gq_n = 0;
    atomic_store_explicit(&rt__rt.state, RT_STOPPED, memory_order_release);
    pthread_mutex_unlock(&life_lock);
    if (leaks)
        *leaks = st;
    return 0;
}

/* ---- joins -------------------------------------------------------------------- */

int rt__join_register(rt_pid pid)
{
    struct joinent *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -ENOMEM;
    j->pid = pid;
    pthread_mutex_lock(&rt__rt.wait_lock);
    j->next = rt__rt.joins;
    rt__rt.joins = j;
    pthread_mutex_unlock(&rt__rt.wait_lock);
    return 0;
}

void rt__join_record(rt_pid pid, int reason)
{
    pthread_mutex_lock(&rt__rt.wait_lock);
    for (struct joinent *j = rt__rt.joins; j; j = j->next) {
        if (rt_pid_eq(j->pid, pid)) {
            j->reason = reason;
            j->done = true;
            pthread_cond_broadcast(&rt__rt.wait_cond);
            break;
        }
    }
    pthread_mutex_unlock(&rt__rt.wait_lock);
}

RT_API int rt_join(rt_pid pid, int timeout_ms, int *reason)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (rt__sched_self())
        return -EDEADLK;
    struct timespec ts;
    deadline_ts(&ts, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&rt__rt.wait_lock);
    for (;;) {
        struct joinent **pp = &rt__rt.joins, *j = NULL;
        for (; *pp; pp = &(*pp)->next)
            if (rt_pid_eq((*pp)->pid, pid)) {
                j = *pp;
                break;
            }
        if (j == NULL) {
            rc = -ESRCH;
            break;
        }
        if (j->done) {
            if (reason)
                *reason = j->reason;
            *pp = j->next;
            free(j);
            break;
        }
        if (timeout_ms < 0)
            pthread_cond_wait(&rt__rt.wait_cond, &rt__rt.wait_lock);
        else if (pthread_cond_timedwait(&rt__rt.wait_cond, &rt__rt.wait_lock, &ts) == ETIMEDOUT &&
                 !j->done) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&rt__rt.wait_lock);
    return rc;
}
