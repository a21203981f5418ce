#include "CJMPMalloc.h"

#include <malloc.h>

int jmp_malloc_configure(int mmap_threshold, int trim_threshold, int arena_max) {
    if (arena_max > 0 && mallopt(M_ARENA_MAX, arena_max) != 1) return 0;
    // The trim threshold first: setting either one ends glibc's own adjustment of both.
    return mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1;
}

int jmp_malloc_chunk_is_mmapped(const void *pointer) {
    // glibc's chunk header: the size field is the word before the pointer, and its bit 0x2 is
    // IS_MMAPPED (malloc/malloc.c); unchanged since glibc 2.0.
    return (((const size_t *)pointer)[-1] & 0x2) != 0;
}

size_t jmp_malloc_free_bytes(void) { return mallinfo2().fordblks; }

int jmp_malloc_trim(void) { return malloc_trim(0); }
