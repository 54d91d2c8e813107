#include "proto/msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define ID_MAX ((int64_t)9007199254740991) /* 2^53-1: exact in a JS number */
#define ROUTER_PATH_MAX 2048

static const char *const errc_names[SW_ERRC__COUNT] = {
    [SW_ERRC_NONE] = "",
    [SW_ERRC_BAD_JSON] = "bad_json",
    [SW_ERRC_BAD_MESSAGE] = "bad_message",
    [SW_ERRC_UNKNOWN_EVENT] = "unknown_event",
    [SW_ERRC_BAD_PAYLOAD] = "bad_payload",
    [SW_ERRC_HANDLER_ERROR] = "handler_error",
    [SW_ERRC_TOO_LARGE] = "too_large",
    [SW_ERRC_RATE_LIMITED] = "rate_limited",
    [SW_ERRC_BAD_RESUME] = "bad_resume",
    [SW_ERRC_STATE_UNAVAILABLE] = "state_unavailable",
    [SW_ERRC_UNAUTHORIZED] = "unauthorized",
    [SW_ERRC_CANCELLED] = "cancelled",
};

const char *sw_errc_name(sw_errc_t code)
{
    if ((int)code < 0 || code >= SW_ERRC__COUNT)
        return "";
    return errc_names[code];
}

sw_errc_t sw_errc_parse(const char *name)
{
    if (!name || !*name)
        return SW_ERRC_NONE;
    for (int c = 1; c < SW_ERRC__COUNT; c++)
        if (strcmp(errc_names[c], name) == 0)
            return (sw_errc_t)c;
    return SW_ERRC_NONE;
}

/* ---- decode ------------------------------------------------------------- */

static void set_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* 1..max chars, each of [A-Za-z0-9] or one of `extra`. */
static int valid_chars(const char *s, size_t len, size_t max, const char *extra)
{
    if (len < 1 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
            continue;
        if (ch == '\0' || !strchr(extra, ch))
            return 0;
    }
    return 1;
}

/* Copy the string field `key` of obj into dst (cap bytes incl. NUL) after
 * checking it against [A-Za-z0-9_-]{1,max}. */
static sw_errc_t get_ident(json_t *obj, const char *what, const char *key, int required, char *dst,
                           size_t max, char *why, size_t whylen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (!required)
            return SW_ERRC_NONE;
        set_why(why, whylen, "%s.%s is required", what, key);
        return SW_ERRC_BAD_MESSAGE;
    }
    if (!json_is_string(v)) {
        set_why(why, whylen, "%s.%s must be a string", what, key);
        return SW_ERRC_BAD_MESSAGE;
    }
    size_t len = json_string_length(v);
    if (len == 0 && !required)
        return SW_ERRC_NONE; /* "" means omitted */
    if (!valid_chars(json_string_value(v), len, max, "_-")) {
        set_why(why, whylen, "%s.%s must be 1..%zu chars of [A-Za-z0-9_-]", what, key, max);
        return SW_ERRC_BAD_MESSAGE;
    }
    memcpy(dst, json_string_value(v), len);
    dst[len] = '\0';
    return SW_ERRC_NONE;
}

