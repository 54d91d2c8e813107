/* test_rooms.c — the demo app's handlers, computed vars, task and links. */
#include "examples/rooms.h"

#include <criterion/criterion.h>
#include <string.h>

#include "worker/runtime.h"
#include "support/step_json.h"

static sw_appdef_t *app;
static sw_tree_t tree;

static void setup(void)
{
    app = sw_appdef_new(sw_rooms_app_init);
    cr_assert_not_null(app);
    sw_tree_init(&tree, app);
}

static void teardown(void)
{
    sw_tree_destroy(&tree);
    sw_appdef_free(app);
}

TestSuite(rooms, .init = setup, .fini = teardown);

static int run_step(const char *name, const char *payload, unsigned step, sw_step_t *out)
{
    json_t *p = payload ? json_loads(payload, 0, NULL) : NULL;
    int rc;

    if (payload)
        cr_assert_not_null(p, "bad test payload %s", payload);
    sw_step_in_t in = {
        .token = "tok", .name = name, .payload = p, .step = step, .max_chained = SW_MAX_CHAINED};
    rc = sw_runtime_step(&tree, &in, out);
    json_decref(p);
    return rc;
}

static int run(const char *name, const char *payload, sw_step_t *out)
{
    return run_step(name, payload, 0, out);
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

/* Run an event that must succeed and check its delta. */
static void expect_delta(const char *name, const char *payload, const char *delta)
{
    sw_step_t s;

    cr_assert_eq(run(name, payload, &s), SW_DONE, "%s: %s %s", name,
                 s.error_code ? s.error_code : "", s.error_msg);
    assert_json(s.delta, delta);
    sw_step_destroy(&s);
}

static void expect_bad_payload(const char *name, const char *payload, const char *msg)
{
    sw_step_t s;

    cr_assert_eq(run(name, payload, &s), -1, "%s %s accepted", name, payload);
    cr_assert_str_eq(s.error_code, "bad_payload");
    if (msg)
        cr_assert_str_eq(s.error_msg, msg);
    assert_json(s.delta, "{}");
    sw_step_destroy(&s);
}

static json_t *var(const char *state, const char *name)
{
    json_t *v = json_object_get(json_object_get(tree.vars, state), name);
    return v ? v : json_object_get(json_object_get(tree.computed, state), name);
}

Test(rooms, declaration)
{
    cr_assert_str_eq(sw_appdef_name(app), "rooms");
    cr_assert_eq(sw_appdef_state_flags(app, "room"), 0);
    cr_assert_eq(sw_appdef_state_flags(app, "counter"), SW_STATE_SHARED);
    cr_assert_eq(sw_appdef_state_flags(app, "chat"), SW_STATE_SHARED);
    cr_assert_eq(sw_appdef_event_kind(app, "counter.delayed_increment"), SW_EVENT_TASK);
    cr_assert_eq(sw_appdef_event_kind(app, "room.set_name"), SW_EVENT_SETTER);
    cr_assert_eq(sw_appdef_event_kind(app, "chat.send"), SW_EVENT_HANDLER);
}

Test(rooms, full_tree_defaults)
{
    json_t *full = sw_tree_full(&tree);

    assert_json(full, "{\"room\": {\"loads\": 0, \"name\": \"\", \"room_id\": \"lobby\","
                      " \"current_count\": 0},"
                      " \"counter\": {\"count\": 0, \"linked\": false, \"viewers\": 0},"
                      " \"chat\": {\"messages\": []}}");
    json_decref(full);
}

Test(rooms, counter_handlers_and_current_count)
{
    expect_delta("counter.increment", NULL,
                 "{\"counter\": {\"count\": 1}, \"room\": {\"current_count\": 1}}");
    expect_delta("counter.increment", "{}",
                 "{\"counter\": {\"count\": 2}, \"room\": {\"current_count\": 2}}");
    expect_delta("counter.decrement", NULL,
                 "{\"counter\": {\"count\": 1}, \"room\": {\"current_count\": 1}}");
    expect_delta("counter.add", "{\"amount\": 41}",
                 "{\"counter\": {\"count\": 42}, \"room\": {\"current_count\": 42}}");
    expect_delta(
        "counter.add", "{\"amount\": -1000000000}",
        "{\"counter\": {\"count\": -999999958}, \"room\": {\"current_count\": -999999958}}");
    expect_delta("counter.add", "{\"amount\": 0}", "{}");
}

Test(rooms, add_rejects_bad_amounts)
{
    expect_bad_payload("counter.add", "{}", "amount must be an integer");
    expect_bad_payload("counter.add", "{\"amount\": \"5\"}", "amount must be an integer");
    expect_bad_payload("counter.add", "{\"amount\": 1.5}", "amount must be an integer");
    expect_bad_payload("counter.add", "{\"amount\": 1000000001}",
                       "amount must be between -1000000000 and 1000000000");
    expect_bad_payload("counter.add", "{\"amount\": -1000000001}", NULL);
    cr_assert_eq(json_integer_value(var("counter", "count")), 0);
}

Test(rooms, room_id_from_route)
{
    json_t *delta = json_object();

    cr_assert_str_eq(json_string_value(var("room", "room_id")), "lobby");
    sw_tree_set_router(&tree, json_pack("{s:s, s:{}}", "path", "/room/abc", "query"), delta);
    assert_json(delta, "{\"room\": {\"room_id\": \"abc\"}}");
    json_object_clear(delta);
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/other"), delta);
    assert_json(delta, "{\"room\": {\"room_id\": \"lobby\"}}");
    json_decref(delta);
}

Test(rooms, on_load_counts_loads)
{
    const char *ev[4];

    cr_assert_eq(sw_appdef_on_load(app, "/", ev, 4), 1);
    cr_assert_str_eq(ev[0], "room.on_load");
    cr_assert_eq(sw_appdef_on_load(app, "/room/xyz", ev, 4), 1);
    cr_assert_str_eq(ev[0], "room.on_load");
    cr_assert_eq(sw_appdef_on_load(app, "/elsewhere", ev, 4), 0);
    expect_delta("room.on_load", NULL, "{\"room\": {\"loads\": 1}}");
    expect_delta("room.on_load", NULL, "{\"room\": {\"loads\": 2}}");
}

Test(rooms, set_name_and_chat_send)
{
    sw_step_t s;

    expect_delta("chat.send", "{\"text\": \"hi\"}",
                 "{\"chat\": {\"messages\": [{\"name\": \"anonymous\", \"text\": \"hi\"}]}}");
    expect_delta("room.set_name", "{\"value\": \"ada\"}", "{\"room\": {\"name\": \"ada\"}}");
    expect_bad_payload("room.set_name", "{\"value\": 3}", NULL);
    cr_assert_eq(run("chat.send", "{\"text\": \"yo\"}", &s), SW_DONE);
    assert_json(s.delta, "{\"chat\": {\"messages\": [{\"name\": \"anonymous\", \"text\": \"hi\"},"
                         " {\"name\": \"ada\", \"text\": \"yo\"}]}}");
    assert_json(s.dirty, "[\"chat\"]");
    sw_step_destroy(&s);
}

Test(rooms, chat_rejects_bad_text)
{
    char big[600], payload[700];

    expect_bad_payload("chat.send", "{\"text\": \"\"}", "text must be 1..500 bytes");
    expect_bad_payload("chat.send", "{}", "text must be 1..500 bytes");
    expect_bad_payload("chat.send", "{\"text\": 5}", "text must be 1..500 bytes");
    memset(big, 'a', sizeof(big));
    big[501] = '\0';
    snprintf(payload, sizeof(payload), "{\"text\": \"%s\"}", big);
    expect_bad_payload("chat.send", payload, "text must be 1..500 bytes");
    big[500] = '\0';
    snprintf(payload, sizeof(payload), "{\"text\": \"%s\"}", big);
    {
        sw_step_t s;
        cr_assert_eq(run("chat.send", payload, &s), SW_DONE);
        sw_step_destroy(&s);
    }
    cr_assert_eq(json_array_size(var("chat", "messages")), 1);
}

Test(rooms, chat_keeps_last_50)
{
    char payload[64];
    json_t *msgs;

    for (int i = 0; i < 60; i++) {
        sw_step_t s;
        snprintf(payload, sizeof(payload), "{\"text\": \"m%d\"}", i);
        cr_assert_eq(run("chat.send", payload, &s), SW_DONE);
        sw_step_destroy(&s);
    }
    msgs = var("chat", "messages");
    cr_assert_eq(json_array_size(msgs), 50);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "text")), "m10");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 49), "text")), "m59");
}

