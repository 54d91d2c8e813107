#include "proto/msg.h"

#include <stdarg.h>
#include <stdio.h>
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
    /* Keep only the known fields. */
    out->router = json_object();
    json_object_set(out->router, "path", path);
    if (query)
        json_object_set(out->router, "query", query);
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

sw_errc_t sw_msg_decode(const char *data, size_t len, sw_msg_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    out->id = -1;
    if (why && whylen)
        why[0] = '\0';

    sw_errc_t rc;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        set_why(why, whylen, "invalid JSON: %s (at byte %d)", jerr.text, jerr.position);
        rc = SW_ERRC_BAD_JSON;
        goto fail;
    }
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
    } else {
        set_why(why, whylen, "unknown type \"%.32s\"", t);
        rc = SW_ERRC_BAD_MESSAGE;
    }
    if (rc)
        goto fail;
    json_decref(root);
    return SW_ERRC_NONE;
fail:
    json_decref(root);
    json_decref(out->payload);
    out->payload = NULL;
    json_decref(out->router);
    out->router = NULL;
    return rc;
}

void sw_msg_destroy(sw_msg_t *m)
{
    if (!m)
        return;
    json_decref(m->payload);
    m->payload = NULL;
    json_decref(m->router);
    m->router = NULL;
}

/* ---- encode ------------------------------------------------------------- */

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return sw_buf_append(data, buffer, size) ? -1 : 0;
}

/* Append obj as compact JSON (insertion order); steals obj. A NULL obj
 * (a json_* constructor refused its input) is SW_EINVAL. */
static int dump_msg(sw_buf_t *out, json_t *obj)
{
    if (!obj)
        return SW_EINVAL;
    size_t start = out->len;
    int rc = 0;
    if (json_dump_callback(obj, dump_cb, out, JSON_COMPACT)) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        rc = SW_ETOOLARGE;
    }
    json_decref(obj);
    return rc;
}

/* Set key to a new value; a NULL value (invalid input) poisons obj. */
static int set_new(json_t *obj, const char *key, json_t *v)
{
    if (!v)
        return -1;
    return json_object_set_new(obj, key, v);
}

int sw_msg_encode_welcome(sw_buf_t *out, const char *token, const char *conn_id,
                          const char *conn_token, int resumed, uint64_t seq)
{
    if (!token || !conn_id || !conn_token || seq > (uint64_t)INT64_MAX)
        return SW_EINVAL;
    json_t *o = json_object();
    int bad = set_new(o, "type", json_string("welcome"));
    bad |= set_new(o, "token", json_string(token));
    bad |= set_new(o, "conn_id", json_string(conn_id));
    bad |= set_new(o, "conn_token", json_string(conn_token));
    if (resumed)
        bad |= set_new(o, "resumed", json_true());
    if (seq)
        bad |= set_new(o, "seq", json_integer((json_int_t)seq));
    if (bad) {
        json_decref(o);
        return SW_EINVAL;
    }
    return dump_msg(out, o);
}

int sw_msg_encode_delta(sw_buf_t *out, uint64_t seq, int64_t id, const json_t *delta,
                        const json_t *events, int full)
{
    if (seq > (uint64_t)INT64_MAX || (delta && !json_is_object(delta)) ||
        (events && !json_is_array(events)))
        return SW_EINVAL;
    json_t *o = json_object();
    int bad = set_new(o, "type", json_string("delta"));
    bad |= set_new(o, "seq", json_integer((json_int_t)seq));
    if (id >= 0)
        bad |= set_new(o, "id", json_integer((json_int_t)id));
    if (delta)
        bad |= json_object_set(o, "delta", (json_t *)delta);
    else
        bad |= set_new(o, "delta", json_object());
    if (events && json_array_size(events) > 0)
        bad |= json_object_set(o, "events", (json_t *)events);
    if (full)
        bad |= set_new(o, "full", json_true());
    if (bad) {
        json_decref(o);
        return SW_EINVAL;
    }
    return dump_msg(out, o);
}

int sw_msg_encode_error(sw_buf_t *out, int64_t id, sw_errc_t code, const char *message)
{
    if ((int)code <= SW_ERRC_NONE || code >= SW_ERRC__COUNT)
        return SW_EINVAL;
    json_t *o = json_object();
    int bad = set_new(o, "type", json_string("error"));
    if (id >= 0)
        bad |= set_new(o, "id", json_integer((json_int_t)id));
    bad |= set_new(o, "code", json_string(sw_errc_name(code)));
    if (message && *message)
        bad |= set_new(o, "message", json_string(message));
    if (bad) {
        json_decref(o);
        return SW_EINVAL;
    }
    return dump_msg(out, o);
}
