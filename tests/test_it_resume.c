/* Integration: connections that come back — resume with conn_id /
 * conn_token on another host, replay of missed deltas from the log ring,
 * a full delta when the ring no longer reaches back, bad_resume, and
 * expired state rehydrated by the server. Two server instances ("two
 * hosts", 2 workers each) on one real redis-server. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/wsclient.h"

#define T_MS 10000

static sw_test_redis_t *redis;
static sw_test_server_t *host[2];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    const char *extra[] = {"--lease-ms", "3000", NULL};
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, extra);
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

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 120);

static sw_wsc_t *open_on(int hi)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
    cr_assert(c);
    return c;
}

/* A reconnect right after a worker was killed: a socket the master hands
 * to the worker in the instant it dies is lost with it (reset), and a
 * client tries again, as real clients do (with backoff). */
static sw_wsc_t *reopen_on(int hi)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        sw_wsc_t *c = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
        if (c)
            return c;
        usleep(50000);
    }
    cr_assert_fail("no connection after 5 attempts");
    return NULL;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *call(sw_wsc_t *c, int id, const char *name, const char *payload, const char *path)
{
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (payload)
        json_object_set_new(m, "payload", json_loads(payload, 0, NULL));
    if (path)
        json_object_set_new(m, "router", json_pack("{s:s}", "path", path));
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
    return sw_wsc_wait(c, NULL, id, T_MS);
}

static json_int_t count_in(json_t *delta_msg)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(delta_msg, "delta"), "counter"), "count"));
}

/* Read messages until one carries counter.count == want (returns its seq). */
static json_int_t wait_count(sw_wsc_t *c, json_int_t want)
{
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "count %lld never arrived", (long long)want);
        json_int_t n = count_in(m);
        json_int_t seq = json_integer_value(json_object_get(m, "seq"));
        json_decref(m);
        if (n == want)
            return seq;
    }
}

static json_t *resume_of(json_t *welcome, json_int_t last_seq, const char *override_token)
{
    return json_pack("{s:s,s:s,s:I}", "conn_id", str(welcome, "conn_id"), "conn_token",
                     override_token ? override_token : str(welcome, "conn_token"), "last_seq",
                     last_seq);
}

Test(resume, missed_deltas_are_replayed_before_anything_else_on_the_other_host)
{
    sw_wsc_t *a = open_on(0);
    json_t *w = sw_wsc_hello(a, "tok-replay", NULL, T_MS);
    cr_assert(w);
    json_decref(call(a, 1, "hydrate", NULL, "/"));
    json_t *d = call(a, 2, "counter.increment", NULL, NULL);
    json_int_t last_seq = json_integer_value(json_object_get(d, "seq"));
    json_decref(d);
    /* A background task keeps changing the token's private state while
     * the client is away: 5 deltas of its own stream. */
    json_decref(
        call(a, 3, "counter.delayed_increment", "{\"amount\": 5, \"interval_ms\": 20}", NULL));
    sw_wsc_free(a); /* abrupt disconnect */
    usleep(600000); /* the 5 steps commit meanwhile */

    sw_wsc_t *b = open_on(1);
    json_t *resume = resume_of(w, last_seq, NULL);
    json_t *w2 = sw_wsc_hello(b, "tok-replay", resume, T_MS);
    cr_assert(w2);
    cr_assert(json_is_true(json_object_get(w2, "resumed")), "welcome says resumed");
    cr_assert_str_eq(str(w2, "conn_id"), str(w, "conn_id"), "same connection");
    cr_assert_eq(json_integer_value(json_object_get(w2, "seq")), last_seq + 5);
    for (int k = 1; k <= 5; k++) {
        json_t *m = sw_wsc_recv_json(b, T_MS);
        cr_assert(m, "replayed delta %d", k);
        cr_assert_str_eq(str(m, "type"), "delta");
        cr_assert_eq(json_integer_value(json_object_get(m, "seq")), last_seq + k,
                     "each with its original seq");
        cr_assert_eq(count_in(m), 1 + k);
        json_decref(m);
    }
    /* on_load did not run again: loads is still 1 in the server's state */
    json_t *h = call(b, 10, "room.set_name", "{\"value\": \"z\"}", NULL);
    cr_assert_str_eq(str(h, "type"), "delta");
    json_decref(h);
    json_decref(resume);
    json_decref(w);
    json_decref(w2);
    sw_wsc_free(b);
}

