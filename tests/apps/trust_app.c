/* trust_app.c — an app for the trust tests (tests/test_it_trust.c), built
 * as a loadable module. Its authentication hook admits:
 *   auth "user:<name>"                 as user <name>
 *   Cookie "sw_user=<name>"            as user <name> (when there is no auth)
 *   auth "deny"                        refused with the reason "denied by test"
 *   auth "bad-user", "bad-user-c1"     a user id with a C0 / C1 control character (refused)
 *   anything else, or nothing          anonymous
 * State "me" (private): `user` and `count`, and the events
 *   me.whoami                 user = sw_ctx_user()
 *   me.increment              count += 1
 *   me.chain {"n": N}         calls sw_ctx_chain("me.increment") N times;
 *                             `chained` / `refused` count the 0 / -1 results
 *   me.slow {"n": N}          count += 1, N times, yielding after each step */
#include <stdio.h>
#include <string.h>

#include "statewire.h"

static int auth(const sw_auth_request_t *req, char *user, size_t user_cap, char *reason,
                size_t reason_cap)
{
    const char *a = req->auth;
    if (a && strcmp(a, "deny") == 0) {
        snprintf(reason, reason_cap, "denied by test");
        return -1;
    }
    if (a && strcmp(a, "bad-user") == 0) {
        snprintf(user, user_cap, "bad\nuser");
        return 0;
    }
    if (a && strcmp(a, "bad-user-c1") == 0) {
        snprintf(user, user_cap, "bad\xc2\x85user"); /* U+0085, a C1 control */
        return 0;
    }
    if (a && strncmp(a, "user:", 5) == 0) {
        snprintf(user, user_cap, "%s", a + 5);
        return 0;
    }
    const char *c = req->cookie ? strstr(req->cookie, "sw_user=") : NULL;
    if (!a && c) {
        c += 8;
        size_t n = strcspn(c, "; ");
        snprintf(user, user_cap, "%.*s", (int)n, c);
    }
    return 0;
}

static int whoami(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return sw_ctx_set(ctx, "me", "user", json_string(sw_ctx_user(ctx)));
}

static int increment(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return sw_ctx_set(ctx, "me", "count", json_integer(sw_ctx_get_int(ctx, "me", "count") + 1));
}

static int slow(sw_ctx_t *ctx, json_t *payload)
{
    json_int_t n = json_integer_value(json_object_get(payload, "n"));
    sw_ctx_set(ctx, "me", "count", json_integer(sw_ctx_get_int(ctx, "me", "count") + 1));
    return (json_int_t)sw_ctx_step(ctx) + 1 < n ? SW_YIELD : SW_DONE;
}

static int chain(sw_ctx_t *ctx, json_t *payload)
{
    json_int_t n = json_integer_value(json_object_get(payload, "n"));
    json_int_t ok = 0, refused = 0;
    for (json_int_t i = 0; i < n; i++) {
        if (sw_ctx_chain(ctx, "me.increment", NULL) == 0)
            ok++;
        else
            refused++;
    }
    sw_ctx_set(ctx, "me", "chained", json_integer(ok));
    return sw_ctx_set(ctx, "me", "refused", json_integer(refused));
}

int statewire_app_init(sw_app_t *app);

int statewire_app_init(sw_app_t *app)
{
    if (sw_app_name(app, "trust-test") < 0 || sw_app_auth(app, auth) < 0 ||
        sw_app_state(app, "me", 0) < 0 || sw_app_var(app, "me", "user", "\"\"", 0) < 0 ||
        sw_app_var(app, "me", "count", "0", 0) < 0 ||
        sw_app_var(app, "me", "chained", "0", 0) < 0 ||
        sw_app_var(app, "me", "refused", "0", 0) < 0 ||
        sw_app_handler(app, "me", "whoami", whoami) < 0 ||
        sw_app_handler(app, "me", "increment", increment) < 0 ||
        sw_app_handler(app, "me", "chain", chain) < 0 ||
        sw_app_handler(app, "me", "slow", slow) < 0)
        return -1;
    return 0;
}
