/* runtime.c — running one handler step against a token's state tree: the
 * sw_runtime_step and sw_step_destroy of worker/runtime.h. Setters are
 * handled here; handlers and tasks are the app's functions, called with a
 * handler context (worker/runtime_ctx.c). The step's changes go through
 * the tree's change engine (worker/runtime_tree.c): on success its undo
 * log gives the delta, on failure it puts the tree back exactly. */
#include "worker/runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/runtime_int.h"

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
    sw_rt__set(ctx, v, json_incref(value));
    return 0;
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
    sw_step_clear_out(out);
    json_array_clear(out->dirty);
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
    out->dirty = json_array();
    out->changed = json_object();
    e = sw_appdef_find_event(t->app, name);
    if (!e) {
        step_error(out, "unknown_event", "no handler %s", name ? name : "(null)");
        return out->status;
    }
    if (!payload)
        payload = own = json_object();
    sw_rt__begin(&ctx, t, in->token, in->step);
    ctx.user = in->user ? in->user : "";
    ctx.max_chained = SW_MIN(in->max_chained, (size_t)SW_MAX_CHAINED);
    ctx.actions = out->actions;
    ctx.out = out;
    if (e->kind == SW_EVENT_SETTER)
        rc = run_setter(&ctx, e->var, payload);
    else
        rc = e->fn(&ctx, payload);
    if (rc == SW_DONE || rc == SW_YIELD) {
        sw_rt__finish(&ctx, out->delta, out->dirty, out->changed);
        out->status = rc;
        out->sleep_ms = rc == SW_YIELD ? ctx.sleep_ms : 0;
    } else {
        sw_rt__rollback(&ctx);
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
    sw_rt__end(&ctx);
    json_decref(own);
    return out->status;
}

void sw_step_clear_out(sw_step_t *s)
{
    for (size_t i = 0; i < s->nchained; i++) {
        free(s->chained[i].name);
        json_decref(s->chained[i].payload);
    }
    free(s->chained);
    s->chained = NULL;
    s->nchained = 0;
    for (size_t i = 0; i < s->nlink_ops; i++) {
        free(s->link_ops[i].state);
        free(s->link_ops[i].token);
    }
    free(s->link_ops);
    s->link_ops = NULL;
    s->nlink_ops = 0;
}

void sw_step_destroy(sw_step_t *s)
{
    json_decref(s->delta);
    json_decref(s->actions);
    json_decref(s->dirty);
    json_decref(s->changed);
    sw_step_clear_out(s);
    s->delta = s->actions = s->dirty = s->changed = NULL;
}
