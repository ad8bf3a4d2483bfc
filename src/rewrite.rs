//! The load-time rewrite that puts a module in its *link form* before it is compiled:
//!
//! * its import of `env.__indirect_function_table` is declared with the table's fixed
//!   capacity as both minimum and maximum ([`crate::layout::TABLE_CAPACITY`]), so Cranelift
//!   knows the bound of every `call_indirect` at compile time: the bounds check folds away and
//!   the table's base is loaded once, not on every indirect call;
//! * in the main module, calls to library functions that do not exist yet when main is
//!   instantiated become `call_indirect` through the callee's table slot, so they cost one
//!   indirect call instead of an import call into a trampoline plus an indirect call.
//!
//! * with epoch checks (the default), every loop header, and the entry of every function that
//!   is part of a cycle of direct calls, get the check of the sync protocol (see
//!   [`crate::sync`]):
//!   ```text
//!   i32.const 0  i32.load offset=EPOCH_ADDRESS  local.get $seen  i32.ne
//!   if  i32.const CATCH_UP_SLOT  call_indirect (type $void)
//!       global.get $seen  local.set $seen  end
//!   ```
//!   where global `$seen` is added at the end of the module's globals and exported as
//!   [`CHECK_GLOBAL`] (the runtime keeps it current), local `$seen` is the function's copy of
//!   it (a register in the loop, not a global load), and `$void` a `[] -> []` type added at the
//!   end of its types. Code that runs long without host calls must loop or recurse, so a
//!   thread running it answers a `dlopen` in another thread within one iteration. Recursion
//!   only through function pointers, without any loop, is not checked: checking every
//!   function that calls through a pointer doubled the cost on CPython (measured in
//!   `benches/sync.rs`); such a thread answers at its next host call or the sync timeout.
//!
//! * every `call_indirect` through table 0 first records the slot it calls in a global added
//!   for that and exported as [`CALLEE_GLOBAL`] (`global.set $callee  global.get $callee`),
//!   and the custom section [`CALL_SITES_SECTION`] lists each such instruction's offset and
//!   type: when a call traps on a type mismatch, [`crate::diagnose`] names the callee and both
//!   types (wasmer's trap says only "indirect call type mismatch"). One global store per
//!   indirect call.
//!
//! Nothing moves (new entities are appended after the existing ones), so exports, element
//! segments and dylink.0 stay as they were. The result is compiled through the module cache.

use std::collections::HashMap;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{BlockType, CodeSection, ExportKind, Instruction, MemArg, SectionId, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef};

use crate::layout::{CATCH_UP_SLOT, EPOCH_ADDRESS, TABLE_CAPACITY};

/// Function import index → (type index, table slot) of the calls to rewrite.
pub type DirectCalls = HashMap<u32, (u32, u32)>;

/// The export name of a module's copy of its thread's `seen` (the epoch checks compare it).
pub const CHECK_GLOBAL: &str = "__wasix_dl_seen";

/// The export name of the global that holds the table slot of the module's last
/// `call_indirect` (per thread: each thread has its own instance).
pub const CALLEE_GLOBAL: &str = "__wasix_dl_callee";

/// Custom section of the link form: for every `call_indirect` through table 0, its offset in
/// the module and its type index, as pairs of little-endian u32, in code order.
pub const CALL_SITES_SECTION: &str = "wasix-dl.call-sites";

/// What identifies this rewrite in the module cache, besides the module and its calls.
pub fn identity(epoch_checks: bool) -> Vec<u8> {
    format!(
        "link form v4 (callee recorded), table capacity {TABLE_CAPACITY}, epoch checks {epoch_checks} \
         (epoch at {EPOCH_ADDRESS}, catch-up slot {CATCH_UP_SLOT})"
    )
    .into_bytes()
}

/// The indices the epoch checks use, once the module is known to allow them.
#[derive(Clone, Copy)]
struct Checks {
    void_type: u32,
    seen_global: u32,
}

