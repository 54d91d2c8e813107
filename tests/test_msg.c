#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "proto/msg.h"

static sw_errc_t dec(const char *s, sw_msg_t *m, char *why)
{
    return sw_msg_decode(s, strlen(s), m, why, 128);
}

/* Decode s, expect code `want` and, if `id` >= -1, out->id == id; the
 * reason must be non-empty. Releases the message. */
static void expect_err(const char *s, sw_errc_t want, int64_t id, const char *why_has)
{
    sw_msg_t m;
    char why[128] = "unset";
    sw_errc_t rc = dec(s, &m, why);
    cr_assert_eq(rc, want, "%s: got %d (%s), want %d", s, rc, why, want);
    cr_assert_gt(strlen(why), 0);
    cr_assert_eq(m.id, id, "%s: id %lld", s, (long long)m.id);
    cr_assert_null(m.payload);
    cr_assert_null(m.router);
    if (why_has)
        cr_assert(strstr(why, why_has), "%s: why \"%s\" lacks \"%s\"", s, why, why_has);
    sw_msg_destroy(&m);
    sw_msg_destroy(&m); /* idempotent */
}

/* ---- decode: hello ------------------------------------------------------ */

Test(msg, hello_without_token)
{
    sw_msg_t m;
    cr_assert_eq(dec("{\"type\":\"hello\"}", &m, NULL), SW_ERRC_NONE);
    cr_assert_eq(m.type, SW_MSG_HELLO);
    cr_assert_str_eq(m.token, "");
    cr_assert_eq(m.has_resume, 0);
    sw_msg_destroy(&m);

    cr_assert_eq(dec("{\"type\":\"hello\",\"token\":\"\",\"future\":[1]}", &m, NULL), 0);
    cr_assert_str_eq(m.token, "");
    sw_msg_destroy(&m);
}

Test(msg, hello_with_token_and_resume)
{
    sw_msg_t m;
    char why[128];
    cr_assert_eq(dec("{\"type\":\"hello\",\"token\":\"Ab_9-z\"}", &m, why), 0);
    cr_assert_str_eq(m.token, "Ab_9-z");
    cr_assert_eq(m.has_resume, 0);
    sw_msg_destroy(&m);

    char tok64[65];
    memset(tok64, 'x', 64);
    tok64[64] = '\0';
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"resume\":{\"conn_id\":\"c1\",\"conn_token\":\"k-1_\",\"last_seq\":12},"
             "\"token\":\"%s\",\"type\":\"hello\"}",
             tok64);
    cr_assert_eq(dec(buf, &m, why), 0, "%s", why);
    cr_assert_str_eq(m.token, tok64);
    cr_assert_eq(m.has_resume, 1);
    cr_assert_str_eq(m.conn_id, "c1");
    cr_assert_str_eq(m.conn_token, "k-1_");
    cr_assert_eq(m.last_seq, 12);
    sw_msg_destroy(&m);

    cr_assert_eq(
        dec("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\"}}", &m, why),
        0);
    cr_assert_eq(m.has_resume, 1);
    cr_assert_eq(m.last_seq, 0);
    sw_msg_destroy(&m);
}

Test(msg, hello_auth)
{
    sw_msg_t m;
    char why[128];
    cr_assert_eq(dec("{\"type\":\"hello\",\"auth\":\"eyJ.a-b_c\\u00e9\"}", &m, why), 0, "%s", why);
    cr_assert_str_eq(m.auth, "eyJ.a-b_c\xc3\xa9");
    sw_msg_destroy(&m);
    cr_assert_null(m.auth);
    cr_assert_eq(dec("{\"type\":\"hello\"}", &m, why), 0);
    cr_assert_null(m.auth, "absent: NULL");
    sw_msg_destroy(&m);
    cr_assert_eq(dec("{\"type\":\"hello\",\"auth\":\"\"}", &m, why), 0);
    cr_assert_str_eq(m.auth, "", "empty is kept: the hook decides");
    sw_msg_destroy(&m);
}

