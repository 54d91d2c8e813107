/* Integration: the connection JWT example (examples/plugins/jwt_auth.c,
 * docs/auth.md) loaded into the real server on a real redis-server. The
 * tests sign their JWTs with libjwt. A valid HS256 JWT admits its `sub` over
 * WebSocket (hello.auth) and over SSE (?auth= or Authorization: Bearer);
 * expired, not yet valid, wrongly signed, unsigned (alg none), HS512,
 * incomplete and garbage tokens are refused (WebSocket: error
 * "unauthorized" then close 4401; SSE: 401 with a JSON error body); a
 * token already bound to one user is never handed to another; a JWT that
 * expires does not end the connection it opened; aud / iss are checked
 * when configured; and the app refuses to start without a proper key. */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "support/redis_harness.h"
#include "support/server_harness.h"
#include "support/sseclient.h"
#include "support/wsclient.h"

#define T_MS 10000
#define SECRET "test-secret-of-the-jwt-suite-0123456789"       /* 39 bytes */
#define OTHER_KEY "another-secret-that-is-long-enough-0123456" /* 42 bytes */

static sw_test_redis_t *redis;
static sw_test_server_t *app;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis = sw_test_redis_start(0);
    cr_assert(redis);
    /* The server (and so the app's init) inherits this environment. */
    setenv("STATEWIRE_JWT_SECRET", SECRET, 1);
    unsetenv("STATEWIRE_JWT_AUDIENCE");
    unsetenv("STATEWIRE_JWT_ISSUER");
    const char *extra[] = {"--app", SW_TEST_JWT_APP, NULL};
    app = sw_test_server_start(0, sw_test_redis_url(redis), 1, extra);
    cr_assert(app);
}

static void teardown(void)
{
    if (app)
        sw_test_server_stop(app, SIGTERM, 5000);
    app = NULL;
    if (redis)
        sw_test_redis_stop(redis);
    redis = NULL;
}

TestSuite(jwt, .init = setup, .fini = teardown, .timeout = 120);

/* ---- tokens ------------------------------------------------------------------- */

/* A JWT with the claims `claims_fmt` (printf format of a JSON object),
 * signed by libjwt with `alg` and `key`. Heap; caller frees. */
static char *sign(jwt_alg_t alg, const char *key, const char *claims_fmt, ...)
    __attribute__((format(printf, 3, 4)));

static char *sign(jwt_alg_t alg, const char *key, const char *claims_fmt, ...)
{
    char claims[1024];
    va_list ap;
    va_start(ap, claims_fmt);
    int n = vsnprintf(claims, sizeof(claims), claims_fmt, ap);
    va_end(ap);
    cr_assert(n > 0 && (size_t)n < sizeof(claims));
    jwt_t *j = NULL;
    cr_assert_eq(jwt_new(&j), 0);
    cr_assert_eq(jwt_add_grants_json(j, claims), 0, "claims: %s", claims);
    cr_assert_eq(jwt_set_alg(j, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *out = jwt_encode_str(j);
    cr_assert(out);
    jwt_free(j);
    return out;
}

/* A valid token for `sub`, expiring in `ttl` seconds, built the plain way:
 * jwt_add_grant, jwt_add_grant_int, HS256 with the server's key. */
static char *valid(const char *sub, long ttl)
{
    jwt_t *j = NULL;
    cr_assert_eq(jwt_new(&j), 0);
    cr_assert_eq(jwt_add_grant(j, "sub", sub), 0);
    cr_assert_eq(jwt_add_grant_int(j, "iat", (long)time(NULL)), 0);
    cr_assert_eq(jwt_add_grant_int(j, "exp", (long)time(NULL) + ttl), 0);
    cr_assert_eq(jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)SECRET, strlen(SECRET)), 0);
    char *out = jwt_encode_str(j);
    cr_assert(out);
    jwt_free(j);
    return out;
}

/* Unpadded base64url of `len` bytes at `data` (RFC 7515 §2) into out (cap
 * bytes). */
