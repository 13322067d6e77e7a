/* registry.c: names for processes (rt_register, rt_whereis).
 *
 * A chained hash table under one mutex: registering is rare, and lookups
 * are short. A name goes away with its process (rt__proc_terminate asks
 * when the process's `named` flag is set).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NBUCKETS 256u

struct regent {
    struct regent *next;
    rt_pid pid;
    char name[RT_NAME_MAX + 1];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct regent *buckets[NBUCKETS];

static unsigned hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h % NBUCKETS;
}

static void remove_pid(rt_pid pid);

static bool valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strnlen(name, RT_NAME_MAX + 1);
    return n >= 1 && n <= RT_NAME_MAX;
}

int rt__registry_init(void)
{
    return 0;
}

void rt__registry_fini(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < NBUCKETS; i++) {
        while (buckets[i]) {
            struct regent *e = buckets[i];
            buckets[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_unlock(&lock);
}

RT_API int rt_register(const char *name, rt_pid pid)
{
    if (!rt__running())
        return RT_ENORUNTIME;
    if (!valid(name))
        return -EINVAL;
    struct regent *e = malloc(sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    strcpy(e->name, name);
    e->pid = pid;
    unsigned b = hash(name);
    int rc = 0;
    pthread_mutex_lock(&lock);
    /* the reference keeps the process from being freed while we look at it;
     * it may still end meanwhile, and then removes its name after us */
    struct proc *p = rt__proc_get(pid);
    if (p == NULL) {
        rc = -ESRCH;
        goto out_unlock;
    }
    for (struct regent *x = buckets[b]; x; x = x->next)
        if (strcmp(x->name, name) == 0)
            rc = -EEXIST;
    if (rc == 0 && atomic_load_explicit(&p->named, memory_order_relaxed))
        rc = -EEXIST;
    if (rc == 0) {
        e->next = buckets[b];
        buckets[b] = e;
        e = NULL;
        /* seq_cst: a Dekker pair with rt__proc_terminate, which clears
         * ALIVE and then reads `named`: either it sees the flag and removes
         * the name, or we see it dead below and remove the name ourselves */
        atomic_store_explicit(&p->named, true, memory_order_seq_cst);
    }
    rt__proc_put(p);
out_unlock:
    pthread_mutex_unlock(&lock);
    free(e);
    if (rc == 0 && !rt__proc_alive(pid))
        remove_pid(pid);
    return rc;
}

RT_API int rt_unregister(const char *name)
{
    if (!valid(name))
        return -EINVAL;
    unsigned b = hash(name);
    pthread_mutex_lock(&lock);
    for (struct regent **pp = &buckets[b]; *pp; pp = &(*pp)->next) {
        struct regent *e = *pp;
        if (strcmp(e->name, name) == 0) {
            *pp = e->next;
            struct proc *p = rt__proc_get(e->pid);
            if (p) {
                atomic_store_explicit(&p->named, false, memory_order_relaxed);
                rt__proc_put(p);
            }
            pthread_mutex_unlock(&lock);
            free(e);
            return 0;
        }
    }
    pthread_mutex_unlock(&lock);
    return -ENOENT;
}

RT_API rt_pid rt_whereis(const char *name)
{
    if (!valid(name))
        return RT_PID_NONE;
    unsigned b = hash(name);
    rt_pid pid = RT_PID_NONE;
    pthread_mutex_lock(&lock);
    for (struct regent *e = buckets[b]; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            pid = e->pid;
    pthread_mutex_unlock(&lock);
    return pid;
}

void rt__registry_remove_pid(struct proc *p)
{
    remove_pid(proc_pid(p));
}

static void remove_pid(rt_pid pid)
{
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < NBUCKETS; i++) {
        for (struct regent **pp = &buckets[i]; *pp; pp = &(*pp)->next) {
            if (rt_pid_eq((*pp)->pid, pid)) {
                struct regent *e = *pp;
                *pp = e->next;
                free(e);
                pthread_mutex_unlock(&lock);
                return;
            }
        }
    }
    pthread_mutex_unlock(&lock);
}
