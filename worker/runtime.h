/* runtime.h — the app runtime: the registry an app declares through
 * include/statewire.h, a token's state tree in memory, and running one
 * handler step against it to produce a delta.
 *
 * Nothing here does I/O: the worker's token pipeline (worker/pipeline.c,
 * worker/commit.c) loads trees from the store, calls sw_runtime_step(),
 * commits what it says is dirty and sends the delta.
 *
 * Implemented in worker/runtime.c (running a step), worker/runtime_ctx.c
 * (the sw_ctx_* of include/statewire.h) and worker/runtime_tree.c (the
 * trees); the registry is worker/app.c. */
#ifndef SW_WORKER_RUNTIME_H
#define SW_WORKER_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "statewire.h"
#include "common/buf.h"

/* ---- The app registry ---------------------------------------------------- */

typedef struct sw_appdef sw_appdef_t;

/* Build the registry by running `init` (an app's statewire_app_init).
 * Returns NULL when init fails or a declaration is invalid (logged).
 * Validates that every computed var's dependencies exist and that the
 * dependency graph has no cycle. Caller frees with sw_appdef_free(). */
sw_appdef_t *sw_appdef_new(sw_app_init_fn init);

/* dlopen() `path` and build the registry from its `statewire_app_init`
 * symbol. NULL on failure (dlerror() logged). The handle stays open for
 * the process lifetime. */
sw_appdef_t *sw_appdef_load(const char *path);

void sw_appdef_free(sw_appdef_t *app);

/* The app's name ("app" when it set none); borrowed. */
const char *sw_appdef_name(const sw_appdef_t *app);

/* Declared states, in declaration order. Borrowed strings. */
size_t sw_appdef_nstates(const sw_appdef_t *app);
const char *sw_appdef_state(const sw_appdef_t *app, size_t i);
/* Flags (SW_STATE_*) of a state; -1 if not declared. */
int sw_appdef_state_flags(const sw_appdef_t *app, const char *path);

/* 1 when the app declared an authentication hook (sw_app_auth). */
int sw_appdef_has_auth(const sw_appdef_t *app);

/* Run the app's authentication hook for `req` (include/statewire.h,
 * sw_auth_fn). Returns 0 with the user id in `user` ("" = anonymous; also
 * without a hook), or SW_EPERM when the hook refused or returned an
 * invalid user id, with the reason for the client (valid UTF-8, may be
 * "") in `reason` (reason_cap bytes). */
int sw_appdef_authenticate(const sw_appdef_t *app, const sw_auth_request_t *req,
                           char user[SW_USER_MAX + 1], char *reason, size_t reason_cap);

/* Kind of an event name. */
typedef enum {
    SW_EVENT_UNKNOWN = 0,
    SW_EVENT_HANDLER, /* "<state>.<handler>" */
    SW_EVENT_SETTER,  /* "<state>.set_<var>" of a settable var */
    SW_EVENT_TASK,    /* "<state>.<task>" (background) */
} sw_event_kind_t;

sw_event_kind_t sw_appdef_event_kind(const sw_appdef_t *app, const char *name);

/* The on_load events for route `path`, in declaration order: fills up to
 * `max` borrowed names into `out` and returns how many matched (may exceed
 * max: call again with a bigger array). */
size_t sw_appdef_on_load(const sw_appdef_t *app, const char *path, const char **out, size_t max);

/* ---- A token's state tree -------------------------------------------------- */

typedef struct sw_tree {
    const sw_appdef_t *app; /* borrowed */
    json_t *vars;           /* {state: {var: value}} stored vars, owned */
    json_t *computed;       /* {state: {var: value}} last computed values, owned */
    json_t *router;         /* {"path":..., "query":...}, owned; never NULL */
    json_t *links;          /* {state: shared_token}, owned; never NULL */
    json_t *presence;       /* {shared_token: count}, owned; never NULL */
} sw_tree_t;

/* A tree with every state at its defaults, router {"path":"/"}, and every
 * computed var computed. */
void sw_tree_init(sw_tree_t *t, const sw_appdef_t *app);
void sw_tree_destroy(sw_tree_t *t);

/* Replace the stored vars of `state` with the msgpack map in mp/len (as
 * written by sw_tree_encode_state). Vars missing from the map keep their
 * defaults; vars the app no longer declares are dropped. Does not
 * recompute: call sw_tree_recompute_all() after loading every state.
 * Returns 0, SW_ENOTFOUND for an undeclared state (ignored by callers:
 * the app may have dropped it), SW_EINVAL for bad msgpack. */
int sw_tree_load_state(sw_tree_t *t, const char *state, const char *mp, size_t len);

/* Recompute every computed var (after load). */
void sw_tree_recompute_all(sw_tree_t *t);

/* Append the msgpack map of `state`'s stored vars (backend-only included,
 * computed excluded) to out. 0, SW_ENOTFOUND, or SW_ETOOLARGE (buffer
 * bound). */
int sw_tree_encode_state(const sw_tree_t *t, const char *state, sw_buf_t *out);

/* The full public state: {state: {var: value}} of every stored and
 * computed var, backend-only vars excluded. New reference. */
json_t *sw_tree_full(const sw_tree_t *t);

/* Set the router (steals `router`, which must be an object with a string
 * "path"; anything else is replaced by {"path":"/"}). Computed vars that
 * depend on "router" are recomputed; the changes are added to `delta`
 * ({state: {var: value}}, may be NULL to discard). */
void sw_tree_set_router(sw_tree_t *t, json_t *router, json_t *delta);

/* Replace the links (steals `links`: an object state -> shared token;
 * anything else is replaced by {}). Computed vars that depend on "links"
 * are recomputed; their changes go into `delta` (may be NULL). Does not
 * touch any state's values: the caller swaps copies with
 * sw_tree_replace_state(). */
