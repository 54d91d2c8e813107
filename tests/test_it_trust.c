/* Integration: nobody gets in — a connection naming a live token never
 * sees, changes or closes it without that connection's credentials (SSE
 * Last-Event-ID, a hello followed by a burst of events in one write),
 * POSTs are checked by the stream's owner before they are accepted, the
 * app's authentication hook and the user binding of tokens, the Origin
 * allowlist, the per-connection event rate limit, and errors that always
 * say what they are. Two server instances ("two hosts", 2 workers each)
 * with the demo app, and one with the trust test app (tests/apps), on one
 * real redis-server. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/util.h"
#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/sseclient.h"
#include "support/wsclient.h"

#define T_MS 10000
#define GOOD_ORIGIN "http://good.example:8080"

static sw_test_redis_t *redis;
static sw_test_server_t *host[2]; /* demo app */
static sw_test_server_t *app;     /* trust test app, Origin allowlist, 20 events/s */

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    for (int i = 0; i < 2; i++) {
        host[i] = sw_test_server_start(0, sw_test_redis_url(redis), 2, NULL);
        cr_assert(host[i]);
    }
    const char *extra[] = {"--app",     SW_TEST_TRUST_APP,    "--allowed-origins",
                           GOOD_ORIGIN, "--max-events-per-s", "20",
                           NULL};
    app = sw_test_server_start(0, sw_test_redis_url(redis), 1, extra);
    cr_assert(app);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        if (host[i])
            sw_test_server_stop(host[i], SIGTERM, 5000);
        host[i] = NULL;
    }
    if (app)
        sw_test_server_stop(app, SIGTERM, 5000);
    app = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(trust, .init = setup, .fini = teardown, .timeout = 120);

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

static json_int_t var_in(json_t *msg, const char *state, const char *var)
{
    return json_integer_value(
        json_object_get(json_object_get(json_object_get(msg, "delta"), state), var));
}

static json_int_t count_in(json_t *msg)
{
    return var_in(msg, "counter", "count");
}

/* Append one masked client text frame (RFC 6455 §5.2; a zero masking key
 * leaves the payload as is) to b. */
static void frame(sw_buf_t *b, const char *text)
{
    size_t n = strlen(text);
    unsigned char hdr[8] = {0x81};
    size_t hl;
    if (n < 126) {
        hdr[1] = (unsigned char)(0x80 | n);
        hl = 2;
    } else {
        cr_assert(n <= 0xffff);
        hdr[1] = 0x80 | 126;
        hdr[2] = (unsigned char)(n >> 8);
        hdr[3] = (unsigned char)n;
        hl = 4;
    }
    sw_buf_append(b, hdr, hl);
    sw_buf_append(b, "\0\0\0\0", 4);
    sw_buf_append(b, text, n);
}

/* A WebSocket client on token `tok` at route "/" with counter.count == n. */
static sw_wsc_t *victim(int hi, const char *tok, int n)
{
    sw_wsc_t *v = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
    cr_assert(v);
    json_t *w = sw_wsc_hello(v, tok, NULL, T_MS);
    cr_assert(w);
    cr_assert_str_eq(str(w, "token"), tok);
    json_decref(w);
    json_decref(call(v, 1, "hydrate", NULL, "/"));
    for (int i = 0; i < n; i++) {
        json_t *d = call(v, 2 + i, "counter.increment", NULL, NULL);
        cr_assert_eq(count_in(d), i + 1);
        json_decref(d);
    }
    return v;
}