Test(msg, hello_errors)
{
    char tok65[128];
    snprintf(tok65, sizeof(tok65), "{\"type\":\"hello\",\"token\":\"%065d\"}", 0);
    expect_err(tok65, SW_ERRC_BAD_MESSAGE, -1, "hello.token");
    expect_err("{\"type\":\"hello\",\"token\":\"a b\"}", SW_ERRC_BAD_MESSAGE, -1, "hello.token");
    expect_err("{\"type\":\"hello\",\"token\":\"a.b\"}", SW_ERRC_BAD_MESSAGE, -1, "hello.token");
    expect_err("{\"type\":\"hello\",\"token\":5}", SW_ERRC_BAD_MESSAGE, -1,
               "hello.token must be a string");
    expect_err("{\"type\":\"hello\",\"token\":null}", SW_ERRC_BAD_MESSAGE, -1, "hello.token");
    expect_err("{\"type\":\"hello\",\"resume\":[]}", SW_ERRC_BAD_MESSAGE, -1, "hello.resume");
    expect_err("{\"type\":\"hello\",\"auth\":5}", SW_ERRC_BAD_MESSAGE, -1, "hello.auth");
    expect_err("{\"type\":\"hello\",\"auth\":\"x\",\"resume\":[]}", SW_ERRC_BAD_MESSAGE, -1,
               "hello.resume");
    {
        size_t n = SW_AUTH_MAX + 1;
        char *big = malloc(n + 64);
        int k = snprintf(big, n + 64, "{\"type\":\"hello\",\"auth\":\"");
        memset(big + k, 'a', n);
        snprintf(big + k + n, 64, "\"}");
        expect_err(big, SW_ERRC_BAD_MESSAGE, -1, "hello.auth");
        free(big);
    }
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_token\":\"k\"}}", SW_ERRC_BAD_MESSAGE, -1,
               "hello.resume.conn_id");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\"}}", SW_ERRC_BAD_MESSAGE, -1,
               "hello.resume.conn_token");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"\",\"conn_token\":\"k\"}}",
               SW_ERRC_BAD_MESSAGE, -1, "hello.resume.conn_id");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k/\"}}",
               SW_ERRC_BAD_MESSAGE, -1, "hello.resume.conn_token");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":1,\"conn_token\":\"k\"}}",
               SW_ERRC_BAD_MESSAGE, -1, "hello.resume.conn_id must be a string");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\","
               "\"last_seq\":-1}}",
               SW_ERRC_BAD_MESSAGE, -1, "last_seq");
    expect_err("{\"type\":\"hello\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\","
               "\"last_seq\":1.5}}",
               SW_ERRC_BAD_MESSAGE, -1, "last_seq");
}

/* ---- decode: event ------------------------------------------------------ */

Test(msg, event_minimal)
{
    sw_msg_t m;
    cr_assert_eq(dec("{\"type\":\"event\",\"name\":\"hydrate\"}", &m, NULL), 0);
    cr_assert_eq(m.type, SW_MSG_EVENT);
    cr_assert_eq(m.id, -1);
    cr_assert_str_eq(m.name, "hydrate");
    cr_assert(json_is_object(m.payload));
    cr_assert_eq(json_object_size(m.payload), 0);
    cr_assert_null(m.router);
    sw_msg_destroy(&m);
    cr_assert_null(m.payload);
}

Test(msg, event_full)
{
    sw_msg_t m;
    char why[128];
    const char *s = "{\"type\":\"event\",\"id\":9007199254740991,\"name\":\"counter.add\","
                    "\"payload\":{\"amount\":3},\"extra\":true,"
                    "\"router\":{\"path\":\"/room/a\",\"query\":{\"x\":\"1\"},\"junk\":1}}";
    cr_assert_eq(dec(s, &m, why), 0, "%s", why);
    cr_assert_eq(m.id, 9007199254740991LL);
    cr_assert_str_eq(m.name, "counter.add");
    cr_assert_eq(json_integer_value(json_object_get(m.payload, "amount")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(m.router, "path")), "/room/a");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(m.router, "query"), "x")),
                     "1");
    cr_assert_null(json_object_get(m.router, "junk"));
    sw_msg_destroy(&m);

    cr_assert_eq(
        dec("{\"type\":\"event\",\"id\":0,\"name\":\"a\",\"router\":{\"path\":\"/\"}}", &m, why), 0,
        "%s", why);
    cr_assert_eq(m.id, 0);
    cr_assert_str_eq(json_string_value(json_object_get(m.router, "path")), "/");
    cr_assert_null(json_object_get(m.router, "query"));
    sw_msg_destroy(&m);

    char name[200];
    memset(name, 'n', sizeof(name));
    char buf[300];
    snprintf(buf, sizeof(buf), "{\"type\":\"event\",\"name\":\"%.*s\"}", SW_EVENT_NAME_MAX, name);
    cr_assert_eq(dec(buf, &m, why), 0, "%s", why);
    cr_assert_eq(strlen(m.name), SW_EVENT_NAME_MAX);
    sw_msg_destroy(&m);
}

