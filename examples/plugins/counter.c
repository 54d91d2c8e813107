/* counter.c — a small app built as a loadable module:
 *     statewire --app ./counter_app.so
 * State "counter" with an integer `count` and the events:
 *   counter.increment          count += 1
 *   counter.reset              count = 0, a "_toast" client action, and
 *                              counter.increment chained on the server
 *   counter.count_up {"n": N}  adds 1, N times, yielding after each step so
 *                              the client sees every value (1 <= N <= 100) */
#include "statewire.h"

static int increment(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return sw_ctx_set(ctx, "counter", "count",
                      json_integer(sw_ctx_get_int(ctx, "counter", "count") + 1));
}

static int reset(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    if (sw_ctx_set(ctx, "counter", "count", json_integer(0)) < 0)
        return -1;
    sw_ctx_action(ctx, "_toast", json_pack("{s:s}", "text", "counter reset"));
    sw_ctx_chain(ctx, "counter.increment", NULL);
    return SW_DONE;
}

static int count_up(sw_ctx_t *ctx, json_t *payload)
{
    json_t *n = json_object_get(payload, "n");
    if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > 100)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "n must be an integer in 1..100");
    sw_ctx_set(ctx, "counter", "count", json_integer(sw_ctx_get_int(ctx, "counter", "count") + 1));
    return (json_int_t)sw_ctx_step(ctx) + 1 < json_integer_value(n) ? SW_YIELD : SW_DONE;
}

int statewire_app_init(sw_app_t *app);

int statewire_app_init(sw_app_t *app)
{
    if (sw_app_name(app, "counter-plugin") < 0 || sw_app_state(app, "counter", 0) < 0 ||
        sw_app_var(app, "counter", "count", "0", 0) < 0 ||
        sw_app_handler(app, "counter", "increment", increment) < 0 ||
        sw_app_handler(app, "counter", "reset", reset) < 0 ||
        sw_app_handler(app, "counter", "count_up", count_up) < 0)
        return -1;
    return 0;
}