static sw_errc_t decode_hello(json_t *root, sw_msg_t *out, char *why, size_t whylen)
{
    sw_errc_t rc = get_ident(root, "hello", "token", 0, out->token, SW_TOKEN_MAX, why, whylen);
    if (rc)
        return rc;
    json_t *auth = json_object_get(root, "auth");
    if (auth) {
        if (!json_is_string(auth) || json_string_length(auth) > SW_AUTH_MAX) {
            set_why(why, whylen, "hello.auth must be a string of at most %d bytes", SW_AUTH_MAX);
            return SW_ERRC_BAD_MESSAGE;
        }
        out->auth = sw_xstrndup(json_string_value(auth), json_string_length(auth));
    }
    json_t *resume = json_object_get(root, "resume");
    if (!resume)
        return SW_ERRC_NONE;
    if (!json_is_object(resume)) {
        set_why(why, whylen, "hello.resume must be an object");
        return SW_ERRC_BAD_MESSAGE;
    }
    rc = get_ident(resume, "hello.resume", "conn_id", 1, out->conn_id, SW_CONN_ID_MAX, why, whylen);
    if (rc)
        return rc;
    rc = get_ident(resume, "hello.resume", "conn_token", 1, out->conn_token, SW_CONN_ID_MAX, why,
                   whylen);
    if (rc)
        return rc;
    json_t *seq = json_object_get(resume, "last_seq");
    if (seq) {
        if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
            set_why(why, whylen, "hello.resume.last_seq must be a non-negative integer");
            return SW_ERRC_BAD_MESSAGE;
        }
        out->last_seq = (uint64_t)json_integer_value(seq);
    }
    out->has_resume = 1;
    return SW_ERRC_NONE;
}

static sw_errc_t decode_router(json_t *r, sw_msg_t *out, char *why, size_t whylen)
{
    if (!json_is_object(r)) {
        set_why(why, whylen, "event.router must be an object");
        return SW_ERRC_BAD_MESSAGE;
    }
    json_t *path = json_object_get(r, "path");
    if (!json_is_string(path)) {
        set_why(why, whylen, "event.router.path must be a string");
        return SW_ERRC_BAD_MESSAGE;
    }
    size_t plen = json_string_length(path);
    if (plen == 0 || json_string_value(path)[0] != '/' || plen > ROUTER_PATH_MAX) {
        set_why(why, whylen, "event.router.path must start with '/' and be at most %d bytes",
                ROUTER_PATH_MAX);
        return SW_ERRC_BAD_MESSAGE;
    }
    json_t *query = json_object_get(r, "query");
    if (query && !json_is_object(query)) {
        set_why(why, whylen, "event.router.query must be an object");
        return SW_ERRC_BAD_MESSAGE;
    }
    /* Keep only the known fields: the object itself when it has no
     * others (the usual case), else a copy of them. */
    if (json_object_size(r) == (query ? 2u : 1u)) {
        out->router = json_incref(r);
        return SW_ERRC_NONE;
    }
    out->router = json_object();
    json_object_set(out->router, "path", path);
    if (query)
        json_object_set(out->router, "query", query);
    return SW_ERRC_NONE;
}

/* {"type":"cancel","id":N}: N an event id (integer 0..2^53-1). */
static sw_errc_t decode_cancel(json_t *root, sw_msg_t *out, char *why, size_t whylen)
{
    json_t *id = json_object_get(root, "id");
    if (!id || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) > ID_MAX) {
        set_why(why, whylen, "cancel.id must be an integer in 0..2^53-1");
        return SW_ERRC_BAD_MESSAGE;
    }
    out->id = (int64_t)json_integer_value(id);
    return SW_ERRC_NONE;
}

static sw_errc_t decode_event(json_t *root, sw_msg_t *out, char *why, size_t whylen)
{
    json_t *id = json_object_get(root, "id");
    if (id &&
        (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > ID_MAX)) {
        set_why(why, whylen, "event.id must be an integer in 0..2^53-1");
        return SW_ERRC_BAD_MESSAGE;
    }
    if (id)
        out->id = (int64_t)json_integer_value(id);

    json_t *name = json_object_get(root, "name");
    if (!name) {
        set_why(why, whylen, "event.name is required");
        return SW_ERRC_BAD_MESSAGE;
    }
    if (!json_is_string(name)) {
        set_why(why, whylen, "event.name must be a string");
        return SW_ERRC_BAD_MESSAGE;
    }
    size_t nlen = json_string_length(name);
    if (!valid_chars(json_string_value(name), nlen, SW_EVENT_NAME_MAX, "_.")) {
        set_why(why, whylen, "event.name must be 1..%d chars of [A-Za-z0-9_.]", SW_EVENT_NAME_MAX);
        return SW_ERRC_BAD_MESSAGE;
    }
    memcpy(out->name, json_string_value(name), nlen);
    out->name[nlen] = '\0';

    json_t *router = json_object_get(root, "router");
    if (router) {
        sw_errc_t rc = decode_router(router, out, why, whylen);
        if (rc)
            return rc;
    }

    json_t *payload = json_object_get(root, "payload");
    if (payload && !json_is_object(payload)) {
        set_why(why, whylen, "event.payload must be an object");
        return SW_ERRC_BAD_PAYLOAD;
    }
    out->payload = payload ? json_incref(payload) : json_object();
    return SW_ERRC_NONE;
}

