/* counter.c — a minimal app built as a loadable module:
 *     statewire --app ./counter_app.so
 * State "counter" with an integer `count` and the event
 * "counter.increment". */
#include "statewire.h"

static int increment(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return sw_ctx_set(ctx, "counter", "count",
                      json_integer(sw_ctx_get_int(ctx, "counter", "count") + 1));
}

int statewire_app_init(sw_app_t *app);

int statewire_app_init(sw_app_t *app)
{
    if (sw_app_name(app, "counter-plugin") < 0 || sw_app_state(app, "counter", 0) < 0 ||
        sw_app_var(app, "counter", "count", "0", 0) < 0 ||
        sw_app_handler(app, "counter", "increment", increment) < 0)
        return -1;
    return 0;
}
