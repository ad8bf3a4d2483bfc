//! Generated wasm stubs for imports whose provider does not exist yet (DESIGN decision 4):
//! a trampoline forwards its arguments with `call_indirect` through the target's table slot,
//! which is filled once the target is instantiated. A call through it costs one indirect wasm
//! call, never a host call, and exceptions pass through it like through any wasm frame.

use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    Instruction, Module as EncodedModule, RefType, TableType, TypeSection, ValType,
};
use wasmer::{FunctionType, Type};

/// One stub to generate: calls table slot `slot` with signature `ty`.
#[derive(Debug, Clone)]
pub struct Trampoline {
    pub ty: FunctionType,
    pub slot: u32,
}

fn val_type(ty: &Type) -> Option<ValType> {
    Some(match ty {
        Type::I32 => ValType::I32,
        Type::I64 => ValType::I64,
        Type::F32 => ValType::F32,
        Type::F64 => ValType::F64,
        Type::V128 => ValType::V128,
        Type::FuncRef => ValType::Ref(RefType::FUNCREF),
        Type::ExternRef => ValType::Ref(RefType::EXTERNREF),
        Type::ExceptionRef => ValType::Ref(RefType::EXNREF),
    })
}

/// Export name of the `index`th trampoline in the generated module.
pub fn export_name(index: usize) -> String {
    format!("t{index}")
}

/// A module importing `env.__indirect_function_table` and exporting `t0`, `t1`, ... in the
/// order of `stubs`. `None` if a signature uses a type wasm-encoder cannot express.
pub fn encode(stubs: &[Trampoline]) -> Option<Vec<u8>> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();

    imports.import(
        "env",
        "__indirect_function_table",
        EntityType::Table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 0,
            maximum: None,
            shared: false,
        }),
    );
    for (index, stub) in stubs.iter().enumerate() {
        let params: Vec<ValType> = stub
            .ty
            .params()
            .iter()
            .map(val_type)
            .collect::<Option<_>>()?;
        let results: Vec<ValType> = stub
            .ty
            .results()
            .iter()
            .map(val_type)
            .collect::<Option<_>>()?;
        types.ty().function(params.clone(), results);
        let type_index = index as u32;
        functions.function(type_index);
        exports.export(&export_name(index), ExportKind::Func, index as u32);
        let mut body = Function::new([]);
        for param in 0..params.len() as u32 {
            body.instruction(&Instruction::LocalGet(param));
        }
        body.instruction(&Instruction::I32Const(stub.slot as i32));
        body.instruction(&Instruction::CallIndirect {
            type_index,
            table_index: 0,
        });
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = EncodedModule::new();
    module
        .section(&types)
        .section(&imports)
        .section(&functions)
        .section(&exports)
        .section(&code);
    Some(module.finish())
}
