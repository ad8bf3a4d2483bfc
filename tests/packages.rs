//! The PyPI package matrix (python-demo/packages): popular packages with C, C++ and Cython
//! extensions, built from their pinned sdists by python-demo/build-package for the WASIX
//! CPython, each running its own test suite under run-python with pytest. Every failure, skip
//! and deselected test must be listed, with its reason, in python-demo/packages/expected.toml
//! (python-demo/test-packages.sh compares; a listed failure that passes fails too). Builds are
//! cached in ~/.cache/wasix-dl (about 7 minutes the first time); the suites take about 11.

mod common;
use common::*;

use std::path::Path;
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

/// `python -m pip install FILE.whl` inside the guest, as a user installs a wheel: the example
/// package (python-demo/packages/example, a C extension built by build-package --wheels-only)
/// installs into run-python's site directory with the pip that comes with the CPython install,
/// imports from there in a fresh interpreter, is listed by `pip list`, and uninstalls.
#[test]
fn pip_in_the_guest_installs_lists_and_uninstalls_a_wheel() {
    let work = scratch("pip_in_the_guest");
    let site = work.join("site");
    let mut build = Command::new(root().join("python-demo/build-package"));
    build
        .args(["--wheels-only", "python-demo/packages/example"])
        .current_dir(root());
    let wheels = run_tool(build);
    let built = Path::new(
        wheels
            .lines()
            .last()
            .expect("build-package printed no wheel")
            .trim(),
    );
    // The guest sees run-python's working directory: the wheel goes there, as a user's would.
    let wheel = built.file_name().unwrap().to_str().unwrap();
    assert!(wheel.ends_with(".whl"), "not a wheel: {wheel}");
    std::fs::copy(built, work.join(wheel)).unwrap();

    let python = |args: &[&str]| {
        let mut cmd = Command::new(root().join("python-demo/run-python"));
        cmd.args(args)
            .current_dir(&work)
            .env("WASIX_DL", env!("CARGO_BIN_EXE_wasix-dl"))
            .env("WASIX_PYTHON_SITE", &site);
        run_tool(cmd)
    };
    let installed = python(&["-m", "pip", "install", "--no-deps", "--no-index", wheel]);
    assert!(
        installed.contains("Successfully installed wasix-example-1.0"),
        "{installed}"
    );
    assert!(
        site.join("wasix_example").is_dir(),
        "not installed into {}",
        site.display()
    );
    let used = python(&[
        "-c",
        "import wasix_example, os\n\
         print(wasix_example.fletcher16(b'abcde'), wasix_example.pointer_bits())\n\
         print(os.path.dirname(os.path.dirname(wasix_example.__file__)))",
    ]);
    assert_eq!(used, format!("51440 32\n{}\n", site.display()));
    let listed = python(&["-m", "pip", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["wasix-example", "1.0"]),
        "pip list:\n{listed}"
    );
    let removed = python(&["-m", "pip", "uninstall", "-y", "wasix-example"]);
    assert!(
        removed.contains("Successfully uninstalled wasix-example-1.0"),
        "{removed}"
    );
    assert!(
        !site.join("wasix_example").exists(),
        "still in {}",
        site.display()
    );
}

/// Runs a command that must succeed within ten minutes; returns its stdout.
fn run_tool(cmd: Command) -> String {
    let shown = format!("{cmd:?}");
    let out = output_within(cmd, b"", Duration::from_secs(600));
    assert!(
        out.status.success(),
        "{shown} failed ({:?}; CPython not built? run python-demo/build-python.sh):\n{}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}
