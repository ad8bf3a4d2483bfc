/* libc_nonshared.a (linked into every shared library, like glibc's): atexit with the calling
 * library's own __dso_handle, so that its handlers run when the library is unloaded
 * (__cxa_finalize at dlclose) instead of calling into unloaded code at exit. An archive
 * member, so a library that defines its own atexit keeps it. */
extern char __dso_handle __attribute__((visibility("hidden")));

int __wasix_atexit_dso(void (*func)(void), void *dso);

__attribute__((visibility("hidden"))) int atexit(void (*func)(void))
{
    return __wasix_atexit_dso(func, &__dso_handle);
}
