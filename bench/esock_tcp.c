/* esock_tcp: esock over TCP against a plain blocking C program doing the
 * same work over 127.0.0.1 (and Go's net package, when --go names the peer
 * program, bench/peers/go/tcppeer; and Erlang/OTP's gen_tcp, when --erl
 * names the folder of bench/peers/erlang/tcppeer.beam), measured in the
 * same run:
 *
 *   - stream: one-way streaming over 1 and over 100 connections, messages
 *     of 64 B, 1 KiB, 16 KiB, 64 KiB, each after a 4-byte big-endian length
 *     (esock: ESOCK_FRAME_LEN32, whole messages): messages/s and MB/s;
 *   - bulk: the same bytes unframed (esock: ESOCK_FRAME_NONE, data as it
 *     was read), sends of 64 KiB: MB/s;
 *   - rr: request/response of 64 B (framed), on 1 connection and on 100
 *     at once: round trips/s, p50 and p99 latency; rr-local: over one
 *     connection with esock's client and echo actor spawned on one
 *     scheduler (rr: where rt_spawn from main puts them, round robin). For
 *     one connection the table says in how many runs esock's two ends
 *     ended up on two schedulers (stealing can move one), which decides its
 *     figure;
 *   - setup: connections set up and closed, one after another by 1 client
 *     and by 10 at once: connect, up, a graceful close both ways.
 *
 * Every message is counted and its content checked at the receiver: a
 * framed message carries its sequence number in its first 8 bytes and a
 * fixed pattern after them; it must have the right length, the next number
 * and the pattern. An unframed stream's byte at offset o is pat[o % 65521],
 * checked however the reads cut it. A sender sends for a fixed time, then
 * ends its stream (FIN: esock_assoc_shutdown, shutdown(SHUT_WR), CloseWrite)
 * and its receiver must see the end after the last byte; the receivers'
 * counts must equal the senders' (as a multiset: accept pairs a receiver
 * with some sender). A rate is what the receivers got divided by the time
 * from the first sender's start to the last receiver's end. Any loss, a
 * wrong byte, an error or a hang fails the point and the exit status.
 *
 * esock (tcp_esock.c), written as a user writes it: the sending side of
 * each connection is a stackful process that made it (esock_assoc_create
 * from one client endpoint, so it is its owner) and calls esock_send in a
 * loop, waiting for ESOCK_MSG_SEND_READY when it gets ESOCK_EWOULDBLOCK;
 * the receiving side is a stackful process per connection registered as an
 * owner of the server endpoint (an accept callback takes one connection
 * each), taking ESOCK_MSG_DATA and freeing it. The rr echo side is a
 * callback actor per connection (esock_send back from its handler; what
 * would block waits in its own queue until ESOCK_MSG_SEND_READY, never
 * dropped); the setup server one callback actor for all (the client's side
 * closes first, as in plain, Go and Erlang, so its ports collect the
 * TIME_WAITs). Endpoints use esock's defaults (TCP_NODELAY, the kernel's
 * buffer autotuning) but a 256 KiB send queue (send_hiwat), so that esock
 * holds about what a socket buffer holds beyond the kernel's. The runtime
 * has one scheduler per CPU; nothing is pinned.
 *
 * plain (tcp_plain.c): what a C programmer writes without esock: blocking
 * sockets with TCP_NODELAY, a thread per socket (the setup server a thread
 * per accepted connection); one send(2) per message (length and payload
 * from one buffer), and reads of up to 256 KiB cut into messages in place.
 *
 * Go (tcp_ext.c): goroutines and net.Conn, one Write per message, a
 * bufio.Reader of 256 KiB and io.ReadFull per message; a separate process
 * started for each run, checking the same things (bench/peers/go/tcppeer).
 *
 * Erlang (tcp_ext.c): gen_tcp, a process per socket, {packet, 4}
 * (gen_tcp's own 4-byte big-endian length; bulk: raw), one gen_tcp:send per
 * message, receivers in {active, N}, a 256 KiB user-level buffer, the rr
 * client passive (gen_tcp:recv); one erl (its default schedulers, one per
 * CPU) started for each run, checking the same things
 * (bench/peers/erlang/tcppeer.erl).
 *
 *   esock_tcp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--json FILE] [--go PROGRAM]
 *             [--erl BEAM_DIR] [--case stream|bulk|rr|setup] [--conns N] [--size BYTES]
 *             [--peers LIST] [--schedulers N] [--client-addr ADDR]
 *
 * --quick: one run of 0.3 s per point (about half a minute); default: the
 * median of 3 runs of 2 s (min and max beside it; about 5 minutes on 2
 * CPUs).
 * --peers: a comma-separated subset of esock,plain,go,erlang (a peer
 * program not given or not there is left out). --case, --conns,
 * --size: only those points (--conns N: each case and size once, over N
 * connections). --schedulers: the runtime's (rt_opts; 0: one per CPU).
 * --client-addr: the address of esock's set-up clients' endpoint (default
 * 127.0.0.1, whose connections esock binds to it before connecting; 0.0.0.0:
 * not bound). The CSV goes to
 * build/bench/esock_tcp.csv under the current directory unless --csv names
 * a file; the JSON (every run) only with --json.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <esock/esock.h>
#include <rt/rt.h>

#include "tcp_bench.h"

#define MAX_RUNS 9

_Noreturn void die(const char *what, int err)
{
    fprintf(stderr, "esock_tcp: %s: %s\n", what, esock_strerror(err));
    exit(1);
}

/* ---- what is sent, and its check ---------------------------------------------------------- */

