/* dlopen/dlsym/dlclose/dlerror/dladdr over the WASIX host calls (namespace wasix_32v1), with
 * the same argument conventions as wasix-libc so that programs built here also run on wasmer:
 * strings are pointer + length, errors come back as a NUL-terminated message in a buffer the
 * caller provides (4 KiB here: a missing library's message lists every path tried), and the
 * guest's LD_LIBRARY_PATH is handed to the runtime.
 *
 * The runtime may provide functions of its own, found with dlsym (so that no import is added
 * and the program still instantiates on runtimes without them): `__wasix_dlclose` (without
 * it, dlclose only checks the handle, as wasix-libc's does), `__wasix_dlopen_from` and
 * `__wasix_dlsym_from` (dlopen/dlsym knowing the calling module by its __dso_handle: its
 * RUNPATH, RTLD_NEXT; libraries pass theirs through libc_nonshared.a), `__wasix_dladdr`
 * (without it, dladdr finds nothing). */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DL_ERR_LEN 4096

#define WASIX_IMPORT(name) __attribute__((import_module("wasix_32v1"), import_name(name)))

WASIX_IMPORT("dlopen")
int32_t __wasix_dlopen(const char *path, uint32_t path_len, uint32_t flags, char *err_buf,
                       uint32_t err_buf_len, const char *ld_library_path,
                       uint32_t ld_library_path_len, uint32_t *out_handle);
WASIX_IMPORT("dlsym")
int32_t __wasix_dlsym(uint32_t handle, const char *symbol, uint32_t symbol_len, char *err_buf,
                      uint32_t err_buf_len, uintptr_t *out);
WASIX_IMPORT("dl_invalid_handle")
int32_t __wasix_dl_invalid_handle(uint32_t handle);

/* glibc keeps the pending error per thread; so do we. */
static _Thread_local char dl_error[DL_ERR_LEN];
static _Thread_local int dl_error_pending;

static void set_error(const char *message, int err)
{
    if (message[0] != '\0')
        strncpy(dl_error, message, DL_ERR_LEN - 1);
    else
        strncpy(dl_error, strerror(err), DL_ERR_LEN - 1);
    dl_error[DL_ERR_LEN - 1] = '\0';
    dl_error_pending = 1;
}

typedef int32_t (*runtime_dlopen_from)(const char *path, uint32_t path_len, uint32_t flags,
                                      char *err_buf, uint32_t err_buf_len,
                                      const char *ld_library_path, uint32_t ld_library_path_len,
                                      uint32_t caller, uint32_t *out_handle);
typedef int32_t (*runtime_dlsym_from)(uint32_t handle, const char *symbol, uint32_t symbol_len,
                                     uint32_t caller, char *err_buf, uint32_t err_buf_len,
                                     uintptr_t *out);
typedef int32_t (*runtime_dladdr)(uint32_t addr, uint32_t *info, char *fname, uint32_t fname_len,
                                 char *sname, uint32_t sname_len);
typedef int32_t (*runtime_dlclose)(uint32_t handle, char *err_buf, uint32_t err_buf_len);

/* A function the runtime provides, or NULL. */
static void *find_builtin(const char *name)
{
    char err_buf[DL_ERR_LEN];
    uintptr_t out = 0;
    if (__wasix_dlsym(0, name, strlen(name), err_buf, sizeof err_buf, &out) != 0)
        return NULL;
    return (void *)out;
}

