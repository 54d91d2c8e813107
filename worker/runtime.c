/* runtime.c — a token's state tree and running one handler step against it:
 * the sw_tree_* and sw_runtime_step of worker/runtime.h and the sw_ctx_* of
 * include/statewire.h.
 *
 * A step keeps an undo log: the value of every var (stored or computed) as
 * it was before its first change in this step. On success the log gives the
 * delta (entries whose value really changed, by json_equal); on failure it
 * puts the tree back exactly. Computed vars are recomputed lazily: a set
 * marks the transitive dependents stale; sw_ctx_get() of a stale computed
 * var recomputes it at once (its own stale deps first, through the same
 * sw_ctx_get() calls), and the end of the step recomputes the rest in
 * topological order.
 *
 * Links: sw_ctx_link()/sw_ctx_unlink() only record operations in
 * sw_step_t.link_ops; the worker's pipeline applies them after the step
 * (sw_tree_set_links, sw_tree_replace_state). */
#include "worker/runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "worker/app_int.h"

/* Chained events, client actions and link operations one step may
 * produce; past the bound sw_ctx_chain() / sw_ctx_action() / sw_ctx_link()
 * / sw_ctx_unlink() return -1. */
#define SW_STEP_MAX_OUT SW_MAX_CHAINED

/* marks[var id] bits */
#define M_UNDO 0x1u  /* the var's previous value is in the undo log */
#define M_STALE 0x2u /* computed var whose deps changed since it was computed */
#define M_BUSY 0x4u  /* computed var being computed (guards undeclared cycles) */

typedef struct undo {
    sw_vardef_t *var;
    json_t *old; /* value before the step; NULL if it had none */
} undo_t;

struct sw_ctx {
    sw_tree_t *t;
    const sw_appdef_t *app;
    const char *token;
    const char *user;   /* "" when anonymous */
    size_t max_chained; /* sw_ctx_chain calls allowed in this step */
    unsigned step;
    unsigned sleep_ms;
    json_t *actions; /* borrowed from sw_step_t; NULL outside a step */
    json_t *chained;
    json_t *link_ops;
    int in_computed;
    int failed;
    int fail_code;
    char fail_msg[256];
    uint8_t *marks; /* per var id, then per state id (dirty dedupe) */
    size_t nstale;  /* computed vars marked M_STALE */
    undo_t *undo;
    size_t nundo, capundo;
    json_t *params;     /* route parameter cache: name -> value */
    uint8_t small[512]; /* marks when they fit; must stay last */
};

static void ctx_begin(sw_ctx_t *ctx, sw_tree_t *t, const char *token, unsigned step)
{
    size_t n = t->app->nvars + t->app->nstates;

    memset(ctx, 0, offsetof(sw_ctx_t, small));
    ctx->t = t;
    ctx->app = t->app;
    ctx->token = token;
    ctx->step = step;
    if (n <= sizeof(ctx->small)) {
        memset(ctx->small, 0, n);
        ctx->marks = ctx->small;
    } else {
        ctx->marks = sw_xcalloc(n, 1);
    }
}

static void ctx_end(sw_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->nundo; i++)
        json_decref(ctx->undo[i].old);
    free(ctx->undo);
    if (ctx->marks != ctx->small)
        free(ctx->marks);
    json_decref(ctx->params);
}

/* The {var: value} object of var v's state, stored or computed side. */
static json_t *home(const sw_tree_t *t, const sw_vardef_t *v)
{
    return json_object_get(v->computed ? t->computed : t->vars, v->state->path);
}

static json_t *home_or_create(sw_tree_t *t, const sw_vardef_t *v)
{
    json_t *side = v->computed ? t->computed : t->vars;
    json_t *o = json_object_get(side, v->state->path);

    if (!o) {
        o = json_object();
        json_object_set_new(side, v->state->path, o);
    }
    return o;
}

/* Save v's current value in the undo log before its first change. */
static void record(sw_ctx_t *ctx, sw_vardef_t *v)
{
    if (ctx->marks[v->id] & M_UNDO)
        return;
    ctx->marks[v->id] |= M_UNDO;
    if (ctx->nundo == ctx->capundo) {
        ctx->capundo = ctx->capundo ? ctx->capundo * 2 : 8;
        ctx->undo = sw_xrealloc(ctx->undo, ctx->capundo * sizeof(*ctx->undo));
    }
    ctx->undo[ctx->nundo].var = v;
    ctx->undo[ctx->nundo].old = json_incref(json_object_get(home(ctx->t, v), v->name));
    ctx->nundo++;
}