/* What the worker's pipeline does with a step's link ops: a new links
 * object, then the new copy of the state (all vars). */
static void apply_links(const char *links_json, json_t *delta)
{
    sw_tree_set_links(&tree, json_loads(links_json, 0, NULL), delta);
}

Test(rooms, toggle_link_links_to_room_then_unlinks)
{
    json_t *delta = json_object();
    sw_step_t s;

    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/room/abc"), NULL);
    cr_assert_eq(run("counter.toggle_link", NULL, &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"counter\", \"token\": \"room:abc\"}]");
    assert_json(s.delta, "{}"); /* takes effect after the step */
    assert_json(s.dirty, "[]");
    sw_step_destroy(&s);

    apply_links("{\"counter\": \"room:abc\"}", delta);
    assert_json(delta, "{\"counter\": {\"linked\": true}}");
    json_object_clear(delta);

    cr_assert_eq(run("counter.toggle_link", NULL, &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s), "[{\"op\": \"unlink\", \"state\": \"counter\"}]");
    sw_step_destroy(&s);
    apply_links("{}", delta);
    assert_json(delta, "{\"counter\": {\"linked\": false}}");
    json_decref(delta);
}

Test(rooms, toggle_link_on_root_uses_lobby)
{
    sw_step_t s;

    cr_assert_eq(run("counter.toggle_link", NULL, &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"counter\", \"token\": \"room:lobby\"}]");
    sw_step_destroy(&s);
}

Test(rooms, toggle_link_refuses_bad_room_id)
{
    sw_step_t s;

    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/room/a%20b"), NULL);
    cr_assert_eq(run("counter.toggle_link", NULL, &s), -1);
    cr_assert_str_eq(s.error_code, "handler_error");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);
}

Test(rooms, on_load_links_counter_and_chat)
{
    sw_step_t s;

    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/room/abc"), NULL);
    cr_assert_eq(run("room.on_load", NULL, &s), SW_DONE);
    assert_json(s.delta, "{\"room\": {\"loads\": 1}}");
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"counter\", \"token\": \"room:abc\"},"
                    " {\"op\": \"link\", \"state\": \"chat\", \"token\": \"room:abc\"}]");
    sw_step_destroy(&s);

    /* already linked there: only the load counts */
    apply_links("{\"counter\": \"room:abc\", \"chat\": \"room:abc\"}", NULL);
    cr_assert_eq(run("room.on_load", NULL, &s), SW_DONE);
    assert_json(s.delta, "{\"room\": {\"loads\": 2}}");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);

    /* another room: both move */
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/room/xyz"), NULL);
    cr_assert_eq(run("room.on_load", NULL, &s), SW_DONE);
    assert_json_new(sw_test_link_ops_json(&s),
                    "[{\"op\": \"link\", \"state\": \"counter\", \"token\": \"room:xyz\"},"
                    " {\"op\": \"link\", \"state\": \"chat\", \"token\": \"room:xyz\"}]");
    sw_step_destroy(&s);

    /* "/" only counts loads, and keeps the links */
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/"), NULL);
    cr_assert_eq(run("room.on_load", NULL, &s), SW_DONE);
    assert_json(s.delta, "{\"room\": {\"loads\": 4}}");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);

    /* an id that makes no valid shared token: the load counts, no link */
    sw_tree_set_router(&tree, json_pack("{s:s}", "path", "/room/a%20b"), NULL);
    cr_assert_eq(run("room.on_load", NULL, &s), SW_DONE);
    assert_json(s.delta, "{\"room\": {\"loads\": 5}}");
    assert_json_new(sw_test_link_ops_json(&s), "[]");
    sw_step_destroy(&s);
}

