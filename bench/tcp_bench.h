/* tcp_bench.h: what the parts of bench/esock_tcp share (the driver in
 * esock_tcp.c, the esock side in tcp_esock.c, the plain C program in
 * tcp_plain.c, the Go and Erlang peers in tcp_ext.c), beside what every
 * benchmark program shares (bench.h). A benchmark program's private header,
 * never installed. */
#ifndef TCP_BENCH_H
#define TCP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

#define MAX_CONNS 1000
#define PERIOD    65521u      /* the unframed pattern's period (a prime) */
#define BULK      (64u << 10) /* unframed send size */
#define RR_SIZE   64u

/* What is sent: a framed message's payload is its sequence number (8
 * bytes, little-endian) and then msg_pat[8..size); byte o of an unframed
 * stream is bulk_pat[o % PERIOD] (bulk_pat holds PERIOD + BULK bytes, so
 * that any BULK of them from an offset below PERIOD are in a row). Made by
 * patterns_init() before any workload; read-only after. */
extern unsigned char *msg_pat, *bulk_pat;
void patterns_init(void);
/* A framed message `seq` of `size` bytes into buf (the payload only). */
void msg_fill(unsigned char *buf, size_t size, uint64_t seq);
void msg_set_seq(unsigned char *buf, uint64_t seq);
/* Is (p, len) message `seq` of `size` bytes? */
bool msg_ok(const void *p, size_t len, size_t size, uint64_t seq);
/* Are (p, len) the bytes of an unframed stream from offset `off` on? */
bool bulk_ok(const unsigned char *p, size_t len, uint64_t off);

/* One connection's figures, its sender's and its receiver's (filled by
 * different threads or processes; read after both have been joined). */
struct flow {
    double t0;
    uint64_t sent, sent_bytes;
    int err;
    const char *what;
    double t1;
    uint64_t got, got_bytes;
    bool bad, ended;
    int rerr;
    const char *rwhat;
};

/* The total of one measurement. */
struct result {
    double secs;
    uint64_t msgs, bytes;
    double rate, mbs; /* messages (round trips, connections)/s, MB/s */
    double p50_us, p99_us;
    bool ok;
    int placed; /* esock rr over one connection: 1 its two ends' owners ran on one
                   scheduler, 2 on two; 0 unknown */
};

/* One rr client's figures (setup: trips are connections). */
struct rr_flow {
    double t0, t1;
    uint64_t trips;
    struct lat lat;
    int err;
    const char *what;
    int sched; /* esock: the scheduler the client ran on last */
};

/* Say what failed (err: a negative errno or an esock code) and exit 1. */
_Noreturn void die(const char *what, int err);
/* Sum up n connections; every receiver must have got exactly what some
 * sender sent, and ended cleanly. `peer` names them in what it prints of a
 * failure (on stderr). */
struct result total(const char *peer, const struct flow *f, int n, size_t size, bool framed);
/* Sum up n rr (or setup) clients; frees their latency samples. */
struct result rr_total(const char *peer, const char *cas, struct rr_flow *c, int n);

/* esock (tcp_esock.c), with rt and esock started. es_rr: local puts each
 * echo actor and client on scheduler i % schedulers (for one connection:
 * both ends on one). es_setup: client_addr is the address of the set-up
 * clients' endpoint (--client-addr). */
struct result es_stream(int n, size_t size, bool framed, double dur);
struct result es_rr(int n, double dur, bool local);
struct result es_setup(int n, double dur, const char *client_addr);

/* plain C, blocking sockets and a thread per socket (tcp_plain.c). */
struct result pl_stream(int n, size_t size, bool framed, double dur);
struct result pl_rr(int n, double dur);
struct result pl_setup(int n, double dur);

/* The peers that are other programs, one process for each measurement
 * (tcp_ext.c): Go's net (`program`: bench/peers/go/tcppeer, built) and
 * Erlang/OTP's gen_tcp (erl running tcppeer from `beam_dir`). cas: stream,
 * bulk, rr or setup. A peer that fails, or does not answer within dur +
 * 180 s (it is then killed), is a failed result. */
struct result go_run(const char *program, const char *cas, int n, size_t size, bool framed,
                     double dur);
struct result erl_run(const char *beam_dir, const char *cas, int n, size_t size, bool framed,
                      double dur);

#endif
