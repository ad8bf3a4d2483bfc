#!/usr/bin/env bash
# Runs the fixtures under `wasix-dl run` and under wasmer-cli 7.4's own dynamic linker, and
# prints both outputs and wall-clock times side by side. Not part of CI: the first run
# installs wasmer-cli with cargo into ~/.cache/wasix-dl/wasmer-cli (about 25 minutes on 2
# cores). Usage: benches/compare-wasmer.sh [FIXTURE.wasm ...]
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
(cd "$root" && cargo build --release --quiet && python3 fixtures/build.py >/dev/null)
wasix_dl="${CARGO_TARGET_DIR:-$root/target}/release/wasix-dl"
# The C++ fixtures need libc++.so from the toolchain's system library directory at the
# guest's /lib: wasix-dl mounts it there itself, wasmer is told to.
system_lib="$(python3 "$root/toolchain/wasix_toolchain.py" system-libs)"
cd "$root/target/fixtures"
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=(hello.wasm uses_side.wasm dl_basic.wasm interpose.wasm weak.wasm
  fnptr.wasm ctors.wasm dl_local.wasm cxx_across.wasm longjmp_across.wasm setjmp.wasm exceptions.wasm
  startup10.wasm threads_basic.wasm threads_tls.wasm threads_lib_tls.wasm threads_many.wasm
  cxx_threads.wasm tls_across.wasm sync_blocked.wasm sync_stress.wasm fd_dup.wasm reflect.wasm
  bench_threads0.wasm bench_threads1.wasm bench_threads10.wasm)

run_timed() { # prints "exit milliseconds" on the first line, then the output
  local start end rc out
  start=$(date +%s%N)
  set +e
  # stdout only (wasmer prints deprecation warnings); a run past 30 s is killed: exit 124
  out="$(timeout 30 "$@" 2>/dev/null </dev/null)"; rc=$?
  set -e
  end=$(date +%s%N)
  printf '%s %d\n%s\n' "$rc" "$(( (end - start) / 1000000 ))" "$out"
}

for f in "${fixtures[@]}"; do
  ours="$(run_timed "$wasix_dl" run --dir . "$f")"
  theirs="$(run_timed "$wasmer" run --dir . --volume "$system_lib:/lib" "$f")"
  read -r our_rc our_ms <<<"$(head -1 <<<"$ours")"
  read -r their_rc their_ms <<<"$(head -1 <<<"$theirs")"
  if [ "$(tail -n +2 <<<"$ours")" = "$(tail -n +2 <<<"$theirs")" ] && [ "$our_rc" = "$their_rc" ]; then
    verdict="same output"
  else
    verdict="DIFFERENT output"
  fi
  printf '== %-22s wasix-dl %5d ms (exit %s)   wasmer %5d ms (exit %s)   %s\n' \
    "$f" "$our_ms" "$our_rc" "$their_ms" "$their_rc" "$verdict"
  if [ "$verdict" != "same output" ]; then
    paste -d'|' <(tail -n +2 <<<"$ours" | cut -c1-70) <(tail -n +2 <<<"$theirs" | cut -c1-70) |
      sed 's/^/   /' | head -20
  fi
done
