//! Reading a module's `dylink.0` custom section (tool-conventions `DynamicLinking.md`) into a
//! [`DylinkInfo`]. Parsing is wasmparser's; this file decides what is acceptable.

use wasmparser::{Dylink0Subsection, KnownCustom, Parser, Payload, SymbolFlags};

use crate::error::Error;

/// What a dynamically linked module asks of the loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DylinkInfo {
    /// Bytes of memory to reserve at `__memory_base`.
    pub memory_size: u32,
    /// Alignment of that region, as a power of two.
    pub memory_align_log2: u32,
    /// Table slots to reserve at `__table_base`.
    pub table_size: u32,
    /// Alignment of the table region, as a power of two.
    pub table_align_log2: u32,
    /// Libraries this module needs, in the order the linker recorded them.
    pub needed: Vec<String>,
    /// RUNPATH entries (`$ORIGIN` not yet expanded).
    pub runtime_path: Vec<String>,
    /// Flags of exports the linker described (TLS exports, mostly).
    pub export_flags: Vec<(String, SymbolFlags)>,
    /// Flags of imports the linker described (weak imports): (module, field, flags).
    pub import_flags: Vec<(String, String, SymbolFlags)>,
}

impl DylinkInfo {
    /// Whether the import `module.field` is weak. clang sometimes records the flag of a `GOT.*`
    /// import under `env`, so both are looked at.
    pub fn is_weak_import(&self, module: &str, field: &str) -> bool {
        self.import_flags.iter().any(|(m, f, flags)| {
            f == field && (m == module || m == "env") && flags.contains(SymbolFlags::BINDING_WEAK)
        })
    }
}

/// Parses the `dylink.0` section of `bytes`. `Ok(None)` means the module is not dynamically
/// linked. `name` is only used in error messages.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Option<DylinkInfo>, Error> {
    let malformed = |reason: String| Error::MalformedDylink {
        module: name.to_string(),
        reason,
    };
    if !bytes.starts_with(b"\0asm") {
        return Err(Error::NotWasm {
            module: name.to_string(),
            reason: "the file does not start with the wasm magic number".into(),
        });
    }
    let mut info: Option<DylinkInfo> = None;
    for (index, payload) in Parser::new(0).parse_all(bytes).enumerate() {
        let payload = payload.map_err(|e| Error::NotWasm {
            module: name.to_string(),
            reason: format!("{} (at offset {:#x})", e.message(), e.offset()),
        })?;
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        let KnownCustom::Dylink0(reader) = section.as_known() else {
            continue;
        };
        if info.is_some() {
            return Err(malformed("more than one dylink.0 section".into()));
        }
        // Index 0 is the module header (Payload::Version); the section must come right after.
        if index != 1 {
            return Err(malformed("dylink.0 must be the first section".into()));
        }
        let mut out = DylinkInfo::default();
        let mut seen_mem_info = false;
        for sub in reader {
            match sub.map_err(|e| malformed(e.to_string()))? {
                Dylink0Subsection::MemInfo(m) => {
                    if seen_mem_info {
                        return Err(malformed("more than one mem-info subsection".into()));
                    }
                    seen_mem_info = true;
                    out.memory_size = m.memory_size;
                    out.memory_align_log2 = m.memory_alignment;
                    out.table_size = m.table_size;
                    out.table_align_log2 = m.table_alignment;
                }
                Dylink0Subsection::Needed(names) => {
                    out.needed.extend(names.iter().map(|s| s.to_string()))
                }
                Dylink0Subsection::RuntimePath(paths) => {
                    out.runtime_path.extend(paths.iter().map(|s| s.to_string()))
                }
                Dylink0Subsection::ExportInfo(list) => out
                    .export_flags
                    .extend(list.iter().map(|e| (e.name.to_string(), e.flags))),
                Dylink0Subsection::ImportInfo(list) => out.import_flags.extend(
                    list.iter()
                        .map(|i| (i.module.to_string(), i.field.to_string(), i.flags)),
                ),
                // Unknown subsections are skipped, as the convention says.
                Dylink0Subsection::TargetArch(_) | Dylink0Subsection::Unknown { .. } => {}
            }
        }
        // Alignments are powers of two of at most 2^31 for memory; anything larger is nonsense.
        if out.memory_align_log2 > 31 || out.table_align_log2 > 31 {
            return Err(malformed(format!(
                "alignment 2^{} / 2^{} is out of range",
                out.memory_align_log2, out.table_align_log2
            )));
        }
        info = Some(out);
    }
    Ok(info)
}
