# Entry of every thread the runtime spawns, exported by the main module:
# wasi_thread_start(tid, start) with start a WASIX ThreadStart record. Nothing may touch the
# C stack before __stack_pointer is the thread's own: it is start->stack_upper (offset 0),
# read from the record now, since the runtime may have lowered it.
	.globaltype __stack_pointer, i32
	.globaltype __memory_base, i32, immutable
	.functype __wasix_thread_main (i32, i32) -> ()
	.functype __wasix_futex_wake_all (i32, i32) -> (i32)
	.import_module __wasix_futex_wake_all, wasix_32v1
	.import_name __wasix_futex_wake_all, futex_wake_all
	.functype __wasix_thread_exit (i32) -> ()
	.import_module __wasix_thread_exit, wasix_32v1
	.import_name __wasix_thread_exit, thread_exit

	.text
	.globl wasi_thread_start
	.type wasi_thread_start,@function
wasi_thread_start:
	.functype wasi_thread_start (i32, i32) -> ()
	local.get 1
	i32.load 0
	global.set __stack_pointer
	local.get 0
	local.get 1
	call __wasix_thread_main
	end_function

# __wasix_thread_finish(state, value): the exiting thread's last touch of its memory (which a
# joiner may free at once): store `value` at `state`, wake every waiter, thread_exit(0). The
# woken flag goes to a static byte, not to the stack being freed.
	.hidden __wasix_thread_finish
	.globl __wasix_thread_finish
	.type __wasix_thread_finish,@function
__wasix_thread_finish:
	.functype __wasix_thread_finish (i32, i32) -> ()
	local.get 0
	local.get 1
	i32.atomic.store 0
	local.get 0
	global.get __memory_base
	i32.const discard_woken@MBREL
	i32.add
	call __wasix_futex_wake_all
	drop
	i32.const 0
	call __wasix_thread_exit
	unreachable
	end_function

	.section .bss.discard_woken,"",@
	.p2align 2
discard_woken:
	.int32 0
	.size discard_woken, 4
