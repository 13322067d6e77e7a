/* sctp_must_fail: opens a real SCTP socket, then fails on purpose. Run only
 * by the harness self-test (expect-vm-failure.sh), never by the suite. */
#include <criterion/criterion.h>

#include "sctp_probe.h"

Test(harness_must_fail, fails_after_opening_sctp)
{
    TEST_REQUIRE_SCTP();
    int fd = socket(AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    close(fd);
    cr_assert_fail("deliberate failure: the harness must report it");
}
