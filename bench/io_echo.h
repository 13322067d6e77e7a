/* io_echo.h: what bench/io_echo's driver (io_echo.c, with the servers that
 * run inside it) and its external peers (io_echo_ext.c: the Go and Erlang
 * echo servers, child processes) share, beside what every benchmark program
 * shares (bench.h). A benchmark program's private header, never installed. */
#ifndef IO_ECHO_H
#define IO_ECHO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "bench.h"

/* What a server says it did over one measurement: connections accepted
 * (for an external peer: accepted and ended), bytes read, bytes echoed. */
struct srv_counts {
    long long conns, read, echoed;
};

/* An echo server in a child process: bench/peers/go/echopeer or
 * bench/peers/erlang/echopeer.erl. It prints "port N ..." once it listens;
 * given a line on its stdin it stops, and prints "ok CONNS READ ECHOED" or
 * "fail WHY". */
struct ext_peer {
    pid_t pid;     /* -1: not running */
    int to, from;  /* its stdin, its stdout */
    clockid_t cpu; /* its CPU-time clock (all its threads) */
    char buf[8192];
    size_t len;
};

/* Spawn argv[0] (looked up in PATH) with argv and the environment plus
 * `env` (NULL-terminated "NAME=VALUE" entries, may be NULL) and wait up to
 * 30 s for its "port N" line: its port into *port, the rest of the line into
 * hello (cap bytes). The child inherits the calling thread's CPU affinity
 * and perf counters. 0 or a negative errno; why (cap bytes) says what went
 * wrong. */
int ext_start(struct ext_peer *p, char *const argv[], char *const env[], uint16_t *port,
              char *hello, char *why, size_t cap);
/* The CPU time the peer's threads have used so far, in seconds (0 when
 * it cannot be read). Callable from any thread while the peer runs. */
double ext_cpu(const struct ext_peer *p);
/* The part of that spent in user mode, in seconds (/proc/PID/stat's utime:
 * the kernel's tick samples, scaled to its CPU time), or 0. */
double ext_user(const struct ext_peer *p);
/* Ask the peer to stop and read its counts into *c; reap it (killed when
 * it does not end). 0 or a negative errno, why (cap bytes) saying what. */
int ext_stop(struct ext_peer *p, struct srv_counts *c, char *why, size_t cap);

#endif
