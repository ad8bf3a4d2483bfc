#!/usr/bin/env bash
# libc++, libc++abi and libunwind (PIC, wasm exceptions) from the LLVM sources in the ziglang
# wheel. Called by build-sysroot.sh with its environment (TOOLS, SYSROOT, WORK).
# Two forms of the same objects:
#   $SYSROOT/system-lib/libc++.so   the default: libc++, libc++abi and libunwind in one side
#                                   module, which every C++ module records as `needed`; the
#                                   runtime mounts system-lib/ at the guest's /lib.
#   $SYSROOT/lib/libc++.a, libc++abi.a, libunwind.a   for -static-libstdc++ (libunwind.a hidden).
# Why one combined module, not three as LLVM installs them: the unwinder's landing-pad context
# `__wasm_lpad_context` is thread-local, and the library objects are compiled for
# wasm32-wasip1, where LLVM accesses thread-locals in the local-exec model only, so a libc++abi
# module could not link against a libunwind module's context. Inside one module it binds
# locally; the context is exported (TLS), and every other module's landing pads reach it
# through a `GOT.mem` import the loader binds per thread (the drivers' code generation, see
# wasix_toolchain.py). Nothing wants the three apart: one module is also one load, not three.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
zigpkg="$(echo "$TOOLS"/venv/lib/python3*/site-packages/ziglang)"
zig="$zigpkg/zig"; ziglib="$zigpkg/lib"
jobs="$(nproc)"
log() { printf '[sysroot] %s\n' "$*" >&2; }

inc="$SYSROOT/include/c++/v1"
mkdir -p "$inc"
cp -r "$ziglib/libcxx/include"/. "$inc/"
cp "$here/sysroot-src/libcxx/__config_site" "$inc/__config_site"
# zig's copy passes the configuration as -D flags instead of including __config_site: restore
# the include so that any compiler using this sysroot sees the same configuration.
grep -rl 'zig patch: instead of including __config_site' "$inc" | xargs sed -i \
  's|/\* zig patch: instead of including __config_site, zig adds -D flags when compiling \*/|#include <__config_site>|'
cp "$ziglib/libcxxabi/include"/*.h "$inc/"
cp "$ziglib/libunwind/include"/*.h "$SYSROOT/include/"

flags=(--target=wasm32-wasip1 --sysroot="$SYSROOT" -resource-dir "$ziglib"
  -O2 -DNDEBUG -fno-stack-protector -fPIC -fvisibility=default -pthread
  -matomics -mbulk-memory -mmutable-globals -mnontrapping-fptoint -msign-ext
  -fwasm-exceptions -mllvm -wasm-use-legacy-eh=false -mllvm -wasm-enable-sjlj)
cxxflags=("${flags[@]}" -std=c++23 -nostdinc++ -isystem "$inc" -D_LIBCPP_BUILDING_LIBRARY
  -D_LIBCPP_REMOVE_TRANSITIVE_INCLUDES -DLIBCXX_BUILDING_LIBCXXABI -D_LIBCXXABI_BUILDING_LIBRARY
  -I"$ziglib/libcxx/src" -I"$ziglib/libcxx/libc" -I"$ziglib/libcxxabi/include" -I"$ziglib/libcxxabi/src"
  -Wno-user-defined-literals -Wno-unknown-warning-option)

# compile_all OUT_DIR COMPILER FLAGS... -- SOURCES...: compiles in parallel, one object per source.
compile_all() {
  local out="$1" compiler="$2"; shift 2
  local flags=()
  while [ "$1" != -- ]; do flags+=("$1"); shift; done; shift
  mkdir -p "$out"
  local wrapper="$out.cc"
  { echo '#!/bin/sh'; printf 'exec %q %q' "$zig" "$compiler"; printf ' %q' "${flags[@]}"; echo ' "$@"'; } > "$wrapper"
  chmod +x "$wrapper"
  printf '%s\n' "$@" | xargs -P "$jobs" -I{} sh -c \
    'o="$2/$(echo "$1" | sed "s|.*/src/||; s|/|_|g").o"; "$0" -c "$1" -o "$o"' "$wrapper" {} "$out"
}

log "building libc++abi"
abi_srcs=()
for f in "$ziglib"/libcxxabi/src/*.cpp; do
  # cxa_thread_atexit.cpp defines nothing outside Linux and Fuchsia: libc has __cxa_thread_atexit
  case "$(basename "$f")" in cxa_noexception.cpp|cxa_thread_atexit.cpp) continue ;; esac
  abi_srcs+=("$f")
done
compile_all "$WORK/cxxabi" clang --driver-mode=g++ "${cxxflags[@]}" -- "${abi_srcs[@]}"
"$zig" ar rcs "$SYSROOT/lib/libc++abi.a" "$WORK"/cxxabi/*.o

log "building libunwind"
# _LIBUNWIND_HIDE_SYMBOLS only stops libunwind's own export attributes (wasm is not ELF to it,
# it would write __declspec(dllexport)): -fvisibility decides. Two builds:
# - libunwind.a (-static-libstdc++), hidden, its landing-pad context included: every module
#   links its own copy, and a module's landing pads must reach the context its own copy reads
#   (wasm-ld then binds them inside the module instead of importing the symbol from whichever
#   module exports it first).
# - for libc++.so, default visibility: the one unwinder of the process, context exported.
unwind_flags=(-std=c11 -I"$ziglib/libunwind/include" -D_LIBUNWIND_HIDE_SYMBOLS
  -D_LIBUNWIND_HAS_NO_THREADS -Wno-c23-extensions)
compile_all "$WORK/unwind" clang "${flags[@]}" -fvisibility=hidden "${unwind_flags[@]}" \
  -- "$ziglib/libunwind/src/Unwind-wasm.c"
"$zig" ar rcs "$SYSROOT/lib/libunwind.a" "$WORK"/unwind/*.o
compile_all "$WORK/unwind-shared" clang "${flags[@]}" "${unwind_flags[@]}" \
  -- "$ziglib/libunwind/src/Unwind-wasm.c"

log "building libc++"
cxx_srcs=()
# <filesystem> is off: the 2022 wasi-libc has no <sys/statvfs.h>.
for f in "$ziglib"/libcxx/src/*.cpp "$ziglib"/libcxx/src/ryu/*.cpp; do
  case "$(basename "$f")" in
    # platform back ends that do not apply to WASI
    int128_builtins.cpp|directory_monitor.cpp) continue ;;
  esac
  cxx_srcs+=("$f")
done
compile_all "$WORK/cxx" clang --driver-mode=g++ "${cxxflags[@]}" -- "${cxx_srcs[@]}"
"$zig" ar rcs "$SYSROOT/lib/libc++.a" "$WORK"/cxx/*.o

log "linking libc++.so"
# With the drivers' own side-module link (loader exports, __wasix_init_tls for its TLS), told
# to use this sysroot before it is complete, and to add no C++ runtime to the runtime itself.
# It imports libc from the main program, like any library.
mkdir -p "$SYSROOT/system-lib"
WASIX_DL_SYSROOT="$SYSROOT" python3 "$here/wasix_toolchain.py" c++ -shared -nostdlib++ \
  -o "$SYSROOT/system-lib/libc++.so" "$WORK"/unwind-shared/*.o "$WORK"/cxxabi/*.o "$WORK"/cxx/*.o
