/* esock_sctp: esock against its peers doing the same work over 127.0.0.1,
 * measured in the same run, one workload at a time, each peer's runs
 * interleaved with the others' (run 1 of every peer, then run 2, ...):
 *
 *   - stream: one-way streaming over 1 association and over 100 in parallel
 *     (aggregate), messages of 64 B, 1 KiB, 16 KiB, 64 KiB on stream 0 with
 *     a payload protocol id; messages/s and MB/s at the receivers;
 *   - rr: request/response of 64 B over one association (ping-pong):
 *     round trips/s, p50 and p99 latency;
 *   - setup: associations set up and shut down, one after the other, by
 *     one client against one server: associations/s. A cycle: the client
 *     makes an association, waits until both ends have it up, shuts it
 *     down and waits until both ends have seen it end (esock: UP, the
 *     server owner's UP, esock_assoc_shutdown, DOWN, the server owner's
 *     DOWN; plain: connect(2), accept(2), close(2), the server thread
 *     reading it to its end; gen_sctp: connect, the server's comm_up, eof,
 *     shutdown_comp on both); the server side counts them all.
 *
 * esock (sctp_esock.c): the sending side of each association is a stackful
 * process that made it (esock_assoc_create, so it is its owner) and calls
 * esock_send in a loop, waiting for ESOCK_MSG_SEND_READY (rt_receive_tag)
 * when it gets ESOCK_EWOULDBLOCK; the receiving side is a stackful process
 * registered as an owner of the server endpoint, taking ESOCK_MSG_DATA
 * messages and freeing them. Endpoints use esock's defaults (1 MiB
 * SO_SNDBUF/SO_RCVBUF, SCTP_NODELAY) but a 256 KiB send queue, about the
 * plain program's socket buffer. The runtime has one scheduler per CPU.
 *
 * plain (sctp_plain.c): what a C programmer writes without esock: one-to-one
 * style sockets (SOCK_STREAM, IPPROTO_SCTP), a blocking thread per socket,
 * sctp_sendmsg to send and recvmsg with SCTP_RCVINFO to receive, SCTP_NODELAY
 * and 1 MiB SO_SNDBUF/SO_RCVBUF set on every socket.
 *
 * gen_sctp (sctp_ext.c, --erl DIR): Erlang/OTP's gen_sctp, written the
 * Erlang way in bench/peers/erlang/sctppeer.erl (a process per association,
 * {active, N}, the server peeling each association off), one erl for the
 * whole run, given one workload at a time over a pipe.
 *
 * iperf3 (sctp_ext.c, --peers ...,iperf3): iperf3 --sctp, the usual bulk
 * tool, beside 64 KiB streaming over one association (--length 65536
 * --window 1M --no-delay; what its server received; it counts bytes and
 * does not check messages).
 *
 * Each sender runs for a fixed time, then sends an end marker (another ppid)
 * carrying how many messages and bytes it sent; its receiver checks that it
 * got exactly those, each message whole (MSG_EOR, `size` bytes, the data
 * ppid), and takes the time the marker arrived: a rate is what the receivers
 * got divided by the time from the first sender's start to the last
 * receiver's end marker. Any loss, a wrong size, a stall or a peer that does
 * not answer is a FAILED workload (the table says what went wrong) and a
 * non-zero exit; a failing workload is not run again for that peer (its
 * timeouts cost tens of seconds), the others carry on.
 *
 *   esock_sctp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--json FILE]
 *              [--size BYTES] [--assocs N] [--cases LIST] [--peers LIST]
 *              [--erl BEAM_DIR] [--where TEXT]
 *              [--schedulers N] [--io-buf-size BYTES] [--epoll]
 *              [--setup-client-only]
 *
 * --size B, --assocs N: only the workloads of that message size or that
 * many associations (N > 1: streaming over N at once instead of 100, each
 * with its own sender and receiver). --cases: a comma-separated subset of
 * stream,rr,setup; --peers: of esock,plain,gen_sctp,iperf3 (default:
 * esock, plain, and gen_sctp when --erl names the folder of sctppeer.beam).
 * --where: how the output names the machine ("in the test VM").
 * --schedulers, --io-buf-size, --epoll: the runtime's options (rt_opts).
 * --setup-client-only: esock's setup client does not wait for the server
 * owner's UP and DOWN (the server still has to have seen them all by the
 * end): associations that end before the server endpoint reports them
 * never reach its owner.
 *
 * --quick: one run of 1 s per workload; default: 3 runs of 2 s, and the
 * table shows the median (the CSV also min and max, the JSON every run).
 * The CSV goes to build/bench/esock_sctp.csv under the current directory
 * unless --csv names a file; the JSON only where --json says.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sctp_bench.h"

_Noreturn void die(const char *what, int err)
{
    fprintf(stderr, "esock_sctp: %s: %s\n", what, esock_strerror(err));
    exit(1);
}

/* Sum up the flows. Receiver i need not have sender i's association (an
 * accept callback or accept(2) pairs them), so each receiver is checked
 * against the end marker it got, and the totals against what was sent. */
