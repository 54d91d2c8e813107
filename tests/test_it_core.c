/* Integration: the real statewire binary (master + 2 workers) against a
 * real redis-server, driven by real WebSocket clients over loopback. */
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

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 5000

static sw_test_redis_t *redis;
static sw_test_server_t *server;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis, "redis-server did not start");
    const char *extra[] = {"--lease-ms", "2000", NULL};
    server = sw_test_server_start(0, sw_test_redis_url(redis), 2, extra);
    cr_assert(server, "statewire did not start");
}

static void teardown(void)
{
    if (server)
        sw_test_server_stop(server, SIGTERM, 5000);
    server = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(core, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---------------------------------------------------------- */

static sw_wsc_t *connect_client(const char *token, json_t **welcome)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c, "WebSocket connect failed");
    json_t *w = sw_wsc_hello(c, token, NULL, T_MS);
    cr_assert(w, "no welcome");
    cr_assert_str_eq(json_string_value(json_object_get(w, "type")), "welcome");
    if (welcome)
        *welcome = w;
    else
        json_decref(w);
    return c;
}

static void send_event(sw_wsc_t *c, int64_t id, const char *name, const char *payload_json,
                       const char *path)
{
    json_t *m = json_pack("{s:s, s:I, s:s}", "type", "event", "id", (json_int_t)id, "name", name);
    if (payload_json) {
        json_t *p = json_loads(payload_json, JSON_DECODE_ANY, NULL);
        cr_assert(p, "bad payload literal in test");
        json_object_set_new(m, "payload", p);
    }
    if (path)
        json_object_set_new(m, "router", json_pack("{s:s}", "path", path));
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
}

/* The first message answering event `id` (delta or error); messages
 * without that id are dropped. */
static json_t *wait_answer(sw_wsc_t *c, int64_t id)
{
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "no answer for event %lld", (long long)id);
        json_t *jid = json_object_get(m, "id");
        if (jid && json_integer_value(jid) == id)
            return m;
        json_decref(m);
    }
}

static json_t *call(sw_wsc_t *c, int64_t id, const char *name, const char *payload_json)
{
    send_event(c, id, name, payload_json, NULL);
    return wait_answer(c, id);
}

static json_int_t jint(json_t *root, const char *path)
{
    json_t *v = root;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    cr_assert(json_is_integer(v), "%s is not an integer", path);
    return json_integer_value(v);
}

static const char *msg_type(json_t *m)
{
    return json_string_value(json_object_get(m, "type"));
}

/* Hydrate on `path`: returns the full delta; the on_load delta that
 * follows is consumed. */
static json_t *hydrate(sw_wsc_t *c, int64_t id, const char *path)
{
    send_event(c, id, "hydrate", NULL, path);
    json_t *full = wait_answer(c, id);
    cr_assert_str_eq(msg_type(full), "delta");
    cr_assert(json_is_true(json_object_get(full, "full")));
    /* on_load (room.loads += 1) follows as a delta without id */
    json_t *onload = sw_wsc_recv_json(c, T_MS);
    cr_assert(onload, "no on_load delta");
    cr_assert_str_eq(msg_type(onload), "delta");
    cr_assert_null(json_object_get(onload, "id"));
    json_decref(onload);
    return full;
}

/* Read the stored counter.count of a token straight from Redis. */
static json_int_t redis_count(const char *token)
{
    json_t *v;
    cr_assert_eq(sw_test_redis_state(redis, token, "counter", &v), 1,
                 "no msgpack counter field for %s", token);
    json_int_t n = json_integer_value(json_object_get(v, "count"));
    json_decref(v);
    return n;
}

/* ---- tests ------------------------------------------------------------- */

Test(core, hello_welcome)
{
    json_t *w;
    sw_wsc_t *c = connect_client(NULL, &w);
    const char *token = json_string_value(json_object_get(w, "token"));
    cr_assert(token && strlen(token) >= 16, "welcome carries a fresh token");
    cr_assert(json_string_value(json_object_get(w, "conn_id")));
    cr_assert(json_string_value(json_object_get(w, "conn_token")));
    cr_assert(!json_is_true(json_object_get(w, "resumed")));
    json_decref(w);
    sw_wsc_free(c);

    /* A given token is kept. */
    c = connect_client("tok-hello-1", &w);
    cr_assert_str_eq(json_string_value(json_object_get(w, "token")), "tok-hello-1");
    json_decref(w);
    sw_wsc_free(c);
}

