/* bench.c's median_ci95 against the sign test's tables, and bench/pool on
 * runs whose verdicts are known: one point io_uring wins in every pair, one
 * it loses, one level, one with too few pairs, and FAILED runs left out. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* the 95% interval's ranks [k, n + 1 - k] from the binomial tables */
Test(median_ci95, ranks_match_the_sign_test_tables)
{
    static const struct {
        int n, k;
    } tab[] = {{6, 1},  {7, 1},   {8, 1},   {9, 2},   {10, 2},  {11, 2},  {12, 3},   {20, 6},
               {21, 6}, {30, 10}, {31, 10}, {41, 14}, {50, 18}, {62, 23}, {100, 40}, {101, 41}};
    double v[101];
    for (size_t t = 0; t < sizeof tab / sizeof tab[0]; t++) {
        int n = tab[t].n;
        for (int i = 0; i < n; i++)
            v[i] = (double)((i * 37) % n + 1); /* 1..n shuffled */
        double lo = 0, hi = 0;
        cr_assert_eq(median_ci95(v, n, &lo, &hi), 0, "n=%d", n);
        cr_expect_eq(lo, tab[t].k, "n=%d: lo is rank %g, want %d", n, lo, tab[t].k);
        cr_expect_eq(hi, n + 1 - tab[t].k, "n=%d: hi is rank %g, want %d", n, hi, n + 1 - tab[t].k);
        for (int i = 0; i < n; i++) /* the samples are left as they were */
            cr_assert_eq(v[i], (double)((i * 37) % n + 1));
    }
}

Test(median_ci95, too_few_samples_give_none)
{
    double v[5] = {1, 2, 3, 4, 5}, lo = -7, hi = -7;
    for (int n = 0; n < 6; n++) {
        cr_expect_eq(median_ci95(v, n, &lo, &hi), -1, "n=%d", n);
        cr_expect(lo == -7 && hi == -7, "n=%d: the interval was written", n);
    }
}

/* one run; steal < 0: a file from before io_echo wrote steal_pct */
static void row(FILE *f, const char *pt, const char *server, int run, const char *check,
                double rate, double cpu, int steal)
{
    fprintf(f, "%s,%s,%d,%s,%.1f,msg/s,%.3f,0.5,3.00,40,64,0", pt, server, run, check, rate, cpu);
    if (steal >= 0)
        fprintf(f, ",%d", steal);
    fprintf(f, "\n");
}

/* bench/pool's output for `args` into out (cap bytes); asserts it exited 0 */
static void pool(const char *args, char *out, size_t cap)
{
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd, "bash %s %s 2>&1", BENCH_POOL, args);
    FILE *o = popen(cmd, "r");
    cr_assert_not_null(o);
    out[0] = '\0';
    while (fgets(line, sizeof line, o))
        strncat(out, line, cap - strlen(out) - 1);
    cr_assert_eq(pclose(o), 0, "bench/pool %s failed: %s", args, out);
}