struct result total(const char *peer, struct flow *f, struct flow *rf, int n)
{
    struct result r = {.ok = true};
    double t0 = 1e300, t1 = 0;
    uint64_t sent = 0, sent_bytes = 0;
    int nbad = 0; /* associations with a failed sender or receiver */
    char first[160] = "";
    for (int i = 0; i < n; i++) {
        bool bad = false;
        if (f[i].err) {
            fprintf(stderr, "esock_sctp: %s, sender %d of %d, %zu B: %s: %s (sent %llu msgs)\n",
                    peer, i + 1, n, f[i].size, f[i].what, esock_strerror(f[i].err),
                    (unsigned long long)f[i].sent);
            if (!first[0])
                snprintf(first, sizeof first, "sender %d: %s: %s", i + 1, f[i].what,
                         esock_strerror(f[i].err));
            bad = true;
        }
        if (rf[i].rerr || !rf[i].ended || rf[i].bad || rf[i].got != rf[i].end.msgs ||
            rf[i].got_bytes != rf[i].end.bytes) {
            fprintf(stderr,
                    "esock_sctp: %s, receiver %d of %d, %zu B: received %llu msgs (%llu B), "
                    "%llu bad, end marker %s (its sender sent %llu msgs, %llu B)%s%s%s\n",
                    peer, i + 1, n, rf[i].size, (unsigned long long)rf[i].got,
                    (unsigned long long)rf[i].got_bytes, (unsigned long long)rf[i].bad,
                    rf[i].ended ? "received" : "NOT received", (unsigned long long)rf[i].end.msgs,
                    (unsigned long long)rf[i].end.bytes, rf[i].rerr ? "; " : "",
                    rf[i].rerr ? rf[i].what : "", rf[i].rerr ? "" : "");
            if (!first[0] && rf[i].ended)
                snprintf(first, sizeof first, "receiver %d got %llu of %llu msgs", i + 1,
                         (unsigned long long)rf[i].got, (unsigned long long)rf[i].end.msgs);
            else if (!first[0])
                snprintf(first, sizeof first, "receiver %d got %llu msgs, no end marker%s%s", i + 1,
                         (unsigned long long)rf[i].got, rf[i].rerr ? ": " : "",
                         rf[i].rerr ? rf[i].what : "");
            bad = true;
        }
        if (bad) {
            nbad++;
            r.ok = false;
        }
        sent += f[i].sent;
        sent_bytes += f[i].sent_bytes;
        r.msgs += rf[i].got;
        r.bytes += rf[i].got_bytes;
        if (f[i].t0 > 0 && f[i].t0 < t0)
            t0 = f[i].t0;
        if (rf[i].t1 > t1)
            t1 = rf[i].t1;
    }
    if (nbad)
        snprintf(r.why, sizeof r.why, "%d of %d association%s failed; first: %s", nbad, n,
                 n > 1 ? "s" : "", first);
    if (r.ok && (r.msgs != sent || r.bytes != sent_bytes)) {
        fprintf(stderr, "esock_sctp: %s, %zu B: %llu msgs (%llu B) sent, %llu (%llu B) received\n",
                peer, f[0].size, (unsigned long long)sent, (unsigned long long)sent_bytes,
                (unsigned long long)r.msgs, (unsigned long long)r.bytes);
        snprintf(r.why, sizeof r.why, "%llu msgs sent, %llu received", (unsigned long long)sent,
                 (unsigned long long)r.msgs);
        r.ok = false;
    }
    if (!r.ok)
        kernel_diag(peer);
    r.secs = t1 > t0 ? t1 - t0 : 0;
    r.rate = r.ok && r.secs > 0 ? (double)r.msgs / r.secs : 0;
    r.mbs = r.ok && r.secs > 0 ? (double)r.bytes / r.secs / 1e6 : 0;
    return r;
}

