/* Integration: shared state (rooms) across two server instances ("two
 * hosts", 2 workers each) on one real redis-server, with real WebSocket
 * clients that apply deltas to a local store the way a browser client
 * does. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/mpjson.h"
#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 10000
#define PRESENCE_TTL_MS 1500
/* The documented bound for a dead worker's presence entries:
 * ttl + ttl/3 (the next reap by a live worker). */
#define PRESENCE_BOUND_MS (PRESENCE_TTL_MS + PRESENCE_TTL_MS / 3)

static sw_test_redis_t *redis;
static sw_test_server_t *host[2];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis, "redis-server did not start");
    const char *extra[] = {"--lease-ms", "3000", "--presence-ttl-ms", "1500", NULL};
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, extra);
        cr_assert(host[i], "host %d did not start", i);
    }
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        if (host[i])
            sw_test_server_stop(host[i], SIGTERM, 5000);
        host[i] = NULL;
    }
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(shared, .init = setup, .fini = teardown, .timeout = 180);

/* ---- a client with a local store -------------------------------------- */

typedef struct tc {
    sw_wsc_t *c;
    json_t *state; /* {state: {var: value}} as the client sees it */
    int next_id;
    int errors;
} tc_t;

static void apply(tc_t *t, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type || strcmp(type, "delta") != 0) {
        if (type && strcmp(type, "error") == 0)
            t->errors++;
        return;
    }
    json_t *d = json_object_get(m, "delta");
    if (json_is_true(json_object_get(m, "full"))) {
        json_decref(t->state);
        t->state = json_deep_copy(d);
        return;
    }
    const char *st;
    json_t *vars;
    json_object_foreach(d, st, vars)
    {
        json_t *dst = json_object_get(t->state, st);
        if (!dst) {
            dst = json_object();
            json_object_set_new(t->state, st, dst);
        }
        json_object_update(dst, vars);
    }
}

/* Read one message (if any within ms) and apply it; returns it (new ref)
 * or NULL. */
static json_t *pump(tc_t *t, int ms)
{
    json_t *m = sw_wsc_recv_json(t->c, ms);
    if (m)
        apply(t, m);
    return m;
}

static tc_t *tc_open_port(int port, const char *token)
{
    tc_t *t = calloc(1, sizeof(*t));
    t->c = sw_wsc_connect("127.0.0.1", port, "/_event", T_MS);
    if (!t->c) {
        free(t);
        return NULL;
    }
    json_t *w = sw_wsc_hello(t->c, token, NULL, T_MS);
    if (!w) {
        sw_wsc_free(t->c);
        free(t);
        return NULL;
    }
    json_decref(w);
    t->state = json_object();
    t->next_id = 1;
    return t;
}

static tc_t *tc_open(int hi, const char *token)
{
    return tc_open_port(host[hi]->port, token);
}

static void tc_free(tc_t *t)
{
    if (!t)
        return;
    sw_wsc_free(t->c);
    json_decref(t->state);
    free(t);
}

/* Send an event and apply everything until its answer; returns the
 * answer (new ref) or NULL on timeout. */
static json_t *tc_call(tc_t *t, const char *name, const char *payload, const char *path)
{
    int id = t->next_id++;
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (payload)
        json_object_set_new(m, "payload", json_loads(payload, 0, NULL));
    if (path)
        json_object_set_new(m, "router", json_pack("{s:s}", "path", path));
    int rc = sw_wsc_send_json(t->c, m);
    json_decref(m);
    if (rc)
        return NULL;
    for (;;) {
        json_t *r = pump(t, T_MS);
        if (!r)
            return NULL;
        if (json_integer_value(json_object_get(r, "id")) == id && json_object_get(r, "id"))
            return r;
        json_decref(r);
    }
}

static json_t *var(tc_t *t, const char *state, const char *name)
{
    return json_object_get(json_object_get(t->state, state), name);
}

static json_int_t ivar(tc_t *t, const char *state, const char *name)
{
    return json_integer_value(var(t, state, name));
}