Test(core, hydrate_returns_full_state_with_defaults)
{
    sw_wsc_t *c = connect_client("tok-hydrate", NULL);
    json_t *full = hydrate(c, 1, "/room/abc");
    json_t *d = json_object_get(full, "delta");
    cr_assert_eq(jint(d, "counter.count"), 0);
    cr_assert_eq(jint(d, "room.loads"), 0);
    cr_assert_eq(jint(d, "room.current_count"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(d, "room"), "room_id")),
                     "abc");
    cr_assert(json_is_array(json_object_get(json_object_get(d, "chat"), "messages")));
    cr_assert_null(json_object_get(json_object_get(d, "counter"), "_linked"),
                   "backend-only vars never leave the server");
    json_decref(full);

    /* A second hydrate shows on_load's effect (loads was incremented). */
    full = hydrate(c, 2, "/room/abc");
    cr_assert_eq(jint(json_object_get(full, "delta"), "room.loads"), 1);
    json_decref(full);
    sw_wsc_free(c);
}

Test(core, events_return_deltas_with_id_and_only_changed_vars)
{
    sw_wsc_t *c = connect_client("tok-delta", NULL);
    json_t *full = hydrate(c, 1, "/"); /* private: the counter is not linked */
    json_decref(full);
    json_t *d1 = call(c, 2, "counter.increment", NULL);
    cr_assert_str_eq(msg_type(d1), "delta");
    cr_assert_eq(json_integer_value(json_object_get(d1, "id")), 2);
    json_t *expect =
        json_loads("{\"counter\":{\"count\":1},\"room\":{\"current_count\":1}}", 0, NULL);
    cr_assert(json_equal(json_object_get(d1, "delta"), expect),
              "delta carries only the changed var and the computed var that depends on it: %s",
              json_dumps(json_object_get(d1, "delta"), JSON_COMPACT));
    json_decref(expect);
    json_int_t seq1 = jint(d1, "seq");

    json_t *d2 = call(c, 3, "counter.add", "{\"amount\": 5}");
    cr_assert_eq(jint(d2, "delta.counter.count"), 6);
    cr_assert_eq(jint(d2, "delta.room.current_count"), 6, "computed var updated");
    cr_assert_eq(jint(d2, "seq"), seq1 + 1, "seq grows by one per delta");

    json_t *d3 = call(c, 4, "room.set_name", "{\"value\": \"ada\"}");
    json_t *exp3 = json_loads("{\"room\":{\"name\":\"ada\"}}", 0, NULL);
    cr_assert(json_equal(json_object_get(d3, "delta"), exp3));
    json_decref(exp3);

    /* Setting the same value changes nothing: an empty delta answers. */
    json_t *d4 = call(c, 5, "room.set_name", "{\"value\": \"ada\"}");
    cr_assert_str_eq(msg_type(d4), "delta");
    cr_assert_eq(json_object_size(json_object_get(d4, "delta")), 0);

    json_decref(d1);
    json_decref(d2);
    json_decref(d3);
    json_decref(d4);
    cr_assert_eq(redis_count("tok-delta"), 6, "Redis holds the committed state");
    sw_wsc_free(c);
}

Test(core, errors_leave_connection_usable_and_state_unchanged)
{
    sw_wsc_t *c = connect_client("tok-err", NULL);
    json_decref(hydrate(c, 1, "/"));
    json_decref(call(c, 2, "counter.increment", NULL));

    json_t *e = call(c, 3, "counter.explode", NULL);
    cr_assert_str_eq(msg_type(e), "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "unknown_event");
    json_decref(e);

    e = call(c, 4, "counter.add", "{\"amount\": \"lots\"}");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_payload");
    json_decref(e);

    e = call(c, 5, "counter.add", "[1,2]");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_payload");
    json_decref(e);

    e = call(c, 6, "room.set_name", "{\"value\": 42}");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_payload");
    json_decref(e);

    const char *bad = "{\"type\":\"event\",\"id\":7,";
    cr_assert_eq(sw_wsc_send_text(c, bad, strlen(bad)), 0);
    e = sw_wsc_recv_json(c, T_MS);
    cr_assert(e);
    cr_assert_str_eq(msg_type(e), "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_json");
    json_decref(e);

    const char *badmsg = "{\"type\":\"event\",\"id\":8}";
    sw_wsc_send_text(c, badmsg, strlen(badmsg));
    e = wait_answer(c, 8);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_message");
    json_decref(e);

    json_t *d = call(c, 9, "counter.increment", NULL);
    cr_assert_str_eq(msg_type(d), "delta", "connection still usable after errors");
    cr_assert_eq(jint(d, "delta.counter.count"), 2, "failed events changed nothing");
    json_decref(d);
    cr_assert_eq(redis_count("tok-err"), 2);
    sw_wsc_free(c);
}

Test(core, event_before_hello_is_refused)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c);
    send_event(c, 1, "counter.increment", NULL, NULL);
    json_t *e = wait_answer(c, 1);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_message");
    json_decref(e);
    json_t *w = sw_wsc_hello(c, "tok-late-hello", NULL, T_MS);
    cr_assert(w, "hello still accepted");
    json_decref(w);
    sw_wsc_free(c);
}