/* ---- decode: the fast path ------------------------------------------------ *
 *
 * jansson's parser spends most of a small event's decode on the envelope
 * (a json_t per key and value, a lexer buffer, a hash lookup per key for
 * the duplicate check). The usual message, an event whose envelope holds
 * only "type", "id", "name", "payload" and "router", each at most once,
 * with keys and the type and name strings in plain printable ASCII (no
 * escapes) and a non-negative integer id, is scanned here instead; only
 * payload and router, objects, go through json_loadb (with the same
 * flags). Anything else, including every invalid message, is left to the
 * jansson path, so results and error messages are those of the jansson
 * path: the fast path accepts only messages the jansson path accepts, and
 * decodes them to equal values (tests/test_msg_fast.c checks both paths
 * against each other). */

#define FAST_MAX_DEPTH 64 /* deeper payloads take the jansson path (its depth bound) */

typedef struct scan {
    const char *p;
    const char *end;
} scan_t;

static void skip_ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Consume `ch` (after white space). 0 or -1. */
static int eat(scan_t *s, char ch)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != ch)
        return -1;
    s->p++;
    return 0;
}

/* A string of printable ASCII without escapes (its JSON value is its
 * bytes). 0 with *str and *len set, or -1. */
static int plain_string(scan_t *s, const char **str, size_t *len)
{
    if (eat(s, '"'))
        return -1;
    const char *q = s->p;
    while (q < s->end && *q != '"') {
        unsigned char ch = (unsigned char)*q;
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return -1;
        q++;
    }
    if (q >= s->end)
        return -1;
    *str = s->p;
    *len = (size_t)(q - s->p);
    s->p = q + 1;
    return 0;
}

/* An integer 0..ID_MAX in JSON's form (no sign, no leading zero, no
 * fraction or exponent). 0 or -1. */
static int plain_id(scan_t *s, int64_t *v)
{
    skip_ws(s);
    const char *q = s->p;
    if (q >= s->end || *q < '0' || *q > '9' ||
        (*q == '0' && q + 1 < s->end && q[1] >= '0' && q[1] <= '9'))
        return -1;
    int64_t x = 0;
    while (q < s->end && *q >= '0' && *q <= '9') {
        x = x * 10 + (*q - '0');
        if (x > ID_MAX)
            return -1;
        q++;
    }
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return -1;
    *v = x;
    s->p = q;
    return 0;
}

/* The bytes of an object value: from its '{' to the matching '}' by
 * bracket counting outside strings. Whether they are valid JSON is
 * json_loadb's to say. 0 with *start and *len set, or -1. */
static int object_bytes(scan_t *s, const char **start, size_t *len)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{')
        return -1;
    int depth = 0;
    for (const char *q = s->p; q < s->end; q++) {
        char ch = *q;
        if (ch == '"') {
            for (q++; q < s->end && *q != '"'; q++)
                if (*q == '\\')
                    q++;
            if (q >= s->end)
                return -1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > FAST_MAX_DEPTH)
                return -1;
        } else if (ch == '}' || ch == ']') {
            if (--depth == 0) {
                if (ch != '}')
                    return -1;
                *start = s->p;
                *len = (size_t)(q + 1 - s->p);
                s->p = q + 1;
                return 0;
            }
        }
    }
    return -1;
}

