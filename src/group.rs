//! One thread's instance group (DESIGN: tables and funcrefs cannot cross wasmer Stores): the
//! shared memory, this thread's table, stack pointer and exception tags, and one instance of
//! every loaded module, each made from its [`LinkPlan`](crate::plan::LinkPlan). Start-up,
//! `dlopen`, a new thread and a thread catching up all instantiate through
//! [`InstanceGroup::instantiate`].

use std::sync::Arc;

use wasmer::{
    AsStoreMut, Extern, Function, Global, Imports, Instance, Memory, RuntimeError, Table,
    TableType, Tag, Type, Value,
};

use crate::error::Error;
use crate::layout::{CATCH_UP_SLOT, TABLE_CAPACITY};
use crate::linker::Linker;
use crate::plan::{Binding, GotValue};
use crate::scope::ModuleId;
use crate::trampoline;

/// Table slots and what they hold.
type SlotValues = Vec<(u32, Value)>;

/// This group's instance of a parked module (see [`crate::park`]) and its GOT entries of
/// thread-local symbols, put back when it is reopened.
#[derive(Clone)]
struct ParkedInstance {
    incarnation: u64,
    instance: Arc<Instance>,
    tls_got: Vec<TlsGot>,
}

/// A GOT entry of module `consumer` for the thread-local symbol at `offset` in `provider`'s
/// TLS block; `pending` until set for the provider's block in this thread.
#[derive(Clone)]
struct TlsGot {
    global: Global,
    consumer: ModuleId,
    provider: ModuleId,
    offset: u32,
    pending: bool,
}

#[derive(Clone)]
pub struct InstanceGroup {
    pub memory: Memory,
    pub table: Table,
    pub stack_pointer: Global,
    /// One tag of each kind per group, shared by all its modules, so that C++ exceptions and
    /// longjmp cross module boundaries (DESIGN decision 9).
    pub cpp_exception: Tag,
    pub c_longjmp: Tag,
    /// By module id; `None` until instantiated. Shared pointers: an `Instance` carries its
    /// whole export map, too much to copy on every dlsym.
    pub instances: Vec<Option<Arc<Instance>>>,
    /// The incarnation of the module each instance was made from (see
    /// [`crate::load::LoadedModule::incarnation`]).
    incarnations: Vec<u64>,
    /// GOT entries of thread-local symbols, set by [`InstanceGroup::bind_tls_got`] once
    /// their provider's TLS block in this thread is known (again, after a reopening).
    tls_got: Vec<TlsGot>,
    /// Instances of parked modules, by id.
    parked: Vec<(ModuleId, ParkedInstance)>,
    /// What the table slots of modules parked once held, by module (id and incarnation),
    /// kept while the module is loaded or parked: reading a slot makes a new function
    /// object in the Store, which would grow by one per slot at every close.
    slot_values: Vec<((ModuleId, u64), SlotValues)>,
}

impl InstanceGroup {
    /// A group with nothing instantiated yet; `catch_up` is the thread's function for the
    /// epoch checks, put in [`CATCH_UP_SLOT`].
    pub fn new(
        store: &mut impl AsStoreMut,
        memory: Memory,
        stack_high: u32,
        catch_up: Function,
    ) -> Result<Self, Error> {
        // Created empty and grown: growing fills the slots in one go, where creating it at
        // full size sets them one by one (a third of a thread's start-up).
        let fail = |reason: String| Error::Layout {
            module: "(table)".into(),
            reason: format!("cannot create a table of {TABLE_CAPACITY} slots: {reason}"),
        };
        let table = Table::new(
            store,
            TableType::new(Type::FuncRef, 0, Some(TABLE_CAPACITY)),
            Value::FuncRef(None),
        )
        .map_err(|e| fail(e.to_string()))?;
        table
            .grow(store, TABLE_CAPACITY, Value::FuncRef(None))
            .map_err(|e| fail(e.to_string()))?;
        table
            .set(store, CATCH_UP_SLOT, Value::FuncRef(Some(catch_up)))
            .map_err(|e| fail(e.to_string()))?;
        Ok(InstanceGroup {
            memory,
            table,
            stack_pointer: Global::new_mut(store, Value::I32(stack_high as i32)),
            cpp_exception: Tag::new(store, vec![Type::I32]),
            c_longjmp: Tag::new(store, vec![Type::I32]),
            instances: Vec::new(),
            incarnations: Vec::new(),
            tls_got: Vec::new(),
            parked: Vec::new(),
            slot_values: Vec::new(),
        })
    }