static void b64url_bin(const void *data, size_t len, char *out, size_t cap)
{
    cr_assert(cap >= 4 * ((len + 2) / 3) + 1);
    int k = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    cr_assert(k >= 0);
    while (k > 0 && out[k - 1] == '=')
        k--;
    out[k] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

static void b64url(const char *s, char *out, size_t cap)
{
    b64url_bin(s, strlen(s), out, cap);
}

/* A token made by hand: header {"alg":"HS256"}, `payload` verbatim, and
 * the HMAC-SHA256 with the server's key. */
static char *hand_signed(const char *payload)
{
    char h[128], p[512], input[700], sig[64], out[800];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", h, sizeof(h));
    b64url(payload, p, sizeof(p));
    snprintf(input, sizeof(input), "%s.%s", h, p);
    cr_assert(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)input,
                   strlen(input), mac, &maclen));
    b64url_bin(mac, maclen, sig, sizeof(sig));
    snprintf(out, sizeof(out), "%s.%s", input, sig);
    return strdup(out);
}

/* An unsigned token, made by hand: header {"alg":"none"}, the claims,
 * and `sig` as the third segment ("" for none at all). */
static char *unsigned_token(const char *sub, const char *sig)
{
    char claims[256], h[128], c[512], out[1024];
    snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"exp\":%ld}", sub, (long)time(NULL) + 600);
    b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", h, sizeof(h));
    b64url(claims, c, sizeof(c));
    snprintf(out, sizeof(out), "%s.%s.%s", h, c, sig);
    return strdup(out);
}

/* ---- clients ------------------------------------------------------------------ */

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *var_in(json_t *msg, const char *state, const char *var)
{
    return json_object_get(json_object_get(json_object_get(msg, "delta"), state), var);
}

static sw_wsc_t *ws_client(void)
{
    sw_wsc_t *c = sw_wsc_connect("127.0.0.1", app->port, "/_event", T_MS);
    cr_assert(c);
    return c;
}

/* Send a hello with `token` and `auth` (each may be NULL); the first
 * answer (new reference). */
static json_t *hello_auth(sw_wsc_t *c, const char *token, const char *auth)
{
    json_t *h = json_pack("{s:s}", "type", "hello");
    if (token)
        json_object_set_new(h, "token", json_string(token));
    if (auth)
        json_object_set_new(h, "auth", json_string(auth));
    cr_assert_eq(sw_wsc_send_json(c, h), 0);
    json_decref(h);
    return sw_wsc_recv_json(c, T_MS);
}

static json_t *call(sw_wsc_t *c, int id, const char *name, const char *payload)
{
    json_t *m = json_pack("{s:s,s:i,s:s}", "type", "event", "id", id, "name", name);
    if (payload)
        json_object_set_new(m, "payload", json_loads(payload, 0, NULL));
    cr_assert_eq(sw_wsc_send_json(c, m), 0);
    json_decref(m);
    json_t *d = sw_wsc_wait(c, NULL, id, T_MS);
    cr_assert(d, "an answer to %s", name);
    return d;
}

/* A WebSocket client admitted with `jwt` on `token`: its welcome's token
 * into got (65 bytes). */
static sw_wsc_t *admitted(const char *token, const char *jwt, char *got)
{
    sw_wsc_t *c = ws_client();
    json_t *w = hello_auth(c, token, jwt);
    cr_assert(w);
    cr_assert_str_eq(str(w, "type"), "welcome", "%s", json_dumps(w, JSON_COMPACT));
    snprintf(got, 65, "%s", str(w, "token"));
    json_decref(w);
    return c;
}

/* The user id profile.whoami answers. */
static void assert_whoami(sw_wsc_t *c, int id, const char *want)
{
    json_t *d = call(c, id, "profile.whoami", NULL);
    cr_assert_str_eq(str(d, "type"), "delta", "%s", json_dumps(d, JSON_COMPACT));
    cr_assert_str_eq(json_string_value(var_in(d, "profile", "user")), want);
    json_decref(d);
}

/* notes.add {"text": text}; asserts the list then holds `count` notes, the
 * last one `text` stamped with `user`. */
static void assert_note(json_t *d, size_t count, const char *user, const char *text)
{
    json_t *items = var_in(d, "notes", "items");
    cr_assert_eq(json_array_size(items), count, "%s", json_dumps(d, JSON_COMPACT));
    json_t *last = json_array_get(items, count - 1);
    cr_assert_str_eq(str(last, "user"), user);
    cr_assert_str_eq(str(last, "text"), text);
}