/* One client thread: hello with `token`, then `events` increments in a
 * closed loop; counts acknowledged increments and keeps the last count. */
struct load_arg {
    char token[32];
    int events;
    int port;
    int acked;
    json_int_t final;
};

static void *load_client(void *p)
{
    struct load_arg *a = p;
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", a->port, "/_event", T_MS);
    if (!c)
        return NULL;
    json_t *w = sw_wsc_hello(c, a->token, NULL, T_MS);
    json_decref(w);
    for (int i = 1; w && i <= a->events; i++) {
        json_t *m =
            json_pack("{s:s,s:i,s:s}", "type", "event", "id", i, "name", "counter.increment");
        sw_wsc_send_json(c, m);
        json_decref(m);
        json_t *r = NULL;
        for (;;) {
            r = sw_wsc_recv_json(c, T_MS);
            if (!r || json_integer_value(json_object_get(r, "id")) == i)
                break;
            json_decref(r);
        }
        if (!r)
            break;
        if (strcmp(json_string_value(json_object_get(r, "type")), "delta") == 0) {
            a->acked++;
            a->final = json_integer_value(
                json_object_get(json_object_get(json_object_get(r, "delta"), "counter"), "count"));
        }
        json_decref(r);
    }
    sw_wsc_free(c);
    return NULL;
}

static void run_clients(struct load_arg *args, int n)
{
    pthread_t th[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, load_client, &args[i]);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

Test(core, fifty_clients_hundred_events_no_lost_update, .timeout = 240)
{
    enum { N = 50, E = 100 };
    struct load_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct load_arg){.events = E, .port = server->port};
        snprintf(args[i].token, sizeof(args[i].token), "tok-load-%d", i);
    }
    run_clients(args, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(args[i].acked, E, "client %d: %d of %d acknowledged", i, args[i].acked, E);
        cr_assert_eq(args[i].final, E, "client %d ended at %lld", i, (long long)args[i].final);
        cr_assert_eq(redis_count(args[i].token), E, "Redis holds every increment of %s",
                     args[i].token);
    }
}

Test(core, lease_hands_off_between_workers_and_loses_nothing, .timeout = 120)
{
    /* A background task writes the token on one worker while its client
     * resumes on the other worker and writes too: the lease passes back
     * and forth (the holder is asked through its inbox), nothing is lost. */
    json_t *w;
    sw_wsc_t *a = connect_client("tok-handoff", &w);
    json_decref(hydrate(a, 1, "/"));
    send_event(a, 2, "counter.delayed_increment", "{\"amount\": 50, \"interval_ms\": 10}", NULL);
    json_decref(wait_answer(a, 2));
    /* b lands on the other worker (least connections) and resumes a */
    sw_wsc_t *b = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(b);
    json_t *resume = json_pack("{s:O,s:O,s:i}", "conn_id", json_object_get(w, "conn_id"),
                               "conn_token", json_object_get(w, "conn_token"), "last_seq", 0);
    json_t *w2 = sw_wsc_hello(b, "tok-handoff", resume, T_MS);
    cr_assert(w2);
    cr_assert(json_is_true(json_object_get(w2, "resumed")));
    cr_assert_str_eq(json_string_value(json_object_get(w2, "token")), "tok-handoff");
    enum { E = 50 };
    int acked = 0;
    for (int i = 0; i < E; i++) {
        send_event(b, 100 + i, "counter.increment", NULL, NULL);
        json_t *r = wait_answer(b, 100 + i);
        acked += strcmp(msg_type(r), "delta") == 0;
        json_decref(r);
    }
    cr_assert_eq(acked, E);
    /* the stale socket a was closed by the resume */
    size_t len;
    char *txt;
    while ((txt = sw_wsc_recv_text(a, &len, 2000)))
        free(txt);
    cr_assert_eq(sw_wsc_close_code(a), 4001, "stale socket closed (%d)", sw_wsc_close_code(a));
    /* the task finishes: 50 steps + 50 increments */
    json_int_t n = 0;
    for (int i = 0; i < 100 && n != 2 * E; i++) {
        usleep(50000);
        n = redis_count("tok-handoff");
    }
    cr_assert_eq(n, 2 * E, "no lost update across the hand-offs (%lld)", (long long)n);
    json_decref(resume);
    json_decref(w);
    json_decref(w2);
    sw_wsc_free(a);
    sw_wsc_free(b);
}