/* Apply messages until state.name == want (integer) or ms pass. */
static int wait_int(tc_t *t, const char *state, const char *name, json_int_t want, int ms)
{
    uint64_t end = sw_now_ms() + (uint64_t)ms;
    while (ivar(t, state, name) != want) {
        uint64_t now = sw_now_ms();
        if (now >= end)
            return 0;
        json_decref(pump(t, (int)(end - now)));
    }
    return 1;
}

/* Hydrate on path and let on_load (links) settle. */
static void tc_hydrate(tc_t *t, const char *path)
{
    json_t *r = tc_call(t, "hydrate", NULL, path);
    cr_assert(r, "hydrate answered");
    cr_assert(json_is_true(json_object_get(r, "full")));
    json_decref(r);
    /* on_load's delta (loads + links) follows without id */
    json_t *m = pump(t, T_MS);
    cr_assert(m, "on_load delta");
    json_decref(m);
}

static json_int_t redis_shared_count(const char *shared)
{
    json_t *v;
    json_int_t n = -1;
    if (sw_test_redis_state(redis, shared, "counter", &v) == 1)
        n = json_integer_value(json_object_get(v, "count"));
    json_decref(v);
    return n;
}

/* ---- tests ------------------------------------------------------------- */

Test(shared, rooms_span_hosts_and_stay_apart)
{
    tc_t *a = tc_open(0, "tok-a");
    tc_t *b = tc_open(1, "tok-b");
    tc_t *x = tc_open(1, "tok-x");
    cr_assert(a && b && x);
    tc_hydrate(a, "/room/t1");
    tc_hydrate(b, "/room/t1");
    tc_hydrate(x, "/room/t2");
    cr_assert(json_is_true(var(a, "counter", "linked")));
    cr_assert(wait_int(a, "counter", "viewers", 2, T_MS), "a sees 2 viewers");
    cr_assert(wait_int(b, "counter", "viewers", 2, T_MS), "b sees 2 viewers");
    cr_assert(wait_int(x, "counter", "viewers", 1, T_MS), "t2 has its own presence");

    json_t *r = tc_call(a, "counter.increment", NULL, NULL);
    cr_assert(r);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(r, "delta"), "counter"), "count")),
                 1);
    json_decref(r);
    cr_assert(wait_int(b, "counter", "count", 1, T_MS), "b (other host) sees a's increment");
    cr_assert_eq(ivar(b, "room", "current_count"), 1, "b's computed var follows the room");
    json_decref(tc_call(b, "counter.add", "{\"amount\": 4}", NULL));
    cr_assert(wait_int(a, "counter", "count", 5, T_MS), "a sees b's add");
    cr_assert_eq(ivar(a, "room", "current_count"), 5);

    /* t2 saw none of it. */
    json_decref(pump(x, 300));
    cr_assert_eq(ivar(x, "counter", "count"), 0);
    cr_assert_eq(redis_shared_count("room:t1"), 5);

    /* Chat: one message, seen by the other host with the sender's name. */
    json_decref(tc_call(a, "room.set_name", "{\"value\": \"ada\"}", NULL));
    json_decref(tc_call(a, "chat.send", "{\"text\": \"hello\"}", NULL));
    uint64_t end = sw_now_ms() + T_MS;
    while (json_array_size(var(b, "chat", "messages")) < 1 && sw_now_ms() < end)
        json_decref(pump(b, 200));
    json_t *msg0 = json_array_get(var(b, "chat", "messages"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(msg0, "name")), "ada");
    cr_assert_str_eq(json_string_value(json_object_get(msg0, "text")), "hello");
    json_t *e = tc_call(b, "chat.send", "{\"text\": \"\"}", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_payload");
    json_decref(e);

    /* Leaving: viewers drops for the others. */
    tc_free(b);
    cr_assert(wait_int(a, "counter", "viewers", 1, T_MS), "viewers drops when b leaves");
    tc_free(a);
    tc_free(x);
}

struct hot_arg {
    int idx;
    int events;
    int acked;
    int final_ok;
    json_int_t final;
    tc_t *t;
};

static pthread_barrier_t hot_barrier;

