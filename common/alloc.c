#include "common/alloc.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

#ifdef SW_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

/* Read by jemalloc at its initialisation (jemalloc(3) "TUNING"; the
 * MALLOC_CONF environment variable still overrides it). Workers are
 * single-threaded: one arena. Dirty pages decay within a second while the
 * process allocates (sw_alloc_release purges them at once when it does
 * not); muzzy_decay_ms:0 returns them with MADV_DONTNEED, which lowers RSS
 * at once, where MADV_FREE pages stay counted until memory pressure. The
 * thread cache stays on (without it an event costs about 10% more CPU).
 * Purging on every free (dirty_decay_ms:0) costs about 50% more CPU per
 * event. This file is always linked (the conn code calls
 * sw_alloc_release), so the symbol is there for jemalloc to find. */
const char *malloc_conf = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0";

static void ctl(const char *name)
{
    static int logged;
    int rc = mallctl(name, NULL, NULL, NULL, 0);
    if (rc && !logged) {
        sw_log(SW_LOG_WARN, "mallctl(%s): %s", name, strerror(rc));
        logged = 1;
    }
}

void sw_alloc_release(void)
{
    char name[64];
    /* Objects cached by this thread first: they keep their slabs in use. */
    ctl("thread.tcache.flush");
    snprintf(name, sizeof(name), "arena.%u.purge", (unsigned)MALLCTL_ARENAS_ALL);
    ctl(name);
}

#elif defined(__GLIBC__)
#include <malloc.h>

void sw_alloc_release(void)
{
    malloc_trim(0);
}

#else

void sw_alloc_release(void)
{
}

#endif
