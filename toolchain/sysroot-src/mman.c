/* mmap and friends over the heap, since wasm has one linear memory and no page tables.
 *
 * A mapping is a page-aligned heap block. Anonymous mappings are zero-filled. A file mapping is
 * read from the file when it is made; a MAP_SHARED one that was ever writable is written back
 * to the file by msync, by munmap and when mremap moves it (only the part inside the file: as
 * natively, bytes past the end of the file stay in memory). What cannot be emulated: a shared
 * mapping does not see later write()s to its file or other mappings of it, and MAP_FIXED,
 * PROT_EXEC and huge pages are refused (ENOTSUP) rather than pretended.
 *
 * Unmapping (munmap, or mremap shrinking) may cut a mapping anywhere, as allocators do when they
 * trim an over-sized mapping to an alignment: each record is a live range over a block that is
 * freed, and its file descriptor closed, when no range of it is left.
 *
 * One lock guards the list of mappings; file I/O happens under it (mapping is rare and the
 * writes must not interleave with an munmap of the same range). It is a leaf lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct block {
	char *base;
	size_t ranges; /* live mappings over this block */
	int fd;        /* a dup of the mapped file's descriptor, or -1 */
};

struct mapping {
	struct mapping *next;
	char *addr;
	size_t length; /* a multiple of the page size */
	int prot, flags;
	int written_back; /* MAP_SHARED over a file and writable at some time */
	off_t offset;     /* of addr in the file */
	struct block *block;
};

static struct mapping *mappings;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static int round_to_pages(size_t length, size_t *rounded)
{
	size_t page = page_size();
	if (length > SIZE_MAX - (page - 1))
		return -1;
	*rounded = (length + page - 1) & ~(page - 1);
	return 0;
}

static int fail(int error)
{
	errno = error;
	return -1;
}

/* Reads the file into buf from offset; what lies past its end reads as zeros. */
static int read_file(int fd, char *buf, size_t length, off_t offset)
{
	while (length > 0) {
		ssize_t n = pread(fd, buf, length, offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		buf += n, length -= (size_t)n, offset += n;
	}
	memset(buf, 0, length);
	return 0;
}

/* Writes [addr, addr+length) of mapping m back to its file, up to the file's current end. */
static int write_back(struct mapping *m, char *addr, size_t length)
{
	if (!m->written_back || length == 0)
		return 0;
	struct stat st;
	if (fstat(m->block->fd, &st) != 0)
		return -1;
	off_t offset = m->offset + (addr - m->addr);
	if (offset >= st.st_size)
		return 0;
	if ((off_t)length > st.st_size - offset)
		length = (size_t)(st.st_size - offset);
	while (length > 0) {
		ssize_t n = pwrite(m->block->fd, addr, length, offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		addr += n, length -= (size_t)n, offset += n;
	}
	return 0;
}

static void release(struct block *b)
{
	if (--b->ranges > 0)
		return;
	if (b->fd >= 0)
		close(b->fd);
	free(b->base);
	free(b);
}

/* Checks that fd can back a mapping with these protections (Linux's errors). */
static int check_file(int fd, int prot, int shared)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return fail(EBADF);
	if (!S_ISREG(st.st_mode))
		return fail(ENODEV);
	int mode = fcntl(fd, F_GETFL);
	if (mode < 0)
		return fail(EBADF);
	mode &= O_ACCMODE;
	if (mode == O_WRONLY || (shared && (prot & PROT_WRITE) && mode != O_RDWR))
		return fail(EACCES);
	return 0;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
	(void)addr; /* a hint only: the heap decides */
	int type = flags & MAP_TYPE;
	size_t size;
	if (length == 0 || round_to_pages(length, &size) != 0 ||
	    (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE) ||
	    (offset % (off_t)page_size()) != 0 || offset < 0) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN | MAP_HUGETLB)) ||
	    (prot & (PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP))) {
		errno = ENOTSUP;
		return MAP_FAILED;
	}
	int shared = type != MAP_PRIVATE, anonymous = (flags & MAP_ANONYMOUS) != 0;
	if (!anonymous && check_file(fd, prot, shared) != 0)
		return MAP_FAILED;

	struct mapping *m = malloc(sizeof *m);
	struct block *b = malloc(sizeof *b);
	char *base = aligned_alloc(page_size(), size);
	if (!m || !b || !base) {
		free(m), free(b), free(base);
		errno = ENOMEM;
		return MAP_FAILED;
	}
	*b = (struct block){.base = base, .ranges = 1, .fd = -1};
	*m = (struct mapping){.addr = base, .length = size, .prot = prot, .flags = flags,
	                      .offset = offset, .block = b,
	                      .written_back = shared && !anonymous && (prot & PROT_WRITE)};
	if (anonymous) {
		memset(base, 0, size);
	} else if (read_file(fd, base, size, offset) != 0 ||
	           (b->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		int error = errno;
		free(m), free(b), free(base);
		errno = error;
		return MAP_FAILED;
	}
	pthread_mutex_lock(&lock);
	m->next = mappings;
	mappings = m;
	pthread_mutex_unlock(&lock);
	return base;
}

