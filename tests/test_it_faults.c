/* Integration: faults and hostile input against the real binary (2
 * workers) and a real redis-server — graceful stop, Redis going away,
 * malformed frames, background tasks next to ordinary events. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
    const char *extra[] = {"--lease-ms", "2000", "--drain-timeout", "5000", NULL};
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

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 120);

static sw_wsc_t *client(const char *token)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c);
    json_t *w = sw_wsc_hello(c, token, NULL, T_MS);
    cr_assert(w);
    json_decref(w);
    return c;
}

static int send_event(sw_wsc_t *c, int id, const char *name, json_t *payload)
{
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (payload)
        json_object_set_new(m, "payload", payload);
    int rc = sw_wsc_send_json(c, m);
    json_decref(m);
    return rc;
}

static json_t *answer(sw_wsc_t *c, int id)
{
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        if (!m || json_integer_value(json_object_get(m, "id")) == id)
            return m;
        json_decref(m);
    }
}

static json_t *call(sw_wsc_t *c, int id, const char *name)
{
    cr_assert_eq(send_event(c, id, name, NULL), 0);
    json_t *m = answer(c, id);
    cr_assert(m, "no answer to %s", name);
    return m;
}

static const char *type_of(json_t *m)
{
    return json_string_value(json_object_get(m, "type"));
}

static json_int_t count_of(json_t *m)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(m, "delta"), "counter"), "count"));
}

/* counter.count in Redis: 0 when the field is absent, -1 when unreadable */
static json_int_t redis_count(const char *token)
{
    json_t *v;
    int found = sw_test_redis_state(redis, token, "counter", &v);
    json_int_t n = found == 1 ? json_integer_value(json_object_get(v, "count")) : found;
    json_decref(v);
    return n;
}

Test(faults, quit_drains_in_flight_events_and_closes_with_1001)
{
    sw_wsc_t *c = client("tok-quit");
    json_decref(call(c, 1, "counter.increment"));
    /* 30 events in flight, then a graceful stop. */
    for (int i = 2; i <= 31; i++)
        cr_assert_eq(send_event(c, i, "counter.increment", NULL), 0);
    kill(server->pid, SIGQUIT);
    int acked = 1, refused = 0;
    json_int_t last = 1;
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        if (!m)
            break;
        if (strcmp(type_of(m), "delta") == 0) {
            acked++;
            last = count_of(m);
        } else if (strcmp(type_of(m), "error") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(m, "code")), "state_unavailable");
            refused++;
        }
        json_decref(m);
    }
    cr_assert(sw_wsc_closed(c), "the server closed the connection");
    cr_assert_eq(sw_wsc_close_code(c), 1001, "close code %d", sw_wsc_close_code(c));
    /* Events still unread in the socket when the connection closed are
     * neither applied nor answered: the client sees them unacknowledged. */
    cr_assert_leq(acked + refused, 31, "(%d acked, %d refused)", acked, refused);
    cr_assert_eq(last, acked, "acknowledged deltas count up");
    cr_assert_eq(redis_count("tok-quit"), acked, "every acknowledged event is in Redis, no other");
    sw_wsc_free(c);
    int st = sw_test_server_stop(server, SIGQUIT, 8000);
    server = NULL;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "master exits 0 after the drain");
}

