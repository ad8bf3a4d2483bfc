//! `wasix-dl ldd`, `wasix-dl inspect` and the `WASIX_DL_DEBUG` trace.

mod common;
use common::*;

fn cli(args: &[&str]) -> std::process::Output {
    wasix_dl()
        .args(args)
        .current_dir(fixtures())
        .output_in_time()
}

#[test]
fn ldd_lists_libraries_in_load_order_with_their_paths() {
    let out = cli(&["ldd", "--dir", ".", "ctors.wasm"]);
    let dir = fixtures().display().to_string();
    assert_eq!(
        stdout(&out),
        format!("\tlibctor_a.so => {dir}/libctor_a.so\n\tlibctor_b.so => {dir}/libctor_b.so\n"),
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn ldd_says_not_found_and_not_a_dynamic_executable() {
    let out = cli(&["ldd", "ctors.wasm"]);
    assert_eq!(stdout(&out), "\tlibctor_a.so => not found\n");
    let dir = scratch("ldd-plain");
    let wasm = wasmer::wat2wasm(b"(module)").unwrap();
    std::fs::write(dir.join("plain.wasm"), wasm).unwrap();
    let out = wasix_dl()
        .args(["ldd", "plain.wasm"])
        .current_dir(&dir)
        .output_in_time();
    assert_eq!(stdout(&out), "\tnot a dynamic executable\n");
}

#[test]
fn inspect_shows_dylink_imports_and_exports() {
    let out = cli(&["inspect", "libctor_a.so"]);
    let text = stdout(&out);
    for expected in [
        "dylink.0:",
        "mem-info: memory ",
        "needed: libctor_b.so",
        "runtime-path: $ORIGIN",
        "imports from env (",
        "b_value (func)",
        "memory (memory (shared))",
        "exported functions (",
        "a_value",
    ] {
        assert!(
            text.contains(expected),
            "`inspect` lacks {expected:?}:\n{text}"
        );
    }
    let text = stdout(&cli(&["inspect", "hello.wasm"]));
    assert!(text.contains("export-info: errno [tls]"), "{text}");
    assert!(
        text.contains("imports from GOT.mem (1): __heap_base (global mut)"),
        "{text}"
    );
}

#[test]
fn debug_trace_shows_libraries_bindings_and_symbol_lookups() {
    let out = wasix_dl()
        .args(["run", "--dir", ".", "uses_side.wasm"])
        .current_dir(fixtures())
        .env("WASIX_DL_DEBUG", "libs,bindings,symbols")
        .output_in_time();
    assert_eq!(stdout(&out), "45\n");
    let trace = stderr(&out);
    let dir = fixtures().display().to_string();
    for expected in [
        format!("libside.so: found {dir}/libside.so (needed by uses_side.wasm)"),
        "uses_side.wasm: env.side_add -> ".to_string(),
        "(trampoline)".to_string(),
        "libside.so: env.aligned_alloc -> uses_side.wasm (direct)".to_string(),
        "libside.so: GOT.mem.side_value = 0x".to_string(),
        "lookup `side_add` in [uses_side.wasm, ".to_string(),
    ] {
        assert!(
            trace.contains(&expected),
            "trace lacks {expected:?}:\n{trace}"
        );
    }
}
