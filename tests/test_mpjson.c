#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "common/buf.h"
#include "common/mpjson.h"
#include "common/util.h"

/* Encode v, check the first byte of the encoding (the msgpack format)
 * when first >= 0, decode, and check the result equals v. Steals v. */
static void roundtrip(json_t *v, int first)
{
    cr_assert_not_null(v);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_mpjson_encode(v, &b), 0);
    cr_assert_gt(b.len, 0);
    if (first >= 0)
        cr_assert_eq((unsigned char)b.data[0], (unsigned)first, "format 0x%02x, want 0x%02x",
                     (unsigned char)b.data[0], (unsigned)first);
    int err = 0;
    json_t *back = sw_mpjson_decode(b.data, b.len, &err);
    cr_assert_not_null(back, "decode failed: %d", err);
    cr_assert(json_equal(v, back), "round trip changed the value");
    cr_assert_eq(json_typeof(v), json_typeof(back));
    json_decref(back);
    json_decref(v);
    sw_buf_destroy(&b);
}

static void refused(const char *data, size_t len)
{
    int err = 0;
    json_t *v = sw_mpjson_decode(data, len, &err);
    cr_assert_null(v);
    cr_assert_eq(err, SW_EINVAL);
}

#define REFUSED(lit) refused(lit, sizeof(lit) - 1)

Test(mpjson, scalars)
{
    roundtrip(json_null(), 0xc0);
    roundtrip(json_true(), 0xc3);
    roundtrip(json_false(), 0xc2);
}

Test(mpjson, integers)
{
    struct {
        json_int_t v;
        int first;
    } cases[] = {
        {0, 0x00},
        {1, 0x01},
        {-1, 0xff},
        {127, 0x7f},
        {128, 0xcc},
        {255, 0xcc},
        {256, 0xcd},
        {-32, 0xe0},
        {-33, 0xd0},
        {-128, 0xd0},
        {-129, 0xd1},
        {65535, 0xcd},
        {65536, 0xce},
        {2147483648LL, 0xce},
        {-2147483649LL, 0xd3},
        {INT64_MAX, 0xcf},
        {INT64_MIN, 0xd3},
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(cases); i++)
        roundtrip(json_integer(cases[i].v), cases[i].first);
}

Test(mpjson, reals_stay_reals)
{
    roundtrip(json_real(0.5), 0xcb);
    roundtrip(json_real(-1e300), 0xcb);
    roundtrip(json_real(3.0), 0xcb); /* integral, still a float 64 */
}

static json_t *string_of(size_t n)
{
    char *s = sw_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    json_t *v = json_stringn(s, n);
    free(s);
    return v;
}

Test(mpjson, strings)
{
    roundtrip(json_string(""), 0xa0);
    roundtrip(json_string("hello, world"), 0xac);
    roundtrip(json_string("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80"), -1);
    roundtrip(json_stringn("a\0b", 3), 0xa3);
    roundtrip(string_of(31), 0xbf);
    roundtrip(string_of(32), 0xd9);
    roundtrip(string_of(255), 0xd9);
    roundtrip(string_of(256), 0xda);
    roundtrip(string_of(65535), 0xda);
    roundtrip(string_of(65536), 0xdb);
}

static json_t *array_of(size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)i));
    return a;
}

static json_t *object_of(size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%zu", i);
        json_object_set_new(o, key, json_integer((json_int_t)i));
    }
    return o;
}

Test(mpjson, arrays)
{
    roundtrip(array_of(0), 0x90);
    roundtrip(array_of(15), 0x9f);
    roundtrip(array_of(16), 0xdc);
    roundtrip(array_of(65536), 0xdd);
    roundtrip(json_pack("[n,b,i,f,s,[],{}]", 1, 2, 2.5, "x"), 0x97);
}

Test(mpjson, objects)
{
    roundtrip(object_of(0), 0x80);
    roundtrip(object_of(15), 0x8f);
    roundtrip(object_of(16), 0xde);
    roundtrip(object_of(65536), 0xdf);
    roundtrip(json_pack("{s:{s:[i,i]},s:n}", "a", "b", 1, 2, "c"), 0x82);
    json_t *o = json_object();
    json_object_set_new(o, "\xc3\xa9t\xc3\xa9", json_integer(1));
    json_object_set_new(o, "", json_integer(2));
    roundtrip(o, 0x82);
}

/* json_equal() looks keys up with strlen: check a NUL-byte key by hand. */
Test(mpjson, key_with_nul_byte)
{
    json_t *o = json_object();
    json_object_setn_new(o, "k\0x", 3, json_true());
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_mpjson_encode(o, &b), 0);
    cr_assert_eq(b.len, 6);
    cr_assert_eq(memcmp(b.data, "\x81\xa3k\0x\xc3", 6), 0);
    int err = 0;
    json_t *back = sw_mpjson_decode(b.data, b.len, &err);
    cr_assert_not_null(back);
    cr_assert_eq(json_object_size(back), 1);
    cr_assert(json_is_true(json_object_getn(back, "k\0x", 3)));
    cr_assert_null(json_object_get(back, "k"));
    json_decref(back);
    json_decref(o);
    sw_buf_destroy(&b);
}

static json_t *nested(int depth, int use_maps)
{
    json_t *v = json_integer(7);
    for (int i = 0; i < depth; i++) {
        json_t *c = use_maps ? json_object() : json_array();
        if (use_maps)
            json_object_set_new(c, "k", v);
        else
            json_array_append_new(c, v);
        v = c;
    }
    return v;
}