Test(msg, not_json_or_not_object)
{
    expect_err("", SW_ERRC_BAD_JSON, -1, NULL);
    expect_err("{\"type\":", SW_ERRC_BAD_JSON, -1, NULL);
    expect_err("{\"type\":\"event\",\"id\":1,\"name\":\"a\"} x", SW_ERRC_BAD_JSON, -1, NULL);
    expect_err("{\"type\":\"event\",\"type\":\"event\",\"name\":\"a\"}", SW_ERRC_BAD_JSON, -1,
               NULL);
    expect_err("[1,2]", SW_ERRC_BAD_MESSAGE, -1, "object");
    expect_err("42", SW_ERRC_BAD_MESSAGE, -1, "object");
    expect_err("\"hello\"", SW_ERRC_BAD_MESSAGE, -1, "object");
    expect_err("null", SW_ERRC_BAD_MESSAGE, -1, "object");
    /* Not NUL-terminated: the length is what counts. */
    sw_msg_t m;
    const char *s = "{\"type\":\"hello\"}garbage";
    cr_assert_eq(sw_msg_decode(s, 16, &m, NULL, 0), SW_ERRC_NONE);
    sw_msg_destroy(&m);
}

Test(msg, type_errors)
{
    expect_err("{}", SW_ERRC_BAD_MESSAGE, -1, "type");
    expect_err("{\"type\":7}", SW_ERRC_BAD_MESSAGE, -1, "type must be a string");
    expect_err("{\"type\":\"welcome\"}", SW_ERRC_BAD_MESSAGE, -1, "unknown type");
    expect_err("{\"type\":\"EVENT\",\"id\":3,\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE, -1,
               "unknown type");
}

Test(msg, event_id_errors)
{
    expect_err("{\"type\":\"event\",\"id\":-1,\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE, -1,
               "event.id");
    expect_err("{\"type\":\"event\",\"id\":9007199254740992,\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE,
               -1, "event.id");
    expect_err("{\"type\":\"event\",\"id\":1.0,\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE, -1,
               "event.id");
    expect_err("{\"type\":\"event\",\"id\":\"7\",\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE, -1,
               "event.id");
    expect_err("{\"type\":\"event\",\"id\":null,\"name\":\"a\"}", SW_ERRC_BAD_MESSAGE, -1,
               "event.id");
}

Test(msg, event_errors_carry_id)
{
    expect_err("{\"type\":\"event\",\"id\":7}", SW_ERRC_BAD_MESSAGE, 7, "event.name");
    expect_err("{\"type\":\"event\",\"id\":7,\"name\":3}", SW_ERRC_BAD_MESSAGE, 7,
               "event.name must be a string");
    expect_err("{\"type\":\"event\",\"id\":7,\"name\":\"\"}", SW_ERRC_BAD_MESSAGE, 7, "event.name");
    expect_err("{\"type\":\"event\",\"id\":7,\"name\":\"a-b\"}", SW_ERRC_BAD_MESSAGE, 7,
               "event.name");
    expect_err("{\"type\":\"event\",\"id\":7,\"name\":\"a b\"}", SW_ERRC_BAD_MESSAGE, 7,
               "event.name");
    char name[200];
    memset(name, 'n', sizeof(name));
    char buf[300];
    snprintf(buf, sizeof(buf), "{\"type\":\"event\",\"id\":7,\"name\":\"%.*s\"}",
             SW_EVENT_NAME_MAX + 1, name);
    expect_err(buf, SW_ERRC_BAD_MESSAGE, 7, "event.name");

    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":\"/\"}", SW_ERRC_BAD_MESSAGE,
               8, "event.router must be an object");
    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{}}", SW_ERRC_BAD_MESSAGE, 8,
               "event.router.path");
    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{\"path\":1}}",
               SW_ERRC_BAD_MESSAGE, 8, "event.router.path must be a string");
    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{\"path\":\"room\"}}",
               SW_ERRC_BAD_MESSAGE, 8, "event.router.path");
    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{\"path\":\"\"}}",
               SW_ERRC_BAD_MESSAGE, 8, "event.router.path");
    expect_err("{\"type\":\"event\",\"id\":8,\"name\":\"a\","
               "\"router\":{\"path\":\"/\",\"query\":\"x=1\"}}",
               SW_ERRC_BAD_MESSAGE, 8, "event.router.query");

    /* path bound: 2048 bytes ok, 2049 refused */
    char *big = sw_xmalloc(2200);
    char path[2050];
    path[0] = '/';
    memset(path + 1, 'p', 2048);
    path[2048] = '\0';
    snprintf(big, 2200, "{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{\"path\":\"%s\"}}",
             path);
    sw_msg_t m;
    cr_assert_eq(dec(big, &m, NULL), 0);
    sw_msg_destroy(&m);
    path[2048] = 'p';
    path[2049] = '\0';
    snprintf(big, 2200, "{\"type\":\"event\",\"id\":8,\"name\":\"a\",\"router\":{\"path\":\"%s\"}}",
             path);
    expect_err(big, SW_ERRC_BAD_MESSAGE, 8, "event.router.path");
    free(big);
}