Test(faults, redis_outage_gives_retryable_errors_then_recovers)
{
    sw_wsc_t *c = client("tok-outage");
    json_decref(call(c, 1, "counter.increment"));
    json_decref(call(c, 2, "counter.increment"));
    /* Persist what Redis holds, then take Redis away. */
    redisContext *rc = sw_test_redis_connect(redis);
    freeReplyObject(redisCommand(rc, "SAVE"));
    redisFree(rc);
    sw_test_redis_kill(redis);

    json_t *e = call(c, 3, "counter.increment");
    cr_assert_str_eq(type_of(e), "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "state_unavailable");
    json_decref(e);
    char *body = NULL;
    int code = sw_test_http("127.0.0.1", server->port, "GET", "/healthz", NULL, &body, T_MS);
    cr_assert_eq(code, 503, "healthz reports the outage");
    free(body);

    cr_assert_eq(sw_test_redis_restart(redis), 0);
    cr_assert_eq(sw_test_server_wait_healthy(server, 10000), 0, "workers reconnect");
    /* Every worker reconnects; ask until one event lands. */
    json_t *d = NULL;
    for (int i = 0; i < 50; i++) {
        d = call(c, 10 + i, "counter.increment");
        if (strcmp(type_of(d), "delta") == 0)
            break;
        json_decref(d);
        d = NULL;
        usleep(100000);
    }
    cr_assert(d, "events flow again after Redis is back");
    cr_assert_eq(count_of(d), 3, "the committed state survived; the refused event left no trace");
    json_decref(d);
    sw_wsc_free(c);
}

Test(faults, hostile_frames_close_only_their_connection)
{
    pid_t before[8], after[8];
    cr_assert_eq(sw_test_server_workers(server, before, 8), 2);

    /* Over --max-message-bytes (64 KiB): 1009. */
    sw_wsc_t *big = client("tok-big");
    size_t n = 70 * 1024;
    char *huge = malloc(n);
    memset(huge, 'a', n);
    sw_wsc_send_text(big, huge, n);
    free(huge);
    size_t len;
    cr_assert_null(sw_wsc_recv_text(big, &len, T_MS));
    cr_assert_eq(sw_wsc_close_code(big), 1009);
    sw_wsc_free(big);

    /* An unmasked frame from a client: 1002. */
    sw_wsc_t *raw = client("tok-raw");
    const unsigned char unmasked[] = {0x81, 0x02, 'h', 'i'};
    sw_wsc_send_raw(raw, unmasked, sizeof(unmasked));
    cr_assert_null(sw_wsc_recv_text(raw, &len, T_MS));
    cr_assert_eq(sw_wsc_close_code(raw), 1002);
    sw_wsc_free(raw);

    /* Garbage JSON of all shapes: errors, connection stays. */
    sw_wsc_t *c = client("tok-garbage");
    const char *bad[] = {
        "",
        "null",
        "[]",
        "{\"type\":42}",
        "{\"type\":\"event\",\"id\":-1,\"name\":\"x\"}",
        "{\"type\":\"event\",\"id\":1,\"name\":\"a b\"}",
        "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"router\":{\"path\":5}}",
        "\xff\xfe",
        "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sw_wsc_send_text(c, bad[i], strlen(bad[i]));
        json_t *m = sw_wsc_recv_json(c, T_MS);
        if (m) { /* invalid UTF-8 closes with 1007 instead */
            cr_assert_str_eq(type_of(m), "error", "input %zu answered with an error", i);
            json_decref(m);
        } else {
            cr_assert_eq(sw_wsc_close_code(c), 1007, "only invalid UTF-8 closes (input %zu)", i);
            sw_wsc_free(c);
            c = client("tok-garbage");
        }
    }
    json_t *d = call(c, 100, "counter.increment");
    cr_assert_str_eq(type_of(d), "delta");
    json_decref(d);
    sw_wsc_free(c);

    cr_assert_eq(sw_test_server_workers(server, after, 8), 2);
    cr_assert(before[0] == after[0] && before[1] == after[1], "no worker died");
}

Test(faults, background_task_runs_while_events_flow)
{
    sw_wsc_t *c = client("tok-task");
    cr_assert_eq(send_event(c, 1, "counter.delayed_increment",
                            json_pack("{s:i,s:i}", "amount", 3, "interval_ms", 150)),
                 0);
    json_t *a = answer(c, 1);
    cr_assert(a);
    cr_assert_str_eq(type_of(a), "delta", "the task start is answered at once");
    json_decref(a);
    /* Ordinary events are answered while the task sleeps between steps. */
    json_t *d = call(c, 2, "counter.increment");
    cr_assert_str_eq(type_of(d), "delta");
    cr_assert_eq(count_of(d), 1);
    json_decref(d);
    /* Three task steps follow, each a delta without id. */
    int steps = 0;
    json_int_t last = 0;
    while (steps < 3) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "task step %d arrives", steps + 1);
        cr_assert_null(json_object_get(m, "id"));
        last = count_of(m);
        steps++;
        json_decref(m);
    }
    cr_assert_eq(last, 4);
    cr_assert_eq(redis_count("tok-task"), 4);

    json_t *e = NULL;
    cr_assert_eq(send_event(c, 3, "counter.delayed_increment",
                            json_pack("{s:i,s:i}", "amount", 0, "interval_ms", 150)),
                 0);
    e = answer(c, 3);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "bad_payload");
    json_decref(e);
    sw_wsc_free(c);
}
