/* test_runtime.c — the app registry and the runtime: trees, steps, deltas,
 * rollback, setters, computed vars, routes, msgpack round trip. */
#include "worker/runtime.h"

#include <criterion/criterion.h>
#include <string.h>

#include "common/buf.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "support/step_json.h"

/* ---- A test app ----------------------------------------------------------- */

static json_t *c_x2(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "a", "x") * 2);
}

static json_t *c_x4(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "a", "x2") * 2);
}

static json_t *c_parity(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "a", "x") % 2);
}

static json_t *c_sum(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "a", "x") + sw_ctx_get_int(ctx, "b.sub", "y"));
}

static json_t *c_path(sw_ctx_t *ctx)
{
    const char *id = sw_ctx_route_param(ctx, "id");
    return json_string(id ? id : "none");
}

static json_t *c_bad_set(sw_ctx_t *ctx)
{
    (void)sw_ctx_get(ctx, "a", "x");
    return json_integer(sw_ctx_set(ctx, "a", "x", json_integer(99)));
}

static int h_inc(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    return sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + 1));
}

static int h_same(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    return sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x")));
}

static int h_secret(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    return sw_ctx_set(ctx, "a", "_secret", json_integer(sw_ctx_get_int(ctx, "a", "_secret") + 1));
}

static int h_fail_after_set(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(100));
    sw_ctx_set(ctx, "b.sub", "y", json_integer(5));
    sw_ctx_set(ctx, "a", "_secret", json_integer(7));
    cr_assert_eq(sw_ctx_get_int(ctx, "a", "x4"), 400); /* lazily recomputed */
    sw_ctx_chain(ctx, "a.inc", NULL);
    sw_ctx_action(ctx, "_toast", NULL);
    return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "boom %d", 42);
}

static int h_fail_plain(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(100));
    return -1;
}

static int h_bad(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "bad thing");
}

static int h_chain(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    cr_assert_eq(sw_ctx_chain(ctx, "a.inc", json_pack("{s:i}", "k", 1)), 0);
    cr_assert_eq(sw_ctx_action(ctx, "_toast", NULL), 0);
    cr_assert_eq(sw_ctx_chain(ctx, "a.inc", json_integer(3)), -1); /* not an object */
    cr_assert_str_eq(sw_ctx_token(ctx), "tok1");
    return SW_DONE;
}

static int h_read_computed(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(5));
    return sw_ctx_set(ctx, "a", "_secret", json_integer(sw_ctx_get_int(ctx, "a", "x4")));
}

static int h_yielder(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "a", "x", json_integer(sw_ctx_get_int(ctx, "a", "x") + 1));
    if (sw_ctx_step(ctx) == 0) {
        sw_ctx_sleep(ctx, 5);
        return SW_YIELD;
    }
    return SW_DONE;
}

static int h_bad_set(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    cr_assert_eq(sw_ctx_set(ctx, "a", "x2", json_integer(1)), -1);   /* computed */
    cr_assert_eq(sw_ctx_set(ctx, "a", "nope", json_integer(1)), -1); /* undeclared */
    cr_assert_eq(sw_ctx_set(ctx, "zzz", "x", json_integer(1)), -1);  /* no state */
    cr_assert_null(sw_ctx_get(ctx, "a", "nope"));
    cr_assert_str_eq(sw_ctx_get_str(ctx, "a", "x"), "");
    return SW_DONE;
}

static int test_app(sw_app_t *app)
{
    int rc = 0;
    rc |= sw_app_name(app, "test");
    rc |= sw_app_state(app, "a", 0);
    rc |= sw_app_var(app, "a", "x", "0", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "s", "\"\"", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "r", "1.5", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "b", "false", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "arr", "[]", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "obj", "{\"k\": 1}", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "n", "null", SW_VAR_SETTABLE);
    rc |= sw_app_var(app, "a", "_secret", "0", 0);
    /* x4 is declared before x2, its dependency: order comes from the deps */
    rc |= sw_app_computed(app, "a", "x4", c_x4, "a.x2");
    rc |= sw_app_computed(app, "a", "x2", c_x2, "a.x");
    rc |= sw_app_computed(app, "a", "parity", c_parity, "a.x");
    rc |= sw_app_computed(app, "a", "bad_set", c_bad_set, "a.x");
    rc |= sw_app_state(app, "b.sub", SW_STATE_SHARED);
    rc |= sw_app_var(app, "b.sub", "y", "0", 0);
    rc |= sw_app_computed(app, "b.sub", "sum", c_sum, " a.x , b.sub.y ");
    rc |= sw_app_computed(app, "b.sub", "path", c_path, "router");
    rc |= sw_app_handler(app, "a", "inc", h_inc);
    rc |= sw_app_handler(app, "a", "same", h_same);
    rc |= sw_app_handler(app, "a", "secret", h_secret);
    rc |= sw_app_handler(app, "a", "fail_after_set", h_fail_after_set);
    rc |= sw_app_handler(app, "a", "fail_plain", h_fail_plain);
    rc |= sw_app_handler(app, "a", "bad", h_bad);
    rc |= sw_app_handler(app, "a", "chain", h_chain);
    rc |= sw_app_handler(app, "a", "read_computed", h_read_computed);
    rc |= sw_app_handler(app, "a", "bad_set", h_bad_set);
    rc |= sw_app_task(app, "a", "yielder", h_yielder);
    rc |= sw_app_on_load(app, "/item/[id]", "a.inc");
    rc |= sw_app_on_load(app, "*", "a.secret");
    rc |= sw_app_on_load(app, "/", "a.yielder");
    return rc ? -1 : 0;
}

