/* statewire.h — the statewire application API.
 *
 * This is the one header an app author includes. An app is a function that
 * declares the app's states, vars, computed vars, event handlers, on_load
 * handlers and background tasks; the server runs the handlers on its side
 * and sends each client only what changed.
 *
 *     static int counter_increment(sw_ctx_t *ctx, json_t *payload)
 *     {
 *         json_int_t n = sw_ctx_get_int(ctx, "counter", "count");
 *         return sw_ctx_set(ctx, "counter", "count", json_integer(n + 1));
 *     }
 *
 *     int statewire_app_init(sw_app_t *app)
 *     {
 *         sw_app_state(app, "counter", SW_STATE_SHARED);
 *         sw_app_var(app, "counter", "count", "0", 0);
 *         sw_app_handler(app, "counter", "increment", counter_increment);
 *         return 0;
 *     }
 *
 * Build an app into the server, or as a shared object loaded with
 * `statewire --app ./myapp.so`; the object must export
 * `int statewire_app_init(sw_app_t *app)` (sw_app_init_fn).
 *
 * Values are jansson json_t. Ownership follows jansson's words: "borrowed"
 * means the caller must not decref, "steals" means the function takes the
 * caller's reference (even when it fails), "new reference" means the caller
 * must decref.
 *
 * Concurrency: every handler of one client token runs one at a time, in
 * order, in one worker process; handlers of different tokens run
 * interleaved on the same thread. A handler must not block: no sleeping, no
 * synchronous network I/O. Long work is a background task (sw_app_task)
 * that returns SW_YIELD between steps.
 */
#ifndef STATEWIRE_H
#define STATEWIRE_H

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SW_API_VERSION 1

/* Registration context; valid only during the app's init function. */
typedef struct sw_app sw_app_t;
/* Handler context; valid only during the handler or computed call. */
typedef struct sw_ctx sw_ctx_t;

/* Handler results. A handler returns SW_DONE when finished, SW_YIELD to
 * have its changes so far committed and sent to the client and then be
 * called again (sw_ctx_step() counts the calls), or the negative value of
 * sw_ctx_fail() to answer the event with an error and undo every change
 * made since the last yield. */
#define SW_DONE 0
#define SW_YIELD 1

/* An event handler. payload is the event's JSON payload (an object;
 * `{}` when the client sent none), borrowed. */
typedef int (*sw_handler_fn)(sw_ctx_t *ctx, json_t *payload);

/* A computed var: returns its current value as a new reference, computed
 * only from vars read with sw_ctx_get() (which must be among the declared
 * dependencies) and the route. Must not call sw_ctx_set(). Returning NULL
 * makes the value JSON null. */
typedef json_t *(*sw_computed_fn)(sw_ctx_t *ctx);

/* The entry point of an app; returns 0, or -1 to refuse to start. */
typedef int (*sw_app_init_fn)(sw_app_t *app);

/* ---- Registration (call from the init function only) -------------------
 * Every sw_app_* call returns 0, or -1 when the declaration is invalid
 * (duplicate name, unknown state, bad JSON default, name too long); the
 * reason is logged and the server refuses to start. Names: states are
 * dotted paths of [a-z0-9_] segments ("room", "room.settings"); vars and
 * handlers are [A-Za-z0-9_] and at most 64 bytes. Vars whose name starts
 * with '_' are backend-only: stored, readable and writable by handlers,
 * never sent to a client. */

/* State flags. */
#define SW_STATE_SHARED 0x1u /* may be linked to a shared token (rooms) */

/* Var flags. */
#define SW_VAR_SETTABLE 0x1u /* generates the event "<state>.set_<var>" */

/* Name the app (shown in logs and /healthz). */
int sw_app_name(sw_app_t *app, const char *name);

/* Declare a state at `path`. Parent states need not be declared. */
int sw_app_state(sw_app_t *app, const char *path, unsigned flags);

/* Declare a stored var of `state` with a JSON text default
 * ("0", "\"\"", "[]", "{\"a\":1}"). With SW_VAR_SETTABLE the event
 * `<state>.set_<name>` with payload {"value": V} sets it (any JSON type
 * that matches the default's type; null is accepted for any). */
int sw_app_var(sw_app_t *app, const char *state, const char *name, const char *default_json,
               unsigned flags);

/* Declare a computed var of `state`. `deps` is a comma-separated list of
 * "<state>.<var>" names (stored or computed, in any state) and/or the
 * words "router" (the client's route), "links" (which states are linked
 * where: sw_ctx_linked) and "presence" (sw_ctx_viewers); the var is
 * recomputed when one of them changes and sent only when its value
 * changed. */