Test(trust, hello_then_a_burst_of_events_in_one_write_never_reaches_a_live_token)
{
    sw_wsc_t *v = victim(0, "tok-burst", 5);
    for (int hi = 0; hi < 2; hi++) { /* the victim's worker's host, and another */
        sw_wsc_t *a = sw_wsc_connect("127.0.0.1", host[hi]->port, "/_event", T_MS);
        cr_assert(a);
        sw_buf_t b;
        sw_buf_init(&b, 0);
        frame(&b, "{\"type\":\"hello\",\"token\":\"tok-burst\"}");
        for (int i = 1; i <= 100; i++) {
            char m[96];
            snprintf(m, sizeof(m), "{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}",
                     i);
            frame(&b, m);
        }
        cr_assert_eq(sw_wsc_send_raw(a, b.data, b.len), 0, "hello + 100 events in one write");
        sw_buf_destroy(&b);
        json_t *w = sw_wsc_wait(a, "welcome", -1, T_MS);
        cr_assert(w);
        cr_assert_str_neq(str(w, "token"), "tok-burst", "a duplicate gets a token of its own");
        json_decref(w);
        json_t *last = sw_wsc_wait(a, NULL, 100, T_MS);
        cr_assert(last, "every event is answered");
        cr_assert_eq(count_in(last), 100, "all 100 ran on the new token: %s",
                     json_dumps(last, JSON_COMPACT));
        json_decref(last);
        sw_wsc_free(a);
    }
    /* The victim's state is untouched, and its connection still works. */
    json_t *d = call(v, 50, "counter.increment", NULL, NULL);
    cr_assert(d);
    cr_assert_eq(count_in(d), 6, "the victim's count went from 5 to %lld", (long long)count_in(d));
    json_decref(d);
    sw_wsc_free(v);
}

static void post_body(char *body, size_t cap, const char *cid, const char *ctok,
                      const char *messages)
{
    snprintf(body, cap, "{\"conn_id\":\"%s\",\"conn_token\":\"%s\",\"messages\":%s}", cid, ctok,
             messages);
}

static int post(int port, const char *cid, const char *ctok, const char *messages, char **out)
{
    char body[4096];
    post_body(body, sizeof(body), cid, ctok, messages);
    return sw_test_http("127.0.0.1", port, "POST", "/_event", body, out, T_MS);
}

/* An event stream's welcome: conn_id and conn_token into cid / ctok. */
static void stream_creds(sw_ssec_t *e, const char *want_token, char cid[80], char ctok[80])
{
    json_t *w = sw_ssec_next(e, T_MS);
    cr_assert(w, "welcome");
    cr_assert_str_eq(str(w, "type"), "welcome");
    if (want_token)
        cr_assert_str_eq(str(w, "token"), want_token);
    snprintf(cid, 80, "%s", str(w, "conn_id"));
    snprintf(ctok, 80, "%s", str(w, "conn_token"));
    json_decref(w);
}

/* An event stream on host `hi` for `token`, its credentials into cid /
 * ctok, hydrated on "/" by a POST of `messages` (the hydrate first) to
 * host `post_hi`; returns the seq of the answer to the last id, last_id. */
static sw_ssec_t *stream_hydrated(int hi, const char *token, int post_hi, const char *more,
                                  int last_id, char cid[80], char ctok[80], json_int_t *seq)
{
    char q[96], msgs[512];
    snprintf(q, sizeof(q), "token=%s", token);
    sw_ssec_t *e = sw_ssec_open(host[hi]->port, q, NULL, NULL);
    stream_creds(e, token, cid, ctok);
    snprintf(msgs, sizeof(msgs),
             "[{\"type\":\"event\",\"id\":1,\"name\":\"hydrate\",\"router\":{\"path\":\"/\"}}%s]",
             more ? more : "");
    char *resp = NULL;
    cr_assert_eq(post(host[post_hi]->port, cid, ctok, msgs, &resp), 202, "%s", resp);
    free(resp);
    for (;;) {
        json_t *m = sw_ssec_next(e, T_MS);
        cr_assert(m, "the answer to %d", last_id);
        json_int_t id = json_integer_value(json_object_get(m, "id"));
        if (seq)
            *seq = json_integer_value(json_object_get(m, "seq"));
        json_decref(m);
        if (id == last_id)
            return e;
    }
}

