/* Linked into every shared library: the runtime calls `__wasix_init_tls` once per thread other
 * than the loading one, with a valid stack, and uses the result as this module's TLS base. */
#include <stddef.h>
#include <stdlib.h>

extern void __wasm_init_tls(void *);

__attribute__((export_name("__wasix_init_tls")))
void *__wasix_init_tls(void)
{
    size_t size = __builtin_wasm_tls_size();
    if (size == 0)
        return NULL;
    void *block = aligned_alloc(__builtin_wasm_tls_align(), size);
    if (block == NULL)
        __builtin_trap();
    __wasm_init_tls(block);
    return block;
}
