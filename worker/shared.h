/* shared.h — the worker's view of the shared tokens (rooms) its clients are
 * linked to: a copy of each shared token's stored vars kept current from
 * its pub/sub channel, presence, and the local write slot.
 *
 * Writes to shared state need no second lease: the commit script compares
 * the shared token's "_seq" with the seq the change was computed from and
 * publishes the change on sw:{R}:ch in the same script (store.h). So:
 *  - messages on the channel follow commit order; this worker applies them
 *    to its copy in seq order (a gap, or a (re)subscription, makes it
 *    reread the copy) and then lets every local linked token catch up;
 *  - only one local event at a time holds a shared token's write slot, so
 *    compare-and-set conflicts come only from other workers and hosts; a
 *    conflict rereads the copy and reruns the event;
 *  - presence: local connected linked tokens are refreshed every ttl/3; a
 *    dead worker's entries expire after ttl (cfg->presence_ttl_ms) and any
 *    worker still linked reaps them; every change of the count is
 *    published and reaches every linked client.
 *
 * A sw_shared_t lives while a local token is linked to it. */
#ifndef SW_WORKER_SHARED_H
#define SW_WORKER_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include <sys/queue.h>

#include <ev.h>
#include <jansson.h>
#include <uthash.h>

#include "worker/store.h"

typedef struct sw_worker sw_worker_t;
typedef struct sw_token sw_token_t;

#define SW_SHARED_TOKEN_MAX 64

/* Views of a shared token kept for clients whose tree lags (group
 * fan-out): a client that fell further behind than this gets a full
 * delta when its tree is next folded. */
#define SW_SHARED_SNAPS 8

typedef struct sw_shared {
    UT_hash_handle hh;
    char token[SW_SHARED_TOKEN_MAX + 1];
    sw_worker_t *w;
    json_t *vars;     /* {state: {var: value}} the shared copy; NULL until read */
    uint64_t seq;     /* the shared token's "_seq" that vars reflect */
    int synced;       /* vars are current (read done, no gap since) */
    int reading;      /* a read is in flight */
    int read_failing; /* the last read failed (logged once per streak) */
    int subscribed;
    int committing;      /* the slot holder's commit is in flight */
    json_t *buffered;    /* messages that arrived while reading/committing */
    int64_t presence;    /* live presence count; -1 until known */
    sw_token_t **tokens; /* local tokens linked to it */
    size_t ntokens, captokens;
    sw_token_t *slot;     /* holder of the local write slot */
    sw_token_t **waiters; /* tokens waiting for the slot (FIFO) */
    size_t nwaiters, capwaiters;
    sw_token_t **syncwait; /* tokens waiting for vars to be current */
    size_t nsyncwait, capsyncwait;
    sw_token_t **syncfail; /* waiters a failed read resumed: told once */
    size_t nsyncfail, capsyncfail;
    ev_timer heartbeat_w;
    ev_timer presence_w; /* coalesces presence changes (SW_PRESENCE_COALESCE_MS) */
    int catchup_queued;  /* in w->catchups: linked tokens catch up this iteration */
    LIST_ENTRY(sw_shared) catchup_link;
    /* The views group fan-out sent (sw_shared_snapshot), newest last. */
    struct sw_shared_snap {
        uint64_t seq;
        int64_t presence;
        json_t *vars; /* {state: {var: value}}, owned (state objects copied) */
    } snaps[SW_SHARED_SNAPS];
    unsigned nsnaps;
} sw_shared_t;

/* What shared.c asks of the tokens linked to a room: the token module
 * installs these in the worker context (w->shared_hooks, sw_token_init)
 * so that shared.c calls no function of it. Every pointer is an opaque
 * client token of this worker. shared.c only marks the rooms whose copy
 * changed (sw_shared_take_changed); the token pipeline's fan-out drains
 * them. */
