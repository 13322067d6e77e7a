/* pool.c: fixed-size blocks for messages and processes.
 *
 * Each scheduler keeps a free list per size class and takes or returns
 * batches from a global depot; threads that are not schedulers go to the
 * depot directly (under its lock). Blocks come from 256 KiB slabs, which go
 * back to the system only when the runtime stops. A block may be freed on a
 * thread other than the one that allocated it: it simply joins that
 * thread's cache, and caches past their limit hand batches back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

static const uint32_t class_size[POOL_NCLASS] = {32,  48,  64,  96,   128,  160,  192,
                                                 256, 384, 512, 1024, 2048, 3072, 4096};

#define SLAB_SIZE     (256u * 1024u)
#define PAGE_SIZE_MIN 4096u
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define BATCH     32u
#define CACHE_MAX (4u * BATCH)

struct slab {
    struct slab *next;
};

/* A batch in the depot: the blocks are linked through their first word; the
 * second word of the first block links batches. */
struct depot {
    pthread_mutex_t lock;
    void *batches; /* full batches of BATCH blocks */
    void *loose;   /* single blocks (from non-scheduler threads) */
    uint32_t nloose;
    char *bump; /* carving position in the newest slab */
    char *bump_end;
} __attribute__((aligned(64)));

static struct depot depot[POOL_NCLASS];
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slab *slabs;

static inline void *next_of(void *b)
{
    void *n;
    memcpy(&n, b, sizeof n);
    return n;
}
static inline void set_next(void *b, void *n)
{
    memcpy(b, &n, sizeof n);
}
static inline void *batch_next(void *b)
{
    void *n;
    memcpy(&n, (char *)b + sizeof(void *), sizeof n);
    return n;
}
static inline void set_batch_next(void *b, void *n)
{
    memcpy((char *)b + sizeof(void *), &n, sizeof n);
}

/* The class of each size in 16-byte steps (every class size is a multiple
 * of 16): one load per message instead of a search. */
static uint8_t class_of16[POOL_MAX_BLOCK / 16 + 1];

static void class_table_init(void)
{
    unsigned c = 0;
    for (unsigned i = 0; i <= POOL_MAX_BLOCK / 16; i++) {
        while (class_size[c] < i * 16)
            c++;
        class_of16[i] = (uint8_t)c;
    }
}

int rt__pool_init(void)
{
    /* adaptive: the lock is held for a few pointer moves, so a scheduler
     * that finds it taken spins a little before it sleeps in the kernel
     * (a plain mutex put schedulers that free each other's blocks into
     * futex calls: about 10% of one's time in fork-join throughput) */
    class_table_init();
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (unsigned i = 0; i < POOL_NCLASS; i++) {
        memset(&depot[i], 0, sizeof depot[i]);
        pthread_mutex_init(&depot[i].lock, &a);
    }
    pthread_mutexattr_destroy(&a);
    return 0;
}

void rt__pool_fini(void)
{
    for (unsigned i = 0; i < POOL_NCLASS; i++)
        pthread_mutex_destroy(&depot[i].lock);
    pthread_mutex_lock(&slab_lock);
    while (slabs) {
        struct slab *s = slabs;
        slabs = s->next;
        free(s);
    }
    pthread_mutex_unlock(&slab_lock);
}

unsigned rt__pool_class(size_t size)
{
    if (size > POOL_MAX_BLOCK)
        return POOL_CLASS_MALLOC;
    return class_of16[(size + 15) / 16];
}

/* Carve one block from the class's slab, or a new slab. Depot lock held. */
static void *carve(struct depot *d, unsigned cls)
{
    size_t sz = class_size[cls];
    if (d->bump == NULL || d->bump + sz > d->bump_end) {
        /* a page-aligned slab; the header sits in the first 64 bytes. Its
         * pages are made present at once (one call instead of a fault per
         * 4 KiB page as the blocks are carved: skynet, 1M actors on one
         * scheduler, a quarter of whose time was page faults, 249 -> 240
         * ms, medians of 5 alternating runs); a kernel without
         * MADV_POPULATE_WRITE (before 5.14) faults them in as before */
        struct slab *s = aligned_alloc(PAGE_SIZE_MIN, SLAB_SIZE);
        if (s == NULL)
            return NULL;
        (void)madvise(s, SLAB_SIZE, MADV_POPULATE_WRITE);
        pthread_mutex_lock(&slab_lock);
        s->next = slabs;
        slabs = s;
        pthread_mutex_unlock(&slab_lock);
        d->bump = (char *)s + 64;
        d->bump_end = (char *)s + SLAB_SIZE;
    }
    void *b = d->bump;
    d->bump += sz;
    return b;
}