Test(core, state_survives_full_restart)
{
    sw_wsc_t *c = connect_client("tok-restart", NULL);
    json_decref(hydrate(c, 1, "/room/r"));
    for (int i = 2; i <= 4; i++)
        json_decref(call(c, i, "counter.increment", NULL));
    sw_wsc_free(c);

    int port = server->port;
    sw_test_server_stop(server, SIGTERM, 10000);
    server = NULL;
    const char *extra[] = {"--lease-ms", "2000", NULL};
    server = sw_test_server_start(port, sw_test_redis_url(redis), 2, extra);
    cr_assert(server, "restart failed");

    c = connect_client("tok-restart", NULL);
    json_t *full = hydrate(c, 1, "/room/r");
    cr_assert_eq(jint(full, "delta.counter.count"), 3, "committed state survived the restart");
    cr_assert_eq(jint(full, "delta.room.loads"), 1);
    json_decref(full);
    sw_wsc_free(c);
}

static int worker_count(pid_t *pids)
{
    return sw_test_server_workers(server, pids, 16);
}

Test(core, killed_worker_is_respawned_and_clients_find_their_state, .timeout = 120)
{
    enum { N = 8 };
    sw_wsc_t *c[N];
    json_t *welcome[N];
    char tokens[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(tokens[i], sizeof(tokens[i]), "tok-kill-%d", i);
        c[i] = connect_client(tokens[i], &welcome[i]);
        json_decref(hydrate(c[i], 1, "/"));
        for (int k = 0; k < 3; k++)
            json_decref(call(c[i], 2 + k, "counter.increment", NULL));
    }
    pid_t before[16];
    cr_assert_eq(worker_count(before), 2);
    pid_t victim = before[0];
    cr_assert_eq(kill(victim, SIGKILL), 0);

    /* The slot is refilled by a new process. */
    int respawned = 0;
    for (int waited = 0; waited < 10000 && !respawned; waited += 50) {
        pid_t now[16];
        int n = worker_count(now);
        if (n == 2 && now[0] != victim && now[1] != victim)
            respawned = 1;
        else
            usleep(50000);
    }
    cr_assert(respawned, "worker was not respawned");

    /* Every client: those whose socket died reconnect with their token;
     * all find their committed state and can go on. */
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        json_t *m =
            json_pack("{s:s,s:i,s:s}", "type", "event", "id", 10, "name", "counter.increment");
        int sent = sw_wsc_send_json(c[i], m) == 0;
        json_decref(m);
        json_t *r = sent ? sw_wsc_recv_json(c[i], 2000) : NULL;
        int alive = r && json_integer_value(json_object_get(r, "id")) == 10;
        json_int_t expect = 4;
        if (!alive) {
            dropped++;
            sw_wsc_free(c[i]);
            /* a real client comes back with its resume credentials */
            c[i] = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
            cr_assert(c[i]);
            json_t *resume =
                json_pack("{s:O,s:O,s:i}", "conn_id", json_object_get(welcome[i], "conn_id"),
                          "conn_token", json_object_get(welcome[i], "conn_token"), "last_seq", 0);
            json_t *w2 = sw_wsc_hello(c[i], tokens[i], resume, T_MS);
            cr_assert(w2 && json_is_true(json_object_get(w2, "resumed")),
                      "client %d resumes after the kill", i);
            cr_assert_str_eq(json_string_value(json_object_get(w2, "token")), tokens[i]);
            json_decref(w2);
            json_decref(resume);
            json_t *fullr = sw_wsc_recv_json(c[i], T_MS); /* the resume sync */
            json_decref(fullr);
            json_t *full = hydrate(c[i], 1, "/");
            cr_assert_eq(jint(full, "delta.counter.count"), 3,
                         "client %d finds its committed state after the kill", i);
            json_decref(full);
            json_t *d = call(c[i], 11, "counter.increment", NULL);
            cr_assert_eq(jint(d, "delta.counter.count"), 4);
            json_decref(d);
        } else {
            cr_assert_eq(jint(r, "delta.counter.count"), expect);
        }
        json_decref(r);
        cr_assert_eq(redis_count(tokens[i]), expect);
        sw_wsc_free(c[i]);
        json_decref(welcome[i]);
    }
    cr_assert(dropped > 0 && dropped < N, "the kill hit some clients, not all (%d)", dropped);
}

