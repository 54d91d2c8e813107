/* conn_http.c — HTTP/1.1 conns (http-parser): every conn starts here
 * (sw_conn_new). Request parsing with its bounds (head and body sizes,
 * header count, the request line's version) and its phase timeouts
 * (idle, head, body: 408), one request at a time (pipelined requests wait
 * in `in` until the reply), dispatch to the upper layer (env->on_http),
 * replies and JSON errors, the bound on answers queued for a client that
 * pipelines without reading, and the request side of the WebSocket
 * handshake (RFC 6455 §4.2.1: the checks, on_open, then conn_ws.c takes
 * the conn over). Its hooks (http_ops) give conn.c the input, the timer
 * and the resumption of pipelined requests. */
#include "worker/conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/conn_int.h"

#define MAX_HEADERS 64 /* request headers; 431 above */
#define DEFAULT_MAX_HEADER 8192
#define DEFAULT_MAX_BODY (1024 * 1024)
/* Bytes of an error message that go into an error body (sw_conn_http_error). */
#define ERROR_MESSAGE_MAX 200

enum { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };
/* http_state_t.line_state: before the request line (empty lines before it
 * are skipped, RFC 9112 §2.2), inside it, or past its LF. */
enum { LINE_START = 0, LINE_IN, LINE_DONE };

/* Parser state of the request being read; allocated while a request is in
 * progress, freed when the conn is idle or upgraded. */
typedef struct sw_conn_http {
    http_parser parser;
    sw_buf_t hb; /* url \0 (name \0 value \0)* [path \0 query \0] */
    sw_buf_t body;
    size_t url_len;
    uint32_t name_off[MAX_HEADERS];
    uint32_t val_off[MAX_HEADERS];
    int nhdr;
    int last;   /* LAST_*: which callback appended last */
    int in_msg; /* a request has begun and not completed */
    int headers_done;
    int complete;     /* on_message_complete seen, not dispatched yet */
    int error_status; /* 413 / 431 decided in a callback */
    int keep_alive;
    size_t head_bytes; /* bytes fed while the head was incomplete */
    /* The request line's version, checked here (http-parser accepts
     * "HTTX/1.1" and HTTP/0.9 lines): LINE_* state, and the last bytes
     * of the line before its LF. */
    int line_state;
    char line_tail[10];
    size_t line_tail_n;
    const char *bad_why; /* a malformed head found by a callback (400) */
} http_state_t;

static size_t max_header(const sw_conn_env_t *env)
{
    return env->max_header_bytes ? env->max_header_bytes : DEFAULT_MAX_HEADER;
}

/* Answers queued for an HTTP client before its pipelined requests wait
 * (max_send_bytes, as for the other kinds of output). */
static size_t http_out_bound(const sw_conn_env_t *env)
{
    return env->max_send_bytes ? env->max_send_bytes : (size_t)4 << 20;
}

static size_t max_body(const sw_conn_env_t *env)
{
    return env->max_body_bytes ? env->max_body_bytes : DEFAULT_MAX_BODY;
}

void sw_conn__http_drop(sw_conn_t *c)
{
    if (!c->hs)
        return;
    sw_buf_destroy(&c->hs->hb);
    sw_buf_destroy(&c->hs->body);
    free(c->hs);
    c->hs = NULL;
}

/* Start an HTTP phase (idle, head or body) now: it must end within
 * http_timeout_ms (RFC 9110 §15.5.9). Only the stamp moves: the timer was
 * armed for an earlier phase's deadline (phases start in order), and
 * http_timer re-arms it for this one when it fires. */
static void http_phase_start(sw_conn_t *c)
{
    uint32_t ms = c->env->http_timeout_ms;
    c->deadline = ms ? ev_now(c->env->loop) + ms / 1000. : 0.;
}

/* After the phase stamp was set outside the timer's reach (the timer is
 * stopped while a reply is owed): arm it for the deadline. */
static void http_timer_arm(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->deadline <= 0. || ev_is_active(&c->timer))
        return;
    ev_tstamp after = c->deadline - ev_now(env->loop);
    ev_timer_set(&c->timer, after > 0. ? after : 0., 0.);
    ev_timer_start(env->loop, &c->timer);
}

/* ---- parsing ------------------------------------------------------------ */