unsigned char *msg_pat, *bulk_pat;

void patterns_init(void)
{
    msg_pat = pattern(BULK);
    bulk_pat = malloc(PERIOD + BULK);
    if (bulk_pat == NULL)
        die("malloc", -ENOMEM);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PERIOD; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        bulk_pat[i] = (unsigned char)x;
    }
    for (size_t i = PERIOD; i < PERIOD + BULK; i++)
        bulk_pat[i] = bulk_pat[i - PERIOD];
}

void msg_fill(unsigned char *buf, size_t size, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
    memcpy(buf + 8, msg_pat + 8, size - 8);
}

void msg_set_seq(unsigned char *buf, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
}

bool msg_ok(const void *p, size_t len, size_t size, uint64_t seq)
{
    uint64_t s;
    if (len != size)
        return false;
    memcpy(&s, p, sizeof s);
    return s == seq && memcmp((const unsigned char *)p + 8, msg_pat + 8, size - 8) == 0;
}

bool bulk_ok(const unsigned char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        size_t n = len < BULK ? len : BULK;
        if (memcmp(p, bulk_pat + off % PERIOD, n) != 0)
            return false;
        p += n, len -= n, off += n;
    }
    return true;
}

/* ---- figures ----------------------------------------------------------------------------------
 */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct result total(const char *peer, const struct flow *f, int n, size_t size, bool framed)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    uint64_t *sent = calloc((size_t)n, sizeof *sent), *got = calloc((size_t)n, sizeof *got);
    if (sent == NULL || got == NULL)
        die("calloc", -ENOMEM);
    for (int i = 0; i < n; i++) {
        if (f[i].err) {
            fprintf(stderr, "esock_tcp: %s, sender %d of %d, %zu B: %s: %s (sent %llu msgs)\n",
                    peer, i + 1, n, size, f[i].what, esock_strerror(f[i].err),
                    (unsigned long long)f[i].sent);
            r.ok = false;
        }
        if (f[i].rerr || !f[i].ended || f[i].bad) {
            fprintf(stderr, "esock_tcp: %s, receiver %d of %d, %zu B: %llu msgs (%llu B)%s%s%s%s\n",
                    peer, i + 1, n, size, (unsigned long long)f[i].got,
                    (unsigned long long)f[i].got_bytes, f[i].bad ? ", a WRONG message" : "",
                    f[i].ended ? "" : ", no clean end", f[i].rerr ? ": " : "",
                    f[i].rerr ? f[i].rwhat : "");
            r.ok = false;
        }
        sent[i] = f[i].sent_bytes;
        got[i] = f[i].got_bytes;
        r.msgs += f[i].got;
        r.bytes += f[i].got_bytes;
        if (f[i].t0 > 0 && f[i].t0 < t0)
            t0 = f[i].t0;
        if (f[i].t1 > t1)
            t1 = f[i].t1;
    }
    qsort(sent, (size_t)n, sizeof *sent, cmp_u64);
    qsort(got, (size_t)n, sizeof *got, cmp_u64);
    uint64_t smsgs = 0;
    for (int i = 0; i < n; i++) {
        smsgs += f[i].sent;
        if (r.ok && sent[i] != got[i]) {
            fprintf(stderr, "esock_tcp: %s, %zu B: a sender sent %llu B, its receiver got %llu B\n",
                    peer, size, (unsigned long long)sent[i], (unsigned long long)got[i]);
            r.ok = false;
        }
    }
    if (r.ok && framed && smsgs != r.msgs) { /* unframed: reads, not messages */
        fprintf(stderr, "esock_tcp: %s: %llu msgs sent, %llu received\n", peer,
                (unsigned long long)smsgs, (unsigned long long)r.msgs);
        r.ok = false;
    }
    free(sent), free(got);
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    if (!framed)
        r.rate = r.mbs; /* reads are not messages: bytes are the figure */
    return r;
}

