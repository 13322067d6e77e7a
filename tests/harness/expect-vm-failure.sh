#!/usr/bin/env bash
# expect-vm-failure.sh SCTP_VM TEST_BINARY: run a test that must fail inside
# the VM; pass only if the VM reported the test's own failure.
set -u
vm=$1
bin=$2
"$vm" -- env ESOCK_REQUIRE_SCTP=1 "$bin" --jobs=1
rc=$?
echo "expect-vm-failure: tools/sctp-vm exited $rc"
case $rc in
0) echo "FAIL: a failing SCTP test passed through the VM"; exit 1 ;;
124 | 125) echo "FAIL: the VM itself failed ($rc), so nothing was proven"; exit 1 ;;
*) echo "OK: the test's failure came through the VM as exit $rc"; exit 0 ;;
esac
