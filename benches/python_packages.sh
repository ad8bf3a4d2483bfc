#!/usr/bin/env bash
# The same workload of three packages with compiled extensions (markupsafe: C, msgpack: Cython,
# ujson: C++; benches/python_packages/workload.py) under wasix-dl (the WASIX CPython, wheels
# cross-built by python-demo/build-package) and natively (the native CPython 3.13.5 of the same
# source, the same sdists built natively with its own compiler). Prints the median of REPS
# (default 5) repetitions of each and the ratio, measured in the same run. Interpreter start-up
# and imports are not timed. WASIX_PYTHON_PREFIX picks another CPython install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
demo="$(dirname "$here")/python-demo"
reps="${REPS:-5}"
packages=(markupsafe msgpack ujson)

prefix="${WASIX_PYTHON_PREFIX:-$("$demo/build-python.sh" --check)}"
read -r tools native cache prefix < <("$demo/build-package" --prefix "$prefix" --tools-python)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
grep -E "^($(IFS='|'; echo "${packages[*]}"))==" "$demo/packages/requirements.txt" > "$work/req.txt"

key="$( { echo "$prefix"; cat "$work/req.txt"; } | sha256sum | cut -c1-16)"
site="$cache/python-bench-site-$key"
if [ ! -e "$site/.complete" ]; then
  rm -rf "$site"
  "$demo/build-package" --prefix "$prefix" --site "$site" -r "$work/req.txt" >/dev/null
  touch "$site/.complete"
fi
nkey="$( { echo "$native"; cat "$work/req.txt"; } | sha256sum | cut -c1-16)"
nvenv="$cache/python-bench-native-$nkey"
if [ ! -e "$nvenv/.complete" ]; then
  rm -rf "$nvenv"
  "$native" -m venv --without-pip "$nvenv"
  "$tools" -m pip --disable-pip-version-check --python "$nvenv/bin/python" install -q \
    --no-binary "$(IFS=,; echo "${packages[*]}")" --require-hashes -r "$work/req.txt" >&2
  touch "$nvenv/.complete"
fi

cd "$here/python_packages"
wasm="$(WASIX_PYTHON_PREFIX="$prefix" WASIX_PYTHON_SITE="$site" \
        "$demo/run-python" workload.py "$reps" "${packages[@]}")"
nat="$("$nvenv/bin/python" workload.py "$reps" "${packages[@]}")"
python3 - "$wasm" "$nat" "$reps" <<'PY'
import json, statistics, sys
wasm, nat, reps = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"median of {reps} runs   {'wasix-dl':>10} {'native':>10} {'ratio':>7}")
for name in wasm:
    w, n = statistics.median(wasm[name]), statistics.median(nat[name])
    print(f"{name:20} {w * 1000:8.1f} ms {n * 1000:7.1f} ms {w / n:6.2f}x")
PY