static void mark_stale(sw_ctx_t *ctx, const sw_vardef_t *v)
{
    for (size_t i = 0; i < v->nrdeps; i++) {
        sw_vardef_t *r = v->rdeps[i];
        if (ctx->marks[r->id] & M_STALE)
            continue;
        ctx->marks[r->id] |= M_STALE;
        ctx->nstale++;
        mark_stale(ctx, r);
    }
}

static void compute(sw_ctx_t *ctx, sw_vardef_t *v)
{
    json_t *o, *val, *prev;

    if (ctx->marks[v->id] & M_BUSY)
        return;
    ctx->marks[v->id] |= M_BUSY;
    ctx->in_computed++;
    val = v->fn(ctx);
    ctx->in_computed--;
    if (!val)
        val = json_null();
    record(ctx, v);
    o = home_or_create(ctx->t, v);
    prev = json_object_get(o, v->name);
    if (ctx->marks[v->id] & M_STALE)
        ctx->nstale--;
    ctx->marks[v->id] &= (uint8_t) ~(M_BUSY | M_STALE);
    /* A dependent computed earlier in this step that did not read v then
     * (a conditional read) must see the new value. */
    if (!prev || !json_equal(prev, val))
        mark_stale(ctx, v);
    json_object_set_new(o, v->name, val);
}

/* Add {state: {var: value}} to `obj` (value borrowed). */
static void put(json_t *obj, const sw_vardef_t *v, json_t *value)
{
    json_t *o = json_object_get(obj, v->state->path);

    if (!o) {
        o = json_object();
        json_object_set_new(obj, v->state->path, o);
    }
    json_object_set(o, v->name, value);
}

/* Recompute what is still stale, then turn the undo log into the delta
 * (public vars whose value changed), dirty (states whose stored vars
 * changed) and changed (stored vars whose value changed, backend-only
 * included). Any of them may be NULL. */
static void finish(sw_ctx_t *ctx, json_t *delta, json_t *dirty, json_t *changed)
{
    const sw_appdef_t *app = ctx->app;

    for (size_t i = 0; i < app->ntopo && ctx->nstale > 0; i++)
        if (ctx->marks[app->topo[i]->id] & M_STALE)
            compute(ctx, app->topo[i]);
    for (size_t i = 0; i < ctx->nundo; i++) {
        sw_vardef_t *v = ctx->undo[i].var;
        json_t *cur = json_object_get(home(ctx->t, v), v->name);
        uint8_t *smark;

        if (ctx->undo[i].old && cur && json_equal(ctx->undo[i].old, cur))
            continue;
        smark = &ctx->marks[app->nvars + v->state->id];
        if (dirty && !v->computed && !*smark) {
            *smark = 1;
            json_array_append_new(dirty, json_string(v->state->path));
        }
        if (changed && !v->computed && cur)
            put(changed, v, cur);
        if (delta && !v->backend && cur)
            put(delta, v, cur);
    }
}

static void rollback(sw_ctx_t *ctx)
{
    for (size_t i = ctx->nundo; i-- > 0;) {
        sw_vardef_t *v = ctx->undo[i].var;
        json_t *o = home(ctx->t, v);

        if (!o)
            continue;
        if (ctx->undo[i].old)
            json_object_set(o, v->name, ctx->undo[i].old);
        else
            json_object_del(o, v->name);
    }
}

/* ---- Handler context ---------------------------------------------------------- */

json_t *sw_ctx_get(sw_ctx_t *ctx, const char *state, const char *var)
{
    sw_tree_t *t = ctx->t;
    json_t *o, *val;
    sw_vardef_t *v;

    if (!state || !var)
        return NULL;
    o = json_object_get(t->vars, state);
    val = o ? json_object_get(o, var) : NULL;
    if (val)
        return val;
    o = json_object_get(t->computed, state);
    val = o ? json_object_get(o, var) : NULL;
    if (!val || ctx->nstale == 0)
        return val;
    v = sw_appdef_find_var(ctx->app, state, var);
    if (v && v->computed && (ctx->marks[v->id] & M_STALE) && !(ctx->marks[v->id] & M_BUSY)) {
        compute(ctx, v);
        val = json_object_get(o, var);
    }
    return val;
}