    /// Instantiates module `id` from its plan, then fills the table slots handed out for its
    /// functions. Every module the plan binds directly must already be instantiated here.
    pub fn instantiate(
        &mut self,
        store: &mut impl AsStoreMut,
        linker: &Linker,
        id: ModuleId,
        wasi: &Imports,
    ) -> Result<Arc<Instance>, Error> {
        let loaded = &linker.modules[id];
        let plan = loaded.plan.as_ref().expect("planned before instantiation");
        let trampolines = match &plan.trampolines {
            Some(module) => {
                let mut imports = Imports::new();
                imports.define("env", "__indirect_function_table", self.table.clone());
                Some(
                    Instance::new(store, module, &imports).map_err(|e| Error::Instantiate {
                        module: format!("{} (trampolines)", loaded.name),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut imports = Imports::new();
        for import in &plan.imports {
            let (ns, field) = (import.module.as_str(), import.field.as_str());
            let fail = |reason: String| Error::Bind {
                module: loaded.name.clone(),
                import_module: ns.to_string(),
                field: field.to_string(),
                reason,
            };
            let value: Extern = match &import.binding {
                Binding::Memory => self.memory.clone().into(),
                Binding::Table => self.table.clone().into(),
                Binding::StackPointer => self.stack_pointer.clone().into(),
                Binding::CppException => self.cpp_exception.clone().into(),
                Binding::CLongjmp => self.c_longjmp.clone().into(),
                Binding::Base(value) => Global::new(store, Value::I32(*value as i32)).into(),
                Binding::Got(GotValue::Fixed(value)) => {
                    Global::new_mut(store, Value::I32(*value as i32)).into()
                }
                Binding::Got(GotValue::Tls { provider, offset }) => {
                    let global = Global::new_mut(store, Value::I32(0));
                    self.tls_got.push(TlsGot {
                        global: global.clone(),
                        consumer: id,
                        provider: *provider,
                        offset: *offset,
                        pending: true,
                    });
                    global.into()
                }
                Binding::Direct { provider } => {
                    let instance = self.instances[*provider].as_ref().ok_or_else(|| {
                        fail(format!(
                            "{} is not instantiated in this thread",
                            linker.modules[*provider].name
                        ))
                    })?;
                    instance
                        .exports
                        .get_function(field)
                        .map_err(|e| fail(e.to_string()))?
                        .clone()
                        .into()
                }
                Binding::Trampoline { index } => trampolines
                    .as_ref()
                    .and_then(|t| {
                        t.exports
                            .get_function(&trampoline::export_name(*index))
                            .ok()
                    })
                    .ok_or_else(|| fail("its trampoline is missing".into()))?
                    .clone()
                    .into(),
                Binding::UndefinedWeak(ty) => {
                    let message = format!("called undefined weak function `{field}`");
                    Function::new(store, ty.clone(), move |_| {
                        Err(RuntimeError::new(message.clone()))
                    })
                    .into()
                }
                Binding::Wasi => wasi.get_export(ns, field).ok_or_else(|| {
                    fail("unknown import namespace or function (not a WASI/WASIX import)".into())
                })?,
            };
            imports.define(ns, field, value);
        }
        let instance =
            Instance::new(store, loaded.module(), &imports).map_err(|e| Error::Instantiate {
                module: loaded.name.clone(),
                reason: e.to_string(),
            })?;
        let instance = Arc::new(instance);
        if self.instances.len() <= id {
            self.instances.resize(id + 1, None);
            self.incarnations.resize(id + 1, 0);
        }
        self.instances[id] = Some(instance.clone());
        self.incarnations[id] = loaded.incarnation;
        self.fill_slots_of(store, linker, id)?;
        Ok(instance)
    }

    /// The address of module `id`'s TLS block in this thread (0 if it has none or it is not
    /// set up yet).
    pub fn tls_base(&self, store: &mut impl AsStoreMut, id: ModuleId) -> u32 {
        let Some(Some(instance)) = self.instances.get(id) else {
            return 0;
        };
        match instance
            .exports
            .get_global("__tls_base")
            .map(|g| g.get(store))
        {
            Ok(Value::I32(base)) => base as u32,
            _ => 0,
        }
    }

    /// Sets the GOT entries of thread-local symbols whose providers' TLS blocks now exist.
    pub fn bind_tls_got(&mut self, store: &mut impl AsStoreMut) -> Result<(), Error> {
        for at in 0..self.tls_got.len() {
            let entry = &self.tls_got[at];
            let base = self.tls_base(store, entry.provider);
            if !entry.pending || base == 0 {
                continue;
            }
            entry
                .global
                .set(store, Value::I32(base.wrapping_add(entry.offset) as i32))
                .map_err(|e| Error::Instantiate {
                    module: "(TLS GOT entry)".into(),
                    reason: e.to_string(),
                })?;
            self.tls_got[at].pending = false;
        }
        Ok(())
    }

    /// Whether this group has an instance of module `id` as it is now.
    pub fn has(&self, (id, incarnation): (ModuleId, u64)) -> bool {
        matches!(self.instances.get(id), Some(Some(_))) && self.incarnations[id] == incarnation
    }

    /// Whether table slot `slot` belongs to a module this group has as it is now.
    pub fn holds_current(&self, linker: &Linker, slot: u32) -> bool {
        (linker.slot_or_region_owner(slot)).is_some_and(|(id, _)| self.has(linker.current(id)))
    }

    /// Puts the function that owns table slot `slot` there, if its module is instantiated in
    /// this group (else the slot is filled when it is).
    pub fn fill_slot(
        &self,
        store: &mut impl AsStoreMut,
        linker: &Linker,
        slot: u32,
    ) -> Result<(), Error> {
        let Some((provider, name)) = linker.slot_owner(slot) else {
            return Ok(());
        };
        if !self.has(linker.current(provider)) {
            return Ok(());
        }
        let Some(Some(instance)) = self.instances.get(provider) else {
            return Ok(());
        };
        let fail = |reason: String| Error::Bind {
            module: linker.modules[provider].name.clone(),
            import_module: "(table)".into(),
            field: name.to_string(),
            reason,
        };
        let function = instance
            .exports
            .get_function(name)
            .map_err(|e| fail(e.to_string()))?
            .clone();
        if slot >= TABLE_CAPACITY {
            return Err(fail(table_full()));
        }
        self.table
            .set(store, slot, Value::FuncRef(Some(function)))
            .map_err(|e| fail(e.to_string()))
    }

    /// Fills every slot handed out for functions of `provider` (after it is instantiated).
    pub fn fill_slots_of(
        &self,
        store: &mut impl AsStoreMut,
        linker: &Linker,
        provider: usize,
    ) -> Result<(), Error> {
        for slot in linker.slots_of(provider) {
            self.fill_slot(store, linker, slot)?;
        }
        Ok(())
    }

    /// Instantiates module `id`, or puts back this group's instance of it from when it was
    /// parked (its table slots as they were; its TLS block is set up anew by the caller).
    pub fn restore_or_instantiate(
        &mut self,
        store: &mut impl AsStoreMut,
        linker: &Linker,
        id: ModuleId,
        wasi: &Imports,
    ) -> Result<Arc<Instance>, Error> {
        let incarnation = linker.modules[id].incarnation;
        let Some(at) = self.parked.iter().position(|(m, _)| *m == id) else {
            return self.instantiate(store, linker, id, wasi);
        };
        let (_, parked) = self.parked.swap_remove(at);
        if parked.incarnation != incarnation {
            return self.instantiate(store, linker, id, wasi);
        }
        let saved = self
            .slot_values
            .iter()
            .find(|(m, _)| *m == (id, incarnation));
        for (slot, value) in saved.map(|(_, slots)| slots.clone()).unwrap_or_default() {
            self.table
                .set(store, slot, value)
                .map_err(|e| Error::Instantiate {
                    module: linker.modules[id].name.clone(),
                    reason: format!("cannot restore table slot {slot}: {e}"),
                })?;
        }
        let tls_got = parked.tls_got.into_iter();
        self.tls_got.extend(tls_got.map(|entry| TlsGot {
            pending: true,
            ..entry
        }));
        self.instances[id] = Some(parked.instance.clone());
        self.incarnations[id] = incarnation;
        Ok(parked.instance)
    }

    /// Parks this group's instances of `modules` (each with the table slots it holds):
    /// keeps them with what their slots hold, and empties the slots. Returns the ids of the
    /// modules it had.
    pub fn park(
        &mut self,
        store: &mut impl AsStoreMut,
        modules: &[((ModuleId, u64), Vec<u32>)],
    ) -> Vec<ModuleId> {
        let mut parked = Vec::new();
        for (module, slots) in modules {
            if self.has(*module) {
                let id = module.0;
                let at = match self.slot_values.iter().position(|(m, _)| m == module) {
                    Some(at) => at,
                    None => {
                        self.slot_values.push((*module, Vec::new()));
                        self.slot_values.len() - 1
                    }
                };
                for &slot in slots {
                    if !self.slot_values[at].1.iter().any(|(s, _)| *s == slot) {
                        if let Some(value) = self.table.get(store, slot) {
                            self.slot_values[at].1.push((slot, value));
                        }
                    }
                }
                let (tls_got, others) = std::mem::take(&mut self.tls_got)
                    .into_iter()
                    .partition(|e| e.consumer == id);
                self.tls_got = others;
                let instance = self.instances[id].take().expect("checked by has");
                // Its TLS block in this thread is given back: none until it is set up anew.
                if let Ok(base) = instance.exports.get_global("__tls_base") {
                    let _ = base.set(store, Value::I32(0));
                }
                self.parked.push((
                    id,
                    ParkedInstance {
                        incarnation: module.1,
                        instance,
                        tls_got,
                    },
                ));
                parked.push(id);
            }
            self.null_slots(store, slots);
        }
        parked
    }

    /// Drops this group's instances of the unloaded `modules` (and what waits for them),
    /// parked ones too; returns the ids of the loaded ones it had.
    pub fn drop_modules(&mut self, modules: &[(ModuleId, u64)]) -> Vec<ModuleId> {
        self.parked
            .retain(|(id, p)| !modules.contains(&(*id, p.incarnation)));
        self.slot_values.retain(|(m, _)| !modules.contains(m));
        let dropped: Vec<ModuleId> = (modules.iter())
            .filter(|&&m| self.has(m))
            .map(|&(id, _)| id)
            .collect();
        for &id in &dropped {
            self.instances[id] = None;
        }
        self.tls_got
            .retain(|e| !dropped.contains(&e.consumer) && !dropped.contains(&e.provider));
        dropped
    }

    /// Empties table `slots` in this group's table.
    pub fn null_slots(&self, store: &mut impl AsStoreMut, slots: &[u32]) {
        for &slot in slots.iter().filter(|&&s| s < TABLE_CAPACITY) {
            let _ = self.table.set(store, slot, Value::FuncRef(None));
        }
    }
}

/// Why a slot past the table's capacity cannot be had.
pub fn table_full() -> String {
    format!("the function table is full ({TABLE_CAPACITY} slots)")
}
