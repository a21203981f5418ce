#include "CJMPMalloc.h"

#include <malloc.h>

int jmp_malloc_configure(int mmap_threshold, int trim_threshold, int arena_max) {
    if (arena_max > 0 && mallopt(M_ARENA_MAX, arena_max) != 1) return 0;
    // The trim threshold first: setting either one ends glibc's own adjustment of both.
    return mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1;
}

size_t jmp_malloc_mapped_bytes(void) { return mallinfo2().hblkhd; }

size_t jmp_malloc_heap_bytes(void) { return mallinfo2().arena; }

size_t jmp_malloc_free_bytes(void) { return mallinfo2().fordblks; }

int jmp_malloc_trim(void) { return malloc_trim(0); }
