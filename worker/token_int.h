/* token_int.h — the inside of the token pipeline, shared by its files
 * (pipeline.c, hello.c, commit.c, links.c, fanout.c, lease.c, token.c,
 * flight.c; token.h gives their order, top down) and by nothing else:
 * struct sw_token, what only the event in flight needs, the phases and
 * verdicts of the runner, and the functions one file calls in another
 * (prefixed sw_tok__). The pipeline's contract with the rest of the
 * worker is in token.h. */
#ifndef SW_WORKER_TOKEN_INT_H
#define SW_WORKER_TOKEN_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>
#include <jansson.h>
#include <uthash.h>

#include "worker/peer.h"
#include "worker/runtime.h"
#include "worker/shared.h"
#include "worker/store.h"
#include "worker/token.h"
#include "worker/wctx.h"

struct sw_task {
    LIST_ENTRY(sw_task) link;
    sw_token_t *tok;
    char *name;
    json_t *payload;
    unsigned step;
    ev_timer timer;
};
LIST_HEAD(sw_task_list, sw_task);

/* Most shared tokens one client token can be linked to at once. */
#define SW_MAX_TOKEN_SHARED 8

/* One shared token this token is linked to (by one or more states). */
typedef struct sw_tlink {
    sw_shared_t *r;
    uint64_t applied_seq;  /* the shared seq the client view reflects */
    int64_t presence_seen; /* the presence count the client view reflects */
    /* Group fan-out (sw_token_run_catchups) sent the clients the shared
     * view at sent_seq/sent_presence without folding it into the tree: the
     * tree lags the client view until the next fold. */
    int lag;
    uint64_t sent_seq;
    int64_t sent_presence;
} sw_tlink_t;

/* Where the event in flight is: the stage the runner (pipeline.c) calls
 * next. Each stage returns a verdict and, when it says SW_V_NEXT, has set
 * the phase to go on with. */
typedef enum sw_phase {
    SW_PH_START = 0, /* the oplock: prepare at once, or load first */
    SW_PH_LOAD,      /* take the lease and load (completion: on_loaded) */
    SW_PH_PREPARE,   /* shared write slots and copies; a hello's resume */
    SW_PH_RUN,       /* by kind: hello, hydrate, or the handler's first step */
    SW_PH_STEP,      /* one handler step and its commit */
    SW_PH_COMMITTED, /* what the commit's result means */
    SW_PH_WELCOME,   /* a hello's commit is stored: welcome, resume sync */
    SW_PH_LINK,      /* the step's link/unlink ops, once committed */
    SW_PH_AFTER,     /* deliver, chain, then the next step or done */
} sw_phase_t;

/* What a stage says of the event in flight. The runner alone acts on it:
 * it calls the next stage, waits, arms the retry timer, answers a failure
 * and finishes the event. No stage finishes or fails an event itself. */
typedef enum sw_verdict {
    SW_V_NEXT = 0, /* go on with the stage in flight->phase */
    SW_V_PARKED,   /* a request or a wait is outstanding: its completion
                      (a store callback, or a resume of a waiting token)
                      calls the runner again */
    SW_V_LATER,    /* go on at flight->phase after flight->retry_ms */
    SW_V_DONE,     /* the event is answered: finish it */
    SW_V_FAIL,     /* answer flight->fail_code/fail_msg, then finish */
} sw_verdict_t;

/* The store completions of the pipeline's requests, installed by the
 * runner (sw_token_init): a stage that sends a commit or reads the replay
 * log gives the store these, so the runner goes on from there without the
 * stage calling up into it. udata is the sw_token_t. */
typedef struct sw_tok_completions {
    sw_store_commit_cb committed;
    sw_store_log_cb replayed;
} sw_tok_completions_t;

extern sw_tok_completions_t sw_tok__done;

/* What only the event in flight needs, from its start to its finish: kept out of sw_token_t so that
 * an idle token stays small. Made when an event starts and recycled when it finishes through a free
 * list of at most SW_INFLIGHT_POOL entries (token.c; past it they are freed), so steady-state
 * events do not allocate it. */
