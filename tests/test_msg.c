#include <criterion/criterion.h>

#include <stdint.h>
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
                                       "rate_limited", "bad_resume",    "state_unavailable"};
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
