/* store_int.h — the backend contract of the store, implemented by
 * store_base.c: the ops table a backend fills (like a connection type),
 * the common head of every backend's store struct, and the completion
 * queue every backend delivers its results through.
 *
 * Arrows: store.c (the interface) reaches the backends (store_redis.c,
 * store_mem.c) through their constructors and this ops table; the backends
 * reach store_base.c; store_base.c reaches no store file. Internal to
 * worker/store*.c; nothing else includes it.
 *
 * In-flight accounting: store.c counts a request in `inflight` before it
 * hands it to a backend (and uncounts it when the backend refuses it);
 * store_base.c uncounts it when the backend reports its completion. A
 * backend never touches `inflight`: it completes every request it accepts
 * exactly once, through one of the sw_store_complete_* / sw_store_defer*
 * calls below. */
#ifndef SW_WORKER_STORE_INT_H
#define SW_WORKER_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "worker/store_types.h"

/* Bound on requests in flight per store (accepted and not yet completed,
 * including deferred completions). At the bound sw_store_acquire_load,
 * sw_store_commit, sw_store_read, sw_store_presence, sw_store_read_log
 * and sw_store_release return SW_ENOMEM (the other calls are counted but
 * not refused). */
#define SW_STORE_MAX_INFLIGHT 65536

/* Most shared writes in one commit (more: SW_EINVAL). */
#define SW_STORE_MAX_SHARED 8

/* Most members in one sw_store_presence call (more: SW_EINVAL). */
#define SW_STORE_MAX_PRESENCE_MEMBERS 4096

/* Most tokens in one call of the live op: sw_store_live splits longer
 * lists (one bounded script call each). */
#define SW_STORE_LIVE_BATCH 1000

/* Most subscriptions per store (more: SW_ENOMEM). */
#define SW_STORE_MAX_SUBS 65536

/* Longest token accepted in key names (bytes). */
#define SW_STORE_TOKEN_MAX 256

/* A backend. Every request op returns 0 when it accepted the request,
 * which then completes exactly once (see above; a fire-and-forget request
 * through sw_store_complete), or a negative SW_E* code and never
 * completes. Arguments are already checked, with the contracts of the
 * public calls (worker/store.h). */
typedef struct sw_store_ops {
    const char *kind; /* "redis" / "memory" */
    /* Release backend resources and free the store; pending requests must
     * complete with SW_EUNAVAIL before this returns (sw_store_base_destroy
     * delivers what is queued). */
    void (*destroy)(sw_store_t *s);
    int (*ready)(const sw_store_t *s);
    int (*acquire_load)(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);
    int (*commit)(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb, void *udata);
    int (*release)(sw_store_t *s, const char *token);
    int (*read)(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);
    int (*presence)(sw_store_t *s, const char *token, sw_presence_op_t op,
                    const char *const *members, size_t n, uint32_t ttl_ms, sw_store_count_cb cb,
                    void *udata);
    int (*read_log)(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                    sw_store_log_cb cb, void *udata);
    /* 1 <= n <= SW_STORE_LIVE_BATCH. */
    int (*live)(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                const char *const *sockids, size_t n, uint32_t ttl_ms);
    int (*publish_acked)(sw_store_t *s, const char *name, const char *data, size_t len,
                         sw_store_count_cb cb, void *udata);
    int (*reap)(sw_store_t *s, const char *holder);
    int (*secret)(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                  void *udata);
    /* Not requests (not counted in flight). */
    int (*publish)(sw_store_t *s, const char *name, const char *data, size_t len);
    int (*subscribe)(sw_store_t *s, const char *token, sw_store_message_cb on_message,
                     sw_store_resync_cb on_resync, void *udata);
    int (*unsubscribe)(sw_store_t *s, const char *token);
} sw_store_ops_t;

/* A completion waiting to be delivered from the loop (ev_idle). At most
 * one of run / load_cb / commit_cb / log_cb / value_cb is set; with none
 * set the item is a count completion (count_cb, which may be NULL). For a
 * load, `loaded` may point into `fields` and `blob`, which the item owns.
 * A log completion with status 0 has `count` entries: fields[i].data /
 * .len (NULL when missing), pointing into blob.
 *
 * `run` items are backend events (memory pub/sub messages, resync), not
 * requests: they are not counted in flight; run(s, d, 0) delivers,
 * run(s, d, 1) is called when the store is destroyed (no user callback
 * may run then; log completions are dropped then too). */
