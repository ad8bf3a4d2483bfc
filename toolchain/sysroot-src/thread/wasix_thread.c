/* POSIX threads for the wasix-dl libc: the wasm32 glue under musl's generic thread code.
 *
 * The guest side of the contract with the runtime (wasix_32v1 host calls):
 *
 * - pthread_create makes one aligned_alloc'ed block: the stack (attribute size, default
 *   1 MiB, no guard) at the bottom, then the main module's TLS block for the thread
 *   (__builtin_wasm_tls_size/align), then struct thread_block: musl's struct pthread, the
 *   WASIX ThreadStart record (64 bytes, all u32: stack_upper, tls_base, start_funct,
 *   start_args, reserved[10], stack_size, guard_size), the start routine and its argument,
 *   then the thread's pthread_key slots. It calls thread_spawn_v2(&start, &tid) -> errno.
 * - The new thread enters main's export wasi_thread_start(tid, &start)
 *   (wasi_thread_start.s): __stack_pointer = start->stack_upper as read from the record (the
 *   runtime may have lowered it), then __wasix_thread_main below: __wasm_init_tls(tls_base)
 *   unless __builtin_wasm_tls_base() is already tls_base, the thread pointer, the routine.
 * - The thread pointer (__pthread_self) is the thread-local __wasix_self in main's TLS. The
 *   main thread's struct pthread is static, set up by crt1's _start or on first use (a
 *   library's constructor may run first); its tid comes from thread_id.
 * - Futexes are the futex_wait/futex_wake/futex_wake_all host calls (a thread blocked in a
 *   host call is one the runtime need not wait for), reached through musl's
 *   __syscall(SYS_futex, ...) (see include/syscall_arch.h) and __timedwait_cp below.
 * - Thread exit runs cleanup handlers, C++ thread_local destructors (__cxa_thread_atexit is
 *   here) and key destructors, unlinks the thread, then as its very last memory access stores
 *   DT_EXITED to detach_state and wakes joiners, then thread_exit(0), which never returns.
 *   The joiner frees the block. A detached thread is put on a list (under the thread-list
 *   lock) that later pthread_create/join/detach calls free once it has exited.
 * - Cancellation is deferred only: pthread_cancel marks the thread, which acts on it at
 *   pthread_testcancel and when entering a blocking wait; a thread already blocked is not
 *   woken. No signals: pthread_kill and pthread_sigmask are absent.
 */
#include "pthread_impl.h"
#include "stdio_impl.h"
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <time.h>

#define WASIX(name) __attribute__((import_module("wasix_32v1"), import_name(name)))

struct thread_start {
	uint32_t stack_upper, tls_base, start_funct, start_args;
	uint32_t reserved[10];
	uint32_t stack_size, guard_size;
};
_Static_assert(sizeof(struct thread_start) == 64, "WASIX ThreadStart is 64 bytes on wasm32");

struct option_timestamp {
	uint8_t tag; /* 0 none, 1 some */
	uint64_t nanoseconds;
};
_Static_assert(sizeof(struct option_timestamp) == 16, "WASIX OptionTimestamp is 16 bytes");

WASIX("thread_spawn_v2") int32_t __wasix_thread_spawn_v2(struct thread_start *, uint32_t *tid);
WASIX("thread_id") int32_t __wasix_thread_id(uint32_t *tid);
WASIX("thread_parallelism") int32_t __wasix_thread_parallelism(uint32_t *count);
WASIX("futex_wait") int32_t __wasix_futex_wait(volatile void *, uint32_t expected,
                                               const struct option_timestamp *, uint8_t *woken);
WASIX("futex_wake") int32_t __wasix_futex_wake(volatile void *, uint8_t *woken);
WASIX("futex_wake_all") int32_t __wasix_futex_wake_all(volatile void *, uint8_t *woken);

/* wasi_thread_start.s: publishes `value` at `state`, wakes its waiters, calls thread_exit. */
hidden _Noreturn void __wasix_thread_finish(volatile int *state, int value);
hidden void __wasix_run_tls_dtors(void);
hidden void __do_orphaned_stdio_locks(void);
extern void __wasm_init_tls(void *);

