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
//! * with epoch checks (the default), every loop header and the entry of every function that
//!   calls get the check of the sync protocol (see [`crate::sync`]):
//!   ```text
//!   i32.const 0  i32.load offset=EPOCH_ADDRESS  global.get $seen  i32.ne
//!   if  i32.const CATCH_UP_SLOT  call_indirect (type $void)  end
//!   ```
//!   where `$seen` is a mutable global added at the end of the module's globals and exported
//!   as [`CHECK_GLOBAL`], and `$void` a `[] -> []` type added at the end of its types. A loop
//!   or a recursion without host calls thus answers a `dlopen` in another thread within one
//!   iteration; a function without calls and loops ends soon anyway.
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

/// What identifies this rewrite in the module cache, besides the module and its calls.
pub fn identity(epoch_checks: bool) -> Vec<u8> {
    format!(
        "link form v2, table capacity {TABLE_CAPACITY}, epoch checks {epoch_checks} \
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

/// What the rewrite needs to know about the module before it starts writing it.
#[derive(Default)]
struct Shape {
    types: u32,
    globals: u32,
    imports_memory: bool,
    has_globals: bool,
    has_exports: bool,
}

impl Shape {
    fn of(bytes: &[u8]) -> Result<Shape, wasmparser::BinaryReaderError> {
        let mut shape = Shape::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::TypeSection(types) => {
                    for group in types {
                        shape.types += group?.types().len() as u32;
                    }
                }
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        match import?.ty {
                            TypeRef::Global(_) => shape.globals += 1,
                            TypeRef::Memory(_) => shape.imports_memory = true,
                            _ => {}
                        }
                    }
                }
                Payload::GlobalSection(globals) => {
                    shape.globals += globals.count();
                    shape.has_globals = true;
                }
                Payload::ExportSection(_) => shape.has_exports = true,
                _ => {}
            }
        }
        Ok(shape)
    }
}

struct Rewriter<'a> {
    calls: &'a DirectCalls,
    in_imports: bool,
    checks: Option<Checks>,
    /// Whether the global and its export still have to be written (the module has no
    /// section of that kind to append them to).
    global_pending: bool,
    export_pending: bool,
}

impl Rewriter<'_> {
    fn add_global(&self, globals: &mut wasm_encoder::GlobalSection) {
        globals.global(
            wasm_encoder::GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &wasm_encoder::ConstExpr::i32_const(0),
        );
    }

    fn add_export(&self, exports: &mut wasm_encoder::ExportSection, checks: Checks) {
        exports.export(CHECK_GLOBAL, ExportKind::Global, checks.seen_global);
    }
}

/// Emits the epoch check (see the module documentation).
fn check(f: &mut wasm_encoder::Function, checks: Checks) {
    f.instruction(&Instruction::I32Const(0));
    f.instruction(&Instruction::I32Load(MemArg {
        offset: u64::from(EPOCH_ADDRESS),
        align: 2,
        target: wasm_encoder::MemArgTarget::Memory(0),
        ordering: None,
    }));
    f.instruction(&Instruction::GlobalGet(checks.seen_global));
    f.instruction(&Instruction::I32Ne);
    f.instruction(&Instruction::If(BlockType::Empty));
    f.instruction(&Instruction::I32Const(CATCH_UP_SLOT as i32));
    f.instruction(&Instruction::CallIndirect {
        type_index: checks.void_type,
        table_index: 0,
    });
    f.instruction(&Instruction::End);
}

fn is_call(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. }
    )
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
        if self.checks.is_some() {
            self.add_global(globals);
        }
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
        if let Some(checks) = self.checks {
            self.add_export(exports, checks);
        }
        Ok(())
    }

    /// Writes the global and export sections where the module has none.
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let Some(checks) = self.checks else {
            return Ok(());
        };
        // Sections in binary order from the global section on (the tag section comes
        // before it although its id is larger).
        let rank = |id: Option<SectionId>| match id {
            None => 100,
            Some(SectionId::Tag) => 0,
            Some(id) => id as u8,
        };
        if self.global_pending && rank(before) > SectionId::Global as u8 {
            let mut globals = wasm_encoder::GlobalSection::new();
            self.add_global(&mut globals);
            module.section(&globals);
            self.global_pending = false;
        }
        if self.export_pending && rank(before) > SectionId::Export as u8 {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_export(&mut exports, checks);
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
        let mut f = self.new_function_with_parsed_locals(&func)?;
        if let Some(checks) = self.checks {
            let mut reader = func.get_operators_reader()?;
            let mut calls = false;
            while !reader.eof() && !calls {
                calls = is_call(&reader.read()?);
            }
            if calls {
                check(&mut f, checks);
            }
        }
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            if let (Operator::Loop { .. }, Some(checks)) = (&op, self.checks) {
                f.instruction(&self.instruction(op)?);
                check(&mut f, checks);
                continue;
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
/// import in `calls` turned into `call_indirect` through table 0, and with `epoch_checks`
/// the checks of the sync protocol (in a module that imports its memory). The module must
/// import `env.__indirect_function_table` as its only table import.
pub fn link_form(bytes: &[u8], calls: &DirectCalls, epoch_checks: bool) -> Result<Vec<u8>, String> {
    let shape = Shape::of(bytes).map_err(|e| e.to_string())?;
    let checks = (epoch_checks && shape.imports_memory).then_some(Checks {
        void_type: shape.types,
        seen_global: shape.globals,
    });
    let mut module = wasm_encoder::Module::new();
    Rewriter {
        calls,
        in_imports: false,
        checks,
        global_pending: checks.is_some() && !shape.has_globals,
        export_pending: checks.is_some() && !shape.has_exports,
    }
    .parse_core_module(&mut module, Parser::new(0), bytes)
    .map_err(|e| e.to_string())?;
    Ok(module.finish())
}