static int post(const char *cid, const char *ctok, const char *messages)
{
    char body[4096];
    snprintf(body, sizeof(body), "{\"conn_id\":\"%s\",\"conn_token\":\"%s\",\"messages\":%s}", cid,
             ctok, messages);
    char *resp = NULL;
    int code = sw_test_http("127.0.0.1", app->port, "POST", "/_event", body, &resp, T_MS);
    free(resp);
    return code;
}

/* ---- admitted ----------------------------------------------------------------- */

Test(jwt, a_valid_jwt_over_websocket_admits_its_sub)
{
    char *jwt = valid("alice", 600);
    char tok[65];
    sw_wsc_t *c = admitted("tok-jwt-alice", jwt, tok);
    cr_assert_str_eq(tok, "tok-jwt-alice");
    assert_whoami(c, 1, "alice");
    json_t *d = call(c, 2, "notes.add", "{\"text\":\"first\"}");
    assert_note(d, 1, "alice", "first");
    json_decref(d);
    d = call(c, 3, "notes.add", "{\"text\":\"\"}");
    cr_assert_str_eq(str(d, "code"), "bad_payload");
    json_decref(d);
    sw_wsc_free(c);
    free(jwt);

    /* A backend whose clock runs a few seconds ahead: nbf and iat within
     * the leeway pass; a token made by hand passes like libjwt's. */
    long now = (long)time(NULL);
    char *skewed =
        sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"erin\",\"exp\":%ld,\"nbf\":%ld,\"iat\":%ld}",
             now + 600, now + 10, now + 10);
    char payload[128];
    snprintf(payload, sizeof(payload), "{\"sub\":\"frank\",\"exp\":%ld.5}", now + 600);
    char *by_hand = hand_signed(payload);
    c = admitted(NULL, skewed, tok);
    assert_whoami(c, 1, "erin");
    sw_wsc_free(c);
    c = admitted(NULL, by_hand, tok);
    assert_whoami(c, 1, "frank");
    sw_wsc_free(c);
    free(skewed);
    free(by_hand);
}

Test(jwt, a_valid_jwt_opens_an_event_stream_with_the_auth_parameter_or_a_bearer_token)
{
    const char *users[] = {"bob", "carol"};
    for (int k = 0; k < 2; k++) {
        char *jwt = valid(users[k], 600);
        char q[4200], hdr[4200];
        sw_ssec_t *e;
        if (k == 0) {
            snprintf(q, sizeof(q), "token=tok-jwt-sse-%d&auth=%s", k, jwt);
            e = sw_ssec_open(app->port, q, NULL, NULL);
        } else {
            snprintf(q, sizeof(q), "token=tok-jwt-sse-%d", k);
            snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", jwt);
            e = sw_ssec_open(app->port, q, NULL, hdr);
        }
        json_t *w = sw_ssec_next(e, T_MS);
        cr_assert(w, "the stream opens");
        cr_assert_str_eq(str(w, "type"), "welcome");
        char want[32];
        snprintf(want, sizeof(want), "tok-jwt-sse-%d", k);
        cr_assert_str_eq(str(w, "token"), want);
        char cid[80], ctok[80];
        snprintf(cid, sizeof(cid), "%s", str(w, "conn_id"));
        snprintf(ctok, sizeof(ctok), "%s", str(w, "conn_token"));
        json_decref(w);
        cr_assert_eq(post(cid, ctok,
                          "[{\"type\":\"event\",\"id\":1,\"name\":\"profile.whoami\"},"
                          "{\"type\":\"event\",\"id\":2,\"name\":\"notes.add\",\"payload\":"
                          "{\"text\":\"via sse\"}}]"),
                     202);
        json_t *d = sw_ssec_next(e, T_MS);
        cr_assert(d);
        cr_assert_eq(json_integer_value(json_object_get(d, "id")), 1);
        cr_assert_str_eq(json_string_value(var_in(d, "profile", "user")), users[k]);
        json_decref(d);
        d = sw_ssec_next(e, T_MS);
        cr_assert(d);
        cr_assert_eq(json_integer_value(json_object_get(d, "id")), 2);
        assert_note(d, 1, users[k], "via sse");
        json_decref(d);
        sw_ssec_close(e);
        free(jwt);
    }
}