json_int_t sw_ctx_get_int(sw_ctx_t *ctx, const char *state, const char *var)
{
    json_t *v = sw_ctx_get(ctx, state, var);

    return json_is_integer(v) ? json_integer_value(v) : 0;
}

const char *sw_ctx_get_str(sw_ctx_t *ctx, const char *state, const char *var)
{
    json_t *v = sw_ctx_get(ctx, state, var);

    return json_is_string(v) ? json_string_value(v) : "";
}

static int set_var(sw_ctx_t *ctx, sw_vardef_t *v, json_t *value)
{
    record(ctx, v);
    json_object_set_new(home_or_create(ctx->t, v), v->name, value);
    mark_stale(ctx, v);
    return 0;
}

int sw_ctx_set(sw_ctx_t *ctx, const char *state, const char *var, json_t *value)
{
    sw_vardef_t *v;

    if (ctx->in_computed) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_set(%s.%s) from a computed var is not allowed",
               state ? state : "(null)", var ? var : "(null)");
        json_decref(value);
        return -1;
    }
    v = sw_appdef_find_var(ctx->app, state, var);
    if (!v || v->computed || !value) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_set(%s.%s): %s", state ? state : "(null)",
               var ? var : "(null)",
               !v            ? "no such var"
               : v->computed ? "computed var"
                             : "NULL value");
        json_decref(value);
        return -1;
    }
    return set_var(ctx, v, value);
}

static int push_out(sw_ctx_t *ctx, json_t *list, const char *what, const char *name,
                    json_t *payload)
{
    if (ctx->in_computed || !list || !name || !*name) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_%s(%s): %s", what, name ? name : "(null)",
               ctx->in_computed ? "not allowed from a computed var"
               : !list          ? "not inside a handler"
                                : "no name");
        json_decref(payload);
        return -1;
    }
    if (json_array_size(list) >= SW_STEP_MAX_OUT) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_%s(%s): more than %d in one step", what, name,
               SW_STEP_MAX_OUT);
        json_decref(payload);
        return -1;
    }
    if (!payload)
        payload = json_object();
    return json_array_append_new(list, json_pack("{s:s, s:o}", "name", name, "payload", payload));
}

int sw_ctx_chain(sw_ctx_t *ctx, const char *name, json_t *payload)
{
    if (ctx->chained && !ctx->in_computed && json_array_size(ctx->chained) >= ctx->max_chained &&
        ctx->max_chained < SW_STEP_MAX_OUT) {
        sw_log(SW_LOG_WARN, "app: sw_ctx_chain(%s): the token's event queue is full",
               name ? name : "(null)");
        json_decref(payload);
        return -1;
    }
    if (payload && !json_is_object(payload)) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_chain(%s): payload must be an object",
               name ? name : "(null)");
        json_decref(payload);
        return -1;
    }
    return push_out(ctx, ctx->chained, "chain", name, payload);
}

int sw_ctx_action(sw_ctx_t *ctx, const char *name, json_t *payload)
{
    return push_out(ctx, ctx->actions, "action", name, payload);
}

int sw_ctx_fail(sw_ctx_t *ctx, int code, const char *fmt, ...)
{
    va_list ap;

    ctx->failed = 1;
    ctx->fail_code = code;
    va_start(ap, fmt);
    vsnprintf(ctx->fail_msg, sizeof(ctx->fail_msg), fmt, ap);
    va_end(ap);
    return -1;
}

unsigned sw_ctx_step(sw_ctx_t *ctx)
{
    return ctx->step;
}

void sw_ctx_sleep(sw_ctx_t *ctx, unsigned ms)
{
    ctx->sleep_ms = ms;
}

const char *sw_ctx_user(sw_ctx_t *ctx)
{
    return ctx->user ? ctx->user : "";
}

const char *sw_ctx_token(sw_ctx_t *ctx)
{
    return ctx->token ? ctx->token : "";
}

const char *sw_ctx_route(sw_ctx_t *ctx)
{
    const char *p = json_string_value(json_object_get(ctx->t->router, "path"));

    return p ? p : "/";
}

