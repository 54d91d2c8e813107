/* Integration: the SSE transport against two server instances ("two
 * hosts", 2 workers each) on one real redis-server — a stream on one host,
 * its events POSTed to the other, applied in order, and an EventSource-style
 * reconnect with Last-Event-ID that misses nothing. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/sseclient.h"
#include "support/wsclient.h"

#define T_MS 10000

static sw_test_redis_t *redis;
static sw_test_server_t *host[2];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL);
        cr_assert(host[i]);
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

TestSuite(sse, .init = setup, .fini = teardown, .timeout = 120);

static int post(int port, const char *cid, const char *ctok, const char *messages, char **out)
{
    char body[2048];
    snprintf(body, sizeof(body), "{\"conn_id\":\"%s\",\"conn_token\":\"%s\",\"messages\":%s}", cid,
             ctok, messages);
    return sw_test_http("127.0.0.1", port, "POST", "/_event", body, out, T_MS);
}

static json_int_t count_in(json_t *m)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(m, "delta"), "counter"), "count"));
}

Test(sse, events_posted_to_any_host_apply_in_order_and_resume_misses_nothing)
{
    sw_ssec_t *e = sw_ssec_open(host[0]->port, "token=tok-sse-1", NULL, NULL);
    json_t *w = sw_ssec_next(e, T_MS);
    cr_assert(w, "welcome");
    cr_assert_str_eq(json_string_value(json_object_get(w, "type")), "welcome");
    char cid[80], ctok[80];
    snprintf(cid, sizeof(cid), "%s", json_string_value(json_object_get(w, "conn_id")));
    snprintf(ctok, sizeof(ctok), "%s", json_string_value(json_object_get(w, "conn_token")));
    json_decref(w);

    char *resp = NULL;
    cr_assert_eq(
        post(host[1]->port, cid, ctok,
             "[{\"type\":\"event\",\"id\":1,\"name\":\"hydrate\",\"router\":{\"path\":\"/\"}}]",
             &resp),
        202);
    free(resp);
    /* Ten increments, each POSTed to the other host than the last. */
    for (int i = 0; i < 10; i++) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "[{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}]", 10 + i);
        resp = NULL;
        cr_assert_eq(post(host[i % 2]->port, cid, ctok, msg, &resp), 202);
        cr_assert(strstr(resp, "\"accepted\":1"), "%s", resp);
        free(resp);
    }
    json_int_t last = 0;
    int seen = 0;
    while (seen < 10) {
        json_t *m = sw_ssec_next(e, T_MS);
        cr_assert(m, "delta %d", seen);
        json_t *id = json_object_get(m, "id");
        if (id && json_integer_value(id) >= 10) {
            cr_assert_eq(json_integer_value(id), 10 + seen, "in posting order");
            cr_assert_eq(count_in(m), seen + 1);
            last = json_integer_value(json_object_get(m, "seq"));
            seen++;
        }
        json_decref(m);
    }
    cr_assert_eq(atoll(e->last_id), last, "id: carries the seq");

    /* The stream drops; meanwhile a background task changes the state; the
     * EventSource reconnects by itself: same URL + Last-Event-ID. */
    resp = NULL;
    cr_assert_eq(post(host[0]->port, cid, ctok,
                      "[{\"type\":\"event\",\"id\":50,\"name\":\"counter.delayed_increment\","
                      "\"payload\":{\"amount\":3,\"interval_ms\":100}}]",
                      &resp),
                 202);
    free(resp);
    usleep(100000);
    char last_id[32];
    snprintf(last_id, sizeof(last_id), "%s", e->last_id);
    sw_ssec_close(e);
    usleep(600000);
    sw_ssec_t *e2 = sw_ssec_open(host[1]->port, "token=tok-sse-1", last_id, NULL);
    json_t *w2 = sw_ssec_next(e2, T_MS);
    cr_assert(w2);
    cr_assert(json_is_true(json_object_get(w2, "resumed")), "the reconnect resumes: %s",
              json_dumps(w2, JSON_COMPACT));
    json_int_t final = 0;
    for (int i = 0; i < 20 && final != 13; i++) {
        json_t *m = sw_ssec_next(e2, 2000);
        if (!m)
            break;
        if (json_object_get(json_object_get(m, "delta"), "counter"))
            final = count_in(m);
        json_decref(m);
    }
    cr_assert_eq(final, 13, "missed the task's steps: ends at %lld", (long long) final);
    json_decref(w2);
    sw_ssec_close(e2);
}

Test(sse, bad_requests_get_clear_errors)
{
    char *resp = NULL;
    cr_assert_eq(
        sw_test_http("127.0.0.1", host[0]->port, "POST", "/_event", "not json", &resp, T_MS), 400);
    cr_assert(strstr(resp, "bad_json"), "%s", resp);
    free(resp);
    resp = NULL;
    cr_assert_eq(sw_test_http("127.0.0.1", host[0]->port, "GET", "/_sse?token=bad%20token", NULL,
                              &resp, T_MS),
                 400);
    free(resp);
}
