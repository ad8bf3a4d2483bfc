#!/usr/bin/env bash
# Builds CPython 3.13 as a dynamically linked WASIX program with the wasix-dl toolchain:
# python.wasm is a PIE main module, and the standard library's C extension modules are side
# modules (lib/python3.13/lib-dynload/*.so) that CPython loads with dlopen.
#
# Idempotent. Everything lives under $WASIX_DL_CACHE (default ~/.cache/wasix-dl):
#   cpython-native-$PY_VERSION/  the native build Python a cross build needs (kept)
#   cpython-$key/                the install: python.wasm, lib/python3.13/ (the result)
#   cpython-build-$key/          the build tree (removed on success)
# $key hashes the toolchain key, PY_VERSION, the variant and the files that decide the build.
# Progress goes to stderr; stdout gets only the install directory.
#
# Options:
#   --check   print the install directory if it is built; else say what to run and exit 1
#   --static  the baseline for benchmarks: the same CPython with every extension module linked
#             into python.wasm (cpython-static-$key), as CPython's configure does on WASI
set -euo pipefail
check=no variant=shared
for arg in "$@"; do
  case "$arg" in
    --check) check=yes;;
    --static) variant=static;;
    *) echo "usage: build-python.sh [--check] [--static]" >&2; exit 2;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# The upstream version of trixie's python3.13 source package. We build the upstream tarball
# without Debian's patches (they adapt CPython to Debian's file system layout, not to WASI), so
# the Debian revision does not change the result; it is recorded in the install's BUILD-INFO.
# Our own change is cpython-wasix.patch (the call trampoline), nothing else.
PY_VERSION=3.13.5
PY_MINOR=3.13

log() { printf '[cpython] %s\n' "$*" >&2; }
tc="$repo/toolchain/wasix_toolchain.py"

# 0. The cache key (the toolchain key hashes the sysroot's inputs; it needs no sysroot).
cache="$(python3 "$tc" cache-dir)"
# The drivers (wasix_toolchain.py) decide how every object is compiled: part of the key too.
key="$( { python3 "$tc" key; echo "$PY_VERSION $variant"; cat "$tc" "$here/build-python.sh" "$here/config.site-wasix" "$here/Setup.local" "$here/cpython-wasix.patch" "$here/wasix_trampoline.c"; } \
        | sha256sum | cut -c1-16)"
if [ $variant = shared ]; then prefix="$cache/cpython-$key"; else prefix="$cache/cpython-static-$key"; fi
if [ -e "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi
if [ $check = yes ]; then
  log "CPython ($variant) is not built: run python-demo/build-python.sh$([ $variant = static ] && echo " --static") (about 10 minutes)"
  exit 1
fi
start=$SECONDS
bash "$repo/toolchain/setup.sh"   # the sysroot, quick when it is already built

# 1. Build-machine packages (only what is missing). build-essential brings gcc, make and
#    dpkg-dev (dpkg-source); xz-utils unpacks the tarballs.
. "$repo/toolchain/debian.sh"
install_missing build-essential xz-utils

work="$cache/cpython-build-$key"
rm -rf "$work" "$prefix"; mkdir -p "$work"

# 2. CPython's source from Debian trixie, through a private apt configuration that holds only
#    a deb-src line (the machine's own apt sources stay untouched).
log "fetching python3.13 source from Debian trixie"
apt="$work/apt"
fetch_sources trixie "$apt" python3.13
dsc="$(echo "$apt/src"/python3.13_*.dsc)"
debian_version="$(sed -n 's/^Version: //p' "$dsc")"
case "$debian_version" in
  "$PY_VERSION"-*) ;;
  *) log "trixie now ships python3.13 $debian_version, not $PY_VERSION: update PY_VERSION"; exit 1;;
esac
# --no-check: apt already verified the files against the signed archive index.
dpkg-source --no-check --no-copy -x --skip-patches "$dsc" "$work/src" >/dev/null
src="$work/src"
# Our one source change, the call trampoline for extension functions declared with fewer
# parameters than CPython passes (see the patch's header and wasix_trampoline.c).
patch -s -p1 -d "$src" < "$here/cpython-wasix.patch"
cp "$here/wasix_trampoline.c" "$src/Python/"