Test(resume, a_log_that_no_longer_reaches_back_gives_one_full_delta)
{
    sw_wsc_t *a = open_on(0);
    json_t *w = sw_wsc_hello(a, "tok-trim", NULL, T_MS);
    json_decref(call(a, 1, "hydrate", NULL, "/"));
    json_t *d = call(a, 2, "counter.increment", NULL, NULL);
    json_int_t last_seq = json_integer_value(json_object_get(d, "seq"));
    json_decref(d);
    /* 300 deltas: more than the 256-entry log ring */
    json_decref(
        call(a, 3, "counter.delayed_increment", "{\"amount\": 300, \"interval_ms\": 10}", NULL));
    wait_count(a, 301);
    sw_wsc_free(a);

    sw_wsc_t *b = open_on(1);
    json_t *resume = resume_of(w, last_seq, NULL);
    json_t *w2 = sw_wsc_hello(b, "tok-trim", resume, T_MS);
    cr_assert(json_is_true(json_object_get(w2, "resumed")));
    json_t *m = sw_wsc_recv_json(b, T_MS);
    cr_assert(m);
    cr_assert(json_is_true(json_object_get(m, "full")), "one full delta: %s",
              json_dumps(m, JSON_COMPACT));
    cr_assert_eq(count_in(m), 301);
    json_decref(m);
    json_decref(resume);
    json_decref(w);
    json_decref(w2);
    sw_wsc_free(b);
}

Test(resume, wrong_conn_token_gets_bad_resume_and_a_fresh_connection)
{
    sw_wsc_t *a = open_on(0);
    json_t *w = sw_wsc_hello(a, "tok-bad", NULL, T_MS);
    json_decref(call(a, 1, "hydrate", NULL, "/"));
    json_decref(call(a, 2, "counter.increment", NULL, NULL));
    sw_wsc_free(a);

    sw_wsc_t *b = open_on(1);
    json_t *resume = resume_of(w, 0, "0000000000000000000000000000000000000000");
    json_t *w2 = sw_wsc_hello(b, "tok-bad", resume, T_MS);
    cr_assert(w2);
    cr_assert(!json_is_true(json_object_get(w2, "resumed")), "not resumed");
    cr_assert_str_neq(str(w2, "conn_id"), str(w, "conn_id"), "a new connection id");
    cr_assert_str_neq(str(w2, "conn_token"), str(w, "conn_token"));
    json_t *e = sw_wsc_recv_json(b, T_MS);
    cr_assert(e);
    cr_assert_str_eq(str(e, "type"), "error");
    cr_assert_str_eq(str(e, "code"), "bad_resume");
    json_decref(e);
    /* Nothing was replayed to it. */
    json_t *nothing = sw_wsc_recv_json(b, 300);
    cr_assert_null(nothing, "no state sent to a refused resume");
    /* The old credentials no longer resume either: the new connection
     * replaced them. */
    sw_wsc_t *c = open_on(0);
    json_t *r2 = resume_of(w, 0, NULL);
    json_t *w3 = sw_wsc_hello(c, "tok-bad", r2, T_MS);
    cr_assert(!json_is_true(json_object_get(w3, "resumed")));
    json_decref(r2);
    json_decref(w3);
    sw_wsc_free(c);
    json_decref(resume);
    json_decref(w);
    json_decref(w2);
    sw_wsc_free(b);
}

Test(resume, resumed_client_of_a_room_gets_the_current_shared_state)
{
    sw_wsc_t *a = open_on(0);
    json_t *w = sw_wsc_hello(a, "tok-ra", NULL, T_MS);
    json_decref(call(a, 1, "hydrate", NULL, "/room/r1"));
    json_decref(call(a, 2, "room.set_name", "{\"value\": \"a\"}", NULL));
    json_int_t last_seq = json_integer_value(json_object_get(w, "seq"));
    /* the last seq the client saw */
    json_t *probe = call(a, 3, "room.set_name", "{\"value\": \"a2\"}", NULL);
    last_seq = json_integer_value(json_object_get(probe, "seq"));
    json_decref(probe);
    sw_wsc_free(a);

    sw_wsc_t *other = open_on(1);
    json_decref(sw_wsc_hello(other, "tok-rb", NULL, T_MS));
    json_decref(call(other, 1, "hydrate", NULL, "/room/r1"));
    for (int i = 0; i < 5; i++)
        json_decref(call(other, 2 + i, "counter.increment", NULL, NULL));

    sw_wsc_t *b = open_on(1);
    json_t *resume = resume_of(w, last_seq, NULL);
    json_t *w2 = sw_wsc_hello(b, "tok-ra", resume, T_MS);
    cr_assert(json_is_true(json_object_get(w2, "resumed")));
    json_t *m = sw_wsc_recv_json(b, T_MS);
    cr_assert(m);
    cr_assert_str_eq(str(m, "type"), "delta");
    cr_assert(json_is_true(json_object_get(m, "full")));
    cr_assert_eq(count_in(m), 5, "the room's 5 changes made while away");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(m, "delta"), "room"), "name")),
                     "a2");
    json_decref(m);
    json_decref(resume);
    json_decref(w);
    json_decref(w2);
    sw_wsc_free(b);
    sw_wsc_free(other);
}

