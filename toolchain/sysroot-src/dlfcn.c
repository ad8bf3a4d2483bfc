/* dlopen/dlsym/dlclose/dlerror/dladdr over the WASIX host calls (namespace wasix_32v1), with
 * the same argument conventions as wasix-libc so that programs built here also run on wasmer:
 * strings are pointer + length, errors come back as a NUL-terminated message in a buffer the
 * caller provides (4 KiB here: a missing library's message lists every path tried), and the
 * guest's LD_LIBRARY_PATH is handed to the runtime.
 *
 * dlclose: the runtime may provide `__wasix_dlclose` (found with dlsym, so that no import is
 * added and the program still instantiates on runtimes without it); without it, dlclose only
 * checks the handle, as wasix-libc's does. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
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

void *dlopen(const char *path, int flags)
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
    uint32_t handle = 0;
    int32_t err = __wasix_dlopen(path, path ? strlen(path) : 0, (uint32_t)flags, err_buf,
                                 sizeof err_buf, ld_path, ld_path ? strlen(ld_path) : 0, &handle);
    if (err != 0) {
        set_error(err_buf, err);
        return NULL;
    }
    return (void *)(uintptr_t)handle;
}

void *dlsym(void *restrict handle, const char *restrict symbol)
{
    char err_buf[DL_ERR_LEN] = {0};
    uintptr_t out = 0;
    int32_t err = __wasix_dlsym((uint32_t)(uintptr_t)handle, symbol, strlen(symbol), err_buf,
                                sizeof err_buf, &out);
    if (err != 0) {
        set_error(err_buf, err);
        return NULL;
    }
    return (void *)out;
}

typedef int32_t (*runtime_dlclose)(uint32_t handle, char *err_buf, uint32_t err_buf_len);

static runtime_dlclose find_runtime_dlclose(void)
{
    static runtime_dlclose fn;
    static int looked_up;
    if (!looked_up) {
        static const char name[] = "__wasix_dlclose";
        char err_buf[DL_ERR_LEN];
        uintptr_t out = 0;
        if (__wasix_dlsym(0, name, sizeof name - 1, err_buf, sizeof err_buf, &out) == 0)
            fn = (runtime_dlclose)out;
        looked_up = 1;
    }
    return fn;
}

/* Bumped after every successful dlclose: a function pointer's target may have changed since.
 * Caches keyed by function pointer (CPython's call trampoline caches each callee's parameter
 * count) compare it to know when to forget what they learned. */
unsigned int __wasix_dlclose_generation;

int dlclose(void *handle)
{
    runtime_dlclose close = find_runtime_dlclose();
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

int dladdr(const void *addr, Dl_info *info)
{
    (void)addr;
    (void)info;
    return 0;
}