static void *hot_client(void *p)
{
    struct hot_arg *a = p;
    tc_t *t = a->t;
    pthread_barrier_wait(&hot_barrier);
    for (int i = 0; i < a->events; i++) {
        json_t *r = tc_call(t, "counter.increment", NULL, NULL);
        if (r && strcmp(json_string_value(json_object_get(r, "type")), "delta") == 0)
            a->acked++;
        json_decref(r);
    }
    pthread_barrier_wait(&hot_barrier);
    a->final_ok = wait_int(t, "counter", "count", 2000, 20000);
    a->final = ivar(t, "counter", "count");
    return NULL;
}

Test(shared, hot_room_200_clients_lose_no_update, .timeout = 300)
{
    enum { N = 200, E = 10 };
    static struct hot_arg args[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        char tok[32];
        snprintf(tok, sizeof(tok), "tok-hot-%d", i);
        args[i] = (struct hot_arg){.idx = i, .events = E};
        args[i].t = tc_open(i % 2, tok);
        cr_assert(args[i].t, "client %d connects", i);
        tc_hydrate(args[i].t, "/room/hot");
    }
    pthread_barrier_init(&hot_barrier, NULL, N);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, hot_client, &args[i]);
    int acked = 0, ended = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        acked += args[i].acked;
        ended += args[i].final_ok;
    }
    pthread_barrier_destroy(&hot_barrier);
    cr_assert_eq(acked, N * E, "every increment acknowledged (%d)", acked);
    cr_assert_eq(redis_shared_count("room:hot"), N * E, "Redis holds %d", N * E);
    for (int i = 0; i < N && ended != N; i++)
        if (!args[i].final_ok)
            cr_log_warn("client %d (host %d) ended at %lld", i, i % 2, (long long)args[i].final);
    cr_assert_eq(ended, N, "every client ends with count %d (%d did)", N * E, ended);
    for (int i = 0; i < N; i++)
        tc_free(args[i].t);
}

Test(shared, unlink_restores_private_copy_and_stops_fanout)
{
    tc_t *a = tc_open(0, "tok-ua");
    tc_t *b = tc_open(1, "tok-ub");
    tc_hydrate(a, "/room/u");
    tc_hydrate(b, "/room/u");
    json_decref(tc_call(a, "counter.add", "{\"amount\": 7}", NULL));
    cr_assert(wait_int(b, "counter", "count", 7, T_MS));

    /* b unlinks: its private copy (never touched: 0) comes back. */
    json_t *r = tc_call(b, "counter.toggle_link", NULL, NULL);
    cr_assert(r);
    json_decref(r);
    cr_assert_eq(ivar(b, "counter", "count"), 0, "private copy restored");
    cr_assert(json_is_false(var(b, "counter", "linked")));
    cr_assert_eq(ivar(b, "room", "current_count"), 0);
    /* (b's chat is still linked to the room, so b still counts as a viewer
     * of room:u: presence is per shared token.) */

    /* Private changes stay private; shared ones no longer reach b. */
    json_decref(tc_call(b, "counter.increment", NULL, NULL));
    cr_assert_eq(ivar(b, "counter", "count"), 1);
    json_decref(tc_call(a, "counter.increment", NULL, NULL));
    json_decref(pump(b, 500));
    cr_assert_eq(ivar(b, "counter", "count"), 1, "no fan-out after unlink");
    cr_assert_eq(ivar(a, "counter", "count"), 8);
    cr_assert_eq(redis_shared_count("room:u"), 8);

    /* Linking again shows the room's count. */
    json_decref(tc_call(b, "counter.toggle_link", NULL, NULL));
    cr_assert_eq(ivar(b, "counter", "count"), 8);
    cr_assert(json_is_true(var(b, "counter", "linked")));
    tc_free(a);
    tc_free(b);
}

Test(shared, late_hydrate_gets_current_shared_state)
{
    tc_t *a = tc_open(0, "tok-la");
    tc_hydrate(a, "/room/late");
    for (int i = 0; i < 3; i++)
        json_decref(tc_call(a, "counter.increment", NULL, NULL));
    json_decref(tc_call(a, "chat.send", "{\"text\": \"first\"}", NULL));
    tc_t *b = tc_open(1, "tok-lb");
    json_t *r = tc_call(b, "hydrate", NULL, "/room/late");
    cr_assert(r);
    json_decref(r);
    cr_assert(wait_int(b, "counter", "count", 3, T_MS), "the late client sees the room's count");
    cr_assert_eq(json_array_size(var(b, "chat", "messages")), 1);
    tc_free(a);
    tc_free(b);
}

