/* libc_nonshared.a: dlopen from a shared library passes its own __dso_handle, so that a bare
 * name is searched along that library's RUNPATH ($ORIGIN is its directory), as ld.so does for
 * the calling object. */
extern char __dso_handle __attribute__((visibility("hidden")));

void *__wasix_dlopen_caller(const char *path, int flags, void *caller);

__attribute__((visibility("hidden"))) void *dlopen(const char *path, int flags)
{
    return __wasix_dlopen_caller(path, flags, &__dso_handle);
}
