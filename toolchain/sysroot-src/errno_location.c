/* errno is thread-local; other modules reach this module's copy through this function
 * (see the installed <__errno.h>). */
#include <errno.h>
#undef errno
extern _Thread_local int errno;

int *__errno_location(void)
{
    return &errno;
}
