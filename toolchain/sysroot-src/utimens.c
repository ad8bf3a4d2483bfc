/* utimensat (cwd-free: __wasilibc_nocwd_utimensat) and futimens over WASI's
 * path_filestat_set_times / fd_filestat_set_times, replacing wasi-libc's: clang inlines
 * its timestamp conversion (two consecutive switches on a signed tv_nsec) wrongly, so that
 * UTIME_NOW and UTIME_OMIT in the second slot, and a NULL `times` (both now), reach the
 * runtime as "set both to 0" (utime(path, NULL) set the epoch). Here each timestamp is
 * converted by a function of its own that is never inlined. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <wasi/api.h>

/* Adds `t` to `flags`/`out` as WASI wants it; false for a time WASI cannot hold. */
__attribute__((noinline)) static int convert(const struct timespec *t, __wasi_fstflags_t set,
                                             __wasi_fstflags_t now, __wasi_timestamp_t *out,
                                             __wasi_fstflags_t *flags)
{
    if (t->tv_nsec == UTIME_NOW) {
        *flags |= now;
        return 1;
    }
    if (t->tv_nsec == UTIME_OMIT)
        return 1;
    /* WASI timestamps are unsigned nanoseconds since the epoch. */
    if (t->tv_sec < 0 || t->tv_nsec < 0 || t->tv_nsec >= 1000000000)
        return 0;
    *out = (__wasi_timestamp_t)t->tv_sec * 1000000000 + (__wasi_timestamp_t)t->tv_nsec;
    *flags |= set;
    return 1;
}

static int timestamps(const struct timespec *times, __wasi_timestamp_t *atim,
                      __wasi_timestamp_t *mtim, __wasi_fstflags_t *flags)
{
    *atim = *mtim = 0;
    *flags = 0;
    if (times == NULL) {
        *flags = __WASI_FSTFLAGS_ATIM_NOW | __WASI_FSTFLAGS_MTIM_NOW;
        return 1;
    }
    return convert(&times[0], __WASI_FSTFLAGS_ATIM, __WASI_FSTFLAGS_ATIM_NOW, atim, flags) &&
           convert(&times[1], __WASI_FSTFLAGS_MTIM, __WASI_FSTFLAGS_MTIM_NOW, mtim, flags);
}

int __wasilibc_nocwd_utimensat(int fd, const char *path, const struct timespec times[2],
                               int flag)
{
    __wasi_timestamp_t atim, mtim;
    __wasi_fstflags_t flags;
    if (!timestamps(times, &atim, &mtim, &flags)) {
        errno = EINVAL;
        return -1;
    }
    __wasi_lookupflags_t lookup = (flag & AT_SYMLINK_NOFOLLOW) ? 0 : __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW;
    __wasi_errno_t error = __wasi_path_filestat_set_times(fd, lookup, path, atim, mtim, flags);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return 0;
}

int futimens(int fd, const struct timespec times[2])
{
    __wasi_timestamp_t atim, mtim;
    __wasi_fstflags_t flags;
    if (!timestamps(times, &atim, &mtim, &flags)) {
        errno = EINVAL;
        return -1;
    }
    __wasi_errno_t error = __wasi_fd_filestat_set_times(fd, atim, mtim, flags);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return 0;
}