/* ---- refused ------------------------------------------------------------------ */

struct refusal {
    const char *what;
    char *jwt;          /* NULL: no auth at all */
    const char *reason; /* the message the client gets */
};

/* A token signed with the server's key and `alg` (HS256 unless said). */
#define HS256(...) sign(JWT_ALG_HS256, SECRET, __VA_ARGS__)

/* Every token the hook must refuse, with the reason it gives, into r
 * (room for 32); returns the count. */
static size_t refusals(struct refusal *r)
{
    long now = (long)time(NULL), later = now + 600;
    size_t n = 0;
#define REFUSE(what_, jwt_, reason_) (r[n++] = (struct refusal){(what_), (jwt_), (reason_)})
    REFUSE("expired", HS256("{\"sub\":\"u\",\"exp\":%ld}", now - 60), "token expired");
    REFUSE("not yet valid", HS256("{\"sub\":\"u\",\"exp\":%ld,\"nbf\":%ld}", later, now + 300),
           "token not valid yet");
    REFUSE("issued in the future",
           HS256("{\"sub\":\"u\",\"exp\":%ld,\"iat\":%ld}", later, now + 300),
           "token issued in the future");
    REFUSE("wrong key", sign(JWT_ALG_HS256, OTHER_KEY, "{\"sub\":\"u\",\"exp\":%ld}", later),
           "bad signature");
    REFUSE("alg none", unsigned_token("u", "c2ln"), "alg must be HS256");
    REFUSE("alg none, no signature", unsigned_token("u", ""), "malformed token");
    REFUSE("HS512 with the same key",
           sign(JWT_ALG_HS512, SECRET, "{\"sub\":\"u\",\"exp\":%ld}", later), "alg must be HS256");
    REFUSE("HS384 with another key",
           sign(JWT_ALG_HS384, OTHER_KEY, "{\"sub\":\"u\",\"exp\":%ld}", later),
           "alg must be HS256");
    REFUSE("missing sub", HS256("{\"exp\":%ld}", later), "sub is required");
    REFUSE("numeric sub", HS256("{\"sub\":42,\"exp\":%ld}", later), "sub must be a string");
    REFUSE("empty sub", HS256("{\"sub\":\"\",\"exp\":%ld}", later), "sub is not a valid user id");
    REFUSE("sub with a control character", HS256("{\"sub\":\"a\\nb\",\"exp\":%ld}", later),
           "sub is not a valid user id");
    REFUSE("missing exp", HS256("{\"sub\":\"u\",\"iat\":%ld}", now), "exp is required");
    REFUSE("exp not a number", HS256("{\"sub\":\"u\",\"exp\":\"%ld\"}", later),
           "exp must be a NumericDate");
    REFUSE("claims not an object", hand_signed("[\"sub\",\"u\"]"), "malformed claims");
    REFUSE("garbage", strdup("not-a-jwt"), "malformed token");
    REFUSE("garbage with dots", strdup("eyJhbGciOi.J9.x_y"), "malformed token");
    REFUSE("no JWT", NULL, "a JWT is required");
#undef REFUSE
    cr_assert(n <= 32);
    return n;
}

Test(jwt, bad_tokens_are_refused_over_websocket_with_unauthorized_and_4401)
{
    struct refusal r[32];
    size_t n = refusals(r);
    for (size_t i = 0; i < n; i++) {
        sw_wsc_t *c = ws_client();
        json_t *e = hello_auth(c, "tok-jwt-refused", r[i].jwt);
        cr_assert(e, "%s: an answer", r[i].what);
        cr_assert_str_eq(str(e, "type"), "error", "%s: %s", r[i].what, json_dumps(e, JSON_COMPACT));
        cr_assert_str_eq(str(e, "code"), "unauthorized", "%s", r[i].what);
        cr_assert_str_eq(str(e, "message"), r[i].reason, "%s", r[i].what);
        json_decref(e);
        cr_assert_null(sw_wsc_recv_json(c, T_MS), "%s: nothing after the error", r[i].what);
        cr_assert(sw_wsc_closed(c));
        cr_assert_eq(sw_wsc_close_code(c), 4401, "%s", r[i].what);
        sw_wsc_free(c);
        free(r[i].jwt);
    }
}

