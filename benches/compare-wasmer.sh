#!/usr/bin/env bash
# Runs the fixtures under `wasix-dl run` and under wasmer-cli 7.4's own dynamic linker, like
# for like: both with an empty compiled-module cache (cold, 3 runs, each with a fresh cache)
# and both with a warm one (a first run fills it, then 5 runs), reported separately as best
# and median wall-clock milliseconds. stdout, stderr and the exit status are compared
# (wasmer-cli's own warnings, lines starting with "WARN" or "warning:", are left out of its
# stderr). Not part of CI: the first run installs wasmer-cli with cargo into
# ~/.cache/wasix-dl/wasmer-cli (about 25 minutes on 2 cores).
# Usage: benches/compare-wasmer.sh [FIXTURE.wasm ...]
# The bench_threads*.wasm programs print their own spawn + join time (`spawn_join_ns`), so
# their outputs always differ: compare those numbers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WASIX_DL_CACHE:-$HOME/.cache/wasix-dl}"
wasmer="$cache/wasmer-cli/bin/wasmer"
if [ ! -x "$wasmer" ]; then
  echo "installing wasmer-cli 7.4.x into $cache/wasmer-cli (once)" >&2
  cargo install --locked --quiet wasmer-cli --version '~7.4' --no-default-features \
    --features cranelift,sys,wat --root "$cache/wasmer-cli"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasix-dl/cargo-target}"
(cd "$root" && cargo build --release --quiet && python3 fixtures/build.py >/dev/null)
wasix_dl="$CARGO_TARGET_DIR/release/wasix-dl"
# The C++ fixtures need libc++.so from the toolchain's system library directory at the
# guest's /lib: wasix-dl mounts it there itself, wasmer is told to.
system_lib="$(python3 "$root/toolchain/wasix_toolchain.py" system-libs)"
cd "$root/target/fixtures"
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=(hello.wasm uses_side.wasm dl_basic.wasm interpose.wasm weak.wasm
  fnptr.wasm ctors.wasm dl_local.wasm cxx_across.wasm longjmp_across.wasm setjmp.wasm exceptions.wasm
  startup10.wasm threads_basic.wasm threads_tls.wasm threads_lib_tls.wasm threads_many.wasm
  cxx_threads.wasm tls_across.wasm sync_blocked.wasm sync_stress.wasm fd_dup.wasm reflect.wasm
  dladdr.wasm rtld_next.wasm atexit_dlclose.wasm isatty.wasm
  bench_threads0.wasm bench_threads1.wasm bench_threads10.wasm)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# run WHO CACHE_DIR FIXTURE: runs it once (killed past 30 s: exit 124); leaves
# $scratch/WHO.{out,err,rc,ms}.
run() {
  local who="$1" dir="$2" f="$3" start end
  local cmd=("$wasix_dl" run --dir . "$f")
  [ "$who" = wasmer ] && cmd=("$wasmer" run --cache-dir "$dir" --dir . --volume "$system_lib:/lib" "$f")
  start=$(date +%s%N)
  set +e
  WASIX_DL_CACHE="$dir" timeout 30 "${cmd[@]}" >"$scratch/$who.out" 2>"$scratch/$who.err" </dev/null
  echo $? >"$scratch/$who.rc"
  set -e
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 )) >>"$scratch/$who.ms"
  [ "$who" = wasmer ] && sed -i -E '/^(WARN|warning:)/d' "$scratch/$who.err"
  return 0
}

# stats FILE: "best median" of the numbers in FILE.
stats() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%d %d", a[1], a[int((NR+1)/2)]}'; }

for f in "${fixtures[@]}"; do
  rm -f "$scratch"/*.ms
  for i in 1 2 3; do   # cold: a new, empty cache each run
    for who in wasix-dl wasmer; do run "$who" "$scratch/cold-$who-$i" "$f"; done
  done
  for who in wasix-dl wasmer; do mv "$scratch/$who.ms" "$scratch/$who.cold"; done
  for who in wasix-dl wasmer; do run "$who" "$scratch/warm-$who" "$f"; done   # fills the cache
  rm -f "$scratch"/*.ms
  for i in 1 2 3 4 5; do
    for who in wasix-dl wasmer; do run "$who" "$scratch/warm-$who" "$f"; done
  done
  read -r oc_best oc_med <<<"$(stats "$scratch/wasix-dl.cold")"
  read -r tc_best tc_med <<<"$(stats "$scratch/wasmer.cold")"
  read -r ow_best ow_med <<<"$(stats "$scratch/wasix-dl.ms")"
  read -r tw_best tw_med <<<"$(stats "$scratch/wasmer.ms")"
  differs=()
  cmp -s "$scratch/wasix-dl.out" "$scratch/wasmer.out" || differs+=(stdout)
  cmp -s "$scratch/wasix-dl.err" "$scratch/wasmer.err" || differs+=(stderr)
  cmp -s "$scratch/wasix-dl.rc" "$scratch/wasmer.rc" || differs+=("exit $(cat "$scratch/wasix-dl.rc") vs $(cat "$scratch/wasmer.rc")")
  verdict="same stdout, stderr and exit status"
  [ ${#differs[@]} -eq 0 ] || verdict="DIFFERENT: ${differs[*]}"
  printf '== %-22s %s\n' "$f" "$verdict"
  printf '   cold ms (best/median of 3)  wasix-dl %5d/%-5d  wasmer %5d/%-5d\n' \
    "$oc_best" "$oc_med" "$tc_best" "$tc_med"
  printf '   warm ms (best/median of 5)  wasix-dl %5d/%-5d  wasmer %5d/%-5d\n' \
    "$ow_best" "$ow_med" "$tw_best" "$tw_med"
  if [ ${#differs[@]} -gt 0 ]; then
    for stream in out err; do
      cmp -s "$scratch/wasix-dl.$stream" "$scratch/wasmer.$stream" && continue
      echo "   std$stream, wasix-dl | wasmer:"
      paste -d'|' <(cut -c1-70 "$scratch/wasix-dl.$stream") <(cut -c1-70 "$scratch/wasmer.$stream") |
        sed 's/^/     /' | head -12
    done
  fi
done