Test(msg, bad_payload)
{
    expect_err("{\"type\":\"event\",\"id\":5,\"name\":\"a\",\"payload\":[]}", SW_ERRC_BAD_PAYLOAD,
               5, "event.payload");
    expect_err("{\"type\":\"event\",\"id\":5,\"name\":\"a\",\"payload\":null}", SW_ERRC_BAD_PAYLOAD,
               5, "event.payload");
    expect_err("{\"type\":\"event\",\"name\":\"a\",\"payload\":1,\"router\":{\"path\":\"/x\"}}",
               SW_ERRC_BAD_PAYLOAD, -1, "event.payload");
}

/* ---- encode ------------------------------------------------------------- */

/* Parse the single message in b, check its keys are exactly `keys` in
 * this order, and return it (new reference). */
static json_t *parse_keys(sw_buf_t *b, const char *const *keys, size_t nkeys)
{
    cr_assert_eq(strlen(b->data), b->len);
    cr_assert_null(strchr(b->data, '\n'));
    cr_assert_null(strstr(b->data, ": "), "not compact: %s", b->data);
    json_error_t e;
    json_t *v = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null(v, "%s: %s", b->data, e.text);
    cr_assert_eq(json_object_size(v), nkeys, "%s", b->data);
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        cr_assert_str_eq(key, keys[i], "%s: key %zu", b->data, i);
        i++;
    }
    return v;
}

#define KEYS(...)                                                                                  \
    (const char *const[]){__VA_ARGS__}, SW_ARRAY_SIZE(((const char *const[]){__VA_ARGS__}))

Test(msg, encode_welcome)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t1", "c1", "k1", 0, 0), 0);
    cr_assert_str_eq(
        b.data, "{\"type\":\"welcome\",\"token\":\"t1\",\"conn_id\":\"c1\",\"conn_token\":\"k1\"}");
    json_t *v = parse_keys(&b, KEYS("type", "token", "conn_id", "conn_token"));
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t\"1", "c1", "k1", 1, 12), 0);
    v = parse_keys(&b, KEYS("type", "token", "conn_id", "conn_token", "resumed", "seq"));
    cr_assert_str_eq(json_string_value(json_object_get(v, "token")), "t\"1");
    cr_assert(json_is_true(json_object_get(v, "resumed")));
    cr_assert_eq(json_integer_value(json_object_get(v, "seq")), 12);
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t", "c", "k", 0, 3), 0);
    v = parse_keys(&b, KEYS("type", "token", "conn_id", "conn_token", "seq"));
    json_decref(v);

    /* Bound: nothing appended. */
    sw_buf_t small;
    sw_buf_init(&small, 20);
    cr_assert_eq(sw_msg_encode_welcome(&small, "t", "c", "k", 0, 0), SW_ETOOLARGE);
    cr_assert_eq(small.len, 0);
    sw_buf_destroy(&small);
    sw_buf_destroy(&b);
}

