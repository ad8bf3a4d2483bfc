//! Where a module's memory and table regions go. For now: the main module alone, laid out as
//! `[null guard | stack | main's data (aligned __memory_base) | heap ...]` in a shared memory,
//! and table slot 0 left null with main's functions from `__table_base` = 1.

use crate::dylink::DylinkInfo;
use crate::error::Error;

pub const WASM_PAGE: u64 = 64 * 1024;
/// wasm32's whole address space.
pub const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;
/// Addresses below this stay unused so that a null pointer never aliases real data.
const NULL_GUARD: u64 = 1024;
/// Default stack of the main thread (what wasmer's own linker gives too).
pub const DEFAULT_STACK_SIZE: u32 = 8 * 1024 * 1024;

/// The regions of a PIE main module, all absolute addresses in the shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainLayout {
    /// Lowest stack address (`__stack_low`); the stack grows down from `stack_high`.
    pub stack_low: u32,
    pub stack_high: u32,
    pub memory_base: u32,
    /// First free byte after main's data: where malloc's heap starts (`__heap_base`).
    pub heap_base: u32,
    /// End of the memory the heap starts with (`__heap_end`); malloc grows memory past it.
    pub heap_end: u32,
    pub table_base: u32,
    /// Table slots needed before any library: `table_base + table_size`.
    pub table_min: u32,
    /// Memory pages needed before any library.
    pub initial_pages: u32,
}

fn align_up(value: u64, align_log2: u32) -> u64 {
    let align = 1u64 << align_log2;
    value.div_ceil(align) * align
}

pub fn main_layout(module: &str, info: &DylinkInfo, stack_size: u32) -> Result<MainLayout, Error> {
    let too_big = |what: &str, size: u64| Error::Layout {
        module: module.to_string(),
        reason: format!("{what} of {size} bytes does not fit in a 4 GiB wasm32 memory"),
    };
    // 16-byte alignment (2^4) for the stack and the heap, as the C ABI expects.
    let stack_low = align_up(NULL_GUARD, 4);
    let stack_high = align_up(stack_low + u64::from(stack_size), 4);
    let memory_base = align_up(stack_high, info.memory_align_log2);
    let data_end = memory_base + u64::from(info.memory_size);
    let heap_base = align_up(data_end, 4);
    if heap_base >= MAX_MEMORY {
        return Err(too_big(
            "the data region (mem-info)",
            info.memory_size.into(),
        ));
    }
    let table_base = align_up(1, info.table_align_log2);
    let table_min = table_base + u64::from(info.table_size);
    // A table this large could never be allocated; refuse before trying.
    if table_min > u64::from(u32::MAX) / 2 {
        return Err(Error::Layout {
            module: module.to_string(),
            reason: format!("table size {} in mem-info is out of range", info.table_size),
        });
    }
    // One spare page so the heap starts with room before the first memory.grow.
    let initial_pages = (heap_base.div_ceil(WASM_PAGE) + 1).min(MAX_MEMORY / WASM_PAGE);
    let heap_end = (initial_pages * WASM_PAGE).min(MAX_MEMORY - WASM_PAGE);
    Ok(MainLayout {
        stack_low: stack_low as u32,
        stack_high: stack_high as u32,
        memory_base: memory_base as u32,
        heap_base: heap_base as u32,
        heap_end: heap_end as u32,
        table_base: table_base as u32,
        table_min: table_min as u32,
        initial_pages: initial_pages as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(memory_size: u32, align: u32, table_size: u32) -> DylinkInfo {
        DylinkInfo {
            memory_size,
            memory_align_log2: align,
            table_size,
            ..Default::default()
        }
    }

    #[test]
    fn regions_are_ordered_aligned_and_disjoint() {
        let l = main_layout("m", &info(208_468, 12, 31), 65536).unwrap();
        assert!(l.stack_low >= NULL_GUARD as u32);
        assert_eq!(l.stack_high - l.stack_low, 65536);
        assert_eq!(l.memory_base % 4096, 0);
        assert!(l.memory_base >= l.stack_high);
        // The heap starts at the next 16-byte boundary after main's data.
        assert_eq!(l.heap_base, (l.memory_base + 208_468).next_multiple_of(16));
        assert_eq!((l.table_base, l.table_min), (1, 32));
        assert!(u64::from(l.initial_pages) * WASM_PAGE > u64::from(l.heap_base));
        assert!(l.heap_end > l.heap_base);
        assert_eq!(
            u64::from(l.heap_end),
            u64::from(l.initial_pages) * WASM_PAGE
        );
    }

    #[test]
    fn hostile_sizes_are_errors_not_overflows() {
        assert!(main_layout("m", &info(u32::MAX, 0, 0), DEFAULT_STACK_SIZE).is_err());
        assert!(main_layout("m", &info(16, 31, 0), u32::MAX).is_err());
        assert!(main_layout("m", &info(16, 0, u32::MAX), 1024).is_err());
    }
}
