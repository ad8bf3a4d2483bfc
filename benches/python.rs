//! CPython benchmark (`cargo bench --bench python`): interpreter start-up plus `import` of a
//! dozen standard-library C extension modules, under wasix-dl, for
//!
//! - the dynamically linked build (python-demo/build-python.sh: every extension module is a
//!   side module in lib-dynload, loaded with `dlopen`), and
//! - the same CPython with every extension module linked into python.wasm
//!   (`build-python.sh --static`, built here if missing: about 5 minutes),
//!
//! each with a cold module cache (everything compiled) and a warm one. The static build is the
//! baseline: the difference is the cost of dynamic linking.
//!
//! Then the call trampoline (python-demo/wasix_trampoline.c), in the dynamic build with
//! python-demo's extensions: one C function called through a pointer directly and through the
//! out-of-line trampoline (`fpcast_ext.bench_calls`), and Python-level calls of a METH_NOARGS
//! method typed exactly (CPython checks the cached count inline, then calls directly) and of
//! one defined without its unused argument (adapted by the trampoline).

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The modules imported; each is a .so in the dynamic build and built in in the static one.
const IMPORTS: &str = "import math, _json, _struct, array, _datetime, binascii, _random, \
                       unicodedata, _decimal, _pickle, _heapq, _bisect";

/// Seconds for one `python -c CODE` run with the module cache in `cache`; checks the output.
fn run(prefix: &Path, cache: &Path, code: &str) -> f64 {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wasix-dl"))
        .arg("run")
        .arg("--dir")
        .arg(prefix)
        .arg("--env")
        .arg(format!("PYTHONHOME={}", prefix.display()))
        .arg(prefix.join("bin/python3.13.wasm"))
        .args(["-c", code])
        .env("WASIX_DL_CACHE", cache)
        .env_remove("WASIX_DL_NO_CACHE")
        .output()
        .expect("run wasix-dl");
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{} {code:?} failed: {}{}",
        prefix.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

struct Times {
    cold: f64,
    warm: f64,
}

/// Median of 3 cold runs (each with a new, empty cache) and of 10 warm ones.
fn measure(prefix: &Path, scratch: &Path, code: &str) -> Times {
    let cold = median(
        (0..3)
            .map(|i| {
                let cache = scratch.join(format!("cold-{i}"));
                let t = run(prefix, &cache, code);
                std::fs::remove_dir_all(&cache).unwrap();
                t
            })
            .collect(),
    );
    let warm_cache = scratch.join("warm");
    run(prefix, &warm_cache, code);
    let warm = median((0..10).map(|_| run(prefix, &warm_cache, code)).collect());
    std::fs::remove_dir_all(&warm_cache).unwrap();
    Times { cold, warm }
}

/// What the trampoline adds to a call, measured inside one process (medians of 7 rounds).
const TRAMPOLINE: &str = r#"
import statistics, time, fpcast_ext
n = 2_000_000
direct = statistics.median(fpcast_ext.bench_calls(n, False) for _ in range(7)) / n
tramp = statistics.median(fpcast_ext.bench_calls(n, True) for _ in range(7)) / n
p = fpcast_ext.Point(1, 2)
def method_calls(method):
    start = time.perf_counter()
    for _ in range(n // 4):
        method()
    return (time.perf_counter() - start) / (n // 4)
exact = statistics.median(method_calls(p.norm1_exact) for _ in range(7))
fewer = statistics.median(method_calls(p.norm1) for _ in range(7))
print(f"direct_ns {direct * 1e9:.2f}")
print(f"trampoline_ns {tramp * 1e9:.2f}")
print(f"exact_method_ns {exact * 1e9:.2f}")
print(f"fewer_method_ns {fewer * 1e9:.2f}")
"#;

fn trampoline() {
    let out = Command::new(root().join("python-demo/run-python"))
        .args(["-c", TRAMPOLINE])
        .env("WASIX_DL", env!("CARGO_BIN_EXE_wasix-dl"))
        .output()
        .expect("run python-demo/run-python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the trampoline benchmark failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (direct, tramp, exact, fewer) = (
        metric(&text, "direct_ns"),
        metric(&text, "trampoline_ns"),
        metric(&text, "exact_method_ns"),
        metric(&text, "fewer_method_ns"),
    );
    println!("call trampoline (median of 7 x 2M calls, one process)");
    println!("  C call through a pointer, direct            {direct:>6.2} ns");
    println!(
        "  the same through the out-of-line trampoline {tramp:>6.2} ns   {:.2}x, +{:.2} ns",
        tramp / direct,
        tramp - direct
    );
    println!(
        "  Python-level METH_NOARGS method call, typed exactly (checked inline) {exact:>6.2} ns"
    );
    println!(
        "  the same method defined without its unused argument (adapted)        {fewer:>6.2} ns   {:.2}x",
        fewer / exact
    );
}

fn main() {
    trampoline();
    let dynamic = cpython(&[]);
    let fixed = cpython(&["--static"]);
    let scratch = root().join("target/bench-python");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();

    let imports = format!("{IMPORTS}; print('ok')");
    println!(
        "CPython 3.13 under wasix-dl (median; cold: 3 runs with an empty module cache, warm: 10)"
    );
    println!("                                      dynamic     static   dynamic/static");
    for (what, code) in [
        ("start-up only (python -c pass)", "print('ok')"),
        ("start-up + import of 12 C modules", imports.as_str()),
    ] {
        let d = measure(&dynamic, &scratch, code);
        let s = measure(&fixed, &scratch, code);
        println!("{what}");
        for (cache, dt, st) in [("cold", d.cold, s.cold), ("warm", d.warm, s.warm)] {
            println!(
                "  {cache}                            {:>8.1} ms {:>7.1} ms   {:.2}x",
                dt * 1e3,
                st * 1e3,
                dt / st
            );
        }
    }
}
