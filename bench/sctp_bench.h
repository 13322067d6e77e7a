/* sctp_bench.h: what the parts of bench/esock_sctp share (the driver in
 * esock_sctp.c, the esock side in sctp_esock.c, the plain libsctp program in
 * sctp_plain.c, the other programs in sctp_ext.c), beside what every
 * benchmark program shares (bench.h). A benchmark program's private header,
 * never installed. */
#ifndef SCTP_BENCH_H
#define SCTP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <esock/esock.h>
#include <rt/rt.h>

#include "bench.h"

#define PPID_DATA  51u
#define PPID_END   52u
#define PPID_PING  53u
#define TAG_DONE   7u        /* your end marker arrived (setup: how many I made) */
#define TAG_UP     8u        /* setup, server owner -> client: I have it up */
#define TAG_GONE   9u        /* setup, server owner -> client: it went down */
#define BUFSZ      (1 << 20) /* SO_SNDBUF / SO_RCVBUF of the plain program: esock's default */
#define MAX_ASSOCS 1000

/* The end marker: what its sender sent before it. */
struct end_marker {
    uint64_t msgs, bytes;
    rt_pid sender; /* esock: whom to tell it arrived */
};

/* One association's figures, filled by its sender and its receiver. */
struct flow {
    size_t size;
    double dur;
    /* the sender's */
    double t0;
    uint64_t sent, sent_bytes;
    int err;
    /* the receiver's */
    double t1;
    uint64_t got, got_bytes, bad; /* bad: a message of the wrong size or ppid */
    struct end_marker end;
    bool ended;
    int rerr;
    const char *what;  /* what went wrong, when err or rerr */
    esock_assoc assoc; /* esock: the association this side has */
};

/* The total of one measurement. */
struct result {
    double secs;
    uint64_t msgs, bytes;
    double rate, mbs; /* messages (or round trips)/s, MB/s */
    double p50_us, p99_us;
    bool ok;
    char why[200]; /* when not ok: what went wrong, in a line */
};

/* Say what failed (err: a negative errno or an esock code) and exit 1. */
_Noreturn void die(const char *what, int err);
/* The totals of n flows, f[i] the senders' and rf[i] the receivers';
 * `peer` names them in what it prints of a failure (on stderr). */
struct result total(const char *peer, struct flow *f, struct flow *rf, int n);
/* What the kernel says of SCTP, on stderr, to explain a stall: the timer,
 * discard and abort counters of /proc/net/sctp/snmp that grew since
 * kernel_mark() (called before each run), and the associations open. */
void kernel_mark(void);
void kernel_diag(const char *who);

/* esock (sctp_esock.c): rt and esock started. */
struct result es_stream(int n, size_t size, double dur);
struct result es_rr(double dur);
/* client_only: the client does not wait for the server owner's UP and
 * DOWN (--setup-client-only: shows associations that come and go before
 * the server endpoint reports them never reaching its owner). */
struct result es_setup(double dur, bool client_only);

/* plain libsctp, a blocking thread per socket (sctp_plain.c). */
struct result pl_stream(int n, size_t size, double dur);
struct result pl_rr(double dur);
struct result pl_setup(double dur);

/* Erlang/OTP gen_sctp (sctp_ext.c): one erl running sctppeer from
 * beam_dir, started before rt (it is a child process) and stopped at the
 * end. gs_start returns 0 or a negative errno; a workload of a peer that
 * is not running, or that did not answer in time (it is then killed), is
 * a failed result. */
int gs_start(const char *beam_dir);
void gs_stop(void);
struct result gs_stream(int n, size_t size, double dur);
struct result gs_rr(double dur);
struct result gs_setup(double dur);

/* iperf3 --sctp (sctp_ext.c): one association of `size`-byte messages for
 * dur seconds (rounded to whole seconds, iperf3's unit), as its server
 * counted them. */
struct result ip_stream(size_t size, double dur);

#endif