const char *sw_ctx_route_param(sw_ctx_t *ctx, const char *name)
{
    const sw_appdef_t *app = ctx->app;
    const char *path = sw_ctx_route(ctx);
    char value[SW_ROUTE_PARAM_MAX];
    json_t *cached;

    if (!name)
        return NULL;
    cached = ctx->params ? json_object_get(ctx->params, name) : NULL;
    if (cached)
        return json_string_value(cached);
    for (size_t i = 0; i < app->nonload; i++) {
        if (!sw_onload_match(&app->onload[i], path, name, value))
            continue;
        if (!ctx->params)
            ctx->params = json_object();
        cached = json_string_nocheck(value);
        if (json_object_set_new(ctx->params, name, cached) < 0)
            return NULL;
        return json_string_value(cached);
    }
    return NULL;
}

json_t *sw_ctx_router(sw_ctx_t *ctx)
{
    return ctx->t->router;
}

/* ---- Links ---------------------------------------------------------------------- */

/* 1..64 chars of [A-Za-z0-9_:.-] with at least one ':'. */
static int valid_shared_token(const char *s)
{
    size_t n = 0;
    int colon = 0;

    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 64)
            return 0;
        if (c == ':')
            colon = 1;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return n > 0 && colon;
}

/* Where `state` is linked once this step's recorded operations apply: the
 * last op for the state, else t->links. NULL when unlinked. */
static const char *effective_link(sw_ctx_t *ctx, const char *state)
{
    for (size_t i = json_array_size(ctx->link_ops); i-- > 0;) {
        json_t *op = json_array_get(ctx->link_ops, i);
        if (strcmp(json_string_value(json_object_get(op, "state")), state) == 0)
            return json_string_value(json_object_get(op, "token")); /* NULL for unlink */
    }
    return json_string_value(json_object_get(ctx->t->links, state));
}

/* Common checks of sw_ctx_link/unlink; 0 or -1 (logged). */
static int check_link(sw_ctx_t *ctx, const char *what, const char *state, const char *token,
                      int linking)
{
    const sw_statedef_t *s = sw_appdef_find_state(ctx->app, state);
    const char *why = NULL;

    if (ctx->in_computed)
        why = "not allowed from a computed var";
    else if (!ctx->link_ops)
        why = "not inside a handler";
    else if (!s)
        why = "no such state";
    else if (!(s->flags & SW_STATE_SHARED))
        why = "state not declared SW_STATE_SHARED";
    else if (linking && !valid_shared_token(token))
        why = "shared token must be 1..64 chars of [A-Za-z0-9_:.-] with a ':'";
    else if (json_array_size(ctx->link_ops) >= SW_STEP_MAX_OUT)
        why = "too many link operations in one step";
    if (!why)
        return 0;
    sw_log(SW_LOG_ERROR, "app: sw_ctx_%s(%s%s%.64s): %s", what, state ? state : "(null)",
           linking ? ", " : "", linking ? (token ? token : "(null)") : "", why);
    return -1;
}

int sw_ctx_link(sw_ctx_t *ctx, const char *state, const char *shared_token)
{
    const char *cur;

    if (check_link(ctx, "link", state, shared_token, 1) < 0)
        return -1;
    cur = effective_link(ctx, state);
    if (cur && strcmp(cur, shared_token) == 0)
        return 0;
    return json_array_append_new(ctx->link_ops, json_pack("{s:s, s:s, s:s}", "op", "link", "state",
                                                          state, "token", shared_token));
}

int sw_ctx_unlink(sw_ctx_t *ctx, const char *state)
{
    if (check_link(ctx, "unlink", state, NULL, 0) < 0)
        return -1;
    if (!effective_link(ctx, state))
        return 0;
    return json_array_append_new(ctx->link_ops,
                                 json_pack("{s:s, s:s}", "op", "unlink", "state", state));
}

const char *sw_ctx_linked(sw_ctx_t *ctx, const char *state)
{
    if (!state)
        return NULL;
    return json_string_value(json_object_get(ctx->t->links, state));
}

json_int_t sw_ctx_viewers(sw_ctx_t *ctx, const char *state)
{
    const char *token = sw_ctx_linked(ctx, state);
    json_t *n;

    if (!token)
        return 0;
    n = json_object_get(ctx->t->presence, token);
    return json_is_integer(n) ? json_integer_value(n) : 0;
}