/* Fill the empty cache `c` with up to BATCH blocks. */
static void refill(struct pool_cache *c, unsigned cls)
{
    struct depot *d = &depot[cls];
    pthread_mutex_lock(&d->lock);
    if (d->batches) {
        /* the batch is a chain of BATCH blocks ending in NULL: it becomes
         * the cache as it is (walking it to its end, under the lock, was a
         * cache miss a block on memory another CPU had just freed) */
        void *b = d->batches;
        d->batches = batch_next(b);
        c->free = b;
        c->n = BATCH;
    } else if (d->loose) {
        while (d->loose && c->n < BATCH) {
            void *b = d->loose;
            d->loose = next_of(b);
            d->nloose--;
            set_next(b, c->free);
            c->free = b;
            c->n++;
        }
    } else {
        for (unsigned i = 0; i < BATCH; i++) {
            void *b = carve(d, cls);
            if (b == NULL)
                break;
            set_next(b, c->free);
            c->free = b;
            c->n++;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* Return one batch of BATCH blocks from `c` to the depot. */
static void spill(struct pool_cache *c, unsigned cls)
{
    void *first = c->free, *last = first;
    for (unsigned i = 1; i < BATCH; i++)
        last = next_of(last);
    c->free = next_of(last);
    c->n -= BATCH;
    set_next(last, NULL);
    struct depot *d = &depot[cls];
    pthread_mutex_lock(&d->lock);
    set_batch_next(first, d->batches);
    d->batches = first;
    pthread_mutex_unlock(&d->lock);
}

void *rt__pool_alloc(unsigned cls)
{
    return rt__pool_alloc_on(rt__sched_self(), cls);
}

void *rt__pool_alloc_on(struct sched *s, unsigned cls)
{
    if (cls == POOL_CLASS_MALLOC)
        return NULL;
#ifdef RT_ASAN
    /* under AddressSanitizer every block is its own allocation, so a use
     * after free or an overflow of a message or process is reported */
    (void)s;
    return malloc(class_size[cls]);
#endif
    if (s == NULL) {
        struct depot *d = &depot[cls];
        pthread_mutex_lock(&d->lock);
        void *b;
        if (d->loose) {
            b = d->loose;
            d->loose = next_of(b);
            d->nloose--;
        } else if (d->batches) {
            b = d->batches;
            void *rest = next_of(b);
            d->batches = batch_next(b);
            /* the remaining BATCH-1 blocks become loose */
            while (rest) {
                void *n = next_of(rest);
                set_next(rest, d->loose);
                d->loose = rest;
                d->nloose++;
                rest = n;
            }
        } else {
            b = carve(d, cls);
        }
        pthread_mutex_unlock(&d->lock);
        return b;
    }
    struct pool_cache *c = &s->pool[cls];
    if (unlikely(c->free == NULL)) {
        c->n = 0;
        refill(c, cls);
        if (c->free == NULL)
            return NULL;
    }
    void *b = c->free;
    c->free = next_of(b);
    c->n--;
    return b;
}

void rt__pool_free(void *b, unsigned cls)
{
    rt__pool_free_on(rt__sched_self(), b, cls);
}

void rt__pool_free_on(struct sched *s, void *b, unsigned cls)
{
#ifdef RT_ASAN
    (void)s;
    free(b);
    return;
#endif
    if (s == NULL) {
        struct depot *d = &depot[cls];
        pthread_mutex_lock(&d->lock);
        set_next(b, d->loose);
        d->loose = b;
        d->nloose++;
        pthread_mutex_unlock(&d->lock);
        return;
    }
    struct pool_cache *c = &s->pool[cls];
    set_next(b, c->free);
    c->free = b;
    if (++c->n > CACHE_MAX)
        spill(c, cls);
}

/* Hand everything in `caches` back to the depot (a scheduler stopping). */
void rt__pool_flush(struct pool_cache *caches)
{
    for (unsigned cls = 0; cls < POOL_NCLASS; cls++) {
        struct pool_cache *c = &caches[cls];
        struct depot *d = &depot[cls];
        pthread_mutex_lock(&d->lock);
        while (c->free) {
            void *b = c->free;
            c->free = next_of(b);
            set_next(b, d->loose);
            d->loose = b;
            d->nloose++;
        }
        c->n = 0;
        pthread_mutex_unlock(&d->lock);
    }
}
