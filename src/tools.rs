//! Tools for people: `ldd` (which libraries a module loads, found where) and `inspect` (what
//! a module's dylink.0, imports and exports say). Neither compiles nor runs anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use wasmparser::{Parser, Payload, SymbolFlags, TypeRef};

use crate::dylink;
use crate::error::Error;
use crate::fs;
use crate::load::{self, GuestFs};
use crate::run::{self, RunConfig};
use crate::search::{Requester, SearchContext};

fn read(config: &RunConfig) -> Result<Vec<u8>, Error> {
    std::fs::read(&config.module).map_err(|source| Error::Read {
        path: config.module.clone(),
        source,
    })
}

/// Like `ldd`: every library the module loads at start-up, breadth-first in load order, with
/// the guest path it is found at, or `not found`.
pub fn ldd(config: &RunConfig) -> Result<String, Error> {
    let name = config.module.display().to_string();
    let bytes = read(config)?;
    let Some(info) = dylink::parse(&name, &bytes)? else {
        return Ok("\tnot a dynamic executable\n".into());
    };
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Wasi(format!("cannot start the async runtime: {e}")))?;
    let guest = GuestFs {
        fs: Arc::new(fs::build(
            &config.dirs,
            config.system_libs.as_deref(),
            tokio.handle(),
        )?),
        dirs: config.dirs.clone(),
        tokio: tokio.handle().clone(),
    };
    let cwd = run::guest_cwd(config);
    let ld_library_path = run::ld_library_path(config);

    // (display name, guest path, dylink info) in load order; the main module first.
    let mut queue = vec![(name, run::guest_path(config), info)];
    let mut out = String::new();
    let mut next = 0;
    while next < queue.len() {
        let (requester, path, info) = queue[next].clone();
        for needed in &info.needed {
            let ctx = SearchContext {
                cwd: &cwd,
                ld_library_path: &ld_library_path,
                requester: path.as_deref().map(|p| Requester {
                    path: p,
                    runpath: &info.runtime_path,
                }),
            };
            match load::find(&guest, needed, &ctx, &format!("needed by {requester}")) {
                Ok(found) if queue.iter().any(|(_, p, _)| p.as_ref() == Some(&found)) => {}
                Ok(found) => {
                    let _ = writeln!(out, "\t{needed} => {}", found.display());
                    let shown = found.display().to_string();
                    let bytes = guest.read(&found).map_err(|reason| Error::LibraryRead {
                        library: shown.clone(),
                        reason,
                    })?;
                    let info = dylink::parse(&shown, &bytes)?.ok_or(Error::NotSharedLibrary {
                        module: shown.clone(),
                    })?;
                    queue.push((shown, Some(found), info));
                }
                Err(_) => {
                    let _ = writeln!(out, "\t{needed} => not found");
                }
            }
        }
        next += 1;
    }
    Ok(out)
}

fn flag_names(flags: SymbolFlags) -> String {
    let names = [
        (SymbolFlags::BINDING_WEAK, "weak"),
        (SymbolFlags::BINDING_LOCAL, "local"),
        (SymbolFlags::VISIBILITY_HIDDEN, "hidden"),
        (SymbolFlags::UNDEFINED, "undefined"),
        (SymbolFlags::EXPORTED, "exported"),
        (SymbolFlags::EXPLICIT_NAME, "explicit-name"),
        (SymbolFlags::NO_STRIP, "no-strip"),
        (SymbolFlags::TLS, "tls"),
        (SymbolFlags::ABSOLUTE, "absolute"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    set.join(" ")
}

/// What the module's dylink.0, imports (by namespace) and exports say.
pub fn inspect(config: &RunConfig) -> Result<String, Error> {
    let name = config.module.display().to_string();
    let bytes = read(config)?;
    let not_wasm = |e: wasmparser::BinaryReaderError| Error::NotWasm {
        module: name.clone(),
        reason: e.to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{name}: {} bytes", bytes.len());
    match dylink::parse(&name, &bytes)? {
        None => {
            let _ = writeln!(out, "dylink.0: none (not dynamically linked)");
        }
        Some(info) => {
            let _ = writeln!(out, "dylink.0:");
            let _ = writeln!(
                out,
                "  mem-info: memory {} bytes (align 2^{}), table {} slots (align 2^{})",
                info.memory_size, info.memory_align_log2, info.table_size, info.table_align_log2
            );
            let _ = writeln!(out, "  needed: {}", info.needed.join(", "));
            let _ = writeln!(out, "  runtime-path: {}", info.runtime_path.join(":"));
            for (export, flags) in &info.export_flags {
                let _ = writeln!(out, "  export-info: {export} [{}]", flag_names(*flags));
            }
            for (module, field, flags) in &info.import_flags {
                let _ = writeln!(
                    out,
                    "  import-info: {module}.{field} [{}]",
                    flag_names(*flags)
                );
            }
        }
    }
    let mut imports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut exports: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.map_err(not_wasm)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(not_wasm)?;
                    let kind = match import.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => "func",
                        TypeRef::Table(_) => "table",
                        TypeRef::Memory(m) if m.shared => "memory (shared)",
                        TypeRef::Memory(_) => "memory",
                        TypeRef::Global(g) if g.mutable => "global mut",
                        TypeRef::Global(_) => "global",
                        TypeRef::Tag(_) => "tag",
                    };
                    imports
                        .entry(import.module.to_string())
                        .or_default()
                        .push(format!("{} ({kind})", import.name));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(not_wasm)?;
                    let kind = match export.kind {
                        wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                            "functions"
                        }
                        wasmparser::ExternalKind::Global => "globals",
                        wasmparser::ExternalKind::Memory => "memories",
                        wasmparser::ExternalKind::Table => "tables",
                        wasmparser::ExternalKind::Tag => "tags",
                    };
                    exports
                        .entry(kind)
                        .or_default()
                        .push(export.name.to_string());
                }
            }
            _ => {}
        }
    }
    for (module, fields) in &imports {
        let _ = writeln!(
            out,
            "imports from {module} ({}): {}",
            fields.len(),
            fields.join(", ")
        );
    }
    for (kind, names) in &exports {
        let _ = writeln!(
            out,
            "exported {kind} ({}): {}",
            names.len(),
            names.join(", ")
        );
    }
    Ok(out)
}