/* ---- The tree ----------------------------------------------------------------- */

void sw_tree_init(sw_tree_t *t, const sw_appdef_t *app)
{
    t->app = app;
    t->vars = json_object();
    t->computed = json_object();
    t->router = json_pack("{s:s}", "path", "/");
    t->links = json_object();
    t->presence = json_object();
    for (size_t i = 0; i < app->nstates; i++) {
        const sw_statedef_t *s = app->states[i];
        json_t *o = json_object();

        for (size_t k = 0; k < s->nstored; k++)
            json_object_set_new(o, s->stored[k]->name, json_deep_copy(s->stored[k]->def));
        json_object_set_new(t->vars, s->path, o);
        json_object_set_new(t->computed, s->path, json_object());
    }
    sw_tree_recompute_all(t);
}

void sw_tree_destroy(sw_tree_t *t)
{
    json_decref(t->vars);
    json_decref(t->computed);
    json_decref(t->router);
    json_decref(t->links);
    json_decref(t->presence);
    t->vars = t->computed = t->router = t->links = t->presence = NULL;
}

int sw_tree_load_state(sw_tree_t *t, const char *state, const char *mp, size_t len)
{
    const sw_statedef_t *s = sw_appdef_find_state(t->app, state);
    json_t *in, *o;
    int err = 0;

    if (!s)
        return SW_ENOTFOUND;
    in = sw_mpjson_decode(mp, len, &err);
    if (!json_is_object(in)) {
        sw_log(SW_LOG_WARN, "runtime: state %s: stored value is not a msgpack map (%s)", state,
               in ? "other type" : sw_strerror(err));
        json_decref(in);
        return SW_EINVAL;
    }
    o = json_object();
    for (size_t k = 0; k < s->nstored; k++) {
        const sw_vardef_t *v = s->stored[k];
        json_t *val = json_object_get(in, v->name);

        json_object_set_new(o, v->name, val ? json_incref(val) : json_deep_copy(v->def));
    }
    json_object_set_new(t->vars, s->path, o);
    json_decref(in);
    return 0;
}

void sw_tree_recompute_all(sw_tree_t *t)
{
    sw_ctx_t ctx;

    ctx_begin(&ctx, t, NULL, 0);
    for (size_t i = 0; i < t->app->ntopo; i++)
        ctx.marks[t->app->topo[i]->id] |= M_STALE;
    ctx.nstale = t->app->ntopo;
    finish(&ctx, NULL, NULL, NULL);
    ctx_end(&ctx);
}

int sw_tree_encode_state(const sw_tree_t *t, const char *state, sw_buf_t *out)
{
    const json_t *o = json_object_get(t->vars, state);

    if (!o || !sw_appdef_find_state(t->app, state))
        return SW_ENOTFOUND;
    return sw_mpjson_encode(o, out);
}

json_t *sw_tree_full(const sw_tree_t *t)
{
    const sw_appdef_t *app = t->app;
    json_t *full = json_object();

    for (size_t i = 0; i < app->nstates; i++) {
        const sw_statedef_t *s = app->states[i];
        json_t *o = json_object();
        const sw_vardef_t *v, *tmp;

        HASH_ITER(hh, s->vars, v, tmp)
        {
            json_t *val;
            if (v->backend)
                continue;
            val = json_object_get(home(t, v), v->name);
            if (val)
                json_object_set(o, v->name, val);
        }
        json_object_set_new(full, s->path, o);
    }
    return full;
}

/* Recompute the computed vars in deps[0..n) and their dependents; the
 * public changes go into delta (may be NULL). */
static void recompute_deps(sw_tree_t *t, sw_vardef_t *const *deps, size_t n, json_t *delta)
{
    sw_ctx_t ctx;

    if (n == 0)
        return;
    ctx_begin(&ctx, t, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        sw_vardef_t *v = deps[i];
        if (!(ctx.marks[v->id] & M_STALE)) {
            ctx.marks[v->id] |= M_STALE;
            ctx.nstale++;
        }
        mark_stale(&ctx, v);
    }
    finish(&ctx, delta, NULL, NULL);
    ctx_end(&ctx);
}

