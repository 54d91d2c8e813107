/* The fast path of sw_msg_decode against the jansson path: for every input,
 * equal results (code, reason, fields, values), and the fast path taking
 * the usual events. msg.c is compiled into this test to reach both. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/msg.c"

/* Is the decoded message `a` equal to `b`? */
static void check_same(const char *in, size_t len, sw_errc_t ra, const sw_msg_t *a, const char *wa,
                       sw_errc_t rb, const sw_msg_t *b, const char *wb)
{
    cr_assert_eq(ra, rb, "%.*s: %d vs %d (%s | %s)", (int)len, in, ra, rb, wa, wb);
    cr_assert_str_eq(wa, wb, "%.*s", (int)len, in);
    cr_assert_eq(a->type, b->type, "%.*s", (int)len, in);
    cr_assert_eq(a->id, b->id, "%.*s", (int)len, in);
    cr_assert_str_eq(a->name, b->name, "%.*s", (int)len, in);
    cr_assert_str_eq(a->token, b->token, "%.*s", (int)len, in);
    cr_assert_eq(a->has_resume, b->has_resume);
    cr_assert_eq(!a->payload, !b->payload, "%.*s", (int)len, in);
    if (a->payload)
        cr_assert(json_equal(a->payload, b->payload), "%.*s", (int)len, in);
    cr_assert_eq(!a->router, !b->router, "%.*s", (int)len, in);
    if (a->router) {
        cr_assert(json_equal(a->router, b->router), "%.*s", (int)len, in);
        cr_assert_leq(json_object_size(a->router), 2);
    }
}

static int nfast; /* inputs the fast path took */

/* Decode in both ways and compare; returns 1 when the fast path took it. */
static int same_bytes(const char *in, size_t len)
{
    sw_msg_t a, b, f;
    char wa[128], wb[128];
    sw_errc_t ra = sw_msg_decode(in, len, &a, wa, sizeof(wa));
    decode_init(&b, wb, sizeof(wb));
    sw_errc_t rb = decode_jansson(in, len, &b, wb, sizeof(wb));
    check_same(in, len, ra, &a, wa, rb, &b, wb);
    decode_init(&f, NULL, 0);
    int took = fast_decode(in, len, &f);
    if (took) {
        cr_assert_eq(rb, SW_ERRC_NONE, "fast path took a bad message: %.*s", (int)len, in);
        check_same(in, len, SW_ERRC_NONE, &f, "", rb, &b, wb);
        nfast++;
    } else {
        cr_assert_null(f.payload);
        cr_assert_null(f.router);
    }
    sw_msg_destroy(&a);
    sw_msg_destroy(&b);
    sw_msg_destroy(&f);
    return took;
}

static int same(const char *in)
{
    return same_bytes(in, strlen(in));
}

/* The usual events: the fast path must take them. */
static const char *const usual[] = {
    "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":{}}",
    "{\"type\":\"event\",\"id\":7,\"name\":\"hydrate\",\"router\":{\"path\":\"/room/x\"}}",
    "{\"type\":\"event\",\"name\":\"a\"}",
    " \t\r\n{ \"name\" : \"chat.send\" , \"payload\" : { \"text\" : \"h\\u00e9 \\\"}\" } ,"
    " \"type\" : \"event\" , \"id\" : 0 }\n ",
    "{\"payload\":{\"a\":{\"b\":[1,2,{\"c\":\"]}\\\\\"}],\"d\":null}},\"id\":9007199254740991,"
    "\"type\":\"event\",\"name\":\"x.y_z\"}",
    "{\"type\":\"event\",\"id\":3,\"name\":\"n\",\"router\":{\"path\":\"/"
    "\",\"query\":{\"a\":\"1\"}},"
    "\"payload\":{\"amount\":-2.5e3}}",
    "{\"type\":\"event\",\"id\":3,\"name\":\"n\",\"router\":{\"query\":{},\"path\":\"/p\","
    "\"extra\":[1]}}",
    "{\"type\":\"event\",\"id\":1,\"name\":\"counter.increment\",\"payload\":{ }}",
};

