/* store.h — where token state lives: Redis (production) or process memory
 * (development mode, one worker).
 *
 * Key layout (DESIGN.md §4), with a hash tag so one token's keys share one
 * Cluster slot:
 *   sw:{TOKEN}        hash: one field per state path (msgpack map of its
 *                     stored vars), "_seq" (decimal seq of the token's
 *                     delta stream), "_meta" (msgpack map: router, links),
 *                     and "_log:<seq mod log_max>": the replay log, the
 *                     delta message (JSON) of each seq in a ring of log_max
 *                     fields. TTL = token TTL, refreshed when a commit asks
 *                     (refresh_ttl: the holder does it every ttl/4).
 *   sw:{TOKEN}:lease  string: the lease holder id (SET NX PX).
 *   sw:{TOKEN}:live   string: the socket id of the token's live connection,
 *                     PX = presence TTL, refreshed by its worker; tells a
 *                     duplicate tab from the first one.
 *
 * Every write is fenced: one Lua script checks that the lease key still
 * holds our id, then writes fields, seq and the log entry with one HSET
 * (so a steady-state commit costs EVALSHA + GET + HSET in Redis's
 * commandstats). A holder whose lease expired or was taken cannot write
 * (SW_ELEASE). The acquire script never returns the "_log:" fields.
 *
 * All calls are asynchronous: they return 0 after queueing the request and
 * call the callback exactly once later from the event loop (never from
 * inside the call), or return a negative SW_E* code and never call it.
 * A request in flight when Redis goes away completes with SW_EUNAVAIL, and
 * so does every waiting request when a connection answers nothing for 5 s
 * (the connection is then dropped and reopened: a hung Redis cannot stall
 * tokens); a
 * commit that completes with SW_EUNAVAIL may or may not have been applied
 * (the caller must reload before trusting its cache).
 *
 * Argument errors: a token that is empty, longer than 256 bytes, or holds
 * spaces, control characters or '{' '}' gives SW_EINVAL, as does a commit
 * field named "_seq". Bound: at most 65536 requests in flight per store;
 * beyond that calls return SW_ENOMEM. Every byte a request points to is
 * copied before the call returns.
 *
 * The in-memory store: all memory stores of one process share one table
 * (like clients of one Redis), so different holder ids contend for
 * leases; expiry is checked on access and swept every 10 s. */
#ifndef SW_WORKER_STORE_H
#define SW_WORKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

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

/* Connect (Redis: async, with reconnect and backoff; SELECT db when the
 * URL names one; scripts go by EVALSHA, resent as EVAL on NOSCRIPT).
 * Returns NULL on a bad URL or an empty holder_id (logged). Zero opts
 * fields take the defaults. The store is usable at once: requests made
 * before the connection is up are queued (Redis) or fail with SW_EUNAVAIL
 * after the first failed attempt. The process must ignore SIGPIPE (the
 * master does): hiredis writes with write(2), and the commands of a loop
 * pass are written right before the loop polls, which may be before the
 * loss of the connection has been read. */
sw_store_t *sw_store_new(struct ev_loop *loop, const sw_store_opts_t *opts);

/* Close connections; pending callbacks complete with SW_EUNAVAIL before
 * this returns. Must not be called from inside a store callback. */
void sw_store_free(sw_store_t *s);

/* 1 when the store can take requests now (Redis connected, or memory). */
int sw_store_ready(const sw_store_t *s);

/* "redis" or "memory". */
const char *sw_store_kind(const sw_store_t *s);

/* Take the token's lease (SET sw:{T}:lease holder NX PX lease_ms) and read
 * the token hash (HGETALL sw:{T}) in one pipelined round trip. When the
 * lease is ours already the SET is refreshed instead. */
int sw_store_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);

/* The fenced commit (one EVALSHA). */
int sw_store_commit(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb, void *udata);

/* Read a token's hash without taking its lease (HGETALL): shared tokens,
 * whose writes are compare-and-set. res->status is 0 or SW_EUNAVAIL. */
int sw_store_read(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);

/* ---- Presence of a shared token -------------------------------------------
 * sw:{R}:presence is a sorted set: member = client token, score = expiry
 * (Redis TIME, ms). Connected clients are refreshed by their worker every
 * ttl/3; entries of a dead worker expire after ttl and are reaped by any
 * worker that still has clients linked to R. sw:{R}:members (a set) holds
 * every client token linked to R, connected or not. */
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

/* One script: drop expired entries, apply `op` to `members` (n may be 0),
 * count; when the count changed (by expiry or by the op) PUBLISH
 * {"presence": count} on sw:{R}:ch; refresh the TTL of R's keys (the token
 * TTL: shared tokens live while anyone is linked). cb may be NULL.
 * members are client tokens (same rules as tokens), at most 4096;
 * ttl_ms > 0. Returns 0, SW_EINVAL, or SW_ENOMEM at the in-flight bound. */