typedef struct sw_shared_hooks {
    /* What t waited for (the write slot, a current copy) is there. */
    void (*resume)(sw_token_t *t);
    /* t's name (borrowed), and whether it has connected clients here
     * (presence is refreshed for those). */
    const char *(*name)(const sw_token_t *t);
    int (*connected)(const sw_token_t *t);
} sw_shared_hooks_t;

/* Presence changes reach clients at most this often per shared token: a
 * wave of joins (N clients entering a room) costs O(N) deltas per window
 * instead of O(N^2). Shared-var changes are not delayed; they are only
 * coalesced within one loop iteration. */
#define SW_PRESENCE_COALESCE_MS 100

/* Find or create the worker's record of shared token `name`. */
sw_shared_t *sw_shared_get(sw_worker_t *w, const char *name);

/* Token t is linked to r (idempotent): subscribes on the first one. */
void sw_shared_link(sw_shared_t *r, sw_token_t *t);

/* Token t is no longer linked to r: drops it from every list (releasing
 * the slot if it holds it); the last one unsubscribes and frees r from the
 * worker's gc step. */
void sw_shared_unlink(sw_shared_t *r, sw_token_t *t);

/* Make sure r's vars are current for t. Returns 1 when they are, 0 when
 * t must wait (the resume hook is called later), or SW_EUNAVAIL when t
 * was waiting for a read that failed, or the store refuses a read at once
 * (the event should fail with state_unavailable). A later call for t
 * reads again. A room left out of date by a failed read is read again at
 * its next presence heartbeat while tokens are linked to it. */
int sw_shared_want_sync(sw_shared_t *r, sw_token_t *t);

/* Take the write slot for t, and current vars. 1 ready, 0 wait (resumed
 * later), SW_EUNAVAIL. */
int sw_shared_want_slot(sw_shared_t *r, sw_token_t *t);

/* Give the slot back (no-op if t does not hold it). */
void sw_shared_release_slot(sw_shared_t *r, sw_token_t *t);

/* The slot holder is committing a change of r computed from r->seq;
 * messages are buffered until sw_shared_commit_end(). */
void sw_shared_commit_begin(sw_shared_t *r);

/* The commit ended. status 0: it wrote shared seq `seq`; `changed`
 * ({state: {var: value}}, borrowed) is applied to the copy when the copy
 * was exactly at seq - 1 (else the copy is reread). SW_ECONFLICT or
 * failure: the copy is marked stale (reread on next use). */
void sw_shared_commit_end(sw_shared_t *r, int status, const json_t *changed, uint64_t seq);

/* The fan-out message published by a commit of r at `seq` with the
 * changed stored vars ({state: {var: value}}). New reference. */
json_t *sw_shared_message(uint64_t seq, const json_t *changed);

/* Presence op for one token (cb-less; the count comes back by message). */
void sw_shared_presence(sw_shared_t *r, sw_token_t *t, sw_presence_op_t op);

/* Remember r's current vars as the view sent at (r->seq, presence), for
 * tokens whose tree lags it (group fan-out). Keeps the last
 * SW_SHARED_SNAPS views; the oldest is dropped. No-op when that view is
 * kept already. r must be synced. */
void sw_shared_snapshot(sw_shared_t *r, int64_t presence);

/* The vars ({state: {var: value}}, borrowed) of the view at (seq,
 * presence), or NULL when it is not kept. */
const json_t *sw_shared_snapshot_find(const sw_shared_t *r, uint64_t seq, int64_t presence);

/* The next shared token whose copy or presence changed during this loop
 * iteration, taken off the worker's list (w->catchups), or NULL when
 * none is left. Its linked tokens are r->tokens[0..r->ntokens). The
 * fan-out step (sw_token_run_catchups) drains the list every iteration. */
sw_shared_t *sw_shared_take_changed(sw_worker_t *w);

/* Free every record (worker exit). */
void sw_shared_free_all(sw_worker_t *w);

/* Free records with no linked token (gc step). */
void sw_shared_gc(sw_worker_t *w);

#endif
