//! File I/O through the runtime (`cargo bench --bench fileio`) against the same program built
//! with gcc under glibc, in the same run: nanoseconds per operation for 1-byte writes,
//! appending 1-byte writes, 64 KiB writes and reads, stat, and open+close of a file in a
//! mapped host directory, median of 5 runs. Fixture bench_fileio.

mod common;
use common::*;

use std::process::Command;

const OPS: [&str; 6] = [
    "write_1_byte",
    "append_1_byte",
    "write_64k",
    "read_64k",
    "stat",
    "open_close",
];

/// Median ns per operation of 5 runs of `make()`, one value per [`OPS`] entry.
fn measure(make: impl Fn() -> Command) -> Vec<f64> {
    let runs: Vec<String> = (0..5)
        .map(|_| {
            let out = make().output().expect("run the benchmark");
            assert!(out.status.success(), "the benchmark failed: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    (OPS.iter())
        .map(|op| median(runs.iter().map(|out| metric(out, op)).collect()))
        .collect()
}

fn main() {
    let fixtures = fixtures();
    let scratch = root().join("target").join("bench-fileio");
    std::fs::create_dir_all(&scratch).unwrap();
    let wasm = measure(|| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasix-dl"));
        cmd.args(["run", "--dir", "."])
            .arg(fixtures.join("bench_fileio.wasm"))
            .current_dir(&scratch);
        cmd
    });
    let native = measure(|| {
        let mut cmd = Command::new(fixtures.join("native").join("bench_fileio"));
        cmd.current_dir(&scratch);
        cmd
    });
    println!("file I/O in a mapped directory, ns per operation, median of 5 runs");
    println!("                   wasix-dl      glibc    ratio");
    for ((op, w), n) in OPS.iter().zip(&wasm).zip(&native) {
        println!("  {op:<14} {w:>10.0} {n:>10.0} {:>8.1}x", w / n);
    }
}
