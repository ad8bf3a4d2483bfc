//! What a module's bytes say about its interface: imports, exports with their function types,
//! and the table slots its own element segments fill. Read with wasmparser in one pass that
//! skips the code section, so a link can be planned (and main rewritten) before anything is
//! compiled: each module is compiled exactly once, in its final form.

use std::collections::HashMap;

use wasmer::{FunctionType, Type};
use wasmparser::{
    ElementItems, ElementKind, ExternalKind, Operator, Parser, Payload, TypeRef, ValType,
};

use crate::error::Error;

/// An import as far as linking is concerned.
#[derive(Debug, Clone)]
pub struct Import {
    pub module: String,
    pub field: String,
    pub kind: ImportKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// A function: its function index (imports come first) and type index.
    Func {
        index: u32,
        type_index: u32,
    },
    Table,
    /// A memory, its minimum size in pages and whether it is a 64-bit memory.
    Memory {
        minimum_pages: u64,
        memory64: bool,
    },
    Global,
    Tag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportKind {
    Function(FunctionType),
    Global,
    Other,
}

/// A module's interface, from its bytes.
#[derive(Debug, Default)]
pub struct Description {
    pub imports: Vec<Import>,
    pub exports: Vec<(String, ExportKind)>,
    /// Export name → slot (relative to `__table_base`) of exported functions placed by the
    /// module's active element segments (offset `__table_base` plus a constant): their
    /// address must stay where the module put them.
    pub own_slots: HashMap<String, u32>,
    /// Exported functions the module defines (not re-exported imports): name, function index
    /// and type index (for rewriting its calls to them when another module interposes them).
    pub defined_functions: Vec<(String, u32, u32)>,
    /// Slot (relative to `__table_base`) → function index, for every function the module's
    /// active element segments place (for naming the callee of a mismatched indirect call).
    pub placed: std::collections::BTreeMap<u32, u32>,
    /// Export name → value of exported immutable globals initialised with a constant: the
    /// relative address of a data symbol, or the offset of a TLS symbol in the module's block.
    pub global_values: HashMap<String, u32>,
}

impl Description {
    pub fn exports(&self, name: &str) -> bool {
        self.exports.iter().any(|(n, _)| n == name)
    }

