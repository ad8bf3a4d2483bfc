/* For the libc's own objects: musl's pthread_impl.h includes <sys/mman.h>, which WASI refuses
 * without mmap emulation; the threaded libc uses none of it. */
#ifndef _WASI_EMULATED_MMAN
#define _WASI_EMULATED_MMAN
#endif
#include_next <sys/mman.h>