int sw_app_computed(sw_app_t *app, const char *state, const char *name, sw_computed_fn fn,
                    const char *deps);

/* Declare the event handler `<state>.<name>`. */
int sw_app_handler(sw_app_t *app, const char *state, const char *name, sw_handler_fn fn);

/* Declare the background task `<state>.<name>`. A client starts it like an
 * event; the event is answered at once and the task then runs in steps:
 * each call of fn is one step that runs in the token's queue like an event
 * (its changes are committed and sent as a delta without id, other events
 * of the client run between steps). fn returns SW_YIELD to be called again
 * after sw_ctx_sleep() milliseconds (0 by default), or SW_DONE. A task
 * lives in the worker that runs it: if that worker dies, the task stops
 * after its last committed step. */
int sw_app_task(sw_app_t *app, const char *state, const char *name, sw_handler_fn fn);

/* Run the event `event` ("<state>.<handler>", payload {}) when a client
 * hydrates on a route matching `pattern`. Patterns are paths whose
 * segments may be "[name]" parameters: "/room/[id]" matches "/room/a" with
 * param id = "a". "*" matches every route. Several on_load handlers run in
 * declaration order. */
int sw_app_on_load(sw_app_t *app, const char *pattern, const char *event);

/* ---- Authentication --------------------------------------------------------
 * Tokens are bearer secrets: without an authentication hook, whoever
 * presents a token uses its state. An app that knows its users declares a
 * hook; the server then calls it for every hello (WebSocket) and every
 * event stream (SSE) before anything else, and binds each token to the
 * first user that connects with it: a client of another user, or an
 * anonymous one, naming a bound token gets a new token of its own and
 * never sees or changes the bound one. A token used only anonymously stays
 * unbound. */

/* What the hook sees. Every pointer is borrowed for the call; NULL when
 * absent. */
typedef struct sw_auth_request {
    const char *auth;          /* the hello's "auth" string; SSE: the "auth" query
                                  parameter, else the token of an
                                  "Authorization: Bearer <token>" header */
    const char *cookie;        /* Cookie header (WebSocket: of the upgrade request) */
    const char *origin;        /* Origin header */
    const char *authorization; /* Authorization header, verbatim */
    const char *token;         /* the token the client names; NULL when it asks for a new one */
    const char *transport;     /* "websocket" or "sse" */
    const char *peer;          /* the client's address "ip:port" as the server sees it
                                  (behind a proxy: the proxy's) */
} sw_auth_request_t;

/* Largest user id, in bytes (without the NUL). */
#define SW_USER_MAX 128

/* The hook: to admit the client, write its user id (1..SW_USER_MAX bytes
 * of UTF-8, no control characters) NUL-terminated into `user` (user_cap
 * bytes, at least SW_USER_MAX + 1) and return 0; leave `user` "" (it
 * arrives so) to admit it as anonymous. To refuse, return -1, optionally
 * with a short reason for the client in `reason` (reason_cap bytes,
 * arrives ""; keep secrets out): the client gets error "unauthorized" and
 * the WebSocket is closed with 4401 (SSE: HTTP 401). A user id that breaks
 * the rules above refuses the client (logged). Runs on the worker's loop:
 * it must not block (verify a signed token, look up a local table; no
 * network calls). */
typedef int (*sw_auth_fn)(const sw_auth_request_t *req, char *user, size_t user_cap, char *reason,
                          size_t reason_cap);

/* Declare the app's authentication hook (at most one). 0, or -1 when one
 * is declared already or fn is NULL. */
int sw_app_auth(sw_app_t *app, sw_auth_fn fn);

/* ---- Handler context ---------------------------------------------------- */

/* The value of `<state>.<var>` (stored or computed), borrowed; NULL if no
 * such var is declared. Valid until the next sw_ctx_set() of that var.
 * Never modify it in place (changes would bypass the delta and the undo on
 * failure): build a new value (json_deep_copy, or a new array sharing the
 * elements) and sw_ctx_set() it. */
json_t *sw_ctx_get(sw_ctx_t *ctx, const char *state, const char *var);

/* Integer / string shorthands: 0 / "" when the var is missing or has
 * another type. The string is borrowed like sw_ctx_get(). */
json_int_t sw_ctx_get_int(sw_ctx_t *ctx, const char *state, const char *var);
const char *sw_ctx_get_str(sw_ctx_t *ctx, const char *state, const char *var);

/* Set a stored var; steals `value`. Only vars that really change (by
 * json_equal) reach the delta. Returns 0, or -1 if the var is not a stored
 * var of a declared state (the value is released). Not allowed from a
 * computed var. */
int sw_ctx_set(sw_ctx_t *ctx, const char *state, const char *var, json_t *value);