    /// The minimum size in pages of the imported memory (0 without one).
    pub fn memory_minimum_pages(&self) -> u64 {
        self.imports
            .iter()
            .find_map(|i| match i.kind {
                ImportKind::Memory { minimum_pages, .. } => Some(minimum_pages),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Whether the module's only imported table is `env.__indirect_function_table` (its
    /// table 0, as wasm-ld's PIC modules have it).
    pub fn imports_only_the_shared_table(&self) -> bool {
        let mut tables = self.imports.iter().filter(|i| i.kind == ImportKind::Table);
        let first = tables.next();
        tables.next().is_none()
            && first.is_some_and(|i| i.module == "env" && i.field == "__indirect_function_table")
    }
}

/// Reads the interface of the module `bytes`; `name` is for messages.
pub fn describe(name: &str, bytes: &[u8]) -> Result<Description, Error> {
    let malformed = |e: wasmparser::BinaryReaderError| Error::NotWasm {
        module: name.to_string(),
        reason: format!("{} (at offset {:#x})", e.message(), e.offset()),
    };
    let truncated = || Error::NotWasm {
        module: name.to_string(),
        reason: "the module ends in the middle of a section".into(),
    };
    let mut types: Vec<Option<FunctionType>> = Vec::new();
    let mut func_types: Vec<u32> = Vec::new(); // type index of every function, imports first
    let mut out = Description::default();
    let mut exported_funcs: Vec<(String, u32)> = Vec::new();
    let mut placed: Vec<(u32, u32)> = Vec::new(); // (function index, relative slot)
    let mut global_values: Vec<Option<u32>> = Vec::new(); // constant value by global index

    let mut parser = Parser::new(0);
    let mut rest = bytes;
    loop {
        let (consumed, payload) = match parser.parse(rest, true).map_err(malformed)? {
            wasmparser::Chunk::Parsed { consumed, payload } => (consumed, payload),
            wasmparser::Chunk::NeedMoreData(_) => return Err(truncated()),
        };
        match payload {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    types.push(function_type(&ty.map_err(malformed)?));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    let kind = match import.ty {
                        TypeRef::Func(type_index) | TypeRef::FuncExact(type_index) => {
                            func_types.push(type_index);
                            ImportKind::Func {
                                index: func_types.len() as u32 - 1,
                                type_index,
                            }
                        }
                        TypeRef::Table(_) => ImportKind::Table,
                        TypeRef::Memory(m) => ImportKind::Memory {
                            minimum_pages: m.initial,
                            memory64: m.memory64,
                        },
                        TypeRef::Global(_) => {
                            global_values.push(None);
                            ImportKind::Global
                        }
                        TypeRef::Tag(_) => ImportKind::Tag,
                    };
                    out.imports.push(Import {
                        module: import.module.to_string(),
                        field: import.name.to_string(),
                        kind,
                    });
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(malformed)?;
                    global_values.push(
                        (!global.ty.mutable)
                            .then(|| constant(global.init_expr))
                            .flatten(),
                    );
                }
            }
            Payload::FunctionSection(reader) => {
                for type_index in reader {
                    func_types.push(type_index.map_err(malformed)?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    let kind = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => {
                            exported_funcs.push((export.name.to_string(), export.index));
                            let imported = out
                                .imports
                                .iter()
                                .filter(|i| matches!(i.kind, ImportKind::Func { .. }))
                                .count();
                            if let (true, Some(&ty)) = (
                                export.index as usize >= imported,
                                func_types.get(export.index as usize),
                            ) {
                                out.defined_functions.push((
                                    export.name.to_string(),
                                    export.index,
                                    ty,
                                ));
                            }
                            let ty = func_types
                                .get(export.index as usize)
                                .and_then(|&t| types.get(t as usize).cloned().flatten());
                            let Some(ty) = ty else {
                                return Err(Error::NotWasm {
                                    module: name.to_string(),
                                    reason: format!(
                                        "export {} names function {} of no known function type",
                                        export.name, export.index
                                    ),
                                });
                            };
                            ExportKind::Function(ty)
                        }
                        ExternalKind::Global => {
                            if let Some(&Some(value)) = global_values.get(export.index as usize) {
                                out.global_values.insert(export.name.to_string(), value);
                            }
                            ExportKind::Global
                        }
                        _ => ExportKind::Other,
                    };
                    out.exports.push((export.name.to_string(), kind));
                }
            }
            Payload::ElementSection(reader) => {
                for element in reader {
                    let element = element.map_err(malformed)?;
                    let ElementKind::Active { offset_expr, .. } = element.kind else {
                        continue;
                    };
                    let Some(offset) = relative_offset(offset_expr) else {
                        continue;
                    };
                    if let ElementItems::Functions(funcs) = element.items {
                        for (i, func) in funcs.into_iter().enumerate() {
                            placed.push((func.map_err(malformed)?, offset.wrapping_add(i as u32)));
                        }
                    }
                }
            }
            Payload::CodeSectionStart { size, .. } => {
                // Nothing after this point describes the interface but custom sections, which
                // dylink.0 (always first) is not among.
                parser.skip_section();
                rest = rest.get(consumed + size as usize..).ok_or_else(truncated)?;
                continue;
            }
            Payload::End(_) => break,
            _ => {}
        }
        rest = &rest[consumed..];
    }

    let memory64 = out
        .imports
        .iter()
        .any(|i| matches!(i.kind, ImportKind::Memory { memory64: true, .. }));
    if memory64 {
        // wasix_64v1 programs: the loader's globals, GOT entries and DL calls are 32-bit.
        return Err(Error::Unsupported {
            module: name.to_string(),
            reason: "64-bit memory (wasm64) modules are not supported yet".into(),
        });
    }
    for (func, slot) in placed {
        for (name, _) in exported_funcs.iter().filter(|(_, f)| *f == func) {
            out.own_slots.entry(name.clone()).or_insert(slot);
        }
        out.placed.insert(slot, func);
    }
    Ok(out)
}

fn function_type(f: &wasmparser::FuncType) -> Option<FunctionType> {
    let params: Option<Vec<Type>> = f.params().iter().map(|&t| value_type(t)).collect();
    let results: Option<Vec<Type>> = f.results().iter().map(|&t| value_type(t)).collect();
    Some(FunctionType::new(params?, results?))
}

fn value_type(ty: ValType) -> Option<Type> {
    Some(match ty {
        ValType::I32 => Type::I32,
        ValType::I64 => Type::I64,
        ValType::F32 => Type::F32,
        ValType::F64 => Type::F64,
        ValType::V128 => Type::V128,
        ValType::Ref(r) if r.is_func_ref() => Type::FuncRef,
        ValType::Ref(r) if r.is_extern_ref() => Type::ExternRef,
        ValType::Ref(r) if r == wasmparser::RefType::EXNREF => Type::ExceptionRef,
        ValType::Ref(_) => return None,
    })
}

/// The value of a constant expression that is a single `i32.const`.
fn constant(expr: wasmparser::ConstExpr) -> Option<u32> {
    let mut reader = expr.get_operators_reader();
    let value = match reader.read().ok()? {
        Operator::I32Const { value } => value as u32,
        _ => return None,
    };
    matches!(reader.read().ok()?, Operator::End).then_some(value)
}

/// The constant part of an element offset `global.get __table_base (+ i32.const k)`.
fn relative_offset(expr: wasmparser::ConstExpr) -> Option<u32> {
    let mut reader = expr.get_operators_reader();
    let mut constant = 0u32;
    let mut saw_global = false;
    while !reader.eof() {
        match reader.read().ok()? {
            Operator::GlobalGet { .. } => saw_global = true,
            Operator::I32Const { value } => constant = value as u32,
            Operator::I32Add | Operator::End => {}
            _ => return None,
        }
    }
    saw_global.then_some(constant)
}
