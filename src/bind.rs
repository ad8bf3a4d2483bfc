//! Building one module's imports in one thread's instance group: the memory, table, stack
//! pointer and exception tags the group owns; the module's `__memory_base`/`__table_base`;
//! functions from other modules (direct when the provider is instantiated, else through a
//! trampoline); `GOT.mem`/`GOT.func` entries, filled once every module exists; WASI/WASIX
//! functions from wasmer-wasix.

use wasmer::{
    AsStoreMut, Extern, ExternType, Function, FunctionType, Global, Imports, Instance, Mutability,
    RuntimeError, Type, Value,
};

use crate::cache::Compiler;
use crate::error::Error;
use crate::group::InstanceGroup;
use crate::linker::Linker;
use crate::scope::{ModuleId, SymbolKind};
use crate::trampoline::{self, Trampoline};

/// A `GOT.*` global to fill once the symbol it names has an address.
pub struct PendingGot {
    pub module: ModuleId,
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

impl GotKind {
    fn namespace(self) -> &'static str {
        match self {
            GotKind::Mem => "GOT.mem",
            GotKind::Func => "GOT.func",
        }
    }
}

/// Values of the symbols the loader itself defines (`GOT.mem.__heap_base` and friends).
fn linker_symbol(linker: &Linker, name: &str) -> Option<u32> {
    let layout = &linker.layout;
    Some(match name {
        "__heap_base" => layout.heap_base,
        "__heap_end" => layout.heap_end,
        "__stack_low" => layout.stack_low,
        "__stack_high" => layout.stack_high,
        _ => return None,
    })
}

