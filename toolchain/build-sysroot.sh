#!/usr/bin/env bash
# Builds the PIC sysroot. Called by setup.sh with TOOLS, SYSROOT, WORK, WASI_LIBC_DEBIAN and
# ZLIB_DEBIAN set.
# Layout: $SYSROOT/include, $SYSROOT/lib (libc.a, libc++.a, crt objects, ...), $SYSROOT/tools,
# $SYSROOT/system-lib (libc++.so: the guest's system libraries, mounted at /lib at run time).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/sysroot-src"
zigpkg="$(echo "$TOOLS"/venv/lib/python3*/site-packages/ziglang)"
zig="$zigpkg/zig"
ziglib="$zigpkg/lib"
jobs="$(nproc)"
log() { printf '[sysroot] %s\n' "$*" >&2; }

# Every object in every module: PIC, default visibility, shared memory features, exnref EH,
# setjmp/longjmp lowered onto wasm exceptions.
CFLAGS_COMMON="-O2 -DNDEBUG -fno-stack-protector -fPIC -fvisibility=default -matomics -mbulk-memory -mmutable-globals -mnontrapping-fptoint -msign-ext -fwasm-exceptions -mllvm -wasm-use-legacy-eh=false -mllvm -wasm-enable-sjlj"

# A compiler wrapper: clang 22 warns about musl's intentionally unterminated string
# initialisers, and wasi-libc's Makefile turns warnings into errors; the flag must come last.
mkdir -p "$WORK/bin"
cat > "$WORK/bin/cc" <<WRAP
#!/bin/sh
exec "$zig" clang -resource-dir "$ziglib" "\$@" -Wno-unterminated-string-initialization
WRAP
cat > "$WORK/bin/ar" <<WRAP
#!/bin/sh
exec "$zig" ar "\$@"
WRAP
cat > "$WORK/bin/nm" <<WRAP
#!/bin/sh
exec "$zig" nm "\$@" 2>/dev/null || true
WRAP
chmod +x "$WORK/bin/"*
CC="$WORK/bin/cc"; AR="$WORK/bin/ar"

# 1. wasi-libc from Debian bookworm's source package, through a private apt configuration
#    that holds only a deb-src line (the machine's own apt sources stay untouched).
log "fetching wasi-libc $WASI_LIBC_DEBIAN source"
. "$here/debian.sh"
apt="$WORK/apt"
fetch_sources bookworm "$apt" "wasi-libc=$WASI_LIBC_DEBIAN" "zlib=$ZLIB_DEBIAN"
# --no-check: apt already verified the files against the signed archive index.
dpkg-source --no-check -x --skip-patches "$apt/src"/wasi-libc_*.dsc "$WORK/wasi-libc" >/dev/null

log "building wasi-libc (PIC, exnref, threaded)"
# Threaded (THREAD_MODEL=posix: -pthread, musl's locks). sysroot-src/thread/include comes
# first on the include path: musl's wasm32 atomics and thread pointer (Debian's refuse
# _REENTRANT), its syscalls routed to WASIX, and internal-only fixes for headers that refuse
# threads (see each file).
obj_dir="$WORK/wasi-libc-obj"; mkdir -p "$obj_dir"
libc_make() {
  make -s -C "$WORK/wasi-libc" CC="$CC" AR="$AR" NM="$WORK/bin/nm" TARGET_TRIPLE=wasm32-wasip1 \
    EXTRA_CFLAGS="$CFLAGS_COMMON -I$src/thread/include" SYSROOT="$SYSROOT" OBJDIR="$obj_dir" "$@" >/dev/null
}
# These refuse to build with threads (#error, or a lock declared for upstream only): they are
# built without _REENTRANT, and the threaded pass keeps them (-o). Preopens are registered by
# a constructor, before any thread; the emulated cwd (getcwd/chdir) and random() are not
# thread-safe; getentropy is no cancellation point anyway; thrd_sleep comes from our glue.
unthreaded=()
for f in libc-bottom-half/sources/{preopens,getcwd,chdir,getentropy} \
         libc-bottom-half/cloudlibc/src/libc/time/nanosleep libc-top-half/musl/src/prng/random; do
  unthreaded+=("$obj_dir/$f.o")
