/* The thread pointer of wasm32 with threads: a thread-local in the main module's libc (each
 * thread's TLS block is its own), set by wasi_thread_start for new threads. The main thread's
 * is set on first use, which may come from a library's constructor before _start. */
struct __pthread;
extern __attribute__((__visibility__("hidden"))) _Thread_local struct __pthread *__wasix_self;
__attribute__((__visibility__("hidden"))) struct __pthread *__wasix_init_main_thread(void);

static inline uintptr_t __get_tp(void)
{
	struct __pthread *self = __wasix_self;
	return (uintptr_t)(self ? self : __wasix_init_main_thread());
}

#define TP_ADJ(p) (p)
#define tls_mod_off_t unsigned long long