void sw_tree_set_links(sw_tree_t *t, json_t *links, json_t *delta);

/* Set the presence count of `shared_token`; computed vars that depend on
 * "presence" are recomputed, their changes go into `delta` (may be NULL). */
void sw_tree_set_presence(sw_tree_t *t, const char *shared_token, json_int_t n, json_t *delta);

/* Replace every stored var of `state` with `vars` (borrowed object; vars
 * missing take their defaults, undeclared ones are dropped; NULL = all
 * defaults) and recompute what depends on them. Into `delta` (may be
 * NULL) go: every public stored var of `state` when `all` != 0 (the client
 * gets the whole state from its new copy), otherwise only those that
 * changed; and every public computed var (any state) whose value changed.
 * 0 or SW_ENOTFOUND. */
int sw_tree_replace_state(sw_tree_t *t, const char *state, const json_t *vars, int all,
                          json_t *delta);

/* Apply a partial update {var: value} (borrowed) of `state`'s stored vars
 * — a fan-out message — and recompute what depends on them; the public
 * stored and computed vars that changed go into `delta`. Undeclared vars
 * are ignored. 0 or SW_ENOTFOUND. */
int sw_tree_apply_vars(sw_tree_t *t, const char *state, const json_t *vars, json_t *delta);

/* The stored vars of `state` ({var: value}, backend-only included),
 * borrowed; NULL if not declared. */
json_t *sw_tree_state_vars(const sw_tree_t *t, const char *state);

/* 1 when some computed var that a change of a shared state (SW_STATE_SHARED)
 * can alter also depends, directly or through other computed vars, on
 * private input: stored vars of non-shared states or "router". Fan-out
 * deltas then cannot be computed once for all linked clients. */
int sw_appdef_fanout_needs_private(const sw_appdef_t *app);

/* 1 when every shared state (SW_STATE_SHARED) of the app is linked to
 * `shared_token` in t, else 0. With sw_appdef_fanout_needs_private() == 0
 * every var that shared input reaches is then the same function of that
 * shared token's vars, its presence and the links, for every tree linked
 * that way: one fan-out delta serves them all. */
int sw_tree_links_all_shared(const sw_tree_t *t, const char *shared_token);

/* ---- Running a handler step -------------------------------------------- */

/* A link operation a step asks for (sw_ctx_link / sw_ctx_unlink), in call
 * order; the token pipeline applies them once the step is committed. */
typedef enum sw_link_op_kind {
    SW_LINK_OP_LINK = 1, /* link `state` to shared token `token` */
    SW_LINK_OP_UNLINK,   /* back to the state's private copy */
} sw_link_op_kind_t;

typedef struct sw_link_op {
    sw_link_op_kind_t op;
    char *state; /* the state's path, owned */
    char *token; /* SW_LINK_OP_LINK: the shared token, owned; else NULL */
} sw_link_op_t;

/* An event a step chains (sw_ctx_chain): it runs right after the event
 * that made it, before later client events. */
typedef struct sw_chained {
    char *name;      /* owned */
    json_t *payload; /* owned, an object */
} sw_chained_t;

typedef struct sw_step {
    int status;             /* SW_DONE, SW_YIELD, or -1 on error */
    const char *error_code; /* on error: "unknown_event", "bad_payload" or
                               "handler_error" (static string) */
    char error_msg[256];    /* on error: human-readable reason */
    json_t *delta;          /* {state: {var: value}} public changes incl.
                               computed; owned; an empty object if none */
    json_t *actions;        /* [{"name":..,"payload":..}], owned */
    sw_chained_t *chained;  /* [nchained], owned (NULL when none); at most SW_MAX_CHAINED */
    size_t nchained;
    json_t *dirty;          /* [state, ...] whose stored vars changed (backend-only
                               included): what must be committed; owned */
    json_t *changed;        /* {state: {var: value}} every stored var that changed,
                               backend-only included (the fan-out message of a
                               linked state); owned */
    sw_link_op_t *link_ops; /* [nlink_ops] in call order, owned (NULL when none);
                               at most SW_MAX_CHAINED */
    size_t nlink_ops;
    unsigned sleep_ms; /* SW_YIELD from a task: delay before next step */
} sw_step_t;

/* What one handler step runs: every pointer borrowed for the call. */
typedef struct sw_step_in {
    const char *token;  /* the client token (sw_ctx_token) */
    const char *user;   /* the user it is bound to, "" or NULL: anonymous (sw_ctx_user) */
    const char *name;   /* the event: "<state>.<handler>" or a setter */
    json_t *payload;    /* NULL means {} */
    unsigned step;      /* 0 on the first call, then the yields so far */
    size_t max_chained; /* chained events the step may queue (at most SW_MAX_CHAINED;
                           the room left in the token's queue) */
} sw_step_in_t;

/* Run step number in->step (0 first) of the event in->name with its
 * payload against tree `t` for in->token. On success the
 * tree holds the new values and `out` says what changed. On error
 * (unknown event, handler failure, setter with a bad payload) the tree is
 * exactly as before the call and out->delta etc. are empty.
 * Setters ("<state>.set_<var>") are handled here. `out` is initialised by
 * the call; release it with sw_step_destroy(). Returns out->status. */
int sw_runtime_step(sw_tree_t *t, const sw_step_in_t *in, sw_step_t *out);

/* Free the step's chained events and link ops (the arrays, their
 * strings and payloads); the step keeps its other fields. */
void sw_step_clear_out(sw_step_t *s);

void sw_step_destroy(sw_step_t *s);

#endif