/// The globals the rewrite appends: the callee slot, then with checks `seen`.
fn added_globals(globals: &mut wasm_encoder::GlobalSection, checks: Option<Checks>) {
    crate::trampoline::add_mutable_i32(globals);
    if checks.is_some() {
        crate::trampoline::add_mutable_i32(globals);
    }
}

/// What the rewrite needs to know about the module before it starts writing it.
#[derive(Default)]
struct Shape {
    types: u32,
    /// Parameter count of each type (0 for non-function types).
    type_params: Vec<u32>,
    /// Every function the module defines, in order.
    functions: Vec<FunctionShape>,
    globals: u32,
    imports_memory: bool,
    has_globals: bool,
    has_exports: bool,
}

impl Shape {
    fn of(bytes: &[u8]) -> Result<Shape, wasmparser::BinaryReaderError> {
        let mut shape = Shape::default();
        let (mut imported_functions, mut code_entries) = (0u32, 0usize);
        let mut callees: Vec<Vec<usize>> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::TypeSection(types) => {
                    for group in types {
                        for ty in group?.types() {
                            let params = match &ty.composite_type.inner {
                                wasmparser::CompositeInnerType::Func(f) => f.params().len(),
                                _ => 0,
                            };
                            shape.type_params.push(params as u32);
                        }
                    }
                    shape.types = shape.type_params.len() as u32;
                }
                Payload::FunctionSection(functions) => {
                    for ty in functions {
                        let params = shape.type_params.get(ty? as usize).copied();
                        shape.functions.push(FunctionShape {
                            params: params.unwrap_or(0),
                            ..Default::default()
                        });
                    }
                }
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        match import?.ty {
                            TypeRef::Global(_) => shape.globals += 1,
                            TypeRef::Memory(_) => shape.imports_memory = true,
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_functions += 1,
                            _ => {}
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut reader = body.get_operators_reader()?;
                    let (mut loops, mut calls) = (false, Vec::new());
                    while !reader.eof() {
                        match reader.read()? {
                            Operator::Loop { .. } => loops = true,
                            Operator::Call { function_index }
                            | Operator::ReturnCall { function_index } => {
                                if let Some(callee) = function_index.checked_sub(imported_functions)
                                {
                                    calls.push(callee as usize);
                                }
                            }
                            _ => {}
                        }
                    }
                    if let Some(function) = shape.functions.get_mut(code_entries) {
                        function.loops = loops;
                    }
                    callees.push(calls);
                    code_entries += 1;
                }
                Payload::GlobalSection(globals) => {
                    shape.globals += globals.count();
                    shape.has_globals = true;
                }
                Payload::ExportSection(_) => shape.has_exports = true,
                _ => {}
            }
        }
        for id in recursive(&callees) {
            if let Some(function) = shape.functions.get_mut(id) {
                function.recursive = true;
            }
        }
        Ok(shape)
    }
}

/// What the checks need to know about one function.
#[derive(Default, Clone, Copy)]
struct FunctionShape {
    params: u32,
    /// It has a loop (each gets a check at its header).
    loops: bool,
    /// It is part of a cycle of direct calls (it gets a check at its entry).
    recursive: bool,
}

/// The functions that lie on a cycle of the direct call graph `callees` (Tarjan's strongly
/// connected components, without recursion: CPython's call graph is deep).
fn recursive(callees: &[Vec<usize>]) -> Vec<usize> {
    let n = callees.len();
    let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut out) = (vec![false; n], Vec::new(), Vec::new());
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (function, position in its callee list)
        let mut work = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (f, ref mut pos)) = work.last_mut() {
            if let Some(&g) = callees[f].get(*pos) {
                *pos += 1;
                if g >= n {
                    continue;
                }
                if index[g] == usize::MAX {
                    index[g] = next;
                    low[g] = next;
                    next += 1;
                    stack.push(g);
                    on_stack[g] = true;
                    work.push((g, 0));
                } else if on_stack[g] {
                    low[f] = low[f].min(index[g]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[f]);
            }
            if low[f] == index[f] {
                let mut component = Vec::new();
                while let Some(g) = stack.pop() {
                    on_stack[g] = false;
                    component.push(g);
                    if g == f {
                        break;
                    }
                }
                if component.len() > 1 || callees[f].contains(&f) {
                    out.extend(component);
                }
            }
        }
    }
    out
}