struct thread_block {
	struct pthread pt;
	struct thread_start start;
	void *(*func)(void *);
	void *arg;
	int c11;
};

hidden _Thread_local struct pthread *__wasix_self;
static struct pthread main_thread;
volatile int __thread_list_lock;
static int tl_lock_count, tl_lock_waiters;
static struct pthread *exited_detached; /* under the thread-list lock, linked by ->next */

unsigned __default_stacksize = 1 << 20;
unsigned __default_guardsize = 0;

static int valid_tid(uint32_t tid)
{
	/* stdio and mutexes store the owner's tid in 30 bits, 0 meaning unowned */
	return tid && tid < 0x40000000 ? (int)tid : 0x3fffffff;
}

struct pthread *__wasix_init_main_thread(void)
{
	struct pthread *t = &main_thread;
	if (!t->self) {
		uint32_t tid = 0;
		__wasix_thread_id(&tid);
		t->tid = valid_tid(tid);
		t->self = t->next = t->prev = t;
		t->detach_state = DT_JOINABLE;
		t->locale = &libc.global_locale;
		t->robust_list.head = &t->robust_list.head;
		t->tsd = (void **)__pthread_tsd_main;
		libc.can_do_threads = 1;
	}
	__wasix_self = t;
	return t;
}

/* ---- futexes ---- */

static int futex_wait(volatile int *addr, int val, const struct timespec *rel)
{
	struct option_timestamp timeout = {0};
	uint8_t woken = 0;
	if (rel) {
		timeout.tag = 1;
		timeout.nanoseconds = (uint64_t)rel->tv_sec * 1000000000u + (uint64_t)rel->tv_nsec;
	}
	if (__wasix_futex_wait(addr, (uint32_t)val, &timeout, &woken) != 0)
		return -EINTR;
	return rel && !woken ? -ETIMEDOUT : 0;
}

static int futex_wake(volatile int *addr, int count)
{
	uint8_t woken = 0;
	if (count == INT_MAX) {
		__wasix_futex_wake_all(addr, &woken);
		return woken;
	}
	int n = 0;
	while (n < count && __wasix_futex_wake(addr, &woken) == 0 && woken)
		n++;
	return n;
}

long __wasix_syscall(long n, long a, long b, long c, long d, long e, long f)
{
	switch (n) {
	case SYS_futex:
		switch (b & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)) {
		case FUTEX_WAIT:
			return futex_wait((volatile int *)a, c, (const struct timespec *)d);
		case FUTEX_WAKE:
			return futex_wake((volatile int *)a, c);
		case FUTEX_REQUEUE: /* no requeue: wake them, they queue on the mutex themselves */
			return futex_wake((volatile int *)a, c + d > INT_MAX - 1 ? INT_MAX : c + d);
		}
		return -ENOSYS;
	case SYS_sched_yield:
		return sched_yield() ? -errno : 0;
	case SYS_sched_getaffinity: { /* sysconf(_SC_NPROCESSORS_*) counts the bits */
		uint32_t count = 1;
		unsigned char *set = (unsigned char *)c;
		if (__wasix_thread_parallelism(&count) != 0 || count == 0)
			count = 1;
		memset(set, 0, b);
		for (uint32_t i = 0; i < count && i < 8 * (unsigned long)b; i++)
			set[i / 8] |= 1 << (i % 8);
		return b;
	}
	case SYS_gettid:
		return __pthread_self()->tid;
	}
	return -ENOSYS;
}

/* Linux's thread id: the one the thread's locks record (its WASIX id). */
pid_t gettid(void)
{
	return __pthread_self()->tid;
}

static int check_cancel(void)
{
	struct pthread *self = __pthread_self();
	if (!self->cancel || self->canceldisable == PTHREAD_CANCEL_DISABLE)
		return 0;
	if (self->canceldisable == PTHREAD_CANCEL_ENABLE || self->cancelasync)
		__pthread_exit(PTHREAD_CANCELED);
	self->canceldisable = PTHREAD_CANCEL_DISABLE; /* masked: report it once */
	return ECANCELED;
}