/* /proc/net/sctp/snmp, as at the last kernel_mark(). */
#define SNMP_MAX 64
struct snmp_counter {
    char name[48];
    unsigned long long v;
};
static struct snmp_counter snmp_mark[SNMP_MAX];
static int snmp_n;

/* The counters into c[] (at most SNMP_MAX); how many. */
static int snmp_read(struct snmp_counter *c)
{
    FILE *f = fopen("/proc/net/sctp/snmp", "r");
    if (f == NULL)
        return 0;
    char line[256];
    int n = 0;
    while (n < SNMP_MAX && fgets(line, sizeof line, f))
        if (sscanf(line, "%47s %llu", c[n].name, &c[n].v) == 2)
            n++;
    fclose(f);
    return n;
}

void kernel_mark(void)
{
    snmp_n = snmp_read(snmp_mark);
}

void kernel_diag(const char *who)
{
    struct snmp_counter now[SNMP_MAX];
    int n = snmp_read(now);
    char out[1024] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof out; i++) {
        const char *name = now[i].name;
        unsigned long long before =
            i < snmp_n && strcmp(snmp_mark[i].name, name) == 0 ? snmp_mark[i].v : 0;
        if (now[i].v == before && strcmp(name, "SctpCurrEstab") != 0)
            continue;
        if (strstr(name, "Expired") || strstr(name, "Discard") || strstr(name, "OutOfBlue") ||
            strstr(name, "Abort") || strcmp(name, "SctpCurrEstab") == 0)
            len += (size_t)snprintf(out + len, sizeof out - len, " %s %s%llu", name,
                                    strcmp(name, "SctpCurrEstab") ? "+" : "",
                                    strcmp(name, "SctpCurrEstab") ? now[i].v - before : now[i].v);
    }
    fprintf(stderr, "esock_sctp:   %s: the kernel's SCTP counters during this run:%s\n", who,
            out[0] ? out : " no timer, discard or abort");
}

/* ================================ main ================================ */

enum kind { STREAM, RR, SETUP };
static const char *kind_names[] = {"stream", "rr", "setup"};
static const char *kind_units[] = {"msgs/s", "trips/s", "assocs/s"};

/* One workload: a row of the table. */
struct point {
    enum kind kind;
    int assocs;
    size_t size;
};

enum { ES, PL, GS, IP, NPEER };
static const char *peer_names[NPEER] = {"esock", "plain", "gen_sctp", "iperf3"};

/* Does peer k do this workload? iperf3 is the bulk peer: 64 KiB messages
 * over one association. */
static bool peer_does(int k, const struct point *p)
{
    if (k == IP)
        return p->kind == STREAM && p->assocs == 1 && p->size == 65536;
    return true;
}

static bool setup_client_only;

static struct result measure(int k, const struct point *p, double dur)
{
    switch (k) {
    case ES:
        return p->kind == RR      ? es_rr(dur)
               : p->kind == SETUP ? es_setup(dur, setup_client_only)
                                  : es_stream(p->assocs, p->size, dur);
    case PL:
        return p->kind == RR      ? pl_rr(dur)
               : p->kind == SETUP ? pl_setup(dur)
                                  : pl_stream(p->assocs, p->size, dur);
    case GS:
        return p->kind == RR      ? gs_rr(dur)
               : p->kind == SETUP ? gs_setup(dur)
                                  : gs_stream(p->assocs, p->size, dur);
    default:
        return ip_stream(p->size, dur);
    }
}

#define MAX_RUNS 9

/* A peer's runs of one workload: every run, and which is the median. */
struct series {
    bool on;                     /* measured */
    int n;                       /* runs made */
    struct result run[MAX_RUNS]; /* a failed run ends the series */
    int med;                     /* index of the median run (by rate) */
    double min_rate, max_rate;   /* over the runs */
    bool ok;
};

