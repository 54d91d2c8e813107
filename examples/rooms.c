/* rooms.c — the default demo app (see rooms.h). Links are requested with
 * sw_ctx_link()/sw_ctx_unlink() and take effect after the step; linked and
 * viewers follow the tree's links and presence. */
#include "examples/rooms.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ROOMS_MAX_AMOUNT 1000000000 /* |amount| of counter.add */
#define ROOMS_CHAT_KEEP 50          /* messages kept in chat.messages */
#define ROOMS_TEXT_MAX 500          /* bytes of one chat message */
#define ROOMS_TOKEN_MAX 64          /* shared token name (statewire.h) */

/* The shared token "room:<id>" into out (ROOMS_TOKEN_MAX + 1 bytes).
 * Returns 0, or -1 when the id does not make a valid shared token name
 * (too long, or characters other than [A-Za-z0-9_:.-]): route segments
 * come from the client, so they are checked here rather than logged as an
 * app error by sw_ctx_link(). */
static int room_token(const char *id, char *out)
{
    int n = snprintf(out, ROOMS_TOKEN_MAX + 1, "room:%s", id);

    if (n < 0 || n > ROOMS_TOKEN_MAX || !*id)
        return -1;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-") ==
                   strlen(id)
               ? 0
               : -1;
}

/* ---- room ---------------------------------------------------------------- */

/* Counts the load; on "/room/<id>" also links counter and chat to
 * "room:<id>" (nothing to do when already linked there; linked to another
 * room, they move). An id that makes no valid shared token links nothing. */
static int room_on_load(sw_ctx_t *ctx, json_t *payload)
{
    const char *id = sw_ctx_route_param(ctx, "id");
    char token[ROOMS_TOKEN_MAX + 1];
    int rc;

    (void)payload;
    rc = sw_ctx_set(ctx, "room", "loads", json_integer(sw_ctx_get_int(ctx, "room", "loads") + 1));
    if (rc < 0 || !id || room_token(id, token) < 0)
        return rc;
    if (sw_ctx_link(ctx, "counter", token) < 0 || sw_ctx_link(ctx, "chat", token) < 0)
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "cannot link to %s", token);
    return SW_DONE;
}

static json_t *room_id(sw_ctx_t *ctx)
{
    const char *id = sw_ctx_route_param(ctx, "id");

    return json_string(id && *id ? id : "lobby");
}

static json_t *room_current_count(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_get_int(ctx, "counter", "count"));
}

/* ---- counter --------------------------------------------------------------- */

static int add_count(sw_ctx_t *ctx, json_int_t amount)
{
    json_int_t n = sw_ctx_get_int(ctx, "counter", "count");

    if ((amount > 0 && n > INT64_MAX - amount) || (amount < 0 && n < INT64_MIN - amount))
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "count out of range");
    return sw_ctx_set(ctx, "counter", "count", json_integer(n + amount));
}

static int counter_increment(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return add_count(ctx, 1);
}

static int counter_decrement(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return add_count(ctx, -1);
}

static int counter_add(sw_ctx_t *ctx, json_t *payload)
{
    json_t *amount = json_object_get(payload, "amount");
    json_int_t a;

    if (!json_is_integer(amount))
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "amount must be an integer");
    a = json_integer_value(amount);
    if (a > ROOMS_MAX_AMOUNT || a < -ROOMS_MAX_AMOUNT)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "amount must be between -%d and %d",
                           ROOMS_MAX_AMOUNT, ROOMS_MAX_AMOUNT);
    return add_count(ctx, a);
}

/* Linked: unlink (back to the private counter). Unlinked: link to
 * "room:<room.room_id>". */
static int counter_toggle_link(sw_ctx_t *ctx, json_t *payload)
{
    char token[ROOMS_TOKEN_MAX + 1];

    (void)payload;
    if (sw_ctx_linked(ctx, "counter"))
        return sw_ctx_unlink(ctx, "counter") < 0
                   ? sw_ctx_fail(ctx, SW_FAIL_HANDLER, "cannot unlink the counter")
                   : SW_DONE;
    if (room_token(sw_ctx_get_str(ctx, "room", "room_id"), token) < 0)
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "this room id cannot be linked");
    return sw_ctx_link(ctx, "counter", token) < 0
               ? sw_ctx_fail(ctx, SW_FAIL_HANDLER, "cannot link to %s", token)
               : SW_DONE;
}

static json_t *counter_linked(sw_ctx_t *ctx)
{
    return json_boolean(sw_ctx_linked(ctx, "counter") != NULL);
}