Test(trust, last_event_id_without_credentials_never_takes_over_a_live_stream)
{
    char cid[80], ctok[80];
    json_int_t seq = 0;
    sw_ssec_t *v = stream_hydrated(
        0, "tok-sse-victim", 0,
        ",{\"type\":\"event\",\"id\":2,\"name\":\"counter.add\",\"payload\":{\"amount\":5}}", 2,
        cid, ctok, &seq);
    char *resp = NULL;
    /* The attacker knows the token and sends what an EventSource sends
     * when it reconnects by itself, to the victim's host and another. */
    for (int hi = 0; hi < 2; hi++) {
        char lei[32];
        snprintf(lei, sizeof(lei), "%lld", (long long)(hi == 0 ? 0 : seq));
        sw_ssec_t *a = sw_ssec_open(host[hi]->port, "token=tok-sse-victim", lei, NULL);
        json_t *w = sw_ssec_next(a, T_MS);
        cr_assert(w);
        cr_assert_str_eq(str(w, "type"), "welcome");
        cr_assert_str_neq(str(w, "token"), "tok-sse-victim", "a second tab: a new token");
        cr_assert_not(json_is_true(json_object_get(w, "resumed")));
        json_decref(w);
        json_t *m = sw_ssec_next(a, 800);
        cr_assert_null(m, "the attacker gets nothing of the victim: %s",
                       m ? json_dumps(m, JSON_COMPACT) : "");
        sw_ssec_close(a);
    }
    /* The victim's stream is open and still works. */
    cr_assert_eq(post(host[1]->port, cid, ctok,
                      "[{\"type\":\"event\",\"id\":3,\"name\":\"counter.increment\"}]", &resp),
                 202);
    free(resp);
    json_t *m = sw_ssec_next(v, T_MS);
    cr_assert(m, "the victim's stream was not closed");
    cr_assert_eq(json_integer_value(json_object_get(m, "id")), 3);
    cr_assert_eq(count_in(m), 6);
    json_decref(m);
    sw_ssec_close(v);
}

Test(trust, an_error_always_carries_its_code_and_a_message)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", host[0]->port, "/_event", T_MS);
    cr_assert(c);
    /* "\é: an unterminated string whose error text jansson cuts inside
     * the two-byte character. */
    cr_assert_eq(sw_wsc_send_text(c, "\"\\\xc3\xa9", 4), 0);
    json_t *e = sw_wsc_recv_json(c, T_MS);
    cr_assert(e, "an answer that is JSON");
    cr_assert_str_eq(str(e, "type"), "error");
    cr_assert_str_eq(str(e, "code"), "bad_json");
    cr_assert(str(e, "message") && strlen(str(e, "message")) > 0);
    json_decref(e);
    sw_wsc_free(c);
}

/* ---- the authentication hook ------------------------------------------- */

static sw_wsc_t *app_client(const char *extra_headers)
{
    sw_wsc_t *c =
        sw_wsc_connect_ex("127.0.0.1", app->port, "/_event", extra_headers, T_MS, NULL, NULL);
    cr_assert(c);
    return c;
}

static json_t *hello_auth(sw_wsc_t *c, const char *token, const char *auth, const json_t *resume)
{
    json_t *h = json_pack("{s:s}", "type", "hello");
    if (token)
        json_object_set_new(h, "token", json_string(token));
    if (auth)
        json_object_set_new(h, "auth", json_string(auth));
    if (resume)
        json_object_set(h, "resume", (json_t *)resume);
    cr_assert_eq(sw_wsc_send_json(c, h), 0);
    json_decref(h);
    return sw_wsc_recv_json(c, T_MS);
}

static char *whoami(sw_wsc_t *c, int id)
{
    json_t *d = call(c, id, "me.whoami", NULL, NULL);
    cr_assert(d);
    json_t *u = json_object_get(json_object_get(json_object_get(d, "delta"), "me"), "user");
    char *out = strdup(u ? json_string_value(u) : "(unchanged)");
    json_decref(d);
    return out;
}

