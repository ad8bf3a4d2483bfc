//! dlopen + two dlsym + dlclose in a loop (`cargo bench --bench dlopen`), against the same
//! program built with gcc under glibc in the same run: per-round time and the peak host memory
//! (RSS) of the process, for a 16-byte library and one with 1 MiB of initialised data, at 500,
//! 5000 and 20000 rounds (the memory curve of a long-running program). Fixtures bench_reopen*.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd` to its end; its stdout and its peak RSS in KiB (from wait4's rusage).
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's wait does not expose
fn run_measured(mut cmd: Command) -> (String, u64) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the benchmark");
    let pid = child.id() as libc::pid_t;
    let stdout = {
        use std::io::Read;
        let mut out = String::new();
        child
            .stdout
            .expect("piped")
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert!(
        waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the benchmark failed: {stdout}"
    );
    (stdout, usage.ru_maxrss as u64)
}

/// Median per-round microseconds and median peak RSS (MB) of 5 runs.
fn measure(make: impl Fn() -> Command) -> (f64, f64) {
    let runs: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let (out, rss) = run_measured(make());
            (metric(&out, "round_ns") / 1e3, rss as f64 / 1024.0)
        })
        .collect();
    (
        median(runs.iter().map(|r| r.0).collect()),
        median(runs.iter().map(|r| r.1).collect()),
    )
}

fn main() {
    let fixtures = fixtures();
    let native = fixtures.join("native");
    let wasm = |dir: &Path, lib: &str, rounds: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasix-dl"));
        cmd.args(["run", "--dir", "."])
            .args(["bench_reopen.wasm", lib, rounds])
            .current_dir(dir);
        cmd
    };
    let glibc = |lib: &str, rounds: &str| {
        let mut cmd = Command::new(native.join("bench_reopen"));
        cmd.args([lib, rounds]).current_dir(&native);
        cmd
    };
    println!("dlopen + 2 dlsym + dlclose per round, median of 5 runs (per-round time; peak RSS)");
    println!(
        "                                  wasix-dl     glibc    ratio   RSS wasix-dl / glibc"
    );
    for (what, lib) in [
        ("16 bytes of data", "./libbench_reopen_small.so"),
        ("1 MiB of data", "./libbench_reopen_1m.so"),
    ] {
        for rounds in ["500", "5000", "20000"] {
            let (w_us, w_rss) = measure(|| wasm(&fixtures, lib, rounds));
            let (n_us, n_rss) = measure(|| glibc(lib, rounds));
            println!(
                "  {what:<17} {rounds:>6} rounds {w_us:>8.1} us {n_us:>7.1} us {:>6.2}x   {w_rss:>6.1} MB / {n_rss:.1} MB",
                w_us / n_us
            );
        }
    }
}
