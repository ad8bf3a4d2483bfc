//! What the benchmark binaries share: where things are, building the fixtures and CPython,
//! reading the numbers a benchmark program prints, and the median.
#![allow(dead_code)] // each bench uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fixtures directory, built first by fixtures/build.py.
pub fn fixtures() -> PathBuf {
    let dir = root().join("target").join("fixtures");
    let status = Command::new("python3")
        .arg(root().join("fixtures/build.py"))
        .arg(&dir)
        .status()
        .expect("python3 runs fixtures/build.py");
    assert!(
        status.success(),
        "building the fixtures failed: run toolchain/setup.sh first"
    );
    dir
}

/// The install directory printed by `python-demo/build-python.sh ARGS` (built if missing).
pub fn cpython(args: &[&str]) -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("python-demo/build-python.sh"))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("bash runs python-demo/build-python.sh");
    assert!(out.status.success(), "building CPython {args:?} failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The value of a `name value` line printed by a benchmark program.
pub fn metric(output: &str, name: &str) -> f64 {
    output
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{output}"))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