Test(trust, a_refused_hello_gets_unauthorized_and_close_4401)
{
    const char *refused[] = {"deny", "bad-user", "bad-user-c1"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(refused); i++) {
        sw_wsc_t *c = app_client(NULL);
        json_t *e = hello_auth(c, "tok-refused", refused[i], NULL);
        cr_assert(e);
        cr_assert_str_eq(str(e, "type"), "error");
        cr_assert_str_eq(str(e, "code"), "unauthorized");
        if (i == 0)
            cr_assert_str_eq(str(e, "message"), "denied by test", "the hook's reason");
        json_decref(e);
        cr_assert_null(sw_wsc_recv_json(c, T_MS));
        cr_assert(sw_wsc_closed(c));
        cr_assert_eq(sw_wsc_close_code(c), 4401);
        sw_wsc_free(c);
    }
}

Test(trust, a_token_is_bound_to_its_first_user)
{
    sw_wsc_t *alice = app_client(NULL);
    json_t *w = hello_auth(alice, "tok-alice", "user:alice", NULL);
    cr_assert_str_eq(str(w, "type"), "welcome");
    cr_assert_str_eq(str(w, "token"), "tok-alice");
    json_decref(w);
    char *u = whoami(alice, 1);
    cr_assert_str_eq(u, "alice");
    free(u);
    json_t *d = call(alice, 2, "me.increment", NULL, NULL);
    cr_assert_eq(var_in(d, "me", "count"), 1);
    json_decref(d);

    /* Another user, and an anonymous client, naming alice's token (alice
     * still connected, and after she left) get tokens of their own. */
    for (int round = 0; round < 2; round++) {
        const char *who[] = {"user:bob", NULL};
        for (int k = 0; k < 2; k++) {
            sw_wsc_t *x = app_client(NULL);
            w = hello_auth(x, "tok-alice", who[k], NULL);
            cr_assert_str_eq(str(w, "type"), "welcome");
            cr_assert_str_neq(str(w, "token"), "tok-alice");
            json_decref(w);
            u = whoami(x, 1);
            cr_assert_str_eq(u, k == 0 ? "bob" : "(unchanged)", "round %d: %s", round, u);
            free(u);
            d = call(x, 2, "me.increment", NULL, NULL);
            cr_assert_eq(var_in(d, "me", "count"), 1, "its own state");
            json_decref(d);
            sw_wsc_free(x);
        }
        if (round == 0) {
            sw_wsc_free(alice);
            usleep(200000);
        }
    }
    /* Alice comes back (no credentials, her old socket is gone): her token. */
    alice = app_client(NULL);
    w = hello_auth(alice, "tok-alice", "user:alice", NULL);
    cr_assert_str_eq(str(w, "token"), "tok-alice");
    json_decref(w);
    d = call(alice, 3, "me.increment", NULL, NULL);
    cr_assert_eq(var_in(d, "me", "count"), 2, "nobody else wrote into it");
    json_decref(d);
    sw_wsc_free(alice);
}

Test(trust, a_resume_of_a_bound_token_by_another_user_is_refused)
{
    sw_wsc_t *a = app_client(NULL);
    json_t *w = hello_auth(a, "tok-erin", "user:erin", NULL);
    cr_assert_str_eq(str(w, "token"), "tok-erin");
    json_t *resume = json_pack("{s:s,s:s,s:i}", "conn_id", str(w, "conn_id"), "conn_token",
                               str(w, "conn_token"), "last_seq", 0);
    json_decref(w);
    sw_wsc_free(a);
    usleep(200000);
    sw_wsc_t *m = app_client(NULL);
    json_t *e = hello_auth(m, "tok-erin", "user:mallory", resume);
    cr_assert_str_eq(str(e, "type"), "error");
    cr_assert_str_eq(str(e, "code"), "bad_resume");
    json_decref(e);
    w = sw_wsc_wait(m, "welcome", -1, T_MS);
    cr_assert_str_neq(str(w, "token"), "tok-erin");
    cr_assert_not(json_is_true(json_object_get(w, "resumed")));
    json_decref(w);
    sw_wsc_free(m);
    /* Erin herself resumes. */
    sw_wsc_t *b = app_client(NULL);
    w = hello_auth(b, "tok-erin", "user:erin", resume);
    cr_assert_str_eq(str(w, "type"), "welcome");
    cr_assert(json_is_true(json_object_get(w, "resumed")));
    json_decref(w);
    json_decref(resume);
    sw_wsc_free(b);
}

