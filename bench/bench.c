/* bench.c: what bench/'s programs share (bench.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void lat_add(struct lat *l, double us)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16384;
        double *nv = realloc(l->v, nc * sizeof *nv);
        if (nv == NULL)
            return;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = us;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void lat_done(struct lat *l, double *p50_us, double *p99_us)
{
    if (l->n) {
        qsort(l->v, l->n, sizeof *l->v, cmp_d);
        *p50_us = l->v[l->n / 2];
        *p99_us = l->v[l->n * 99 / 100];
    }
    free(l->v);
    *l = (struct lat){0};
}

int median_index(const double *v, int n)
{
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            below += v[j] < v[i];
            equal += v[j] == v[i];
        }
        if (below <= (n - 1) / 2 && below + equal > (n - 1) / 2)
            return i;
    }
    return 0;
}

int median_ci95(const double *v, int n, double *lo, double *hi)
{
    /* k: 1 + the most samples below the interval that P(X <= k - 1)
     * allows, X ~ Binomial(n, 1/2) */
    double term = 1, cdf = 0;
    for (int i = 0; i < n; i++)
        term /= 2; /* C(n, 0) / 2^n */
    int k = 0;
    for (int j = 0; j < n; j++) {
        cdf += term; /* P(X <= j) */
        if (cdf > 0.025)
            break;
        k = j + 1;
        term = term * (n - j) / (j + 1);
    }
    if (k < 1)
        return -1;
    double *s = malloc((size_t)n * sizeof *s);
    if (s == NULL)
        return -1;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    *lo = s[k - 1];
    *hi = s[n - k];
    free(s);
    return 0;
}

int runs_checked(int runs, int max, int dflt)
{
    if (runs < 0 || runs > max) {
        fprintf(stderr, "%s: --runs: 1 to %d\n", program_invocation_short_name, max);
        exit(2);
    }
    return runs ? runs : dflt;
}

unsigned char *pattern(size_t size)
{
    unsigned char *b = malloc(size);
    if (b == NULL) {
        fprintf(stderr, "%s: malloc: %s\n", program_invocation_short_name, strerror(ENOMEM));
        exit(1);
    }
    for (size_t i = 0; i < size; i++)
        b[i] = (unsigned char)(i * 7 + 1);
    return b;
}

FILE *open_out(const char *path)
{
    char *p = strdup(path);
    for (char *s = p + 1; p && *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        mkdir(p, 0777);
        *s = '/';
    }
    free(p);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path, strerror(errno));
        exit(1);
    }
    return f;
}
