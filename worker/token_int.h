/* token_int.h — the inside of the token pipeline, shared by its stage
 * files (token.c, pipeline.c, commit.c, links.c, fanout.c, lease.c,
 * hello.c) and by nothing else: struct sw_token and what only the event in
 * flight needs, and the functions one stage calls in another (prefixed
 * sw_tok__). The pipeline as a whole, and its contract with the rest of
 * the worker, is in token.h. */
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
    /* Group fan-out (sw_token_catchup_group) sent the clients the shared
     * view at sent_seq/sent_presence without folding it into the tree: the
     * tree lags the client view until the next fold. */
    int lag;
    uint64_t sent_seq;
    int64_t sent_presence;
} sw_tlink_t;

/* What only the event in flight needs, from its start (kick) to
 * finish_current: kept out of sw_token_t so that an idle token stays
 * small. Made when an event starts and recycled when it finishes through
 * a free list of at most SW_INFLIGHT_POOL entries (token.c; past it they
 * are freed), so steady-state events do not allocate it. */
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
    int asked_holder;                         /* this busy streak already asked the holder */
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
    sw_event_t *current;   /* in flight, or NULL */
    sw_inflight_t *flight; /* non-NULL while an event is in flight */
    sw_tree_t tree;
    int have_tree;
    int exists;                /* the token hash exists in the store */
    uint64_t seq;              /* the store's seq, as of the last load/commit */
    struct sw_peer_list peers; /* its clients on this worker */
    uint32_t npeers;
    struct sw_task_list tasks;
    ev_timer retry_w;          /* lease busy backoff */
    int pending_store;         /* a store callback is outstanding */
    int lease_held;            /* our lease is (believed) held */
    uint64_t lease_until_ms;   /* our estimate of the lease's end (monotonic) */
    uint64_t last_active_ms;   /* last event start or end: idle release */
    uint64_t ttl_refreshed_ms; /* last commit that refreshed the hash TTL */
    int release_asked;         /* another worker asked for the lease */
    int in_kick;
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
    int waiting;         /* 0, or what the current event waits for */
    int old_view;        /* the tree was the client view before this load */
    int catchup_pending; /* shared changes arrived while busy */
    int presence_on;     /* presence entries added for the links */
    int resume_queued;
    TAILQ_ENTRY(sw_token) resume_link;
};

/* Internal events (chained, task steps) may use the queue up to this
 * multiple of max_queue: a handler's sw_ctx_chain fails past it; a task
 * step or on_load event that finds it full is dropped with a log line. */
#define SW_INTERNAL_QUEUE_FACTOR 2

enum { WAIT_NONE = 0, WAIT_PREPARE, WAIT_LINK };

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

/* ---- registry, queue, tasks (token.c) ----------------------------------- */

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

/* t->private_copies, made if NULL (it stays NULL while nothing is linked). */
json_t *sw_tok__private_copies_make(sw_token_t *t);

/* A peer holds a state (it got a full delta): when the token's state is
 * gone from the store (expired), the server rehydrates first. */
int sw_tok__clients_hold_state(const sw_token_t *t);

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
void sw_tok__push_front_chained(sw_token_t *t, json_t *chained);

/* The task of a step that yielded runs again after sleep_ms (made on the
 * task's first yield); sw_tok__task_free stops and frees it. */
void sw_tok__task_schedule(sw_token_t *t, sw_event_t *ev, unsigned sleep_ms);
void sw_tok__task_free(sw_task_t *task);

/* ---- the pipeline stages (pipeline.c) ----------------------------------- */

/* Start the next queued event if none is in flight. Events that fail
 * without reaching the store are answered and the loop goes on. */
void sw_tok__kick(sw_token_t *t);

/* Take the lease and load the state (one round trip); on_loaded goes on. */
void sw_tok__start_load(sw_token_t *t);

/* The lease was busy: load again (the retry timer's callback). */
void sw_tok__busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Before a hydrate or a handler step: take the write slot of every linked
 * shared token (in name order) with a current copy, then fold the copies
 * in; a HELLO judges its resume. Waits (resumed later) when a slot is busy
 * or a copy is being read. */
