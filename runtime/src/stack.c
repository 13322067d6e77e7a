/* stack.c: stacks for stackful processes.
 *
 * A stack is one anonymous mapping with a PROT_NONE guard page below it, so
 * an overflow faults instead of corrupting a neighbour. Each guard splits
 * the mapping into two kernel VMAs; when guarded stacks would push the
 * process near vm.max_map_count, further stacks are made without a guard and
 * counted (rt_stats.stacks_unguarded), and a canary word at their bottom is
 * checked whenever the process gives up the CPU (guarded stacks have none:
 * writing it would make their lowest page resident).
 *
 * Stacks of the default size are kept in a per-scheduler pool for reuse.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* a killed process never unwinds its frames: their redzones stay poisoned
 * in the pooled stack and would trip the next process that uses it */
#define STACK_UNPOISON(st) ASAN_UNPOISON_MEMORY_REGION((st)->lo, (st)->size)
#else
#define STACK_UNPOISON(st) ((void)(st))
#endif

#define POOL_MAX 1024u
#define CANARY   0x5AFEC0DEDEADBEEFull

static size_t page;
static long guard_budget; /* guarded stacks we may still make */
static _Atomic long guarded_live;

int rt__stack_init(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    long max_maps = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &max_maps) != 1)
            max_maps = 65530;
        fclose(f);
    }
    /* two VMAs per guarded stack; leave room for everything else */
    guard_budget = (max_maps - 8192) / 2;
    if (guard_budget < 0)
        guard_budget = 0;
    atomic_store_explicit(&guarded_live, 0, memory_order_relaxed);
    return 0;
}

bool rt__stack_canary_ok(const struct stack *st)
{
    uint64_t v;
    memcpy(&v, st->lo, sizeof v);
    return v == CANARY;
}

static struct stack *stack_new(size_t size)
{
    size = (size + page - 1) & ~(page - 1);
    /* relaxed: a budget, not a synchronisation point */
    bool guard = atomic_fetch_add_explicit(&guarded_live, 1, memory_order_relaxed) < guard_budget;
    if (!guard)
        atomic_fetch_sub_explicit(&guarded_live, 1, memory_order_relaxed);
    size_t len = size + (guard ? page : 0);
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        goto out_unbudget;
    if (guard && mprotect(map, page, PROT_NONE) != 0) {
        /* the kernel refused another VMA: go on without a guard */
        munmap(map, len);
        atomic_fetch_sub_explicit(&guarded_live, 1, memory_order_relaxed);
        guard = false;
        len = size;
        map = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED)
            return NULL;
    }
    struct stack *st = malloc(sizeof *st);
    if (st == NULL) {
        munmap(map, len);
        goto out_unbudget;
    }
    st->map = map;
    st->map_len = len;
    st->lo = (char *)map + (guard ? page : 0);
    st->size = size;
    st->guarded = guard;
    st->next = NULL;
    if (!guard) {
        atomic_fetch_add_explicit(&rt__rt.stacks_unguarded, 1, memory_order_relaxed);
        /* only an unguarded stack needs the canary: writing it touches the
         * stack's lowest page, 4 KiB of resident memory per process */
        uint64_t c = CANARY;
        memcpy(st->lo, &c, sizeof c);
    }
    return st;
out_unbudget:
    if (guard)
        atomic_fetch_sub_explicit(&guarded_live, 1, memory_order_relaxed);
    return NULL;
}

static void stack_destroy(struct stack *st)
{
    if (st->guarded)
        atomic_fetch_sub_explicit(&guarded_live, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&rt__rt.stacks_unguarded, 1, memory_order_relaxed);
    munmap(st->map, st->map_len);
    free(st);
}

size_t rt__stack_round(size_t size)
{
    return (size + page - 1) & ~(page - 1);
}

struct stack *rt__stack_get(size_t size)
{
    struct sched *s = rt__sched_self();
    if (s && size == rt__rt.stack_size && s->stacks) {
        struct stack *st = s->stacks;
        s->stacks = st->next;
        atomic_store_explicit(&s->nstacks, s->nstacks - 1, memory_order_relaxed);
        STACK_UNPOISON(st);
        if (!st->guarded) {
            uint64_t c = CANARY;
            memcpy(st->lo, &c, sizeof c);
        }
        return st;
    }
    return stack_new(size);
}

void rt__stack_put(struct stack *st)
{
    struct sched *s = rt__sched_self();
    if (s && st->size == rt__rt.stack_size && s->nstacks < POOL_MAX &&
        atomic_load_explicit(&rt__rt.state, memory_order_relaxed) == RT_RUNNING) {
        st->next = s->stacks;
        s->stacks = st;
        atomic_store_explicit(&s->nstacks, s->nstacks + 1, memory_order_relaxed);
        return;
    }
    /* while the runtime stops, kept until its threads are joined: a munmap
     * with another scheduler thread alive interrupts that CPU to flush its
     * TLB, and the schedulers take the mapping lock in turn (stopping
     * 100,000 stackful processes took 2.8 s, nearly all of it in munmap).
     * A stop that times out leaves them there until the next stop */
    if (s && atomic_load_explicit(&rt__rt.state, memory_order_relaxed) == RT_STOPPING) {
        st->next = s->dead_stacks;
        s->dead_stacks = st;
        return;
    }
    stack_destroy(st);
}

static void destroy_all(struct stack **list)
{
    while (*list) {
        struct stack *st = *list;
        *list = st->next;
        stack_destroy(st);
    }
}

void rt__stack_flush(struct sched *s)
{
    destroy_all(&s->stacks);
    destroy_all(&s->dead_stacks);
    atomic_store_explicit(&s->nstacks, 0, memory_order_relaxed);
}
