//! The PyPI package matrix (python-demo/packages): popular packages with C, C++ and Cython
//! extensions, built from their pinned sdists by python-demo/build-package for the WASIX
//! CPython, each running its own test suite under run-python with pytest. Every failure, skip
//! and deselected test must be listed, with its reason, in python-demo/packages/expected.toml
//! (python-demo/test-packages.sh compares; a listed failure that passes fails too). Builds are
//! cached in ~/.cache/wasix-dl (about 7 minutes the first time); the suites take about 11.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

#[test]
fn popular_packages_build_from_their_sdists_and_pass_their_own_tests() {
    let mut cmd = Command::new(root().join("python-demo/test-packages.sh"));
    cmd.current_dir(root())
        .env("WASIX_DL", env!("CARGO_BIN_EXE_wasix-dl"));
    let out = output_within(cmd, b"", Duration::from_secs(3600));
    let report = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "the package matrix differs from python-demo/packages/expected.toml \
         (CPython not built? run python-demo/build-python.sh):\n{report}"
    );
    // Every package of the matrix ran its suite.
    let packages =
        std::fs::read_to_string(root().join("python-demo/packages/requirements.txt")).unwrap();
    for line in packages
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name = line.split("==").next().unwrap().trim();
        assert!(report.contains(name), "no result for {name}:\n{report}");
    }
}