Test(trust, event_streams_authenticate_with_the_auth_parameter_or_a_bearer_token)
{
    char *body = NULL;
    cr_assert_eq(sw_test_http("127.0.0.1", app->port, "GET", "/_sse?token=tok-s1&auth=deny", NULL,
                              &body, T_MS),
                 401);
    json_t *j = json_loads(body, 0, NULL);
    cr_assert(j, "a JSON body: %s", body);
    cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "unauthorized");
    json_decref(j);
    free(body);

    sw_ssec_t *e = sw_ssec_open(app->port, "token=tok-s1&auth=user%3Adave", NULL, NULL);
    char cid[80], ctok[80];
    stream_creds(e, "tok-s1", cid, ctok);
    char *resp = NULL;
    cr_assert_eq(
        post(app->port, cid, ctok, "[{\"type\":\"event\",\"id\":1,\"name\":\"me.whoami\"}]", &resp),
        202);
    free(resp);
    json_t *d = sw_ssec_next(e, T_MS);
    cr_assert_str_eq(str(json_object_get(json_object_get(d, "delta"), "me"), "user"), "dave");
    json_decref(d);
    sw_ssec_close(e);

    /* Another user's stream for dave's token: a token of its own. */
    sw_ssec_t *f =
        sw_ssec_open(app->port, "token=tok-s1", NULL, "Authorization: Bearer user:frank\r\n");
    json_t *w = sw_ssec_next(f, T_MS);
    cr_assert_str_eq(str(w, "type"), "welcome");
    cr_assert_str_neq(str(w, "token"), "tok-s1");
    json_decref(w);
    sw_ssec_close(f);
}

Test(trust, handlers_chain_at_most_64_events_and_see_the_bound)
{
    sw_wsc_t *c = app_client(NULL);
    json_t *w = hello_auth(c, NULL, NULL, NULL);
    json_decref(w);
    json_t *d = call(c, 1, "me.chain", "{\"n\": 70}", NULL);
    cr_assert(d);
    cr_assert_eq(var_in(d, "me", "chained"), 64);
    cr_assert_eq(var_in(d, "me", "refused"), 6, "sw_ctx_chain returned -1 past the bound");
    json_decref(d);
    /* The 64 chained increments run next. */
    json_int_t count = 0;
    while (count < 64) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "count reached %lld", (long long)count);
        if (var_in(m, "me", "count"))
            count = var_in(m, "me", "count");
        json_decref(m);
    }
    cr_assert_eq(count, 64);
    sw_wsc_free(c);
}

