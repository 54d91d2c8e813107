/* runtime_int.h — the inside of the app runtime, shared by its files and
 * by nothing else: the handler context (struct sw_ctx) and the change
 * engine that every change of a tree goes through (functions prefixed
 * sw_rt__). The runtime as a whole is in runtime.h.
 *
 *   runtime.c       running a step (sw_runtime_step): uses both below
 *   runtime_ctx.c   the sw_ctx_* of include/statewire.h: uses the tree
 *   runtime_tree.c  the sw_tree_* of runtime.h and the change engine
 *
 * Calls go down that list only; the tree reaches a handler context only
 * through the app's computed-var callbacks (sw_computed_fn).
 *
 * The change engine keeps an undo log: the value of every var (stored or
 * computed) as it was before its first change since sw_rt__begin(). At
 * the end (sw_rt__finish) the log gives the delta (entries whose value
 * really changed, by json_equal); on failure (sw_rt__rollback) it puts the
 * tree back exactly. Computed vars are recomputed lazily: a set marks the
 * transitive dependents stale; reading a stale computed var through
 * sw_ctx_get() recomputes it at once (sw_rt__refresh; its own stale deps
 * first, through the same sw_ctx_get() calls), and sw_rt__finish()
 * recomputes the rest in topological order. */
#ifndef SW_WORKER_RUNTIME_INT_H
#define SW_WORKER_RUNTIME_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "worker/app_int.h"
#include "worker/runtime.h"

typedef struct sw_rt_undo {
    sw_vardef_t *var;
    json_t *old; /* value before the change; NULL if it had none */
} sw_rt_undo_t;

/* A handler context: one change of a tree under way (a handler step, or
 * a tree update such as sw_tree_set_router) and, in a step, what the
 * handler asked for. Lives on the stack, between sw_rt__begin() and
 * sw_rt__end(). */
struct sw_ctx {
    sw_tree_t *t;
    const sw_appdef_t *app;
    const char *token;
    const char *user;   /* "" when anonymous */
    size_t max_chained; /* sw_ctx_chain calls allowed in this step */
    unsigned step;
    unsigned sleep_ms;
    json_t *actions; /* borrowed from out; NULL outside a step */
    sw_step_t *out;  /* the step's result (chained events, link ops); NULL outside a step */
    int in_computed; /* > 0 while a computed var's function runs */
    int failed;      /* sw_ctx_fail() was called: fail_code, fail_msg */
    int fail_code;
    char fail_msg[256];
    uint8_t *marks; /* per var id, then per state id (dirty dedupe) */
    size_t nstale;  /* computed vars marked stale */
    sw_rt_undo_t *undo;
    size_t nundo, capundo;
    json_t *params;     /* route parameter cache: name -> value (runtime_ctx.c) */
    uint8_t small[512]; /* marks when they fit; must stay last */
};

/* ---- The change engine (runtime_tree.c) ---------------------------------- */

/* Start a change of tree `t` in `ctx` (caller's storage, overwritten) for
 * client `token` (borrowed, may be NULL) at step number `step`; every
 * other field is zero. End with sw_rt__end(). */
void sw_rt__begin(sw_ctx_t *ctx, sw_tree_t *t, const char *token, unsigned step);

/* Release what ctx holds (undo log, marks, route parameter cache). The
 * tree keeps its current values. */
void sw_rt__end(sw_ctx_t *ctx);

/* Set stored var v to `value` (stolen, not NULL): logged for undo, its
 * dependents marked stale. */
void sw_rt__set(sw_ctx_t *ctx, sw_vardef_t *v, json_t *value);

/* Recompute v when it is a computed var marked stale and not being
 * computed already (a cycle the app did not declare). */
void sw_rt__refresh(sw_ctx_t *ctx, sw_vardef_t *v);

/* Recompute what is still stale, then turn the undo log into the delta
 * ({state: {var: value}}, public vars whose value changed), dirty
 * ([state], states whose stored vars changed) and changed ({state: {var:
 * value}}, stored vars whose value changed, backend-only included). Each
 * of the three may be NULL. */
void sw_rt__finish(sw_ctx_t *ctx, json_t *delta, json_t *dirty, json_t *changed);

/* Put every var logged since sw_rt__begin() back to its old value. */
void sw_rt__rollback(sw_ctx_t *ctx);

#endif