struct Rewriter<'a> {
    calls: &'a DirectCalls,
    in_imports: bool,
    /// Index of the global every `call_indirect` records its slot in.
    callee_global: u32,
    checks: Option<Checks>,
    /// The defined functions, in order, and the next one's position.
    functions: Vec<FunctionShape>,
    next_function: usize,
    /// Whether the globals and their exports still have to be written (the module has no
    /// section of that kind to append them to).
    global_pending: bool,
    export_pending: bool,
}

impl Rewriter<'_> {
    fn add_exports(&self, exports: &mut wasm_encoder::ExportSection) {
        exports.export(CALLEE_GLOBAL, ExportKind::Global, self.callee_global);
        if let Some(checks) = self.checks {
            exports.export(CHECK_GLOBAL, ExportKind::Global, checks.seen_global);
        }
    }
}

/// Emits the epoch check (see the module documentation), comparing the epoch with `seen`'s
/// copy in local `local`, refreshed after a catch-up.
fn check(f: &mut wasm_encoder::Function, checks: Checks, local: u32) {
    f.instruction(&Instruction::I32Const(0));
    f.instruction(&Instruction::I32Load(MemArg {
        offset: u64::from(EPOCH_ADDRESS),
        align: 2,
        target: wasm_encoder::MemArgTarget::Memory(0),
        ordering: None,
    }));
    f.instruction(&Instruction::LocalGet(local));
    f.instruction(&Instruction::I32Ne);
    f.instruction(&Instruction::If(BlockType::Empty));
    f.instruction(&Instruction::I32Const(CATCH_UP_SLOT as i32));
    f.instruction(&Instruction::CallIndirect {
        type_index: checks.void_type,
        table_index: 0,
    });
    f.instruction(&Instruction::GlobalGet(checks.seen_global));
    f.instruction(&Instruction::LocalSet(local));
    f.instruction(&Instruction::End);
}

