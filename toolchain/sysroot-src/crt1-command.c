/* Entry point of a PIE main module. wasm-ld wraps `_start` with the constructors and
 * destructors only for non-PIE commands, so a PIE main does it here; the loader has applied
 * the data relocations before it calls `_start`. */
#include <stdlib.h>

extern void __wasm_call_ctors(void);
extern int __original_main(void);
extern void __wasix_dl_adopt_cwd(void);
extern void *__wasix_init_main_thread(void);

__attribute__((export_name("_start")))
void _start(void)
{
    __wasix_init_main_thread(); /* the main thread's struct pthread (libc's thread pointer) */
    __wasm_call_ctors();
    __wasix_dl_adopt_cwd();
    /* exit() runs atexit handlers and destructors, flushes stdio and reports the status. */
    exit(__original_main());
}
