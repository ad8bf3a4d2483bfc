/* fcntl with F_DUPFD and F_DUPFD_CLOEXEC (dup.c, over WASIX's fd_dup2); every other command goes
 * to wasi-libc's own fcntl, built renamed by build-sysroot.sh, which has no duplication. */
#include <fcntl.h>
#include <stdarg.h>

__attribute__((__visibility__("hidden"))) int __cloudlibc_fcntl(int fd, int cmd, ...);
__attribute__((__visibility__("hidden"))) int __wasix_dupfd(int fd, int min_fd, int cloexec);

int fcntl(int fd, int cmd, ...) {
	int arg = 0;
	/* Only the commands that take an int argument read one. */
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC || cmd == F_SETFD || cmd == F_SETFL) {
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
	}
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return __wasix_dupfd(fd, arg, cmd == F_DUPFD_CLOEXEC);
	return __cloudlibc_fcntl(fd, cmd, arg);
}