Test(rooms, linked_and_viewers_follow_links_and_presence)
{
    json_t *delta = json_object();

    sw_tree_set_presence(&tree, "room:abc", 3, delta);
    assert_json(delta, "{}"); /* not linked yet */
    apply_links("{\"counter\": \"room:abc\", \"chat\": \"room:abc\"}", delta);
    assert_json(delta, "{\"counter\": {\"linked\": true, \"viewers\": 3}}");
    json_object_clear(delta);
    sw_tree_set_presence(&tree, "room:abc", 4, delta);
    assert_json(delta, "{\"counter\": {\"viewers\": 4}}");
    json_object_clear(delta);
    sw_tree_set_presence(&tree, "room:other", 9, delta);
    assert_json(delta, "{}");
    apply_links("{\"chat\": \"room:abc\"}", delta);
    assert_json(delta, "{\"counter\": {\"linked\": false, \"viewers\": 0}}");
    json_decref(delta);
}

Test(rooms, current_count_follows_the_shared_counter)
{
    json_t *delta = json_object();
    json_t *copy = json_pack("{s:i}", "count", 7);

    /* link: the pipeline swaps in the shared copy */
    cr_assert_eq(sw_tree_replace_state(&tree, "counter", copy, 1, delta), 0);
    assert_json(delta, "{\"counter\": {\"count\": 7}, \"room\": {\"current_count\": 7}}");
    json_object_clear(delta);
    /* a fan-out message from another client's increment */
    json_object_set_new(copy, "count", json_integer(8));
    cr_assert_eq(sw_tree_apply_vars(&tree, "counter", copy, delta), 0);
    assert_json(delta, "{\"counter\": {\"count\": 8}, \"room\": {\"current_count\": 8}}");
    json_object_clear(delta);
    /* unlink: back to the private copy */
    cr_assert_eq(sw_tree_replace_state(&tree, "counter", NULL, 1, delta), 0);
    assert_json(delta, "{\"counter\": {\"count\": 0}, \"room\": {\"current_count\": 0}}");
    json_decref(delta);
    json_decref(copy);
}

