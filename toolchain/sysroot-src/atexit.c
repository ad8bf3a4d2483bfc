/* atexit / __cxa_atexit / __cxa_finalize with per-library handlers, replacing musl's (whose
 * __cxa_finalize does nothing). A library registers its destructors with its own
 * &__dso_handle; when the runtime unloads it, it calls __cxa_finalize(&__dso_handle) first,
 * so that no handler is left pointing into unloaded code. One lock guards the list; it is not
 * held while a handler runs (a handler may register more). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

struct handler {
    void (*func)(void *);
    void *arg;
    void *dso;
    struct handler *prev;
};

/* The first handlers need no malloc (exit paths must work when memory is short). */
#define BUILTIN 32
static struct handler builtin[BUILTIN];
static int builtin_used;
static struct handler *last;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int __cxa_atexit(void (*func)(void *), void *arg, void *dso)
{
    pthread_mutex_lock(&lock);
    struct handler *h = builtin_used < BUILTIN ? &builtin[builtin_used++] : malloc(sizeof *h);
    if (h) {
        h->func = func;
        h->arg = arg;
        h->dso = dso;
        h->prev = last;
        last = h;
    }
    pthread_mutex_unlock(&lock);
    return h ? 0 : -1;
}

/* Runs, newest first, the handlers registered for `dso` (all of them when dso is NULL) and
 * forgets them. A handler may register more handlers: they are run too. */
void __cxa_finalize(void *dso)
{
    pthread_mutex_lock(&lock);
    struct handler **link = &last;
    while (*link) {
        struct handler *h = *link;
        if (dso && h->dso != dso) {
            link = &h->prev;
            continue;
        }
        *link = h->prev;
        void (*func)(void *) = h->func;
        void *arg = h->arg;
        pthread_mutex_unlock(&lock);
        if (h < builtin || h >= builtin + BUILTIN)
            free(h);
        func(arg);
        pthread_mutex_lock(&lock);
        link = &last; /* the list may have changed: start again from the newest */
    }
    pthread_mutex_unlock(&lock);
}

void __wasix_run_tls_dtors(void) __attribute__((visibility("hidden")));

/* Called by exit(): the exiting thread's thread_local destructors first, as glibc does. */
void __funcs_on_exit(void)
{
    __wasix_run_tls_dtors();
    __cxa_finalize(NULL);
}

static void call(void *p)
{
    ((void (*)(void))(uintptr_t)p)();
}

/* atexit of the module whose __dso_handle is `dso` (libc_nonshared.a's atexit passes a
 * library's own): its handlers run when that module is unloaded. */
int __wasix_atexit_dso(void (*func)(void), void *dso)
{
    return __cxa_atexit(call, (void *)(uintptr_t)func, dso);
}

/* The main program's (libraries get libc_nonshared.a's). */
int atexit(void (*func)(void))
{
    return __wasix_atexit_dso(func, 0);
}
