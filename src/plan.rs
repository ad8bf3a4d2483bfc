//! The link plan of a module: for each of its imports, what satisfies it — decided once, under
//! the link lock, when the module is loaded (symbol lookup, table slots, GOT values, which
//! calls need a trampoline). Instantiation ([`crate::group`]) only reads plans, so every
//! thread's instance of a module is bound exactly like the first one.

use wasmer::{ExternType, FunctionType, Module, Mutability, Type};

use crate::error::Error;
use crate::linker::Linker;
use crate::scope::{ModuleId, SymbolKind};
use crate::trampoline::{self, Trampoline};

/// What one import is bound to.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// The group's shared memory, table, stack pointer and exception tags.
    Memory,
    Table,
    StackPointer,
    CppException,
    CLongjmp,
    /// An immutable i32 (`__memory_base`, `__table_base`).
    Base(u32),
    /// A `GOT.mem`/`GOT.func` entry (a mutable i32).
    Got(GotValue),
    /// The function of the same name exported by `provider`, instantiated earlier in every
    /// group (see [`Linker::order`]).
    Direct {
        provider: ModuleId,
    },
    /// Trampoline number `index` of the plan: `call_indirect` through the callee's slot.
    Trampoline {
        index: usize,
    },
    /// A weak function nobody defines: calling it traps with its name.
    UndefinedWeak(FunctionType),
    /// A WASI/WASIX function of the group's environment.
    Wasi,
}

/// The value of a GOT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GotValue {
    /// The same in every thread: a data address, a table slot, 0 for an undefined weak symbol.
    Fixed(u32),
    /// A thread-local symbol: `offset` into `provider`'s TLS block of each thread.
    Tls { provider: ModuleId, offset: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedImport {
    pub module: String,
    pub field: String,
    pub binding: Binding,
}

/// Every import of one module, in import order, and its trampolines.
#[derive(Debug, Clone, Default)]
pub struct LinkPlan {
    pub imports: Vec<PlannedImport>,
    /// The stubs of [`Binding::Trampoline`]s.
    pub stubs: Vec<Trampoline>,
    /// The stubs compiled once per process; instantiated once per group with the group's
    /// table.
    pub trampolines: Option<Module>,
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

/// Plans module `id` against `scope` and appends it to the instantiation order. Every module
/// of the batch must be registered in `linker` (their symbols are looked up) first.
pub fn plan(linker: &mut Linker, id: ModuleId, scope: &[ModuleId]) -> Result<(), Error> {
    let (imports, stubs) = bindings(linker, id, scope)?;
    let trampolines = if stubs.is_empty() {
        None
    } else {
        let label = format!("{} (trampolines)", linker.modules[id].name);
        let bytes = trampoline::encode(&stubs).ok_or_else(|| Error::Instantiate {
            module: label.clone(),
            reason: "unsupported signature".into(),
        })?;
        Some(linker.compiler.compile(&label, &bytes)?)
    };
    linker.modules[id].plan = Some(LinkPlan {
        imports,
        stubs,
        trampolines,
    });
    linker.order.push(id);
    Ok(())
}

/// Whether module `id`, planned against `scope` now, would be bound exactly as its plan
/// says (a closed library's instances can then be used again: see [`crate::park`]); if so
/// it goes back in the instantiation order.
pub fn unchanged(linker: &mut Linker, id: ModuleId, scope: &[ModuleId]) -> Result<bool, Error> {
    let (imports, stubs) = bindings(linker, id, scope)?;
    let same = linker.modules[id]
        .plan
        .as_ref()
        .is_some_and(|plan| plan.imports == imports && plan.stubs == stubs);
    if same {
        linker.order.push(id);
    }
    Ok(same)
}

/// What each import of module `id` is bound to, against `scope`, and the trampolines that
/// takes.
fn bindings(
    linker: &mut Linker,
    id: ModuleId,
    scope: &[ModuleId],
) -> Result<(Vec<PlannedImport>, Vec<Trampoline>), Error> {
    let module = linker.modules[id].module().clone();
    let name = linker.modules[id].name.clone();
    let region = linker.regions[id];
    let mut imports = Vec::new();
    let mut stubs: Vec<Trampoline> = Vec::new();
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
        let binding = match (ns, field, ty) {
            ("env", "memory", ExternType::Memory(_)) => Binding::Memory,
            ("env", "__indirect_function_table", ExternType::Table(_)) => Binding::Table,
            ("env", "__stack_pointer", _) => Binding::StackPointer,
            ("env", "__memory_base", ExternType::Global(_)) => Binding::Base(region.memory_base),
            ("env", "__table_base", ExternType::Global(_)) => Binding::Base(region.table_base),
            ("env", "__cpp_exception", ExternType::Tag(_)) => Binding::CppException,
            ("env", "__c_longjmp", ExternType::Tag(_)) => Binding::CLongjmp,
            ("GOT.mem" | "GOT.func", sym, _) => {
                let value = got_value(linker, id, ns == "GOT.func", sym, scope).map_err(fail)?;
                match value {
                    GotValue::Fixed(v) => {
                        tracing::debug!(target: "wasix_dl::bindings", "{name}: {ns}.{sym} = {v:#x}")
                    }
                    GotValue::Tls { provider, offset } => tracing::debug!(
                        target: "wasix_dl::bindings",
                        "{name}: {ns}.{sym} = {offset:#x} in each thread's TLS block of {}",
                        linker.modules[provider].name
                    ),
                }
                Binding::Got(value)
            }
            ("env", sym, ExternType::Function(want)) => match linker.lookup(scope, sym) {
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
                    if provider != id {
                        linker.modules[id].bound_to.insert(provider);
                    }
                    let direct = linker.order.contains(&provider);
                    tracing::debug!(
                        target: "wasix_dl::bindings",
                        "{name}: env.{sym} -> {} ({})",
                        linker.modules[provider].name,
                        if direct { "direct" } else { "trampoline" }
                    );
                    if direct {
                        Binding::Direct { provider }
                    } else {
                        stubs.push(Trampoline {
                            ty: want.clone(),
                            slot: linker.func_slot(provider, sym),
                        });
                        Binding::Trampoline {
                            index: stubs.len() - 1,
                        }
                    }
                }
                None if linker.modules[id].info.is_weak_import(ns, sym) => {
                    Binding::UndefinedWeak(want.clone())
                }
                None => {
                    return Err(fail(format!(
                        "undefined symbol `{sym}` ({want}): no loaded module defines it"
                    )))
                }
            },
            ("env", _, ty) => {
                return Err(fail(format!(
                    "undefined symbol `{field}` ({}): no loaded module defines it",
                    describe(ty)
                )))
            }
            _ => Binding::Wasi,
        };
        imports.push(PlannedImport {
            module: ns.to_string(),
            field: field.to_string(),
            binding,
        });
    }
    Ok((imports, stubs))
}