/* Wait for the worker to give token's idle lease up, drop what is still
 * queued for client a (on_load), then expire the state the way a TTL
 * would. */
static void expire_state(sw_wsc_t *a, const char *token)
{
    sleep(2);
    json_t *old;
    while ((old = sw_wsc_recv_json(a, 200)))
        json_decref(old);
    redisContext *rc = sw_test_redis_connect(redis);
    freeReplyObject(redisCommand(rc, "DEL sw:{%s}", token));
    redisFree(rc);
}

/* The next message a gets, which must be a full delta (new reference). */
static json_t *expect_full_first(sw_wsc_t *a)
{
    json_t *first = sw_wsc_recv_json(a, T_MS);
    cr_assert(first);
    cr_assert(json_is_true(json_object_get(first, "full")), "a full delta comes first: %s",
              json_dumps(first, JSON_COMPACT));
    return first;
}

Test(resume, expired_state_is_rehydrated_before_the_event)
{
    sw_wsc_t *a = open_on(0);
    json_decref(sw_wsc_hello(a, "tok-exp", NULL, T_MS));
    json_decref(call(a, 1, "hydrate", NULL, "/"));
    json_decref(call(a, 2, "counter.increment", NULL, NULL));
    json_decref(call(a, 3, "counter.increment", NULL, NULL));
    expire_state(a, "tok-exp");
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", 4, "name", "counter.increment");
    sw_wsc_send_json(a, m);
    json_decref(m);
    json_t *first = expect_full_first(a);
    cr_assert_null(json_object_get(first, "id"));
    cr_assert_eq(count_in(first), 0, "defaults, never the stale state");
    json_decref(first);
    json_t *ans = sw_wsc_wait(a, "delta", 4, T_MS);
    cr_assert(ans);
    cr_assert_eq(count_in(ans), 1, "the event ran on the rehydrated state");
    json_decref(ans);
    sw_wsc_free(a);
}

Test(resume, expired_state_is_rehydrated_on_the_route_the_client_last_sent)
{
    sw_wsc_t *a = open_on(0);
    json_decref(sw_wsc_hello(a, "tok-exp-route", NULL, T_MS));
    json_t *m = json_pack("{s:s,s:i,s:s,s:{s:s,s:{s:s}}}", "type", "event", "id", 1, "name",
                          "hydrate", "router", "path", "/room/r1", "query", "tab", "2");
    cr_assert_eq(sw_wsc_send_json(a, m), 0);
    json_decref(m);
    json_decref(sw_wsc_wait(a, NULL, 1, T_MS));
    expire_state(a, "tok-exp-route");
    /* An event without a router: the rehydrate uses the one the client
     * sent with its hydrate. */
    m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", 2, "name", "room.set_name");
    json_object_set_new(m, "payload", json_pack("{s:s}", "value", "x"));
    sw_wsc_send_json(a, m);
    json_decref(m);
    json_t *first = expect_full_first(a);
    json_t *room = json_object_get(json_object_get(first, "delta"), "room");
    cr_assert_str_eq(json_string_value(json_object_get(room, "room_id")), "r1",
                     "computed from the route: %s", json_dumps(first, JSON_COMPACT));
    json_decref(first);
    json_t *ans = sw_wsc_wait(a, "delta", 2, T_MS);
    cr_assert(ans);
    json_decref(ans);
    sw_wsc_free(a);
}