struct result rr_total(const char *peer, const char *cas, struct rr_flow *c, int n)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    struct lat all = {0};
    for (int i = 0; i < n; i++) {
        if (c[i].err) {
            fprintf(stderr, "esock_tcp: %s %s, client %d of %d: %s: %s (%llu done)\n", peer, cas,
                    i + 1, n, c[i].what, esock_strerror(c[i].err), (unsigned long long)c[i].trips);
            r.ok = false;
        }
        r.msgs += c[i].trips;
        if (c[i].t0 > 0 && c[i].t0 < t0)
            t0 = c[i].t0;
        if (c[i].t1 > t1)
            t1 = c[i].t1;
        for (size_t k = 0; k < c[i].lat.n; k++)
            lat_add(&all, c[i].lat.v[k]);
        free(c[i].lat.v);
        c[i].lat = (struct lat){0};
    }
    lat_done(&all, &r.p50_us, &r.p99_us);
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.bytes = r.msgs * RR_SIZE;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    return r;
}

/* ================================ main ================================ */

enum { ES, PL, GO, ER, NPEER };
static const char *peer_names[NPEER] = {"esock", "plain", "go", "erlang"};

enum { C_STREAM, C_BULK, C_RR, C_RRL, C_SETUP, NCASE };
static const char *case_names[NCASE] = {"stream", "bulk", "rr", "rr-local", "setup"};
static const char *case_units[NCASE] = {"msgs/s", "MB/s", "trips/s", "trips/s", "conns/s"};

static const char *go_path; /* bench/peers/go/tcppeer, built; NULL: no Go */
static const char *erl_dir; /* the folder of tcppeer.beam; NULL: no Erlang */
/* --client-addr: the set-up clients' endpoint address */
static const char *setup_client_addr = "127.0.0.1";

static struct result run_one(int peer, int cas, int n, size_t size, double dur)
{
    bool framed = cas != C_BULK;
    switch (peer) {
    case ES:
        return cas == C_RR || cas == C_RRL ? es_rr(n, dur, cas == C_RRL)
               : cas == C_SETUP            ? es_setup(n, dur, setup_client_addr)
                                           : es_stream(n, size, framed, dur);
    case PL:
        return cas == C_RR || cas == C_RRL ? pl_rr(n, dur)
               : cas == C_SETUP            ? pl_setup(n, dur)
                                           : pl_stream(n, size, framed, dur);
    case GO:
        return go_run(go_path, cas == C_RRL ? "rr" : case_names[cas], n, size, framed, dur);
    default:
        return erl_run(erl_dir, cas == C_RRL ? "rr" : case_names[cas], n, size, framed, dur);
    }
}

struct point {
    int cas, conns;
    size_t size;
};

