/* failpoint.c: RT_FAILPOINTS (failpoint.h). */
#include "failpoint.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

atomic_bool rt__fp_any;

static const char *const names[RT_FP_N] = {
    [RT_FP_URING_SETUP] = "uring_setup",
    [RT_FP_URING_DEFER] = "uring_defer",
    [RT_FP_CANCEL_SQE] = "cancel_sqe",
    [RT_FP_BUF_LOSE] = "buf_lose",
};

/* passes left before it fails; fails left (-1: without end) */
static _Atomic long skip_left[RT_FP_N], fail_left[RT_FP_N];
static _Atomic unsigned long hits[RT_FP_N];

static bool parse_count(const char *s, size_t n, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* One entry, name[@skip][:count], `n` bytes at `s`. */
static int parse_entry(const char *s, size_t n)
{
    size_t nl = strcspn(s, "@:,");
    if (nl > n)
        nl = n;
    int fp = -1;
    for (int i = 0; i < RT_FP_N; i++)
        if (strlen(names[i]) == nl && memcmp(names[i], s, nl) == 0)
            fp = i;
    if (fp < 0)
        return -EINVAL;
    long skip = 0, count = -1;
    size_t at = nl;
    if (at < n && s[at] == '@') {
        size_t k = at + 1, m = strcspn(s + k, ":,");
        if (k + m > n || !parse_count(s + k, m, &skip))
            return -EINVAL;
        at = k + m;
    }
    if (at < n && s[at] == ':') {
        size_t k = at + 1;
        if (!parse_count(s + k, n - k, &count))
            return -EINVAL;
        at = n;
    }
    if (at != n)
        return -EINVAL;
    atomic_store(&skip_left[fp], skip);
    atomic_store(&fail_left[fp], count);
    return 0;
}

int rt__fp_init(void)
{
    for (int i = 0; i < RT_FP_N; i++) {
        atomic_store(&skip_left[i], 0);
        atomic_store(&fail_left[i], 0);
        atomic_store(&hits[i], 0);
    }
    atomic_store(&rt__fp_any, false);
    const char *env = getenv("RT_FAILPOINTS");
    if (env == NULL || *env == '\0')
        return 0;
    /* every entry, the one after a last comma too (empty: refused) */
    for (const char *s = env;; s++) {
        size_t n = strcspn(s, ",");
        if (parse_entry(s, n) < 0) {
            fprintf(stderr,
                    "rt: RT_FAILPOINTS: bad entry '%.*s' (name[@skip][:count], names:", (int)n, s);
            for (int i = 0; i < RT_FP_N; i++)
                fprintf(stderr, " %s", names[i]);
            fprintf(stderr, ")\n");
            for (int i = 0; i < RT_FP_N; i++)
                atomic_store(&fail_left[i], 0);
            return -EINVAL;
        }
        s += n;
        if (*s == '\0')
            break;
    }
    atomic_store(&rt__fp_any, true);
    return 0;
}

bool rt__fp_fail_slow(enum rt_fp fp)
{
    long f = atomic_load(&fail_left[fp]);
    if (f == 0)
        return false;
    /* take a pass first, while there are passes left */
    long s = atomic_load(&skip_left[fp]);
    while (s > 0)
        if (atomic_compare_exchange_weak(&skip_left[fp], &s, s - 1))
            return false;
    /* then a failure, while there are failures left (negative: no end) */
    while (f > 0 && !atomic_compare_exchange_weak(&fail_left[fp], &f, f - 1))
        ;
    if (f == 0)
        return false;
    atomic_fetch_add(&hits[fp], 1);
    return true;
}

unsigned long rt__fp_hits(const char *name)
{
    for (int i = 0; i < RT_FP_N; i++)
        if (strcmp(names[i], name) == 0)
            return atomic_load(&hits[i]);
    return 0;
}
