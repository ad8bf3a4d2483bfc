//! One thread's instance group (DESIGN: tables and funcrefs cannot cross wasmer Stores): the
//! shared memory, this thread's table, stack pointer and exception tags, and one instance of
//! every loaded module.

use std::sync::Arc;

use wasmer::{AsStoreMut, Global, Instance, Memory, Table, TableType, Tag, Type, Value};

use crate::error::Error;
use crate::layout::TABLE_CAPACITY;
use crate::linker::Linker;

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
}

impl InstanceGroup {
    pub fn new(
        store: &mut impl AsStoreMut,
        memory: Memory,
        stack_high: u32,
    ) -> Result<Self, Error> {
        let table = Table::new(
            store,
            TableType::new(Type::FuncRef, TABLE_CAPACITY, Some(TABLE_CAPACITY)),
            Value::FuncRef(None),
        )
        .map_err(|e| Error::Layout {
            module: "(table)".into(),
            reason: format!("cannot create a table of {TABLE_CAPACITY} slots: {e}"),
        })?;
        Ok(InstanceGroup {
            memory,
            table,
            stack_pointer: Global::new_mut(store, Value::I32(stack_high as i32)),
            cpp_exception: Tag::new(store, vec![Type::I32]),
            c_longjmp: Tag::new(store, vec![Type::I32]),
            instances: Vec::new(),
        })
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
        let Some(instance) = &self.instances[provider] else {
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
}

/// Why a slot past the table's capacity cannot be had.
pub fn table_full() -> String {
    format!("the function table is full ({TABLE_CAPACITY} slots)")
}