/* musl waits until an absolute time on clock `clk`; the host call takes a relative one. */
int __timedwait_cp(volatile int *addr, int val, clockid_t clk, const struct timespec *at, int priv)
{
	struct timespec to, *top = 0;
	int r = check_cancel();
	if ((uintptr_t)clk < 2) /* a condition variable's clock, as musl numbers it */
		clk = (uintptr_t)clk ? CLOCK_MONOTONIC : CLOCK_REALTIME;
	if (r)
		return r;
	if (at) {
		if (at->tv_nsec >= 1000000000UL || clock_gettime(clk, &to))
			return EINVAL;
		to.tv_sec = at->tv_sec - to.tv_sec;
		if ((to.tv_nsec = at->tv_nsec - to.tv_nsec) < 0) {
			to.tv_sec--;
			to.tv_nsec += 1000000000;
		}
		if (to.tv_sec < 0)
			return ETIMEDOUT;
		top = &to;
	}
	r = -futex_wait(addr, val, top);
	return r == EINTR || r == ETIMEDOUT ? r : 0;
}

int __timedwait(volatile int *addr, int val, clockid_t clk, const struct timespec *at, int priv)
{
	int cs, r;
	__pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	r = __timedwait_cp(addr, val, clk, at, priv);
	__pthread_setcancelstate(cs, 0);
	return r;
}

void __testcancel(void)
{
	struct pthread *self = __pthread_self();
	if (self->cancel && self->canceldisable == PTHREAD_CANCEL_ENABLE)
		__pthread_exit(PTHREAD_CANCELED);
}

int pthread_cancel(pthread_t t)
{
	a_store(&t->cancel, 1);
	if (t == __pthread_self() && t->cancelasync)
		__testcancel();
	return 0;
}

/* WASI's clockid_t is a pointer; condition variables keep musl's number in their attribute
 * (0 realtime, 1 monotonic, high bit process-shared), which __timedwait_cp maps back. */
int pthread_condattr_setclock(pthread_condattr_t *a, clockid_t clk)
{
	if (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC)
		return EINVAL;
	a->__attr = (a->__attr & 0x80000000) | (clk == CLOCK_MONOTONIC);
	return 0;
}

int pthread_condattr_getclock(const pthread_condattr_t *restrict a, clockid_t *restrict clk)
{
	*clk = a->__attr & 0x7fffffff ? CLOCK_MONOTONIC : CLOCK_REALTIME;
	return 0;
}

/* No signals in WASI: musl's signal-mask brackets are no-ops. */
void __block_all_sigs(void *set) {}
void __block_app_sigs(void *set) {}
void __restore_sigs(void *set) {}

int thrd_sleep(const struct timespec *req, struct timespec *rem)
{
	if (nanosleep(req, rem) == 0)
		return 0;
	return errno == EINTR ? -1 : -2;
}

/* ---- the thread list (musl's __tl_lock protocol: recursive for the owner) ---- */

void __tl_lock(void)
{
	int tid = __pthread_self()->tid, val = __thread_list_lock;
	if (val == tid) {
		tl_lock_count++;
		return;
	}
	while ((val = a_cas(&__thread_list_lock, 0, tid)))
		__wait(&__thread_list_lock, &tl_lock_waiters, val, 0);
}

void __tl_unlock(void)
{
	if (tl_lock_count) {
		tl_lock_count--;
		return;
	}
	a_store(&__thread_list_lock, 0);
	if (tl_lock_waiters)
		__wake(&__thread_list_lock, 1, 0);
}

/* Frees the blocks of detached threads that have finished exiting. */
static void reap_detached(void)
{
	if (!exited_detached)
		return;
	__tl_lock();
	for (struct pthread **link = &exited_detached; *link;) {
		struct pthread *t = *link;
		if (t->detach_state == DT_EXITED) {
			*link = t->next;
			free(t->map_base);
		} else {
			link = &t->next;
		}
	}
	__tl_unlock();
}

