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
#[derive(Debug, Clone, PartialEq)]
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

/// The parameter and result types of `ty` in wasm-encoder's terms.
fn val_types(ty: &FunctionType) -> Option<(Vec<ValType>, Vec<ValType>)> {
    let convert = |types: &[Type]| types.iter().map(val_type).collect::<Option<Vec<_>>>();
    Some((convert(ty.params())?, convert(ty.results())?))
}

/// A module that wraps host functions for the sync protocol (see [`crate::sync`]): it
/// imports `env.memory`, `sync.catch_up` and the functions to wrap as `f.0`, `f.1`, ...
/// (types `types`), and exports `w0`, `w1`, ... and two mutable globals: `seen` (the thread's
/// copy of the epoch) and `state` (the address of the thread's state word). A wrapper
///
/// 1. calls `catch_up` if the epoch word (at `epoch_address`) differs from `seen`;
/// 2. raises the state word by one (a plain store: only this thread writes it);
/// 3. calls the function;
/// 4. restores the state word (with `i32.atomic.store` if `fence`, else a plain store whose
///    ordering the publisher's `membarrier` provides), then loads the epoch with
///    `i32.atomic.load` and calls `catch_up` if it moved — in that order, which is what lets a
///    publisher skip threads in host calls.
pub fn host_call_wrappers(
    types: &[FunctionType],
    epoch_address: u32,
    fence: bool,
) -> Option<Vec<u8>> {
    let mut type_section = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let mut globals = wasm_encoder::GlobalSection::new();

    imports.import(
        "env",
        "memory",
        EntityType::Memory(wasm_encoder::MemoryType {
            minimum: 0,
            maximum: Some(65536),
            memory64: false,
            shared: true,
            page_size_log2: None,
        }),
    );
    type_section.ty().function([], []);
    imports.import("sync", "catch_up", EntityType::Function(0));
    for (index, ty) in types.iter().enumerate() {
        let (params, results) = val_types(ty)?;
        type_section.ty().function(params, results);
        imports.import(
            "f",
            &index.to_string(),
            EntityType::Function(index as u32 + 1),
        );
    }
    const SEEN: u32 = 0;
    const STATE: u32 = 1;
    for _ in [SEEN, STATE] {
        add_mutable_i32(&mut globals);
    }
    exports.export("seen", ExportKind::Global, SEEN);
    exports.export("state", ExportKind::Global, STATE);
    let word = |offset: u64| wasm_encoder::MemArg {
        offset,
        align: 2,
        target: wasm_encoder::MemArgTarget::Memory(0),
        ordering: None,
    };
    let catch_up_if_behind = |body: &mut Function| {
        body.instruction(&Instruction::GlobalGet(SEEN));
        body.instruction(&Instruction::I32Const(0));
        body.instruction(&Instruction::I32AtomicLoad(word(u64::from(epoch_address))));
        body.instruction(&Instruction::I32Ne);
        body.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        body.instruction(&Instruction::Call(0));
        body.instruction(&Instruction::End);
    };
    let imported = types.len() as u32 + 1;
    for (index, ty) in types.iter().enumerate() {
        functions.function(index as u32 + 1);
        exports.export(
            &format!("w{index}"),
            ExportKind::Func,
            imported + index as u32,
        );
        // One local after the parameters: the state word's value on entry.
        let depth = ty.params().len() as u32;
        let mut body = Function::new([(1, ValType::I32)]);
        catch_up_if_behind(&mut body);
        body.instruction(&Instruction::GlobalGet(STATE));
        body.instruction(&Instruction::GlobalGet(STATE));
        body.instruction(&Instruction::I32Load(word(0)));
        body.instruction(&Instruction::LocalTee(depth));
        body.instruction(&Instruction::I32Const(1));
        body.instruction(&Instruction::I32Add);
        body.instruction(&Instruction::I32Store(word(0)));
        for param in 0..depth {
            body.instruction(&Instruction::LocalGet(param));
        }
        body.instruction(&Instruction::Call(index as u32 + 1));
        // The results stay on the stack below the rest.
        body.instruction(&Instruction::GlobalGet(STATE));
        body.instruction(&Instruction::LocalGet(depth));
        body.instruction(&if fence {
            Instruction::I32AtomicStore(word(0))
        } else {
            Instruction::I32Store(word(0))
        });
        catch_up_if_behind(&mut body);
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = EncodedModule::new();
    module
        .section(&type_section)
        .section(&imports)
        .section(&functions)
        .section(&globals)
        .section(&exports)
        .section(&code);
    Some(module.finish())
}

/// Appends a mutable `i32` global starting at 0 (the per-thread words the runtime keeps).
pub fn add_mutable_i32(globals: &mut wasm_encoder::GlobalSection) {
    globals.global(
        wasm_encoder::GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &wasm_encoder::ConstExpr::i32_const(0),
    );
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
        let (params, results) = val_types(&stub.ty)?;
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