/* Looked up once per process (a racing first lookup finds the same). */
#define BUILTIN(type, name)                                                                    \
    static type name##_builtin(void)                                                           \
    {                                                                                          \
        static type fn;                                                                        \
        static int looked_up;                                                                  \
        if (!__atomic_load_n(&looked_up, __ATOMIC_ACQUIRE)) {                                  \
            fn = (type)find_builtin("__wasix_" #name);                                         \
            __atomic_store_n(&looked_up, 1, __ATOMIC_RELEASE);                                 \
        }                                                                                      \
        return fn;                                                                             \
    }
BUILTIN(runtime_dlopen_from, dlopen_from)
BUILTIN(runtime_dlsym_from, dlsym_from)
BUILTIN(runtime_dladdr, dladdr)
BUILTIN(runtime_dlclose, dlclose)

/* dlopen for the module whose __dso_handle is `caller`. */
void *__wasix_dlopen_caller(const char *path, int flags, void *caller)
{
    char err_buf[DL_ERR_LEN] = {0};
    const char *ld_path = getenv("LD_LIBRARY_PATH");
    /* libc keeps the working directory itself: hand the runtime an absolute path. */
    char absolute[PATH_MAX];
    if (path && path[0] != '/' && strchr(path, '/') && getcwd(absolute, sizeof absolute)) {
        size_t n = strlen(absolute);
        if (n + 1 + strlen(path) < sizeof absolute) {
            if (n > 1)
                absolute[n++] = '/';
            strcpy(absolute + n, path);
            path = absolute;
        }
    }
    uint32_t handle = 0, path_len = path ? strlen(path) : 0;
    uint32_t ld_len = ld_path ? strlen(ld_path) : 0;
    runtime_dlopen_from from = dlopen_from_builtin();
    int32_t err = from ? from(path, path_len, (uint32_t)flags, err_buf, sizeof err_buf, ld_path,
                              ld_len, (uint32_t)(uintptr_t)caller, &handle)
                       : __wasix_dlopen(path, path_len, (uint32_t)flags, err_buf, sizeof err_buf,
                                        ld_path, ld_len, &handle);
    if (err != 0) {
        set_error(err_buf, err);
        return NULL;
    }
    return (void *)(uintptr_t)handle;
}

/* dlsym for the module whose __dso_handle is `caller` (RTLD_NEXT is relative to it). */
void *__wasix_dlsym_caller(void *restrict handle, const char *restrict symbol, void *caller)
{
    char err_buf[DL_ERR_LEN] = {0};
    uintptr_t out = 0;
    runtime_dlsym_from from = dlsym_from_builtin();
    uint32_t h = (uint32_t)(uintptr_t)handle;
    int32_t err = from ? from(h, symbol, strlen(symbol), (uint32_t)(uintptr_t)caller, err_buf,
                              sizeof err_buf, &out)
                       : __wasix_dlsym(h, symbol, strlen(symbol), err_buf, sizeof err_buf, &out);
    if (err != 0) {
        set_error(err_buf, err);
        return NULL;
    }
    return (void *)out;
}

/* The main program's (libraries get libc_nonshared.a's, which pass their own handle). */
extern char __dso_handle __attribute__((visibility("hidden")));

void *dlopen(const char *path, int flags)
{
    return __wasix_dlopen_caller(path, flags, &__dso_handle);
}

void *dlsym(void *restrict handle, const char *restrict symbol)
{
    return __wasix_dlsym_caller(handle, symbol, &__dso_handle);
}

/* Bumped after every successful dlclose: a function pointer's target may have changed since.
 * Caches keyed by function pointer (CPython's call trampoline caches each callee's parameter
 * count) compare it to know when to forget what they learned. */
unsigned int __wasix_dlclose_generation;

int dlclose(void *handle)
{
    runtime_dlclose close = dlclose_builtin();
    if (close) {
        char err_buf[DL_ERR_LEN] = {0};
        if (close((uint32_t)(uintptr_t)handle, err_buf, sizeof err_buf) != 0) {
            set_error(err_buf, EINVAL);
            return -1;
        }
        __atomic_fetch_add(&__wasix_dlclose_generation, 1, __ATOMIC_RELEASE);
        return 0;
    }
    if (__wasix_dl_invalid_handle((uint32_t)(uintptr_t)handle) != 0) {
        set_error("Invalid library handle", EINVAL);
        return -1;
    }
    return 0;
}

char *dlerror(void)
{
    if (!dl_error_pending)
        return NULL;
    dl_error_pending = 0;
    return dl_error;
}

/* dladdr's names must stay valid (glibc's point into the link map): each distinct one is
 * copied once and kept. */
struct name {
    struct name *next;
    char text[];
};
static struct name *names;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *kept(const char *text)
{
    pthread_mutex_lock(&names_lock);
    struct name *n = names;
    while (n && strcmp(n->text, text) != 0)
        n = n->next;
    if (!n && (n = malloc(sizeof *n + strlen(text) + 1))) {
        strcpy(n->text, text);
        n->next = names;
        names = n;
    }
    pthread_mutex_unlock(&names_lock);
    return n ? n->text : NULL;
}

int dladdr(const void *addr, Dl_info *info)
{
    runtime_dladdr find = dladdr_builtin();
    char fname[PATH_MAX], sname[1024];
    uint32_t found[2]; /* fbase, saddr */
    if (!find || find((uint32_t)(uintptr_t)addr, found, fname, sizeof fname, sname, sizeof sname))
        return 0;
    info->dli_fname = kept(fname);
    info->dli_fbase = (void *)(uintptr_t)found[0];
    info->dli_sname = sname[0] ? kept(sname) : NULL;
    info->dli_saddr = sname[0] ? (void *)(uintptr_t)found[1] : NULL;
    return 1;
}
