//! CPython 3.13 built for WASIX (python-demo/build-python.sh) running under wasix-dl through
//! python-demo/run-python: its standard-library C extensions, demo_ext and simplejson's
//! `_speedups` are side modules loaded with `dlopen`. The builds take about 10 minutes, so the
//! tests do not start them: `bash .ci/run` builds them first, and a missing build fails here
//! with the command to run.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// The directory build-extensions.sh made (site-packages/, error-cases/).
fn extensions() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("python-demo/build-extensions.sh"))
            .arg("--check")
            .output()
            .expect("bash runs python-demo/build-extensions.sh");
        assert!(
            out.status.success(),
            "CPython or the extensions are not built:\n{}",
            stderr(&out)
        );
        PathBuf::from(stdout(&out).trim())
    })
}

/// `python-demo/run-python ARGS...` in `cwd`, with the wasix-dl under test; `run_args` go to
/// `wasix-dl run` (e.g. `--env K=V`).
fn run_python_in(cwd: &Path, run_args: &str, args: &[&str]) -> Output {
    extensions();
    let mut cmd = Command::new(root().join("python-demo/run-python"));
    cmd.args(args)
        .current_dir(cwd)
        .env("WASIX_DL", env!("CARGO_BIN_EXE_wasix-dl"))
        .env("WASIX_DL_RUN_ARGS", run_args);
    output_within(cmd, b"", Duration::from_secs(600))
}

fn run_python(args: &[&str]) -> Output {
    run_python_in(extensions(), "", args)
}

/// Asserts a successful run and returns its stdout.
fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

