/* stats.h — per-worker counters in shared memory.
 *
 * The master maps one block (MAP_SHARED | MAP_ANONYMOUS) before forking,
 * so every worker writes its own slot and the master reads all of them:
 * least-connections balancing and, later, /metrics. The master maps
 * 2 * workers slots (two generations overlap during a reload, see
 * server/master.h); a slot whose pid is 0 is empty. Counters are relaxed
 * atomics: each slot has one writer (its worker; the master resets a slot
 * before respawning into it). */
#ifndef SW_SERVER_STATS_H
#define SW_SERVER_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sw_worker_stats {
    _Atomic int32_t pid;                /* 0 when the slot is empty */
    _Atomic uint64_t started_ms;        /* wall clock, ms */
    _Atomic uint64_t connections;       /* live connections (all kinds) */
    _Atomic uint64_t accepted;          /* connections handed to this worker */
    _Atomic uint64_t ws_open;           /* live WebSocket sessions */
    _Atomic uint64_t events_ok;         /* events answered with a delta */
    _Atomic uint64_t events_error;      /* events answered with an error */
    _Atomic uint64_t deltas_sent;       /* delta messages written to clients */
    _Atomic uint64_t commits;           /* successful fenced commits */
    _Atomic uint64_t commit_lease_lost; /* commits refused: lease not ours */
    _Atomic uint64_t redis_errors;      /* requests failed: Redis out of reach */
    char holder_id[48];   /* the worker's lease holder id (written by the worker) */
    char prev_holder[48]; /* the id of the previous worker in this slot, kept by
                             sw_stats_reset_slot: its leases are reaped */
    char pad[64];
} sw_worker_stats_t;

typedef struct sw_stats {
    uint32_t nslots;
    sw_worker_stats_t slot[];
} sw_stats_t;

/* Map a zeroed block for nslots workers, shared across fork(). NULL on
 * mmap failure (logged). */
sw_stats_t *sw_stats_new(uint32_t nslots);
void sw_stats_free(sw_stats_t *st);
/* Zero one slot (before a worker is (re)spawned into it); the previous
 * worker's holder id moves to prev_holder so the new one can reap the
 * leases a killed predecessor left behind. */
void sw_stats_reset_slot(sw_stats_t *st, uint32_t slot);

#define SW_STAT_ADD(s, field, n) atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define SW_STAT_SUB(s, field, n) atomic_fetch_sub_explicit(&(s)->field, (n), memory_order_relaxed)
#define SW_STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

#endif
