#include "common/mpjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The decoder instantiates msgpack-c's parser template with a stack deep
 * enough for SW_MPJSON_MAX_DEPTH; the size must be set before
 * unpack_define.h is first seen. */
#ifdef MSGPACK_EMBED_STACK_SIZE
#error "MSGPACK_EMBED_STACK_SIZE already defined"
#endif
#define MSGPACK_EMBED_STACK_SIZE SW_MPJSON_MAX_DEPTH

#include <msgpack.h>
#include <msgpack/unpack_define.h>

#include "common/util.h"

/* ---- encode ------------------------------------------------------------- */

static int write_cb(void *data, const char *buf, size_t len)
{
    return sw_buf_append(data, buf, len);
}

static int pack_value(msgpack_packer *pk, const json_t *v, int depth)
{
    json_t *jv = (json_t *)v; /* jansson's iteration API is not const */
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth >= SW_MPJSON_MAX_DEPTH)
            return SW_EINVAL;
        if (json_object_size(v) > UINT32_MAX || msgpack_pack_map(pk, json_object_size(v)))
            return SW_ETOOLARGE;
        const char *key;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach(jv, key, klen, val)
        {
            if (klen > UINT32_MAX || msgpack_pack_str(pk, klen) ||
                msgpack_pack_str_body(pk, key, klen))
                return SW_ETOOLARGE;
            int rc = pack_value(pk, val, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (depth >= SW_MPJSON_MAX_DEPTH)
            return SW_EINVAL;
        size_t n = json_array_size(v);
        if (n > UINT32_MAX || msgpack_pack_array(pk, n))
            return SW_ETOOLARGE;
        for (size_t i = 0; i < n; i++) {
            int rc = pack_value(pk, json_array_get(v, i), depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    case JSON_STRING: {
        size_t n = json_string_length(v);
        if (n > UINT32_MAX || msgpack_pack_str(pk, n) ||
            msgpack_pack_str_body(pk, json_string_value(v), n))
            return SW_ETOOLARGE;
        return 0;
    }
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, (int64_t)json_integer_value(v)) ? SW_ETOOLARGE : 0;
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v)) ? SW_ETOOLARGE : 0;
    case JSON_TRUE:
        return msgpack_pack_true(pk) ? SW_ETOOLARGE : 0;
    case JSON_FALSE:
        return msgpack_pack_false(pk) ? SW_ETOOLARGE : 0;
    case JSON_NULL:
        return msgpack_pack_nil(pk) ? SW_ETOOLARGE : 0;
    }
    return SW_EINVAL;
}

int sw_mpjson_encode(const json_t *v, sw_buf_t *out)
{
    if (!v)
        return SW_EINVAL;
    size_t start = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, write_cb);
    int rc = pack_value(&pk, v, 0);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---- decode: msgpack-c's unpack_template.h with json_t objects --------- */

typedef struct {
    int unused;
} unpack_user;

#define msgpack_unpack_struct(name) struct mpj_template##name
#define msgpack_unpack_func(ret, name) static ret mpj_template##name
#define msgpack_unpack_callback(name) mpj_callback##name
#define msgpack_unpack_object json_t *
#define msgpack_unpack_user unpack_user

/* Every callback returns 0, or -1 to fail the parse. Objects are owned
 * references; the parser's stack holds the containers still open. */

static inline json_t *mpj_callback_root(unpack_user *u)
{
    return NULL;
}

static inline int set_int(json_t **o, json_int_t d)
{
    *o = json_integer(d);
    return *o ? 0 : -1;
}