#[test]
fn math_json_struct_and_demo_ext_load_from_shared_libraries() {
    let out = success(&run_python(&[
        "-c",
        "import math, _json, _struct, demo_ext\n\
         print(math.sqrt(16.0))\n\
         for m in (math, _json, _struct, demo_ext): print(m.__file__)",
    ]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("4.0"), "{out}");
    let files: Vec<&str> = lines.collect();
    assert_eq!(files.len(), 4, "{out}");
    for (file, dir) in
        files
            .iter()
            .zip(["lib-dynload", "lib-dynload", "lib-dynload", "site-packages"])
    {
        assert!(
            file.ends_with(".cpython-313-wasm32-wasi.so") && file.contains(dir),
            "{file} is not a shared library in {dir}"
        );
    }
}

#[test]
fn builtin_modules_are_only_the_bootstrap_set() {
    // Everything else in the stdlib is a side module; these must be in python.wasm itself.
    let out = success(&run_python(&[
        "-c",
        "import sys; print(' '.join(sorted(sys.builtin_module_names)))",
    ]));
    for name in [
        "math",
        "_json",
        "_struct",
        "array",
        "_datetime",
        "binascii",
        "_random",
        "zlib",
    ] {
        assert!(
            !out.split_whitespace().any(|m| m == name),
            "{name} is built in: {out}"
        );
    }
    assert!(out.contains("posix") && out.contains("_io"), "{out}");
}

#[test]
fn the_demo_script_runs() {
    let out = success(&run_python_in(root(), "", &["python-demo/demo.py"]));
    for expected in [
        "math.sqrt(16.0) = 4.0",
        "demo_ext.fib(100) = 354224848179261915075",
        "demo_ext.checksum(b'Wikipedia') = 0x11e60398",
        "squares from C calling Python: [0, 1, 4, 9, 16, 25]",
        "Counter(value=30, step=5)",
        "ValueError: fib() needs n >= 0, got -1",
        "DemoError: apply(): ",
        "json round trip: {'calls into demo_ext': 6}",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn demo_ext_passes_its_tests() {
    let out = run_python(&["-m", "unittest", "-v", "test_demo_ext"]);
    success(&out);
    let report = stderr(&out);
    assert!(
        report.contains("Ran 16 tests") && report.trim_end().ends_with("OK"),
        "{report}"
    );
}

#[test]
fn simplejson_with_its_c_speedups_passes_its_own_tests() {
    let out = success(&run_python(&[
        "-c",
        "import simplejson, simplejson._speedups as s\n\
         print(s.__file__)\n\
         print(simplejson._import_c_make_encoder() is not None)\n\
         print(simplejson.dumps({'a': [1, 2.5, None]}, sort_keys=True))",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("simplejson/_speedups.cpython-313-wasm32-wasi.so"),
        "{out}"
    );
    assert_eq!(lines[1..], ["True", r#"{"a": [1, 2.5, null]}"#], "{out}");

    // The package's suite runs every test twice, with and without the C speedups; the script
    // skips (with reasons) only the tests that need processes or threads.
    let out = success(&run_python_in(
        root(),
        "",
        &["python-demo/simplejson_tests.py"],
    ));
    assert!(
        out.contains("speedups: ")
            && out.contains("/simplejson/_speedups.cpython-313-wasm32-wasi.so"),
        "{out}"
    );
    assert!(
        out.contains("ran 568, failures 0, errors 0, skipped 85 (for WASI: 20)"),
        "{out}"
    );
}

#[test]
fn extensions_that_cannot_load_raise_import_error_with_the_linkers_message() {
    let script = format!(
        "import sys\n\
         sys.path.insert(0, {:?})\n\
         for name in ('needs_symbol', 'needs_library', 'not_wasm'):\n\
         \x20   try:\n\
         \x20       __import__(name)\n\
         \x20       print(name, 'imported')\n\
         \x20   except ImportError as e:\n\
         \x20       print(name, type(e).__name__, e.name, e.path.rsplit('/', 1)[-1], '|', e)\n\
         import math\n\
         print('still running', math.sqrt(4.0))",
        extensions().join("error-cases").display().to_string()
    );
    let out = success(&run_python(&["-c", &script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let so = ".cpython-313-wasm32-wasi.so";
    for (line, (name, message)) in lines.iter().zip([
        (
            "needs_symbol",
            "undefined symbol `demo_function_nobody_defines`",
        ),
        (
            "needs_library",
            "libdemo_helper.so: cannot open shared library: not found (needed by ",
        ),
        ("not_wasm", "not a WebAssembly module"),
    ]) {
        let head = format!("{name} ImportError {name} {name}{so} | ");
        assert!(line.starts_with(&head), "{line}");
        assert!(line.contains(message), "{line} should say {message:?}");
    }
    assert_eq!(lines[3], "still running 2.0");
    // The whole message, every path tried included, even past wasix-libc's 256 bytes.
    assert!(
        lines[1].len() > 300 && lines[1].ends_with("/usr/local/lib/libdemo_helper.so"),
        "{}",
        lines[1]
    );
}

/// Why a CPython regression test may be skipped here: the WASI platform (no processes;
/// wasm32 is a 32-bit platform), what wasix-dl does not do yet (threads), and the reasons
/// that apply on every platform (opt-in resources, debug builds, other operating systems).
const DOCUMENTED_SKIPS: &[&str] = &[
    "requires subprocess support",
    "requires threading support",
    "subinterpreters required",
    "resource 'cpu' is not enabled",
    "not enough memory: ",
    "requires 64bit platform",
    "has no attribute 'gettotalrefcount'",
    "this platform doesn't implement IEE 754-2008 properly",
    "requires a case-insensitive filesystem",
    "test meaningful only where os.altsep is defined",
    "No module named 'winreg'",
    "pyfakefs not available",
    "Desired but not supported.",
];

/// Runs CPython's regression tests `names` (python-demo/regrtest.py: `python -m test` with
/// dynamic loading acknowledged) and returns the verbose report. Every test passes or is
/// skipped for one of the [`DOCUMENTED_SKIPS`].
fn regression_tests(names: &[&str]) -> String {
    let mut args = vec!["python-demo/regrtest.py", "-v"];
    args.extend(names);
    let out = run_python_in(root(), "", &args);
    let report = stdout(&out);
    assert!(
        out.status.success() && report.contains("Result: SUCCESS"),
        "exit status {:?}\n{report}\n{}",
        out.status.code(),
        stderr(&out)
    );
    for line in report.lines().filter(|l| l.contains(" ... skipped ")) {
        assert!(
            DOCUMENTED_SKIPS.iter().any(|reason| line.contains(reason)),
            "skipped for an undocumented reason: {line}"
        );
    }
    report
}

#[test]
fn cpython_regression_tests_math_struct_array_zlib() {
    regression_tests(&["test_math", "test_struct", "test_array", "test_zlib"]);
}

#[test]
fn cpython_regression_tests_json() {
    let report = regression_tests(&["test_json"]);
    // The C accelerator (_json.so) is tested, not only the pure-Python fallback.
    assert!(
        report.contains("test.test_json.test_speedups.TestSpeedups")
            && !report.contains("requires _json"),
        "{report}"
    );
}

#[test]
fn cpython_regression_tests_importlib_with_its_extension_module_tests() {
    let report = regression_tests(&["test_importlib"]);
    // Loading, reloading and loading twice of single- and multi-phase extension modules.
    let extension_tests_passed = report
        .lines()
        .filter(|l| l.contains("test.test_importlib.extension.") && l.ends_with(" ... ok"))
        .count();
    assert!(
        extension_tests_passed >= 48,
        "{extension_tests_passed} passed:\n{report}"
    );
}
