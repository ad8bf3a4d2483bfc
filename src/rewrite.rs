//! A load-time rewrite of the main module: its calls to library functions that do not exist
//! yet when main is instantiated become `call_indirect` through the callee's table slot, so
//! they cost one indirect call instead of an import call into a trampoline plus an indirect
//! call. Only code bodies change (no index moves), so exports, element segments and dylink.0
//! stay as they were. The result is compiled through the module cache like any module.

use std::collections::HashMap;

use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{CodeSection, Instruction};
use wasmparser::{Operator, Parser};

/// Function import index → (type index, table slot) of the calls to rewrite.
pub type DirectCalls = HashMap<u32, (u32, u32)>;

struct Rewriter<'a> {
    calls: &'a DirectCalls,
}

impl Reencode for Rewriter<'_> {
    type Error = std::convert::Infallible;

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

/// `bytes` with every `call` of an import in `calls` turned into `call_indirect` through table
/// 0 (the module's `__indirect_function_table`).
pub fn direct_calls(bytes: &[u8], calls: &DirectCalls) -> Result<Vec<u8>, String> {
    let mut module = wasm_encoder::Module::new();
    Rewriter { calls }
        .parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|e| e.to_string())?;
    Ok(module.finish())
}