typedef struct sw_inflight {
    /* The step being committed (owned while have_step). */
    sw_step_t step;
    int have_step;
    json_t *acc; /* delta being committed: {state: {var: v}} */
    uint64_t commit_seq;
    int commit_release;
    int commit_renew;
    int commit_refresh;
    uint64_t commit_sent_ms;
    int commit_full;       /* hydrate: the answer is a full delta */
    int hello_resume;      /* HELLO: SW_HELLO_* */
    json_t *new_links;     /* links after this step's link ops, or NULL */
    size_t link_idx;       /* progress through the step's link ops */
    uint64_t load_sent_ms; /* when the acquire was sent */
    uint64_t busy_since_ms;
    uint32_t busy_delay_ms;
    uint64_t asked_ms;                        /* when this busy streak last asked the holder */
    sw_phase_t phase;                         /* the stage the runner calls next */
    uint32_t retry_ms;                        /* SW_V_LATER: the delay */
    int commit_status;                        /* the commit's result (0 or SW_E*) */
    int commit_via_store;                     /* 0: nothing was written (no request) */
    sw_errc_t fail_code;                      /* SW_V_FAIL: the answer */
    char *fail_msg;                           /* heap, or NULL */
    sw_shared_t *writes[SW_MAX_TOKEN_SHARED]; /* shared tokens in the commit */
    json_t *write_changed[SW_MAX_TOKEN_SHARED];
    uint64_t write_seq[SW_MAX_TOKEN_SHARED]; /* the shared seq each write makes */
    size_t nwrites;
} sw_inflight_t;

/* What a HELLO's resume is, as judged against the token's stored record. */
enum {
    SW_HELLO_FRESH = 0,    /* no resume */
    SW_HELLO_RESUME = 1,   /* valid credentials (or an allowed bare SSE reconnect) */
    SW_HELLO_REFUSED = -1, /* credentials that do not match: bad_resume */
    SW_HELLO_BARE_SSE = 2, /* an EventSource's own reconnect (Last-Event-ID, no
                              credentials): a resume only when the token's last
                              connection was a stream and none is live now */
};

/* Recycled sw_inflight_t kept per worker (past it they are freed). */
#define SW_INFLIGHT_POOL 64

struct sw_token {
    UT_hash_handle hh;
    char token[SW_TOKEN_MAX + 1];
    sw_worker_t *w;
    struct sw_event_queue queue;
    uint32_t qlen;
    uint32_t npeers;
    sw_event_t *current;   /* in flight, or NULL */
    sw_inflight_t *flight; /* non-NULL while an event is in flight */
    sw_tree_t tree;
    uint64_t seq;              /* the store's seq, as of the last load/commit */
    struct sw_peer_list peers; /* its clients on this worker */
    struct sw_task_list tasks;
    ev_timer retry_w;          /* SW_V_LATER: lease busy backoff, conflict step-aside */
    uint64_t lease_until_ms;   /* our estimate of the lease's end (monotonic) */
    uint64_t last_active_ms;   /* last event start or end: idle release */
    uint64_t ttl_refreshed_ms; /* last commit that refreshed the hash TTL */
    /* Shared state. The tree, kept while the token has peers, is the
     * client view: what its clients have been sent. */
    sw_tlink_t *tl;         /* [ntl], sorted by shared token name; heap, NULL when ntl == 0 */
    size_t ntl;             /* at most SW_MAX_TOKEN_SHARED */
    json_t *private_copies; /* {state: vars}: private copies of linked states, or NULL */
    /* As of the last load, kept with the tree (NULL when none or the tree
     * is dropped): the stored connection record {"id","kh"} (_conn), and
     * sw:{T}:live (a socket id, heap string). */
    json_t *conn_rec;
    char *live_seen;
    /* The user id the token is bound to (stored field _user), heap; NULL
     * while unbound. From the last load; a hello that binds sets it. */
    char *user;
    TAILQ_ENTRY(sw_token) resume_link;
    /* Flags. */
    unsigned have_tree : 1;       /* tree holds the state (and, with peers, their view) */
    unsigned exists : 1;          /* the token hash exists in the store */
    unsigned pending_store : 1;   /* a store callback is outstanding */
    unsigned lease_held : 1;      /* our lease is (believed) held */
    unsigned release_asked : 1;   /* another worker asked for the lease */
    unsigned running : 1;         /* the runner is on this token's stack */
    unsigned waiting : 1;         /* the current event is parked on a shared token's slot or copy */
    unsigned old_view : 1;        /* the tree was the client view before this load */
    unsigned catchup_pending : 1; /* shared changes arrived while busy */
    unsigned presence_on : 1;     /* presence entries added for the links */
    unsigned resume_queued : 1;   /* on the worker's resume list */
};

/* Internal events (chained, task steps) may use the queue up to this
 * multiple of max_queue: a handler's sw_ctx_chain fails past it; a task
 * step or on_load event that finds it full is dropped with a log line. */
#define SW_INTERNAL_QUEUE_FACTOR 2