void sw_tok__prepare(sw_token_t *t);

/* Deliver the step's delta, queue what it chained, and go on (next step
 * of a yielding handler, next task step, or the next event). */
void sw_tok__after_commit(sw_token_t *t);

/* Answer the event with an error (an internal event's error goes to every
 * welcomed peer of the token, without id). */
void sw_tok__answer_error(sw_token_t *t, sw_event_t *ev, sw_errc_t code, const char *msg);

/* Fail the current event: shared changes folded in before the handler ran
 * still reach the clients, then the error, then sw_tok__finish_current. */
void sw_tok__fail_current(sw_token_t *t, sw_errc_t code, const char *msg);

/* The current event is done (answered or failed): free it, give back the
 * lease and the shared write slots, catch up with shared changes that
 * arrived meanwhile, and start the next one. The tree stays as the client
 * view while the token has clients. */
void sw_tok__finish_current(sw_token_t *t);

/* Merge a step's delta into the event's: {state: {var: value}}. */
void sw_tok__merge_delta(json_t *acc, json_t *delta);

/* ---- commits (commit.c) -------------------------------------------------- */

/* Send the fenced commit. seq 0 keeps the seq (no delta of the stream);
 * log_entry NULL writes no log entry. The lease is kept (the oplock)
 * unless `release` or sw_tok__keep_lease() says otherwise. Returns 0 when
 * the commit is in flight; otherwise the event has been answered and
 * finished. */
int sw_tok__commit(sw_token_t *t, commit_fields_t *cf, shared_writes_t *ws, uint64_t seq,
                   const char *log_entry, size_t log_len, int release);

/* The "_conn" field: the connection record a resume is checked against;
 * and "_user" when this connection binds the token to its user. */
int sw_tok__add_conn_field(sw_token_t *t, commit_fields_t *cf, const sw_peer_t *s);

/* hydrate: persist a brand-new token's defaults and the router, answer one
 * full delta, then run the route's on_load handlers as chained events. */
void sw_tok__run_hydrate(sw_token_t *t);

/* Run one handler step of the current event and commit what it changed:
 * private states with the token's own seq and log (fenced by its lease),
 * linked states into their shared tokens (compare-and-set, published). */
void sw_tok__run_step(sw_token_t *t);

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
json_t *sw_tok__links_after(const sw_token_t *t, const json_t *ops);

/* After a successful commit: apply link/unlink ops to the tree. Returns 1
 * when done, 0 when waiting for a shared copy (resumed later). */
int sw_tok__link_phase(sw_token_t *t);

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
 * the worker drains, or nothing is cached to use it with. */
int sw_tok__keep_lease(const sw_token_t *t);

/* Give the lease back (compare-and-delete) if we hold it. */
void sw_tok__release_lease(sw_token_t *t);

/* ---- hello and resume (hello.c) ------------------------------------------ */

/* Hex SHA-256 of a conn_token: what the store keeps (never the token). */
void sw_tok__conn_token_hash(const char *tok, char out[65]);

/* Does the HELLO's resume match the stored connection record? Compared in
 * constant time; the conn_token itself is never stored or logged. */
int sw_tok__resume_valid(const sw_token_t *t, const json_t *resume);

/* The welcome to s (resumed or not), then what s held back joins the
 * queue (its welcomed callback). */
void sw_tok__send_welcome(sw_token_t *t, sw_peer_t *s, int resumed);

/* After the welcome of a resumed session: before anything else, the
 * missed deltas of the token's own stream (from the replay log) or one full
 * delta (the log no longer reaches back, or shared state is linked). */
void sw_tok__hello_sync(sw_token_t *t, sw_peer_t *s);

/* hello: a valid resume is the same connection coming back; a fresh one
 * stores its credentials; a client that may not use this token, or a
 * second live connection without valid credentials, moves to a new token
 * (hello.c says more). */
void sw_tok__run_hello(sw_token_t *t);

#endif
