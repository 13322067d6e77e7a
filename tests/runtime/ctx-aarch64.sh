#!/usr/bin/env bash
# ctx-aarch64.sh SRC_DIR: cross-build ctx_check for aarch64 with the runtime's
# aarch64 context switch, and run it under qemu-user. Exit 77 (CTest:
# skipped, said so) when the cross compiler or qemu-aarch64 is missing.
set -euo pipefail
src=$1
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    echo "ctx-aarch64: no aarch64-linux-gnu-gcc or qemu-aarch64 (tools/setup installs them): skipped"
    exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -std=c17 -O2 -static -I"$src/runtime/src" "$src/tests/runtime/ctx_check.c" \
    "$src/runtime/src/arch/ctx_aarch64.S" -o "$out/ctx_check"
qemu-aarch64 "$out/ctx_check"