/* "{" white space "}"? */
static int empty_object(const char *p, size_t len)
{
    scan_t s = {p + 1, p + len - 1};
    skip_ws(&s);
    return s.p == s.end;
}

static int key_is(const char *k, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(k, want, klen) == 0;
}

/* 1 with *out filled, or 0 with nothing owned in *out (take the jansson
 * path). */
static int fast_decode(const char *data, size_t len, sw_msg_t *out)
{
    scan_t s = {data, data + len};
    const char *type = NULL, *name = NULL, *payload = NULL, *router = NULL;
    size_t type_len = 0, name_len = 0, payload_len = 0, router_len = 0;
    int64_t id = -1;
    json_t *r = NULL;
    if (eat(&s, '{'))
        return 0;
    for (;;) {
        const char *k;
        size_t klen;
        if (plain_string(&s, &k, &klen) || eat(&s, ':'))
            return 0;
        if (key_is(k, klen, "type") && !type) {
            if (plain_string(&s, &type, &type_len))
                return 0;
        } else if (key_is(k, klen, "id") && id < 0) {
            if (plain_id(&s, &id))
                return 0;
        } else if (key_is(k, klen, "name") && !name) {
            if (plain_string(&s, &name, &name_len))
                return 0;
        } else if (key_is(k, klen, "payload") && !payload) {
            if (object_bytes(&s, &payload, &payload_len))
                return 0;
        } else if (key_is(k, klen, "router") && !router) {
            if (object_bytes(&s, &router, &router_len))
                return 0;
        } else {
            return 0; /* another key, or a duplicate (bad_json) */
        }
        if (eat(&s, ',') == 0)
            continue;
        if (eat(&s, '}'))
            return 0;
        break;
    }
    skip_ws(&s);
    if (s.p != s.end || !type || !key_is(type, type_len, "event") || !name ||
        !valid_chars(name, name_len, SW_EVENT_NAME_MAX, "_."))
        return 0;
    if (router) {
        r = json_loadb(router, router_len, JSON_REJECT_DUPLICATES, NULL);
        if (!r || decode_router(r, out, NULL, 0) != SW_ERRC_NONE)
            goto fail;
        json_decref(r);
        r = NULL;
    }
    if (!payload || empty_object(payload, payload_len))
        out->payload = json_object();
    else if (!(out->payload = json_loadb(payload, payload_len, JSON_REJECT_DUPLICATES, NULL)))
        goto fail;
    out->type = SW_MSG_EVENT;
    out->id = id;
    memcpy(out->name, name, name_len);
    out->name[name_len] = '\0';
    return 1;
fail:
    json_decref(r);
    json_decref(out->router);
    out->router = NULL;
    return 0;
}

static void decode_init(sw_msg_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    out->id = -1;
    if (why && whylen)
        why[0] = '\0';
}

/* A parsed message (borrowed). */
static sw_errc_t decode_root(const json_t *croot, sw_msg_t *out, char *why, size_t whylen)
{
    sw_errc_t rc;
    json_t *root = (json_t *)croot; /* read only */
    if (!json_is_object(root)) {
        set_why(why, whylen, "message must be a JSON object");
        rc = SW_ERRC_BAD_MESSAGE;
        goto fail;
    }
    json_t *type = json_object_get(root, "type");
    if (!type) {
        set_why(why, whylen, "type is required");
        rc = SW_ERRC_BAD_MESSAGE;
        goto fail;
    }
    if (!json_is_string(type)) {
        set_why(why, whylen, "type must be a string");
        rc = SW_ERRC_BAD_MESSAGE;
        goto fail;
    }
    const char *t = json_string_value(type);
    if (strcmp(t, "event") == 0) {
        out->type = SW_MSG_EVENT;
        rc = decode_event(root, out, why, whylen);
    } else if (strcmp(t, "hello") == 0) {
        out->type = SW_MSG_HELLO;
        rc = decode_hello(root, out, why, whylen);
    } else if (strcmp(t, "cancel") == 0) {
        out->type = SW_MSG_CANCEL;
        rc = decode_cancel(root, out, why, whylen);
    } else {
        set_why(why, whylen, "unknown type \"%.32s\"", t);
        rc = SW_ERRC_BAD_MESSAGE;
    }
    if (rc)
        goto fail;
    return SW_ERRC_NONE;
fail:
    json_decref(out->payload);
    out->payload = NULL;
    json_decref(out->router);
    out->router = NULL;
    free(out->auth);
    out->auth = NULL;
    return rc;
}