static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
    bool quick = false;
    int runs = 0, only_conns = 0, only_case = -1;
    double dur = 0;
    size_t only_size = 0;
    rt_opts ro = {0};
    const char *csv_path = "build/bench/esock_tcp.csv", *json_path = NULL, *peers = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
            csv_path = argv[++i];
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json_path = argv[++i];
        else if (strcmp(argv[i], "--go") == 0 && i + 1 < argc)
            go_path = argv[++i];
        else if (strcmp(argv[i], "--erl") == 0 && i + 1 < argc)
            erl_dir = argv[++i];
        else if (strcmp(argv[i], "--peers") == 0 && i + 1 < argc)
            peers = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dur") == 0 && i + 1 < argc)
            dur = atof(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            only_size = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--client-addr") == 0 && i + 1 < argc)
            setup_client_addr = argv[++i];
        else if (strcmp(argv[i], "--schedulers") == 0 && i + 1 < argc)
            ro.schedulers = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            only_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
            i++;
            for (int c = 0; c < NCASE; c++)
                if (strcmp(argv[i], case_names[c]) == 0)
                    only_case = c;
            if (only_case < 0) {
                fprintf(stderr, "esock_tcp: --case: stream, bulk, rr or setup\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: esock_tcp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] "
                    "[--json FILE] [--go PROGRAM]\n"
                    "                 [--erl BEAM_DIR] [--case stream|bulk|rr|setup] [--conns N] "
                    "[--size BYTES]\n"
                    "                 [--peers esock,plain,go,erlang]\n"
                    "                 [--schedulers N] [--client-addr ADDR]\n");
            return 2;
        }
    }
    if (dur <= 0)
        dur = quick ? 0.3 : 2.0;
    runs = runs_checked(runs, MAX_RUNS, quick ? 1 : 3);
    if (only_conns > MAX_CONNS)
        only_conns = MAX_CONNS;
    bool use[NPEER];
    for (int k = 0; k < NPEER; k++)
        use[k] = peers == NULL || strstr(peers, peer_names[k]) != NULL;
    if (go_path == NULL || access(go_path, X_OK) != 0) {
        if (go_path)
            fprintf(stderr, "esock_tcp: %s: not there (bench/run-tcp builds it): no Go\n", go_path);
        use[GO] = false;
    }
    char beam[4096];
    snprintf(beam, sizeof beam, "%s/tcppeer.beam", erl_dir ? erl_dir : ".");
    if (erl_dir == NULL || access(beam, R_OK) != 0) {
        if (erl_dir)
            fprintf(stderr, "esock_tcp: %s: not there (bench/run-tcp builds it): no Erlang\n",
                    beam);
        use[ER] = false;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    patterns_init();
    FILE *csv = open_out(csv_path), *json = json_path ? open_out(json_path) : NULL;
    int rc = rt_start(&ro);
    if (rc == 0)
        rc = esock_start();
    if (rc < 0)
        die("start", rc);
    rt_stats st;
    rt_stats_get(&st);
    char kern[256] = "?";
    FILE *kv = fopen("/proc/sys/kernel/osrelease", "r");
    if (kv) {
        if (fgets(kern, sizeof kern, kv))
            kern[strcspn(kern, "\n")] = '\0';
        fclose(kv);
    }
    printf("esock %s over TCP on 127.0.0.1 vs a plain blocking C program%s,\n"
           "kernel %s, %ld CPU(s), nothing pinned.\n"
           "esock: rt with %u schedulers, a process per side of each connection (esock_send,\n"
           "waits for SEND_READY; owners take ESOCK_MSG_DATA). plain: a blocking thread per\n"
           "socket. go: a goroutine per socket (net.Conn). erlang: a process per socket\n"
           "(gen_tcp, {packet,4}, {active,N}; erl's default schedulers). All: TCP_NODELAY, one\n"
           "send per message, 4-byte big-endian length (bulk: unframed). %.2f s per run, median\n"
           "of %d run(s) [min-max]; ratio: esock / peer (> 1: esock better; latency: < 1 better).\n"
           "Every message counted and checked at the receiver.\n",
           esock_version(),
           use[GO] && use[ER] ? ", Go's net and Erlang's gen_tcp"
           : use[GO]          ? " and Go's net"
           : use[ER]          ? " and Erlang's gen_tcp"
                              : "",
           kern, sysconf(_SC_NPROCESSORS_ONLN), st.schedulers, dur, runs);
    for (int k = GO; k <= ER; k++)
        if (!use[k])
            printf("%s: not run (not asked for, not installed, or not built: bench/run-tcp "
                   "builds it).\n",
                   peer_names[k]);
    printf("\n");
    printf("%-6s %5s %6s | %10s %10s %6s | %10s %6s | %10s %6s | %8s %8s %8s %8s | %s\n", "case",
           "conns", "size", "esock", "plain", "ratio", "go", "ratio", "erlang", "ratio", "esock",
           "plain", "go", "erlang", "unit; MB/s");
    fprintf(csv, "case,conns,size,peer,runs,rate,rate_min,rate_max,unit,mb_per_s,p50_us,p99_us,"
                 "esock_ratio,ok,esock_split_runs\n");
    if (json)
        fprintf(json,
                "{\n  \"bench\": \"esock_tcp\",\n  \"esock\": \"%s\",\n  \"kernel\": \"%s\",\n"
                "  \"cpus\": %ld,\n  \"schedulers\": %u,\n  \"dur_s\": %.3f,\n  \"runs\": %d,\n"
                "  \"points\": [",
                esock_version(), kern, sysconf(_SC_NPROCESSORS_ONLN), st.schedulers, dur, runs);
    static const struct point points[] = {
        {C_STREAM, 1, 64},    {C_STREAM, 1, 1024},   {C_STREAM, 1, 16384},   {C_STREAM, 1, 65536},
        {C_STREAM, 100, 64},  {C_STREAM, 100, 1024}, {C_STREAM, 100, 16384}, {C_STREAM, 100, 65536},
        {C_BULK, 1, BULK},    {C_BULK, 100, BULK},   {C_RR, 1, RR_SIZE},     {C_RRL, 1, RR_SIZE},
        {C_RR, 100, RR_SIZE}, {C_SETUP, 1, 0},       {C_SETUP, 10, 0},
    };
    bool all_ok = true, first_point = true;
    double t_start = now_s();
    for (size_t pi = 0; pi < sizeof points / sizeof points[0]; pi++) {
        struct point pt = points[pi];
        if ((only_case >= 0 && pt.cas != only_case) || (only_size && pt.size != only_size))
            continue;
        if (only_conns) { /* each case and size once, with that many */
            bool dup = false;
            for (size_t j = 0; j < pi; j++)
                dup = dup || (points[j].cas == pt.cas && points[j].size == pt.size);
            if (dup)
                continue;
            pt.conns = only_conns;
        }
        struct result all[NPEER][MAX_RUNS], med[NPEER] = {0};
        double rates[NPEER][MAX_RUNS], lo[NPEER] = {0}, hi[NPEER] = {0};
        bool failed[NPEER] = {false};
        for (int run = 0; run < runs; run++) {
            for (int k = 0; k < NPEER; k++) {
                if (!use[k])
                    continue;
                if (failed[k]) { /* once is enough: a failure costs its timeouts */
                    all[k][run] = all[k][0];
                    rates[k][run] = 0;
                    continue;
                }
                fprintf(stderr, "[%s %d conn%s %zu B] %s, run %d/%d\n", case_names[pt.cas],
                        pt.conns, pt.conns > 1 ? "s" : "", pt.size, peer_names[k], run + 1, runs);
                all[k][run] = run_one(k, pt.cas, pt.conns, pt.size, dur);
                rates[k][run] = all[k][run].rate;
                if (!all[k][run].ok) {
                    all_ok = false;
                    failed[k] = true;
                    all[k][0] = all[k][run];
                    for (int j = 0; j < run; j++)
                        rates[k][j] = 0;
                }
            }
        }
        for (int k = 0; k < NPEER; k++) {
            if (!use[k])
                continue;
            med[k] = failed[k] ? all[k][0] : all[k][median_index(rates[k], runs)];
            lo[k] = hi[k] = rates[k][0];
            for (int j = 1; j < runs; j++) {
                lo[k] = rates[k][j] < lo[k] ? rates[k][j] : lo[k];
                hi[k] = rates[k][j] > hi[k] ? rates[k][j] : hi[k];
            }
        }
        const char *unit = case_units[pt.cas];
        /* the external peers' cells: their rate, ratio, MB/s, or "-" */
        char xs[NPEER][16], xr[NPEER][16], xm[NPEER][16];
        for (int k = GO; k <= ER; k++) {
            snprintf(xs[k], sizeof xs[k], "-");
            snprintf(xr[k], sizeof xr[k], "-");
            snprintf(xm[k], sizeof xm[k], "-");
            if (!use[k])
                continue;
            snprintf(xs[k], sizeof xs[k], "%.0f", med[k].rate);
            snprintf(xr[k], sizeof xr[k], "%.2f", ratio(med[ES].rate, med[k].rate));
            snprintf(xm[k], sizeof xm[k], "%.1f", med[k].mbs);
        }
        printf("%-6s %5d %6zu | %10.0f %10.0f %6.2f | %10s %6s | %10s %6s | %8.1f %8.1f %8s %8s | "
               "%s",
               case_names[pt.cas], pt.conns, pt.size, med[ES].rate, med[PL].rate,
               ratio(med[ES].rate, med[PL].rate), xs[GO], xr[GO], xs[ER], xr[ER], med[ES].mbs,
               med[PL].mbs, xm[GO], xm[ER], unit);
        if (runs > 1) {
            printf("; min-max esock %.0f-%.0f plain %.0f-%.0f", lo[ES], hi[ES], lo[PL], hi[PL]);
            for (int k = GO; k <= ER; k++)
                if (use[k])
                    printf(" %s %.0f-%.0f", peer_names[k], lo[k], hi[k]);
        }
        int nsplit = 0, nplaced = 0;
        for (int j = 0; use[ES] && !failed[ES] && j < runs; j++) {
            nsplit += all[ES][j].placed == 2;
            nplaced += all[ES][j].placed != 0;
        }
        if (pt.cas == C_RR || pt.cas == C_RRL) {
            printf(
                "\n%-6s %5s %6s   p50/p99 us: esock %.0f/%.0f, plain %.0f/%.0f (ratio %.2f/%.2f)",
                "", "", "", med[ES].p50_us, med[ES].p99_us, med[PL].p50_us, med[PL].p99_us,
                ratio(med[ES].p50_us, med[PL].p50_us), ratio(med[ES].p99_us, med[PL].p99_us));
            for (int k = GO; k <= ER; k++)
                if (use[k])
                    printf(", %s %.0f/%.0f (ratio %.2f/%.2f)", peer_names[k], med[k].p50_us,
                           med[k].p99_us, ratio(med[ES].p50_us, med[k].p50_us),
                           ratio(med[ES].p99_us, med[k].p99_us));
            if (nplaced)
                printf("; esock's two ends on two schedulers in %d of %d runs", nsplit, nplaced);
        }
        for (int k = 0; k < NPEER; k++)
            if (use[k] && !med[k].ok)
                printf("  %s FAILED", peer_names[k]);
        printf("\n");
        fflush(stdout);
        for (int k = 0; k < NPEER; k++) {
            if (!use[k])
                continue;
            fprintf(csv, "%s,%d,%zu,%s,%d,%.1f,%.1f,%.1f,%s,%.3f,%.1f,%.1f,%.4f,%d,",
                    case_names[pt.cas], pt.conns, pt.size, peer_names[k], runs, med[k].rate, lo[k],
                    hi[k], unit, med[k].mbs, med[k].p50_us, med[k].p99_us,
                    ratio(med[ES].rate, med[k].rate), med[k].ok);
            if (k == ES && nplaced)
                fprintf(csv, "%d", nsplit);
            fprintf(csv, "\n");
            if (!json)
                continue;
            fprintf(json,
                    "%s\n    {\"case\": \"%s\", \"conns\": %d, \"size\": %zu, \"peer\": \"%s\", "
                    "\"unit\": \"%s\", \"median\": %.1f, \"min\": %.1f, \"max\": %.1f, "
                    "\"mb_per_s\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
                    "\"esock_ratio\": %.4f, \"ok\": %s,\n     \"runs\": [",
                    first_point ? "" : ",", case_names[pt.cas], pt.conns, pt.size, peer_names[k],
                    unit, med[k].rate, lo[k], hi[k], med[k].mbs, med[k].p50_us, med[k].p99_us,
                    ratio(med[ES].rate, med[k].rate), med[k].ok ? "true" : "false");
            first_point = false;
            for (int j = 0; j < runs; j++) {
                const struct result *x = &all[k][failed[k] ? 0 : j];
                fprintf(json,
                        "%s{\"rate\": %.1f, \"mb_per_s\": %.3f, \"p50_us\": %.1f, "
                        "\"p99_us\": %.1f, \"msgs\": %llu, \"bytes\": %llu, \"secs\": %.4f, "
                        "\"ok\": %s%s}",
                        j ? ", " : "", x->rate, x->mbs, x->p50_us, x->p99_us,
                        (unsigned long long)x->msgs, (unsigned long long)x->bytes, x->secs,
                        x->ok ? "true" : "false",
                        x->placed == 1   ? ", \"esock_ends\": \"one scheduler\""
                        : x->placed == 2 ? ", \"esock_ends\": \"two schedulers\""
                                         : "");
            }
            fprintf(json, "]}");
        }
    }
    fclose(csv);
    if (json) {
        fprintf(json, "\n  ]\n}\n");
        fclose(json);
    }
    printf("\n%.1f s in all; CSV in %s%s%s\n", now_s() - t_start, csv_path,
           json_path ? ", JSON in " : "", json_path ? json_path : "");
    rc = esock_stop();
    rt_stats leaks = {0};
    int src = rt_stop(5000, &leaks);
    if (rc < 0 || src < 0 || leaks.procs_live || leaks.msgs_live) {
        fprintf(stderr,
                "esock_tcp: unclean stop: esock_stop %d, rt_stop %d (%s), %llu processes and "
                "%llu messages left\n",
                rc, src, esock_strerror(src), (unsigned long long)leaks.procs_live,
                (unsigned long long)leaks.msgs_live);
        all_ok = false;
    }
    if (!all_ok) {
        fprintf(stderr, "esock_tcp: FAILED (above)\n");
        return 1;
    }
    return 0;
}