Test(msg, encode_delta)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    json_t *delta =
        json_pack("{s:{s:i},s:{s:s}}", "counter", "count", 4, "chat", "t", "\xc3\xa9\n\"");
    json_t *events = json_pack("[{s:s}]", "name", "toast");
    json_t *empty = json_array();

    cr_assert_eq(sw_msg_encode_delta(&b, 13, 7, delta, events, 1), 0);
    json_t *v = parse_keys(&b, KEYS("type", "seq", "id", "delta", "events", "full"));
    cr_assert_str_eq(json_string_value(json_object_get(v, "type")), "delta");
    cr_assert_eq(json_integer_value(json_object_get(v, "seq")), 13);
    cr_assert_eq(json_integer_value(json_object_get(v, "id")), 7);
    cr_assert(json_equal(json_object_get(v, "delta"), delta));
    cr_assert(json_equal(json_object_get(v, "events"), events));
    cr_assert(json_is_true(json_object_get(v, "full")));
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_delta(&b, 14, -1, delta, empty, 0), 0);
    v = parse_keys(&b, KEYS("type", "seq", "delta"));
    cr_assert(json_equal(json_object_get(v, "delta"), delta));
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_delta(&b, 1, 0, delta, NULL, 0), 0);
    v = parse_keys(&b, KEYS("type", "seq", "id", "delta"));
    cr_assert_eq(json_integer_value(json_object_get(v, "id")), 0);
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_delta(&b, 2, -1, NULL, NULL, 0), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"delta\",\"seq\":2,\"delta\":{}}");

    /* borrowed values keep their references */
    cr_assert_eq(delta->refcount, 1);
    cr_assert_eq(events->refcount, 1);

    cr_assert_eq(sw_msg_encode_delta(&b, 2, -1, events, NULL, 0), SW_EINVAL);
    cr_assert_eq(sw_msg_encode_delta(&b, 2, -1, delta, delta, 0), SW_EINVAL);
    json_decref(delta);
    json_decref(events);
    json_decref(empty);
    sw_buf_destroy(&b);
}

Test(msg, encode_error)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_msg_encode_error(&b, 7, SW_ERRC_UNKNOWN_EVENT, "no handler \"x\"\n"), 0);
    json_t *v = parse_keys(&b, KEYS("type", "id", "code", "message"));
    cr_assert_str_eq(json_string_value(json_object_get(v, "type")), "error");
    cr_assert_eq(json_integer_value(json_object_get(v, "id")), 7);
    cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "unknown_event");
    cr_assert_str_eq(json_string_value(json_object_get(v, "message")), "no handler \"x\"\n");
    json_decref(v);

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_error(&b, -1, SW_ERRC_BAD_JSON, ""), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"error\",\"code\":\"bad_json\"}");
    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_error(&b, -1, SW_ERRC_BAD_JSON, NULL), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"error\",\"code\":\"bad_json\"}");

    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_error(&b, 1, SW_ERRC_NONE, "x"), SW_EINVAL);
    cr_assert_eq(sw_msg_encode_error(&b, 1, SW_ERRC__COUNT, "x"), SW_EINVAL);
    cr_assert_eq(sw_msg_encode_error(&b, 1, SW_ERRC_BAD_JSON, "bad \xff utf8"), SW_EINVAL);
    cr_assert_eq(b.len, 0);
    sw_buf_destroy(&b);
}

Test(msg, every_error_code)
{
    static const char *const core[] = {"bad_json",     "bad_message",   "unknown_event",
                                       "bad_payload",  "handler_error", "too_large",
                                       "rate_limited", "bad_resume",    "state_unavailable",
                                       "unauthorized", "cancelled"};
    cr_assert_eq(SW_ERRC__COUNT - 1, (int)SW_ARRAY_SIZE(core));
    cr_assert_str_eq(sw_errc_name(SW_ERRC_NONE), "");
    cr_assert_eq(sw_errc_parse(""), SW_ERRC_NONE);
    cr_assert_eq(sw_errc_parse("nope"), SW_ERRC_NONE);
    cr_assert_eq(sw_errc_parse("BAD_JSON"), SW_ERRC_NONE);
    for (int c = 1; c < SW_ERRC__COUNT; c++) {
        const char *name = sw_errc_name((sw_errc_t)c);
        cr_assert_not_null(name);
        cr_assert_gt(strlen(name), 0);
        cr_assert_str_eq(name, core[c - 1]);
        for (int d = 1; d < c; d++)
            cr_assert_str_neq(name, sw_errc_name((sw_errc_t)d));
        cr_assert_eq(sw_errc_parse(name), (sw_errc_t)c);

        sw_buf_t b;
        sw_buf_init(&b, 0);
        cr_assert_eq(sw_msg_encode_error(&b, c, (sw_errc_t)c, "m"), 0);
        json_t *v = parse_keys(&b, KEYS("type", "id", "code", "message"));
        cr_assert_str_eq(json_string_value(json_object_get(v, "code")), core[c - 1]);
        json_decref(v);
        sw_buf_destroy(&b);
    }
}

/* ---- encode: exact bytes, split delta, the value writer ------------------- */

/* What the encoders wrote when they built a jansson object per message and
 * dumped it with JSON_COMPACT: the bytes must not change. */
