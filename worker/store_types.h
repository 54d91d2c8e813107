/* store_types.h — the shapes the store speaks in: its options, the
 * fields, load results and commits that travel through it, the presence
 * and live-key operations, and its callback types. Shared by the store's
 * users (through worker/store.h, the calls) and its backends
 * (worker/store_int.h); no behaviour here. */
#ifndef SW_WORKER_STORE_TYPES_H
#define SW_WORKER_STORE_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef struct sw_store sw_store_t;

typedef struct sw_store_opts {
    const char *redis_url; /* "redis://host:port/db", "unix:///path[?db=N]";
                              NULL = in-memory store */
    const char *holder_id; /* this worker's lease holder id (borrowed, copied) */
    uint32_t token_ttl_s;  /* TTL of token keys, seconds (default 3600) */
    uint32_t lease_ms;     /* lease duration, ms (default 10000) */
    uint32_t log_max;      /* replay log length (default 256) */
    /* Called on every reply to a request on the Redis command connection
     * with its round trip in ns (send to reply; a request resent after
     * NOSCRIPT counts twice); NULL = none. Never called by the in-memory
     * store, nor for requests dropped with the connection. */
    void (*on_rtt)(void *rtt_udata, uint64_t ns);
    void *rtt_udata;
} sw_store_opts_t;

/* One hash field as read from the store: bytes are borrowed and valid only
 * during the callback. */
typedef struct sw_store_field {
    const char *name;
    size_t name_len;
    const char *data;
    size_t len;
} sw_store_field_t;

/* Result of sw_store_acquire_load(). */
typedef struct sw_store_loaded {
    int status;                     /* 0: lease taken and state read;
                                       SW_EBUSY: another holder has the lease (nothing read);
                                       SW_EUNAVAIL: Redis out of reach */
    int exists;                     /* the token hash existed */
    uint64_t seq;                   /* "_seq" (0 if none) */
    const sw_store_field_t *fields; /* state fields (not "_seq"/"_meta") */
    size_t nfields;
    const char *meta; /* "_meta" msgpack bytes, NULL if none */
    size_t meta_len;
    const char *holder; /* SW_EBUSY: the id of the lease holder ("" unknown) */
    size_t holder_len;
    const char *live; /* acquire: the socket id in sw:{T}:live ("" none) */
    size_t live_len;
} sw_store_loaded_t;

typedef void (*sw_store_load_cb)(void *udata, const sw_store_loaded_t *res);

/* The part of a commit that writes a shared token's copy (shared state,
 * rooms). No lease: compare-and-set on the shared token's "_seq". */
typedef struct sw_store_shared_write {
    const char *token;              /* shared token R (e.g. "room:lobby") */
    uint64_t expect_seq;            /* R's "_seq" the change was computed from;
                                       the write sets it to expect_seq + 1 */
    const sw_store_field_t *fields; /* states to write into sw:{R} */
    size_t nfields;
    const char *message; /* PUBLISHed on sw:{R}:ch right after the
                            write, in the same script (so messages
                            follow commit order); NULL = none */
    size_t message_len;
    int claim; /* the writer lost before: if it loses again, it claims
                  priority (sw:{R}:prio, 200 ms) and other writers get
                  SW_EAGAIN until it commits */
} sw_store_shared_write_t;

/* A fenced commit. */
typedef struct sw_store_commit {
    const char *token;
    uint64_t seq;          /* new "_seq" to store (0 = leave unchanged) */
    const char *log_entry; /* appended to the replay log; NULL = none */
    size_t log_len;
    const sw_store_field_t *fields; /* fields to write (state paths, "_meta") */
    size_t nfields;
    int release;     /* release the lease after writing */
    int renew;       /* not releasing: extend the lease to lease_ms from now */
    int refresh_ttl; /* set the token hash's TTL to the token TTL again */
    const sw_store_shared_write_t *shared; /* shared copies written in the same
                                              script (CAS each); may be NULL */
    size_t nshared;                        /* 0..8; more, a shared token named twice or equal to
                                              `token`, or a shared field "_seq": SW_EINVAL. Each
                                              shared hash gets the token TTL. */
} sw_store_commit_t;

/* status: 0 committed; SW_ELEASE lease not ours (nothing written);
 * SW_ECONFLICT a shared token's "_seq" was not expect_seq (nothing written:
 * reload it and compute again); SW_EAGAIN another writer claimed priority
 * on a shared token (nothing written: retry in a moment); SW_EUNAVAIL Redis out of reach (outcome
 * unknown). The lease is checked first. */
typedef void (*sw_store_commit_cb)(void *udata, int status);

/* Operations of sw_store_presence() on sw:{R}:presence (a sorted set:
 * member = client token, score = expiry) and sw:{R}:members (a set). */
typedef enum {
    SW_PRESENCE_ADD = 1, /* ZADD members (score now + ttl), SADD to members */
    SW_PRESENCE_REMOVE,  /* ZREM members (still linked: members unchanged), except
                            those whose sw:{T}:live key exists: a newer connection
                            of that token (a resume elsewhere) is still there */
    SW_PRESENCE_UNLINK,  /* ZREM members and SREM them from members */
    SW_PRESENCE_REFRESH, /* ZADD XX members (score now + ttl): only entries
                            still present; an entry that expired and was
                            reaped is not re-added (use ADD for that) */
    SW_PRESENCE_REAP,    /* only drop expired entries */
} sw_presence_op_t;

/* count: the number of live presence entries after the op; status 0 or
 * SW_EUNAVAIL. "Changed" compares with the entry count before expired
 * entries were dropped (the count last published). */
typedef void (*sw_store_count_cb)(void *udata, int status, int64_t count);

/* Pub/sub: a message on a shared token's channel, and the call to reload
 * its state after the subscription was (re)established. */
typedef void (*sw_store_message_cb)(void *udata, const char *data, size_t len);
typedef void (*sw_store_resync_cb)(void *udata);

/* Entries of a token's replay log for seq first..last (inclusive):
 * entries[i] / lens[i] is the delta message of seq first + i, or NULL when
 * the ring no longer holds it (the caller also checks the seq inside, and
 * sends a full state instead of a gap). Borrowed during the callback.
 * status 0 or SW_EUNAVAIL. */
typedef void (*sw_store_log_cb)(void *udata, int status, const char *const *entries,
                                const size_t *lens, size_t n);

/* Operations of sw_store_live() on the live-connection key sw:{T}:live. */
typedef enum { SW_LIVE_SET = 1, SW_LIVE_REFRESH, SW_LIVE_DROP } sw_live_op_t;

/* A value read from the store (sw_store_secret). */
typedef void (*sw_store_value_cb)(void *udata, int status, const char *value, size_t len);

#endif