static inline int mpj_callback_uint8(unpack_user *u, uint8_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_uint16(unpack_user *u, uint16_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_uint32(unpack_user *u, uint32_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_uint64(unpack_user *u, uint64_t d, json_t **o)
{
    if (d > (uint64_t)INT64_MAX)
        return -1;
    return set_int(o, (json_int_t)d);
}

static inline int mpj_callback_int8(unpack_user *u, int8_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_int16(unpack_user *u, int16_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_int32(unpack_user *u, int32_t d, json_t **o)
{
    return set_int(o, d);
}

static inline int mpj_callback_int64(unpack_user *u, int64_t d, json_t **o)
{
    return set_int(o, (json_int_t)d);
}

static inline int set_real(json_t **o, double d)
{
    if (!isfinite(d))
        return -1;
    *o = json_real(d);
    return *o ? 0 : -1;
}

static inline int mpj_callback_float(unpack_user *u, float d, json_t **o)
{
    return set_real(o, (double)d);
}

static inline int mpj_callback_double(unpack_user *u, double d, json_t **o)
{
    return set_real(o, d);
}

static inline int mpj_callback_nil(unpack_user *u, json_t **o)
{
    *o = json_null();
    return 0;
}

static inline int mpj_callback_true(unpack_user *u, json_t **o)
{
    *o = json_true();
    return 0;
}

static inline int mpj_callback_false(unpack_user *u, json_t **o)
{
    *o = json_false();
    return 0;
}

/* n is the declared size: nothing is reserved for it. */
static inline int mpj_callback_array(unpack_user *u, unsigned int n, json_t **o)
{
    *o = json_array();
    return *o ? 0 : -1;
}

/* Takes o (released on failure too). */
static inline int mpj_callback_array_item(unpack_user *u, json_t **c, json_t *o)
{
    return json_array_append_new(*c, o) ? -1 : 0;
}

static inline int mpj_callback_map(unpack_user *u, unsigned int n, json_t **o)
{
    *o = json_object();
    return *o ? 0 : -1;
}

/* Takes v always; takes k only on success (on failure the parser's stack
 * still holds it as the pending map key, released by release_stack). */
static inline int mpj_callback_map_item(unpack_user *u, json_t **c, json_t *k, json_t *v)
{
    if (!json_is_string(k)) {
        json_decref(v);
        return -1;
    }
    if (json_object_setn_new(*c, json_string_value(k), json_string_length(k), v))
        return -1;
    json_decref(k);
    return 0;
}

/* json_stringn refuses invalid UTF-8 and keeps NUL bytes. p is NULL for
 * an empty str. */
static inline int mpj_callback_str(unpack_user *u, const char *b, const char *p, unsigned int l,
                                   json_t **o)
{
    *o = json_stringn(l ? p : "", l);
    return *o ? 0 : -1;
}

static inline int mpj_callback_bin(unpack_user *u, const char *b, const char *p, unsigned int l,
                                   json_t **o)
{
    return -1;
}

static inline int mpj_callback_ext(unpack_user *u, const char *b, const char *p, unsigned int l,
                                   json_t **o)
{
    return -1;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#include <msgpack/unpack_template.h>
#pragma GCC diagnostic pop

typedef struct mpj_template_context mpj_ctx_t;

_Static_assert(sizeof(((mpj_ctx_t *)0)->stack) / sizeof(((mpj_ctx_t *)0)->stack[0]) ==
                   SW_MPJSON_MAX_DEPTH,
               "parser stack must match SW_MPJSON_MAX_DEPTH");

/* Release the containers still open after a failed or incomplete parse. */
static void release_stack(mpj_ctx_t *ctx)
{
    for (unsigned int i = 0; i < ctx->top; i++) {
        json_decref(ctx->stack[i].obj);
        if (ctx->stack[i].ct == MSGPACK_CT_MAP_VALUE)
            json_decref(ctx->stack[i].map_key);
    }
}

json_t *sw_mpjson_decode(const char *data, size_t len, int *err)
{
    json_t *v = NULL;
    if (!data || len == 0)
        goto fail;
    mpj_ctx_t ctx;
    mpj_template_init(&ctx);
    size_t off = 0;
    int rc = mpj_template_execute(&ctx, data, len, &off);
    if (rc <= 0) {
        release_stack(&ctx); /* parse error, depth bound, or truncated */
        goto fail;
    }
    v = mpj_template_data(&ctx);
    if (off != len)
        goto fail; /* trailing bytes */
    return v;
fail:
    json_decref(v);
    if (err)
        *err = SW_EINVAL;
    return NULL;
}