/* Send an event without waiting for its answer; returns its id. */
static int tc_send(tc_t *t, const char *name, const char *payload)
{
    int id = t->next_id++;
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (payload)
        json_object_set_new(m, "payload", json_loads(payload, 0, NULL));
    int rc = sw_wsc_send_json(t->c, m);
    json_decref(m);
    cr_assert_eq(rc, 0);
    return id;
}

/* Apply messages until the answer to `id`. */
static void tc_wait_id(tc_t *t, int id)
{
    for (;;) {
        json_t *r = pump(t, T_MS);
        cr_assert(r, "answer to event %d", id);
        int hit = json_object_get(r, "id") && json_integer_value(json_object_get(r, "id")) == id;
        json_decref(r);
        if (hit)
            return;
    }
}

/* Apply messages until none comes for quiet_ms. */
static void tc_drain(tc_t *t, int quiet_ms)
{
    json_t *m;
    while ((m = pump(t, quiet_ms)))
        json_decref(m);
}

/* Fan-out deltas are computed once for every local client that holds the
 * same view of the room (worker/fanout.c, sw_token_run_catchups); the
 * others' trees lag until they run an event. Clients that run events of
 * their own in between, see viewers come and go, or see values go back
 * and forth must still end with exactly the room's state. */
Test(shared, group_fanout_keeps_every_view_exact, .timeout = 120)
{
    enum { N = 8, ROUNDS = 32 };
    tc_t *c[N];
    json_int_t expect = 0;
    char tok[32];
    for (int i = 0; i < N; i++) {
        snprintf(tok, sizeof(tok), "tok-gf%d", i);
        c[i] = tc_open(0, tok);
        cr_assert(c[i]);
        tc_hydrate(c[i], "/room/gf");
    }
    for (int round = 0; round < ROUNDS; round++) {
        tc_t *a = c[round % N], *b = c[(round * 3 + 1) % N];
        char text[64];
        switch (round % 4) {
        case 0: { /* two clients at once: one of them is busy during fan-out */
            int ia = tc_send(a, "counter.increment", NULL);
            int ib = tc_send(b, "counter.increment", NULL);
            tc_wait_id(a, ia);
            tc_wait_id(b, ib);
            break;
        }
        case 1: /* back to an earlier value */
            json_decref(tc_call(a, "counter.decrement", NULL, NULL));
            break;
        case 2:
            snprintf(text, sizeof(text), "{\"text\": \"m%d\"}", round);
            json_decref(tc_call(a, "chat.send", text, NULL));
            break;
        default: { /* a viewer comes and goes */
            snprintf(tok, sizeof(tok), "tok-gfv%d", round);
            tc_t *v = tc_open(round % 2, tok);
            cr_assert(v);
            tc_hydrate(v, "/room/gf");
            json_decref(tc_call(a, "counter.increment", NULL, NULL));
            tc_free(v);
            break;
        }
        }
        expect += round % 4 == 0 ? 2 : round % 4 == 1 ? -1 : round % 4 == 3 ? 1 : 0;
        for (int i = 0; i < N; i++) {
            cr_assert(wait_int(c[i], "counter", "count", expect, 3000),
                      "round %d: client %d sees count %lld, the room has %lld", round, i,
                      (long long)ivar(c[i], "counter", "count"), (long long)expect);
            cr_assert_eq(ivar(c[i], "room", "current_count"), expect, "round %d: client %d", round,
                         i);
        }
    }
    tc_t *f = tc_open(1, "tok-gf-fresh");
    cr_assert(f);
    tc_hydrate(f, "/room/gf");
    cr_assert(wait_int(f, "counter", "viewers", N + 1, 5000), "viewers settle at %d", N + 1);
    tc_drain(f, 300);
    json_int_t count = ivar(f, "counter", "count");
    cr_assert_eq(count, ROUNDS / 4 * 2, "the room's count");
    cr_assert_eq(count, redis_shared_count("room:gf"));
    cr_assert_eq(json_array_size(var(f, "chat", "messages")), ROUNDS / 4);
    for (int i = 0; i < N; i++) {
        cr_assert(wait_int(c[i], "counter", "viewers", N + 1, 5000), "client %d: viewers", i);
        tc_drain(c[i], 300);
        cr_assert(json_equal(json_object_get(c[i]->state, "counter"),
                             json_object_get(f->state, "counter")),
                  "client %d: counter view %s, fresh %s", i,
                  json_dumps(json_object_get(c[i]->state, "counter"), JSON_COMPACT),
                  json_dumps(json_object_get(f->state, "counter"), JSON_COMPACT));
        cr_assert(
            json_equal(json_object_get(c[i]->state, "chat"), json_object_get(f->state, "chat")),
            "client %d: chat view", i);
        cr_assert(json_equal(var(c[i], "room", "current_count"), var(f, "room", "current_count")),
                  "client %d: room.current_count", i);
        cr_assert_eq(c[i]->errors, 0);
    }
    for (int i = 0; i < N; i++)
        tc_free(c[i]);
    tc_free(f);
}