/* The whole message through jansson (every message the fast path leaves). */
static sw_errc_t decode_jansson(const char *data, size_t len, sw_msg_t *out, char *why,
                                size_t whylen)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        set_why(why, whylen, "invalid JSON: %s (at byte %d)", jerr.text, jerr.position);
        return SW_ERRC_BAD_JSON;
    }
    sw_errc_t rc = decode_root(root, out, why, whylen);
    json_decref(root);
    return rc;
}

sw_errc_t sw_msg_decode_json(const json_t *root, sw_msg_t *out, char *why, size_t whylen)
{
    decode_init(out, why, whylen);
    return decode_root(root, out, why, whylen);
}

sw_errc_t sw_msg_decode(const char *data, size_t len, sw_msg_t *out, char *why, size_t whylen)
{
    decode_init(out, why, whylen);
    if (data && fast_decode(data, len, out))
        return SW_ERRC_NONE;
    return decode_jansson(data, len, out, why, whylen);
}

void sw_msg_destroy(sw_msg_t *m)
{
    if (!m)
        return;
    json_decref(m->payload);
    m->payload = NULL;
    json_decref(m->router);
    m->router = NULL;
    free(m->auth);
    m->auth = NULL;
}

/* ---- encode ------------------------------------------------------------- */

/* The envelope (type, seq, id, code, ...) is written by hand straight into
 * `out`; only the caller's json_t values go through a JSON writer. No
 * temporary jansson object is built per message. Each encoder remembers
 * out->len on entry and cuts back to it on any failure, so `out` is left
 * unchanged (the bound of sw_buf_t, invalid input). */

/* sw_buf_append for the many small pieces of a message: a plain copy
 * while the buffer has room below its capacity and its bound. */
static inline int put_raw(sw_buf_t *out, const void *p, size_t n)
{
    size_t lim = out->max && out->max < out->cap ? out->max : out->cap;
    if (!out->data || n > lim - out->len)
        return sw_buf_append(out, p, n);
    memcpy(out->data + out->len, p, n);
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

#define PUT_LIT(out, lit) put_raw((out), (lit), sizeof(lit) - 1)

/* Cut out back to `start` after a failed encode. */
static int undo(sw_buf_t *out, size_t start, int rc)
{
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return rc;
}

static int put_u64(sw_buf_t *out, uint64_t v)
{
    char tmp[SW_U64_DIGITS];
    return put_raw(out, tmp, sw_u64_dec(tmp, v));
}

/* Append s[0..len) as a JSON string (RFC 8259 §7) exactly as jansson's
 * JSON_COMPACT dump writes it: '"' and '\\' escaped, control characters as
 * \b \f \n \r \t or \u00XX, everything else (also '/' and non-ASCII) as
 * is. SW_EINVAL when s is not UTF-8. */
static int put_strn(sw_buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    int rc = sw_buf_reserve(out, len + 2); /* the usual case: nothing to escape */
    if (rc)
        return rc;
    out->data[out->len++] = '"';
    while (p < end) {
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++; /* the run of ASCII written as is */
        if (p == end)
            break;
        unsigned char ch = *p;
        if (ch >= 0x80) {
            size_t n = sw_utf8_seq(p, (size_t)(end - p));
            if (!n)
                return SW_EINVAL;
            p += n;
            continue;
        }
        char esc[6] = {'\\', 0, '0', '0', hex[ch >> 4], hex[ch & 15]};
        size_t elen = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            elen = 6;
            break;
        }
        if ((rc = put_raw(out, run, (size_t)(p - run))) != 0 || (rc = put_raw(out, esc, elen)) != 0)
            return rc;
        run = ++p;
    }
    if ((rc = put_raw(out, run, (size_t)(p - run))) != 0)
        return rc;
    return put_raw(out, "\"", 1);
}