Test(jwt, bad_tokens_are_refused_over_sse_with_401_and_a_json_error)
{
    struct refusal r[32];
    size_t n = refusals(r);
    for (size_t i = 0; i < n; i++) {
        for (int bearer = 0; bearer < 2; bearer++) {
            if (!r[i].jwt && bearer)
                continue;
            char path[4300], hdr[4300];
            snprintf(path, sizeof(path), "/_sse?token=tok-jwt-refused%s%s",
                     r[i].jwt && !bearer ? "&auth=" : "", r[i].jwt && !bearer ? r[i].jwt : "");
            snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", r[i].jwt ? r[i].jwt : "");
            char *body = NULL;
            int code = sw_test_http_ex("127.0.0.1", app->port, "GET", path, bearer ? hdr : NULL,
                                       NULL, &body, T_MS);
            cr_assert_eq(code, 401, "%s (%s): %d %s", r[i].what, bearer ? "bearer" : "auth=", code,
                         body);
            json_t *j = json_loads(body, 0, NULL);
            cr_assert(j, "%s: a JSON body: %s", r[i].what, body);
            json_t *err = json_object_get(j, "error");
            cr_assert_str_eq(str(err, "code"), "unauthorized");
            cr_assert_str_eq(str(err, "message"), r[i].reason, "%s", r[i].what);
            json_decref(j);
            free(body);
        }
        free(r[i].jwt);
    }
}

/* ---- tokens and users ----------------------------------------------------------- */

Test(jwt, a_token_bound_to_one_user_is_never_handed_to_another)
{
    char *ja = valid("alice", 600), *jb = valid("bob", 600);
    char tok[65];
    sw_wsc_t *alice = admitted("tok-jwt-shared", ja, tok);
    cr_assert_str_eq(tok, "tok-jwt-shared");
    json_t *d = call(alice, 1, "notes.add", "{\"text\":\"alice's\"}");
    assert_note(d, 1, "alice", "alice's");
    json_decref(d);

    /* bob names alice's token while she is connected, and after she left,
     * over WebSocket and over SSE: a token of his own every time. */
    for (int round = 0; round < 2; round++) {
        sw_wsc_t *bob = admitted("tok-jwt-shared", jb, tok);
        cr_assert_str_neq(tok, "tok-jwt-shared", "round %d", round);
        assert_whoami(bob, 1, "bob");
        d = call(bob, 2, "notes.add", "{\"text\":\"bob's\"}");
        assert_note(d, 1, "bob", "bob's");
        json_decref(d);
        sw_wsc_free(bob);

        char q[4200];
        snprintf(q, sizeof(q), "token=tok-jwt-shared&auth=%s", jb);
        sw_ssec_t *e = sw_ssec_open(app->port, q, NULL, NULL);
        json_t *w = sw_ssec_next(e, T_MS);
        cr_assert_str_eq(str(w, "type"), "welcome");
        cr_assert_str_neq(str(w, "token"), "tok-jwt-shared");
        json_decref(w);
        sw_ssec_close(e);
        if (round == 0) {
            sw_wsc_free(alice);
            usleep(200000);
        }
    }
    /* alice comes back to her token and her note. */
    alice = admitted("tok-jwt-shared", ja, tok);
    cr_assert_str_eq(tok, "tok-jwt-shared");
    d = call(alice, 2, "notes.add", "{\"text\":\"again\"}");
    assert_note(d, 2, "alice", "again");
    cr_assert_str_eq(str(json_array_get(var_in(d, "notes", "items"), 0), "text"), "alice's");
    json_decref(d);
    sw_wsc_free(alice);
    free(ja);
    free(jb);
}

Test(jwt, a_jwt_that_expires_keeps_its_connection_and_opens_no_new_one)
{
    char *jwt = valid("dave", 3);
    long exp = (long)time(NULL) + 3;
    char tok[65];
    sw_wsc_t *c = admitted("tok-jwt-dave", jwt, tok);
    assert_whoami(c, 1, "dave");
    while ((long)time(NULL) < exp)
        usleep(100000);
    json_t *d = call(c, 2, "notes.add", "{\"text\":\"after exp\"}");
    assert_note(d, 1, "dave", "after exp");
    json_decref(d);
    /* A reconnect with the same JWT needs a fresh one. */
    sw_wsc_t *again = ws_client();
    json_t *e = hello_auth(again, "tok-jwt-dave", jwt);
    cr_assert_str_eq(str(e, "code"), "unauthorized");
    cr_assert_str_eq(str(e, "message"), "token expired");
    json_decref(e);
    sw_wsc_free(again);
    sw_wsc_free(c);
    free(jwt);
}

