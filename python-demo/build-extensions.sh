#!/usr/bin/env bash
# Builds the C extension modules that run-python puts on the path, as side modules for the WASIX
# CPython (build-python.sh), each compiled with toolchain/bin/wasix-cc:
#   site-packages/demo_ext*.so           this project's demo extension (python-demo/demo_ext)
#   site-packages/fpcast_ext*.so         functions cast to wider types (CPython's trampoline)
#   site-packages/demo_cxx*.so           its C++ sibling (wasix-c++): needs libc++.so, which
#                                        the runtime finds in the guest's /lib
#   site-packages/simplejson/            simplejson from its PyPI sdist, with the _speedups C
#                                        module and the package's own tests
#   error-cases/                         extensions that must fail to import with a clear
#                                        ImportError (tests/python.rs): a missing symbol, a
#                                        missing library, a file that is not wasm
#   cpython-prefix                       the CPython install they were built for
# Idempotent; cached in $cache/python-ext-$key ($key: the CPython install, the sources, this
# script). Progress goes to stderr; stdout gets only the output directory.
# --check: print the directory if it is built, else say what to run and exit 1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
tc="$repo/toolchain/wasix_toolchain.py"
log() { printf '[extensions] %s\n' "$*" >&2; }

if [ "${1:-}" = --check ]; then
  prefix="$("$here/build-python.sh" --check)"
else
  prefix="$("$here/build-python.sh")"
fi
cache="$(python3 "$tc" cache-dir)"
key="$( { echo "$prefix"; cat "${BASH_SOURCE[0]}" "$here/requirements-ext.txt" "$here"/demo_ext/*; } \
        | sha256sum | cut -c1-16)"
out="$cache/python-ext-$key"
if [ -e "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
if [ "${1:-}" = --check ]; then
  log "the extension modules are not built: run python-demo/build-extensions.sh (under a minute)"
  exit 1
fi

rm -rf "$out"
site="$out/site-packages" errors="$out/error-cases" work="$out/work"
mkdir -p "$site" "$errors" "$work"
py_include="$(echo "$prefix"/include/python3.*)"
# The interpreter's own file name suffix for extension modules (.cpython-313-wasm32-wasi.so).
ext_suffix="$(python3 -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["build_time_vars"]["EXT_SUFFIX"])' \
              "$(echo "$prefix"/lib/python3.*/_sysconfigdata_*.py)")"
cc() { "$repo/toolchain/bin/wasix-cc" -O2 -fPIC -Wall -I"$py_include" "$@"; }

log "demo_ext"
cc -Werror -shared "$here/demo_ext/demo_ext.c" -o "$site/demo_ext$ext_suffix"
cp "$here/demo_ext/test_demo_ext.py" "$site/"

# Functions registered under wider types than they are defined with (CPython's call trampoline).
log "fpcast_ext"
cc -shared "$here/demo_ext/fpcast_ext.c" -o "$site/fpcast_ext$ext_suffix"
cp "$here/demo_ext/test_fpcast_ext.py" "$site/"

log "demo_cxx"
"$repo/toolchain/bin/wasix-c++" -O2 -fPIC -Wall -Werror -I"$py_include" -shared \
  "$here/demo_ext/demo_cxx.cpp" -o "$site/demo_cxx$ext_suffix"

# simplejson from PyPI, pinned by version and hash (pip checks it).
log "simplejson (PyPI sdist)"
pip="$(python3 "$tc" sysroot)/tools/venv/bin/pip"
"$pip" download -q --disable-pip-version-check --no-binary :all: --no-deps --require-hashes \
  -r "$here/requirements-ext.txt" -d "$work"
tar -xzf "$work"/simplejson-*.tar.gz -C "$work"
sj="$(echo "$work"/simplejson-*/)"
cp -r "$sj/simplejson" "$site/"
cc -shared "$sj/simplejson/_speedups.c" -o "$site/simplejson/_speedups$ext_suffix"
rm "$site/simplejson/_speedups.c" "$site/simplejson/_speedups_scan.h"

# Extensions that cannot be loaded, each for a different reason.
log "error cases"
cat > "$work/needs_symbol.c" <<'C'
#include <Python.h>
void demo_function_nobody_defines(void);
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "needs_symbol", NULL, 0, NULL};
PyMODINIT_FUNC PyInit_needs_symbol(void) {
    demo_function_nobody_defines();
    return PyModule_Create(&def);
}
C
cc -shared "$work/needs_symbol.c" -o "$errors/needs_symbol$ext_suffix"
printf 'int demo_helper(void) { return 1; }\n' > "$work/helper.c"
cc -shared "$work/helper.c" -o "$work/libdemo_helper.so"
cat > "$work/needs_library.c" <<'C'
#include <Python.h>
int demo_helper(void);
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "needs_library", NULL, 0, NULL};
PyMODINIT_FUNC PyInit_needs_library(void) {
    return demo_helper() ? PyModule_Create(&def) : NULL;
}
C
# Linked against libdemo_helper.so, which is left out of every search path.
cc -shared "$work/needs_library.c" "$work/libdemo_helper.so" -o "$errors/needs_library$ext_suffix"
printf 'This is a text file, not a WebAssembly module.\n' > "$errors/not_wasm$ext_suffix"

rm -rf "$work"
echo "$prefix" > "$out/cpython-prefix"   # the CPython these were built for (run-python)
touch "$out/.complete"
log "done: $out"
echo "$out"
