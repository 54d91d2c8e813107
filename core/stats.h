/* stats.h — per-worker counters in shared memory.
 *
 * The master maps one block (MAP_SHARED | MAP_ANONYMOUS) before forking,
 * so every worker writes its own slot and the master reads all of them:
 * least-connections balancing and the /metrics counters. The master maps
 * 2 * workers slots (two generations overlap during a reload, see
 * server/master.h); a slot whose pid is 0 is empty. Counters are relaxed
 * atomics: each slot has one writer (its worker; the master resets a slot
 * before respawning into it). */
#ifndef SW_CORE_STATS_H
#define SW_CORE_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Error codes counted per slot: indexed by sw_errc_t (proto/msg.h), whose
 * values stay below this bound (checked in stats.c). */
#define SW_STATS_ERRC_MAX 16

/* Histogram bucket upper bounds, ns (Prometheus "le", inclusive); one more
 * bucket (+Inf) holds everything above the last bound. Shared by every
 * histogram of the block. */
#define SW_STATS_HIST_BOUNDS                                                                       \
    {                                                                                              \
        100000ull, 250000ull, 500000ull, 1000000ull, 2500000ull, 5000000ull, 10000000ull,          \
            25000000ull, 50000000ull, 100000000ull, 250000000ull, 500000000ull, 1000000000ull,     \
            2500000000ull                                                                          \
    }
#define SW_STATS_HIST_NBOUNDS 14

/* One latency histogram: per-bucket (not cumulative) counts, bucket
 * SW_STATS_HIST_NBOUNDS is +Inf; the count is the sum of the buckets. */
typedef struct sw_stats_hist {
    _Atomic uint64_t bucket[SW_STATS_HIST_NBOUNDS + 1];
    _Atomic uint64_t sum_ns; /* sum of the observations, ns */
} sw_stats_hist_t;

/* Which histogram sw_stats_observe feeds. */
typedef enum {
    SW_HIST_EVENT = 0, /* client event: arrival to its answer */
    SW_HIST_REDIS_RTT, /* one store request to Redis: send to reply */
    SW_HIST__COUNT
} sw_stats_hist_id_t;

/* How a resumed connection was brought up to date (resumes[]). */
typedef enum {
    SW_RESUME_REPLAYED = 0, /* missed deltas from the replay log */
    SW_RESUME_FULL,         /* one full delta */
    SW_RESUME_NONE,         /* already current */
    SW_RESUME__COUNT
} sw_stats_resume_t;

typedef struct sw_worker_stats {
    _Atomic int32_t pid;                /* 0 when the slot is empty */
    _Atomic uint64_t started_ms;        /* wall clock, ms */
    _Atomic uint64_t connections;       /* live connections (all kinds) */
    _Atomic uint64_t accepted;          /* connections handed to this worker */
    _Atomic uint64_t ws_open;           /* live sessions: WebSocket and SSE */
    _Atomic uint64_t sse_open;          /* live SSE streams (part of ws_open) */
    _Atomic uint64_t events_ok;         /* events answered with a delta */
    _Atomic uint64_t events_error;      /* events answered with an error */
    _Atomic uint64_t deltas_sent;       /* delta messages written to clients */
    _Atomic uint64_t commits;           /* successful fenced commits */
    _Atomic uint64_t commit_lease_lost; /* commits refused: lease not ours */
    _Atomic uint64_t redis_errors;      /* requests failed: Redis out of reach */
    _Atomic uint64_t deltas_fanout;     /* delta messages written without an id */
    _Atomic uint64_t leases_held;       /* gauge: leases held (set by the lease sweep) */
    _Atomic uint32_t ready;             /* gauge: 1 while the worker's /healthz would say 200 */
    _Atomic uint64_t lease_handoffs;    /* leases given up because another worker asked */
    _Atomic uint64_t resumes[SW_RESUME__COUNT]; /* valid resumes, by sync kind */
    _Atomic uint64_t errors[SW_STATS_ERRC_MAX]; /* error messages sent, by sw_errc_t */
    sw_stats_hist_t hist[SW_HIST__COUNT];
    char holder_id[48];   /* the worker's lease holder id (written by the worker) */
    char prev_holder[48]; /* the id of the previous worker in this slot, kept by
                             sw_stats_reset_slot: its leases are reaped */
    char pad[64];
} sw_worker_stats_t;

typedef struct sw_stats {
    uint32_t nslots;
    _Atomic uint64_t worker_restarts; /* the master's own counter: workers respawned */
    /* The key that signs event-stream credentials (worker/credentials.h),
     * once a worker has it: workers forked later (a respawn, a reload)
     * start with it instead of asking Redis first. Written once: the key
     * bytes, then cred_key_set = 1 (release); read after an acquire load. */
    _Atomic uint32_t cred_key_set;
    unsigned char cred_key[32];
    /* What workers that are gone counted: sw_stats_reset_slot folds a
     * slot's counters (never its gauges) in here before it zeroes them,
     * so that sums over retired + every slot never decrease across worker
     * deaths and reloads. fold_seq is odd while a fold is under way (the
     * master writes, /metrics readers retry: sw_stats_read_begin/_retry). */
    _Atomic uint64_t fold_seq;
    sw_worker_stats_t retired;
    sw_worker_stats_t slot[];
} sw_stats_t;

/* Map a zeroed block for nslots workers, shared across fork(). NULL on
 * mmap failure (logged). */
sw_stats_t *sw_stats_new(uint32_t nslots);
void sw_stats_free(sw_stats_t *st);
/* Zero one slot (before a worker is (re)spawned into it), folding its
 * counters into st->retired first (under fold_seq); the previous
 * worker's holder id moves to prev_holder so the new one can reap the
 * leases a killed predecessor left behind. The slot's worker must be gone
 * (it is no longer written). */
void sw_stats_reset_slot(sw_stats_t *st, uint32_t slot);

/* A consistent read of the counters (retired + slots) against a fold:
 *   uint64_t seq; do { seq = sw_stats_read_begin(st); ...read...; }
 *   while (sw_stats_read_retry(st, seq));
 * read_begin waits out a fold under way (it takes microseconds; the wait
 * is bounded, past it the read may be torn). */
uint64_t sw_stats_read_begin(const sw_stats_t *st);
int sw_stats_read_retry(const sw_stats_t *st, uint64_t seq);

/* Count one observation of `ns` nanoseconds in histogram `which` of slot
 * s (relaxed atomics; the slot's one writer). Unknown `which`: ignored. */
void sw_stats_observe(sw_worker_stats_t *s, sw_stats_hist_id_t which, uint64_t ns);

/* The upper bound of bucket i in ns (i < SW_STATS_HIST_NBOUNDS); UINT64_MAX
 * for the +Inf bucket. */
uint64_t sw_stats_hist_bound(unsigned i);

/* The block that holds slot `slot` of it at `s` (a worker keeps only its
 * own slot's address; any worker may read every slot). */
const sw_stats_t *sw_stats_block_of(const sw_worker_stats_t *s, int slot);

#define SW_STAT_ADD(s, field, n) atomic_fetch_add_explicit(&(s)->field, (n), memory_order_relaxed)
#define SW_STAT_SUB(s, field, n) atomic_fetch_sub_explicit(&(s)->field, (n), memory_order_relaxed)
#define SW_STAT_GET(s, field) atomic_load_explicit(&(s)->field, memory_order_relaxed)

#endif