Test(trust, events_above_the_rate_are_answered_rate_limited_and_nothing_else_is_lost)
{
    sw_wsc_t *c = app_client(NULL);
    json_decref(hello_auth(c, NULL, NULL, NULL));
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 1; i <= 60; i++) {
        char m[96];
        snprintf(m, sizeof(m), "{\"type\":\"event\",\"id\":%d,\"name\":\"me.increment\"}", i);
        frame(&b, m);
    }
    cr_assert_eq(sw_wsc_send_raw(c, b.data, b.len), 0);
    sw_buf_destroy(&b);
    int ok = 0, limited = 0;
    json_int_t count = 0;
    for (int i = 0; i < 60; i++) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "answer %d of 60", i + 1);
        if (strcmp(str(m, "type"), "error") == 0) {
            cr_assert_str_eq(str(m, "code"), "rate_limited");
            cr_assert(json_integer_value(json_object_get(m, "id")) > 0, "the error has the id");
            limited++;
        } else {
            ok++;
            count = var_in(m, "me", "count");
        }
        json_decref(m);
    }
    cr_assert_eq(ok + limited, 60, "every event answered once");
    cr_assert(ok >= 20 && ok <= 22, "one second's worth passes: %d", ok);
    cr_assert_eq(count, ok, "exactly the accepted events were applied");
    /* A second later the bucket has refilled: the connection is fine. */
    usleep(1100000);
    json_t *d = call(c, 100, "me.increment", NULL, NULL);
    cr_assert_eq(var_in(d, "me", "count"), ok + 1);
    json_decref(d);
    sw_wsc_free(c);
}

Test(trust, event_streams_and_posts_from_another_origin_get_403)
{
    const char *bad = "Origin: http://evil.example\r\n";
    char *body = NULL;
    cr_assert_eq(sw_test_http_ex("127.0.0.1", app->port, "GET", "/_sse?token=tok-o1", bad, NULL,
                                 &body, T_MS),
                 403);
    cr_assert(strstr(body, "\"forbidden_origin\""), "%s", body);
    free(body);
    cr_assert_eq(sw_test_http_ex("127.0.0.1", app->port, "POST", "/_event", bad,
                                 "{\"conn_id\":\"x\",\"conn_token\":\"y\",\"messages\":[]}", &body,
                                 T_MS),
                 403);
    cr_assert(strstr(body, "\"forbidden_origin\""), "%s", body);
    free(body);
    /* The allowed origin, and no Origin at all, pass. */
    sw_ssec_t *e = sw_ssec_open(app->port, "token=tok-o1", NULL, "Origin: " GOOD_ORIGIN "\r\n");
    char cid[80], ctok[80];
    stream_creds(e, "tok-o1", cid, ctok);
    char req[512];
    post_body(req, sizeof(req), cid, ctok, "[]");
    cr_assert_eq(sw_test_http_ex("127.0.0.1", app->port, "POST", "/_event",
                                 "Origin: " GOOD_ORIGIN "\r\n", req, &body, T_MS),
                 202, "%s", body);
    free(body);
    sw_ssec_close(e);
}

/* ---- POST /_event is checked before it is accepted ---------------------- */

/* Redis's count of PUBLISH commands so far (INFO commandstats). */
static long long publishes(void)
{
    redisContext *rc = sw_test_redis_connect(redis);
    cr_assert(rc);
    redisReply *r = redisCommand(rc, "INFO commandstats");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    long long n = 0;
    const char *p = strstr(r->str, "cmdstat_publish:calls=");
    if (p)
        n = atoll(p + strlen("cmdstat_publish:calls="));
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

static void assert_refused(int port, const char *cid, const char *ctok, int want_status)
{
    char *resp = NULL;
    int st = post(port, cid, ctok, "[{\"type\":\"event\",\"id\":9,\"name\":\"counter.increment\"}]",
                  &resp);
    cr_assert_eq(st, want_status, "POST %s / %s: %d %s", cid, ctok, st, resp);
    json_t *j = json_loads(resp, 0, NULL);
    cr_assert(j, "a JSON body: %s", resp);
    cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "bad_resume");
    cr_assert(str(json_object_get(j, "error"), "message"));
    json_decref(j);
    free(resp);
}