Test(core, foreign_lease_is_waited_for_not_overwritten)
{
    sw_wsc_t *c = connect_client("tok-lease", NULL);
    json_decref(hydrate(c, 1, "/"));
    json_decref(call(c, 2, "counter.increment", NULL));
    /* Another holder takes the token's lease for 1.5 s. */
    redisContext *rc = sw_test_redis_connect(redis);
    redisReply *r = redisCommand(rc, "SET sw:{tok-lease}:lease intruder PX 1500");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_t *d = call(c, 3, "counter.increment", NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_str_eq(msg_type(d), "delta");
    cr_assert_eq(jint(d, "delta.counter.count"), 2);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(waited > 1.0, "the event waited for the foreign lease (%.3f s)", waited);
    json_decref(d);
    /* The oplock: the worker keeps the lease while the token is active... */
    r = redisCommand(rc, "GET sw:{tok-lease}:lease");
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "intruder") != 0,
              "the lease is ours after the event");
    freeReplyObject(r);
    /* ...and gives it up when idle (lease-ms/2 here, swept every 250 ms). */
    int released = 0;
    for (int i = 0; i < 40 && !released; i++) {
        usleep(100000);
        r = redisCommand(rc, "EXISTS sw:{tok-lease}:lease");
        released = r->integer == 0;
        freeReplyObject(r);
    }
    cr_assert(released, "an idle token's lease is released");
    redisFree(rc);
    sw_wsc_free(c);
}

static long long commandstats_total(redisContext *rc, long long *evalsha)
{
    redisReply *r = redisCommand(rc, "INFO commandstats");
    long long total = 0;
    *evalsha = 0;
    for (char *p = r->str; (p = strstr(p, "cmdstat_")); p++) {
        char *calls = strstr(p, "calls=");
        if (!calls)
            break;
        long long n = atoll(calls + 6);
        total += n;
        if (strncmp(p, "cmdstat_evalsha:", 16) == 0)
            *evalsha = n;
    }
    freeReplyObject(r);
    return total;
}

Test(core, steady_state_event_costs_one_round_trip)
{
    sw_wsc_t *c = connect_client("tok-oplock", NULL);
    json_decref(hydrate(c, 1, "/"));
    json_decref(call(c, 2, "counter.increment", NULL)); /* warm: lease + cache */
    redisContext *rc = sw_test_redis_connect(redis);
    long long e0, e1;
    long long t0 = commandstats_total(rc, &e0);
    enum { N = 200 };
    for (int i = 0; i < N; i++)
        json_decref(call(c, 10 + i, "counter.increment", NULL));
    long long t1 = commandstats_total(rc, &e1);
    /* the second INFO counts itself once */
    double per_event = (double)(t1 - t0 - 1) / N;
    cr_log_info("Redis commands per event at steady state: %.2f (EVALSHA %.2f)", per_event,
                (double)(e1 - e0) / N);
    cr_assert_leq(e1 - e0, N + 2, "one script call (round trip) per event: %lld for %d", e1 - e0,
                  N);
    cr_assert_leq(per_event, 3.05, "at most 3 commands per event (%.2f)", per_event);
    cr_assert_eq(redis_count("tok-oplock"), N + 1);
    redisFree(rc);
    sw_wsc_free(c);
}

Test(core, http_routes)
{
    char *body = NULL;
    int code = sw_test_http("127.0.0.1", server->port, "GET", "/healthz", NULL, &body, T_MS);
    cr_assert_eq(code, 200);
    json_t *h = json_loads(body, 0, NULL);
    cr_assert(h);
    cr_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
    cr_assert_str_eq(json_string_value(json_object_get(h, "store")), "redis");
    json_decref(h);
    free(body);
    body = NULL;
    code = sw_test_http("127.0.0.1", server->port, "GET", "/nope", NULL, &body, T_MS);
    cr_assert_eq(code, 404);
    free(body);
    body = NULL;
    code = sw_test_http("127.0.0.1", server->port, "GET", "/_event", NULL, &body, T_MS);
    cr_assert_eq(code, 426, "plain GET of the WebSocket endpoint asks for an upgrade");
    free(body);
}
