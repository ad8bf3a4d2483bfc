/* User ids and the file-mode mask, which WASI does not have. The guest is one user: ids are 0,
 * as the runtime reports for every file's owner (st_uid, st_gid). umask keeps the mask a
 * program sets and returns the previous one (POSIX's contract; the runtime has no file
 * modes to apply it to). pip, pytest and CPython's os module expect these to exist. */
#include <sys/stat.h>
#include <unistd.h>

uid_t getuid(void) { return 0; }
uid_t geteuid(void) { return 0; }
gid_t getgid(void) { return 0; }
gid_t getegid(void) { return 0; }

static mode_t mask = 022;

mode_t umask(mode_t new_mask)
{
    return __atomic_exchange_n(&mask, new_mask & 0777, __ATOMIC_RELAXED);
}
