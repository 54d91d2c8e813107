/* token.h — one client token in a worker: its FIFO event queue and the
 * event pipeline (lease + load, run the handler, fenced commit, deliver).
 *
 * One event in flight per token, in arrival order; tokens run
 * concurrently; nothing blocks the loop (every store call is async).
 *
 * Processing one event:
 *   1. acquire the lease and load the state (one round trip,
 *      sw_store_acquire_load); a lease held elsewhere is retried with
 *      backoff for up to lease_ms + 1 s, then the event fails with
 *      state_unavailable;
 *   2. if the store's seq is ahead of what a client holds (its state
 *      changed behind its back), that client first gets a full delta;
 *   3. run the handler step (worker/runtime.h);
 *   4. commit the dirty states, seq + 1 and the replay-log entry in one
 *      fenced script (releasing the lease unless the handler yielded);
 *   5. only then send the delta: with `id` to the client that sent the
 *      event, without `id` to other clients of the same token.
 * A commit refused because the lease was lost (expired, stolen) is logged
 * and the event is retried once from fresh state; Redis out of reach
 * answers state_unavailable (retryable) and drops the cached state.
 *
 * Bounds: at most cfg->max_queue events queued per token; past it the
 * event is answered rate_limited at once and not queued.
 *
 * A token sees its clients as peers (worker/peer.h) and the rest of the
 * worker through its context (worker/wctx.h); rooms reach it through the
 * hooks it installs (sw_token_init). struct sw_token is private to the
 * pipeline's files, which share worker/token_int.h. From the top down:
 *   pipeline.c  the runner: it calls the stage of the event in flight,
 *               acts on the verdict the stage returns (go on, parked,
 *               retry later, done, fail) and alone finishes or fails
 *               events; its entries: enqueue, store completions, timers,
 *               resumes of waiting tokens. Stages of its own: start (the
 *               oplock), lease and load, prepare, delivery after commit.
 *   hello.c     hello, resume, the welcome, duplicate tabs.
 *   commit.c    a handler step, a hydrate, the fenced commit and what its
 *               result means.
 *   links.c     links to shared tokens, presence, the link ops of a step.
 *   fanout.c    delivery to peers, folding shared changes, group fan-out.
 *   lease.c     the oplock between events.
 *   token.c     the registry: get, free, gc; peers attach and detach;
 *               cancel; the resume list. It starts nothing.
 *   flight.c    events, the in-flight record, the cached state.
 * A stage never calls the runner: the completions of the requests it
 * sends are the runner's (sw_tok__done). */
#ifndef SW_WORKER_TOKEN_H
#define SW_WORKER_TOKEN_H

#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>
#include <jansson.h>
#include <uthash.h>

#include "proto/msg.h"
#include "worker/runtime.h"
#include "worker/peer.h"
#include "worker/store.h"

typedef enum {
    SW_EV_HELLO = 1, /* read the seq, answer welcome */
    SW_EV_HYDRATE,   /* full state + on_load */
    SW_EV_CLIENT,    /* a client event (answered with its id) */
    SW_EV_CHAINED,   /* queued by a handler (sw_ctx_chain) or on_load */
    SW_EV_TASK_STEP, /* one step of a background task */
} sw_event_src_t;

typedef struct sw_token sw_token_t;
typedef struct sw_worker sw_worker_t;
typedef struct sw_task sw_task_t;
typedef struct sw_shared sw_shared_t;

/* What a HELLO claims of the connection it resumes, judged against the
 * token's stored connection record when the HELLO runs (it needs the
 * token's state). */
typedef struct sw_resume {
    /* 0: the client's credentials (conn_id, conn_token); 1: an
     * EventSource reconnecting by itself (Last-Event-ID, no credentials):
     * a resume only when the token's last connection was a stream and
     * none is live now. */
    int bare_sse;
    char conn_id[SW_CONN_ID_MAX + 1];
    char conn_token[SW_CONN_ID_MAX + 1];
    uint64_t last_seq; /* the last delta seq the client holds */
} sw_resume_t;