/* Encoded fields of a commit, kept until the store has copied them, which
 * sw_store_commit does before returning. */
typedef struct commit_fields {
    sw_store_field_t f[64];
    sw_buf_t bufs[64];
    size_t n;
} commit_fields_t;

/* Shared writes of a commit, one per shared token. */
typedef struct shared_writes {
    sw_store_shared_write_t sw[SW_MAX_TOKEN_SHARED];
    commit_fields_t cf[SW_MAX_TOKEN_SHARED];
    char *msg[SW_MAX_TOKEN_SHARED];
    size_t n;
} shared_writes_t;

/* ---- events, the in-flight record, the cached state (flight.c) ----------- */

/* Drop the cached state, with what was read along with it (the next event
 * loads again). */
void sw_tok__drop_tree(sw_token_t *t);

/* Free what the in-flight record holds of the step being committed (the
 * step, the delta so far, the new links, the shared writes). */
void sw_tok__clear_step(sw_token_t *t);

/* Give the token an in-flight record (zeroed) unless it has one. */
void sw_tok__flight_get(sw_token_t *t);

/* Return the token's in-flight record (after sw_tok__clear_step) to the
 * pool. */
void sw_tok__flight_put(sw_token_t *t);

/* Free the pooled in-flight records (worker exit). */
void sw_tok__flight_pool_free(void);

/* Record the failure the runner answers (code, message copied) and return
 * SW_V_FAIL: `return sw_tok__fail(t, code, msg);` in a stage. */
sw_verdict_t sw_tok__fail(sw_token_t *t, sw_errc_t code, const char *msg);

/* t->private_copies, made if NULL (it stays NULL while nothing is linked). */
json_t *sw_tok__private_copies_make(sw_token_t *t);

/* A peer holds a state (it got a full delta): when the token's state is
 * gone from the store (expired), the server rehydrates first. */
int sw_tok__clients_hold_state(const sw_token_t *t);

/* Append ev to the queue without a bound check or a start (the caller
 * makes sure the token runs: sw_token_resume). Takes ownership. */
void sw_tok__push(sw_token_t *t, sw_event_t *ev);

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
void sw_tok__push_front_chained(sw_token_t *t, const sw_chained_t *chained, size_t n);

/* Stop and free a background task (its timer, name, payload). */
void sw_tok__task_free(sw_task_t *task);

/* Merge a step's delta into the event's: {state: {var: value}}. */
void sw_tok__merge_delta(json_t *acc, json_t *delta);

/* ---- the runner and its stages (pipeline.c) ------------------------------- */

/* Start the next queued event unless one is in flight or the runner is
 * already on this token's stack (it goes on there). */
void sw_tok__kick(sw_token_t *t);

/* Answer the event with an error (an internal event's error goes to every
 * welcomed peer of the token, without id). */
void sw_tok__answer_error(sw_token_t *t, sw_event_t *ev, sw_errc_t code, const char *msg);

/* ---- commits (commit.c) -------------------------------------------------- */

/* Send the fenced commit. seq 0 keeps the seq (no delta of the stream);
 * log_entry NULL writes no log entry. The lease is kept (the oplock)
 * unless `release` or sw_tok__keep_lease() says otherwise. Consumes cf and
 * ws. SW_V_PARKED: the commit is in flight, its completion
 * (sw_tok__done.committed) goes on at SW_PH_COMMITTED; SW_V_FAIL: the
 * store refused it (the cache is dropped). */
sw_verdict_t sw_tok__commit(sw_token_t *t, commit_fields_t *cf, shared_writes_t *ws, uint64_t seq,
                            const char *log_entry, size_t log_len, int release);

/* A commit that writes nothing: SW_PH_COMMITTED with a success that made
 * no request. Returns SW_V_NEXT. */
sw_verdict_t sw_tok__committed_now(sw_token_t *t);

/* Append one raw field (name borrowed: a string literal or a state name
 * that outlives the commit; bytes copied). 0, or SW_ETOOLARGE when cf is
 * full. */
int sw_tok__add_field(commit_fields_t *cf, const char *name, const void *data, size_t len);

/* hydrate: persist a brand-new token's defaults and the router, answer one
 * full delta, then run the route's on_load handlers as chained events. */
sw_verdict_t sw_tok__run_hydrate(sw_token_t *t);

/* Run one handler step of the current event and commit what it changed:
 * private states with the token's own seq and log (fenced by its lease),
 * linked states into their shared tokens (compare-and-set, published). */
sw_verdict_t sw_tok__run_step(sw_token_t *t);

