#include "core/stats.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "common/log.h"
#include "common/util.h"
#include "proto/msg.h"

_Static_assert(SW_ERRC__COUNT <= SW_STATS_ERRC_MAX, "SW_STATS_ERRC_MAX too small for sw_errc_t");

static const uint64_t HIST_BOUNDS[SW_STATS_HIST_NBOUNDS] = SW_STATS_HIST_BOUNDS;

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

/* Move a counter's value into `dst` (the slot's worker is gone: nothing
 * else writes src). */
static void fold(_Atomic uint64_t *dst, _Atomic uint64_t *src)
{
    uint64_t v = atomic_exchange_explicit(src, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(dst, v, memory_order_relaxed);
}

void sw_stats_reset_slot(sw_stats_t *st, uint32_t slot)
{
    if (!st || slot >= st->nslots)
        return;
    sw_worker_stats_t *s = &st->slot[slot], *r = &st->retired;
    if (s->holder_id[0]) {
        memcpy(s->prev_holder, s->holder_id, sizeof(s->prev_holder));
        s->holder_id[0] = '\0';
    }
    atomic_fetch_add_explicit(&st->fold_seq, 1, memory_order_relaxed); /* odd: folding */
    atomic_thread_fence(memory_order_release);
    /* Counters: into retired. */
    fold(&r->accepted, &s->accepted);
    fold(&r->events_ok, &s->events_ok);
    fold(&r->events_error, &s->events_error);
    fold(&r->deltas_sent, &s->deltas_sent);
    fold(&r->commits, &s->commits);
    fold(&r->commit_lease_lost, &s->commit_lease_lost);
    fold(&r->redis_errors, &s->redis_errors);
    fold(&r->deltas_fanout, &s->deltas_fanout);
    fold(&r->lease_handoffs, &s->lease_handoffs);
    for (size_t i = 0; i < SW_ARRAY_SIZE(s->resumes); i++)
        fold(&r->resumes[i], &s->resumes[i]);
    for (size_t i = 0; i < SW_ARRAY_SIZE(s->errors); i++)
        fold(&r->errors[i], &s->errors[i]);
    for (size_t h = 0; h < SW_HIST__COUNT; h++) {
        for (size_t i = 0; i < SW_ARRAY_SIZE(s->hist[h].bucket); i++)
            fold(&r->hist[h].bucket[i], &s->hist[h].bucket[i]);
        fold(&r->hist[h].sum_ns, &s->hist[h].sum_ns);
    }
    /* Gauges and identity: zeroed. */
    atomic_store_explicit(&s->pid, 0, memory_order_relaxed);
    atomic_store_explicit(&s->started_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&s->connections, 0, memory_order_relaxed);
    atomic_store_explicit(&s->ws_open, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sse_open, 0, memory_order_relaxed);
    atomic_store_explicit(&s->leases_held, 0, memory_order_relaxed);
    atomic_store_explicit(&s->ready, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->fold_seq, 1, memory_order_release); /* even: done */
}

uint64_t sw_stats_read_begin(const sw_stats_t *st)
{
    /* Bounded: a master killed mid-fold leaves the count odd (its workers
     * follow it out); past the bound the read goes on, possibly torn. */
    uint64_t seq = atomic_load_explicit(&st->fold_seq, memory_order_acquire);
    for (unsigned i = 0; (seq & 1) && i < 1000000; i++)
        seq = atomic_load_explicit(&st->fold_seq, memory_order_acquire);
    return seq;
}

int sw_stats_read_retry(const sw_stats_t *st, uint64_t seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&st->fold_seq, memory_order_relaxed) != seq;
}

uint64_t sw_stats_hist_bound(unsigned i)
{
    return i < SW_STATS_HIST_NBOUNDS ? HIST_BOUNDS[i] : UINT64_MAX;
}

void sw_stats_observe(sw_worker_stats_t *s, sw_stats_hist_id_t which, uint64_t ns)
{
    if (!s || (unsigned)which >= SW_HIST__COUNT)
        return;
    unsigned i = 0;
    while (i < SW_STATS_HIST_NBOUNDS && ns > HIST_BOUNDS[i])
        i++;
    SW_STAT_ADD(&s->hist[which], bucket[i], 1);
    SW_STAT_ADD(&s->hist[which], sum_ns, ns);
}

const sw_stats_t *sw_stats_block_of(const sw_worker_stats_t *s, int slot)
{
    return (const sw_stats_t *)((const char *)(s - slot) - offsetof(sw_stats_t, slot));
}
