/* alloc.h — the process's heap allocator and handing freed heap back to
 * the OS.
 *
 * Builds other than Sanitize link jemalloc when it is installed
 * (SW_HAVE_JEMALLOC; scripts/deps.sh installs libjemalloc-dev): its size
 * classes keep the small long-lived objects of idle connections apart from
 * the short-lived buffers of their setup, so freed pages can go back to the
 * OS (bench idle scenario: about 2.4 KB of server RSS per idle connection,
 * against 7.2 KB with glibc malloc). It is tuned in alloc.c (malloc_conf:
 * one arena, freed pages returned with MADV_DONTNEED rather than MADV_FREE
 * so that RSS drops at once). The Sanitize build and builds without
 * jemalloc use glibc malloc. */
#ifndef SW_COMMON_ALLOC_H
#define SW_COMMON_ALLOC_H

/* Hand the free pages of the heap back to the OS (madvise): jemalloc's
 * "thread.tcache.flush" then "arena.<MALLCTL_ARENAS_ALL>.purge" (see
 * jemalloc(3)), or glibc's malloc_trim(0). Both walk what is free (glibc:
 * every free chunk), so callers batch: at most every couple of seconds,
 * after much was freed. No-op with other allocators; failures are logged
 * once. */
void sw_alloc_release(void);

#endif