static int hb_add(http_state_t *hs, sw_conn_t *c, const char *p, size_t n)
{
    if (hs->hb.len + n > max_header(c->env)) {
        hs->error_status = 431;
        return -1;
    }
    sw_buf_append(&hs->hb, p, n);
    return 0;
}

static int hp_message_begin(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    http_phase_start(c); /* head: from its first byte */
    sw_buf_reset(&hs->hb);
    sw_buf_destroy(&hs->body);
    hs->url_len = 0;
    hs->nhdr = 0;
    hs->last = LAST_NONE;
    hs->in_msg = 1;
    hs->headers_done = 0;
    hs->complete = 0;
    hs->head_bytes = 0;
    return 0;
}

static int hp_url(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    c->hs->last = LAST_URL;
    c->hs->url_len += len;
    return hb_add(c->hs, c, at, len);
}

/* A field name is a token (RFC 9110 §5.1, §5.6.2): no whitespace (a space
 * before the colon is a smuggling vector, RFC 9112 §5.1), no delimiters. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int hp_header_field(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->headers_done)
        return 0; /* trailers are ignored */
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            hs->bad_why = "header field name is not a token";
            return -1;
        }
    }
    if (hs->last != LAST_FIELD) {
        if (hb_add(hs, c, "", 1)) /* ends the url or the previous value */
            return -1;
        if (hs->nhdr == MAX_HEADERS) {
            hs->error_status = 431;
            return -1;
        }
        hs->name_off[hs->nhdr] = (uint32_t)hs->hb.len;
        hs->val_off[hs->nhdr] = UINT32_MAX;
        hs->nhdr++;
        hs->last = LAST_FIELD;
    }
    return hb_add(hs, c, at, len);
}

static int hp_header_value(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->headers_done || hs->nhdr == 0)
        return 0;
    if (hs->last != LAST_VALUE) {
        if (hb_add(hs, c, "", 1))
            return -1;
        hs->val_off[hs->nhdr - 1] = (uint32_t)hs->hb.len;
        hs->last = LAST_VALUE;
    }
    return hb_add(hs, c, at, len);
}

static int hp_headers_complete(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hb_add(hs, c, "", 1))
        return -1;
    if (p->http_major != 1) { /* HTTP/1.0 and 1.1 only (RFC 9112 §2.3) */
        hs->bad_why = "HTTP/1.0 or HTTP/1.1 required";
        return -1;
    }
    hs->headers_done = 1;
    http_phase_start(c); /* body */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > max_body(c->env)) {
        hs->error_status = 413;
        return -1;
    }
    return 0;
}

static int hp_body(http_parser *p, const char *at, size_t len)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    if (hs->body.len + len > max_body(c->env)) {
        hs->error_status = 413;
        return -1;
    }
    sw_buf_append(&hs->body, at, len);
    return 0;
}

static int hp_message_complete(http_parser *p)
{
    sw_conn_t *c = p->data;
    http_state_t *hs = c->hs;
    hs->complete = 1;
    hs->in_msg = 0;
    hs->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* one request at a time: resume after the reply */
    return 0;
}

static const http_parser_settings hp_settings = {
    .on_message_begin = hp_message_begin,
    .on_url = hp_url,
    .on_header_field = hp_header_field,
    .on_header_value = hp_header_value,
    .on_headers_complete = hp_headers_complete,
    .on_body = hp_body,
    .on_message_complete = hp_message_complete,
};