Test(trust, posts_with_forged_credentials_are_refused_on_every_host_without_redis_work)
{
    char cid[80], ctok[80];
    sw_ssec_t *e = stream_hydrated(0, "tok-post", 1, NULL, 1, cid, ctok, NULL);
    char *resp = NULL;
    json_t *m;
    while ((m = sw_ssec_next(e, 1000)))
        json_decref(m);

    /* A wrong conn_token, a made-up conn_id (with the owner's holder and
     * "_"), a real conn_id with its tag changed: on both hosts (both
     * workers of each: several POSTs), no PUBLISH at all. */
    char wrong_tok[80], made_up[96], bad_tag[80];
    snprintf(wrong_tok, sizeof(wrong_tok), "%s", ctok);
    wrong_tok[0] = wrong_tok[0] == 'a' ? 'b' : 'a';
    snprintf(made_up, sizeof(made_up), "%.*s_999", (int)(strrchr(cid, '_') - cid), cid);
    snprintf(bad_tag, sizeof(bad_tag), "%s", cid);
    bad_tag[strlen(bad_tag) - 1] = bad_tag[strlen(bad_tag) - 1] == '0' ? '1' : '0';
    long long before = publishes();
    for (int round = 0; round < 4; round++) {
        for (int hi = 0; hi < 2; hi++) {
            assert_refused(host[hi]->port, cid, wrong_tok, 403);
            assert_refused(host[hi]->port, made_up, ctok, 404);
            assert_refused(host[hi]->port, "w0-1-abc_5", ctok, 404);
            assert_refused(host[hi]->port, bad_tag, ctok, 404);
            assert_refused(host[hi]->port, "no-such-stream", "x", 404);
        }
    }
    cr_assert_eq(publishes(), before, "a refused POST makes Redis do nothing");
    /* Nothing reached the stream. */
    m = sw_ssec_next(e, 500);
    cr_assert_null(m, "%s", m ? json_dumps(m, JSON_COMPACT) : "");

    /* The real credentials work from every host, in order. */
    for (int i = 0; i < 6; i++) {
        char msg[96];
        snprintf(msg, sizeof(msg),
                 "[{\"type\":\"event\",\"id\":%d,\"name\":\"counter.increment\"}]", 10 + i);
        cr_assert_eq(post(host[i % 2]->port, cid, ctok, msg, &resp), 202);
        cr_assert(strstr(resp, "\"accepted\":1"), "%s", resp);
        free(resp);
    }
    json_int_t count = 0;
    while (count < 6 && (m = sw_ssec_next(e, T_MS))) {
        count = count_in(m);
        json_decref(m);
    }
    cr_assert_eq(count, 6);

    /* Once the stream is gone, its own credentials get 404 everywhere. */
    sw_ssec_close(e);
    usleep(300000);
    for (int hi = 0; hi < 2; hi++)
        for (int k = 0; k < 2; k++)
            assert_refused(host[hi]->port, cid, ctok, 404);
}

Test(trust, other_methods_on_the_event_endpoint_get_405)
{
    const char *methods[] = {"PUT", "DELETE", "PATCH"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(methods); i++) {
        char *body = NULL;
        cr_assert_eq(
            sw_test_http("127.0.0.1", host[0]->port, methods[i], "/_event", "{}", &body, T_MS), 405,
            "%s", methods[i]);
        json_t *j = json_loads(body, 0, NULL);
        cr_assert(j, "%s", body);
        cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "method_not_allowed");
        json_decref(j);
        free(body);
    }
}

Test(trust, a_websocket_upgrade_from_another_origin_gets_403)
{
    const char *bad[] = {"Origin: http://evil.example\r\n", "Origin: null\r\n",
                         "Origin: http://good.example:8081\r\n",
                         "Origin: http://good.example:8080.evil\r\n"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        int status = 0;
        char *body = NULL;
        sw_wsc_t *c =
            sw_wsc_connect_ex("127.0.0.1", app->port, "/_event", bad[i], T_MS, &status, &body);
        cr_assert_null(c, "%s", bad[i]);
        cr_assert_eq(status, 403, "%s", bad[i]);
        json_t *j = json_loads(body ? body : "", 0, NULL);
        cr_assert(j, "a JSON body: %s", body);
        cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "forbidden_origin");
        json_decref(j);
        free(body);
    }
    sw_wsc_t *ok = app_client("Origin: " GOOD_ORIGIN "\r\n");
    json_t *w = hello_auth(ok, NULL, NULL, NULL);
    cr_assert_str_eq(str(w, "type"), "welcome");
    json_decref(w);
    sw_wsc_free(ok);
}