done
libc_make THREAD_MODEL=unthreaded "${unthreaded[@]}"
libc_make -j"$jobs" THREAD_MODEL=posix $(printf -- '-o %s ' "${unthreaded[@]}") startup_files libc
lib="$SYSROOT/lib"
mv "$lib/wasm32-wasi"/* "$lib/"
rmdir "$lib/wasm32-wasi"
inc="$SYSROOT/include"
rm -f "$lib"/crt1*.o   # replaced by ours below

# errno is real TLS once atomics are on, and wasm-ld cannot relocate a side module's reference
# to another module's TLS symbol: every module goes through __errno_location() instead.
cat > "$inc/__errno.h" <<'HDR'
#ifndef __wasilibc___errno_h
#define __wasilibc___errno_h
#ifdef __cplusplus
extern "C" {
#endif
int *__errno_location(void);
#define errno (*__errno_location())
#ifdef __cplusplus
}
#endif
#endif
HDR

# setjmp/longjmp: header and runtime from the wasi-libc copy shipped in the ziglang wheel.
cp "$ziglib/libc/wasi/libc-top-half/musl/include/setjmp.h" "$inc/setjmp.h"
cp "$ziglib/libc/wasi/libc-top-half/musl/arch/wasm32/bits/setjmp.h" "$inc/bits/setjmp.h"
# <dlfcn.h> of the WASIX ABI.
cp "$src/dlfcn.h" "$inc/dlfcn.h"

# pipe() (sysroot-src/pipe.c, WASIX's fd_pipe): declared, where wasi-libc's <unistd.h> hides it.
grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no pipe \*/$' "$inc/unistd.h" ||
  { log "<unistd.h> no longer hides pipe as expected"; exit 1; }
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no pipe \*/$|int pipe(int [2]);\n&|' "$inc/unistd.h"
# dup, dup2, dup3 and fcntl's F_DUPFD, F_DUPFD_CLOEXEC (sysroot-src/dup.c and fcntl.c, WASIX's
# fd_dup and fd_dup2): declared, where <unistd.h> hides dup*, and given Linux's (musl's) numbers.
grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no dup \*/$' "$inc/unistd.h" &&
  grep -q '^#define F_SETFL (4)$' "$inc/__header_fcntl.h" ||
  { log "<unistd.h> or <__header_fcntl.h> is no longer as expected for dup"; exit 1; }
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no dup \*/$|int dup(int);\nint dup2(int, int);\nint dup3(int, int, int);\n&|' "$inc/unistd.h"
sed -i 's|^#define F_SETFL (4)$|&\n#define F_DUPFD (0)\n#define F_DUPFD_CLOEXEC (1030)|' "$inc/__header_fcntl.h"
# getuid, geteuid, getgid, getegid and umask (sysroot-src/ids.c): declared where the headers
# hide them.
grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no getuid etc. \*/$' "$inc/unistd.h" &&
  grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no umask \*/$' "$inc/sys/stat.h" ||
  { log "<unistd.h> or <sys/stat.h> is no longer as expected for getuid/umask"; exit 1; }
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no getuid etc. \*/$|uid_t getuid(void);\nuid_t geteuid(void);\ngid_t getgid(void);\ngid_t getegid(void);\n&|' "$inc/unistd.h"
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no umask \*/$|mode_t umask(mode_t);\n&|' "$inc/sys/stat.h"
# chown, fchown, lchown, fchownat (sysroot-src/ids.c): declared where <unistd.h> hides them.
grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no chown \*/$' "$inc/unistd.h" ||
  { log "<unistd.h> is no longer as expected for chown"; exit 1; }
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no chown \*/$|#if 1 /* chown and friends: sysroot-src/ids.c */|' "$inc/unistd.h"
# gettid (sysroot-src/thread/wasix_thread.c: the thread's WASIX id), declared where <unistd.h>
# hides it with other functions.
grep -q '^#ifdef __wasilibc_unmodified_upstream /\* WASI has no eaccess \*/$' "$inc/unistd.h" ||
  { log "<unistd.h> is no longer as expected for gettid"; exit 1; }
sed -i 's|^#ifdef __wasilibc_unmodified_upstream /\* WASI has no eaccess \*/$|pid_t gettid(void);\n&|' "$inc/unistd.h"

# mmap, munmap, msync, mprotect, mremap, madvise and mlock (sysroot-src/mman.c, over the heap):
# <sys/mman.h> without wasi-libc's opt-in guard, declaring only what that file defines.
# -lwasi-emulated-mman (which packages ported to WASI ask for) stays a valid, empty archive.
mman="$inc/sys/mman.h"
{ [ "$(head -1 "$mman")" = '#ifndef _WASI_EMULATED_MMAN' ] && [ "$(sed -n 4p "$mman")" = '#else' ] &&
  [ "$(tail -1 "$mman")" = '#endif' ] &&
  [ "$(grep -cE '^(int|void \*) (shm_open|shm_unlink|remap_file_pages|memfd_create|mlock2|mincore) ' "$mman")" = 6 ]; } ||
  { log "<sys/mman.h> is no longer as expected"; exit 1; }