impl Reencode for Rewriter<'_> {
    type Error = std::convert::Infallible;

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        self.in_imports = true;
        let result = wasm_encoder::reencode::utils::parse_import_section(self, imports, section);
        self.in_imports = false;
        result
    }

    /// Only ever reached for the module's one table import, `env.__indirect_function_table`
    /// (the caller checks), or for tables it defines, which keep their limits.
    fn table_type(
        &mut self,
        table_ty: wasmparser::TableType,
    ) -> Result<wasm_encoder::TableType, ReencodeError<Self::Error>> {
        let mut ty = wasm_encoder::reencode::utils::table_type(self, table_ty)?;
        if self.in_imports {
            ty.minimum = u64::from(TABLE_CAPACITY);
            ty.maximum = Some(u64::from(TABLE_CAPACITY));
        }
        Ok(ty)
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        wasm_encoder::reencode::utils::parse_type_section(self, types, section)?;
        if self.checks.is_some() {
            types.ty().function([], []);
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        wasm_encoder::reencode::utils::parse_global_section(self, globals, section)?;
        added_globals(globals, self.checks);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        Ok(())
    }

    /// Writes the global and export sections where the module has none.
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        // Sections in binary order from the global section on (the tag section comes
        // before it although its id is larger).
        let rank = |id: Option<SectionId>| match id {
            None => 100,
            Some(SectionId::Tag) => 0,
            Some(id) => id as u8,
        };
        if self.global_pending && rank(before) > SectionId::Global as u8 {
            let mut globals = wasm_encoder::GlobalSection::new();
            added_globals(&mut globals, self.checks);
            module.section(&globals);
            self.global_pending = false;
        }
        if self.export_pending && rank(before) > SectionId::Export as u8 {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
            self.export_pending = false;
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let shape = self
            .functions
            .get(self.next_function)
            .copied()
            .unwrap_or_default();
        self.next_function += 1;
        let checks = self.checks.filter(|_| shape.loops || shape.recursive);
        // The function's locals, plus its copy of `seen` when it gets checks.
        let mut locals = Vec::new();
        let mut local = shape.params;
        for entry in func.get_locals_reader()? {
            let (count, ty) = entry?;
            locals.push((count, self.val_type(ty)?));
            local = local.saturating_add(count);
        }
        if checks.is_some() {
            locals.push((1, ValType::I32));
        }
        let mut f = wasm_encoder::Function::new(locals);
        if let Some(checks) = checks {
            f.instruction(&Instruction::GlobalGet(checks.seen_global));
            f.instruction(&Instruction::LocalSet(local));
            if shape.recursive {
                check(&mut f, checks, local);
            }
        }
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            if let (Operator::Loop { .. }, Some(checks)) = (&op, checks) {
                f.instruction(&self.instruction(op)?);
                check(&mut f, checks, local);
                continue;
            }
            if let Operator::CallIndirect { table_index: 0, .. }
            | Operator::ReturnCallIndirect { table_index: 0, .. } = op
            {
                f.instruction(&Instruction::GlobalSet(self.callee_global));
                f.instruction(&Instruction::GlobalGet(self.callee_global));
            }
            if let Operator::Call { function_index } = op {
                if let Some(&(type_index, slot)) = self.calls.get(&function_index) {
                    f.instruction(&Instruction::I32Const(slot as i32));
                    f.instruction(&Instruction::CallIndirect {
                        type_index,
                        table_index: 0,
                    });
                    continue;
                }
            }
            f.instruction(&self.instruction(op)?);
        }
        code.function(&f);
        Ok(())
    }
}

/// `bytes` in link form: the table import fixed at [`TABLE_CAPACITY`], every `call` of an
/// import in `calls` turned into `call_indirect` through table 0, every `call_indirect`
/// recording its slot, and with `epoch_checks` the checks of the sync protocol (in a module
/// that imports its memory). The module must import `env.__indirect_function_table` as its
/// only table import.
pub fn link_form(bytes: &[u8], calls: &DirectCalls, epoch_checks: bool) -> Result<Vec<u8>, String> {
    let shape = Shape::of(bytes).map_err(|e| e.to_string())?;
    let checks = (epoch_checks && shape.imports_memory).then_some(Checks {
        void_type: shape.types,
        seen_global: shape.globals + 1,
    });
    let mut module = wasm_encoder::Module::new();
    Rewriter {
        calls,
        in_imports: false,
        callee_global: shape.globals,
        checks,
        functions: shape.functions,
        next_function: 0,
        global_pending: !shape.has_globals,
        export_pending: !shape.has_exports,
    }
    .parse_core_module(&mut module, Parser::new(0), bytes)
    .map_err(|e| e.to_string())?;
    let mut linked = module.finish();
    let sites = call_sites(&linked).map_err(|e| e.to_string())?;
    // A custom section at the end moves nothing the offsets refer to.
    wasm_encoder::Section::append_to(
        &wasm_encoder::CustomSection {
            name: CALL_SITES_SECTION.into(),
            data: sites.into(),
        },
        &mut linked,
    );
    Ok(linked)
}