static sw_appdef_t *app;
static sw_tree_t tree;

static void setup(void)
{
    app = sw_appdef_new(test_app);
    cr_assert_not_null(app);
    sw_tree_init(&tree, app);
}

static void teardown(void)
{
    sw_tree_destroy(&tree);
    sw_appdef_free(app);
}

TestSuite(runtime, .init = setup, .fini = teardown);

/* Run `name` with payload JSON text (NULL = none). */
static int run(const char *name, const char *payload, sw_step_t *out)
{
    json_t *p = payload ? json_loads(payload, 0, NULL) : NULL;
    int rc;

    if (payload)
        cr_assert_not_null(p, "bad test payload %s", payload);
    sw_step_in_t in = {.token = "tok1", .name = name, .payload = p, .max_chained = SW_MAX_CHAINED};
    rc = sw_runtime_step(&tree, &in, out);
    json_decref(p);
    return rc;
}

static void assert_json(json_t *got, const char *want)
{
    json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);

    cr_assert_not_null(w, "bad expected JSON %s", want);
    cr_assert(json_equal(got, w), "got %s, want %s", g, want);
    free(g);
    json_decref(w);
}

/* assert_json on a new reference, released after. */
static void assert_json_new(json_t *got, const char *want)
{
    assert_json(got, want);
    json_decref(got);
}

static void assert_ok(sw_step_t *s, const char *delta, const char *dirty)
{
    cr_assert_eq(s->status, SW_DONE, "status %d (%s: %s)", s->status,
                 s->error_code ? s->error_code : "-", s->error_msg);
    assert_json(s->delta, delta);
    assert_json(s->dirty, dirty);
}

Test(runtime, registry_queries)
{
    cr_assert_str_eq(sw_appdef_name(app), "test");
    cr_assert_eq(sw_appdef_nstates(app), 2);
    cr_assert_str_eq(sw_appdef_state(app, 0), "a");
    cr_assert_str_eq(sw_appdef_state(app, 1), "b.sub");
    cr_assert_null(sw_appdef_state(app, 2));
    cr_assert_eq(sw_appdef_state_flags(app, "b.sub"), SW_STATE_SHARED);
    cr_assert_eq(sw_appdef_state_flags(app, "a"), 0);
    cr_assert_eq(sw_appdef_state_flags(app, "nope"), -1);
    cr_assert_eq(sw_appdef_event_kind(app, "a.inc"), SW_EVENT_HANDLER);
    cr_assert_eq(sw_appdef_event_kind(app, "a.set_x"), SW_EVENT_SETTER);
    cr_assert_eq(sw_appdef_event_kind(app, "a.yielder"), SW_EVENT_TASK);
    cr_assert_eq(sw_appdef_event_kind(app, "a.set__secret"), SW_EVENT_UNKNOWN);
    cr_assert_eq(sw_appdef_event_kind(app, "a.nope"), SW_EVENT_UNKNOWN);
}

Test(runtime, on_load_matching)
{
    const char *ev[4];

    cr_assert_eq(sw_appdef_on_load(app, "/item/abc", ev, 4), 2);
    cr_assert_str_eq(ev[0], "a.inc");
    cr_assert_str_eq(ev[1], "a.secret");
    cr_assert_eq(sw_appdef_on_load(app, "/", ev, 4), 2);
    cr_assert_str_eq(ev[0], "a.secret");
    cr_assert_str_eq(ev[1], "a.yielder");
    cr_assert_eq(sw_appdef_on_load(app, "/item/abc/more", ev, 4), 1);
    cr_assert_eq(sw_appdef_on_load(app, "/item/abc", ev, 1), 2); /* count beyond max */
    cr_assert_str_eq(ev[0], "a.inc");
}

Test(runtime, defaults_and_full_tree)
{
    json_t *full = sw_tree_full(&tree);

    assert_json(full, "{\"a\": {\"x\": 0, \"s\": \"\", \"r\": 1.5, \"b\": false, \"arr\": [],"
                      " \"obj\": {\"k\": 1}, \"n\": null, \"x4\": 0, \"x2\": 0, \"parity\": 0,"
                      " \"bad_set\": -1},"
                      " \"b.sub\": {\"y\": 0, \"sum\": 0, \"path\": \"none\"}}");
    cr_assert_null(json_object_get(json_object_get(full, "a"), "_secret"));
    cr_assert_not_null(json_object_get(json_object_get(tree.vars, "a"), "_secret"));
    json_decref(full);
}

Test(runtime, set_gives_delta_of_changed_vars_and_computed)
{
    sw_step_t s;

    cr_assert_eq(run("a.set_x", "{\"value\": 3}", &s), SW_DONE);
    assert_ok(&s,
              "{\"a\": {\"x\": 3, \"x2\": 6, \"x4\": 12, \"parity\": 1},"
              " \"b.sub\": {\"sum\": 3}}",
              "[\"a\"]");
    sw_step_destroy(&s);
    /* x 3 -> 5: parity stays 1, bad_set stays -1: neither is sent */
    cr_assert_eq(run("a.set_x", "{\"value\": 5}", &s), SW_DONE);
    assert_ok(&s, "{\"a\": {\"x\": 5, \"x2\": 10, \"x4\": 20}, \"b.sub\": {\"sum\": 5}}",
              "[\"a\"]");
    sw_step_destroy(&s);
}

