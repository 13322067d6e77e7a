/* bench.h: what bench/'s programs share (io_echo, esock_sctp, esock_tcp and
 * their parts): the clock, round-trip time samples, the median run, the
 * test pattern, and the files they write. A benchmark program's private
 * header, never installed; bench.c is linked into each program. */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdio.h>

/* The time now, in seconds (CLOCK_MONOTONIC). */
double now_s(void);

/* Round-trip times, in microseconds; zero-initialised is empty. */
struct lat {
    double *v;
    size_t n, cap;
};

/* Add a sample (dropped when there is no memory for it). One thread or
 * process per struct lat. */
void lat_add(struct lat *l, double us);
/* The samples' p50 and p99 into *p50_us and *p99_us (left alone when there
 * are none); frees the samples and leaves l empty. */
void lat_done(struct lat *l, double *p50_us, double *p99_us);

/* The index of the median of v[0..n) (the lower middle for even n; 0 when
 * n is 0). */
int median_index(const double *v, int n);

/* A 95% confidence interval for the median of what v[0..n) samples, from
 * the samples' order alone (the sign test's: [x(k), x(n+1-k)], k the
 * largest with P(Binomial(n, 1/2) < k) <= 2.5%), into *lo and *hi: 0, or
 * -1 (and *lo, *hi left alone) when n is under 6, too few for one. */
int median_ci95(const double *v, int n, double *lo, double *hi);

/* The runs per point asked for (--runs; 0: not asked, then `dflt`),
 * checked against the program's `max`: out of range, it says so on stderr
 * and exits the program (status 2). */
int runs_checked(int runs, int max, int dflt);

/* `size` bytes of the test pattern (byte i is i * 7 + 1, mod 256),
 * malloc'd: the caller frees them. Exits the program when there is no
 * memory. */
unsigned char *pattern(size_t size);

/* `path` opened for writing, after making the folders that hold it
 * (mkdir -p); the caller closes it. On failure it says so on stderr and
 * exits the program (status 1). */
FILE *open_out(const char *path);

#endif