typedef struct sw_store_done {
    struct sw_store_done *next;
    void (*run)(sw_store_t *s, struct sw_store_done *d, int cancelled);
    sw_store_load_cb load_cb;
    sw_store_commit_cb commit_cb;
    sw_store_count_cb count_cb;
    sw_store_log_cb log_cb;
    sw_store_value_cb value_cb; /* value in blob/blob_len */
    void *udata;
    sw_store_loaded_t loaded; /* load result (loaded.status is the status) */
    int status;               /* commit / count / log / value status */
    int64_t count;            /* count result; log: the number of entries */
    sw_store_field_t *fields; /* owned, may be NULL */
    char *blob;               /* owned, may be NULL */
    size_t blob_len;
    char *name;  /* owned, may be NULL (run items: the shared token) */
    uint64_t id; /* run items: the subscription id */
} sw_store_done_t;

/* The common head of every backend's store struct (first member). */
struct sw_store {
    const sw_store_ops_t *ops;
    struct ev_loop *loop;
    char *holder; /* lease holder id, owned */
    size_t holder_len;
    uint32_t token_ttl_s;
    uint32_t lease_ms;
    uint32_t log_max;
    size_t inflight; /* accepted requests not yet completed (see above) */
    int closing;     /* sw_store_free began: every call is refused */
    ev_idle defer_w; /* delivers the done queue */
    sw_store_done_t *done_head;
    sw_store_done_t *done_tail;
};

/* Initialise the base: copies holder_id, takes the defaults for zero
 * opts fields (TTL 3600 s, lease 10000 ms, log 256). */
void sw_store_base_init(sw_store_t *s, const sw_store_ops_t *ops, struct ev_loop *loop,
                        const sw_store_opts_t *opts);
/* Deliver every queued completion with SW_EUNAVAIL (load results emptied;
 * run items cancelled, log completions dropped) and free the holder id. */
void sw_store_base_destroy(sw_store_t *s);

/* Queue a completion (allocated with sw_xcalloc, filled by the caller);
 * the store takes ownership and delivers it from the loop. */
void sw_store_defer(sw_store_t *s, sw_store_done_t *d);
/* Shorthands: queue a load (empty result), commit, count, or log (no
 * entries) completion with `status`. */
void sw_store_defer_load(sw_store_t *s, sw_store_load_cb cb, void *udata, int status);
void sw_store_defer_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status);
void sw_store_defer_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                          int64_t count);
void sw_store_defer_log(sw_store_t *s, sw_store_log_cb cb, void *udata, int status);

/* Complete a request now (from a backend's own loop callback, never
 * inside the call that made it, except for sw_store_complete): uncounts
 * it and calls cb. */
void sw_store_complete(sw_store_t *s); /* a request without a callback */
void sw_store_complete_load(sw_store_t *s, sw_store_load_cb cb, void *udata,
                            const sw_store_loaded_t *res);
void sw_store_complete_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status);
/* cb may be NULL (the request is still counted as done). */
void sw_store_complete_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                             int64_t count);
void sw_store_complete_log(sw_store_t *s, sw_store_log_cb cb, void *udata, int status,
                           const char *const *entries, const size_t *lens, size_t n);
void sw_store_complete_value(sw_store_t *s, sw_store_value_cb cb, void *udata, int status,
                             const char *value, size_t len);

/* Split a token hash's raw fields (every field of sw:{T}) into a load
 * result: "_seq" parsed into res->seq, "_meta" into res->meta, the rest
 * copied (as borrowed views) into `out`, which must have room for nraw
 * entries. Sets status 0 and exists = (nraw > 0). */
void sw_store_loaded_fill(sw_store_loaded_t *res, const sw_store_field_t *raw, size_t nraw,
                          sw_store_field_t *out);

/* 1 when the field is named `name` (a NUL-terminated string). */
int sw_store_field_is(const sw_store_field_t *f, const char *name);

#endif
