/* For the libc's own objects only: musl's pthread_impl.h includes <signal.h>, which WASI
 * refuses without signal emulation, and its thread code calls the signal-mask helpers, which
 * are no-ops here (wasix_thread.c). */
#ifndef _WASI_EMULATED_SIGNAL
#define _WASI_EMULATED_SIGNAL
#endif
struct sigaction;
#include_next <signal.h>
__attribute__((__visibility__("hidden"))) void __block_all_sigs(void *);
__attribute__((__visibility__("hidden"))) void __block_app_sigs(void *);
__attribute__((__visibility__("hidden"))) void __restore_sigs(void *);