sed -i -e '1,4d' -e '$d' -E -e '/^(int|void \*) (shm_open|shm_unlink|remap_file_pages|memfd_create|mlock2|mincore) /d' "$mman"
rm -f "$lib/libwasi-emulated-mman.a"

log "building crt objects, dlfcn, setjmp runtime"
obj="$WORK/extra"; mkdir -p "$obj"
cc_sys() { "$CC" --target=wasm32-wasip1 --sysroot="$SYSROOT" $CFLAGS_COMMON -pthread "$@"; }
cc_sys -c "$ziglib/libc/wasi/libc-top-half/musl/src/setjmp/wasm32/rt.c" -o "$obj/setjmp-rt.o"
cc_sys -c "$src/errno_location.c" -o "$obj/errno_location.o"
cc_sys -c "$src/dlfcn.c" -o "$obj/dlfcn.o"
cc_sys -c "$src/wasix_cwd.c" -o "$obj/wasix_cwd.o"
cc_sys -c "$src/atexit.c" -o "$obj/atexit_dso.o"
cc_sys -c "$src/pipe.c" -o "$obj/pipe.o"
cc_sys -c "$src/dup.c" -o "$obj/dup.o"
cc_sys -c "$src/utimens.c" -o "$obj/utimens.o"
cc_sys -c "$src/ids.c" -o "$obj/ids.o"
cc_sys -c "$src/mman.c" -o "$obj/mman.o"
# Our fcntl (duplication) hands the other commands to cloudlibc's, renamed and hidden.
cc_sys -c "$src/fcntl.c" -o "$obj/fcntl.o"
cc_sys -D'fcntl=__attribute__((__visibility__("hidden"))) __cloudlibc_fcntl' \
  -c "$WORK/wasi-libc/libc-bottom-half/cloudlibc/src/libc/fcntl/fcntl.c" -o "$obj/cloudlibc_fcntl.o"
"$AR" d "$lib/libc.a" atexit.o   # musl's, whose __cxa_finalize does nothing
"$AR" d "$lib/libc.a" fcntl.o    # cloudlibc's, replaced by the two above
"$AR" d "$lib/libc.a" utimensat.o futimens.o   # cloudlibc's, miscompiled (see utimens.c)
"$AR" rcs "$lib/libc.a" "$obj/setjmp-rt.o" "$obj/errno_location.o" "$obj/dlfcn.o" "$obj/wasix_cwd.o" \
  "$obj/atexit_dso.o" "$obj/pipe.o" "$obj/dup.o" "$obj/fcntl.o" "$obj/cloudlibc_fcntl.o" \
  "$obj/utimens.o" "$obj/ids.o" "$obj/mman.o"

# POSIX threads: musl's generic thread code from the Debian tree, compiled like the rest of
# its sources, over our wasm32 glue (sysroot-src/thread: creation, start, exit, join, futexes).
log "building pthreads"
musl="$WORK/wasi-libc/libc-top-half/musl"
tobj="$WORK/thread"; mkdir -p "$tobj"
{ echo '#!/bin/sh'
  printf 'exec %q' "$CC"
  printf ' %q' --target=wasm32-wasip1 --sysroot="$SYSROOT" $CFLAGS_COMMON -pthread \
    -I"$src/thread/include" -I"$musl/src/include" -I"$musl/src/internal" -I"$musl/arch/wasm32" \
    -I"$musl/arch/generic" -I"$WORK/wasi-libc/libc-top-half/headers/private" \
    -Wno-parentheses -Wno-shift-op-parentheses -Wno-bitwise-op-parentheses \
    -DSEM_VALUE_MAX=0x7fffffff
  echo ' "$@"'; } > "$WORK/bin/cc-musl"
chmod +x "$WORK/bin/cc-musl"
thread_srcs=("$musl"/src/thread/{__lock,__wait,vmlock,lock_ptc,pthread_atfork,pthread_setattr_default_np}.c
  "$musl"/src/thread/pthread_{attr_[ids],barrier_,barrierattr_,cond_[bdisw],condattr_[dip],mutex_,mutexattr_,rwlock_,rwlockattr_,spin_}*.c
  "$musl"/src/thread/pthread_{cleanup_push,equal,getspecific,key_create,once,self,setspecific}.c
  "$musl"/src/thread/pthread_{setcancelstate,setcanceltype,testcancel,getconcurrency,setconcurrency}.c
  "$musl"/src/thread/pthread_{getschedparam,setschedparam,setschedprio}.c
  "$musl"/src/thread/sem_{destroy,getvalue,init,post,timedwait,trywait,wait}.c
  "$musl"/src/thread/{call_once,cnd_*,mtx_*,thrd_create,thrd_exit,thrd_join,thrd_yield,tss_*}.c
  "$musl"/src/stdio/{__lockfile,flockfile,ftrylockfile,funlockfile}.c
  "$src/thread/wasix_thread.c")
