/* sctp_probe.h: tests that need kernel SCTP call TEST_REQUIRE_SCTP() first.
 * Without SCTP the test is skipped loudly, or fails when ESOCK_REQUIRE_SCTP=1
 * (tools/test sets it where SCTP must be there: in the VM); it never passes
 * without having run. */
#ifndef TEST_SCTP_PROBE_H
#define TEST_SCTP_PROBE_H

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

/* 0 if the kernel can open an SCTP socket, else the errno. */
static inline int test_sctp_errno(void)
{
    int fd = socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

#define TEST_REQUIRE_SCTP()                                                                        \
    do {                                                                                           \
        int e_ = test_sctp_errno();                                                                \
        if (e_ != 0) {                                                                             \
            const char *req_ = getenv("ESOCK_REQUIRE_SCTP");                                       \
            if (req_ && strcmp(req_, "1") == 0)                                                    \
                cr_assert_fail("kernel has no SCTP (%s) but ESOCK_REQUIRE_SCTP=1", strerror(e_));  \
            cr_skip_test("kernel has no SCTP (%s): run it through tools/sctp-vm", strerror(e_));   \
        }                                                                                          \
    } while (0)

#endif