static const char *req_header(const sw_http_request_t *req, const char *name)
{
    const http_state_t *hs = req->priv;
    for (int i = 0; i < hs->nhdr; i++) {
        if (strcasecmp(hs->hb.data + hs->name_off[i], name) == 0)
            return hs->val_off[i] == UINT32_MAX ? "" : hs->hb.data + hs->val_off[i];
    }
    return NULL;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Does the comma-separated header value contain `token` (case-
 * insensitive)? RFC 7230 §7. */
static int has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    if (!p)
        return 0;
    while (*p) {
        while (is_ows(*p) || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

/* Value with optional whitespace removed: *len gets its length. */
static const char *trimmed(const char *v, size_t *len)
{
    while (is_ows(*v))
        v++;
    size_t n = strlen(v);
    while (n && is_ows(v[n - 1]))
        n--;
    *len = n;
    return v;
}

/* Answer with an error decided here (not by the upper layer): the request being read
 * (or none) is the one answered. */
static void http_fail(sw_conn_t *c, int status, const char *code, const char *message,
                      const char *extra, int keep_alive)
{
    c->awaiting_reply = 1;
    c->keep_alive = keep_alive ? 1 : 0;
    sw_conn_http_error(c, status, code, message, extra);
}

/* ---- the WebSocket handshake, request side ---------------------------- */

/* A request for ws_path (GET, or any method without env->on_http): check
 * it as a WebSocket upgrade request (RFC 6455 §4.2.1) and answer the
 * errors; a valid one goes to on_open, and when accepted, to conn_ws.c. */
static void ws_handshake(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_conn_env_t *env = c->env;
    size_t vlen, klen;
    if (strcmp(req->method, "GET") != 0) {
        http_fail(c, 405, "method_not_allowed", "use GET", "Allow: GET\r\n", c->keep_alive);
        return;
    }
    if (!has_token(req->header(req, "Upgrade"), "websocket") ||
        !has_token(req->header(req, "Connection"), "upgrade")) {
        http_fail(c, 426, "upgrade_required", "WebSocket upgrade required",
                  "Upgrade: websocket\r\n", c->keep_alive);
        return;
    }
    const char *version = req->header(req, "Sec-WebSocket-Version");
    if (version)
        version = trimmed(version, &vlen);
    if (!version || vlen != 2 || memcmp(version, "13", 2) != 0) {
        http_fail(c, 426, "upgrade_required", "Sec-WebSocket-Version 13 required",
                  "Sec-WebSocket-Version: 13\r\n", c->keep_alive);
        return;
    }
    const char *key = req->header(req, "Sec-WebSocket-Key");
    char accept[29];
    if (key)
        key = trimmed(key, &klen);
    /* RFC 6455 §4.1: HTTP/1.1 or higher, the key exactly once (§11.3.1). */
    const http_state_t *hs = req->priv;
    int nkeys = 0;
    for (int i = 0; i < hs->nhdr; i++)
        nkeys += strcasecmp(hs->hb.data + hs->name_off[i], "Sec-WebSocket-Key") == 0;
    if (hs->parser.http_major != 1 || hs->parser.http_minor < 1) {
        http_fail(c, 400, "bad_request", "the WebSocket handshake needs HTTP/1.1", NULL, 0);
        return;
    }
    if (!key || nkeys != 1 || sw_ws_accept_key(key, klen, accept) != 0) {
        http_fail(c, 400, "bad_request", "missing or invalid Sec-WebSocket-Key", NULL, 0);
        return;
    }
    if (sw_conn__ws_ctx_new(c) != 0) {
        sw_conn__finish(c);
        return;
    }
    /* The upper layer may refuse (a forbidden Origin): then it has answered
     * the request, there is no upgrade and nothing is owed. No further
     * request is read either way (Connection: close on a refusal). */
    c->keep_alive = 0;
    if (env->on_open && env->on_open(c, req) != 0) {
        sw_conn__ws_ctx_free(c);
        if (!c->dead && c->awaiting_reply) {
            sw_log(SW_LOG_WARN, "conn %llu: on_open refused the upgrade without an answer",
                   (unsigned long long)c->id);
            http_fail(c, 403, "forbidden", "upgrade refused", NULL, 0);
        }
        return;
    }
    if (c->dead) { /* sw_conn_abort from on_open: accepted, so on_close is owed */
        /* The context goes now (unused): an HTTP conn releases none. */
        sw_conn__ws_ctx_free(c);
        c->opened = 1;
        return;
    }
    sw_conn__ws_open(c, accept);
}

/* ---- requests ----------------------------------------------------------- */

/* Dispatch the complete request in c->hs. */
static void http_dispatch(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    http_state_t *hs = c->hs;
    http_parser *p = &hs->parser;
    struct http_parser_url u;

    c->awaiting_reply = 1;
    c->deadline = 0.; /* none while the reply is owed */
    /* After an Upgrade request http-parser does not parse further input. */
    c->keep_alive = hs->keep_alive && !p->upgrade && !c->close_after_reply;
    c->head_req = p->method == HTTP_HEAD;
    http_parser_url_init(&u);
    if (http_parser_parse_url(hs->hb.data, hs->url_len, p->method == HTTP_CONNECT, &u) != 0) {
        http_fail(c, 400, "bad_request", "malformed request target", NULL, 0);
        return;
    }
    /* path and query are copied from the url in the same buffer: make room
     * first so that the source does not move. */
    sw_buf_reserve(&hs->hb, hs->url_len + 2);
    size_t path_off = hs->hb.len;
    if (u.field_set & (1 << UF_PATH))
        sw_buf_append(&hs->hb, hs->hb.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    sw_buf_append(&hs->hb, "", 1);
    size_t query_off = hs->hb.len;
    if (u.field_set & (1 << UF_QUERY))
        sw_buf_append(&hs->hb, hs->hb.data + u.field_data[UF_QUERY].off,
                      u.field_data[UF_QUERY].len);
    sw_buf_append(&hs->hb, "", 1);

    sw_http_request_t req = {
        .method = http_method_str((enum http_method)p->method),
        .path = hs->hb.data + path_off,
        .query = hs->hb.data + query_off,
        .body = hs->body.len ? hs->body.data : NULL,
        .body_len = hs->body.len,
        .header = req_header,
        .priv = hs,
    };
    /* No more input until the reply (requests are answered in order). */
    ev_io_stop(env->loop, &c->rio);
    /* GET on ws_path is the WebSocket handshake; other methods there (the
     * POST of messages for an event stream) go to on_http like any route. */
    if (env->ws_path && strcmp(req.path, env->ws_path) == 0 &&
        (strcmp(req.method, "GET") == 0 || !env->on_http))
        ws_handshake(c, &req);
    else if (env->on_http)
        env->on_http(c, &req);
    else
        http_fail(c, 404, "not_found", "no route", NULL, c->keep_alive);
    if (c->hs && c->mode == SW_CONN_MODE_HTTP) {
        sw_buf_reset(&c->hs->hb);
        sw_buf_destroy(&c->hs->body);
        c->hs->nhdr = 0;
    }
}

/* Answer input that cannot be parsed (status 400, 413 or 431, err the
 * parser's error), then close. */
static void http_bad_input(sw_conn_t *c, int status, enum http_errno err)
{
    char msg[128];
    const char *code = "bad_request";
    c->head_req = 0;
    if (status == 413) {
        code = "too_large";
        snprintf(msg, sizeof(msg), "request body over %zu bytes", max_body(c->env));
    } else if (status == 431) {
        code = "headers_too_large";
        snprintf(msg, sizeof(msg), "request head over %zu bytes or %d header fields",
                 max_header(c->env), MAX_HEADERS);
    } else {
        snprintf(msg, sizeof(msg), "malformed HTTP request: %s", http_errno_description(err));
    }
    http_fail(c, status, code, msg, NULL, 0);
}

/* Check the version of the request line being read in data[0..len)
 * ("HTTP/1." DIGIT before its CR LF, RFC 9112 §3): 0 while it is fine or
 * not complete yet, -1 when it is malformed. Scans no further than the
 * line's LF, so pipelined requests are left to the next round. */
static int request_line_check(http_state_t *hs, const char *data, size_t len)
{
    for (size_t i = 0; i < len && hs->line_state != LINE_DONE; i++) {
        char ch = data[i];
        if (hs->line_state == LINE_START) {
            if (ch == '\r' || ch == '\n')
                continue;
            hs->line_state = LINE_IN;
            hs->line_tail_n = 0;
        }
        if (ch != '\n') {
            if (hs->line_tail_n == sizeof(hs->line_tail)) {
                memmove(hs->line_tail, hs->line_tail + 1, sizeof(hs->line_tail) - 1);
                hs->line_tail_n--;
            }
            hs->line_tail[hs->line_tail_n++] = ch;
            continue;
        }
        hs->line_state = LINE_DONE;
        size_t n = hs->line_tail_n;
        if (n && hs->line_tail[n - 1] == '\r')
            n--;
        const char *t = hs->line_tail + (n >= 9 ? n - 9 : 0);
        if (n < 9 || memcmp(t, " HTTP/1.", 8) != 0 || t[8] < '0' || t[8] > '9')
            return -1;
    }
    return 0;
}

/* Parse requests from data; returns the bytes used. Stops at a request
 * waiting for its reply, at the upgrade (the rest is WebSocket input), or
 * when closing (the rest is dropped). */
static size_t http_input(sw_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    c->in_input = 1;
    while (off < len && !c->dead && !c->closing && !c->awaiting_reply && !c->http_blocked &&
           c->mode == SW_CONN_MODE_HTTP) {
        if (!c->hs) {
            c->hs = sw_xcalloc(1, sizeof(*c->hs));
            http_parser_init(&c->hs->parser, HTTP_REQUEST);
            c->hs->parser.data = c;
            sw_buf_init(&c->hs->hb, 0);
            sw_buf_init(&c->hs->body, 0);
        }
        http_state_t *hs = c->hs;
        size_t n = http_parser_execute(&hs->parser, &hp_settings, data + off, len - off);
        enum http_errno err = HTTP_PARSER_ERRNO(&hs->parser);
        if ((err == HPE_OK || err == HPE_PAUSED) && request_line_check(hs, data + off, n) != 0) {
            http_fail(c, 400, "bad_request", "malformed request line (HTTP/1.x required)", NULL, 0);
            off = len;
            break;
        }
        off += n;
        if (err != HPE_OK && err != HPE_PAUSED && hs->bad_why) {
            http_fail(c, 400, "bad_request", hs->bad_why, NULL, 0);
            off = len;
            break;
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            int status = hs->error_status             ? hs->error_status
                         : err == HPE_HEADER_OVERFLOW ? 431
                                                      : 400;
            sw_log(SW_LOG_DEBUG, "conn %llu: bad request (%s): %d", (unsigned long long)c->id,
                   http_errno_name(err), status);
            http_bad_input(c, status, err);
            off = len;
            break;
        }
        if (hs->in_msg && !hs->headers_done) {
            hs->head_bytes += n;
            if (hs->head_bytes > max_header(c->env)) {
                http_bad_input(c, 431, HPE_OK);
                off = len;
                break;
            }
        }
        if (hs->complete) {
            hs->complete = 0;
            hs->line_state = LINE_START; /* the next request's line */
            http_parser_pause(&hs->parser, 0);
            http_dispatch(c);
            if (c->mode != SW_CONN_MODE_HTTP)
                sw_conn__http_drop(c); /* upgraded or event stream: no more requests */
        } else if (n == 0) {
            break;
        }
    }
    c->in_input = 0;
    return off;
}

/* After input was parsed: hand leftover bytes of an upgraded conn to
 * wslay, drop input of a closing conn or an event stream, free idle
 * parser state. */
static void after_input(sw_conn_t *c)
{
    if (c->dead)
        return;
    if (c->mode == SW_CONN_MODE_SSE) {
        sw_buf_destroy(&c->in);
        sw_conn__http_drop(c);
        return;
    }
    if (c->mode == SW_CONN_MODE_WS && c->in.len) {
        sw_conn__ws_feed(c, c->in.data, c->in.len);
        sw_buf_destroy(&c->in);
        return;
    }
    if (c->closing)
        sw_buf_reset(&c->in);
    if (c->in.len == 0)
        sw_buf_destroy(&c->in);
    if (c->mode == SW_CONN_MODE_HTTP && c->hs && !c->hs->in_msg && !c->awaiting_reply && !c->in.len)
        sw_conn__http_drop(c);
}

static void http_read(sw_conn_t *c, const char *data, size_t len)
{
    size_t used;
    if (c->in.len) {
        sw_buf_append(&c->in, data, len);
        used = http_input(c, c->in.data, c->in.len);
        if (c->dead)
            return;
        sw_buf_consume(&c->in, used);
    } else {
        used = http_input(c, data, len);
        if (c->dead)
            return;
        if (used < len)
            sw_buf_append(&c->in, data + used, len - used);
    }
    after_input(c);
}

/* Continue with pipelined input after a reply (from the flush watcher). */
static void http_resume(sw_conn_t *c)
{
    if (c->mode != SW_CONN_MODE_HTTP || c->closing || c->awaiting_reply || !c->in.len)
        return;
    size_t used = http_input(c, c->in.data, c->in.len);
    if (c->dead)
        return;
    sw_buf_consume(&c->in, used);
    after_input(c);
}

/* The phase timer of an HTTP conn fired. While a reply is owed no
 * deadline runs: the timer stays stopped until sw_conn_http_reply starts
 * the idle phase. Past the phase's deadline: 408 and close (RFC 9110
 * §15.5.9); before it (a later phase started since the timer was armed):
 * re-arm. */
static void http_timer(sw_conn_t *c)
{
    sw_conn_env_t *env = c->env;
    if (c->awaiting_reply || c->deadline <= 0.)
        return;
    ev_tstamp left = c->deadline - ev_now(env->loop);
    if (left > SW_CONN_TIMER_SLACK) {
        ev_timer_set(&c->timer, left, 0.);
        ev_timer_start(env->loop, &c->timer);
        return;
    }
    const char *phase = !c->hs || !c->hs->in_msg ? "request"
                        : !c->hs->headers_done   ? "request head"
                                                 : "request body";
    char msg[96];
    snprintf(msg, sizeof(msg), "no complete %s within %u ms", phase,
             (unsigned)env->http_timeout_ms);
    sw_log(SW_LOG_INFO, "conn %llu: %s, closing (408)", (unsigned long long)c->id, msg);
    c->deadline = 0.;
    c->head_req = 0;
    http_fail(c, 408, "timeout", msg, NULL, 0);
}

/* Input of an HTTP conn (or of one whose upgrade is not through yet):
 * parsed, unless the conn is closing (drained). */
static void http_on_input(sw_conn_t *c, const char *data, size_t len)
{
    if (c->shut_wr || c->closing)
        return; /* draining */
    http_read(c, data, len);
}

static const sw_conn__ops_t http_ops = {
    .input = http_on_input,
    .timer = http_timer,
    .resume = http_resume,
    .release = sw_conn__http_drop,
};

/* ---- public API ------------------------------------------------------- */

sw_conn_t *sw_conn_new(sw_conn_env_t *env, int fd)
{
    sw_conn_t *c = sw_conn__open(env, fd, &http_ops);
    if (!c)
        return NULL;
    http_phase_start(c); /* idle: the first request is due */
    http_timer_arm(c);
    return c;
}

void sw_conn_http_reply(sw_conn_t *c, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t len)
{
    if (c->dead || c->mode != SW_CONN_MODE_HTTP || !c->awaiting_reply) {
        if (!c->dead)
            sw_log(SW_LOG_WARN, "conn %llu: HTTP reply without a pending request",
                   (unsigned long long)c->id);
        return;
    }
    c->awaiting_reply = 0;
    int close_after = !c->keep_alive || c->close_after_reply || c->closing;
    sw_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, http_status_str((enum http_status)status));
    if (content_type)
        sw_buf_printf(&c->out, "Content-Type: %s\r\n", content_type);
    /* 204 and 304 have no content: no Content-Length (RFC 9110 §8.6: a
     * 304's would have to be the full representation's length). */
    int no_content = status == 204 || status == 304;
    if (!no_content)
        sw_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
    if (extra_headers)
        sw_buf_append_str(&c->out, extra_headers);
    if (close_after)
        sw_buf_append_str(&c->out, "Connection: close\r\n");
    sw_buf_append(&c->out, "\r\n", 2);
    if (!c->head_req && len && !no_content)
        sw_buf_append(&c->out, body, len);
    sw_conn__mark_pending(c);
    if (close_after) {
        sw_conn__start_closing(c);
        return;
    }
    http_phase_start(c); /* idle until the next request's first byte */
    http_timer_arm(c);
    if (c->out.len >= http_out_bound(c->env)) {
        /* A client that pipelines requests and reads no answers: read and
         * parse nothing more until its answers have left (conn_flush). */
        c->http_blocked = 1;
        return;
    }
    if (!ev_is_active(&c->rio))
        ev_io_start(c->env->loop, &c->rio);
    if (!c->in_input && c->in.len)
        c->need_parse = 1;
}

void sw_conn_http_error(sw_conn_t *c, int status, const char *code, const char *message,
                        const char *extra_headers)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal_error\",\"message\":\"\"}}";
    const char *msg = message ? message : "";
    /* A cut at the byte bound may split a character: keep whole ones. */
    size_t len = sw_utf8_valid_prefix(msg, strnlen(msg, ERROR_MESSAGE_MAX));
    json_t *obj =
        json_pack("{s:{s:s,s:s%}}", "error", "code", code ? code : "", "message", msg, len);
    char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (!body)
        sw_log(SW_LOG_WARN, "conn %llu: cannot encode the error body (code not UTF-8?)",
               (unsigned long long)c->id);
    sw_conn_http_reply(c, status, "application/json", extra_headers, body ? body : fallback,
                       body ? strlen(body) : sizeof(fallback) - 1);
    free(body);
    json_decref(obj);
}
