/* For the libc's own objects: with threads, musl's sysconf.c (2022) counts processors through
 * __syscall(SYS_sched_getaffinity) but includes "syscall.h" only for upstream builds; it is
 * the one user of <sys/sysinfo.h>, so the declaration comes from here (answered by
 * wasix_thread.c with WASIX thread_parallelism). */
#include_next <sys/sysinfo.h>
#include "syscall.h"