Test(runtime, set_to_same_value_is_no_change)
{
    sw_step_t s;

    run("a.same", NULL, &s);
    assert_ok(&s, "{}", "[]");
    sw_step_destroy(&s);
    run("a.set_obj", "{\"value\": {\"k\": 1}}", &s);
    assert_ok(&s, "{}", "[]");
    sw_step_destroy(&s);
}

Test(runtime, backend_only_change_is_dirty_not_delta)
{
    sw_step_t s;

    run("a.secret", NULL, &s);
    assert_ok(&s, "{}", "[\"a\"]");
    sw_step_destroy(&s);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(tree.vars, "a"), "_secret")),
                 1);
}

Test(runtime, computed_read_inside_handler_is_current)
{
    sw_step_t s;

    run("a.read_computed", NULL, &s);
    assert_ok(&s,
              "{\"a\": {\"x\": 5, \"x2\": 10, \"x4\": 20, \"parity\": 1},"
              " \"b.sub\": {\"sum\": 5}}",
              "[\"a\"]");
    sw_step_destroy(&s);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(tree.vars, "a"), "_secret")),
                 20);
}

Test(runtime, set_from_computed_is_refused)
{
    /* bad_set's sw_ctx_set() returned -1 and x kept its value */
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(tree.computed, "a"), "bad_set")), -1);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(tree.vars, "a"), "x")), 0);
}

Test(runtime, bad_sets_from_handler)
{
    sw_step_t s;

    run("a.bad_set", NULL, &s);
    assert_ok(&s, "{}", "[]");
    sw_step_destroy(&s);
}

