#!/usr/bin/env bash
# check-install.sh BUILD_DIR CONSUMER_SRC: install BUILD_DIR into a scratch
# prefix, then build and run the consumer program against it twice: with
# pkg-config and with CMake's find_package.
set -euo pipefail
build=$1
src=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'libesock.so' -printf '%h\n' | head -n1)
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# 1. pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs esock)
echo "pkg-config --cflags --libs esock: $flags"
cc -std=c17 -o "$scratch/consumer-pc" "$src/main.c" $flags ${ESOCK_CONSUMER_CFLAGS:-}
"$scratch/consumer-pc"

# 2. find_package
cmake -S "$src" -B "$scratch/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="${ESOCK_CONSUMER_CFLAGS:-}" >/dev/null
cmake --build "$scratch/cmake-build" >/dev/null
"$scratch/cmake-build/consumer"
echo "install_consumer: pkg-config and find_package builds both ran"
