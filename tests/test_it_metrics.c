/* Integration: GET /metrics on the real binary (master + 2 workers, real
 * redis-server): events, errors and latencies made through either worker
 * show up in the text served by any worker. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 5000
#define NCLIENTS 6
#define NINCR 3

static sw_test_redis_t *redis;
static sw_test_server_t *server;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis, "redis-server did not start");
    server = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL);
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

TestSuite(it_metrics, .init = setup, .fini = teardown, .timeout = 60);

/* The answer to event `id` (messages without it are skipped). */
static json_t *call(sw_wsc_t *c, int64_t id, const char *name)
{
    json_t *m = json_pack("{s:s, s:I, s:s}", "type", "event", "id", (json_int_t)id, "name", name);
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
    for (;;) {
        json_t *r = sw_wsc_recv_json(c, T_MS);
        cr_assert(r, "no answer to event %lld", (long long)id);
        json_t *jid = json_object_get(r, "id");
        if (jid && json_integer_value(jid) == id)
            return r;
        json_decref(r);
    }
}

static const char *type_of(json_t *m)
{
    return json_string_value(json_object_get(m, "type"));
}

/* The value of the sample line starting with `series ` (-1: absent). */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char *get_metrics(void)
{
    char *body = NULL;
    int st = sw_test_http("127.0.0.1", server->port, "GET", "/metrics", NULL, &body, T_MS);
    cr_assert_eq(st, 200, "GET /metrics: %d", st);
    cr_assert(body);
    return body;
}

Test(it_metrics, counters_aggregate_over_both_workers)
{
    sw_wsc_t *c[NCLIENTS];
    int64_t id = 1;
    for (int i = 0; i < NCLIENTS; i++) {
        c[i] = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
        cr_assert(c[i], "connect");
        char tok[32];
        snprintf(tok, sizeof(tok), "met-%d", i);
        json_t *w = sw_wsc_hello(c[i], tok, NULL, T_MS);
        cr_assert(w && strcmp(type_of(w), "welcome") == 0, "welcome");
        json_decref(w);
    }
    for (int i = 0; i < NCLIENTS; i++) {
        for (int k = 0; k < NINCR; k++) {
            json_t *d = call(c[i], id++, "counter.increment");
            cr_assert_str_eq(type_of(d), "delta");
            json_decref(d);
        }
    }
    json_t *e = call(c[0], id++, "counter.explode");
    cr_assert_str_eq(type_of(e), "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "unknown_event");
    json_decref(e);

    /* Six WebSockets are spread over both workers (least connections). */
    char *text = get_metrics();
    double w0 = sample(text, "statewire_worker_connections{worker=\"0\"}");
    double w1 = sample(text, "statewire_worker_connections{worker=\"1\"}");
    cr_assert(w0 >= 1 && w1 >= 1, "clients on both workers (%g, %g):\n%s", w0, w1, text);
    cr_assert_geq(sample(text, "statewire_connections"), NCLIENTS);
    cr_assert_geq(sample(text, "statewire_websocket_sessions"), NCLIENTS);
    free(text);

    /* Several requests, each on a new connection, land on both workers
     * (an idle WebSocket opened after each one tips the balance); every
     * answer holds the events of both. */
    int seen[2] = {0, 0};
    sw_wsc_t *extra[8];
    for (int r = 0; r < 8; r++) {
        char *h = NULL;
        cr_assert_eq(sw_test_http("127.0.0.1", server->port, "GET", "/healthz", NULL, &h, T_MS),
                     200);
        json_t *hj = json_loads(h, 0, NULL);
        json_int_t wk = json_integer_value(json_object_get(hj, "worker"));
        if (wk >= 0 && wk < 2)
            seen[wk] = 1;
        json_decref(hj);
        free(h);

        text = get_metrics();
        const double n = NCLIENTS * NINCR;
        cr_assert_geq(sample(text, "statewire_events_total{outcome=\"ok\"}"), n, "%s", text);
        cr_assert_geq(sample(text, "statewire_events_total{outcome=\"error\"}"), 1);
        cr_assert_geq(sample(text, "statewire_errors_total{code=\"unknown_event\"}"), 1);
        cr_assert_geq(sample(text, "statewire_event_duration_seconds_count"), n + 1);
        cr_assert_gt(sample(text, "statewire_event_duration_seconds_sum"), 0);
        cr_assert_eq(sample(text, "statewire_event_duration_seconds_bucket{le=\"+Inf\"}"),
                     sample(text, "statewire_event_duration_seconds_count"));
        cr_assert_geq(sample(text, "statewire_redis_roundtrip_seconds_count"), n);
        cr_assert_geq(sample(text, "statewire_commits_total"), n);
        cr_assert_geq(sample(text, "statewire_deltas_total"), n);
        cr_assert_eq(sample(text, "statewire_up"), 1);
        cr_assert_eq(sample(text, "statewire_worker_restarts_total"), 0);
        free(text);
        extra[r] = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
        cr_assert(extra[r], "connect");
    }
    for (int r = 0; r < 8; r++)
        sw_wsc_free(extra[r]);
    cr_assert(seen[0] && seen[1], "HTTP requests reached both workers");

    for (int i = 0; i < NCLIENTS; i++)
        sw_wsc_free(c[i]);
}

Test(it_metrics, bad_resume_and_method)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c);
    json_t *resume = json_pack("{s:s, s:s, s:I}", "conn_id", "nope", "conn_token", "nope",
                               "last_seq", (json_int_t)0);
    json_t *first = sw_wsc_hello(c, "met-bad", resume, T_MS);
    json_decref(resume);
    cr_assert(first);
    json_decref(first);
    sw_wsc_free(c);
    char *text = get_metrics();
    cr_assert_geq(sample(text, "statewire_bad_resumes_total"), 1, "%s", text);
    cr_assert_geq(sample(text, "statewire_errors_total{code=\"bad_resume\"}"), 1);
    free(text);
    char *body = NULL;
    int st = sw_test_http("127.0.0.1", server->port, "POST", "/metrics", "{}", &body, T_MS);
    cr_assert_eq(st, 404, "only GET serves metrics");
    free(body);
}