Test(runtime, failure_rolls_back_exactly)
{
    sw_step_t s;
    json_t *vars, *computed;

    run("a.set_x", "{\"value\": 2}", &s);
    sw_step_destroy(&s);
    vars = json_deep_copy(tree.vars);
    computed = json_deep_copy(tree.computed);

    cr_assert_eq(run("a.fail_after_set", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "handler_error");
    cr_assert_str_eq(s.error_msg, "boom 42");
    assert_json(s.delta, "{}");
    assert_json(s.dirty, "[]");
    assert_json(s.actions, "[]");
    assert_json_new(sw_test_chained_json(&s), "[]");
    cr_assert(json_equal(tree.vars, vars));
    cr_assert(json_equal(tree.computed, computed));
    sw_step_destroy(&s);

    cr_assert_eq(run("a.fail_plain", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "handler_error");
    cr_assert_str_eq(s.error_msg, "handler failed");
    cr_assert(json_equal(tree.vars, vars));
    cr_assert(json_equal(tree.computed, computed));
    sw_step_destroy(&s);

    cr_assert_eq(run("a.bad", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "bad_payload");
    cr_assert_str_eq(s.error_msg, "bad thing");
    sw_step_destroy(&s);

    /* the tree still works after a rollback */
    run("a.inc", NULL, &s);
    assert_ok(&s,
              "{\"a\": {\"x\": 3, \"x2\": 6, \"x4\": 12, \"parity\": 1},"
              " \"b.sub\": {\"sum\": 3}}",
              "[\"a\"]");
    sw_step_destroy(&s);
    json_decref(vars);
    json_decref(computed);
}

Test(runtime, unknown_event)
{
    sw_step_t s;

    cr_assert_eq(run("a.nope", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "unknown_event");
    cr_assert_str_eq(s.error_msg, "no handler a.nope");
    assert_json(s.delta, "{}");
    sw_step_destroy(&s);
}

static void expect_setter(const char *name, const char *payload, int ok)
{
    sw_step_t s;
    int rc = run(name, payload, &s);

    if (ok) {
        cr_assert_eq(rc, SW_DONE, "%s %s: %s", name, payload, s.error_msg);
    } else {
        cr_assert_eq(rc, -1, "%s %s accepted", name, payload);
        cr_assert_str_eq(s.error_code, "bad_payload");
    }
    sw_step_destroy(&s);
}

Test(runtime, setter_type_checks)
{
    expect_setter("a.set_x", "{\"value\": \"3\"}", 0);
    expect_setter("a.set_x", "{\"value\": 1.5}", 0);
    expect_setter("a.set_x", "{}", 0);
    expect_setter("a.set_x", "{\"other\": 1}", 0);
    expect_setter("a.set_x", "{\"value\": 7}", 1);
    expect_setter("a.set_x", "{\"value\": null}", 1);
    expect_setter("a.set_r", "{\"value\": 2}", 1);
    expect_setter("a.set_r", "{\"value\": 2.25}", 1);
    expect_setter("a.set_r", "{\"value\": \"2\"}", 0);
    expect_setter("a.set_b", "{\"value\": true}", 1);
    expect_setter("a.set_b", "{\"value\": false}", 1);
    expect_setter("a.set_b", "{\"value\": 1}", 0);
    expect_setter("a.set_s", "{\"value\": \"hi\"}", 1);
    expect_setter("a.set_s", "{\"value\": 5}", 0);
    expect_setter("a.set_arr", "{\"value\": [1, 2]}", 1);
    expect_setter("a.set_arr", "{\"value\": {}}", 0);
    expect_setter("a.set_obj", "{\"value\": {\"z\": 2}}", 1);
    expect_setter("a.set_obj", "{\"value\": []}", 0);
    expect_setter("a.set_n", "{\"value\": [\"anything\"]}", 1);

    json_t *a = json_object_get(tree.vars, "a");
    cr_assert(json_is_null(json_object_get(a, "x")));
    assert_json(json_object_get(a, "r"), "2.25");
    assert_json(json_object_get(a, "s"), "\"hi\"");
    assert_json(json_object_get(a, "arr"), "[1, 2]");
}

Test(runtime, chain_and_action_outputs)
{
    sw_step_t s;

    run("a.chain", NULL, &s);
    assert_ok(&s, "{}", "[]");
    assert_json_new(sw_test_chained_json(&s), "[{\"name\": \"a.inc\", \"payload\": {\"k\": 1}}]");
    assert_json(s.actions, "[{\"name\": \"_toast\", \"payload\": {}}]");
    sw_step_destroy(&s);
}

Test(runtime, yield_steps)
{
    sw_step_t s;

    sw_step_in_t in = {.token = "tok1", .name = "a.yielder", .max_chained = SW_MAX_CHAINED};
    cr_assert_eq(sw_runtime_step(&tree, &in, &s), SW_YIELD);
    cr_assert_eq(s.sleep_ms, 5);
    assert_json(s.delta, "{\"a\": {\"x\": 1, \"x2\": 2, \"x4\": 4, \"parity\": 1},"
                         " \"b.sub\": {\"sum\": 1}}");
    sw_step_destroy(&s);
    in.step = 1;
    cr_assert_eq(sw_runtime_step(&tree, &in, &s), SW_DONE);
    cr_assert_eq(s.sleep_ms, 0);
    assert_json(s.delta, "{\"a\": {\"x\": 2, \"x2\": 4, \"x4\": 8, \"parity\": 0},"
                         " \"b.sub\": {\"sum\": 2}}");
    sw_step_destroy(&s);
}

Test(runtime, router_params)
{
    json_t *delta = json_object();
    char longpath[300];

    sw_tree_set_router(&tree, json_pack("{s:s, s:{}}", "path", "/item/abc", "query"), delta);
    assert_json(delta, "{\"b.sub\": {\"path\": \"abc\"}}");
    json_object_clear(delta);
    /* the same router again: nothing changes */
    sw_tree_set_router(&tree, json_pack("{s:s, s:{}}", "path", "/item/abc", "query"), delta);
    assert_json(delta, "{}");
    /* not an object with a string path: becomes "/" */
    sw_tree_set_router(&tree, json_integer(3), delta);
    assert_json(delta, "{\"b.sub\": {\"path\": \"none\"}}");
    assert_json(tree.router, "{\"path\": \"/\"}");
    json_object_clear(delta);
    /* a parameter of 128 bytes or more does not match */
    memset(longpath, 'z', sizeof(longpath));
    memcpy(longpath, "/item/", 6);
    longpath[6 + 128] = '\0';
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", longpath), delta);
    assert_json(delta, "{}");
    longpath[6 + 127] = '\0';
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", longpath), delta);
    cr_assert_eq(
        strlen(json_string_value(json_object_get(json_object_get(delta, "b.sub"), "path"))), 127);
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/item/q/"), NULL);
    assert_json(json_object_get(json_object_get(tree.computed, "b.sub"), "path"), "\"q\"");
    json_decref(delta);
}

Test(runtime, encode_load_round_trip)
{
    sw_step_t s;
    sw_buf_t buf;
    sw_tree_t t2;
    json_t *f1, *f2, *extra;

    run("a.set_x", "{\"value\": 7}", &s);
    sw_step_destroy(&s);
    run("a.secret", NULL, &s);
    sw_step_destroy(&s);
    run("a.set_s", "{\"value\": \"h\\u00e9\"}", &s);
    sw_step_destroy(&s);

    sw_buf_init(&buf, 0);
    cr_assert_eq(sw_tree_encode_state(&tree, "a", &buf), 0);
    cr_assert_eq(sw_tree_encode_state(&tree, "nope", &buf), SW_ENOTFOUND);
    sw_tree_init(&t2, app);
    cr_assert_eq(sw_tree_load_state(&t2, "a", buf.data, buf.len), 0);
    sw_tree_recompute_all(&t2);
    f1 = sw_tree_full(&tree);
    f2 = sw_tree_full(&t2);
    cr_assert(json_equal(f1, f2));
    cr_assert(json_equal(json_object_get(tree.vars, "a"), json_object_get(t2.vars, "a")));
    assert_json(json_object_get(json_object_get(t2.computed, "a"), "x4"), "28");
    assert_json(json_object_get(json_object_get(t2.computed, "b.sub"), "sum"), "7");

    /* undeclared vars are dropped, missing ones get their default */
    sw_buf_reset(&buf);
    extra = json_pack("{s:i, s:i}", "y", 4, "gone", 1);
    cr_assert_eq(sw_mpjson_encode(extra, &buf), 0);
    cr_assert_eq(sw_tree_load_state(&t2, "b.sub", buf.data, buf.len), 0);
    assert_json(json_object_get(t2.vars, "b.sub"), "{\"y\": 4}");
    sw_buf_reset(&buf);
    json_object_clear(extra);
    cr_assert_eq(sw_mpjson_encode(extra, &buf), 0);
    cr_assert_eq(sw_tree_load_state(&t2, "b.sub", buf.data, buf.len), 0);
    assert_json(json_object_get(t2.vars, "b.sub"), "{\"y\": 0}");

    cr_assert_eq(sw_tree_load_state(&t2, "nope", buf.data, buf.len), SW_ENOTFOUND);
    cr_assert_eq(sw_tree_load_state(&t2, "a", "\xc1", 1), SW_EINVAL);
    cr_assert_eq(sw_tree_load_state(&t2, "a", "\x01", 1), SW_EINVAL); /* not a map */
    json_decref(extra);
    json_decref(f1);
    json_decref(f2);
    sw_tree_destroy(&t2);
    sw_buf_destroy(&buf);
}

/* ---- Registration errors ---------------------------------------------------- */

static json_t *c_any(sw_ctx_t *ctx)
{
    (void)ctx;
    return json_integer(1);
}

static int h_nop(sw_ctx_t *ctx, json_t *p)
{
    (void)ctx;
    (void)p;
    return SW_DONE;
}

static int app_dup_var(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_var(a, "s", "v", "0", 0);
    cr_assert_eq(sw_app_var(a, "s", "v", "1", 0), -1);
    return 0;
}

static int app_unknown_state(sw_app_t *a)
{
    cr_assert_eq(sw_app_var(a, "s", "v", "0", 0), -1);
    return 0;
}

static int app_bad_default(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    cr_assert_eq(sw_app_var(a, "s", "v", "{bad", 0), -1);
    return 0;
}

static int app_unknown_dep(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_var(a, "s", "v", "0", 0);
    cr_assert_eq(sw_app_computed(a, "s", "c", c_any, "s.v, s.missing"), 0); /* resolved later */
    return 0;
}

static int app_cycle(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_computed(a, "s", "c1", c_any, "s.c2");
    sw_app_computed(a, "s", "c2", c_any, "s.c3");
    sw_app_computed(a, "s", "c3", c_any, "s.c1");
    return 0;
}

static int app_self_dep(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_computed(a, "s", "c1", c_any, "s.c1");
    return 0;
}

static int app_dup_event(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_var(a, "s", "v", "0", SW_VAR_SETTABLE);
    cr_assert_eq(sw_app_handler(a, "s", "set_v", h_nop), -1);
    return 0;
}

static int app_bad_names(sw_app_t *a)
{
    cr_assert_eq(sw_app_state(a, "Room", 0), -1);
    cr_assert_eq(sw_app_state(a, "a..b", 0), -1);
    cr_assert_eq(sw_app_state(a, "a.", 0), -1);
    sw_app_state(a, "s", 0);
    cr_assert_eq(sw_app_state(a, "s", 0), -1);
    cr_assert_eq(sw_app_var(a, "s", "bad-name", "0", 0), -1);
    cr_assert_eq(sw_app_var(a, "s", "_hidden", "0", SW_VAR_SETTABLE), -1);
    cr_assert_eq(sw_app_handler(a, "s",
                                "x23456789012345678901234567890123456789012345678901234567890"
                                "123456",
                                h_nop),
                 -1);
    cr_assert_eq(sw_app_computed(a, "s", "c", c_any, "nodot"), -1);
    cr_assert_eq(sw_app_on_load(a, "room", "s.h"), -1);
    cr_assert_eq(sw_app_on_load(a, "/room/[i-d]", "s.h"), -1);
    return 0;
}

static int app_onload_unknown_event(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    cr_assert_eq(sw_app_on_load(a, "/", "s.missing"), 0); /* resolved later */
    return 0;
}

static int app_init_fails(sw_app_t *a)
{
    (void)a;
    return -1;
}

static int app_ok(sw_app_t *a)
{
    sw_app_state(a, "s", 0);
    sw_app_var(a, "s", "v", "0", 0);
    sw_app_computed(a, "s", "c", c_any, "");
    return 0;
}

Test(registry, invalid_declarations_refuse_the_app)
{
    cr_assert_null(sw_appdef_new(app_dup_var));
    cr_assert_null(sw_appdef_new(app_unknown_state));
    cr_assert_null(sw_appdef_new(app_bad_default));
    cr_assert_null(sw_appdef_new(app_unknown_dep));
    cr_assert_null(sw_appdef_new(app_cycle));
    cr_assert_null(sw_appdef_new(app_self_dep));
    cr_assert_null(sw_appdef_new(app_dup_event));
    cr_assert_null(sw_appdef_new(app_bad_names));
    cr_assert_null(sw_appdef_new(app_onload_unknown_event));
    cr_assert_null(sw_appdef_new(app_init_fails));
    cr_assert_null(sw_appdef_new(NULL));
    cr_assert_null(sw_appdef_load("/nonexistent/app.so"));
}

Test(registry, minimal_app)
{
    sw_appdef_t *a = sw_appdef_new(app_ok);
    sw_tree_t t;
    json_t *full;

    cr_assert_not_null(a);
    cr_assert_str_eq(sw_appdef_name(a), "app");
    sw_tree_init(&t, a);
    full = sw_tree_full(&t);
    assert_json(full, "{\"s\": {\"v\": 0, \"c\": 1}}");
    json_decref(full);
    sw_tree_destroy(&t);
    sw_appdef_free(a);
}

/* ---- Shared state: links, presence, fan-out ----------------------------------- */

/* "p" is private, "s" and "q" are shared. p.room / p.who follow the
 * links and presence of "s"; s.mix mixes shared and private input. */

static json_t *l_room(sw_ctx_t *ctx)
{
    const char *tok = sw_ctx_linked(ctx, "s");
    return tok ? json_string(tok) : NULL;
}

static json_t *l_who(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_viewers(ctx, "s"));
}

static json_t *l_bad_link(sw_ctx_t *ctx)
{
    (void)sw_ctx_get(ctx, "p", "x");
    return json_integer(sw_ctx_link(ctx, "s", "a:b") + sw_ctx_unlink(ctx, "s"));
}

static json_t *l_n2(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "s", "n") * 2);
}

static json_t *l_n4(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "s", "n2") * 2);
}