/// The [`CALL_SITES_SECTION`] of a module: its `call_indirect`s through table 0.
fn call_sites(bytes: &[u8]) -> Result<Vec<u8>, wasmparser::BinaryReaderError> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = payload? {
            let mut reader = body.get_operators_reader()?;
            while !reader.eof() {
                let (op, offset) = reader.read_with_offset()?;
                if let Operator::CallIndirect {
                    type_index,
                    table_index: 0,
                }
                | Operator::ReturnCallIndirect {
                    type_index,
                    table_index: 0,
                } = op
                {
                    out.extend_from_slice(&(offset as u32).to_le_bytes());
                    out.extend_from_slice(&type_index.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// The type index of the `call_indirect` at `offset`, from a [`CALL_SITES_SECTION`].
pub fn call_site_type(section: &[u8], offset: u32) -> Option<u32> {
    section.chunks_exact(8).find_map(|pair| {
        let at = u32::from_le_bytes(pair[..4].try_into().ok()?);
        (at == offset).then(|| u32::from_le_bytes(pair[4..].try_into().unwrap()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_on_call_cycles_are_found() {
        // 0 <-> 1, 2 -> 2, 3 -> 0, 4 -> 5 (no cycle), 5 leaf.
        let callees = vec![vec![1], vec![0], vec![2], vec![0], vec![5], vec![]];
        let mut found = recursive(&callees);
        found.sort_unstable();
        assert_eq!(found, vec![0, 1, 2]);
    }

    /// Each function's `call_indirect`s through the catch-up slot's `[] -> []` type.
    fn checks_per_function(bytes: &[u8]) -> Vec<usize> {
        let shape = Shape::of(bytes).unwrap();
        let void = shape.types - 1;
        let mut counts = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut reader = body.get_operators_reader().unwrap();
                let mut n = 0;
                while !reader.eof() {
                    if let Operator::CallIndirect { type_index, .. } = reader.read().unwrap() {
                        n += usize::from(type_index == void);
                    }
                }
                counts.push(n);
            }
        }
        counts
    }

    #[test]
    fn loops_and_recursive_functions_get_epoch_checks_and_the_module_stays_valid() {
        let wat = r#"(module
          (import "env" "memory" (memory 1 65536 shared))
          (import "env" "__indirect_function_table" (table 0 funcref))
          (func $spin (param i32)
            (loop $l (br_if $l (i32.atomic.load (local.get 0)))))
          (func $fib (param i32) (result i32)
            (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
              (then (local.get 0))
              (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                             (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
          (func $leaf (result i32) (call $fib (i32.const 3)))
          (export "fib" (func $fib)))"#;
        let bytes = wasmer::wat2wasm(wat.as_bytes()).unwrap();
        let linked = link_form(&bytes, &DirectCalls::new(), true).unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&linked)
            .expect("the rewritten module validates");
        // One check in the loop, one at fib's entry, none in the function that only calls.
        assert_eq!(checks_per_function(&linked), vec![1, 1, 0]);
        let exported = Parser::new(0).parse_all(&linked).any(|p| match p.unwrap() {
            Payload::ExportSection(exports) => {
                exports.into_iter().any(|e| e.unwrap().name == CHECK_GLOBAL)
            }
            _ => false,
        });
        assert!(exported, "{CHECK_GLOBAL} is exported");
        // Without checks only the table import changes.
        let plain = link_form(&bytes, &DirectCalls::new(), false).unwrap();
        assert_eq!(checks_per_function(&plain), vec![0, 0, 0]);
    }

    #[test]
    fn a_module_without_globals_or_exports_gets_both_sections() {
        let wat = r#"(module
          (import "env" "memory" (memory 1 65536 shared))
          (import "env" "__indirect_function_table" (table 0 funcref))
          (func (loop $l (br $l))))"#;
        let bytes = wasmer::wat2wasm(wat.as_bytes()).unwrap();
        let linked = link_form(&bytes, &DirectCalls::new(), true).unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&linked)
            .expect("the rewritten module validates");
        assert_eq!(checks_per_function(&linked), vec![1]);
    }
}