Test(trust, the_hook_sees_the_upgrade_requests_cookie)
{
    sw_wsc_t *c = app_client("Cookie: theme=dark; sw_user=carol\r\n");
    json_t *w = hello_auth(c, "tok-carol", NULL, NULL);
    cr_assert_str_eq(str(w, "token"), "tok-carol");
    json_decref(w);
    char *u = whoami(c, 1);
    cr_assert_str_eq(u, "carol");
    free(u);
    sw_wsc_free(c);
}

/* ---- cancel ------------------------------------------------------------- */

Test(trust, cancel_removes_a_queued_event_and_stops_a_running_one)
{
    sw_wsc_t *c = app_client(NULL);
    json_decref(hello_auth(c, NULL, NULL, NULL));
    /* A handler that would yield 100000 times; an event queued behind it
     * and cancelled; a cancel of an unknown id. */
    sw_buf_t b;
    sw_buf_init(&b, 0);
    frame(&b, "{\"type\":\"event\",\"id\":1,\"name\":\"me.slow\",\"payload\":{\"n\":100000}}");
    frame(&b, "{\"type\":\"event\",\"id\":2,\"name\":\"me.increment\"}");
    frame(&b, "{\"type\":\"cancel\",\"id\":2}");
    frame(&b, "{\"type\":\"cancel\",\"id\":999}");
    cr_assert_eq(sw_wsc_send_raw(c, b.data, b.len), 0);
    sw_buf_destroy(&b);
    json_t *e2 = sw_wsc_wait(c, "error", 2, T_MS);
    cr_assert(e2, "the queued event is answered cancelled");
    cr_assert_str_eq(str(e2, "code"), "cancelled");
    json_decref(e2);
    /* The running one: cancelled after a few of its steps were answered. */
    json_int_t last = 0;
    int partials = 0, sent = 0;
    for (;;) {
        json_t *m = sw_wsc_recv_json(c, T_MS);
        cr_assert(m, "answers to event 1");
        cr_assert_eq(json_integer_value(json_object_get(m, "id")), 1, "%s",
                     json_dumps(m, JSON_COMPACT));
        if (strcmp(str(m, "type"), "error") == 0) {
            cr_assert_str_eq(str(m, "code"), "cancelled");
            json_decref(m);
            break;
        }
        last = var_in(m, "me", "count");
        partials++;
        json_decref(m);
        if (partials == 3 && !sent) {
            cr_assert_eq(sw_wsc_send_text(c, "{\"type\":\"cancel\",\"id\":1}", 24), 0);
            sent = 1;
        }
    }
    cr_assert(sent && last >= 3 && last < 100000, "stopped early: count %lld after %d deltas",
              (long long)last, partials);
    /* Committed steps stay, the cancelled queued event never ran, and the
     * cancel of an unknown id got no answer: the next answer is this one. */
    json_t *d = call(c, 3, "me.increment", NULL, NULL);
    cr_assert(d);
    cr_assert_str_eq(str(d, "type"), "delta");
    cr_assert_eq(var_in(d, "me", "count"), last + 1);
    json_decref(d);
    /* A cancel of an event already answered: ignored. */
    cr_assert_eq(sw_wsc_send_text(c, "{\"type\":\"cancel\",\"id\":3}", 24), 0);
    json_t *none = sw_wsc_recv_json(c, 300);
    cr_assert_null(none, "%s", none ? json_dumps(none, JSON_COMPACT) : "");
    sw_wsc_free(c);
}