static json_t *l_mix(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "s", "n") + sw_ctx_get_int(ctx, "p", "x"));
}

/* payload {"state": S, "token": T}; a refused link fails the step */
static int lh_link(sw_ctx_t *ctx, json_t *p)
{
    if (sw_ctx_link(ctx, json_string_value(json_object_get(p, "state")),
                    json_string_value(json_object_get(p, "token"))) < 0)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "link refused");
    return SW_DONE;
}

static int lh_unlink(sw_ctx_t *ctx, json_t *p)
{
    if (sw_ctx_unlink(ctx, json_string_value(json_object_get(p, "state"))) < 0)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "unlink refused");
    return SW_DONE;
}

static int lh_link_then_fail(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:1"), 0);
    sw_ctx_set(ctx, "s", "n", json_integer(50));
    return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "no");
}

/* link twice to the same token, relink, unlink, unlink again */
static int lh_sequence(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:1"), 0);
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:1"), 0);
    cr_assert_null(sw_ctx_linked(ctx, "s")); /* pending ops are not reflected */
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:2"), 0);
    cr_assert_eq(sw_ctx_unlink(ctx, "s"), 0);
    cr_assert_eq(sw_ctx_unlink(ctx, "s"), 0);
    return SW_DONE;
}

static int lh_invalid(sw_ctx_t *ctx, json_t *p)
{
    char long_tok[80];

    (void)p;
    memset(long_tok, 'a', sizeof(long_tok));
    long_tok[0] = ':';
    long_tok[65] = '\0';
    cr_assert_eq(sw_ctx_link(ctx, "p", "room:1"), -1);    /* not shared */
    cr_assert_eq(sw_ctx_link(ctx, "nope", "room:1"), -1); /* undeclared */
    cr_assert_eq(sw_ctx_link(ctx, NULL, "room:1"), -1);
    cr_assert_eq(sw_ctx_link(ctx, "s", NULL), -1);
    cr_assert_eq(sw_ctx_link(ctx, "s", ""), -1);
    cr_assert_eq(sw_ctx_link(ctx, "s", "room1"), -1);    /* no ':' */
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:a b"), -1); /* bad char */
    cr_assert_eq(sw_ctx_link(ctx, "s", "room:a/b"), -1); /* bad char */
    cr_assert_eq(sw_ctx_link(ctx, "s", long_tok), -1);   /* 65 chars */
    long_tok[64] = '\0';
    cr_assert_eq(sw_ctx_link(ctx, "s", long_tok), 0); /* 64 chars */
    cr_assert_eq(sw_ctx_link(ctx, "q", ":"), 0);
    cr_assert_eq(sw_ctx_link(ctx, "q", "A-z_0.9:x"), 0);
    cr_assert_eq(sw_ctx_unlink(ctx, "p"), -1);
    cr_assert_eq(sw_ctx_unlink(ctx, "nope"), -1);
    cr_assert_eq(sw_ctx_unlink(ctx, NULL), -1);
    return SW_DONE;
}