void sw_tree_set_router(sw_tree_t *t, json_t *router, json_t *delta)
{
    const sw_appdef_t *app = t->app;

    if (!json_is_object(router) || !json_is_string(json_object_get(router, "path"))) {
        json_decref(router);
        router = json_pack("{s:s}", "path", "/");
    }
    if (json_equal(router, t->router)) {
        json_decref(router);
        return;
    }
    json_decref(t->router);
    t->router = router;
    recompute_deps(t, app->router_deps, app->nrouter_deps, delta);
}

void sw_tree_set_links(sw_tree_t *t, json_t *links, json_t *delta)
{
    if (!json_is_object(links)) {
        json_decref(links);
        links = json_object();
    }
    if (json_equal(links, t->links)) {
        json_decref(links);
        return;
    }
    json_decref(t->links);
    t->links = links;
    recompute_deps(t, t->app->links_deps, t->app->nlinks_deps, delta);
}

void sw_tree_set_presence(sw_tree_t *t, const char *shared_token, json_int_t n, json_t *delta)
{
    json_t *cur;

    if (!shared_token)
        return;
    cur = json_object_get(t->presence, shared_token);
    if (n <= 0) {
        if (!cur)
            return;
        json_object_del(t->presence, shared_token);
    } else {
        if (json_integer_value(cur) == n)
            return;
        json_object_set_new(t->presence, shared_token, json_integer(n));
    }
    recompute_deps(t, t->app->presence_deps, t->app->npresence_deps, delta);
}

/* Set the stored var v of a tree to `value` (stolen) inside ctx. Values
 * from the caller are shared by reference: like every value in a tree,
 * they are never modified in place. */
static void tree_set(sw_ctx_t *ctx, sw_vardef_t *v, json_t *value)
{
    json_t *cur = json_object_get(home(ctx->t, v), v->name);

    if (cur && json_equal(cur, value)) {
        json_decref(value);
        return;
    }
    record(ctx, v);
    json_object_set_new(home_or_create(ctx->t, v), v->name, value);
    mark_stale(ctx, v);
}

int sw_tree_replace_state(sw_tree_t *t, const char *state, const json_t *vars, int all,
                          json_t *delta)
{
    sw_statedef_t *s = sw_appdef_find_state(t->app, state);
    sw_ctx_t ctx;

    if (!s)
        return SW_ENOTFOUND;
    ctx_begin(&ctx, t, NULL, 0);
    for (size_t k = 0; k < s->nstored; k++) {
        sw_vardef_t *v = s->stored[k];
        json_t *val = json_is_object(vars) ? json_object_get(vars, v->name) : NULL;

        tree_set(&ctx, v, val ? json_incref(val) : json_deep_copy(v->def));
    }
    finish(&ctx, delta, NULL, NULL);
    ctx_end(&ctx);
    if (all && delta)
        for (size_t k = 0; k < s->nstored; k++)
            if (!s->stored[k]->backend)
                put(delta, s->stored[k],
                    json_object_get(json_object_get(t->vars, s->path), s->stored[k]->name));
    return 0;
}

int sw_tree_apply_vars(sw_tree_t *t, const char *state, const json_t *vars, json_t *delta)
{
    sw_statedef_t *s = sw_appdef_find_state(t->app, state);
    const char *name;
    json_t *val;
    sw_ctx_t ctx;

    if (!s)
        return SW_ENOTFOUND;
    if (!json_is_object(vars))
        return 0;
    ctx_begin(&ctx, t, NULL, 0);
    json_object_foreach((json_t *)vars, name, val)
    {
        sw_vardef_t *v = NULL;

        HASH_FIND_STR(s->vars, name, v);
        if (v && !v->computed)
            tree_set(&ctx, v, json_incref(val));
    }
    finish(&ctx, delta, NULL, NULL);
    ctx_end(&ctx);
    return 0;
}

json_t *sw_tree_state_vars(const sw_tree_t *t, const char *state)
{
    if (!sw_appdef_find_state(t->app, state))
        return NULL;
    return json_object_get(t->vars, state);
}

