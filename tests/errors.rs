//! Bad input gets a clear error naming the module and the cause — never a panic, a hang or a
//! half-loaded program: broken files, hostile dylink.0 sizes, type mismatches, cycles, paths
//! that try to leave the sandbox.

mod common;
use common::*;

/// A directory holding `uses_side.wasm` (which needs libside.so through $ORIGIN) and the given
/// file as its libside.so.
fn with_libside(name: &str, libside: &[u8]) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::copy(fixture("uses_side.wasm"), dir.join("uses_side.wasm")).unwrap();
    std::fs::write(dir.join("libside.so"), libside).unwrap();
    dir
}

/// What uses_side.wasm needs from its libside.so.
const SIDE_ADD: &str = r#"(func (export "side_add") (param i32 i32) (result i32) i32.const 0)"#;

fn wat(text: &str) -> Vec<u8> {
    wasmer::wat2wasm(text.as_bytes()).unwrap().into_owned()
}

fn startup_error(dir: &std::path::Path) -> String {
    let out = run_in(dir, &["--dir", ".", "uses_side.wasm"], b"");
    assert_eq!(out.status.code(), Some(127), "stdout: {}", stdout(&out));
    assert_eq!(stdout(&out), "", "nothing may run when loading fails");
    stderr(&out)
}