/* Queue the event `name` with `payload` (stolen; NULL means {}; must be an
 * object) for this token on the server: it runs right after this handler,
 * before any later client event, without a round trip to the client.
 * Returns 0, or -1 (logged, payload released) past 64 chained events in one
 * step (SW_MAX_CHAINED), when the token's event queue has no room left for
 * another one (see --max-queue: internal events may use twice its size),
 * or from a computed var: the handler decides what to do about it (fail,
 * or go on without). Dropped if the handler fails. */
#define SW_MAX_CHAINED 64
int sw_ctx_chain(sw_ctx_t *ctx, const char *name, json_t *payload);

/* Add the client action {"name": name, "payload": payload} to the delta's
 * `events` list (payload stolen; NULL means {}). Client actions are
 * delivered after the delta is applied: "_toast", "_redirect", ...
 * Returns 0, or -1 past 64 actions in one step or from a computed var.
 * Dropped if the handler fails. */
int sw_ctx_action(sw_ctx_t *ctx, const char *name, json_t *payload);

/* Failure codes for sw_ctx_fail(). */
#define SW_FAIL_BAD_PAYLOAD 1 /* error code "bad_payload" */
#define SW_FAIL_HANDLER 2     /* error code "handler_error" */

/* Record why the handler fails and return the value the handler must
 * return (negative). The message goes to the client; keep secrets out. */
int sw_ctx_fail(sw_ctx_t *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How many times this handler (or task) has yielded so far: 0 on the
 * first call. */
unsigned sw_ctx_step(sw_ctx_t *ctx);

/* For a task returning SW_YIELD: run the next step after `ms` ms. */
void sw_ctx_sleep(sw_ctx_t *ctx, unsigned ms);

/* The client token this handler runs for (borrowed). */
const char *sw_ctx_token(sw_ctx_t *ctx);

/* The user id the token is bound to (borrowed; see sw_app_auth), "" for
 * an anonymous token or an app without an authentication hook. */
const char *sw_ctx_user(sw_ctx_t *ctx);

/* The client's current route path ("/room/a"; "/" when unknown), and
 * the value of a route parameter from the on_load pattern that matched
 * ("id" of "/room/[id]"), NULL if the route has no such parameter.
 * Parameters are matched against every declared on_load pattern in
 * declaration order; the first pattern that matches the route and names
 * the parameter wins ("*" has none). Values are raw path segments (not
 * percent-decoded) of at most 127 bytes; a longer segment does not match.
 * The string stays valid during the handler or computed call. */
const char *sw_ctx_route(sw_ctx_t *ctx);
const char *sw_ctx_route_param(sw_ctx_t *ctx, const char *name);

/* The whole router object {"path":..., "query": {...}} (borrowed). */
json_t *sw_ctx_router(sw_ctx_t *ctx);

/* ---- Shared state (links) ------------------------------------------------
 * A state declared SW_STATE_SHARED can be linked to a shared token (e.g.
 * "room:lobby"): from then on this client reads and writes that state in
 * the shared token's copy, and every committed change reaches every
 * client linked to it, on every worker and host. Unlinking gives the
 * client its private copy back (it was kept untouched meanwhile).
 *
 * Shared token names: 1..64 chars of [A-Za-z0-9_:.-] with at least one
 * ':' (so they never collide with client tokens). A shared token's
 * copy of a state starts at the state's defaults. Links persist with the
 * client's token.
 *
 * Link and unlink take effect when the handler step returns: reads and
 * writes of that state in the same step still use the copy it had when
 * the step began. The client then receives the whole state from its new
 * copy (every var, as a delta) and the computed vars that depend on it. */

/* Link `state` (SW_STATE_SHARED) of this client to `shared_token`.
 * Linking to the token it is already linked to does nothing. Returns 0,
 * or -1 (logged) for an unknown or non-shared state, a bad token name, or
 * a call from a computed var. */
int sw_ctx_link(sw_ctx_t *ctx, const char *state, const char *shared_token);

/* Unlink `state`; does nothing when it is not linked. 0 or -1. */
int sw_ctx_unlink(sw_ctx_t *ctx, const char *state);

/* The shared token `state` is linked to (borrowed), or NULL. Pending
 * link/unlink calls of the current step are not reflected. A computed var
 * that calls this must declare the dependency "links". */
const char *sw_ctx_linked(sw_ctx_t *ctx, const char *state);

/* Presence: how many clients linked to the same shared token as `state`
 * are connected now, across all workers and hosts; 0 when `state` is not
 * linked. A computed var that calls this must declare the dependency
 * "presence" (and "links"). */
json_int_t sw_ctx_viewers(sw_ctx_t *ctx, const char *state);

#ifdef __cplusplus
}
#endif

#endif
