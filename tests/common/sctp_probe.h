/* sctp_probe.h: does this kernel have SCTP, and what a test that needs it
 * does when it does not.
 *
 * A Criterion test that needs kernel SCTP calls TEST_REQUIRE_SCTP() first.
 * Without SCTP the test is skipped loudly ("run via tools/sctp-vm"), or fails
 * when ESOCK_REQUIRE_SCTP=1 (tools/test sets it where SCTP must be there: in
 * the test VM); it never passes without having run. */
#ifndef TEST_SCTP_PROBE_H
#define TEST_SCTP_PROBE_H

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* 0 if the kernel opens an SCTP one-to-many socket, else the errno. A kernel
 * without SCTP says ESOCKTNOSUPPORT (SOCK_SEQPACKET) or EPROTONOSUPPORT
 * (SOCK_STREAM); any error counts as "no". */
static inline int test_sctp_errno(void)
{
    int fd = socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

static inline bool test_host_has_sctp(void)
{
    return test_sctp_errno() == 0;
}

/* ESOCK_REQUIRE_SCTP set to anything but "" or "0": SCTP must be there. */
static inline bool test_sctp_required(void)
{
    const char *v = getenv("ESOCK_REQUIRE_SCTP");
    return v && *v && strcmp(v, "0") != 0;
}

/* Skip (or fail) the calling Criterion test unless the kernel has SCTP.
 * Criterion shows skip reasons only with --verbose, so the skip is also
 * announced on stderr. (CTest reports a binary whose tests all skipped as
 * skipped: SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt.) */
#define TEST_REQUIRE_SCTP()                                                                        \
    do {                                                                                           \
        int e_ = test_sctp_errno();                                                                \
        if (e_ != 0) {                                                                             \
            if (test_sctp_required())                                                              \
                cr_assert_fail("kernel has no SCTP (socket: %s) but ESOCK_REQUIRE_SCTP=1",         \
                               strerror(e_));                                                      \
            fprintf(stderr,                                                                        \
                    "[SKIP] %s:%d: kernel has no SCTP (socket: %s); run via tools/sctp-vm\n",      \
                    __FILE__, __LINE__, strerror(e_));                                             \
            cr_skip_test("kernel has no SCTP (socket: %s); run via tools/sctp-vm", strerror(e_));  \
        }                                                                                          \
    } while (0)

#endif