typedef struct sw_event {
    TAILQ_ENTRY(sw_event) link;
    sw_event_src_t kind;
    int64_t id;          /* client event id, -1 if none */
    sw_peer_t *origin;   /* who gets the answer; NULL once it closed */
    char *name;          /* owned */
    json_t *payload;     /* owned, never NULL */
    json_t *router;      /* owned, may be NULL */
    sw_resume_t *resume; /* SW_EV_HELLO: what it resumes, owned; NULL: a fresh connection */
    sw_task_t *task;     /* SW_EV_TASK_STEP */
    unsigned step;       /* handler step (yields so far) */
    int retried;         /* lease-lost retry done */
    int cancelled;       /* the client cancelled it while it ran: no next step */
    unsigned conflicts;  /* shared-state compare-and-set retries */
    uint64_t t0_ns;      /* sw_now_ns() at arrival (event duration metric) */
} sw_event_t;

TAILQ_HEAD(sw_event_queue, sw_event);
LIST_HEAD(sw_peer_list, sw_peer);

/* Find the token in this worker, or create it (empty queue, no state
 * loaded). Never NULL. */
sw_token_t *sw_token_get(sw_worker_t *w, const char *token);

/* Queue an event (takes ownership of ev) and start the pipeline if idle.
 * Past cfg->max_queue the event is answered rate_limited and freed. */
void sw_token_enqueue(sw_token_t *t, sw_event_t *ev);

/* A new event; name copied, payload/router stolen (payload NULL = {}). */
sw_event_t *sw_event_new(sw_event_src_t kind, int64_t id, sw_peer_t *origin, const char *name,
                         json_t *payload, json_t *router);
void sw_event_free(sw_event_t *ev);

/* A HELLO of peer `origin`, resuming *resume (copied) or, NULL, fresh. */
sw_event_t *sw_event_new_hello(sw_peer_t *origin, const sw_resume_t *resume);

/* Cancel event `id` of session s (PROTOCOL-CORE "Cancelling an event"):
 * queued, it is removed and answered cancelled; running (a handler that
 * yields), it stops before its next step and is answered cancelled (what
 * its committed steps wrote stays); otherwise (unknown, or already
 * answered) nothing happens. */
void sw_token_cancel(sw_token_t *t, sw_peer_t *p, int64_t id);

/* Attach / detach a session (detach clears it from queued events). */
void sw_token_attach(sw_token_t *t, sw_peer_t *p);
void sw_token_detach(sw_token_t *t, sw_peer_t *p);

/* The token's name (borrowed, lives as long as the token). */
const char *sw_token_name(const sw_token_t *t);

/* 1 when nothing is queued or in flight. */
int sw_token_idle(const sw_token_t *t);

/* Install the token module's hooks for shared.c in the worker context
 * (w->shared_hooks: resume, name, connected).
 * Call once before any token is linked. */
void sw_token_init(sw_worker_t *w);

/* Free tokens with no peers, no tasks and nothing queued. Called from
 * the worker's gc step. */
void sw_token_gc(sw_worker_t *w);

/* The fan-out step (the worker's per-iteration step): for every shared
 * token whose copy or presence changed during this iteration
 * (sw_shared_take_changed), its linked tokens' clients catch up, now or
 * after their current event. When sw_appdef_fanout_needs_private() == 0,
 * tokens whose every shared state is linked to that room and whose
 * clients hold the same view of it get one delta, computed and encoded
 * once (only the seq prefix differs per client); other tokens catch up
 * one by one. */
void sw_token_run_catchups(sw_worker_t *w);

/* What the current event waited for (a shared token's write slot or its
 * copy) is there: continue it from the worker's resume step. */
void sw_token_resume(sw_token_t *t);

/* Run the queued resumes (worker's resume step). */
void sw_token_run_resumes(sw_worker_t *w);

/* Oplock upkeep, called periodically: give up the leases of tokens idle
 * for `idle_ms`, or whose lease would run out before the next call. */
void sw_token_sweep_leases(sw_worker_t *w, uint64_t idle_ms);

/* Another worker asks for this token's lease (inbox message): release it
 * now if idle, else after the event in flight. */
void sw_token_lease_wanted(sw_worker_t *w, const char *token);

/* Close the local session `sockid` of `token` (a resumed connection
 * replaced it elsewhere); no-op when it is not here. */
void sw_token_close_socket(sw_worker_t *w, const char *token, const char *sockid);

/* How many tokens of this worker believe they hold their lease (the
 * leases_held gauge). */
size_t sw_token_leases_held(sw_worker_t *w);

/* 1 when some token of this worker waits for a store answer (a drain
 * waits for it before the worker exits). */
int sw_token_any_pending(sw_worker_t *w);

/* Free every token (worker exit). */
void sw_token_free_all(sw_worker_t *w);

#endif
