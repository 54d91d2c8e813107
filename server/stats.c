#include "server/stats.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "common/util.h"

static size_t stats_size(uint32_t nslots)
{
    return sizeof(sw_stats_t) + (size_t)nslots * sizeof(sw_worker_stats_t);
}

sw_stats_t *sw_stats_new(uint32_t nslots)
{
    if (nslots == 0) {
        sw_log(SW_LOG_ERROR, "sw_stats_new: no slots");
        return NULL;
    }
    void *p =
        mmap(NULL, stats_size(nslots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        sw_log(SW_LOG_ERROR, "mmap(%zu bytes, MAP_SHARED|MAP_ANONYMOUS): %s", stats_size(nslots),
               strerror(errno));
        return NULL;
    }
    /* Anonymous mappings come zeroed: every counter starts at 0. */
    sw_stats_t *st = p;
    st->nslots = nslots;
    return st;
}

void sw_stats_free(sw_stats_t *st)
{
    if (!st)
        return;
    if (munmap(st, stats_size(st->nslots)) != 0)
        sw_log(SW_LOG_ERROR, "munmap(stats): %s", strerror(errno));
}

void sw_stats_reset_slot(sw_stats_t *st, uint32_t slot)
{
    if (!st || slot >= st->nslots)
        return;
    sw_worker_stats_t *s = &st->slot[slot];
    if (s->holder_id[0]) {
        memcpy(s->prev_holder, s->holder_id, sizeof(s->prev_holder));
        s->holder_id[0] = '\0';
    }
    atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->started_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&s->connections, 0, memory_order_relaxed);
    atomic_store_explicit(&s->accepted, 0, memory_order_relaxed);
    atomic_store_explicit(&s->ws_open, 0, memory_order_relaxed);
    atomic_store_explicit(&s->events_ok, 0, memory_order_relaxed);
    atomic_store_explicit(&s->events_error, 0, memory_order_relaxed);
    atomic_store_explicit(&s->deltas_sent, 0, memory_order_relaxed);
    atomic_store_explicit(&s->commits, 0, memory_order_relaxed);
    atomic_store_explicit(&s->commit_lease_lost, 0, memory_order_relaxed);
    atomic_store_explicit(&s->redis_errors, 0, memory_order_relaxed);
}