static int lh_inc(sw_ctx_t *ctx, json_t *p)
{
    (void)p;
    sw_ctx_set(ctx, "s", "n", json_integer(sw_ctx_get_int(ctx, "s", "n") + 1));
    sw_ctx_set(ctx, "s", "_b", json_integer(sw_ctx_get_int(ctx, "s", "_b") + 1));
    return sw_ctx_set(ctx, "p", "_h", json_integer(sw_ctx_get_int(ctx, "p", "_h") + 1));
}

static int links_app(sw_app_t *a)
{
    int rc = 0;
    rc |= sw_app_state(a, "p", 0);
    rc |= sw_app_var(a, "p", "x", "0", SW_VAR_SETTABLE);
    rc |= sw_app_var(a, "p", "_h", "0", 0);
    rc |= sw_app_computed(a, "p", "room", l_room, "links");
    rc |= sw_app_computed(a, "p", "who", l_who, "links, presence");
    rc |= sw_app_computed(a, "p", "bad_link", l_bad_link, "p.x");
    rc |= sw_app_state(a, "s", SW_STATE_SHARED);
    rc |= sw_app_var(a, "s", "n", "0", 0);
    rc |= sw_app_var(a, "s", "_b", "0", 0);
    rc |= sw_app_var(a, "s", "list", "[]", 0);
    rc |= sw_app_computed(a, "s", "n4", l_n4, "s.n2");
    rc |= sw_app_computed(a, "s", "n2", l_n2, "s.n");
    rc |= sw_app_computed(a, "s", "mix", l_mix, "s.n,p.x");
    rc |= sw_app_state(a, "q", SW_STATE_SHARED);
    rc |= sw_app_var(a, "q", "m", "0", 0);
    rc |= sw_app_handler(a, "s", "link", lh_link);
    rc |= sw_app_handler(a, "s", "unlink", lh_unlink);
    rc |= sw_app_handler(a, "s", "link_then_fail", lh_link_then_fail);
    rc |= sw_app_handler(a, "s", "sequence", lh_sequence);
    rc |= sw_app_handler(a, "s", "invalid", lh_invalid);
    rc |= sw_app_handler(a, "s", "inc", lh_inc);
    return rc ? -1 : 0;
}

static void links_setup(void)
{
    app = sw_appdef_new(links_app);
    cr_assert_not_null(app);
    sw_tree_init(&tree, app);
}

TestSuite(links, .init = links_setup, .fini = teardown);

static void set_links(const char *links_json, json_t *delta)
{
    json_t *l = json_loads(links_json, JSON_DECODE_ANY, NULL);

    cr_assert_not_null(l);
    sw_tree_set_links(&tree, l, delta);
}

