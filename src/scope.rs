//! Symbols and lookup scopes, with ELF's rules (DESIGN decision 1): a scope is an ordered list
//! of modules; lookup takes the first strong definition, else the first weak one; hidden
//! symbols and the loader's own entry points are never bound from outside. Iteration is only
//! ever over the scope's order, so binding is deterministic.

use std::collections::HashMap;

use wasmer::FunctionType;
use wasmparser::SymbolFlags;

use crate::describe::{Description, ExportKind};
use crate::dylink::DylinkInfo;

/// Index of a loaded module in the link state (0 is the main module).
pub type ModuleId = usize;

/// What a module exports under one name, as far as binding is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolKind {
    Function(FunctionType),
    /// A global holding the address of data, relative to the module's `__memory_base`.
    Data,
    /// A global holding an offset into the module's TLS block.
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub kind: SymbolKind,
    pub weak: bool,
}

/// The symbols a module offers to others.
#[derive(Debug, Default)]
pub struct SymbolTable {
    symbols: HashMap<String, Symbol>,
}

/// Exports that exist for the loader, not for other modules.
fn is_loader_entry_point(name: &str) -> bool {
    matches!(
        name,
        "__wasm_call_ctors"
            | "__wasm_call_dtors"
            | "__wasm_apply_data_relocs"
            | "__wasm_apply_tls_relocs"
            | "__wasm_apply_global_tls_relocs"
            | "__wasm_apply_global_relocs"
            | "__wasm_init_tls"
            | "__wasm_init_memory"
            | "__wasm_start"
            | "__tls_base"
            | "__tls_size"
            | "__tls_align"
            | "__wasix_init_tls"
            | "_start"
            | "_initialize"
            | "__stack_pointer"
            | "__memory_base"
            | "__table_base"
            | "memory"
            | "__indirect_function_table"
            | "__stack_low"
            | "__stack_high"
    )
}

impl SymbolTable {
    pub fn new(description: &Description, info: &DylinkInfo) -> Self {
        let flags_of = |name: &str| {
            info.export_flags
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| *f)
                .unwrap_or(SymbolFlags::empty())
        };
        let mut symbols = HashMap::new();
        for (name, export) in &description.exports {
            let flags = flags_of(name);
            if is_loader_entry_point(name) || flags.contains(SymbolFlags::VISIBILITY_HIDDEN) {
                continue;
            }
            let kind = match export {
                ExportKind::Function(f) => SymbolKind::Function(f.clone()),
                ExportKind::Global if flags.contains(SymbolFlags::TLS) => SymbolKind::Tls,
                ExportKind::Global => SymbolKind::Data,
                ExportKind::Other => continue,
            };
            let weak = flags.contains(SymbolFlags::BINDING_WEAK);
            symbols.insert(name.to_string(), Symbol { kind, weak });
        }
        SymbolTable { symbols }
    }

    pub fn get(&self, name: &str) -> Option<&Symbol> {
        self.symbols.get(name)
    }
}

/// Finds `name` in `scope` (modules in lookup order; `tables` gives each one's symbols): the
/// first strong definition, else the first weak one.
pub fn lookup<'a>(
    scope: &[ModuleId],
    tables: impl Fn(ModuleId) -> &'a SymbolTable,
    name: &str,
) -> Option<(ModuleId, SymbolKind)> {
    let mut first_weak = None;
    for &id in scope {
        if let Some(sym) = tables(id).get(name) {
            if !sym.weak {
                return Some((id, sym.kind.clone()));
            }
            first_weak.get_or_insert((id, sym.kind.clone()));
        }
    }
    first_weak
}