/* A client whose tree lags (group fan-out) and that then stays busy while
 * the room changes more often than the worker keeps sent views (8) cannot
 * get an exact difference any more: it gets one full delta, then the
 * answer to its event, and ends with the room's state. Busy here: its
 * event waits for a lease another holder has. One worker, so that the
 * three clients share the group. */
Test(shared, lagging_client_past_the_kept_views_gets_a_full_delta, .timeout = 120)
{
    const char *extra[] = {"--lease-ms", "3000", NULL};
    sw_test_server_t *solo = sw_test_server_start(0, sw_test_redis_url(redis), 1, extra);
    cr_assert(solo);
    tc_t *a = tc_open_port(solo->port, "tok-fa");
    tc_t *x = tc_open_port(solo->port, "tok-fx");
    tc_t *y = tc_open_port(solo->port, "tok-fy");
    cr_assert(a && x && y);
    tc_hydrate(a, "/room/fb");
    tc_hydrate(x, "/room/fb");
    tc_hydrate(y, "/room/fb");
    json_decref(tc_call(y, "counter.increment", NULL, NULL)); /* a leads, x lags */
    cr_assert(wait_int(x, "counter", "count", 1, T_MS));
    cr_assert(wait_int(a, "counter", "count", 1, T_MS));
    /* x's worker gives x's lease up when idle (lease-ms/2), then another
     * holder takes it: x's next event waits. */
    redisContext *rc = sw_test_redis_connect(redis);
    int taken = 0;
    for (int i = 0; i < 50 && !taken; i++) {
        usleep(100000);
        redisReply *r = redisCommand(rc, "SET sw:{tok-fx}:lease intruder NX PX 3000");
        taken = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
    }
    cr_assert(taken, "x's lease was released when idle");
    /* x's worker asks the holder for the lease through its inbox: seeing
     * that request proves x's event is waiting. */
    redisContext *sub = sw_test_redis_connect(redis);
    cr_assert(sub);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE sw:{inbox:intruder}:ch"));
    struct timeval tv = {.tv_sec = 5};
    redisSetTimeout(sub, tv);
    int ix = tc_send(x, "counter.increment", NULL);
    redisReply *ask = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&ask), REDIS_OK, "the holder is asked for the lease");
    cr_assert(ask && ask->type == REDIS_REPLY_ARRAY && ask->elements == 3 &&
              strcmp(ask->element[2]->str, "tok-fx") == 0);
    freeReplyObject(ask);
    redisFree(sub);
    for (int i = 0; i < 12; i++)
        json_decref(tc_call(y, "counter.increment", NULL, NULL));
    freeReplyObject(redisCommand(rc, "DEL sw:{tok-fx}:lease"));
    redisFree(rc);
    /* Before the answer: one full delta without id. */
    int full = 0;
    for (;;) {
        json_t *m = pump(x, T_MS);
        cr_assert(m, "x gets its answer");
        if (json_is_true(json_object_get(m, "full")) && !json_object_get(m, "id"))
            full = 1;
        int answer = json_object_get(m, "id") && json_integer_value(json_object_get(m, "id")) == ix;
        if (answer)
            cr_assert_str_eq(json_string_value(json_object_get(m, "type")), "delta");
        json_decref(m);
        if (answer)
            break;
    }
    cr_assert(full, "x got a full delta before its answer");
    cr_assert(wait_int(y, "counter", "count", 14, T_MS));
    cr_assert(wait_int(x, "counter", "count", 14, T_MS));
    cr_assert(wait_int(a, "counter", "count", 14, T_MS));
    cr_assert_eq(redis_shared_count("room:fb"), 14);
    cr_assert_eq(x->errors, 0);
    tc_free(a);
    tc_free(x);
    tc_free(y);
    sw_test_server_stop(solo, SIGTERM, 5000);
}