#[test]
fn hostile_memory_size_in_a_library() {
    let lib = wat(r#"(module (@dylink.0 (mem-info (memory 4294901760 4))))"#);
    let err = startup_error(&with_libside("hostile-mem", &lib));
    assert!(
        err.contains("libside.so") && err.contains("does not fit in a 4 GiB"),
        "{err}"
    );
}

#[test]
fn hostile_table_size_in_a_library() {
    let lib = wat(r#"(module (@dylink.0 (mem-info (table 2147483647 0))))"#);
    let err = startup_error(&with_libside("hostile-table", &lib));
    assert!(
        err.contains("libside.so") && err.contains("table size 2147483647"),
        "{err}"
    );
}

#[test]
fn libraries_that_together_overflow_the_function_table() {
    // Fits alone in the 262144-slot table, but not after main's own slots.
    let lib = wat(&format!(
        r#"(module (@dylink.0 (mem-info (table 262144 0))) {SIDE_ADD})"#
    ));
    let err = startup_error(&with_libside("table-overflow", &lib));
    assert!(
        err.contains("libside.so")
            && err.contains("table size 262144 in mem-info does not fit in the function table"),
        "{err}"
    );
}

#[test]
fn a_wasm64_library_is_refused_as_unsupported() {
    let lib = wat(r#"(module (@dylink.0 (mem-info)) (import "env" "memory" (memory i64 1)))"#);
    let err = startup_error(&with_libside("wasm64", &lib));
    assert!(
        err.contains("libside.so")
            && err.contains("64-bit memory (wasm64) modules are not supported"),
        "{err}"
    );
}

#[test]
fn truncated_dylink_section() {
    // dylink.0 announcing a 5-byte mem-info subsection that is cut short.
    let mut lib = b"\0asm\x01\0\0\0\0\x0b\x08dylink.0\x01\x05".to_vec();
    lib.push(0x01);
    let err = startup_error(&with_libside("truncated", &lib));
    assert!(err.contains("libside.so"), "{err}");
}

#[test]
fn a_library_without_dylink_and_a_program_as_library() {
    let err = startup_error(&with_libside("no-dylink", &wat("(module)")));
    assert!(
        err.contains("libside.so: not a shared library (no dylink.0 section)"),
        "{err}"
    );
    let err = startup_error(&with_libside(
        "program",
        &std::fs::read(fixture("hello.wasm")).unwrap(),
    ));
    assert!(err.contains("cannot dynamically load a program"), "{err}");
}

#[test]
fn an_import_of_the_wrong_kind() {
    let lib = wat(&format!(
        r#"(module (@dylink.0 (mem-info)) (import "GOT.mem" "x" (global i32)) {SIDE_ADD})"#
    ));
    let err = startup_error(&with_libside("wrong-kind", &lib));
    assert!(
        err.contains("cannot bind import GOT.mem.x: expected a mutable i32 global"),
        "{err}"
    );
}

#[test]
fn an_undefined_symbol_names_module_and_symbol() {
    let lib = wat(&format!(
        r#"(module (@dylink.0 (mem-info)) (import "env" "nobody_defines_this" (func (param i32))) {SIDE_ADD})"#
    ));
    let err = startup_error(&with_libside("undefined", &lib));
    assert!(
        err.contains("libside.so: cannot bind import env.nobody_defines_this: undefined symbol"),
        "{err}"
    );
}

#[test]
fn libraries_that_need_each_other() {
    let out = run_in(fixtures(), &["--dir", ".", "cycle.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "cyc_a(1) = 30, cyc_ab(1) = 31\n",
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn failed_dlopens_explain_themselves_and_leave_the_program_intact() {
    let dir = scratch("dl-errors");
    for f in ["dl_errors.wasm", "libmismatch_lib.so", "hello.wasm"] {
        std::fs::copy(fixture(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("notwasm.so"), "#!/bin/sh\n").unwrap();
    let args = [
        "--dir",
        ".",
        "dl_errors.wasm",
        "./notwasm.so",
        "./libmismatch_lib.so",
        "./hello.wasm",
        "../../../../../../../etc/passwd",
        "libnothere.so",
    ];
    let out = run_in(&dir, &args, b"");
    let d = std::fs::canonicalize(&dir).unwrap().display().to_string();
    let expected = [
        format!("./notwasm.so: {d}/notwasm.so: not a WebAssembly module: the file does not start with the wasm magic number"),
        format!("./libmismatch_lib.so: {d}/libmismatch_lib.so: cannot bind import env.main_fn: type mismatch for `main_fn`: imported as [I32, I32] -> [I32], dl_errors.wasm defines [I32] -> [I32]"),
        format!("./hello.wasm: {d}/hello.wasm: cannot dynamically load a program (it exports _start); build it with -shared"),
        // Only mapped directories exist in the guest: there is no /etc/passwd to reach.
        // (libc hands the runtime the path made absolute with its working directory).
        format!("../../../../../../../etc/passwd: {d}/../../../../../../../etc/passwd: cannot open shared library: not found (dlopen from dl_errors.wasm); tried: /etc/passwd"),
        "libnothere.so: libnothere.so: cannot open shared library: not found (dlopen from dl_errors.wasm); tried: /lib/libnothere.so, /usr/lib/libnothere.so, /usr/local/lib/libnothere.so".to_string(),
        "main_fn still works: 3".to_string(),
    ];
    assert_eq!(
        stdout(&out),
        expected.join("\n") + "\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_constructor_that_traps_rolls_the_dlopen_back() {
    let out = run_in(fixtures(), &["--dir", ".", "ctor_trap.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "attempt 1: NULL, message names the constructor: 1\n\
         attempt 2: NULL, message names the constructor: 1\n\
         its symbols stayed out of the global scope: 1\n\
         the next dlopen works: 1\n",
        "stderr: {}",
        stderr(&out)
    );
}

/// Property: whatever the bytes of a library's header (dylink.0, types, imports), loading it
/// ends in a run or a clear error, never a panic. Deterministic pseudo-random mutations.
#[test]
fn mutated_libraries_never_panic_the_loader() {
    let original = std::fs::read(fixture("libside.so")).unwrap();
    let header = original.len().min(160);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..40 {
        let mut lib = original.clone();
        for _ in 0..1 + round % 3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lib[8 + (state as usize) % (header - 8)] = (state >> 40) as u8;
        }
        let dir = with_libside(&format!("mutated-{round}"), &lib);
        let out = wasix_dl()
            .args(["run", "--dir", ".", "uses_side.wasm"])
            .current_dir(&dir)
            .env("WASIX_DL_NO_CACHE", "1")
            .output_in_time();
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && matches!(out.status.code(), Some(0 | 127 | 134)),
            "round {round}: status {:?}, stderr: {err}",
            out.status.code()
        );
    }
}
