/* wctx.h — the worker context: what every module of a worker process
 * shares (the loop, the configuration, the app, the store, the stats
 * slot, the registries of tokens and rooms, the per-iteration work lists),
 * defined apart from worker.c so that the modules below it depend on this
 * header and not on the worker's loop code. */
#ifndef SW_WORKER_WCTX_H
#define SW_WORKER_WCTX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <ev.h>

#include "core/config.h"
#include "core/stats.h"
#include "worker/conn.h"
#include "worker/credentials.h"
#include "worker/inbox.h"
#include "worker/runtime.h"
#include "worker/store.h"

typedef struct sw_token sw_token_t;

/* Deltas kept per token in the store's replay log (what the worker asks
 * of the store: sw_store_opts_t.log_max). A client that resumes further
 * behind than this gets one full delta instead of the missed deltas. */
#define SW_REPLAY_LOG_LEN 256
typedef struct sw_worker sw_worker_t;

/* The work the context's per-iteration watchers run, given by the owner of
 * the context (the modules that do it sit above this one and include this
 * header): every pointer is called with the context. */
typedef struct sw_wctx_steps {
    void (*run_resumes)(sw_worker_t *w);  /* continue the tokens in w->resumes */
    void (*run_catchups)(sw_worker_t *w); /* catch up the tokens of w->catchups */
    void (*gc)(sw_worker_t *w);           /* free idle tokens and rooms (w->gc_w) */
} sw_wctx_steps_t;

/* The state of one worker process; one per process (the role of nginx's
 * ngx_cycle_t; tests run several in one process). worker.c creates and
 * runs it; the modules below (session, token, shared) reach it through
 * their owner pointers and use its fields, never worker.c's functions:
 * what they ask of the worker goes through the few calls below. */
struct sw_worker {
    struct ev_loop *loop;
    const sw_config_t *cfg; /* borrowed, lives for the process */
    const sw_appdef_t *app; /* borrowed */
    int slot;
    int channel_fd;
    sw_worker_stats_t *stats; /* this worker's slot in shared memory */
    sw_stats_t *stats_all;    /* the whole block (the shared signing key) */
    sw_store_t *store;
    char holder_id[40]; /* lease holder id: "<slot>-<pid>-<random>" */
    sw_conn_env_t conns;
    sw_token_t *tokens;                                 /* uthash: token string -> sw_token_t */
    LIST_HEAD(sw_worker_sessions, sw_session) sessions; /* every live session */
    struct sw_shared *shared;                           /* uthash: shared token -> sw_shared_t */
    LIST_HEAD(sw_catchup_list, sw_shared) catchups;     /* changed this iteration */
    const struct sw_shared_hooks *shared_hooks;         /* the token module's (sw_token_init) */
    TAILQ_HEAD(sw_resume_list, sw_token) resumes;       /* tokens to continue */
    ev_idle resume_w;
    ev_check resume_check_w;          /* resumes also run every iteration under load */
    ev_timer lease_sweep_w;           /* oplock upkeep: idle leases are given up */
    ev_timer live_w;                  /* refreshes the live keys of local connections */
    char inbox[SW_INBOX_CHANNEL_MAX]; /* "inbox:<holder_id>" (worker/inbox.h) */
    size_t ntokens;
    int draining; /* QUIT received or master gone */
    int stopping; /* leave the loop */
    ev_io channel_w;
    ev_signal sig_term, sig_int, sig_quit, sig_usr1, sig_hup;
    ev_timer drain_w;      /* drain deadline */
    ev_timer drain_poll_w; /* closes idle sessions while draining */
    ev_prepare publish_w;  /* publishes counters to shared stats */
    ev_idle gc_w;          /* frees idle tokens outside callbacks */
    int gc_pending;
    /* The key that signs event-stream credentials (--secret, or the one
     * kept in Redis, fetched at start: secret_w retries until then). */
    sw_cred_key_t cred_key;
    int have_cred_key;
    ev_timer secret_w;
    LIST_HEAD(sw_worker_posts, sw_post_fwd) posts; /* forwarded POSTs awaiting answers */
    uint64_t next_post_id;
    const sw_wctx_steps_t *steps; /* borrowed: what resume_w, resume_check_w and gc_w run */
};

/* Set up a zeroed context `w` (calloc) for `loop`, `cfg` and `app` (all
 * borrowed, outliving w): the registries and work lists empty (sessions,
 * resumes, catch-ups, forwarded POSTs), and the watchers of its
 * per-iteration work: resume_w (an idle, started by whoever queues a
 * resume or a catch-up; stopped once both lists are empty) and
 * resume_check_w (a check, started here: resumes also run every iteration
 * under load) run steps->run_resumes then steps->run_catchups; gc_w (an
 * idle, started by sw_wctx_schedule_gc) runs steps->gc once. `steps` is
 * borrowed and outlives w. Everything else (store, holder id, stats,
 * connections, the token module's hooks) is the caller's to set. */
void sw_wctx_init(sw_worker_t *w, struct ev_loop *loop, const sw_config_t *cfg,
                  const sw_appdef_t *app, const sw_wctx_steps_t *steps);

/* Stop the watchers sw_wctx_init set up. Frees nothing: the tokens, rooms
 * and sessions are their modules' to free (before this), the store and
 * w itself the caller's. */
void sw_wctx_destroy(sw_worker_t *w);

/* Socket ids ("<holder>.<n>") and event-stream conn_ids start with the
 * holder id of the worker that owns them. Returns the length of the holder
 * part of `id` (before the last `sep`; 0 when there is none) and sets
 * *mine to 1 when that holder is this worker. */
size_t sw_wctx_id_holder(const sw_worker_t *w, const char *id, char sep, int *mine);

/* Send inbox message m (worker/inbox.h) to the worker whose holder id is
 * holder[0..holder_len): encoded, then PUBLISHed on its channel, fire and
 * forget. 0; SW_EINVAL when the holder id or the message is out of its
 * bounds (nothing sent); or sw_store_publish's error (Redis out of reach:
 * the message is lost, as a publish nobody hears would be). */
int sw_wctx_inbox_send(sw_worker_t *w, const char *holder, size_t holder_len,
                       const sw_inbox_msg_t *m);

/* Ask the worker to look for idle tokens and rooms to free, from an idle
 * step (w->gc_w, whose callback worker.c installs): never inside the
 * caller's stack. */
void sw_wctx_schedule_gc(sw_worker_t *w);

#endif