Test(msg, encode_exact_bytes)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t\"1", "c/1", "k\xc3\xa9", 1, 12), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"welcome\",\"token\":\"t\\\"1\",\"conn_id\":\"c/1\","
                             "\"conn_token\":\"k\xc3\xa9\",\"resumed\":true,\"seq\":12}");
    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t", "c", "k", 0, 9223372036854775807ull), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"welcome\",\"token\":\"t\",\"conn_id\":\"c\","
                             "\"conn_token\":\"k\",\"seq\":9223372036854775807}");
    cr_assert_eq(sw_msg_encode_welcome(&b, "t", "c", "k", 0, 9223372036854775808ull), SW_EINVAL);
    cr_assert_eq(sw_msg_encode_welcome(&b, "t\xff", "c", "k", 0, 1), SW_EINVAL);
    cr_assert_eq(b.len, strlen(b.data), "unchanged after errors");

    sw_buf_reset(&b);
    json_t *delta =
        json_pack("{s:{s:I,s:b,s:n},s:[i,s,f]}", "counter", "count",
                  (json_int_t)-9223372036854775807 - 1, "on", 1, "x", "list", 1, "a\tb\x01", 0.5);
    json_t *events = json_pack("[{s:s,s:{}}]", "name", "toast", "args");
    cr_assert_eq(sw_msg_encode_delta(&b, 3, 42, delta, events, 1), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"delta\",\"seq\":3,\"id\":42,\"delta\":{\"counter\":{"
                             "\"count\":-9223372036854775808,\"on\":true,\"x\":null},\"list\":[1,"
                             "\"a\\tb\\u0001\",0.5]},\"events\":[{\"name\":\"toast\",\"args\":{}}],"
                             "\"full\":true}");
    sw_buf_reset(&b);
    cr_assert_eq(sw_msg_encode_error(&b, 0, SW_ERRC_TOO_LARGE, "over \"64\" KiB\n"), 0);
    cr_assert_str_eq(b.data, "{\"type\":\"error\",\"id\":0,\"code\":\"too_large\","
                             "\"message\":\"over \\\"64\\\" KiB\\n\"}");
    json_decref(delta);
    json_decref(events);
    sw_buf_destroy(&b);
}

/* head(seq) + tail == encode_delta(seq, -1, ...) for the given values. */
static void check_split(uint64_t seq, const json_t *delta, const json_t *events, int full)
{
    sw_buf_t whole, tail;
    sw_buf_init(&whole, 0);
    sw_buf_init(&tail, 0);
    char head[SW_MSG_DELTA_HEAD_MAX];
    size_t hlen = sw_msg_delta_head(head, sizeof(head), seq);
    cr_assert_gt(hlen, 0);
    cr_assert_eq(strlen(head), hlen);
    cr_assert_eq(sw_msg_encode_delta(&whole, seq, -1, delta, events, full), 0);
    cr_assert_eq(sw_msg_encode_delta_tail(&tail, delta, events, full), 0);
    cr_assert_eq(hlen + tail.len, whole.len, "%s | %s vs %s", head, tail.data, whole.data);
    cr_assert_eq(memcmp(whole.data, head, hlen), 0, "%s vs %s", head, whole.data);
    cr_assert_eq(memcmp(whole.data + hlen, tail.data, tail.len), 0, "%s vs %s", tail.data,
                 whole.data);
    sw_buf_destroy(&whole);
    sw_buf_destroy(&tail);
}

