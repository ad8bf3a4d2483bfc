#!/usr/bin/env bash
# Builds the package matrix (packages/requirements.txt: PyPI sdists with compiled extensions,
# pinned by version and hash) for the WASIX CPython with build-package, runs each package's own
# test suite under run-python with pytest, and compares the outcome with packages/expected.toml
# (every failure, skip and deselected test with its reason).
#   test-packages.sh [PACKAGE...]
# Prints a per-package summary; exit status 1 on anything expected.toml does not list.
# Cached in $cache/python-pkgtest-<key> (the CPython install, the pins, these scripts): a second
# run only runs the tests. WASIX_PYTHON_PREFIX picks another CPython install than
# build-python.sh's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
explicit=()
if [ -n "${WASIX_PYTHON_PREFIX:-}" ]; then
  prefix="$WASIX_PYTHON_PREFIX" explicit=(--prefix-explicit)
else
  prefix="$("$here/build-python.sh" --check)"
fi
read -r tools native cache prefix < <("$here/build-package" --prefix "$prefix" --tools-python)
PYTHONPATH="$here/packages" exec "$tools" "$here/packages/test_packages.py" --prefix "$prefix" \
  ${explicit[@]+"${explicit[@]}"} --native "$native" --cache "$cache" "$@"
