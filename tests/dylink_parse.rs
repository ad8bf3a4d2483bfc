//! The dylink.0 reader on hostile input: truncated, duplicated, misplaced sections and absurd
//! sizes give errors naming the module, never a panic.

use wasix_dl::{parse_dylink, Error};

/// A module consisting of the header and the given custom sections (name, payload).
fn module_with(sections: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    for (name, payload) in sections {
        let mut body = leb(name.len() as u64);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        wasm.push(0);
        wasm.extend(leb(body.len() as u64));
        wasm.extend(body);
    }
    wasm
}

fn leb(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn subsection(ty: u8, payload: Vec<u8>) -> Vec<u8> {
    let mut out = vec![ty];
    out.extend(leb(payload.len() as u64));
    out.extend(payload);
    out
}

fn mem_info(size: u64, align: u64, table: u64, table_align: u64) -> Vec<u8> {
    subsection(
        1,
        [leb(size), leb(align), leb(table), leb(table_align)].concat(),
    )
}

#[test]
fn reads_mem_info_and_needed() {
    let payload = [
        mem_info(100, 4, 2, 0),
        subsection(2, [leb(1), leb(7), b"libx.so".to_vec()].concat()),
    ]
    .concat();
    let info = parse_dylink("m.wasm", &module_with(&[("dylink.0", payload)]))
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.memory_size, info.memory_align_log2, info.table_size),
        (100, 4, 2)
    );
    assert_eq!(info.needed, ["libx.so"]);
}

#[test]
fn a_module_without_dylink_is_not_dynamically_linked() {
    assert_eq!(
        parse_dylink("m.wasm", &module_with(&[("name", vec![])])).unwrap(),
        None
    );
}

#[test]
fn duplicated_dylink_is_an_error() {
    let s = mem_info(1, 0, 0, 0);
    let err = parse_dylink(
        "dup.wasm",
        &module_with(&[("dylink.0", s.clone()), ("dylink.0", s)]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::MalformedDylink { module, reason } if module == "dup.wasm" && reason.contains("more than one")),
        "{err}"
    );
}

#[test]
fn misplaced_dylink_is_an_error() {
    let err = parse_dylink(
        "late.wasm",
        &module_with(&[("name", vec![]), ("dylink.0", mem_info(1, 0, 0, 0))]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("must be the first section"),
        "{err}"
    );
}

#[test]
fn truncated_and_absurd_subsections_are_errors() {
    // A count of 2^32-1 needed names with no bytes behind it.
    let huge_count = subsection(2, leb(u32::MAX as u64));
    let err = parse_dylink("huge.wasm", &module_with(&[("dylink.0", huge_count)])).unwrap_err();
    assert!(matches!(err, Error::MalformedDylink { .. }), "{err}");
    // Alignment 2^40.
    let err = parse_dylink(
        "align.wasm",
        &module_with(&[("dylink.0", mem_info(1, 40, 0, 0))]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("alignment"), "{err}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic pseudo-random walk over mutations of a valid section.
    let base = [
        mem_info(64, 2, 1, 0),
        subsection(2, [leb(1), leb(3), b"a.so".to_vec()].concat()),
    ]
    .concat();
    let mut state: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut payload = base.clone();
        let pos = (state as usize) % payload.len();
        payload[pos] = (state >> 32) as u8;
        payload.truncate(payload.len() - (state >> 48) as usize % 3);
        let _ = parse_dylink("fuzz.wasm", &module_with(&[("dylink.0", payload)]));
    }
}
