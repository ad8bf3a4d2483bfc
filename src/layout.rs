//! Where modules' memory and table regions go. At start-up the memory is laid out as
//! `[runtime page | main thread's stack | main's data | each library's data | heap ...]` in one
//! shared memory (libraries in load order, each at its aligned `__memory_base`); the table as
//! `[null | catch-up | main's region | each library's region | slots handed out on demand]`.
//!
//! The runtime page is the first 64 KiB: nothing of the program lives there, so a null pointer
//! never aliases real data, and the runtime keeps the words of the sync protocol there (see
//! [`crate::sync`]): the epoch at [`EPOCH_ADDRESS`], one state word per thread from
//! [`THREAD_STATES`].

use crate::dylink::DylinkInfo;
use crate::error::Error;

pub const WASM_PAGE: u64 = 64 * 1024;
/// wasm32's whole address space.
pub const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;
/// Addresses below this hold no program data (see the module's documentation).
const RUNTIME_PAGE: u64 = WASM_PAGE;
/// Where the runtime publishes the length of the link log, for every thread to compare with.
pub const EPOCH_ADDRESS: u32 = 16;
/// The first thread state word; thread slot `n`'s is at `THREAD_STATES + 4 * n`.
pub const THREAD_STATES: u32 = 64;
/// How many threads can run at once: as many state words as fit in the runtime page.
pub const MAX_THREADS: u32 = (RUNTIME_PAGE as u32 - THREAD_STATES) / 4;
/// The table slot every thread fills with its own catch-up function, which the epoch checks
/// compiled into modules call (see [`crate::rewrite`]); slot 0 stays null.
pub const CATCH_UP_SLOT: u32 = 1;
/// Default stack of the main thread (what wasmer's own linker gives too).
pub const DEFAULT_STACK_SIZE: u32 = 8 * 1024 * 1024;
/// Slots of the function table, which never grows: every module is compiled knowing this
/// bound, so its indirect calls need no run-time bounds check (see [`crate::rewrite`]). A
/// slot is 8 bytes of host memory (2 MiB in all), zeroed at start-up.
pub const TABLE_CAPACITY: u32 = 1 << 18;

/// One module's regions: absolute address of its data and index of its first table slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub memory_base: u32,
    pub table_base: u32,
}

/// The start-up layout of the main module and its libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Lowest stack address (`__stack_low`); the stack grows down from `stack_high`.
    pub stack_low: u32,
    pub stack_high: u32,
    /// Regions in the order of the modules given to [`startup_layout`] (main first).
    pub regions: Vec<Region>,
    /// First free byte after all data: where malloc's heap starts (`__heap_base`).
    pub heap_base: u32,
    /// End of the memory the heap starts with (`__heap_end`); malloc grows memory past it.
    pub heap_end: u32,
    /// Memory pages needed before anything runs.
    pub initial_pages: u32,
    /// First table slot after every module's region.
    pub table_end: u32,
}

fn align_up(value: u64, align_log2: u32) -> u64 {
    let align = 1u64 << align_log2;
    value.div_ceil(align) * align
}

/// Lays out `modules` (name, dylink info; the main module first).
pub fn startup_layout(modules: &[(&str, &DylinkInfo)], stack_size: u32) -> Result<Layout, Error> {
    // 16-byte alignment (2^4) for the stack and the heap, as the C ABI expects.
    let stack_low = align_up(RUNTIME_PAGE, 4);
    let stack_high = align_up(stack_low + u64::from(stack_size), 4);
    let mut memory_top = stack_high;
    // Slot 0 stays null (a null function pointer traps), then the catch-up slot.
    let mut table_top = u64::from(CATCH_UP_SLOT) + 1;
    let mut regions = Vec::with_capacity(modules.len());
    for (name, info) in modules {
        let memory_base = align_up(memory_top, info.memory_align_log2);
        memory_top = memory_base + u64::from(info.memory_size);
        if memory_top >= MAX_MEMORY {
            return Err(Error::Layout {
                module: name.to_string(),
                reason: format!(
                    "its data ({} bytes in mem-info) does not fit in a 4 GiB wasm32 memory",
                    info.memory_size
                ),
            });
        }
        let table_base = align_up(table_top, info.table_align_log2);
        table_top = table_base + u64::from(info.table_size);
        if table_top > u64::from(TABLE_CAPACITY) {
            return Err(Error::Layout {
                module: name.to_string(),
                reason: format!(
                    "table size {} in mem-info does not fit in the function table \
                     ({TABLE_CAPACITY} slots)",
                    info.table_size
                ),
            });
        }
        regions.push(Region {
            memory_base: memory_base as u32,
            table_base: table_base as u32,
        });
    }
    let heap_base = align_up(memory_top, 4);
    // One spare page so the heap starts with room before the first memory.grow.
    let initial_pages = (heap_base.div_ceil(WASM_PAGE) + 1).min(MAX_MEMORY / WASM_PAGE);
    let heap_end = (initial_pages * WASM_PAGE).min(MAX_MEMORY - WASM_PAGE);
    Ok(Layout {
        stack_low: stack_low as u32,
        stack_high: stack_high as u32,
        regions,
        heap_base: heap_base as u32,
        heap_end: heap_end as u32,
        initial_pages: initial_pages as u32,
        table_end: table_top as u32,
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
        let main = info(208_468, 12, 31);
        let lib = info(100, 6, 3);
        let l = startup_layout(&[("m", &main), ("l", &lib)], 65536).unwrap();
        assert!(l.stack_low >= RUNTIME_PAGE as u32);
        assert_eq!(l.stack_high - l.stack_low, 65536);
        let (m, b) = (l.regions[0], l.regions[1]);
        assert_eq!(m.memory_base % 4096, 0);
        assert!(m.memory_base >= l.stack_high);
        assert_eq!(b.memory_base % 64, 0);
        assert!(b.memory_base >= m.memory_base + 208_468);
        // The heap starts at the next 16-byte boundary after the last library's data.
        assert_eq!(l.heap_base, (b.memory_base + 100).next_multiple_of(16));
        assert_eq!((m.table_base, b.table_base, l.table_end), (2, 33, 36));
        assert!(l.heap_end > l.heap_base);
        assert_eq!(
            u64::from(l.heap_end),
            u64::from(l.initial_pages) * WASM_PAGE
        );
    }

    #[test]
    fn hostile_sizes_are_errors_not_overflows() {
        let layout = |i: DylinkInfo, stack| startup_layout(&[("m", &i)], stack);
        assert!(layout(info(u32::MAX, 0, 0), DEFAULT_STACK_SIZE).is_err());
        assert!(layout(info(16, 31, 0), u32::MAX).is_err());
        assert!(layout(info(16, 0, u32::MAX), 1024).is_err());
        let big = info(u32::MAX / 2, 0, 0);
        assert!(startup_layout(&[("m", &big), ("l", &big)], 1024).is_err());
    }
}
