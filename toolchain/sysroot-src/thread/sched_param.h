
/* wasix-dl: <pthread.h> (built with threads) names struct sched_param, which WASI's <sched.h>
 * leaves out; the threaded libc's pthread_attr_{get,set}schedparam use it. */
#ifndef __wasix_struct_sched_param
#define __wasix_struct_sched_param
struct sched_param {
	int sched_priority;
	int __reserved1;
	struct { long long __reserved1; long __reserved2; } __reserved2[2];
	int __reserved3;
};
#endif