# 3. The native build Python (a cross build runs the same version's interpreter for its code
#    generators, the frozen modules and compileall). Kept across builds: it only depends on
#    the source version. Used from its own source tree, nothing is installed.
native="$cache/cpython-native-$PY_VERSION"
native_time="cached"
if [ ! -e "$native/.complete" ]; then
  log "building the native build Python (about 4 minutes on 2 cores)"
  t=$SECONDS
  rm -rf "$native"
  dpkg-source --no-check --no-copy -x --skip-patches "$dsc" "$native" >/dev/null
  (cd "$native" && ./configure -q --without-ensurepip --disable-test-modules >/dev/null 2>&1 \
     && make -s -j2 all >"$native/make.log" 2>&1) \
    || { log "native build failed: see $native/config.log, $native/make.log"; exit 1; }
  touch "$native/.complete"
  native_time="$((SECONDS - t)) s"
  log "native build Python ready in $native_time"
fi
build_python="$native/python"

# 4. Cross configure for WASI with the wasix-dl drivers.
sysroot="$(python3 "$tc" sysroot)"
build="$work/build"; mkdir -p "$build"
# Configure decides which functions libc has by linking test programs. The driver links a main
# with --unresolved-symbols=import-dynamic (a missing function becomes an import, resolved at
# load time), so every such test would pass. During configure only, undefined symbols are errors
# except for the ones every main imports from the loader.
printf '%s\n' __heap_base __c_longjmp __cpp_exception > "$work/loader-imports.txt"
cat > "$work/config.site" <<SITE
. "$src/Tools/wasm/config.site-wasm32-wasi"
. "$here/config.site-wasix"
SITE
log "configuring CPython for wasm32-wasip1 (about 2.5 minutes)"
t=$SECONDS
# PKG_CONFIG_*: never find the build machine's zlib, readline, libffi, ... for the wasm host.
# ac_cv_*dlopen*: the sysroot's dlopen is the WASIX host call, so DYNLOADFILE=dynload_shlib.o.
# LINKFORSHARED is empty: the driver already makes a PIE main exporting libc and the C API.
# The compilers are named, not given by path, so that the install's sysconfig (which extension
# builds read) names no checkout: whoever builds against it puts toolchain/bin on PATH
# (build-package does).
export PATH="$repo/toolchain/bin:$PATH"
(cd "$build" && CONFIG_SITE="$work/config.site" PKG_CONFIG_PATH= \
   PKG_CONFIG_LIBDIR="$sysroot/lib/pkgconfig" \
   "$src/configure" --host=wasm32-wasip1 --build=x86_64-pc-linux-gnu \
     --with-build-python="$build_python" --prefix="$prefix" --without-ensurepip \
     CC=wasix-cc CXX=wasix-c++ LDSHARED="wasix-cc -shared" LDCXXSHARED="wasix-c++ -shared" \
     CCSHARED=-fPIC LINKFORSHARED= \
     LDFLAGS="-Wl,--unresolved-symbols=report-all -Wl,--allow-undefined-file=$work/loader-imports.txt" \
     ac_cv_func_dlopen=yes ac_cv_lib_dl_dlopen=no >"$work/configure.log" 2>&1) \
  || { tail -30 "$work/configure.log" >&2; log "configure failed: $work/configure.log"; exit 1; }
# Edits of configure's output:
# - the real links go back to the driver's defaults: drop the configure-only LDFLAGS, and the
#   WASI stack/memory sizes (-z stack-size, --stack-first, --initial-memory): with an imported
#   memory the loader owns the stack and the memory layout.
# - configure hard-codes *static* for the stdlib's extension modules (Modules/Setup.stdlib) on
#   wasm32; *shared* makes each one a side module in lib-dynload, loaded with dlopen.
#   What stays built into python.wasm is Modules/Setup.bootstrap, which CPython documents as
#   "required to get a functioning interpreter; cannot be built as shared": posix, _io,
#   _codecs, _sre, _thread, time, errno, _abc, itertools, _collections, _functools, _operator,
#   _weakref, _stat, _locale, _typing, _sysconfig, _symtable (needed by getpath, the import
#   system, encodings, site and stdio before anything can be dlopen'ed) and atexit,
#   faulthandler, _signal, _tracemalloc, _suggestions (the core calls their C functions), plus
#   the modules compiled into the core itself (sys, builtins, _imp, _warnings, _string,
#   marshal, _tokenize, _ast, gc). pwd would be there too but is n/a on WASI.
# - Setup.local adds the shared-only test modules configure leaves out on WASI.
# - mmap: configure marks it n/a on every WASI host ("WASI SDK 15.0 does not support ... mmap");
#   our libc has mmap (toolchain/sysroot-src/mman.c), so the module is built like the others.
sed -i -e 's/^CONFIGURE_LDFLAGS=.*/CONFIGURE_LDFLAGS=/' \
       -e 's/^CONFIGURE_LDFLAGS_NODIST=.*/CONFIGURE_LDFLAGS_NODIST=/' "$build/Makefile.pre"