Test(msg, delta_head_plus_tail_is_the_delta)
{
    json_t *delta = json_pack("{s:{s:i},s:{s:[s,s]}}", "counter", "count", 7, "chat", "messages",
                              "h\xc3\xa9llo", "\"q\"");
    json_t *empty_obj = json_object();
    json_t *events = json_pack("[{s:s},i]", "name", "redirect", 3);
    json_t *no_events = json_array();
    const uint64_t seqs[] = {0, 1, 9, 10, 99, 100, 123456789, 9223372036854775807ull};
    const json_t *deltas[] = {NULL, empty_obj, delta};
    const json_t *evs[] = {NULL, no_events, events};
    for (size_t i = 0; i < SW_ARRAY_SIZE(seqs); i++)
        for (size_t d = 0; d < SW_ARRAY_SIZE(deltas); d++)
            for (size_t e = 0; e < SW_ARRAY_SIZE(evs); e++)
                for (int full = 0; full < 2; full++)
                    check_split(seqs[i], deltas[d], evs[e], full);

    /* The head alone. */
    char head[SW_MSG_DELTA_HEAD_MAX];
    cr_assert_eq(sw_msg_delta_head(head, sizeof(head), 17), 24);
    cr_assert_str_eq(head, "{\"type\":\"delta\",\"seq\":17");
    cr_assert_eq(sw_msg_delta_head(head, sizeof(head), 9223372036854775807ull), 41);
    cr_assert_eq(sw_msg_delta_head(head, sizeof(head), 9223372036854775808ull), 0);
    strcpy(head, "untouched");
    cr_assert_eq(sw_msg_delta_head(head, 24, 17), 0, "no room for the NUL");
    cr_assert_str_eq(head, "untouched");
    cr_assert_eq(sw_msg_delta_head(head, 25, 17), 24);

    /* The tail: invalid input and the bound leave out unchanged. */
    sw_buf_t t;
    sw_buf_init(&t, 0);
    sw_buf_append_str(&t, "keep");
    cr_assert_eq(sw_msg_encode_delta_tail(&t, events, NULL, 0), SW_EINVAL);
    cr_assert_eq(sw_msg_encode_delta_tail(&t, delta, delta, 0), SW_EINVAL);
    cr_assert_str_eq(t.data, "keep");
    sw_buf_destroy(&t);
    sw_buf_init(&t, 30);
    sw_buf_append_str(&t, "keep");
    cr_assert_eq(sw_msg_encode_delta_tail(&t, delta, NULL, 1), SW_ETOOLARGE);
    cr_assert_str_eq(t.data, "keep");
    cr_assert_eq(t.len, 4);
    cr_assert_eq(sw_msg_encode_delta_tail(&t, NULL, NULL, 0), 0);
    cr_assert_str_eq(t.data, "keep,\"delta\":{}}");
    sw_buf_destroy(&t);

    json_decref(delta);
    json_decref(empty_obj);
    json_decref(events);
    json_decref(no_events);
}

/* The delta value as encoded: the bytes between ,"delta": and the final }. */
static char *encoded_value(const json_t *delta)
{
    sw_buf_t t;
    sw_buf_init(&t, 0);
    cr_assert_eq(sw_msg_encode_delta_tail(&t, delta, NULL, 0), 0);
    cr_assert(t.len >= 10 && memcmp(t.data, ",\"delta\":", 9) == 0 && t.data[t.len - 1] == '}');
    t.data[t.len - 1] = '\0';
    char *v = strdup(t.data + 9);
    sw_buf_destroy(&t);
    return v;
}

static void check_like_jansson(const json_t *delta)
{
    char *want = json_dumps(delta, JSON_COMPACT);
    cr_assert_not_null(want);
    char *got = encoded_value(delta);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
}

/* A pseudo-random JSON value (fixed seed: reproducible). */
static json_t *random_value(unsigned *seed, int depth)
{
    static const char *const strs[] = {"",
                                       "a",
                                       "\"",
                                       "\\",
                                       "/",
                                       "\b\f\n\r\t",
                                       "\x01\x1f\x7f",
                                       "caf\xc3\xa9",
                                       "\xe2\x82\xac",
                                       "\xf0\x9f\x98\x80",
                                       "\xef\xbf\xbf",
                                       "mixed \"q\" \\ \xc3\xa9\n"};
    static const double reals[] = {0.0,    -0.0, 0.5,          1.0,  -1.5,  1e300,
                                   1e-300, 0.1,  123456789.25, 1e21, 3.0e-5};
    int k = (int)(rand_r(seed) % (depth < 4 ? 9 : 6));
    switch (k) {
    case 0:
        return json_integer((json_int_t)rand_r(seed) * (rand_r(seed) % 2 ? -1 : 1) *
                            (json_int_t)rand_r(seed));
    case 1:
        return json_string(strs[rand_r(seed) % SW_ARRAY_SIZE(strs)]);
    case 2:
        return json_real(reals[rand_r(seed) % SW_ARRAY_SIZE(reals)]);
    case 3:
        return rand_r(seed) % 2 ? json_true() : json_false();
    case 4:
        return json_null();
    case 5:
        return json_stringn("nul\0in", 6);
    case 6:
    case 7: {
        json_t *o = json_object();
        int n = (int)(rand_r(seed) % 5);
        for (int i = 0; i < n; i++) {
            char key[32];
            snprintf(key, sizeof(key), "%s%d", strs[rand_r(seed) % SW_ARRAY_SIZE(strs)], i);
            json_object_set_new(o, key, random_value(seed, depth + 1));
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        int n = (int)(rand_r(seed) % 5);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, random_value(seed, depth + 1));
        return a;
    }
    }
}

