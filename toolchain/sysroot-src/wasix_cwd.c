/* wasi-libc emulates the working directory and starts it at "/". The runtime knows the real
 * one (`wasix-dl run --dir .` makes the mapped directory the cwd): adopt it at start-up so that
 * relative paths mean the same thing to libc and to the loader. */
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

__attribute__((import_module("wasix_32v1"), import_name("getcwd")))
int32_t __wasix_getcwd(char *path, uint32_t *path_len);

void __wasix_dl_adopt_cwd(void)
{
    char buf[PATH_MAX];
    uint32_t len = sizeof buf;
    if (__wasix_getcwd(buf, &len) != 0 || len == 0 || len >= sizeof buf)
        return;
    /* The runtime may report "/dir/"; POSIX getcwd() never ends in a slash (except "/"). */
    while (len > 1 && buf[len - 1] == '/')
        len--;
    buf[len] = '\0';
    (void)chdir(buf);
}
