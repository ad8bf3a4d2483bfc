//! Embedding (`cargo bench --bench embed`): a warm run of a small program and of
//! `python -c pass` on a shared `Runtime` in this process, against a fresh `wasix-dl run`
//! process with a warm module cache, in the same run; median of 10 each.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use wasix_dl::{MappedDir, Output, Program, Runtime};

/// Seconds for one `wasix-dl run` process of `program` (its arguments after `run`).
fn process(cache: &Path, args: &[String]) -> f64 {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wasix-dl"))
        .arg("run")
        .args(args)
        .env("WASIX_DL_CACHE", cache)
        .env_remove("WASIX_DL_NO_CACHE")
        .output()
        .expect("run wasix-dl");
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Seconds for one run of `program` on `runtime`.
fn shared(runtime: &Runtime, program: &Program) -> f64 {
    let start = Instant::now();
    let out = program.output_on(runtime).expect("the program runs");
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
    elapsed
}

fn compare(what: &str, cache: &Path, args: Vec<String>, program: Program) {
    let runtime = Runtime::builder()
        .cache_dir(Some(cache.join("modules")))
        .build()
        .unwrap();
    process(cache, &args); // fills the disk cache
    shared(&runtime, &program); // and this runtime's memory
    let fresh = median((0..10).map(|_| process(cache, &args)).collect());
    let warm = median((0..10).map(|_| shared(&runtime, &program)).collect());
    println!(
        "  {what:24} {:8.1} ms {:8.1} ms   {:.2}x faster",
        fresh * 1e3,
        warm * 1e3,
        fresh / warm
    );
}

fn main() {
    let fixtures = fixtures();
    let prefix = cpython(&["--check"]);
    let scratch = root().join("target").join("bench-embed");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let cache = scratch.join("cache");

    println!("a warm run (median of 10): fresh `wasix-dl run` process vs a shared Runtime");
    let hello = fixtures.join("hello.wasm");
    compare(
        "hello (C, no library)",
        &cache,
        vec![hello.display().to_string()],
        Program::new(&hello).stdout(Output::Capture),
    );
    let uses_side = fixtures.join("uses_side.wasm");
    compare(
        "uses_side (C, 1 library)",
        &cache,
        vec![
            "--dir".into(),
            fixtures.display().to_string(),
            uses_side.display().to_string(),
        ],
        Program::new(&uses_side)
            .dir(MappedDir::parse(&fixtures.display().to_string()).unwrap())
            .stdout(Output::Capture),
    );
    let python = prefix.join("bin/python3.13.wasm");
    let home = format!("PYTHONHOME={}", prefix.display());
    compare(
        "python -c pass",
        &cache,
        vec![
            "--dir".into(),
            prefix.display().to_string(),
            "--env".into(),
            home.clone(),
            python.display().to_string(),
            "-c".into(),
            "pass".into(),
        ],
        Program::new(&python)
            .dir(MappedDir::parse(&prefix.display().to_string()).unwrap())
            .env("PYTHONHOME", prefix.display().to_string())
            .args(["-c", "pass"])
            .stdout(Output::Capture),
    );
}