/* Messages the fast path leaves to jansson (valid or not). */
static const char *const other[] = {
    "{\"type\":\"hello\"}",
    "{\"type\":\"hello\",\"token\":\"abc\",\"resume\":{\"conn_id\":\"c\",\"conn_token\":\"k\","
    "\"last_seq\":4}}",
    "{\"type\":\"event\",\"id\":1,\"name\":\"a\",\"extra\":1}",
    "{\"type\":\"event\",\"type\":\"event\",\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":1,\"id\":2,\"name\":\"a\"}",
    "{\"type\":\"event\",\"name\":\"a\",\"name\":\"b\"}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{},\"payload\":{}}",
    "{\"type\":\"event\",\"name\":\"a\",\"router\":{\"path\":\"/\"},\"router\":{\"path\":\"/\"}}",
    "{\"type\":\"ev\\u0065nt\",\"name\":\"a\"}",
    "{\"typ\\u0065\":\"event\",\"name\":\"a\"}",
    "{\"type\":\"event\",\"name\":\"\\u0061\"}",
    "{\"type\":\"Event\",\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":01,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":-1,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":-0,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":1.0,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":1e2,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":9007199254740992,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":99999999999999999999,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":null,\"name\":\"a\"}",
    "{\"type\":\"event\",\"id\":\"1\",\"name\":\"a\"}",
    "{\"type\":\"event\",\"name\":\"\"}",
    "{\"type\":\"event\",\"name\":\"bad name\"}",
    "{\"type\":\"event\",\"name\":\"a-b\"}",
    "{\"type\":\"event\",\"name\":1}",
    "{\"type\":\"event\"}",
    "{\"name\":\"a\"}",
    "{}",
    "[]",
    "\"event\"",
    "",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":[]}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":null}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":1,\"a\":2}}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":\"\\u0000\"}}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":\"\xff\"}}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":1]}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":[1}}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":tru}}",
    "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"a\":99999999999999999999}}",
    "{\"type\":\"event\",\"name\":\"a\",\"router\":{\"path\":\"x\"}}",
    "{\"type\":\"event\",\"name\":\"a\",\"router\":{\"path\":1}}",
    "{\"type\":\"event\",\"name\":\"a\",\"router\":{\"path\":\"/\",\"query\":[]}}",
    "{\"type\":\"event\",\"name\":\"a\",\"router\":{}}",
    "{\"type\":\"event\",\"name\":\"a\"} x",
    "{\"type\":\"event\",\"name\":\"a\"}}",
    "{\"type\":\"event\",\"name\":\"a\",}",
    "{\"type\":\"event\" \"name\":\"a\"}",
    "{\"type\":\"event\",\"name\":\"a\"",
    "\xef\xbb\xbf{\"type\":\"event\",\"name\":\"a\"}",
    "{\"type\":\"ev\x01nt\",\"name\":\"a\"}",
    "{\"type\":\"event\",\"name\":\"a\x7f\"}",
};

Test(msg_fast, usual_events_take_the_fast_path)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(usual); i++)
        cr_assert(same(usual[i]), "fast path declined: %s", usual[i]);
}

Test(msg_fast, others_take_the_jansson_path)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(other); i++)
        cr_assert_not(same(other[i]), "fast path took: %s", other[i]);
    /* With a NUL inside. */
    static const char nul[] = "{\"type\":\"event\",\"name\":\"a\"}\0";
    cr_assert_not(same_bytes(nul, sizeof(nul) - 1));
    static const char nul2[] = "{\"type\":\"event\",\"name\":\"a\0\"}";
    cr_assert_not(same_bytes(nul2, sizeof(nul2) - 1));
}

Test(msg_fast, deep_payloads)
{
    /* Nesting near jansson's depth bound: the fast path leaves it. */
    for (int depth = 60; depth <= 2050; depth += (depth < 70 ? 1 : 990)) {
        size_t n = 64 + 2 * (size_t)depth;
        char *m = malloc(n);
        /* {"k":[[[...]]]}: arrays below the payload object. */
        int off = snprintf(m, n, "{\"type\":\"event\",\"name\":\"a\",\"payload\":{\"k\":");
        for (int i = 1; i < depth; i++)
            m[off++] = '[';
        for (int i = 1; i < depth; i++)
            m[off++] = ']';
        m[off++] = '}';
        m[off++] = '}';
        same_bytes(m, (size_t)off);
        free(m);
    }
}

/* Every prefix and every one-byte change of the usual events. */
Test(msg_fast, mutations_agree)
{
    static const char repl[] = {'"', '{', '}', '[', ']', ',',  ':',    ' ',    '\\',
                                'x', '0', '-', '.', 'e', '\0', '\x7f', '\x80', '\xff'};
    nfast = 0;
    for (size_t i = 0; i < SW_ARRAY_SIZE(usual); i++) {
        size_t len = strlen(usual[i]);
        char *m = malloc(len + 1);
        for (size_t k = 0; k <= len; k++)
            same_bytes(usual[i], k);
        for (size_t k = 0; k < len; k++) {
            for (size_t r = 0; r < sizeof(repl); r++) {
                memcpy(m, usual[i], len);
                m[k] = repl[r];
                same_bytes(m, len);
            }
            /* drop byte k */
            memcpy(m, usual[i], k);
            memcpy(m + k, usual[i] + k + 1, len - k - 1);
            same_bytes(m, len - 1);
        }
        free(m);
    }
    cr_assert_gt(nfast, 100, "the fast path took only %d mutations", nfast);
}
