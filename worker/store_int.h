/* store_int.h — what the store backends (store_redis.c, store_mem.c) share
 * with the front end (store.c): the backend vtable, the common base of a
 * store, and the deferred-completion queue.
 *
 * Internal to worker/store*.c; nothing else includes it. */
#ifndef SW_WORKER_STORE_INT_H
#define SW_WORKER_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "worker/store.h"

/* Bound on requests in flight per store (sent and not yet completed,
 * including deferred completions). At the bound sw_store_acquire_load,
 * sw_store_commit, sw_store_read, sw_store_presence and sw_store_release
 * return SW_ENOMEM. */
#define SW_STORE_MAX_INFLIGHT 65536

/* Most shared writes in one commit (more: SW_EINVAL). */
#define SW_STORE_MAX_SHARED 8

/* Most members in one sw_store_presence call (more: SW_EINVAL). */
#define SW_STORE_MAX_PRESENCE_MEMBERS 4096

/* Most subscriptions per store (more: SW_ENOMEM). */
#define SW_STORE_MAX_SUBS 65536

/* Longest token accepted in key names (bytes). */
#define SW_STORE_TOKEN_MAX 256

typedef struct sw_store_ops {
    const char *kind; /* "redis" / "memory" */
    /* Release backend resources; pending requests must complete (through
     * sw_store_complete_*) with SW_EUNAVAIL before this returns. The base
     * is destroyed by store.c afterwards. */
    void (*destroy)(sw_store_t *s);
    int (*ready)(const sw_store_t *s);
    /* Same contracts as the public calls; arguments already validated. */
    int (*acquire_load)(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);
    int (*commit)(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb, void *udata);
    int (*release)(sw_store_t *s, const char *token);
    int (*read)(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata);
    int (*presence)(sw_store_t *s, const char *token, sw_presence_op_t op,
                    const char *const *members, size_t n, uint32_t ttl_ms, sw_store_count_cb cb,
                    void *udata);
    /* subscribe: the token has no subscription in this store (checked). */
    int (*subscribe)(sw_store_t *s, const char *token, sw_store_message_cb on_message,
                     sw_store_resync_cb on_resync, void *udata);
    int (*unsubscribe)(sw_store_t *s, const char *token);
    int (*publish)(sw_store_t *s, const char *name, const char *data, size_t len);
    int (*read_log)(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                    sw_store_log_cb cb, void *udata);
    int (*live)(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                const char *const *sockids, size_t n, uint32_t ttl_ms);
    int (*publish_acked)(sw_store_t *s, const char *name, const char *data, size_t len,
                         sw_store_count_cb cb, void *udata);
    int (*reap)(sw_store_t *s, const char *holder);
    int (*secret)(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                  void *udata);
} sw_store_ops_t;

/* A completion waiting to be delivered from the loop (ev_idle). At most
 * one of run / load_cb / commit_cb is set; with none set the item is a
 * count completion (count_cb, which may be NULL). For a load, `loaded` may
 * point into `fields` and `blob`, which the item owns.
 *
 * `run` items are backend events (memory pub/sub messages, resync), not
 * requests: they are not counted in `inflight`; run(s, d, 0) delivers,
 * run(s, d, 1) is called when the store is destroyed (no user callback
 * may run then). */
typedef struct sw_store_done {
    struct sw_store_done *next;
    void (*run)(sw_store_t *s, struct sw_store_done *d, int cancelled);
    sw_store_load_cb load_cb;
    sw_store_commit_cb commit_cb;
    sw_store_count_cb count_cb;
    sw_store_log_cb log_cb;     /* run items of read_log */
    sw_store_value_cb value_cb; /* value in blob/blob_len */
    void *udata;
    sw_store_loaded_t loaded; /* load result (loaded.status is the status) */
    int status;               /* commit / count status */
    int64_t count;            /* count result */
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
    size_t inflight; /* accepted requests not yet completed */
    ev_idle defer_w; /* delivers the done queue */
    sw_store_done_t *done_head;
    sw_store_done_t *done_tail;
};

/* Backend constructors (store.c parsed the URL and filled `base`
 * defaults through sw_store_base_init). */
sw_store_t *sw_store_redis_new(struct ev_loop *loop, const sw_store_opts_t *opts, const char *host,
                               int port, int db);
sw_store_t *sw_store_mem_new(struct ev_loop *loop, const sw_store_opts_t *opts);

/* Initialise / destroy the base. destroy delivers every queued completion
 * with SW_EUNAVAIL (load results emptied). */
void sw_store_base_init(sw_store_t *s, const sw_store_ops_t *ops, struct ev_loop *loop,
                        const sw_store_opts_t *opts);
void sw_store_base_destroy(sw_store_t *s);

/* Queue a completion (allocated with sw_xcalloc, filled by the caller);
 * the store takes ownership and delivers it from the loop. */
void sw_store_defer(sw_store_t *s, sw_store_done_t *d);
/* Shorthands: queue a load (empty result) or commit completion with
 * `status`. */
void sw_store_defer_load(sw_store_t *s, sw_store_load_cb cb, void *udata, int status);
void sw_store_defer_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status);
void sw_store_defer_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                          int64_t count);

/* Deliver a completion now (from a backend's own loop callback): counts
 * the request as done and calls cb. */
void sw_store_complete_load(sw_store_t *s, sw_store_load_cb cb, void *udata,
                            const sw_store_loaded_t *res);
void sw_store_complete_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status);
/* cb may be NULL (the request is still counted as done). */
void sw_store_complete_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                             int64_t count);

/* Split a token hash's raw fields (every field of sw:{T}) into a load
 * result: "_seq" parsed into res->seq, "_meta" into res->meta, the rest
 * copied (as borrowed views) into `out`, which must have room for nraw
 * entries. Sets status 0 and exists = (nraw > 0). */
void sw_store_loaded_fill(sw_store_loaded_t *res, const sw_store_field_t *raw, size_t nraw,
                          sw_store_field_t *out);

#endif