int sw_store_presence(sw_store_t *s, const char *shared_token, sw_presence_op_t op,
                      const char *const *members, size_t n, uint32_t ttl_ms, sw_store_count_cb cb,
                      void *udata);

/* ---- Pub/sub: fan-out of shared-state changes ----------------------------
 * A second connection in SUBSCRIBE mode. One subscription per shared token
 * (channel sw:{R}:ch). Messages arrive in publish order. After the
 * subscription connection is (re)established — at first subscribe and
 * after every reconnect — `resync` is called for each subscription once
 * Redis has confirmed it: messages may have been missed before that, so
 * the subscriber reloads the shared token's state. */
typedef void (*sw_store_message_cb)(void *udata, const char *data, size_t len);
typedef void (*sw_store_resync_cb)(void *udata);

/* Subscribe to shared token R's channel. One subscription per R per store
 * (SW_EBUSY if there is one). on_resync may be NULL. At most 65536
 * subscriptions per store (then SW_ENOMEM). 0, SW_EINVAL, SW_EBUSY,
 * SW_ENOMEM. sw_store_free drops every subscription without calling it. */
int sw_store_subscribe(sw_store_t *s, const char *shared_token, sw_store_message_cb on_message,
                       sw_store_resync_cb on_resync, void *udata);

/* Drop the subscription; no callback of it runs afterwards. 0 or
 * SW_ENOTFOUND. */
int sw_store_unsubscribe(sw_store_t *s, const char *shared_token);

/* Entries of a token's replay log for seq first..last (inclusive):
 * entries[i] / lens[i] is the delta message of seq first + i, or NULL when
 * the ring no longer holds it (the caller also checks the seq inside, and
 * sends a full state instead of a gap). Borrowed during the callback.
 * status 0 or SW_EUNAVAIL. */
typedef void (*sw_store_log_cb)(void *udata, int status, const char *const *entries,
                                const size_t *lens, size_t n);

/* Read the replay log (HMGET of the "_log:" ring fields). last - first + 1
 * must be at most log_max (SW_EINVAL otherwise). */
int sw_store_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                      sw_store_log_cb cb, void *udata);

/* The live-connection key sw:{T}:live (fire and forget, one script call
 * for n tokens): SET writes sockid with PX ttl_ms; REFRESH extends it and
 * DROP deletes it, each only while it still holds that sockid (a newer
 * connection's key is left alone). 0, SW_EINVAL, SW_EUNAVAIL. */
typedef enum { SW_LIVE_SET = 1, SW_LIVE_REFRESH, SW_LIVE_DROP } sw_live_op_t;
int sw_store_live(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                  const char *const *sockids, size_t n, uint32_t ttl_ms);

/* Every lease a holder takes is also recorded in the set sw:holder:{id}
 * (on acquire and release only: a steady-state commit does not touch it).
 * Reap: delete every lease still held by `holder` — a worker that was
 * killed — so its tokens are free at once instead of after lease_ms.
 * Fire and forget; the count reaped is logged. */
int sw_store_reap(sw_store_t *s, const char *holder);

/* PUBLISH with a completion: cb(udata, status, receivers) once Redis has
 * taken the message (status 0; receivers: how many subscribers got it, the
 * integer reply of PUBLISH, https://redis.io/commands/publish) or failed
 * (SW_EUNAVAIL), so that a caller can answer only after the message is
 * ordered, and knows when nobody listens. 0 or SW_EINVAL. */
int sw_store_publish_acked(sw_store_t *s, const char *name, const char *data, size_t len,
                           sw_store_count_cb cb, void *udata);

/* PUBLISH data on the channel sw:{name}:ch (fire and forget): a message
 * to another worker's inbox ("inbox:<holder id>") or a shared token's
 * subscribers. 0, SW_EINVAL, SW_EUNAVAIL. */
int sw_store_publish(sw_store_t *s, const char *name, const char *data, size_t len);

/* The deployment's signing secret, shared by every worker of every host
 * of one Redis: the string key sw:secret is set to `proposal` when absent
 * (SET NX), then read, in one script. cb(udata, status, value, len):
 * status 0 with the stored value (borrowed for the call), or SW_EUNAVAIL.
 * The in-memory store keeps one per process (the first proposal). 0,
 * SW_EINVAL (proposal empty or over 256 bytes), SW_EUNAVAIL (Redis out of
 * reach: no callback; ask again later). */
typedef void (*sw_store_value_cb)(void *udata, int status, const char *value, size_t len);
int sw_store_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                    void *udata);

/* Release the lease if it is still ours (compare-and-delete script);
 * fire and forget. Returns 0, SW_EINVAL, or SW_EUNAVAIL while Redis is
 * down (the lease then simply expires). */
int sw_store_release(sw_store_t *s, const char *token);

#endif