/* ---- C++ thread_local destructors ----
 * libc++abi defines __cxa_thread_atexit only for Linux and Fuchsia; like glibc's
 * __cxa_thread_atexit_impl, libc keeps them (so C mains can load C++ libraries too). They run
 * newest first when the thread exits, after its cleanup handlers and before its key
 * destructors; the thread that calls exit() runs its own first (atexit.c). */
struct tls_dtor {
	void (*func)(void *);
	void *obj;
	struct tls_dtor *next;
};
static _Thread_local struct tls_dtor *tls_dtors;

int __cxa_thread_atexit(void (*func)(void *), void *obj, void *dso)
{
	struct tls_dtor *d = malloc(sizeof *d);
	if (!d)
		return -1;
	d->func = func;
	d->obj = obj;
	d->next = tls_dtors;
	tls_dtors = d;
	return 0;
}

void __wasix_run_tls_dtors(void)
{
	struct tls_dtor *d;
	while ((d = tls_dtors)) {
		tls_dtors = d->next;
		d->func(d->obj);
		free(d);
	}
}

/* ---- create, start, exit, join, detach ---- */

static void init_file_lock(FILE *f)
{
	if (f && f->lock < 0)
		f->lock = 0;
}

static size_t round_up(size_t n, size_t align)
{
	return (n + align - 1) & -align;
}

int __pthread_create(pthread_t *restrict res, const pthread_attr_t *restrict attrp,
                     void *(*entry)(void *), void *restrict arg)
{
	struct pthread *self = __pthread_self();
	int c11 = attrp == __ATTRP_C11_THREAD;
	pthread_attr_t attr = {0};
	if (attrp && !c11)
		attr = *attrp;
	else
		attr._a_stacksize = __default_stacksize;

	reap_detached();
	if (!libc.threaded) {
		/* Streams opened so far were made lock-free; from now on they lock. */
		for (FILE *f = *__ofl_lock(); f; f = f->next)
			init_file_lock(f);
		__ofl_unlock();
		init_file_lock(__stdin_used);
		init_file_lock(__stdout_used);
		init_file_lock(__stderr_used);
		libc.threaded = 1;
	}

	size_t tls_size = __builtin_wasm_tls_size(), tls_align = __builtin_wasm_tls_align();
	size_t align = tls_align > 16 ? tls_align : 16;
	size_t stack = attr._a_stackaddr ? 0 : round_up(attr._a_stacksize, 16);
	size_t tls_off = round_up(stack, align);
	size_t block_off = round_up(tls_off + tls_size, _Alignof(struct thread_block));
	size_t tsd_off = block_off + sizeof(struct thread_block);
	size_t total = round_up(tsd_off + __pthread_tsd_size, align);
	unsigned char *mem = aligned_alloc(align, total);
	if (!mem)
		return EAGAIN;
	memset(mem + block_off, 0, total - block_off);

	struct thread_block *b = (struct thread_block *)(mem + block_off);
	struct pthread *new = &b->pt;
	uintptr_t stack_upper = attr._a_stackaddr ? attr._a_stackaddr : (uintptr_t)mem + stack;
	new->self = new;
	new->map_base = mem;
	new->map_size = total;
	new->stack = (void *)stack_upper;
	new->stack_size = attr._a_stacksize;
	new->tsd = (void **)(mem + tsd_off);
	new->locale = &libc.global_locale;
	new->robust_list.head = &new->robust_list.head;
	new->detach_state = attr._a_detach ? DT_DETACHED : DT_JOINABLE;
	b->func = entry;
	b->arg = arg;
	b->c11 = c11;
	b->start.stack_upper = stack_upper;
	b->start.tls_base = (uintptr_t)mem + tls_off;
	b->start.start_funct = (uintptr_t)entry;
	b->start.start_args = (uintptr_t)arg;
	b->start.stack_size = attr._a_stacksize;
	b->start.guard_size = 0;

	__tl_lock();
	if (!libc.threads_minus_1++)
		libc.need_locks = 1;
	new->next = self->next;
	new->prev = self;
	new->next->prev = new;
	new->prev->next = new;
	uint32_t tid = 0;
	if (__wasix_thread_spawn_v2(&b->start, &tid) != 0) {
		new->next->prev = new->prev;
		new->prev->next = new->next;
		if (!--libc.threads_minus_1)
			libc.need_locks = 0;
		__tl_unlock();
		free(mem);
		return EAGAIN;
	}
	a_cas(&new->tid, 0, valid_tid(tid));
	__tl_unlock();
	*res = new;
	return 0;
}

