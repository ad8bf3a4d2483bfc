/* For the libc's own objects: <sched.h> with struct sched_param (the installed <sched.h> gets
 * the same definition appended by build-sysroot.sh). */
#include_next <sched.h>
#include "../sched_param.h"
