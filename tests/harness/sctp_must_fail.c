/* sctp_must_fail: opens a real SCTP socket, then fails on purpose.
 *
 * Not part of the suite: only the harness self-test harness_vm_propagates_failure
 * runs it, through tools/vm/expect-fail and the test VM, to prove that a
 * failing SCTP test makes tools/sctp-vm fail with the test's own status (1)
 * -- and for the right reason: expect-fail also looks for the message below,
 * which only comes after a successful socket(). */
#include "sctp_probe.h"

Test(harness_must_fail, fails_after_opening_sctp)
{
    TEST_REQUIRE_SCTP();
    int fd = socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    cr_assert_eq(close(fd), 0, "close: %s", strerror(errno));
    cr_assert_fail("deliberate failure after opening an SCTP socket");
}