Test(mpjson, depth_64_ok_65_refused)
{
    for (int maps = 0; maps <= 1; maps++) {
        roundtrip(nested(SW_MPJSON_MAX_DEPTH, maps), maps ? 0x81 : 0x91);

        json_t *deep = nested(SW_MPJSON_MAX_DEPTH + 1, maps);
        sw_buf_t b;
        sw_buf_init(&b, 0);
        cr_assert_eq(sw_buf_append(&b, "xy", 2), 0);
        cr_assert_eq(sw_mpjson_encode(deep, &b), SW_EINVAL);
        cr_assert_eq(b.len, 2, "failed encode must not append");
        json_decref(deep);
        sw_buf_destroy(&b);
    }
    /* Raw msgpack: 64 nested arrays decode, 65 do not (innermost empty). */
    char raw[SW_MPJSON_MAX_DEPTH + 1];
    memset(raw, 0x91, sizeof(raw));
    raw[SW_MPJSON_MAX_DEPTH - 1] = (char)0x90;
    int err = 0;
    json_t *v = sw_mpjson_decode(raw, SW_MPJSON_MAX_DEPTH, &err);
    cr_assert_not_null(v);
    json_decref(v);
    raw[SW_MPJSON_MAX_DEPTH - 1] = (char)0x91;
    raw[SW_MPJSON_MAX_DEPTH] = (char)0x90;
    refused(raw, sizeof(raw));
}

Test(mpjson, truncated_input_refused)
{
    json_t *v = json_pack("{s:[i,s,{s:f}],s:s}", "a", 1000, "str", "m", 1.5, "b", "tail");
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_mpjson_encode(v, &b), 0);
    for (size_t n = 0; n < b.len; n++)
        refused(b.data, n);
    json_decref(v);
    sw_buf_destroy(&b);
    refused(NULL, 0);
}

Test(mpjson, trailing_bytes_refused)
{
    REFUSED("\x01\xc0");
    REFUSED("\x90\x90");
    REFUSED("\x81\xa1"
            "a"
            "\x01\x00");
}

Test(mpjson, non_string_key_refused)
{
    REFUSED("\x81\x01\x02");         /* {1: 2} */
    REFUSED("\x81\xc0\x02");         /* {nil: 2} */
    REFUSED("\x81\x90\x02");         /* {[]: 2} */
    REFUSED("\x81\x91\x01\x91\x02"); /* {[1]: [2]} */
    REFUSED("\x81\x01");             /* pending key, truncated value */
    REFUSED("\x82\xa1"
            "a"
            "\x01\x01"); /* second key not a string, value missing */
}

Test(mpjson, bin_and_ext_refused)
{
    REFUSED("\xc4\x01"
            "A");
    REFUSED("\x91\xc4\x00");
    REFUSED("\x81\xa1"
            "a"
            "\xc5\x00\x01"
            "A");
    REFUSED("\xd4\x01\x00"); /* fixext 1 */
    REFUSED("\xc7\x01\x05"
            "A"); /* ext 8 */
    REFUSED("\x81\xa1"
            "k"
            "\x91\xd4\x01\x00"); /* ext under a pending key */
}

Test(mpjson, invalid_utf8_refused)
{
    REFUSED("\xa2\xc3\x28");
    REFUSED("\xa1\xff");
    REFUSED("\xa3\xed\xa0\x80"); /* UTF-16 surrogate */
    REFUSED("\x81\xa1\xff\x01"); /* as a key */
    REFUSED("\x92\x01\xa1\x80");
}

Test(mpjson, uint64_over_int64_refused)
{
    REFUSED("\xcf\x80\x00\x00\x00\x00\x00\x00\x00");
    REFUSED("\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    int err = 0;
    json_t *v = sw_mpjson_decode("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, &err);
    cr_assert_not_null(v);
    cr_assert_eq(json_integer_value(v), INT64_MAX);
    json_decref(v);
}

Test(mpjson, float32_and_nonfinite)
{
    int err = 0;
    json_t *v = sw_mpjson_decode("\xca\x3f\xc0\x00\x00", 5, &err); /* 1.5f */
    cr_assert(json_is_real(v));
    cr_assert_eq(json_real_value(v), 1.5);
    json_decref(v);
    REFUSED("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"); /* NaN */
    REFUSED("\xca\x7f\x80\x00\x00");                 /* +inf */
}

Test(mpjson, huge_declared_size_is_cheap)
{
    REFUSED("\xdd\xff\xff\xff\xff\x01");
    REFUSED("\xdf\xff\xff\xff\xff");
}

Test(mpjson, bounded_buffer_too_small)
{
    json_t *v = json_pack("{s:s}", "key", "a value longer than the bound");
    sw_buf_t b;
    sw_buf_init(&b, 16);
    cr_assert_eq(sw_buf_append(&b, "ab", 2), 0);
    cr_assert_eq(sw_mpjson_encode(v, &b), SW_ETOOLARGE);
    cr_assert_eq(b.len, 2);
    cr_assert_str_eq(b.data, "ab");
    /* Fits once the bound allows it. */
    b.max = 64;
    cr_assert_eq(sw_mpjson_encode(v, &b), 0);
    int err = 0;
    json_t *back = sw_mpjson_decode(b.data + 2, b.len - 2, &err);
    cr_assert(json_equal(v, back));
    json_decref(back);
    json_decref(v);
    sw_buf_destroy(&b);
}