/* Removes [start, end) from every mapping, writing back what leaves shared file mappings. */
static int unmap_locked(char *start, char *end)
{
	int result = 0;
	for (struct mapping **link = &mappings, *m; (m = *link);) {
		char *m_end = m->addr + m->length;
		if (m_end <= start || m->addr >= end) {
			link = &m->next;
			continue;
		}
		char *cut = m->addr > start ? m->addr : start;
		char *cut_end = m_end < end ? m_end : end;
		if (write_back(m, cut, (size_t)(cut_end - cut)) != 0)
			result = -1;
		if (cut_end < m_end && cut > m->addr) {
			/* A hole in the middle: the part after it becomes a mapping of its own. */
			struct mapping *tail = malloc(sizeof *tail);
			if (!tail)
				return fail(ENOMEM);
			*tail = *m;
			tail->addr = cut_end;
			tail->length = (size_t)(m_end - cut_end);
			tail->offset = m->offset + (cut_end - m->addr);
			m->block->ranges++;
			m->next = tail;
		}
		if (cut > m->addr) {
			m->length = (size_t)(cut - m->addr);
			link = &m->next;
		} else if (cut_end < m_end) {
			m->offset += cut_end - m->addr;
			m->length = (size_t)(m_end - cut_end);
			m->addr = cut_end;
			link = &m->next;
		} else {
			*link = m->next;
			release(m->block);
			free(m);
		}
	}
	return result;
}

static int valid_range(void *addr, size_t length, char **end)
{
	size_t size;
	if (((uintptr_t)addr % page_size()) != 0 || length == 0 ||
	    round_to_pages(length, &size) != 0 || size > UINTPTR_MAX - (uintptr_t)addr)
		return fail(EINVAL);
	*end = (char *)addr + size;
	return 0;
}

int munmap(void *addr, size_t length)
{
	char *end;
	if (valid_range(addr, length, &end) != 0)
		return -1;
	pthread_mutex_lock(&lock);
	int result = unmap_locked(addr, end);
	pthread_mutex_unlock(&lock);
	return result;
}

/* Calls f on the part of every mapping inside [addr, addr+length); ENOMEM if some of that
 * range is not mapped, as natively. */
static int each_in_range(void *addr, size_t length, int (*f)(struct mapping *, char *, size_t, int),
                         int arg)
{
	char *start = addr, *end;
	if (valid_range(addr, length, &end) != 0)
		return -1;
	pthread_mutex_lock(&lock);
	size_t covered = 0;
	int result = 0;
	for (struct mapping *m = mappings; m; m = m->next) {
		char *m_end = m->addr + m->length;
		if (m_end <= start || m->addr >= end)
			continue;
		char *cut = m->addr > start ? m->addr : start;
		char *cut_end = m_end < end ? m_end : end;
		covered += (size_t)(cut_end - cut);
		if (f(m, cut, (size_t)(cut_end - cut), arg) != 0)
			result = -1;
	}
	pthread_mutex_unlock(&lock);
	if (result == 0 && covered < (size_t)(end - start))
		return fail(ENOMEM);
	return result;
}

static int sync_part(struct mapping *m, char *addr, size_t length, int flags)
{
	(void)flags; /* MS_ASYNC or MS_SYNC: either way the file has it when msync returns */
	return write_back(m, addr, length);
}

int msync(void *addr, size_t length, int flags)
{
	if ((flags & ~(MS_ASYNC | MS_SYNC | MS_INVALIDATE)) || (flags & MS_ASYNC && flags & MS_SYNC))
		return fail(EINVAL);
	return each_in_range(addr, length, sync_part, flags);
}

static int protect_part(struct mapping *m, char *addr, size_t length, int prot)
{
	(void)addr, (void)length;
	if (m->block->fd >= 0 && (prot & PROT_WRITE)) {
		/* Only a descriptor opened for writing may make a shared mapping writable. */
		int mode = fcntl(m->block->fd, F_GETFL);
		if (mode < 0 || (mode & O_ACCMODE) != O_RDWR)
			return fail(EACCES);
		m->written_back = 1;
	}
	m->prot = prot; /* the mapping's, not the part's: memory here is never protected anyway */
	return 0;
}

int mprotect(void *addr, size_t length, int prot)
{
	if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP))
		return fail(EINVAL);
	if (prot & (PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP))
		return fail(ENOTSUP);
	return each_in_range(addr, length, protect_part, prot);
}

