/* <dlfcn.h> for wasix-dl: the WASIX dynamic-linking ABI (flag values of wasix-libc). */
#ifndef _DLFCN_H
#define _DLFCN_H

#ifdef __cplusplus
extern "C" {
#endif

#define RTLD_LAZY     1
#define RTLD_NOW      2
#define RTLD_NOLOAD   8
#define RTLD_NODELETE 16
#define RTLD_GLOBAL   4
#define RTLD_LOCAL    0

#define RTLD_DEFAULT ((void *)0)
/* dlsym: the next definition after the calling module, in its lookup order. */
#define RTLD_NEXT    ((void *)-1)

typedef struct {
    const char *dli_fname;
    void *dli_fbase;
    const char *dli_sname;
    void *dli_saddr;
} Dl_info;

void *dlopen(const char *path, int flags);
void *dlsym(void *__restrict handle, const char *__restrict symbol);
int dlclose(void *handle);
char *dlerror(void);
int dladdr(const void *addr, Dl_info *info);

#ifdef __cplusplus
}
#endif

#endif