Test(shared, killed_worker_presence_expires_and_recovers, .timeout = 120)
{
    enum { N = 6 };
    tc_t *watcher = tc_open(1, "tok-watch");
    tc_hydrate(watcher, "/room/k");
    tc_t *c[N];
    char tok[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(tok[i], sizeof(tok[i]), "tok-k-%d", i);
        c[i] = tc_open(0, tok[i]);
        tc_hydrate(c[i], "/room/k");
    }
    cr_assert(wait_int(watcher, "counter", "viewers", N + 1, T_MS));

    pid_t pids[8];
    cr_assert_eq(sw_test_server_workers(host[0], pids, 8), 2);
    cr_assert_eq(kill(pids[0], SIGKILL), 0);
    /* Which clients did the kill take? */
    int dead = 0;
    int alive[N];
    for (int i = 0; i < N; i++) {
        json_t *r = tc_call(c[i], "counter.increment", NULL, NULL);
        alive[i] = r != NULL;
        json_decref(r);
        dead += !alive[i];
    }
    cr_assert(dead > 0, "the killed worker had clients");
    uint64_t t0 = sw_now_ms();
    cr_assert(wait_int(watcher, "counter", "viewers", N + 1 - dead, PRESENCE_BOUND_MS + 3000),
              "viewers drops by the dead worker's %d clients", dead);
    uint64_t took = sw_now_ms() - t0;
    cr_log_info("viewers dropped %llu ms after the kill (bound %d ms)", (unsigned long long)took,
                PRESENCE_BOUND_MS);

    /* They reconnect (same tokens) and presence recovers. */
    for (int i = 0; i < N; i++) {
        if (alive[i])
            continue;
        tc_free(c[i]);
        c[i] = tc_open(0, tok[i]);
        cr_assert(c[i], "reconnect %d", i);
        tc_hydrate(c[i], "/room/k");
    }
    cr_assert(wait_int(watcher, "counter", "viewers", N + 1, T_MS), "viewers recovers");
    for (int i = 0; i < N; i++)
        tc_free(c[i]);
    tc_free(watcher);
}

Test(shared, background_task_steps_reach_every_linked_client)
{
    tc_t *a = tc_open(0, "tok-ta");
    tc_t *b = tc_open(1, "tok-tb");
    tc_hydrate(a, "/room/task");
    tc_hydrate(b, "/room/task");
    json_t *r =
        tc_call(a, "counter.delayed_increment", "{\"amount\": 3, \"interval_ms\": 100}", NULL);
    cr_assert(r);
    cr_assert_str_eq(json_string_value(json_object_get(r, "type")), "delta");
    json_decref(r);
    /* a's other events keep flowing while the task runs */
    json_t *d = tc_call(a, "room.set_name", "{\"value\": \"bo\"}", NULL);
    cr_assert(d);
    json_decref(d);
    /* b sees the steps one by one: 1, 2, 3 (each a committed delta). */
    json_int_t seen = 0;
    uint64_t end = sw_now_ms() + T_MS;
    while (seen < 3 && sw_now_ms() < end) {
        json_decref(pump(b, 200));
        json_int_t now = ivar(b, "counter", "count");
        if (now != seen) {
            cr_assert_eq(now, seen + 1, "b saw count jump from %lld to %lld", (long long)seen,
                         (long long)now);
            seen = now;
        }
    }
    cr_assert_eq(seen, 3, "b sees every step");
    cr_assert(wait_int(a, "counter", "count", 3, T_MS), "a sees every step");
    cr_assert_eq(redis_shared_count("room:task"), 3);
    tc_free(a);
    tc_free(b);
}
