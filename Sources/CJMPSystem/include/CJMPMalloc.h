// glibc malloc settings and counters (malloc.h is not part of Swift's Glibc module).
#ifndef CJMPMALLOC_H
#define CJMPMALLOC_H

#include <stddef.h>

/// mallopt(M_ARENA_MAX, arena_max) if arena_max > 0, then M_TRIM_THRESHOLD and
/// M_MMAP_THRESHOLD. Returns 1 if every setting was accepted, 0 otherwise.
int jmp_malloc_configure(int mmap_threshold, int trim_threshold, int arena_max);

/// Whether the live allocation `pointer` (from malloc) is a chunk of its own mapping rather than
/// heap memory: the IS_MMAPPED bit of the size field glibc keeps just before it. For tests.
int jmp_malloc_chunk_is_mmapped(const void *pointer);

/// Free bytes inside glibc's heaps over all arenas (mallinfo2's fordblks).
size_t jmp_malloc_free_bytes(void);

/// malloc_trim(0): returns free heap memory to the kernel: the top of the main heap and the free
/// pages inside every arena. Returns 1 if any memory was released, 0 otherwise.
int jmp_malloc_trim(void);

#endif