/// Builds the imports of module `id` and instantiates it in `group`. GOT entries are
/// returned to be filled by [`resolve_got`] once every module of the batch exists.
pub fn instantiate(
    store: &mut impl AsStoreMut,
    linker: &mut Linker,
    group: &mut InstanceGroup,
    id: ModuleId,
    scope: &[ModuleId],
    wasi: &Imports,
    pending_got: &mut Vec<PendingGot>,
) -> Result<std::sync::Arc<Instance>, Error> {
    let module = linker.modules[id].module().clone();
    let name = linker.modules[id].name.clone();
    let region = linker.regions[id];
    let mut imports = Imports::new();
    let mut stubs: Vec<(String, Trampoline)> = Vec::new();
    for import in module.imports() {
        let (ns, field, ty) = (import.module(), import.name(), import.ty());
        let fail = |reason: String| Error::Bind {
            module: name.clone(),
            import_module: ns.to_string(),
            field: field.to_string(),
            reason,
        };
        let needs_mut_i32 = ns.starts_with("GOT.") || (ns, field) == ("env", "__stack_pointer");
        if needs_mut_i32 && !is_mut_i32(ty) {
            return Err(fail(format!(
                "expected a mutable i32 global, found {}",
                describe(ty)
            )));
        }
        let value: Extern = match (ns, field, ty) {
            ("env", "memory", ExternType::Memory(_)) => group.memory.clone().into(),
            ("env", "__indirect_function_table", ExternType::Table(_)) => {
                group.table.clone().into()
            }
            ("env", "__stack_pointer", _) => group.stack_pointer.clone().into(),
            ("env", "__memory_base", ExternType::Global(_)) => {
                Global::new(store, Value::I32(region.memory_base as i32)).into()
            }
            ("env", "__table_base", ExternType::Global(_)) => {
                Global::new(store, Value::I32(region.table_base as i32)).into()
            }
            ("env", "__cpp_exception", ExternType::Tag(_)) => group.cpp_exception.clone().into(),
            ("env", "__c_longjmp", ExternType::Tag(_)) => group.c_longjmp.clone().into(),
            ("GOT.mem", sym, _) if linker_symbol(linker, sym).is_some() => {
                let value = linker_symbol(linker, sym).unwrap_or(0);
                Global::new_mut(store, Value::I32(value as i32)).into()
            }
            ("GOT.mem" | "GOT.func", sym, _) => {
                let global = Global::new_mut(store, Value::I32(0));
                pending_got.push(PendingGot {
                    module: id,
                    kind: if ns == "GOT.mem" {
                        GotKind::Mem
                    } else {
                        GotKind::Func
                    },
                    symbol: sym.to_string(),
                    global: global.clone(),
                    weak: linker.modules[id].info.is_weak_import(ns, sym),
                });
                global.into()
            }
            ("env", sym, ExternType::Function(want)) => {
                match linker.lookup(scope, sym) {
                    Some((provider, kind)) => {
                        let SymbolKind::Function(have) = &kind else {
                            return Err(fail(format!(
                                "{} defines `{sym}` as data, not a function",
                                linker.modules[provider].name
                            )));
                        };
                        if have != want {
                            return Err(fail(format!(
                                "type mismatch for `{sym}`: imported as {want}, {} defines {have}",
                                linker.modules[provider].name
                            )));
                        }
                        tracing::debug!(
                            target: "wasix_dl::bindings",
                            "{name}: env.{sym} -> {} ({})",
                            linker.modules[provider].name,
                            if group.instances[provider].is_some() { "direct" } else { "trampoline" }
                        );
                        if provider != id {
                            linker.modules[id].bound_to.insert(provider);
                        }
                        match &group.instances[provider] {
                            Some(instance) => instance
                                .exports
                                .get_function(sym)
                                .map_err(|e| fail(e.to_string()))?
                                .clone()
                                .into(),
                            None => {
                                let slot = linker.func_slot(provider, sym);
                                stubs.push((
                                    sym.to_string(),
                                    Trampoline {
                                        ty: want.clone(),
                                        slot,
                                    },
                                ));
                                continue; // defined below, once the stubs are compiled
                            }
                        }
                    }
                    None if linker.modules[id].info.is_weak_import(ns, sym) => {
                        undefined_weak(store, sym, want.clone()).into()
                    }
                    None => {
                        return Err(fail(format!(
                            "undefined symbol `{sym}` ({want}): no loaded module defines it"
                        )))
                    }
                }
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
    if !stubs.is_empty() {
        define_trampolines(store, &linker.compiler, group, &name, &stubs, &mut imports)?;
    }
    let instance = Instance::new(store, &module, &imports).map_err(|e| Error::Instantiate {
        module: name.clone(),
        reason: e.to_string(),
    })?;
    let instance = std::sync::Arc::new(instance);
    group.instances[id] = Some(instance.clone());
    Ok(instance)
}

fn define_trampolines(
    store: &mut impl AsStoreMut,
    compiler: &Compiler,
    group: &InstanceGroup,
    name: &str,
    stubs: &[(String, Trampoline)],
    imports: &mut Imports,
) -> Result<(), Error> {
    let fail = |reason: String| Error::Instantiate {
        module: format!("{name} (trampolines)"),
        reason,
    };
    let list: Vec<Trampoline> = stubs.iter().map(|(_, t)| t.clone()).collect();
    let bytes = trampoline::encode(&list).ok_or_else(|| fail("unsupported signature".into()))?;
    let module = compiler.compile(&format!("{name} (trampolines)"), &bytes)?;
    let mut stub_imports = Imports::new();
    stub_imports.define("env", "__indirect_function_table", group.table.clone());
    let instance = Instance::new(store, &module, &stub_imports).map_err(|e| fail(e.to_string()))?;
    for (index, (field, _)) in stubs.iter().enumerate() {
        let function = instance
            .exports
            .get_function(&trampoline::export_name(index))
            .map_err(|e| fail(e.to_string()))?;
        imports.define("env", field, function.clone());
    }
    Ok(())
}

/// A weak function nobody defines: calling it is a trap that says so.
fn undefined_weak(store: &mut impl AsStoreMut, name: &str, ty: FunctionType) -> Function {
    let message = format!("called undefined weak function `{name}`");
    Function::new(store, ty, move |_| Err(RuntimeError::new(message.clone())))
}

/// Fills GOT entries now that their providers exist: data symbols get the absolute address,
/// functions their one table slot.
pub fn resolve_got(
    store: &mut impl AsStoreMut,
    linker: &mut Linker,
    group: &InstanceGroup,
    scope: &[ModuleId],
    pending: &[PendingGot],
) -> Result<(), Error> {
    for got in pending {
        let module = linker.modules[got.module].name.clone();
        let fail = |reason: String| Error::Bind {
            module: module.clone(),
            import_module: got.kind.namespace().into(),
            field: got.symbol.clone(),
            reason,
        };
        let found = linker.lookup(scope, &got.symbol);
        if let Some((provider, _)) = &found {
            if *provider != got.module {
                linker.modules[got.module].bound_to.insert(*provider);
            }
        }
        let value: u32 = match (got.kind, found) {
            (GotKind::Mem, Some((provider, SymbolKind::Data))) => {
                let instance = group.instances[provider]
                    .as_ref()
                    .expect("provider instantiated");
                let offset = match instance
                    .exports
                    .get_global(&got.symbol)
                    .map(|g| g.get(store))
                {
                    Ok(Value::I32(offset)) => offset as u32,
                    _ => return Err(fail("data export is not an i32 global".into())),
                };
                linker.regions[provider].memory_base.wrapping_add(offset)
            }
            (GotKind::Mem, Some((provider, SymbolKind::Tls))) => {
                return Err(fail(format!(
                    "`{}` is thread-local in {}: TLS cannot be bound across modules",
                    got.symbol, linker.modules[provider].name
                )))
            }
            (GotKind::Func, Some((provider, SymbolKind::Function(_))))
            | (GotKind::Mem, Some((provider, SymbolKind::Function(_)))) => {
                let slot = linker.func_slot(provider, &got.symbol);
                group.fill_slot(store, linker, slot)?;
                slot
            }
            (GotKind::Func, Some((provider, _))) => {
                return Err(fail(format!(
                    "{} defines `{}` as data, not a function",
                    linker.modules[provider].name, got.symbol
                )))
            }
            (_, None) if got.weak => 0,
            (_, None) => return Err(fail("undefined symbol: no loaded module defines it".into())),
        };
        tracing::debug!(
            target: "wasix_dl::bindings",
            "{module}: {}.{} = {value:#x}",
            got.kind.namespace(),
            got.symbol
        );
        got.global
            .set(store, Value::I32(value as i32))
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
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

/// Whether a global import is a mutable i32 (what `__stack_pointer` and GOT entries must be).
fn is_mut_i32(ty: &ExternType) -> bool {
    matches!(ty, ExternType::Global(g) if g.ty == Type::I32 && g.mutability == Mutability::Var)
}