Test(resume, duplicate_tab_gets_a_new_token_quick_reconnect_keeps_it)
{
    sw_wsc_t *a = open_on(0);
    json_t *w = sw_wsc_hello(a, "tok-tab", NULL, T_MS);
    json_decref(call(a, 1, "hydrate", NULL, "/"));
    json_decref(call(a, 2, "counter.increment", NULL, NULL));

    /* A second live connection with the same token, no credentials: a
     * duplicate tab. It gets a token and a state of its own. */
    sw_wsc_t *dup = open_on(1);
    json_t *wd = sw_wsc_hello(dup, "tok-tab", NULL, T_MS);
    cr_assert(wd);
    cr_assert_str_neq(str(wd, "token"), "tok-tab", "the duplicate gets a new token");
    json_t *full = call(dup, 1, "hydrate", NULL, "/");
    cr_assert_eq(count_in(full), 0, "and its own state");
    json_decref(full);
    json_decref(call(dup, 2, "counter.add", "{\"amount\": 10}", NULL));
    json_t *d = call(a, 3, "counter.increment", NULL, NULL);
    cr_assert_eq(count_in(d), 2, "the first tab's state is untouched");
    json_decref(d);

    /* A quick reconnect with valid credentials keeps the token, on any host,
     * even while the old socket is still open. */
    sw_wsc_t *back = open_on(1);
    json_t *resume = resume_of(w, 0, NULL);
    json_t *wb = sw_wsc_hello(back, "tok-tab", resume, T_MS);
    cr_assert(json_is_true(json_object_get(wb, "resumed")));
    cr_assert_str_eq(str(wb, "token"), "tok-tab");
    json_t *r = call(back, 1, "counter.increment", NULL, NULL);
    cr_assert(r);
    cr_assert_eq(count_in(r), 3);
    json_decref(r);
    /* the stale socket was closed */
    size_t len;
    char *txt;
    while ((txt = sw_wsc_recv_text(a, &len, 2000)))
        free(txt);
    cr_assert_eq(sw_wsc_close_code(a), 4001);
    json_decref(resume);
    json_decref(wb);
    json_decref(wd);
    json_decref(w);
    sw_wsc_free(a);
    sw_wsc_free(dup);
    sw_wsc_free(back);
}

Test(resume, after_a_worker_is_killed_clients_resume_without_waiting_out_its_leases)
{
    /* The default lease is 10 s; the respawned worker reaps the dead one's
     * leases, so a resumed client is back well before that. */
    teardown();
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    host[0] = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL); /* lease 10 s */
    cr_assert(host[0]);
    enum { K = 6 };
    sw_wsc_t *c[K];
    json_t *w[K];
    char tok[K][32];
    for (int i = 0; i < K; i++) {
        snprintf(tok[i], sizeof(tok[i]), "tok-reap-%d", i);
        c[i] = open_on(0);
        w[i] = sw_wsc_hello(c[i], tok[i], NULL, T_MS);
        json_decref(call(c[i], 1, "hydrate", NULL, "/"));
        json_decref(call(c[i], 2, "counter.increment", NULL, NULL)); /* lease now held */
    }
    pid_t pids[8];
    cr_assert_eq(sw_test_server_workers(host[0], pids, 8), 2);
    cr_assert_eq(kill(pids[0], SIGKILL), 0);
    int dropped = 0;
    for (int i = 0; i < K; i++) {
        json_t *m =
            json_pack("{s:s,s:i,s:s}", "type", "event", "id", 3, "name", "counter.increment");
        int ok = sw_wsc_send_json(c[i], m) == 0;
        json_decref(m);
        json_t *r = ok ? sw_wsc_wait(c[i], NULL, 3, 1500) : NULL;
        if (r) {
            json_decref(r);
            continue;
        }
        dropped++;
        sw_wsc_free(c[i]);
        uint64_t t0 = sw_now_ms();
        c[i] = reopen_on(0);
        json_t *resume = resume_of(w[i], 0, NULL);
        json_t *w2 = sw_wsc_hello(c[i], tok[i], resume, T_MS);
        json_t *d = call(c[i], 4, "counter.increment", NULL, NULL);
        uint64_t took = sw_now_ms() - t0;
        cr_assert(w2 && json_is_true(json_object_get(w2, "resumed")));
        cr_assert(d && count_in(d) == 2, "committed state found");
        cr_assert_lt(took, 5000, "back in %llu ms, not after the 10 s lease",
                     (unsigned long long)took);
        json_decref(d);
        json_decref(w2);
        json_decref(resume);
    }
    cr_assert_gt(dropped, 0, "the killed worker had clients");
    for (int i = 0; i < K; i++) {
        sw_wsc_free(c[i]);
        json_decref(w[i]);
    }
}