Test(msg, values_written_as_jansson_writes_them)
{
    unsigned seed = 12345;
    for (int i = 0; i < 500; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "v", random_value(&seed, 0));
        json_object_set_new(d, "w", random_value(&seed, 0));
        check_like_jansson(d);
        json_decref(d);
    }
    /* Every control character and the integer extremes. */
    char ctl[33];
    for (int c = 1; c < 32; c++)
        ctl[c - 1] = (char)c;
    ctl[31] = '\0';
    json_t *d =
        json_pack("{s:s,s:I,s:I,s:[]}", ctl, ctl, "min", (json_int_t)-9223372036854775807 - 1,
                  "max", (json_int_t)9223372036854775807, "e");
    check_like_jansson(d);
    json_decref(d);
}

Test(msg, invalid_values_refused)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_buf_append_str(&b, "x");
    static const char *const bad[] = {
        "\xff", "\xc0\x80", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "ok\x80"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        json_t *d = json_object();
        json_object_set_new(d, "s", json_stringn_nocheck(bad[i], strlen(bad[i])));
        cr_assert_eq(sw_msg_encode_delta(&b, 1, 2, d, NULL, 0), SW_EINVAL, "value %zu", i);
        json_decref(d);
        d = json_object();
        json_object_set_new_nocheck(d, bad[i], json_true());
        cr_assert_eq(sw_msg_encode_delta(&b, 1, 2, d, NULL, 0), SW_EINVAL, "key %zu", i);
        json_decref(d);
    }
    /* A cycle ends at the depth bound instead of recursing forever. */
    json_t *d = json_object(), *arr = json_array();
    json_object_set(d, "a", arr);
    json_array_append(arr, d);
    cr_assert_eq(sw_msg_encode_delta(&b, 1, -1, d, NULL, 0), SW_EINVAL);
    json_array_clear(arr);
    json_decref(arr);
    json_decref(d);
    cr_assert_str_eq(b.data, "x");
    cr_assert_eq(b.len, 1);
    sw_buf_destroy(&b);
}

/* A message already parsed (one element of a POST /_event body) decodes
 * as its text does: same fields, same refusals. */
Test(msg, decode_json_matches_text)
{
    static const char *cases[] = {
        "{\"type\":\"event\",\"id\":7,\"name\":\"counter.increment\",\"payload\":{\"by\":2},"
        "\"router\":{\"path\":\"/room/a\"}}",
        "{\"type\":\"hello\",\"token\":\"tok-1\",\"resume\":{\"conn_id\":\"c1\",\"conn_token\":"
        "\"k1\","
        "\"last_seq\":4}}",
        "{\"type\":\"cancel\",\"id\":9}",
        "{\"type\":\"event\",\"id\":3,\"name\":\"a.b\",\"payload\":5}",
        "{\"type\":\"event\",\"id\":-1,\"name\":\"a.b\"}",
        "{\"type\":\"nope\"}",
        "[1,2]",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(cases); i++) {
        sw_msg_t a, b;
        char wa[256], wb[256];
        sw_errc_t ea = sw_msg_decode(cases[i], strlen(cases[i]), &a, wa, sizeof(wa));
        json_t *root = json_loads(cases[i], JSON_DECODE_ANY, NULL);
        cr_assert_not_null(root);
        sw_errc_t eb = sw_msg_decode_json(root, &b, wb, sizeof(wb));
        json_decref(root); /* b keeps what it needs */
        cr_assert_eq(ea, eb, "case %zu: %d vs %d", i, ea, eb);
        cr_assert_eq(a.id, b.id, "case %zu", i);
        if (ea == SW_ERRC_NONE) {
            cr_assert_eq(a.type, b.type);
            cr_assert_str_eq(a.name, b.name);
            cr_assert_str_eq(a.token, b.token);
            cr_assert_str_eq(a.conn_id, b.conn_id);
            cr_assert_eq(a.last_seq, b.last_seq);
            cr_assert(json_equal(a.payload, b.payload) || (!a.payload && !b.payload));
            cr_assert(json_equal(a.router, b.router) || (!a.router && !b.router));
        } else {
            cr_assert_str_eq(wa, wb, "case %zu: the same reason", i);
        }
        sw_msg_destroy(&a);
        sw_msg_destroy(&b);
    }
}