/// The value of `GOT.mem.sym` (`func` false) or `GOT.func.sym` of module `id`.
fn got_value(
    linker: &mut Linker,
    id: ModuleId,
    func: bool,
    sym: &str,
    scope: &[ModuleId],
) -> Result<GotValue, String> {
    if !func {
        if let Some(value) = linker_symbol(linker, sym) {
            return Ok(GotValue::Fixed(value));
        }
    }
    let found = linker.lookup(scope, sym);
    if let Some((provider, _)) = &found {
        if *provider != id {
            linker.modules[id].bound_to.insert(*provider);
        }
    }
    let constant = |linker: &Linker, provider: ModuleId| {
        let module = &linker.modules[provider];
        module
            .description
            .global_values
            .get(sym)
            .copied()
            .ok_or_else(|| {
                format!(
                    "{} exports `{sym}` as a global without a constant i32 value",
                    module.name
                )
            })
    };
    Ok(match (func, found) {
        (false, Some((provider, SymbolKind::Data))) => GotValue::Fixed(
            linker.regions[provider]
                .memory_base
                .wrapping_add(constant(linker, provider)?),
        ),
        (false, Some((provider, SymbolKind::Tls))) => GotValue::Tls {
            provider,
            offset: constant(linker, provider)?,
        },
        (_, Some((provider, SymbolKind::Function(_)))) => {
            GotValue::Fixed(linker.func_slot(provider, sym))
        }
        (true, Some((provider, _))) => {
            return Err(format!(
                "{} defines `{sym}` as data, not a function",
                linker.modules[provider].name
            ))
        }
        (_, None)
            if linker.modules[id]
                .info
                .is_weak_import(got_namespace(func), sym) =>
        {
            GotValue::Fixed(0)
        }
        (_, None) => return Err("undefined symbol: no loaded module defines it".into()),
    })
}

fn got_namespace(func: bool) -> &'static str {
    if func {
        "GOT.func"
    } else {
        "GOT.mem"
    }
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