Test(rooms, increment_changed_is_the_fanout_message)
{
    sw_step_t s;

    cr_assert_eq(run("counter.increment", NULL, &s), SW_DONE);
    assert_json(s.changed, "{\"counter\": {\"count\": 1}}");
    assert_json(s.dirty, "[\"counter\"]");
    sw_step_destroy(&s);
    cr_assert_eq(run("room.set_name", "{\"value\": \"ada\"}", &s), SW_DONE);
    assert_json(s.changed, "{\"room\": {\"name\": \"ada\"}}");
    sw_step_destroy(&s);
}

Test(rooms, fanout_needs_no_private_input)
{
    cr_assert_eq(sw_appdef_fanout_needs_private(app), 0);
}

Test(rooms, delayed_increment_steps)
{
    const char *p = "{\"amount\": 3, \"interval_ms\": 50}";
    sw_step_t s;

    cr_assert_eq(run_step("counter.delayed_increment", p, 0, &s), SW_YIELD);
    cr_assert_eq(s.sleep_ms, 50);
    assert_json(s.delta, "{}");
    sw_step_destroy(&s);
    for (unsigned step = 1; step <= 3; step++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "{\"counter\": {\"count\": %u}, \"room\": {\"current_count\": %u}}", step, step);
        cr_assert_eq(run_step("counter.delayed_increment", p, step, &s),
                     step < 3 ? SW_YIELD : SW_DONE, "step %u", step);
        assert_json(s.delta, want);
        if (step < 3)
            cr_assert_eq(s.sleep_ms, 50);
        sw_step_destroy(&s);
    }
    cr_assert_eq(json_integer_value(var("counter", "count")), 3);
}

Test(rooms, delayed_increment_bad_payloads)
{
    expect_bad_payload("counter.delayed_increment", "{\"amount\": 0, \"interval_ms\": 100}", NULL);
    expect_bad_payload("counter.delayed_increment", "{\"amount\": 1001, \"interval_ms\": 100}",
                       NULL);
    expect_bad_payload("counter.delayed_increment", "{\"amount\": 1, \"interval_ms\": 9}", NULL);
    expect_bad_payload("counter.delayed_increment", "{\"amount\": 1, \"interval_ms\": 60001}",
                       NULL);
    expect_bad_payload("counter.delayed_increment", "{\"amount\": 1}", NULL);
    expect_bad_payload("counter.delayed_increment", "{\"amount\": \"2\", \"interval_ms\": 10}",
                       NULL);
}
