/* runtime_tree.c — a token's state tree (the sw_tree_* of worker/runtime.h)
 * and the change engine every change of a tree goes through: undo log,
 * stale marks, lazy recompute of computed vars (worker/runtime_int.h).
 * Calls nothing of the handler context but the app's computed-var
 * functions, through their pointers. */
#include "worker/runtime_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"

/* marks[var id] bits */
#define M_UNDO 0x1u  /* the var's previous value is in the undo log */
#define M_STALE 0x2u /* computed var whose deps changed since it was computed */
#define M_BUSY 0x4u  /* computed var being computed (guards undeclared cycles) */

/* ---- The change engine --------------------------------------------------- */

void sw_rt__begin(sw_ctx_t *ctx, sw_tree_t *t, const char *token, unsigned step)
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

void sw_rt__end(sw_ctx_t *ctx)
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

void sw_rt__set(sw_ctx_t *ctx, sw_vardef_t *v, json_t *value)
{
    record(ctx, v);
    json_object_set_new(home_or_create(ctx->t, v), v->name, value);
    mark_stale(ctx, v);
}

void sw_rt__refresh(sw_ctx_t *ctx, sw_vardef_t *v)
{
    if (v->computed && (ctx->marks[v->id] & M_STALE) && !(ctx->marks[v->id] & M_BUSY))
        compute(ctx, v);
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

void sw_rt__finish(sw_ctx_t *ctx, json_t *delta, json_t *dirty, json_t *changed)
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

void sw_rt__rollback(sw_ctx_t *ctx)
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

    sw_rt__begin(&ctx, t, NULL, 0);
    for (size_t i = 0; i < t->app->ntopo; i++)
        ctx.marks[t->app->topo[i]->id] |= M_STALE;
    ctx.nstale = t->app->ntopo;
    sw_rt__finish(&ctx, NULL, NULL, NULL);
    sw_rt__end(&ctx);
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
    sw_rt__begin(&ctx, t, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        sw_vardef_t *v = deps[i];
        if (!(ctx.marks[v->id] & M_STALE)) {
            ctx.marks[v->id] |= M_STALE;
            ctx.nstale++;
        }
        mark_stale(&ctx, v);
    }
    sw_rt__finish(&ctx, delta, NULL, NULL);
    sw_rt__end(&ctx);
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
    sw_rt__begin(&ctx, t, NULL, 0);
    for (size_t k = 0; k < s->nstored; k++) {
        sw_vardef_t *v = s->stored[k];
        json_t *val = json_is_object(vars) ? json_object_get(vars, v->name) : NULL;

        tree_set(&ctx, v, val ? json_incref(val) : json_deep_copy(v->def));
    }
    sw_rt__finish(&ctx, delta, NULL, NULL);
    sw_rt__end(&ctx);
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
    sw_rt__begin(&ctx, t, NULL, 0);
    json_object_foreach((json_t *)vars, name, val)
    {
        sw_vardef_t *v = NULL;

        HASH_FIND_STR(s->vars, name, v);
        if (v && !v->computed)
            tree_set(&ctx, v, json_incref(val));
    }
    sw_rt__finish(&ctx, delta, NULL, NULL);
    sw_rt__end(&ctx);
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