/* Wait until the master's workers are `n` processes none of which is in
 * old[0..nold) (a respawn or a reload replaced them all), then healthy. */
static void wait_replaced(const pid_t *old, int nold, int n)
{
    for (int tries = 0; tries < 200; tries++) {
        pid_t now[8];
        int k = sw_test_server_workers(server, now, 8), fresh = 0;
        for (int i = 0; i < k; i++) {
            int was = 0;
            for (int j = 0; j < nold; j++)
                was |= now[i] == old[j];
            fresh += !was;
        }
        if (k == n && fresh == n && sw_test_server_wait_healthy(server, T_MS) == 0)
            return;
        usleep(50 * 1000);
    }
    cr_assert_fail("the workers were not replaced");
}

/* Counters never go backwards: a worker killed and respawned into its
 * slot, and two reloads (SIGHUP: a new generation in the other half of
 * the slots, then back), keep what the gone workers counted. */
Test(it_metrics, counters_survive_worker_deaths_and_reloads)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", server->port, "/_event", T_MS);
    cr_assert(c);
    json_t *w = sw_wsc_hello(c, "met-mono", NULL, T_MS);
    cr_assert(w && strcmp(type_of(w), "welcome") == 0);
    json_decref(w);
    int64_t id = 1;
    for (int k = 0; k < 10; k++)
        json_decref(call(c, id++, "counter.increment"));
    sw_wsc_free(c);
    char *text = get_metrics();
    double ok0 = sample(text, "statewire_events_total{outcome=\"ok\"}");
    double count0 = sample(text, "statewire_event_duration_seconds_count");
    cr_assert_geq(ok0, 10, "%s", text);
    free(text);

    pid_t old[8];
    int n = sw_test_server_workers(server, old, 8);
    cr_assert_eq(n, 2);
    for (int i = 0; i < n; i++)
        kill(old[i], SIGKILL);
    wait_replaced(old, n, 2);
    text = get_metrics();
    cr_assert_geq(sample(text, "statewire_events_total{outcome=\"ok\"}"), ok0,
                  "after a respawn:\n%s", text);
    cr_assert_geq(sample(text, "statewire_event_duration_seconds_count"), count0);
    cr_assert_geq(sample(text, "statewire_worker_restarts_total"), 2);
    free(text);

    for (int r = 0; r < 2; r++) {
        n = sw_test_server_workers(server, old, 8);
        kill(server->pid, SIGHUP);
        wait_replaced(old, n, 2);
        text = get_metrics();
        cr_assert_geq(sample(text, "statewire_events_total{outcome=\"ok\"}"), ok0,
                      "after reload %d:\n%s", r + 1, text);
        cr_assert_geq(sample(text, "statewire_event_duration_seconds_count"), count0);
        free(text);
    }
}
