/* libc_nonshared.a: dlsym from a shared library passes its own __dso_handle: what RTLD_NEXT
 * is relative to. */
extern char __dso_handle __attribute__((visibility("hidden")));

void *__wasix_dlsym_caller(void *handle, const char *symbol, void *caller);

__attribute__((visibility("hidden"))) void *dlsym(void *restrict handle,
                                                  const char *restrict symbol)
{
    return __wasix_dlsym_caller(handle, symbol, &__dso_handle);
}