static int cmp_rate(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void series_done(struct series *s)
{
    double v[MAX_RUNS];
    s->ok = s->n > 0;
    for (int i = 0; i < s->n; i++) {
        v[i] = s->run[i].rate;
        s->ok &= s->run[i].ok;
    }
    if (!s->ok) { /* the failed run stands for the series */
        s->med = s->n - 1;
        s->min_rate = s->max_rate = 0;
        return;
    }
    qsort(v, (size_t)s->n, sizeof *v, cmp_rate);
    double m = v[(s->n - 1) / 2]; /* the lower middle for an even count */
    s->min_rate = v[0];
    s->max_rate = v[s->n - 1];
    for (int i = 0; i < s->n; i++)
        if (s->run[i].rate == m)
            s->med = i;
}

static const struct result *med(const struct series *s)
{
    return &s->run[s->med];
}

/* A JSON string (the texts here are our own and the peers' one-line
 * reasons: escape quotes, backslashes and control characters). */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_result(FILE *f, const struct result *r)
{
    fprintf(f,
            "{\"ok\": %s, \"rate\": %.3f, \"mb_per_s\": %.4f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
            "\"msgs\": %llu, \"bytes\": %llu, \"secs\": %.6f",
            r->ok ? "true" : "false", r->rate, r->mbs, r->p50_us, r->p99_us,
            (unsigned long long)r->msgs, (unsigned long long)r->bytes, r->secs);
    if (!r->ok) {
        fprintf(f, ", \"error\": ");
        json_str(f, r->why);
    }
    fputc('}', f);
}

/* The whole JSON file again, with every workload measured so far: it is
 * valid whenever the program stops. */
static void write_json(const char *path, const char *head, const struct point *pts,
                       struct series (*ser)[NPEER], int npts)
{
    FILE *f = open_out(path);
    fprintf(f, "{%s,\n \"workloads\": [", head);
    bool first = true;
    for (int i = 0; i < npts; i++) {
        const struct point *p = &pts[i];
        for (int k = 0; k < NPEER; k++) {
            const struct series *s = &ser[i][k];
            if (!s->on)
                continue;
            fprintf(f, "%s\n  {\"case\": \"%s\", \"assocs\": %d, \"size\": %zu, \"peer\": \"%s\", ",
                    !first ? "," : "", kind_names[p->kind], p->assocs, p->size, peer_names[k]);
            first = false;
            fprintf(f, "\"unit\": \"%s\", \"ok\": %s, \"runs\": %d,\n   \"median\": ",
                    kind_units[p->kind], s->ok ? "true" : "false", s->n);
            json_result(f, med(s));
            fprintf(f, ",\n   \"min_rate\": %.3f, \"max_rate\": %.3f,\n   \"all\": [", s->min_rate,
                    s->max_rate);
            for (int j = 0; j < s->n; j++) {
                fprintf(f, "%s\n    ", j ? "," : "");
                json_result(f, &s->run[j]);
            }
            fprintf(f, "]}");
        }
    }
    fprintf(f, "\n ]\n}\n");
    fclose(f);
}

/* The table's cell for one peer: its median, or FAILED, or "-". */
static void cell(char *buf, size_t cap, const struct series *s, bool mb)
{
    if (!s->on)
        snprintf(buf, cap, "-");
    else if (!s->ok)
        snprintf(buf, cap, "FAILED");
    else if (mb)
        snprintf(buf, cap, "%.1f", med(s)->mbs);
    else
        snprintf(buf, cap, "%.0f", med(s)->rate);
}

static void ratio(char *buf, size_t cap, const struct series *es, const struct series *s)
{
    if (!s->on || !es->on)
        snprintf(buf, cap, "-");
    else if (!s->ok || !es->ok || med(s)->rate <= 0)
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.2f", med(es)->rate / med(s)->rate);
}

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = list; (s = strstr(s, name)) != NULL; s += n)
        if ((s == list || s[-1] == ',') && (s[n] == ',' || s[n] == '\0'))
            return true;
    return false;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: esock_sctp [--quick] [--runs N] [--dur SECONDS] [--csv FILE] [--json FILE]\n"
            "                  [--size BYTES] [--assocs N] [--cases LIST] [--peers LIST]\n"
            "                  [--erl BEAM_DIR] [--where TEXT]\n"
            "                  [--schedulers N] [--io-buf-size BYTES] [--epoll]\n"
            "                  [--setup-client-only]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bool quick = false;
    int runs = 0, only_assocs = 0;
    double dur = 0;
    size_t only_size = 0;
    rt_opts ro = {0};
    const char *csv_path = "build/bench/esock_sctp.csv", *json_path = NULL;
    const char *cases = "stream,rr,setup", *peers = NULL, *erl_dir = NULL;
    const char *where = "where: not said (--where)";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            quick = true;
            continue;
        }
        if (strcmp(a, "--epoll") == 0) {
            ro.io = RT_IO_EPOLL;
            continue;
        }
        if (strcmp(a, "--setup-client-only") == 0) {
            setup_client_only = true;
            continue;
        }
        if (i + 1 >= argc) /* the rest take a value */
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--csv") == 0)
            csv_path = v;
        else if (strcmp(a, "--json") == 0)
            json_path = v;
        else if (strcmp(a, "--runs") == 0)
            runs = atoi(v);
        else if (strcmp(a, "--dur") == 0)
            dur = atof(v);
        else if (strcmp(a, "--size") == 0)
            only_size = (size_t)atol(v);
        else if (strcmp(a, "--assocs") == 0)
            only_assocs = atoi(v);
        else if (strcmp(a, "--cases") == 0)
            cases = v;
        else if (strcmp(a, "--peers") == 0)
            peers = v;
        else if (strcmp(a, "--erl") == 0)
            erl_dir = v;
        else if (strcmp(a, "--where") == 0)
            where = v;
        else if (strcmp(a, "--schedulers") == 0)
            ro.schedulers = (unsigned)atoi(v);
        else if (strcmp(a, "--io-buf-size") == 0)
            ro.io_buf_size = (unsigned)atoi(v);
        else
            usage();
    }
    if (only_assocs > MAX_ASSOCS)
        only_assocs = MAX_ASSOCS;
    if (dur <= 0)
        dur = quick ? 1.0 : 2.0;
    runs = runs_checked(runs, MAX_RUNS, quick ? 1 : 3);
    bool use[NPEER];
    for (int k = 0; k < NPEER; k++)
        use[k] = peers ? in_list(peers, peer_names[k]) : k == ES || k == PL || (k == GS && erl_dir);
    if (use[GS] && erl_dir == NULL) {
        fprintf(stderr, "esock_sctp: the gen_sctp peer needs --erl BEAM_DIR (sctppeer.beam)\n");
        return 2;
    }

    int rc = esock_sctp_available();
    if (rc < 0) {
        fprintf(stderr,
                "esock_sctp: this kernel has no SCTP (%s): run it in the test VM, "
                "bench/run-sctp\n",
                esock_strerror(rc));
        return 77;
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    /* a peer that ends must not end us with it */
    signal(SIGPIPE, SIG_IGN);

    /* the workloads, in the order of the table */
    static const size_t sizes[] = {64, 1024, 16384, 65536};
    struct point pts[16];
    int npts = 0;
    int nassocs[2] = {1, only_assocs > 1 ? only_assocs : 100};
    for (int a = 0; a < 2; a++) {
        if (only_assocs && nassocs[a] != only_assocs)
            continue;
        for (unsigned si = 0; si < 4 && in_list(cases, "stream"); si++)
            if (!only_size || sizes[si] == only_size)
                pts[npts++] = (struct point){STREAM, nassocs[a], sizes[si]};
        if (a == 0 && in_list(cases, "rr") && (!only_size || only_size == 64))
            pts[npts++] = (struct point){RR, 1, 64};
        if (a == 0 && in_list(cases, "setup") && !only_size)
            pts[npts++] = (struct point){SETUP, 1, 0};
    }

    /* the Erlang peer first: a child process, before rt has threads */
    if (use[GS]) {
        fprintf(stderr, "esock_sctp: starting the gen_sctp peer (erl, sctppeer)\n");
        rc = gs_start(erl_dir);
        if (rc < 0)
            fprintf(stderr, "esock_sctp: gen_sctp: cannot start erl: %s: its rows will fail\n",
                    strerror(-rc));
    }
    rc = rt_start(&ro);
    if (rc == 0)
        rc = esock_start();
    if (rc < 0)
        die("start", rc);
    rt_stats st;
    rt_stats_get(&st);
    char kern[256] = "";
    FILE *kv = fopen("/proc/sys/kernel/osrelease", "r");
    if (kv) {
        if (fgets(kern, sizeof kern, kv))
            kern[strcspn(kern, "\n")] = '\0';
        fclose(kv);
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    printf("esock %s over SCTP on 127.0.0.1, %s: kernel %s, %ld CPU(s).\n"
           "esock: rt with %u schedulers, a sender process (esock_send, waits for SEND_READY)\n"
           "  and a receiver process (owner, ESOCK_MSG_DATA) per association.\n"
           "plain: a blocking thread per one-to-one socket (sctp_sendmsg / recvmsg).\n"
           "gen_sctp: Erlang/OTP, a process per association (sctppeer.erl, {active,N},\n"
           "  the server peels associations off).\n"
           "iperf3: --sctp, 64 KiB messages over one association (counts bytes only).\n"
           "All: SCTP_NODELAY, 1 MiB SO_SNDBUF/SO_RCVBUF asked, stream 0. %.2f s per run,\n"
           "median of %d run(s); ratios: esock / peer (> 1: esock better). Every message\n"
           "is counted and checked at the receiver, but iperf3's.\n\n",
           esock_version(), where, kern, ncpu, st.schedulers, dur, runs);
    printf("%-6s %6s %6s %-7s | %10s %10s %10s %10s | %8s %9s %8s\n", "case", "assocs", "size",
           "unit", "esock", "plain", "gen_sctp", "iperf3", "/plain", "/gen_sctp", "/iperf3");

    FILE *csv = open_out(csv_path);
    fprintf(csv, "case,assocs,size,peer,rate,unit,mb_per_s,p50_us,p99_us,msgs,bytes,secs,ok,"
                 "runs,rate_min,rate_max,esock_ratio,error\n");
    char head[1024];
    snprintf(head, sizeof head,
             "\"benchmark\": \"esock_sctp\", \"esock\": \"%s\", \"where\": \"%s\", "
             "\"kernel\": \"%s\", \"cpus\": %ld, \"schedulers\": %u, \"secs_per_run\": %.3f, "
             "\"runs\": %d",
             esock_version(), where, kern, ncpu, st.schedulers, dur, runs);
    static struct series ser[16][NPEER];
    bool all_ok = true;
    double t_start = now_s();
    for (int i = 0; i < npts; i++) {
        const struct point *p = &pts[i];
        struct series *s = ser[i];
        for (int k = 0; k < NPEER; k++)
            s[k].on = use[k] && peer_does(k, p);
        for (int run = 0; run < runs; run++) {
            for (int k = 0; k < NPEER; k++) {
                /* a failure is not run again: its timeouts cost tens of seconds */
                if (!s[k].on || (s[k].n && !s[k].run[s[k].n - 1].ok))
                    continue;
                char what[96];
                snprintf(what, sizeof what, "[%d/%d %s %d assoc%s %zu B] %s, run %d/%d", i + 1,
                         npts, kind_names[p->kind], p->assocs, p->assocs > 1 ? "s" : "", p->size,
                         peer_names[k], run + 1, runs);
                fprintf(stderr, "%s ...\n", what);
                double t = now_s();
                kernel_mark();
                struct result *r = &s[k].run[s[k].n++];
                *r = measure(k, p, dur);
                if (r->ok)
                    fprintf(stderr, "%s: %.0f %s, took %.1f s\n", what, r->rate,
                            kind_units[p->kind], now_s() - t);
                else
                    fprintf(stderr, "%s: FAILED after %.1f s\n", what, now_s() - t);
            }
        }
        for (int k = 0; k < NPEER; k++)
            if (s[k].on) {
                series_done(&s[k]);
                all_ok &= s[k].ok;
            }
        /* the table: MB/s for the large messages, the rate for the rest */
        bool mb = p->kind == STREAM && p->size >= 16384;
        char c[NPEER][32], r[NPEER][16];
        for (int k = 0; k < NPEER; k++) {
            cell(c[k], sizeof c[k], &s[k], mb);
            ratio(r[k], sizeof r[k], &s[ES], &s[k]);
        }
        printf("%-6s %6d %6zu %-7s | %10s %10s %10s %10s | %8s %9s %8s\n", kind_names[p->kind],
               p->assocs, p->size, mb ? "MB/s" : kind_units[p->kind], c[ES], c[PL], c[GS], c[IP],
               r[PL], r[GS], r[IP]);
        if (p->kind == RR) {
            printf("%-6s %6s %6s %-7s |", "", "", "", "p50/p99");
            for (int k = 0; k < NPEER; k++)
                if (s[k].on && s[k].ok)
                    printf(" %s %.0f/%.0f us", peer_names[k], med(&s[k])->p50_us,
                           med(&s[k])->p99_us);
            printf("\n");
        }
        for (int k = 0; k < NPEER; k++)
            if (s[k].on && !s[k].ok)
                printf("       %s FAILED: %s\n", peer_names[k], med(&s[k])->why);
        fflush(stdout);
        for (int k = 0; k < NPEER; k++) {
            if (!s[k].on)
                continue;
            const struct result *m = med(&s[k]);
            fprintf(csv, "%s,%d,%zu,%s,%.1f,%s,%.3f,%.1f,%.1f,%llu,%llu,%.3f,%d,%d,%.1f,%.1f,",
                    kind_names[p->kind], p->assocs, p->size, peer_names[k], m->rate,
                    kind_units[p->kind], m->mbs, m->p50_us, m->p99_us, (unsigned long long)m->msgs,
                    (unsigned long long)m->bytes, m->secs, s[k].ok, s[k].n, s[k].min_rate,
                    s[k].max_rate);
            if (k != ES && s[ES].on && s[ES].ok && s[k].ok && m->rate > 0)
                fprintf(csv, "%.3f", med(&s[ES])->rate / m->rate);
            fprintf(csv, ",\"");
            for (const char *w = m->ok ? "" : m->why; *w; w++)
                fputs(*w == '"' ? "\"\"" : (char[]){*w, 0}, csv);
            fprintf(csv, "\"\n");
        }
        fflush(csv);
        if (json_path)
            write_json(json_path, head, pts, ser, i + 1);
    }
    fclose(csv);
    /* issue 8's goals: esock >= the plain program, >= 3x gen_sctp */
    static const struct {
        int peer;
        double goal;
    } goals[] = {{PL, 1.0}, {GS, 3.0}, {IP, 1.0}};
    printf("\n");
    for (size_t g = 0; g < sizeof goals / sizeof goals[0]; g++) {
        int k = goals[g].peer, met = 0, of = 0, failed = 0;
        char missed[1024] = "";
        size_t len = 0;
        for (int i = 0; i < npts; i++) {
            const struct series *e = &ser[i][ES], *o = &ser[i][k];
            if (!e->on || !o->on)
                continue;
            of++;
            if (!e->ok || !o->ok) {
                failed++;
                continue;
            }
            if (med(o)->rate > 0 && med(e)->rate / med(o)->rate >= goals[g].goal)
                met++;
            else if (len < sizeof missed)
                len += (size_t)snprintf(missed + len, sizeof missed - len, " %s/%d/%zu",
                                        kind_names[pts[i].kind], pts[i].assocs, pts[i].size);
        }
        if (of)
            printf("goal esock >= %gx %s: met in %d of %d workloads%s%s%s\n", goals[g].goal,
                   peer_names[k], met, of, failed ? " (some FAILED)" : "",
                   missed[0] ? "; not in:" : "", missed);
    }
    printf("\n%.1f s in all; CSV in %s%s%s\n", now_s() - t_start, csv_path,
           json_path ? ", JSON in " : "", json_path ? json_path : "");
    rc = esock_stop();
    rt_stats leaks = {0};
    int src = rt_stop(5000, &leaks);
    gs_stop();
    if (rc < 0 || src < 0 || leaks.procs_live || leaks.msgs_live) {
        fprintf(stderr,
                "esock_sctp: unclean stop: esock_stop %d, rt_stop %d (%s), %llu processes and "
                "%llu messages left\n",
                rc, src, esock_strerror(src), (unsigned long long)leaks.procs_live,
                (unsigned long long)leaks.msgs_live);
        all_ok = false;
    }
    if (!all_ok) {
        fprintf(stderr, "esock_sctp: FAILED: a workload failed for a peer (above)\n");
        return 1;
    }
    return 0;
}