static json_t *counter_viewers(sw_ctx_t *ctx)
{
    return json_integer(sw_ctx_viewers(ctx, "counter"));
}

/* Integer field `key` of payload within [lo, hi], or -1. */
static json_int_t int_in(json_t *payload, const char *key, json_int_t lo, json_int_t hi)
{
    json_t *v = json_object_get(payload, key);

    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -1;
    return json_integer_value(v);
}

/* Step 0 validates and sleeps; steps 1..amount each add 1 to count, sleeping
 * between them. The payload comes with every step. */
static int counter_delayed_increment(sw_ctx_t *ctx, json_t *payload)
{
    json_int_t amount = int_in(payload, "amount", 1, 1000);
    json_int_t interval = int_in(payload, "interval_ms", 10, 60000);
    unsigned step = sw_ctx_step(ctx);
    int rc;

    if (amount < 0)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "amount must be an integer in 1..1000");
    if (interval < 0)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "interval_ms must be an integer in 10..60000");
    if (step > (unsigned)amount)
        return SW_DONE;
    if (step > 0) {
        rc = add_count(ctx, 1);
        if (rc < 0)
            return rc;
        if (step == (unsigned)amount)
            return SW_DONE;
    }
    sw_ctx_sleep(ctx, (unsigned)interval);
    return SW_YIELD;
}

/* ---- chat ------------------------------------------------------------------ */

static int chat_send(sw_ctx_t *ctx, json_t *payload)
{
    json_t *text = json_object_get(payload, "text");
    json_t *old, *msgs;
    const char *name;
    size_t n, start;

    if (!json_is_string(text) || json_string_length(text) < 1 ||
        json_string_length(text) > ROOMS_TEXT_MAX)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "text must be 1..%d bytes", ROOMS_TEXT_MAX);
    name = sw_ctx_get_str(ctx, "room", "name");
    if (!*name)
        name = "anonymous";
    /* Values from sw_ctx_get() are never changed in place: build a new list
     * that shares the kept messages. */
    old = sw_ctx_get(ctx, "chat", "messages");
    n = json_array_size(old);
    start = n >= ROOMS_CHAT_KEEP ? n - (ROOMS_CHAT_KEEP - 1) : 0;
    msgs = json_array();
    for (size_t i = start; i < n; i++)
        json_array_append(msgs, json_array_get(old, i));
    json_array_append_new(msgs, json_pack("{s:s, s:O}", "name", name, "text", text));
    return sw_ctx_set(ctx, "chat", "messages", msgs);
}

/* ---- declaration ------------------------------------------------------------ */

int sw_rooms_app_init(sw_app_t *app)
{
    int rc = 0;

    rc |= sw_app_name(app, "rooms");

    rc |= sw_app_state(app, "room", 0);
    rc |= sw_app_var(app, "room", "loads", "0", 0);
    rc |= sw_app_var(app, "room", "name", "\"\"", SW_VAR_SETTABLE);
    rc |= sw_app_computed(app, "room", "room_id", room_id, "router");
    rc |= sw_app_handler(app, "room", "on_load", room_on_load);

    rc |= sw_app_state(app, "counter", SW_STATE_SHARED);
    rc |= sw_app_var(app, "counter", "count", "0", 0);
    rc |= sw_app_handler(app, "counter", "increment", counter_increment);
    rc |= sw_app_handler(app, "counter", "decrement", counter_decrement);
    rc |= sw_app_handler(app, "counter", "add", counter_add);
    rc |= sw_app_handler(app, "counter", "toggle_link", counter_toggle_link);
    rc |= sw_app_computed(app, "counter", "linked", counter_linked, "links");
    rc |= sw_app_computed(app, "counter", "viewers", counter_viewers, "links,presence");
    rc |= sw_app_task(app, "counter", "delayed_increment", counter_delayed_increment);

    /* Cross-state: declared after counter.count exists (deps resolve at the
     * end of init either way). */
    rc |= sw_app_computed(app, "room", "current_count", room_current_count, "counter.count");

    rc |= sw_app_state(app, "chat", SW_STATE_SHARED);
    rc |= sw_app_var(app, "chat", "messages", "[]", 0);
    rc |= sw_app_handler(app, "chat", "send", chat_send);

    rc |= sw_app_on_load(app, "/", "room.on_load");
    rc |= sw_app_on_load(app, "/room/[id]", "room.on_load");
    return rc ? -1 : 0;
}
