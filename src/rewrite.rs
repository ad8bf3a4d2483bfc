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
//! Only the import's limits and code bodies change (no index moves), so exports, element
//! segments and dylink.0 stay as they were. The result is compiled through the module cache.

use std::collections::HashMap;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{CodeSection, Instruction};
use wasmparser::{Operator, Parser};

use crate::layout::TABLE_CAPACITY;

/// Function import index → (type index, table slot) of the calls to rewrite.
pub type DirectCalls = HashMap<u32, (u32, u32)>;

/// What identifies this rewrite in the module cache, besides the module and its calls.
pub fn identity() -> Vec<u8> {
    format!("link form v1, table capacity {TABLE_CAPACITY}").into_bytes()
}

struct Rewriter<'a> {
    calls: &'a DirectCalls,
    in_imports: bool,
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

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let mut f = self.new_function_with_parsed_locals(&func)?;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
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

/// `bytes` in link form: the table import fixed at [`TABLE_CAPACITY`], and every `call` of an
/// import in `calls` turned into `call_indirect` through table 0. The module must import
/// `env.__indirect_function_table` as its only table import.
pub fn link_form(bytes: &[u8], calls: &DirectCalls) -> Result<Vec<u8>, String> {
    let mut module = wasm_encoder::Module::new();
    Rewriter {
        calls,
        in_imports: false,
    }
    .parse_core_module(&mut module, Parser::new(0), bytes)
    .map_err(|e| e.to_string())?;
    Ok(module.finish())
}
