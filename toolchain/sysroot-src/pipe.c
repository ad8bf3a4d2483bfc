/* pipe() over WASIX's fd_pipe host call: fds[0] reads what fds[1] writes. wasi-libc has no
 * pipe ("WASI has no pipe"); WASIX does. No pipe2: O_CLOEXEC means nothing without exec. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

__attribute__((import_module("wasix_32v1"), import_name("fd_pipe")))
int32_t __wasix_fd_pipe(int32_t *read_fd, int32_t *write_fd);

int pipe(int fds[2]) {
	int32_t read_fd, write_fd;
	int32_t error = __wasix_fd_pipe(&read_fd, &write_fd);
	if (error) {
		errno = error;
		return -1;
	}
	fds[0] = read_fd;
	fds[1] = write_fd;
	return 0;
}
