/* dup, dup2, dup3 over WASIX's fd_dup and fd_dup2 and WASI's fd_renumber. wasi-libc has none
 * ("WASI has no dup"); WASIX duplicates descriptors. No exec, so close-on-exec changes nothing
 * (and <fcntl.h> defines O_CLOEXEC as 0): dup3 accepts it and otherwise is dup2. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <wasi/api.h>

__attribute__((import_module("wasix_32v1"), import_name("fd_dup")))
int32_t __wasix_fd_dup(int32_t fd, int32_t *ret_fd);
__attribute__((import_module("wasix_32v1"), import_name("fd_dup2")))
int32_t __wasix_fd_dup2(int32_t fd, int32_t min_fd, uint8_t cloexec, int32_t *ret_fd);

static int fail(int error) {
	errno = error;
	return -1;
}

int dup(int fd) {
	int32_t new_fd;
	int32_t error = __wasix_fd_dup(fd, &new_fd);
	return error ? fail(error) : new_fd;
}

/* fcntl's F_DUPFD and F_DUPFD_CLOEXEC (fcntl.c): the lowest free descriptor >= min_fd. */
__attribute__((__visibility__("hidden"))) int __wasix_dupfd(int fd, int min_fd, int cloexec) {
	if (min_fd < 0)
		return fail(EINVAL);
	int32_t new_fd;
	int32_t error = __wasix_fd_dup2(fd, min_fd, cloexec != 0, &new_fd);
	return error ? fail(error) : new_fd;
}

int dup2(int old_fd, int new_fd) {
	if (new_fd < 0)
		return fail(EBADF);
	if (old_fd == new_fd) {
		__wasi_fdstat_t stat;
		int32_t error = __wasi_fd_fdstat_get(old_fd, &stat);
		return error ? fail(error) : new_fd;
	}
	/* A duplicate at new_fd or above: new_fd itself when it is free. */
	int32_t tmp;
	int32_t error = __wasix_fd_dup2(old_fd, new_fd, 0, &tmp);
	if (error)
		return fail(error == EINVAL ? EBADF : error); /* EINVAL: new_fd is out of range */
	if (tmp == new_fd)
		return new_fd;
	/* fd_renumber(from, to) makes `to` (closing what it was) refer to `from`; the duplicate is
	 * then closed, if the runtime copied it (wasmer 0.704) rather than moved it (WASI). */
	error = __wasi_fd_renumber(tmp, new_fd);
	(void)!__wasi_fd_close(tmp);
	return error ? fail(error) : new_fd;
}

int dup3(int old_fd, int new_fd, int flags) {
	if ((flags & ~O_CLOEXEC) != 0 || old_fd == new_fd)
		return fail(EINVAL);
	return dup2(old_fd, new_fd);
}
