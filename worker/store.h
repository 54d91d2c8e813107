/* store.h — where token state lives: Redis (production) or process memory
 * (development mode, one worker).
 *
 * Key layout (docs/design.md §4), with a hash tag so one token's keys share one
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
 * leases; expiry is checked on access and swept every 10 s.
 *
 * Layout (calls run down this list only):
 *   store.c          this interface: argument checks, the in-flight
 *                    count and its bound, dispatch to a backend through
 *                    its ops table
 *   store_redis.c    the Redis backend: requests and their replies
 *   store_sub.c      its subscriptions (the pub/sub connection)
 *   store_link.c     one reconnecting Redis connection (each of the two)
 *   store_script.c   the Lua scripts (lua/NAME.lua, embedded at build
 *                    time) and their SHA1s
 *   store_mem.c      the in-memory backend
 *   store_base.c     what every backend shares (worker/store_int.h): the
 *                    common head of a store, the completion queue
 *   store_types.h    the options, results and callback types */
#ifndef SW_WORKER_STORE_H
#define SW_WORKER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "worker/store_types.h" /* the options, results and callbacks */

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
 * this returns. Those callbacks may still call the store: from here on
 * every call is refused (SW_EUNAVAIL; sw_store_unsubscribe SW_ENOTFOUND;
 * sw_store_ready 0). Must not be called from inside a store callback.
 * NULL is a no-op. */
void sw_store_free(sw_store_t *s);

/* 1 when the store can take requests and deliver messages now: memory;
 * or Redis has answered on the command connection and, while anything is
 * subscribed, on the pub/sub connection, and neither has been lost or
 * left a command unanswered past the reply timeout since
 * (worker/store_link.h). */
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

/* Subscribe to shared token R's channel. One subscription per R per store
 * (SW_EBUSY if there is one). on_resync may be NULL. At most 65536
 * subscriptions per store (then SW_ENOMEM). 0, SW_EINVAL, SW_EBUSY,
 * SW_ENOMEM. sw_store_free drops every subscription without calling it. */
int sw_store_subscribe(sw_store_t *s, const char *shared_token, sw_store_message_cb on_message,
                       sw_store_resync_cb on_resync, void *udata);

/* Drop the subscription; no callback of it runs afterwards. 0 or
 * SW_ENOTFOUND. */
int sw_store_unsubscribe(sw_store_t *s, const char *shared_token);

/* Read the replay log (HMGET of the "_log:" ring fields). last - first + 1
 * must be at most log_max (SW_EINVAL otherwise). */
int sw_store_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                      sw_store_log_cb cb, void *udata);

/* The live-connection key sw:{T}:live (fire and forget, one script call
 * for n tokens): SET writes sockid with PX ttl_ms; REFRESH extends it and
 * DROP deletes it, each only while it still holds that sockid (a newer
 * connection's key is left alone). 0, SW_EINVAL, SW_EUNAVAIL. */
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
int sw_store_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                    void *udata);

/* Release the lease if it is still ours (compare-and-delete script);
 * fire and forget. Returns 0, SW_EINVAL, or SW_EUNAVAIL while Redis is
 * down (the lease then simply expires). */
int sw_store_release(sw_store_t *s, const char *token);

#endif