int sw_tree_links_all_shared(const sw_tree_t *t, const char *shared_token)
{
    const sw_appdef_t *app = t->app;

    for (size_t i = 0; i < app->nstates; i++) {
        const sw_statedef_t *s = app->states[i];
        const char *r;

        if (!(s->flags & SW_STATE_SHARED))
            continue;
        r = json_string_value(json_object_get(t->links, s->path));
        if (!r || strcmp(r, shared_token) != 0)
            return 0;
    }
    return 1;
}

/* ---- Running a step ----------------------------------------------------------- */

/* Does `value` fit a var whose default is `def`? null fits every var; an
 * integer default takes integers, a real default any number, a boolean
 * default true/false, anything else the same JSON type. A null default
 * takes anything. */
static int type_fits(const json_t *def, const json_t *value)
{
    if (json_is_null(value) || json_is_null(def))
        return 1;
    if (json_is_real(def))
        return json_is_number(value);
    if (json_is_boolean(def))
        return json_is_boolean(value);
    return json_typeof(def) == json_typeof(value);
}

static int run_setter(sw_ctx_t *ctx, sw_vardef_t *v, json_t *payload)
{
    json_t *value = json_object_get(payload, "value");

    if (!value)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "%s.set_%s needs a payload {\"value\": ...}",
                           v->state->path, v->name);
    if (!type_fits(v->def, value))
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "%s.%s: value has the wrong type",
                           v->state->path, v->name);
    return set_var(ctx, v, json_incref(value));
}

static void step_error(sw_step_t *out, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void step_error(sw_step_t *out, const char *code, const char *fmt, ...)
{
    va_list ap;

    out->status = -1;
    out->error_code = code;
    va_start(ap, fmt);
    vsnprintf(out->error_msg, sizeof(out->error_msg), fmt, ap);
    va_end(ap);
    json_array_clear(out->actions);
    json_array_clear(out->chained);
    json_array_clear(out->dirty);
    json_array_clear(out->link_ops);
    json_object_clear(out->changed);
    json_object_clear(out->delta);
}

int sw_runtime_step(sw_tree_t *t, const sw_step_in_t *in, sw_step_t *out)
{
    const char *name = in->name;
    json_t *payload = in->payload;
    const sw_eventdef_t *e;
    json_t *own = NULL;
    sw_ctx_t ctx;
    int rc;

    memset(out, 0, sizeof(*out));
    out->delta = json_object();
    out->actions = json_array();
    out->chained = json_array();
    out->dirty = json_array();
    out->changed = json_object();
    out->link_ops = json_array();
    e = sw_appdef_find_event(t->app, name);
    if (!e) {
        step_error(out, "unknown_event", "no handler %s", name ? name : "(null)");
        return out->status;
    }
    if (!payload)
        payload = own = json_object();
    ctx_begin(&ctx, t, in->token, in->step);
    ctx.user = in->user ? in->user : "";
    ctx.max_chained = SW_MIN(in->max_chained, (size_t)SW_MAX_CHAINED);
    ctx.actions = out->actions;
    ctx.chained = out->chained;
    ctx.link_ops = out->link_ops;
    if (e->kind == SW_EVENT_SETTER)
        rc = run_setter(&ctx, e->var, payload);
    else
        rc = e->fn(&ctx, payload);
    if (rc == SW_DONE || rc == SW_YIELD) {
        finish(&ctx, out->delta, out->dirty, out->changed);
        out->status = rc;
        out->sleep_ms = rc == SW_YIELD ? ctx.sleep_ms : 0;
    } else {
        rollback(&ctx);
        if (rc > 0) {
            sw_log(SW_LOG_ERROR, "app: %s returned %d (not SW_DONE, SW_YIELD or a failure)", name,
                   rc);
            step_error(out, "handler_error", "handler failed");
        } else if (ctx.failed) {
            step_error(out, ctx.fail_code == SW_FAIL_BAD_PAYLOAD ? "bad_payload" : "handler_error",
                       "%s", ctx.fail_msg);
        } else {
            step_error(out, "handler_error", "handler failed");
        }
    }
    ctx_end(&ctx);
    json_decref(own);
    return out->status;
}

void sw_step_destroy(sw_step_t *s)
{
    json_decref(s->delta);
    json_decref(s->actions);
    json_decref(s->chained);
    json_decref(s->dirty);
    json_decref(s->changed);
    json_decref(s->link_ops);
    s->delta = s->actions = s->chained = s->dirty = s->changed = s->link_ops = NULL;
}