Test(links, init_has_no_links_or_presence)
{
    assert_json(tree.links, "{}");
    assert_json(tree.presence, "{}");
    assert_json(json_object_get(tree.computed, "p"),
                "{\"room\": null, \"who\": 0, \"bad_link\": -2}"); /* refused from computed */
}

Test(links, link_and_unlink_are_recorded)
{
    sw_step_t s;

    cr_assert_eq(run("s.link", "{\"state\": \"s\", \"token\": \"room:1\"}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"s\", \"token\": \"room:1\"}]");
    assert_ok(&s, "{}", "[]");
    assert_json(s.changed, "{}");
    assert_json(tree.links, "{}"); /* the pipeline applies it */
    sw_step_destroy(&s);

    set_links("{\"s\": \"room:1\"}", NULL);
    cr_assert_eq(run("s.unlink", "{\"state\": \"s\"}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s), "[{\"op\": \"unlink\", \"state\": \"s\"}]");
    sw_step_destroy(&s);
    /* relink to another token */
    cr_assert_eq(run("s.link", "{\"state\": \"s\", \"token\": \"room:2\"}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"s\", \"token\": \"room:2\"}]");
    sw_step_destroy(&s);
}

Test(links, noop_link_and_unlink)
{
    sw_step_t s;

    set_links("{\"s\": \"room:1\"}", NULL);
    cr_assert_eq(run("s.link", "{\"state\": \"s\", \"token\": \"room:1\"}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);
    cr_assert_eq(run("s.unlink", "{\"state\": \"q\"}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);
}

Test(links, ops_within_one_step_see_the_earlier_ones)
{
    sw_step_t s;

    cr_assert_eq(run("s.sequence", NULL, &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"s\", \"token\": \"room:1\"},"
                    " {\"op\": \"link\", \"state\": \"s\", \"token\": \"room:2\"},"
                    " {\"op\": \"unlink\", \"state\": \"s\"}]");
    sw_step_destroy(&s);
}

Test(links, invalid_link_arguments)
{
    sw_step_t s;

    cr_assert_eq(run("s.invalid", NULL, &s), SW_DONE);
    cr_assert_eq(s.nlink_ops, 3);
    sw_step_destroy(&s);
    cr_assert_eq(run("s.link", "{\"state\": \"s\", \"token\": \"nocolon\"}", &s), -1);
    cr_assert_str_eq(s.error_code, "bad_payload");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);
    /* a computed var recomputed in a step is refused too */
    cr_assert_eq(run("p.set_x", "{\"value\": 1}", &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    assert_json(json_object_get(json_object_get(tree.computed, "p"), "bad_link"), "-2");
    sw_step_destroy(&s);
}

Test(links, link_ops_dropped_on_failure)
{
    sw_step_t s;

    cr_assert_eq(run("s.link_then_fail", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "handler_error");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    assert_json(s.changed, "{}");
    assert_json(s.delta, "{}");
    assert_json(json_object_get(tree.vars, "s"), "{\"n\": 0, \"_b\": 0, \"list\": []}");
    sw_step_destroy(&s);
}

Test(links, set_links_and_presence_recompute_dependents)
{
    json_t *delta = json_object();

    set_links("{\"s\": \"room:1\"}", delta);
    assert_json(delta, "{\"p\": {\"room\": \"room:1\"}}"); /* who stays 0 */
    json_object_clear(delta);
    set_links("{\"s\": \"room:1\"}", delta); /* same links */
    assert_json(delta, "{}");
    sw_tree_set_presence(&tree, "room:1", 3, delta);
    assert_json(delta, "{\"p\": {\"who\": 3}}");
    json_object_clear(delta);
    sw_tree_set_presence(&tree, "room:1", 3, delta); /* same count */
    sw_tree_set_presence(&tree, "room:2", 5, delta); /* another token */
    sw_tree_set_presence(&tree, NULL, 5, delta);
    assert_json(delta, "{}");
    set_links("{\"s\": \"room:2\", \"q\": \"room:1\"}", delta);
    assert_json(delta, "{\"p\": {\"room\": \"room:2\", \"who\": 5}}");
    json_object_clear(delta);
    sw_tree_set_presence(&tree, "room:2", 0, delta); /* 0 drops the entry */
    assert_json(delta, "{\"p\": {\"who\": 0}}");
    assert_json(tree.presence, "{\"room:1\": 3}");
    json_object_clear(delta);
    set_links("[1]", delta); /* not an object: no links */
    assert_json(tree.links, "{}");
    assert_json(delta, "{\"p\": {\"room\": null}}");
    json_decref(delta);
}

Test(links, replace_state_all_and_changed_only)
{
    json_t *delta = json_object();
    json_t *copy = json_pack("{s:i, s:i, s:i}", "n", 3, "_b", 9, "gone", 1);

    cr_assert_eq(sw_tree_replace_state(&tree, "s", copy, 1, delta), 0);
    assert_json(delta, "{\"s\": {\"n\": 3, \"list\": [], \"n2\": 6, \"n4\": 12, \"mix\": 3}}");
    assert_json(sw_tree_state_vars(&tree, "s"), "{\"n\": 3, \"_b\": 9, \"list\": []}");
    json_object_clear(delta);

    /* all = 0: only what changed (_b back to its default is backend-only) */
    json_object_del(copy, "_b");
    cr_assert_eq(sw_tree_replace_state(&tree, "s", copy, 0, delta), 0);
    assert_json(delta, "{}");
    assert_json(sw_tree_state_vars(&tree, "s"), "{\"n\": 3, \"_b\": 0, \"list\": []}");
    cr_assert_eq(sw_tree_replace_state(&tree, "s", NULL, 0, delta), 0);
    assert_json(delta, "{\"s\": {\"n\": 0, \"n2\": 0, \"n4\": 0, \"mix\": 0}}");
    json_object_clear(delta);

    /* all = 1 with nothing changing still sends the whole public state */
    cr_assert_eq(sw_tree_replace_state(&tree, "s", NULL, 1, delta), 0);
    assert_json(delta, "{\"s\": {\"n\": 0, \"list\": []}}");
    cr_assert_eq(sw_tree_replace_state(&tree, "nope", NULL, 1, NULL), SW_ENOTFOUND);
    cr_assert_eq(sw_tree_replace_state(&tree, "q", copy, 1, NULL), 0); /* delta may be NULL */
    json_decref(copy);
    json_decref(delta);
}

Test(links, apply_vars_partial_update)
{
    json_t *delta = json_object();
    json_t *msg = json_pack("{s:i, s:i, s:i}", "n", 2, "n2", 100, "zz", 1);

    sw_tree_replace_state(&tree, "s", json_pack("{s:[i]}", "list", 1), 0, NULL);
    cr_assert_eq(sw_tree_apply_vars(&tree, "s", msg, delta), 0);
    /* n2 is computed and zz undeclared: both ignored; list untouched */
    assert_json(delta, "{\"s\": {\"n\": 2, \"n2\": 4, \"n4\": 8, \"mix\": 2}}");
    assert_json(sw_tree_state_vars(&tree, "s"), "{\"n\": 2, \"_b\": 0, \"list\": [1]}");
    json_object_clear(delta);
    json_decref(msg);

    msg = json_pack("{s:i, s:i}", "_b", 5, "n", 2);
    cr_assert_eq(sw_tree_apply_vars(&tree, "s", msg, delta), 0);
    assert_json(delta, "{}"); /* backend-only, n unchanged */
    assert_json(json_object_get(sw_tree_state_vars(&tree, "s"), "_b"), "5");
    cr_assert_eq(sw_tree_apply_vars(&tree, "nope", msg, delta), SW_ENOTFOUND);
    cr_assert_null(sw_tree_state_vars(&tree, "nope"));
    json_decref(msg);
    json_decref(delta);
}

Test(links, changed_includes_backend_vars)
{
    sw_step_t s;

    cr_assert_eq(run("s.inc", NULL, &s), SW_DONE);
    assert_json(s.changed, "{\"s\": {\"n\": 1, \"_b\": 1}, \"p\": {\"_h\": 1}}");
    assert_json(s.delta, "{\"s\": {\"n\": 1, \"n2\": 2, \"n4\": 4, \"mix\": 1}}");
    cr_assert_eq(json_array_size(s.dirty), 2);
    sw_step_destroy(&s);
    cr_assert_eq(run("p.set_x", "{\"value\": 0}", &s), SW_DONE); /* no change */
    assert_json(s.changed, "{}");
    sw_step_destroy(&s);
}

/* Fan-out analysis. */

static int fan_false_app(sw_app_t *a)
{
    sw_app_state(a, "p", 0);
    sw_app_var(a, "p", "w", "0", 0);
    sw_app_state(a, "s", SW_STATE_SHARED);
    sw_app_var(a, "s", "v", "0", 0);
    sw_app_computed(a, "s", "c", c_any, "s.v, links, presence");
    sw_app_computed(a, "p", "d", c_any, "p.w, router"); /* private, not reached */
    sw_app_computed(a, "p", "e", c_any, "s.c, links");  /* reached, shared input only */
    return 0;
}

static int fan_true_app(sw_app_t *a)
{
    sw_app_state(a, "p", 0);
    sw_app_computed(a, "p", "r", c_any, "router");
    sw_app_state(a, "s", SW_STATE_SHARED);
    sw_app_var(a, "s", "v", "0", 0);
    sw_app_computed(a, "s", "c1", c_any, "s.v");
    sw_app_computed(a, "s", "c2", c_any, "s.c1, p.r"); /* router through p.r */
    return 0;
}

static int fan_true_stored_app(sw_app_t *a)
{
    sw_app_state(a, "p", 0);
    sw_app_var(a, "p", "w", "0", 0);
    sw_app_state(a, "s", SW_STATE_SHARED);
    sw_app_var(a, "s", "v", "0", 0);
    sw_app_computed(a, "p", "c", c_any, "s.v, p.w");
    return 0;
}

Test(registry, fanout_needs_private)
{
    sw_appdef_t *a;

    a = sw_appdef_new(fan_false_app);
    cr_assert_not_null(a);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 0);
    sw_appdef_free(a);
    a = sw_appdef_new(fan_true_app);
    cr_assert_not_null(a);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 1);
    sw_appdef_free(a);
    a = sw_appdef_new(fan_true_stored_app);
    cr_assert_not_null(a);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 1);
    sw_appdef_free(a);
    a = sw_appdef_new(links_app);
    cr_assert_not_null(a);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 1); /* s.mix */
    sw_appdef_free(a);
    a = sw_appdef_new(test_app);
    cr_assert_not_null(a);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 1); /* b.sub.sum reads a.x */
    sw_appdef_free(a);
    a = sw_appdef_new(app_ok);
    cr_assert_eq(sw_appdef_fanout_needs_private(a), 0);
    sw_appdef_free(a);
}