if [ $variant = shared ]; then
  sed -i 's/^\*static\*$/*shared*/' "$build/Modules/Setup.stdlib"
  cp "$here/Setup.local" "$build/Modules/Setup.local"
fi
grep -q '^MODULE_MMAP_STATE=n/a$' "$build/Makefile.pre" &&
  grep -q '^#mmap mmapmodule.c$' "$build/Modules/Setup.stdlib" ||
  { log "configure no longer marks mmap n/a as expected"; exit 1; }
sed -i 's|^MODULE_MMAP_STATE=n/a$|MODULE_MMAP_STATE=yes|' "$build/Makefile.pre"
sed -i 's|^#mmap mmapmodule.c$|mmap mmapmodule.c|' "$build/Modules/Setup.stdlib"
configure_time=$((SECONDS - t))
log "configured in $configure_time s"

# 5. Build and install.
log "building python.wasm and the extension modules (about 2.5 minutes)"
t=$SECONDS
make -C "$build" -j2 all >"$work/make.log" 2>&1 \
  || { tail -40 "$work/make.log" >&2; log "make failed: $work/make.log"; exit 1; }
make -C "$build" install >"$work/install.log" 2>&1 \
  || { tail -30 "$work/install.log" >&2; log "make install failed: $work/install.log"; exit 1; }
make_time=$((SECONDS - t))
log "built and installed in $make_time s"
# Extension modules bind to python.wasm's exports at load time: the static library is unused.
rm -f "$prefix/lib/libpython$PY_MINOR.a"
# pip, as python.org's installers have it (`python -m pip`): the wheel CPython bundles for
# ensurepip, installed by the toolchain's host pip (ensurepip runs pip in a subprocess, which
# the guest cannot start). Without byte code (the host's Python is another version) and without
# the host's console scripts.
purelib="$prefix/lib/python$PY_MINOR/site-packages"
"$sysroot/tools/venv/bin/pip" install -q --disable-pip-version-check --no-index --no-deps \
  --no-compile --target "$purelib" "$src"/Lib/ensurepip/_bundled/pip-*.whl
rm -rf "$purelib/bin"

# 6. Strip debug info (python.wasm has ~15 MB of DWARF), but only where dylink.0 survives:
#    without it the loader would not see a dynamically linked module.
wasm_tools="$sysroot/tools/venv/bin/wasm-tools"
size_before=$(stat -c %s "$prefix/bin/python$PY_MINOR.wasm")
shopt -s nullglob
shared_modules=("$prefix/lib/python$PY_MINOR/lib-dynload"/*.so)
for m in "$prefix/bin/python$PY_MINOR.wasm" "${shared_modules[@]}"; do
  "$wasm_tools" strip "$m" -o "$m.stripped"
  # (grep without -q reads all of objdump's output: no SIGPIPE failure under pipefail)
  if "$wasm_tools" objdump "$m.stripped" | grep 'custom "dylink.0"' >/dev/null; then
    mv "$m.stripped" "$m"
  else
    rm "$m.stripped"; log "warning: strip would drop dylink.0 of $m; left unstripped"
  fi
done
size_after=$(stat -c %s "$prefix/bin/python$PY_MINOR.wasm")
ln -sfn "bin/python$PY_MINOR.wasm" "$prefix/python.wasm"

nshared=${#shared_modules[@]}
cat > "$prefix/BUILD-INFO" <<INFO
CPython $PY_VERSION from Debian trixie source package python3.13 $debian_version (without Debian patches, with cpython-wasix.patch)
toolchain key $(python3 "$tc" key)
python.wasm: $size_before bytes with debug info, $size_after stripped
extension modules in lib-dynload: $nshared, $(du -sb "$prefix/lib/python$PY_MINOR/lib-dynload" | cut -f1) bytes stripped
native build Python: $native_time; wasm configure: $configure_time s; wasm make + install: $make_time s
total: $((SECONDS - start)) s (2 cores)
INFO
log "python.wasm $size_before -> $size_after bytes, $nshared shared extension modules"
touch "$prefix/.complete"
rm -rf "$work"
log "done in $((SECONDS - start)) s: $prefix"
echo "$prefix"
