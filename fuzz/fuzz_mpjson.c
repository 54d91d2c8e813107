/* fuzz_mpjson.c — the JSON <-> msgpack bridge (common/mpjson.h) both ways.
 *
 * Feeds the input twice:
 *  1. as JSON text (jansson, any value, NUL allowed in strings) to
 *     sw_mpjson_encode, then the bytes back to sw_mpjson_decode;
 *  2. as msgpack bytes to sw_mpjson_decode (what a token's stored state
 *     and _meta go through when read from Redis), then, when decodable,
 *     the value to JSON text and back, and to msgpack again.
 *
 * Checks (abort() on failure): JSON -> msgpack -> JSON gives an equal
 * value (compared key by key at full length: jansson's json_equal stops
 * object keys at a NUL); encoding fails only for nesting over
 * SW_MPJSON_MAX_DEPTH (SW_EINVAL) or at the buffer's bound (SW_ETOOLARGE,
 * the buffer left exactly as it was); encoding is canonical (the value
 * decoded from an encoding encodes to the same bytes); a decoded value
 * nests at most SW_MPJSON_MAX_DEPTH deep, encodes, and survives the
 * msgpack round trip and the JSON text one (unless an object key holds a
 * NUL: jansson's parser refuses those) unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/mpjson.h"
#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_mpjson: %s\n", what);
    abort();
}

/* Containers nested in v: `[]` is 1, a scalar 0. */
static int depth(const json_t *v)
{
    int d = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int k = depth(json_array_get(v, i));
            d = k > d ? k : d;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            int k = depth(val);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    return 0;
}

/* json_equal with object keys compared by their full length: jansson's
 * json_equal looks keys up as C strings, so it tells two equal objects
 * apart when a key holds a NUL byte (which msgpack str and JSON "\u0000"
 * carry). Types must match (1 is not 1.0), reals compare with ==. */
static int same(const json_t *a, const json_t *b)
{
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *key;
        size_t klen;
        json_t *va;
        json_object_keylen_foreach((json_t *)a, key, klen, va)
        {
            json_t *vb = json_object_getn(b, key, klen);
            if (!vb || !same(va, vb))
                return 0;
        }
        return 1;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    default:
        return json_equal(a, b);
    }
}

/* Does an object key in v hold a NUL byte? jansson writes such keys as
 * "\u0000" but its parser refuses them ("NUL byte in object key not
 * supported"): those values skip the JSON text round trip. */
static int nul_key(const json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (nul_key(json_array_get(v, i)))
                return 1;
    } else if (json_is_object(v)) {
        const char *key;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach((json_t *)v, key, klen, val)
        {
            if (memchr(key, '\0', klen) || nul_key(val))
                return 1;
        }
    }
    return 0;
}

/* Encode v (which must encode) into out after a prefix, checking that a
 * bound one byte short fails and leaves the buffer as it was. */
static void encode_ok(const json_t *v, sw_buf_t *out)
{
    sw_buf_init(out, 0);
    if (sw_buf_append(out, "pre", 3) != 0)
        fail("sw_buf_append");
    if (sw_mpjson_encode(v, out) != 0)
        fail("encode failed on a value within the depth bound");
    if (out->len == 3)
        fail("empty encoding");
    sw_buf_t tight;
    sw_buf_init(&tight, out->len - 1);
    (void)sw_buf_append(&tight, "pre", 3);
    if (sw_mpjson_encode(v, &tight) != SW_ETOOLARGE)
        fail("encode past the bound did not say SW_ETOOLARGE");
    if (tight.len != 3 || memcmp(tight.data, "pre", 4) != 0)
        fail("a failed encode changed the buffer");
    sw_buf_destroy(&tight);
}

static json_t *decode_ok(const sw_buf_t *b)
{
    int err = 0;
    json_t *v = sw_mpjson_decode(b->data + 3, b->len - 3, &err);
    if (!v)
        fail("an encoding does not decode");
    return v;
}

/* 1. JSON text -> msgpack -> JSON. */
static void from_json(const uint8_t *data, size_t size)
{
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v)
        return;
    if (depth(v) > SW_MPJSON_MAX_DEPTH) {
        sw_buf_t b;
        sw_buf_init(&b, 0);
        if (sw_mpjson_encode(v, &b) != SW_EINVAL || b.len != 0)
            fail("encode of a value nested too deep did not fail cleanly");
        sw_buf_destroy(&b);
        json_decref(v);
        return;
    }
    sw_buf_t b1, b2;
    encode_ok(v, &b1);
    json_t *w = decode_ok(&b1);
    if (!same(v, w))
        fail("JSON -> msgpack -> JSON changed the value");
    encode_ok(w, &b2);
    if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
        fail("encoding not canonical");
    sw_buf_destroy(&b1);
    sw_buf_destroy(&b2);
    json_decref(v);
    json_decref(w);
}

/* 2. msgpack -> JSON -> msgpack. */
static void from_msgpack(const uint8_t *data, size_t size)
{
    int err = 0;
    json_t *v = sw_mpjson_decode((const char *)data, size, &err);
    if (!v) {
        if (err != SW_EINVAL)
            fail("decode failed without SW_EINVAL");
        return;
    }
    if (depth(v) > SW_MPJSON_MAX_DEPTH)
        fail("decoded a value nested too deep");
    sw_buf_t b1, b2;
    encode_ok(v, &b1);
    json_t *w = decode_ok(&b1);
    if (!same(v, w))
        fail("msgpack -> JSON -> msgpack changed the value");
    /* Through JSON text, as the state is logged and sent to clients. */
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        fail("json_dumps");
    if (!nul_key(v)) {
        json_t *t = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!t || !same(v, t))
            fail("a decoded value does not survive JSON text");
        encode_ok(t, &b2);
        if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len) != 0)
            fail("msgpack -> JSON text -> msgpack changed the bytes");
        sw_buf_destroy(&b2);
        json_decref(t);
    }
    free(text);
    sw_buf_destroy(&b1);
    json_decref(v);
    json_decref(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    from_json(data, size);
    from_msgpack(data, size);
    return 0;
}