printf '%s\n' "${thread_srcs[@]}" | xargs -P "$jobs" -I{} sh -c \
  'n="$(basename "$1")"; "$0" -c "$1" -o "$2/${n%.*}.o"' "$WORK/bin/cc-musl" {} "$tobj"
# WASI's clockid_t is a pointer, musl's condition variables keep a clock number: the two
# files that mix them are built so; the clock attribute accessors are ours (wasix_thread.c).
"$WORK/bin/cc-musl" -Wno-int-conversion -c "$musl/src/thread/pthread_cond_timedwait.c" -o "$tobj/pthread_cond_timedwait.o"
"$WORK/bin/cc-musl" -Wno-int-conversion \
  -D'pthread_condattr_getclock=__attribute__((__visibility__("hidden"))) __musl_condattr_getclock' \
  -c "$musl/src/thread/pthread_attr_get.c" -o "$tobj/pthread_attr_get.o"
"$CC" --target=wasm32-wasip1 -matomics -c "$src/thread/wasi_thread_start.s" -o "$tobj/wasi_thread_start.o"
"$AR" rcs "$lib/libc.a" "$tobj"/*.o
# <pthread.h> names struct sched_param, which WASI's <sched.h> leaves out.
cat "$src/thread/sched_param.h" >> "$inc/sched.h"
cc_sys -c "$src/crt1-command.c" -o "$lib/crt1-command.o"
cc_sys -c "$src/scrt1.c" -o "$lib/scrt1.o"
# libc_nonshared.a, linked into every shared library (as glibc's): atexit, dlopen and dlsym
# that pass the library's own __dso_handle (its exit handlers run at its dlclose; its RUNPATH,
# RTLD_NEXT). Archive members: a library that defines one of these keeps its own.
for f in "$src"/nonshared/*.c; do cc_sys -c "$f" -o "$obj/nonshared_$(basename "${f%.c}").o"; done
"$AR" rcs "$lib/libc_nonshared.a" "$obj"/nonshared_*.o
for empty in m rt pthread crypt util xnet resolv dl setjmp wasi-emulated-mman; do
  [ -e "$lib/lib$empty.a" ] || "$AR" rcs "$lib/lib$empty.a"
done

# zlib, static and PIC (CPython's zlib module, and programs that link -lz). Its configure
# only decides what zconf.h says about <unistd.h> and <stdarg.h>: both exist here.
log "building zlib $ZLIB_DEBIAN"
dpkg-source --no-check -x --skip-patches "$apt/src"/zlib_*.dsc "$WORK/zlib" >/dev/null
sed -i -e 's/^#ifdef HAVE_UNISTD_H.*/#if 1/' -e 's/^#ifdef HAVE_STDARG_H.*/#if 1/' "$WORK/zlib/zconf.h"
zobj="$WORK/zlib-obj"; mkdir -p "$zobj"
for f in adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback inffast inflate \
         inftrees trees uncompr zutil; do
  cc_sys -DHAVE_HIDDEN -Wno-deprecated-non-prototype -c "$WORK/zlib/$f.c" -o "$zobj/$f.o"
done
"$AR" rcs "$lib/libz.a" "$zobj"/*.o
cp "$WORK/zlib/zlib.h" "$WORK/zlib/zconf.h" "$inc/"
zlib_version="$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' "$WORK/zlib/zlib.h")"
mkdir -p "$lib/pkgconfig"
cat > "$lib/pkgconfig/zlib.pc" <<PC
prefix=$SYSROOT
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: zlib
Description: zlib compression library (wasix-dl sysroot)
Version: $zlib_version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lz
PC

# 2. compiler-rt builtins: Debian's wasm32 build (no data relocations, so it links into PIC
#    modules; its objects carry no feature constraints against shared memory).
cp /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a "$lib/"

# 3. libc++, libc++abi, libunwind from the LLVM sources shipped in the ziglang wheel. The
#    drivers link libc++.so, and they find the compilers through $SYSROOT/tools.
ln -sfn "$TOOLS" "$SYSROOT/tools"
bash "$here/build-libcxx.sh"