/* SW_PH_COMMITTED: what the commit's result (flight->commit_status) means:
 * a compare-and-set conflict or a lost lease runs the event again from
 * fresh state (SW_PH_LOAD), another error fails it, a success goes on to
 * the welcome, the link ops or the delivery. */
sw_verdict_t sw_tok__committed(sw_token_t *t);

/* ---- links (links.c) ----------------------------------------------------- */

/* The link record of shared token `name`, or NULL. */
sw_tlink_t *sw_tok__tlink_find(sw_token_t *t, const char *name);

/* Drop link record l (presence `op` for it first, when presence is on). */
void sw_tok__tlink_remove(sw_token_t *t, sw_tlink_t *l, sw_presence_op_t op);

/* Make the link records match `links` ({state: shared token}). */
void sw_tok__sync_tlinks(sw_token_t *t, const json_t *links);

/* Presence `op` for the token in every shared token it is linked to. */
void sw_tok__presence_all(sw_token_t *t, sw_presence_op_t op);

/* Give back the write slot of every linked shared token. */
void sw_tok__release_slots(sw_token_t *t);

/* The links after applying the step's link ops, or NULL when unchanged. */
json_t *sw_tok__links_after(const sw_token_t *t, const sw_link_op_t *ops, size_t n);

/* SW_PH_LINK, after a successful commit: apply link/unlink ops to the
 * tree, then SW_PH_AFTER. SW_V_PARKED while a shared copy is read (the
 * token is resumed), SW_V_FAIL when it is out of reach. */
sw_verdict_t sw_tok__link_phase(sw_token_t *t);

/* ---- delivery and fan-out (fanout.c) ------------------------------------- */

/* Send a delta to the token's clients: with `id` to `origin`, without to
 * the others (origin_only: to origin alone). Peers not yet welcomed are
 * skipped (their welcome carries a seq at or after this one). */
void sw_tok__deliver(sw_token_t *t, sw_peer_t *origin, int64_t id, uint64_t seq,
                     const json_t *delta, const json_t *events, int full, int origin_only);

/* A client whose seq is behind the store's missed changes made elsewhere
 * (another worker or host, or a commit whose outcome was unknown): give it
 * the whole state before anything else. */
void sw_tok__resync_stale(sw_token_t *t, sw_peer_t *skip);

/* One full delta to peer s at the token's seq. */
void sw_tok__send_full(sw_token_t *t, sw_peer_t *s);

/* Fold the shared copies into the tree; what the clients did not have yet
 * goes into `delta`. `all` sends every var of the linked states (the tree
 * was not the client view). A link whose tree lags its clients' view
 * (group fan-out) first has the view they were sent folded in without a
 * delta; when that view is no longer kept, the clients get one full delta
 * instead. */
void sw_tok__fold_shared(sw_token_t *t, json_t *delta, int all);

/* Bring the clients up to date with the shared copies now (idle token). */
void sw_tok__do_catchup(sw_token_t *t);

/* ---- the lease (lease.c) ------------------------------------------------- */

/* Keep the lease between events (the oplock) unless someone asked for it,
 * the worker drains or stops, or nothing is cached to use it with. */
int sw_tok__keep_lease(const sw_token_t *t);

/* Give the lease back (compare-and-delete) if we hold it. */
void sw_tok__release_lease(sw_token_t *t);

/* ---- hello and resume (hello.c) ------------------------------------------ */

/* Does the HELLO's resume match the stored connection record? Compared in
 * constant time; the conn_token itself is never stored or logged. */
int sw_tok__resume_valid(const sw_token_t *t, const sw_resume_t *resume);

/* SW_PH_RUN of a HELLO: a valid resume is the same connection coming
 * back; a fresh one stores its credentials (SW_V_PARKED on the commit,
 * then SW_PH_WELCOME); a client that may not use this token, or a second
 * live connection without valid credentials, moves to a new token
 * (SW_V_DONE; hello.c says more). */
sw_verdict_t sw_tok__run_hello(sw_token_t *t);

/* SW_PH_WELCOME: the HELLO's commit is stored: the welcome, then for a
 * resume the missed deltas (from the replay log, or one full delta). */
sw_verdict_t sw_tok__hello_welcome(sw_token_t *t);

/* The replay log read for a resume came back (the runner's completion
 * hands it over; entries valid during the call): the missed deltas, or
 * one full delta when the log does not reach back. SW_V_DONE. */
sw_verdict_t sw_tok__hello_replayed(sw_token_t *t, int status, const char *const *entries,
                                    const size_t *lens, size_t n);

#endif
