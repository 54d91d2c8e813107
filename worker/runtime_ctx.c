/* runtime_ctx.c — the handler context: the sw_ctx_* of include/statewire.h
 * that handlers, tasks and computed vars call (reads, sets, chained
 * events, client actions, route, links). Changes go through the tree's
 * change engine (worker/runtime_tree.c, sw_rt__*).
 *
 * Links: sw_ctx_link()/sw_ctx_unlink() only record operations in
 * sw_step_t.link_ops; the worker's pipeline applies them after the step
 * (sw_tree_set_links, sw_tree_replace_state). */
#include "worker/runtime_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* Chained events, client actions and link operations one step may
 * produce; past the bound sw_ctx_chain() / sw_ctx_action() / sw_ctx_link()
 * / sw_ctx_unlink() return -1. */
#define SW_STEP_MAX_OUT SW_MAX_CHAINED

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
    if (v && v->computed) {
        sw_rt__refresh(ctx, v);
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
    sw_rt__set(ctx, v, value);
    return 0;
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
    sw_step_t *out = ctx->out;
    if (ctx->in_computed || !out || !name || !*name) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_chain(%s): %s", name ? name : "(null)",
               ctx->in_computed ? "not allowed from a computed var"
               : !out           ? "not inside a handler"
                                : "no name");
        json_decref(payload);
        return -1;
    }
    if (out->nchained >= ctx->max_chained && ctx->max_chained < SW_STEP_MAX_OUT) {
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
    if (out->nchained >= SW_STEP_MAX_OUT) {
        sw_log(SW_LOG_ERROR, "app: sw_ctx_chain(%s): more than %d in one step", name,
               SW_STEP_MAX_OUT);
        json_decref(payload);
        return -1;
    }
    if ((out->nchained & (out->nchained - 1)) == 0) /* 0, 1, 2, 4, ...: grow */
        out->chained = sw_xrealloc(out->chained,
                                   (out->nchained ? out->nchained * 2 : 1) * sizeof(*out->chained));
    out->chained[out->nchained++] =
        (sw_chained_t){.name = sw_xstrdup(name), .payload = payload ? payload : json_object()};
    return 0;
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
    for (size_t i = ctx->out->nlink_ops; i-- > 0;) {
        const sw_link_op_t *op = &ctx->out->link_ops[i];
        if (strcmp(op->state, state) == 0)
            return op->token; /* NULL for unlink */
    }
    return json_string_value(json_object_get(ctx->t->links, state));
}

/* Append a link op (strings copied); the caller checked the bound. */
static int push_link_op(sw_step_t *out, sw_link_op_kind_t op, const char *state, const char *token)
{
    if ((out->nlink_ops & (out->nlink_ops - 1)) == 0) /* 0, 1, 2, 4, ...: grow */
        out->link_ops = sw_xrealloc(out->link_ops, (out->nlink_ops ? out->nlink_ops * 2 : 1) *
                                                       sizeof(*out->link_ops));
    out->link_ops[out->nlink_ops++] = (sw_link_op_t){
        .op = op, .state = sw_xstrdup(state), .token = token ? sw_xstrdup(token) : NULL};
    return 0;
}

/* Common checks of sw_ctx_link/unlink; 0 or -1 (logged). */
static int check_link(sw_ctx_t *ctx, const char *what, const char *state, const char *token,
                      int linking)
{
    const sw_statedef_t *s = sw_appdef_find_state(ctx->app, state);
    const char *why = NULL;

    if (ctx->in_computed)
        why = "not allowed from a computed var";
    else if (!ctx->out)
        why = "not inside a handler";
    else if (!s)
        why = "no such state";
    else if (!(s->flags & SW_STATE_SHARED))
        why = "state not declared SW_STATE_SHARED";
    else if (linking && !valid_shared_token(token))
        why = "shared token must be 1..64 chars of [A-Za-z0-9_:.-] with a ':'";
    else if (ctx->out->nlink_ops >= SW_STEP_MAX_OUT)
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
    return push_link_op(ctx->out, SW_LINK_OP_LINK, state, shared_token);
}

int sw_ctx_unlink(sw_ctx_t *ctx, const char *state)
{
    if (check_link(ctx, "unlink", state, NULL, 0) < 0)
        return -1;
    if (!effective_link(ctx, state))
        return 0;
    return push_link_op(ctx->out, SW_LINK_OP_UNLINK, state, NULL);
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