/* MADV_DONTNEED: a private mapping reads as if freshly mapped (zeros, or the file again);
 * a shared one already shows what a fresh read would give. */
static int drop_part(struct mapping *m, char *addr, size_t length, int unused)
{
	(void)unused;
	if ((m->flags & MAP_TYPE) != MAP_PRIVATE)
		return 0;
	if (m->block->fd < 0) {
		memset(addr, 0, length);
		return 0;
	}
	return read_file(m->block->fd, addr, length, m->offset + (addr - m->addr));
}

static int keep_part(struct mapping *m, char *addr, size_t length, int unused)
{
	(void)m, (void)addr, (void)length, (void)unused;
	return 0;
}

int madvise(void *addr, size_t length, int advice)
{
	switch (advice) {
	case MADV_DONTNEED:
		return each_in_range(addr, length, drop_part, 0);
	case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL: case MADV_WILLNEED:
	case MADV_FREE: case MADV_DONTFORK: case MADV_DOFORK: case MADV_MERGEABLE:
	case MADV_UNMERGEABLE: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE: case MADV_DONTDUMP:
	case MADV_DODUMP: case MADV_WIPEONFORK: case MADV_KEEPONFORK: case MADV_COLD:
	case MADV_PAGEOUT:
		return each_in_range(addr, length, keep_part, 0); /* advice only: nothing to do */
	default:
		return fail(EINVAL);
	}
}

/* POSIX's advice is advice only (glibc ignores POSIX_MADV_DONTNEED too). */
int posix_madvise(void *addr, size_t length, int advice)
{
	if (advice < POSIX_MADV_NORMAL || advice > POSIX_MADV_DONTNEED)
		return EINVAL;
	return each_in_range(addr, length, keep_part, 0) == 0 ? 0 : errno;
}

/* Nothing is ever paged out. */
int mlock(const void *addr, size_t length) { (void)addr, (void)length; return 0; }
int munlock(const void *addr, size_t length) { (void)addr, (void)length; return 0; }
int mlockall(int flags) { return flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) ? fail(EINVAL) : 0; }
int munlockall(void) { return 0; }

/* Moves the first size bytes of m to a new block of new_size bytes. */
static void *move_locked(struct mapping *m, size_t size, size_t new_size)
{
	struct mapping *moved = malloc(sizeof *moved);
	struct block *b = malloc(sizeof *b);
	char *base = aligned_alloc(page_size(), new_size);
	if (!moved || !b || !base) {
		free(moved), free(b), free(base);
		errno = ENOMEM;
		return MAP_FAILED;
	}
	*b = (struct block){.base = base, .ranges = 1, .fd = -1};
	memcpy(base, m->addr, size);
	if (m->block->fd < 0) {
		memset(base + size, 0, new_size - size);
	} else if ((b->fd = fcntl(m->block->fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	           read_file(b->fd, base + size, new_size - size, m->offset + (off_t)size) != 0) {
		int error = errno;
		if (b->fd >= 0)
			close(b->fd);
		free(moved), free(b), free(base);
		errno = error;
		return MAP_FAILED;
	}
	*moved = *m;
	moved->addr = base;
	moved->length = new_size;
	moved->block = b;
	char *old = m->addr;
	moved->next = mappings;
	mappings = moved;
	/* The old range's contents go to the file now; the moved copy writes them again later. */
	unmap_locked(old, old + size);
	return base;
}

/* Only with MREMAP_MAYMOVE can a mapping grow (nothing is known to follow its block); it may
 * always shrink in place. The new part of a file mapping is read from the file. */
void *mremap(void *old, size_t old_length, size_t new_length, int flags, ...)
{
	size_t old_size, new_size;
	if ((flags & ~MREMAP_MAYMOVE) || ((uintptr_t)old % page_size()) != 0 || new_length == 0 ||
	    round_to_pages(old_length, &old_size) != 0 || round_to_pages(new_length, &new_size) != 0) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	pthread_mutex_lock(&lock);
	struct mapping *m = mappings;
	while (m && !((char *)old >= m->addr && (char *)old + old_size <= m->addr + m->length))
		m = m->next;
	void *result = MAP_FAILED;
	if (!m || (char *)old != m->addr) {
		errno = EFAULT; /* not the start of a mapping */
	} else if (new_size <= old_size) {
		result = unmap_locked((char *)old + new_size, (char *)old + old_size) == 0 ? old : MAP_FAILED;
	} else if (!(flags & MREMAP_MAYMOVE)) {
		errno = ENOMEM;
	} else {
		result = move_locked(m, old_size, new_size);
	}
	pthread_mutex_unlock(&lock);
	return result;
}