static int put_str(sw_buf_t *out, const char *s)
{
    return put_strn(out, s, strlen(s));
}

#define JSON_MAX_DEPTH 2048 /* jansson's parser limit; also ends a cycle */

/* Append v as compact JSON, byte for byte what json_dumps(v,
 * JSON_COMPACT | JSON_ENCODE_ANY) gives (objects in insertion order),
 * without jansson's per-dump and per-container allocations (its cycle
 * check). SW_ETOOLARGE at out's bound; SW_EINVAL for a string that is not
 * UTF-8 or nesting deeper than JSON_MAX_DEPTH (a cycle). out may hold a
 * partial value after an error: the encoders undo. */
static int put_json(sw_buf_t *out, const json_t *v, int depth)
{
    int rc;
    if (!v || depth > JSON_MAX_DEPTH)
        return SW_EINVAL;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if ((rc = PUT_LIT(out, "{")) != 0)
            return rc;
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if ((!first && (rc = PUT_LIT(out, ",")) != 0) ||
                (rc = put_strn(out, json_object_iter_key(it), json_object_iter_key_len(it))) != 0 ||
                (rc = PUT_LIT(out, ":")) != 0 ||
                (rc = put_json(out, json_object_iter_value(it), depth + 1)) != 0)
                return rc;
            first = 0;
        }
        return PUT_LIT(out, "}");
    }
    case JSON_ARRAY: {
        if ((rc = PUT_LIT(out, "[")) != 0)
            return rc;
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if ((i && (rc = PUT_LIT(out, ",")) != 0) ||
                (rc = put_json(out, json_array_get(v, i), depth + 1)) != 0)
                return rc;
        }
        return PUT_LIT(out, "]");
    }
    case JSON_STRING:
        return put_strn(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i >= 0)
            return put_u64(out, (uint64_t)i);
        if ((rc = PUT_LIT(out, "-")) != 0)
            return rc;
        return put_u64(out, (uint64_t)(-(i + 1)) + 1);
    }
    case JSON_REAL: {
        /* jansson's "%.17g" with its ".0" and exponent rules: rare, kept
         * as jansson writes it. */
        char tmp[64];
        size_t n = json_dumpb(v, tmp, sizeof(tmp), JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0 || n > sizeof(tmp))
            return SW_EINVAL;
        return put_raw(out, tmp, n);
    }
    case JSON_TRUE:
        return PUT_LIT(out, "true");
    case JSON_FALSE:
        return PUT_LIT(out, "false");
    case JSON_NULL:
        return PUT_LIT(out, "null");
    }
    return SW_EINVAL;
}

int sw_msg_encode_welcome(sw_buf_t *out, const char *token, const char *conn_id,
                          const char *conn_token, int resumed, uint64_t seq)
{
    if (!token || !conn_id || !conn_token || seq > (uint64_t)INT64_MAX)
        return SW_EINVAL;
    size_t start = out->len;
    int rc = PUT_LIT(out, "{\"type\":\"welcome\",\"token\":");
    if (!rc)
        rc = put_str(out, token);
    if (!rc)
        rc = PUT_LIT(out, ",\"conn_id\":");
    if (!rc)
        rc = put_str(out, conn_id);
    if (!rc)
        rc = PUT_LIT(out, ",\"conn_token\":");
    if (!rc)
        rc = put_str(out, conn_token);
    if (!rc && resumed)
        rc = PUT_LIT(out, ",\"resumed\":true");
    if (!rc && seq) {
        rc = PUT_LIT(out, ",\"seq\":");
        if (!rc)
            rc = put_u64(out, seq);
    }
    if (!rc)
        rc = PUT_LIT(out, "}");
    return rc ? undo(out, start, rc) : 0;
}