Test(jwt, audience_and_issuer_are_checked_when_configured)
{
    setenv("STATEWIRE_JWT_AUDIENCE", "statewire", 1);
    setenv("STATEWIRE_JWT_ISSUER", "https://app.example", 1);
    const char *extra[] = {"--app", SW_TEST_JWT_APP, NULL};
    sw_test_server_t *strict = sw_test_server_start(0, sw_test_redis_url(redis), 1, extra);
    cr_assert(strict);
    long exp = (long)time(NULL) + 600;
    struct {
        char *jwt;
        const char *reason; /* NULL: admitted */
    } cases[] = {
        {sign(JWT_ALG_HS256, SECRET,
              "{\"sub\":\"u\",\"exp\":%ld,\"aud\":\"statewire\",\"iss\":\"https://app.example\"}",
              exp),
         NULL},
        {sign(JWT_ALG_HS256, SECRET,
              "{\"sub\":\"u\",\"exp\":%ld,\"aud\":[\"x\",\"statewire\"],\"iss\":\"https://"
              "app.example\"}",
              exp),
         NULL},
        {sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"u\",\"exp\":%ld,\"iss\":\"https://app.example\"}",
              exp),
         "wrong audience"},
        {sign(JWT_ALG_HS256, SECRET,
              "{\"sub\":\"u\",\"exp\":%ld,\"aud\":\"other\",\"iss\":\"https://app.example\"}", exp),
         "wrong audience"},
        {sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"u\",\"exp\":%ld,\"aud\":\"statewire\"}", exp),
         "wrong issuer"},
        {sign(JWT_ALG_HS256, SECRET,
              "{\"sub\":\"u\",\"exp\":%ld,\"aud\":\"statewire\",\"iss\":\"https://evil.example\"}",
              exp),
         "wrong issuer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sw_wsc_t *c = sw_wsc_connect("127.0.0.1", strict->port, "/_event", T_MS);
        cr_assert(c);
        json_t *m = hello_auth(c, NULL, cases[i].jwt);
        cr_assert(m);
        if (cases[i].reason) {
            cr_assert_str_eq(str(m, "code"), "unauthorized", "case %zu", i);
            cr_assert_str_eq(str(m, "message"), cases[i].reason, "case %zu", i);
        } else {
            cr_assert_str_eq(str(m, "type"), "welcome", "case %zu: %s", i,
                             json_dumps(m, JSON_COMPACT));
        }
        json_decref(m);
        sw_wsc_free(c);
        free(cases[i].jwt);
    }
    sw_test_server_stop(strict, SIGTERM, 5000);
}

/* ---- the key ------------------------------------------------------------------ */

/* Run the server with the app and STATEWIRE_JWT_SECRET = secret (NULL:
 * unset); it must exit non-zero at once, saying `want` on stderr. */
static void assert_refuses_to_start(const char *secret, const char *want)
{
    if (secret)
        setenv("STATEWIRE_JWT_SECRET", secret, 1);
    else
        unsetenv("STATEWIRE_JWT_SECRET");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "timeout 20 %s --host 127.0.0.1 --port %d --app %s --log-level info 2>&1",
             SW_TEST_SERVER_BIN, sw_test_free_port(), SW_TEST_JWT_APP);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 124,
              "the server must refuse to start: status %d\n%s", st, out);
    cr_assert(strstr(out, want), "stderr says \"%s\":\n%s", want, out);
}

Test(jwt_key, the_app_refuses_to_start_without_a_key_of_at_least_32_bytes)
{
    assert_refuses_to_start(NULL, "jwt_auth: STATEWIRE_JWT_SECRET is not set");
    assert_refuses_to_start("", "jwt_auth: STATEWIRE_JWT_SECRET is not set");
    assert_refuses_to_start("0123456789abcdef0123456789abcde",
                            "jwt_auth: STATEWIRE_JWT_SECRET is 31 bytes; an HS256 key needs at "
                            "least 32");
}
