/* User ids, owners and the file-mode mask, which WASI does not have. The guest is one user:
 * ids are 0, as the runtime reports for every file's owner (st_uid, st_gid). Files cannot
 * change owners: chown and friends succeed when they ask for that owner (or -1, "unchanged")
 * and fail with EPERM otherwise, after the usual checks of the path or descriptor. umask keeps
 * the mask a program sets and returns the previous one (POSIX's contract; the runtime has no
 * file modes to apply it to). pip, pytest, tarfile and CPython's os module expect these. */
#include <errno.h>
#include <fcntl.h>
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

static int same_owner(uid_t owner, gid_t group)
{
	if ((owner == (uid_t)-1 || owner == 0) && (group == (gid_t)-1 || group == 0))
		return 0;
	errno = EPERM;
	return -1;
}

int fchownat(int fd, const char *path, uid_t owner, gid_t group, int flag)
{
	struct stat st;
	if (flag & ~AT_SYMLINK_NOFOLLOW) {
		errno = EINVAL;
		return -1;
	}
	return fstatat(fd, path, &st, flag) != 0 ? -1 : same_owner(owner, group);
}

int chown(const char *path, uid_t owner, gid_t group)
{
	return fchownat(AT_FDCWD, path, owner, group, 0);
}

int lchown(const char *path, uid_t owner, gid_t group)
{
	return fchownat(AT_FDCWD, path, owner, group, AT_SYMLINK_NOFOLLOW);
}

int fchown(int fd, uid_t owner, gid_t group)
{
	struct stat st;
	return fstat(fd, &st) != 0 ? -1 : same_owner(owner, group);
}