size_t sw_msg_delta_head(char *buf, size_t cap, uint64_t seq)
{
    static const char pre[] = "{\"type\":\"delta\",\"seq\":";
    if (!buf || seq > (uint64_t)INT64_MAX)
        return 0;
    char tmp[SW_U64_DIGITS];
    size_t nd = sw_u64_dec(tmp, seq);
    size_t len = sizeof(pre) - 1 + nd;
    if (cap < len + 1)
        return 0;
    memcpy(buf, pre, sizeof(pre) - 1);
    memcpy(buf + sizeof(pre) - 1, tmp, nd);
    buf[len] = '\0';
    return len;
}

/* ,"delta":{...}[,"events":[...]][,"full":true]} */
static int put_delta_tail(sw_buf_t *out, const json_t *delta, const json_t *events, int full)
{
    int rc = PUT_LIT(out, ",\"delta\":");
    if (!rc)
        rc = delta ? put_json(out, delta, 0) : PUT_LIT(out, "{}");
    if (!rc && events && json_array_size(events) > 0) {
        rc = PUT_LIT(out, ",\"events\":");
        if (!rc)
            rc = put_json(out, events, 0);
    }
    if (!rc && full)
        rc = PUT_LIT(out, ",\"full\":true");
    if (!rc)
        rc = PUT_LIT(out, "}");
    return rc;
}

static int delta_args_ok(const json_t *delta, const json_t *events)
{
    return (!delta || json_is_object(delta)) && (!events || json_is_array(events));
}

int sw_msg_encode_delta_tail(sw_buf_t *out, const json_t *delta, const json_t *events, int full)
{
    if (!delta_args_ok(delta, events))
        return SW_EINVAL;
    size_t start = out->len;
    int rc = put_delta_tail(out, delta, events, full);
    return rc ? undo(out, start, rc) : 0;
}

int sw_msg_encode_delta(sw_buf_t *out, uint64_t seq, int64_t id, const json_t *delta,
                        const json_t *events, int full)
{
    if (seq > (uint64_t)INT64_MAX || !delta_args_ok(delta, events))
        return SW_EINVAL;
    char head[SW_MSG_DELTA_HEAD_MAX];
    size_t hlen = sw_msg_delta_head(head, sizeof(head), seq);
    size_t start = out->len;
    int rc = put_raw(out, head, hlen);
    if (!rc && id >= 0) {
        rc = PUT_LIT(out, ",\"id\":");
        if (!rc)
            rc = put_u64(out, (uint64_t)id);
    }
    if (!rc)
        rc = put_delta_tail(out, delta, events, full);
    return rc ? undo(out, start, rc) : 0;
}

int sw_msg_encode_error(sw_buf_t *out, int64_t id, sw_errc_t code, const char *message)
{
    if ((int)code <= SW_ERRC_NONE || code >= SW_ERRC__COUNT)
        return SW_EINVAL;
    size_t start = out->len;
    int rc = PUT_LIT(out, "{\"type\":\"error\"");
    if (!rc && id >= 0) {
        rc = PUT_LIT(out, ",\"id\":");
        if (!rc)
            rc = put_u64(out, (uint64_t)id);
    }
    if (!rc)
        rc = PUT_LIT(out, ",\"code\":\"");
    if (!rc)
        rc = put_raw(out, sw_errc_name(code), strlen(sw_errc_name(code))); /* [a-z_]: no escapes */
    if (!rc)
        rc = PUT_LIT(out, "\"");
    if (!rc && message && *message) {
        rc = PUT_LIT(out, ",\"message\":");
        if (!rc)
            rc = put_str(out, message);
    }
    if (!rc)
        rc = PUT_LIT(out, "}");
    return rc ? undo(out, start, rc) : 0;
}
