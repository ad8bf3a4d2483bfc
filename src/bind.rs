//! Building a module's imports: the linear memory, table, stack pointer, bases and exception
//! tags the loader owns; `GOT.mem` / `GOT.func` entries; WASI/WASIX functions from
//! wasmer-wasix. For now the main module alone: its GOT entries can only name itself or the
//! linker-provided symbols (`__heap_base`, `__stack_low`, ...).

use wasmer::{
    AsStoreMut, Extern, ExternType, Function, Global, Imports, Instance, Memory, Module,
    Mutability, Table, Tag, Type, Value,
};

use crate::dylink::DylinkInfo;
use crate::error::Error;
use crate::layout::MainLayout;

/// The per-thread objects every module of an instance group shares.
pub struct GroupObjects {
    pub memory: Memory,
    pub table: Table,
    pub stack_pointer: Global,
    pub cpp_exception: Tag,
    pub c_longjmp: Tag,
}

/// A `GOT.*` global to fill once the symbol it names has an address.
pub struct PendingGot {
    pub kind: GotKind,
    pub symbol: String,
    pub global: Global,
    pub weak: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GotKind {
    Mem,
    Func,
}

/// Imports of the main module plus the GOT entries that still need values.
pub struct MainImports {
    pub imports: Imports,
    pub pending_got: Vec<PendingGot>,
}

/// Values of the symbols the loader itself defines (`GOT.mem.__heap_base` and friends).
fn linker_symbol(layout: &MainLayout, name: &str) -> Option<u32> {
    Some(match name {
        "__heap_base" => layout.heap_base,
        "__heap_end" => layout.heap_end,
        "__stack_low" => layout.stack_low,
        "__stack_high" => layout.stack_high,
        "__memory_base" => layout.memory_base,
        _ => return None,
    })
}

pub fn main_imports(
    store: &mut impl AsStoreMut,
    name: &str,
    module: &Module,
    info: &DylinkInfo,
    layout: &MainLayout,
    objects: &GroupObjects,
    wasi: &Imports,
) -> Result<MainImports, Error> {
    let mut imports = Imports::new();
    let mut pending_got = Vec::new();
    for import in module.imports() {
        let (ns, field) = (import.module(), import.name());
        let fail = |reason: String| Error::Bind {
            module: name.to_string(),
            import_module: ns.to_string(),
            field: field.to_string(),
            reason,
        };
        let needs_mut_i32 = ns.starts_with("GOT.") || (ns, field) == ("env", "__stack_pointer");
        if needs_mut_i32 && !is_mut_i32(import.ty()) {
            return Err(fail(format!(
                "expected a mutable i32 global, found {}",
                describe(import.ty())
            )));
        }
        let value: Extern = match (ns, field, import.ty()) {
            ("env", "memory", ExternType::Memory(_)) => objects.memory.clone().into(),
            ("env", "__indirect_function_table", ExternType::Table(_)) => {
                objects.table.clone().into()
            }
            ("env", "__stack_pointer", ExternType::Global(_)) => {
                objects.stack_pointer.clone().into()
            }
            ("env", "__memory_base", ExternType::Global(_)) => {
                Global::new(store, Value::I32(layout.memory_base as i32)).into()
            }
            ("env", "__table_base", ExternType::Global(_)) => {
                Global::new(store, Value::I32(layout.table_base as i32)).into()
            }
            ("env", "__cpp_exception", ExternType::Tag(_)) => objects.cpp_exception.clone().into(),
            ("env", "__c_longjmp", ExternType::Tag(_)) => objects.c_longjmp.clone().into(),
            ("GOT.mem", sym, ExternType::Global(_)) => {
                if let Some(value) = linker_symbol(layout, sym) {
                    Global::new_mut(store, Value::I32(value as i32)).into()
                } else {
                    let global = Global::new_mut(store, Value::I32(0));
                    pending_got.push(PendingGot {
                        kind: GotKind::Mem,
                        symbol: sym.to_string(),
                        global: global.clone(),
                        weak: info.is_weak_import(ns, sym),
                    });
                    global.into()
                }
            }
            ("GOT.func", sym, ExternType::Global(_)) => {
                let global = Global::new_mut(store, Value::I32(0));
                pending_got.push(PendingGot {
                    kind: GotKind::Func,
                    symbol: sym.to_string(),
                    global: global.clone(),
                    weak: info.is_weak_import(ns, sym),
                });
                global.into()
            }
            (_, _, ty) => match wasi.get_export(ns, field) {
                Some(ext) => ext,
                None if ns == "env" => {
                    return Err(fail(format!(
                        "undefined symbol `{field}` ({}): no loaded module defines it",
                        describe(ty)
                    )))
                }
                None => {
                    return Err(fail(format!(
                        "unknown import namespace or function ({})",
                        describe(ty)
                    )))
                }
            },
        };
        imports.define(ns, field, value);
    }
    Ok(MainImports {
        imports,
        pending_got,
    })
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Function(f) => format!("function {f}"),
        ExternType::Global(g) => format!("global {:?}", g.ty),
        ExternType::Table(_) => "table".into(),
        ExternType::Memory(_) => "memory".into(),
        ExternType::Tag(_) => "tag".into(),
    }
}

/// Fills main's `GOT.*` entries from its own exports, now that it is instantiated: data symbols
/// get `__memory_base + offset`, functions get a table slot (appended after main's region).
pub fn resolve_main_got(
    store: &mut impl AsStoreMut,
    name: &str,
    instance: &Instance,
    layout: &MainLayout,
    table: &Table,
    pending: &[PendingGot],
) -> Result<(), Error> {
    for got in pending {
        let fail = |reason: &str| Error::Bind {
            module: name.to_string(),
            import_module: match got.kind {
                GotKind::Mem => "GOT.mem".into(),
                GotKind::Func => "GOT.func".into(),
            },
            field: got.symbol.clone(),
            reason: reason.to_string(),
        };
        let value: i32 = match (got.kind, instance.exports.get_extern(&got.symbol)) {
            (GotKind::Mem, Some(Extern::Global(g))) => match g.get(store) {
                Value::I32(offset) => (layout.memory_base as i32).wrapping_add(offset),
                _ => return Err(fail("data export is not an i32 global")),
            },
            (GotKind::Func, Some(Extern::Function(f))) => {
                let f: Function = f.clone();
                let slot = table
                    .grow(store, 1, Value::FuncRef(Some(f)))
                    .map_err(|e| fail(&format!("cannot grow the table: {e}")))?;
                slot as i32
            }
            (_, Some(_)) => return Err(fail("export has the wrong kind")),
            (_, None) if got.weak => 0,
            (_, None) => return Err(fail("undefined symbol: no loaded module defines it")),
        };
        got.global
            .set(store, Value::I32(value))
            .map_err(|e| fail(&e.to_string()))?;
    }
    Ok(())
}

/// A fresh exception tag with the `(param i32)` signature of `__cpp_exception`/`__c_longjmp`.
pub fn new_tag(store: &mut impl AsStoreMut) -> Tag {
    Tag::new(store, vec![Type::I32])
}

/// Whether a global import is a mutable i32 (what `__stack_pointer` and GOT entries must be).
fn is_mut_i32(ty: &ExternType) -> bool {
    matches!(ty, ExternType::Global(g) if g.ty == Type::I32 && g.mutability == Mutability::Var)
}
