/* musl's thread code reaches the kernel through __syscall(SYS_futex, ...) and a few other
 * calls (some inlined from pthread_impl.h). WASI has no syscalls: these numbers route the ones
 * that matter to the WASIX host calls in wasix_thread.c (__wasix_syscall); the rest answer
 * -ENOSYS, which musl's callers treat as "not supported". */
#define SYS_futex 1
#define SYS_sched_yield 2
#define SYS_sched_getaffinity 3
#define SYS_gettid 4
#define SYS_tkill 5
#define SYS_set_robust_list 6
#define SYS_get_robust_list 7
#define SYS_sched_getparam 8
#define SYS_sched_getscheduler 9
#define SYS_sched_setscheduler 10
#define SYS_sched_setparam 11
#define SYS_rt_sigprocmask 12
#define SYS_close 13

__attribute__((__visibility__("hidden")))
long __wasix_syscall(long n, long a, long b, long c, long d, long e, long f);

static inline long __syscall0(long n) { return __wasix_syscall(n, 0, 0, 0, 0, 0, 0); }
static inline long __syscall1(long n, long a) { return __wasix_syscall(n, a, 0, 0, 0, 0, 0); }
static inline long __syscall2(long n, long a, long b) { return __wasix_syscall(n, a, b, 0, 0, 0, 0); }
static inline long __syscall3(long n, long a, long b, long c) { return __wasix_syscall(n, a, b, c, 0, 0, 0); }
static inline long __syscall4(long n, long a, long b, long c, long d) { return __wasix_syscall(n, a, b, c, d, 0, 0); }
static inline long __syscall5(long n, long a, long b, long c, long d, long e) { return __wasix_syscall(n, a, b, c, d, e, 0); }
static inline long __syscall6(long n, long a, long b, long c, long d, long e, long f) { return __wasix_syscall(n, a, b, c, d, e, f); }