/* Called by wasi_thread_start once __stack_pointer is the thread's. */
hidden _Noreturn void __wasix_thread_main(int tid, struct thread_start *start)
{
	void *tls = (void *)(uintptr_t)start->tls_base;
	if (__builtin_wasm_tls_base() != tls)
		__wasm_init_tls(tls);
	struct thread_block *b = (struct thread_block *)((char *)start - offsetof(struct thread_block, start));
	struct pthread *self = &b->pt;
	__wasix_self = self;
	a_cas(&self->tid, 0, valid_tid(tid));
	if (b->c11)
		__pthread_exit((void *)(intptr_t)((int (*)(void *))b->func)(b->arg));
	__pthread_exit(b->func(b->arg));
}

_Noreturn void __pthread_exit(void *result)
{
	struct pthread *self = __pthread_self();
	self->canceldisable = 1;
	self->cancelasync = 0;
	self->result = result;
	while (self->cancelbuf) {
		void (*f)(void *) = self->cancelbuf->__f;
		void *x = self->cancelbuf->__x;
		self->cancelbuf = self->cancelbuf->__next;
		f(x);
	}
	__wasix_run_tls_dtors();
	__pthread_tsd_run_dtors();

	__tl_lock();
	if (self->next == self) { /* the last thread: the process ends */
		__tl_unlock();
		exit(0);
	}
	int state = a_cas(&self->detach_state, DT_JOINABLE, DT_EXITING);
	__do_orphaned_stdio_locks();
	if (!--libc.threads_minus_1)
		libc.need_locks = -1;
	self->next->prev = self->prev;
	self->prev->next = self->next;
	self->prev = self->next = self;
	if (state == DT_DETACHED) {
		self->next = exited_detached;
		exited_detached = self;
	}
	__tl_unlock();
	__wasix_thread_finish(&self->detach_state, DT_EXITED);
}

int __pthread_timedjoin_np(pthread_t t, void **res, const struct timespec *at)
{
	int state, cs, r = 0;
	__pthread_testcancel();
	__pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
	if (cs == PTHREAD_CANCEL_ENABLE)
		__pthread_setcancelstate(cs, 0);
	while ((state = t->detach_state) && r != ETIMEDOUT && r != EINVAL) {
		if (state >= DT_DETACHED)
			a_crash();
		r = __timedwait_cp(&t->detach_state, state, CLOCK_REALTIME, at, 1);
	}
	__pthread_setcancelstate(cs, 0);
	if (r == ETIMEDOUT || r == EINVAL)
		return r;
	if (res)
		*res = t->result;
	free(t->map_base);
	reap_detached();
	return 0;
}

int __pthread_join(pthread_t t, void **res)
{
	return __pthread_timedjoin_np(t, res, 0);
}

static int __pthread_tryjoin_np(pthread_t t, void **res)
{
	return t->detach_state == DT_JOINABLE ? EBUSY : __pthread_join(t, res);
}

static int __pthread_detach(pthread_t t)
{
	if (a_cas(&t->detach_state, DT_JOINABLE, DT_DETACHED) != DT_JOINABLE) {
		int cs;
		__pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
		__pthread_join(t, 0);
		__pthread_setcancelstate(cs, 0);
		return 0;
	}
	reap_detached();
	return 0;
}

weak_alias(__pthread_create, pthread_create);
weak_alias(__pthread_exit, pthread_exit);
weak_alias(__pthread_join, pthread_join);
weak_alias(__pthread_timedjoin_np, pthread_timedjoin_np);
weak_alias(__pthread_tryjoin_np, pthread_tryjoin_np);
weak_alias(__pthread_detach, pthread_detach);
weak_alias(__pthread_detach, thrd_detach);
