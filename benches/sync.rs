//! Sync-protocol benchmarks (`cargo bench --bench sync`), each against its baseline in the same
//! run:
//!
//! - `dlopen` + `dlclose` latency of a small library with no other thread, with 16 threads
//!   blocked in `read()`, and with 16 threads computing and making host calls (every one of
//!   them instantiates the library before the dlopen returns);
//! - the epoch checks' cost on CPU-bound code: a C program (tight loops, recursion, a dispatch
//!   loop) and a pure-Python workload under CPython, compiled with and without the checks.
//!
//! The cost of the host-call wrapper itself (state word and epoch compare) is in
//! `cargo bench --bench linker`.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

/// Runs `wasix-dl run FLAGS --dir DIR ARGS` with the module cache in `cache`; its stdout.
fn wasix_dl(dir: &Path, cache: &Path, flags: &[&str], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasix-dl"))
        .arg("run")
        .args(flags)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .current_dir(dir)
        .env("WASIX_DL_CACHE", cache)
        .env_remove("WASIX_DL_NO_CACHE")
        .output()
        .expect("run wasix-dl");
    assert!(
        out.status.success(),
        "{flags:?} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pure Python, no host calls inside the timed part: calls, loops, dicts, strings.
const PYTHON_WORKLOAD: &str = r#"
import time
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def loops():
    d = {}
    for i in range(400000):
        k = i % 1000
        d[k] = d.get(k, 0) + i
    return sum(d.values())
def strings():
    return len(",".join(str(i) for i in range(200000)).split(","))
t = time.perf_counter()
fib(24); loops(); strings()
print("python_ms", (time.perf_counter() - t) * 1000)
"#;

fn main() {
    let fixtures = fixtures();
    let scratch = root().join("target").join("bench-sync");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let cache = scratch.join("cache");

    // dlopen/dlclose with other threads: median of 5 runs of 100 rounds each.
    println!("dlopen + dlclose of a small library (us per round, median of 5 runs of 100)");
    let round = |mode: &str| {
        let runs: Vec<(f64, f64)> = (0..5)
            .map(|_| {
                let out = wasix_dl(&fixtures, &cache, &[], &["bench_sync.wasm", mode, "100"]);
                (metric(&out, "dlopen_ns"), metric(&out, "dlclose_ns"))
            })
            .collect();
        (
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
        )
    };
    wasix_dl(&fixtures, &cache, &[], &["bench_sync.wasm", "none", "1"]); // fills the cache
    let (open0, close0) = round("none");
    println!(
        "  no other thread                   dlopen {:8.1}   dlclose {:8.1}",
        open0 / 1e3,
        close0 / 1e3
    );
    for (what, mode) in [
        ("16 threads blocked in read()", "io"),
        ("16 threads computing + host calls", "busy"),
    ] {
        let (open, close) = round(mode);
        println!(
            "  {what:<33} dlopen {:8.1}   dlclose {:8.1}   {:.2}x / {:.2}x no other thread",
            open / 1e3,
            close / 1e3,
            open / open0,
            close / close0
        );
    }

    // Epoch checks on CPU-bound C: best of 5 with and without, same cache, same run.
    println!("epoch checks on CPU-bound code (ms, best of 5)");
    let best = |flags: &[&str], dir: &Path, args: &[&str], name: &str| {
        wasix_dl(dir, &cache, flags, args); // compiles this form once
        (0..5)
            .map(|_| metric(&wasix_dl(dir, &cache, flags, args), name))
            .fold(f64::INFINITY, f64::min)
    };
    for part in ["sieve_ms", "fib_ms", "interpreter_ms", "total_ms"] {
        let off = best(&["--no-epoch-checks"], &fixtures, &["bench_cpu.wasm"], part);
        let on = best(&[], &fixtures, &["bench_cpu.wasm"], part);
        println!(
            "  C {:<16} without {off:8.1}   with {on:8.1}   {:+.1}%",
            part.trim_end_matches("_ms"),
            (on / off - 1.0) * 100.0
        );
    }

    // And under CPython (its eval loop is one big dispatch loop).
    let prefix = cpython(&[]);
    let python = prefix.join("bin/python3.13.wasm");
    let home = format!("PYTHONHOME={}", prefix.display());
    let args = [
        "--env",
        home.as_str(),
        python.to_str().unwrap(),
        "-c",
        PYTHON_WORKLOAD,
    ];
    let off = best(&["--no-epoch-checks"], &prefix, &args, "python_ms");
    let on = best(&[], &prefix, &args, "python_ms");
    println!(
        "  CPython workload   without {off:8.1}   with {on:8.1}   {:+.1}%",
        (on / off - 1.0) * 100.0
    );
}