Test(pool, verdicts_from_pooled_passes)
{
    int fds = open_fds();
    char a[] = "/tmp/bench_pool_a_XXXXXX", b[] = "/tmp/bench_pool_b_XXXXXX";
    int fa = mkstemp(a), fb = mkstemp(b);
    cr_assert(fa >= 0 && fb >= 0);
    FILE *f[2] = {fdopen(fa, "w"), fdopen(fb, "w")};
    for (int p = 0; p < 2; p++) {
        int st = p == 0 ? 0 : -1; /* file a has steal_pct, file b not */
        fprintf(f[p],
                "mode,conns,size,server,run,check,rate,unit,server_cpu_us_per_msg,"
                "server_user_us_per_msg,syscalls_per_msg,client_cpu_pct,"
                "server_bytes_per_read,tcp_mem_events%s\n",
                p == 0 ? ",steal_pct" : "");
        for (int run = 1; run <= 5; run++) {
            /* the hypervisor took 20% during two of file a's io_uring runs */
            row(f[p], "rr,1000,64", "rt-io_uring", run, "ok", 150, 10,
                st == 0 && run <= 2 ? 20 : st);
            row(f[p], "rr,1000,64", "rt-epoll", run, "ok", 100, 10, st);
            /* faster: io_uring 10% ahead in every pair, CPU 20% less */
            row(f[p], "rr,100,64", "rt-io_uring", run, "ok", 110 + run, 8, st);
            row(f[p], "rr,100,64", "rt-epoll", run, "ok", 100 + run, 10, st);
            /* slower: io_uring 10% behind in every pair */
            row(f[p], "stream,1,64", "rt-io_uring", run, "ok", 90, 10, st);
            row(f[p], "stream,1,64", "rt-epoll", run, "ok", 100, 10, st);
            /* level: ahead and behind in turn */
            row(f[p], "rr,1,64", "rt-io_uring", run, "ok", run % 2 ? 105 : 95, 10, st);
            row(f[p], "rr,1,64", "rt-epoll", run, "ok", 100, 10, st);
            /* too few: 2 pairs left in each pass (the others FAILED on one side) */
            row(f[p], "rr,10,64", "rt-io_uring", run, run <= 2 ? "ok" : "FAILED", 120, 10, st);
            row(f[p], "rr,10,64", "rt-epoll", run, "ok", 100, 10, st);
            /* another server: not paired against epoll */
            row(f[p], "rr,100,64", "go-net", run, "ok", 1, 1, st);
        }
        fclose(f[p]);
    }
    char args[256], cmd[512], out[4096];
    snprintf(args, sizeof args, "%s %s", a, b);
    pool(args, out, sizeof out);
    cr_expect(strstr(out, "mode,conns,size,against,pairs,ratio,ratio_ci_lo,ratio_ci_hi,cpu_ratio,"
                          "cpu_ratio_ci_lo,cpu_ratio_ci_hi,verdict\n") == out,
              "%s", out);
    /* 10 pairs: the median is the lower middle (rank 5), the interval ranks 2 to 9; run i
     * pairs with run i of its own file */
    cr_expect(strstr(out, "\nrr,100,64,rt-epoll,10,1.097,1.095,1.099,1.250,1.250,1.250,faster\n"),
              "%s", out);
    cr_expect(strstr(out, "\nstream,1,64,rt-epoll,10,0.900,0.900,0.900,1.000,1.000,1.000,slower\n"),
              "%s", out);
    cr_expect(strstr(out, "\nrr,1,64,rt-epoll,10,1.050,0.950,1.050,1.000,1.000,1.000,level\n"),
              "%s", out);
    cr_expect(strstr(out, "\nrr,10,64,rt-epoll,4,1.200,,,1.000,,,too-few\n"), "%s", out);
    cr_expect(strstr(out, "\nrr,1000,64,rt-epoll,10,1.500,1.500,1.500,"), "%s", out);
    /* against another server (the points it did not run have no pairs) */
    snprintf(args, sizeof args, "--against go-net %s %s", a, b);
    pool(args, out, sizeof out);
    cr_expect(
        strstr(out, "\nrr,100,64,go-net,10,113.000,111.000,115.000,0.125,0.125,0.125,faster\n"),
        "%s", out);
    /* --max-steal: the two stolen pairs left out; file b's runs, with no steal_pct, stay */
    snprintf(args, sizeof args, "--max-steal 5 %s %s", a, b);
    pool(args, out, sizeof out);
    cr_expect(strstr(out, "\nrr,1000,64,rt-epoll,8,1.500,1.500,1.500,"), "%s", out);
    cr_expect(strstr(out, "\nrr,100,64,rt-epoll,10,"), "%s", out);
    snprintf(cmd, sizeof cmd, "bash %s --max-steal lots %s >/dev/null 2>&1", BENCH_POOL, a);
    cr_expect_neq(system(cmd), 0, "a --max-steal that is not a number was taken");
    /* a file that is not io_echo's runs: refused */
    snprintf(cmd, sizeof cmd, "bash %s %s >/dev/null 2>&1", BENCH_POOL, BENCH_POOL);
    cr_expect_neq(system(cmd), 0);
    unlink(a);
    unlink(b);
    cr_expect_eq(open_fds(), fds, "an fd was left open");
}
