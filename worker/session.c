#include "worker/session.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/token.h"
#include "worker/worker.h"

static sw_session_t *session_new(sw_worker_t *w, sw_conn_t *c, int sse)
{
    sw_session_t *s = sw_xcalloc(1, sizeof(*s));
    s->w = w;
    s->conn = c;
    s->sse = sse;
    snprintf(s->sockid, sizeof(s->sockid), "%s.%llu", w->holder_id,
             (unsigned long long)sw_conn_id(c));
    LIST_INSERT_HEAD(&w->sessions, s, w_link);
    SW_STAT_ADD(w->stats, ws_open, 1);
    SW_STAT_ADD(w->stats, sse_open, sse ? 1 : 0); /* metrics */
    if (sse) {
        /* An event stream's conn_id names its worker: POSTs from any host
         * are routed to it ("<holder id>_<n>"). */
        snprintf(s->conn_id, sizeof(s->conn_id), "%s_%llu", w->holder_id,
                 (unsigned long long)sw_conn_id(c));
    } else {
        sw_random_hex(s->conn_id, 8);
    }
    sw_random_hex(s->conn_token, 16);
    sw_conn_set_udata(c, s);
    return s;
}

int sw_session_on_open(sw_conn_t *c, const sw_http_request_t *req)
{
    (void)req;
    /* Until on_open the conn's udata is the worker (set by sw_worker on
     * accept); from here on it is the session. */
    session_new(sw_conn_udata(c), c, 0);
    return 0;
}

/* The "type" of an encoded server message (encoders write it first) and,
 * for a delta, its seq: the SSE event name and id. */
static void sse_fields(const char *data, size_t len, char *type, size_t tl, char *id, size_t il)
{
    type[0] = id[0] = '\0';
    const char *p = memmem(data, len, "\"type\":\"", 8);
    if (p) {
        p += 8;
        size_t n = 0;
        while (p + n < data + len && p[n] != '"' && n + 1 < tl)
            n++;
        memcpy(type, p, n);
        type[n] = '\0';
    }
    if (strcmp(type, "delta") == 0) {
        const char *q = memmem(data, len, "\"seq\":", 6);
        if (q)
            snprintf(id, il, "%llu", strtoull(q + 6, NULL, 10));
    }
}

int sw_session_send(sw_session_t *s, const char *data, size_t len)
{
    if (s->closing)
        return SW_ECLOSED;
    if (s->sse) {
        char type[32], id[24];
        sse_fields(data, len, type, sizeof(type), id, sizeof(id));
        return sw_conn_sse_send(s->conn, type[0] ? type : "message", id[0] ? id : NULL, data, len);
    }
    return sw_conn_send(s->conn, data, len);
}

int sw_session_sendv(sw_session_t *s, const struct iovec *iov, int iovcnt)
{
    if (s->closing)
        return SW_ECLOSED;
    if (!s->sse)
        return sw_conn_sendv(s->conn, iov, iovcnt);
    if (iovcnt < 0)
        return SW_EINVAL;
    sw_buf_t b; /* an event stream needs the message in one piece */
    sw_buf_init(&b, 0);
    (void)sw_buf_appendv(&b, iov, iovcnt); /* unbounded buffer: cannot fail */
    int rc = sw_session_send(s, b.data ? b.data : "", b.len);
    sw_buf_destroy(&b);
    return rc;
}

void sw_session_send_error(sw_session_t *s, int64_t id, sw_errc_t code, const char *message)
{
    if ((unsigned)code < SW_STATS_ERRC_MAX)
        SW_STAT_ADD(s->w->stats, errors[code], 1); /* metrics */
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_msg_encode_error(&b, id, code, message);
    sw_session_send(s, b.data, b.len);
    sw_buf_destroy(&b);
}

void sw_session_close(sw_session_t *s, uint16_t code, const char *reason)
{
    if (s->closing)
        return;
    s->closing = 1;
    sw_conn_close(s->conn, code, reason);
}

static void on_hello(sw_session_t *s, sw_msg_t *m)
{
    sw_worker_t *w = s->w;
    if (s->tok) {
        sw_session_send_error(s, -1, SW_ERRC_BAD_MESSAGE, "hello already received");
        return;
    }
    char token[SW_TOKEN_MAX + 1];
    if (m->token[0])
        snprintf(token, sizeof(token), "%s", m->token);
    else
        sw_random_hex(token, 16);
    /* A resume is checked against the token's stored credentials when the
     * HELLO runs in the token's queue (it needs the token's state). */
    json_t *payload = NULL;
    if (m->has_resume)
        payload = json_pack("{s:{s:s,s:s,s:I}}", "resume", "conn_id", m->conn_id, "conn_token",
                            m->conn_token, "last_seq", (json_int_t)m->last_seq);
    sw_token_t *t = sw_token_get(w, token);
    sw_token_attach(t, s);
    sw_token_enqueue(t, sw_event_new(SW_EV_HELLO, -1, s, "hello", payload, NULL));
    sw_conn_ws_greeted(s->conn); /* the hello came in time (--http-timeout-ms) */
}

static void on_event(sw_session_t *s, sw_msg_t *m)
{
    sw_worker_t *w = s->w;
    if (!s->tok) {
        sw_session_send_error(s, m->id, SW_ERRC_BAD_MESSAGE, "send hello first");
        return;
    }
    if (w->draining) {
        sw_session_send_error(s, m->id, SW_ERRC_STATE_UNAVAILABLE,
                              "server is shutting down; reconnect and retry");
        return;
    }
    int hydrate = strcmp(m->name, "hydrate") == 0;
    json_t *payload = m->payload;
    json_t *router = m->router;
    if (router) { /* the page the client is on: used to rehydrate expired state */
        free(s->router);
        s->router = json_dumps(router, JSON_COMPACT);
    }
    m->payload = NULL;
    m->router = NULL;
    sw_event_t *ev =
        sw_event_new(hydrate ? SW_EV_HYDRATE : SW_EV_CLIENT, m->id, s, m->name, payload, router);
    sw_token_enqueue(s->tok, ev);
}

void sw_session_on_message(sw_conn_t *c, const char *data, size_t len)
{
    sw_session_t *s = sw_conn_udata(c);
    if (!s || s->closing)
        return;
    sw_msg_t m;
    memset(&m, 0, sizeof(m));
    m.id = -1;
    char why[256] = "";
    sw_errc_t err = sw_msg_decode(data, len, &m, why, sizeof(why));
    if (err != SW_ERRC_NONE) {
        SW_STAT_ADD(s->w->stats, events_error, 1);
        sw_session_send_error(s, m.id, err, why[0] ? why : sw_errc_name(err));
        sw_msg_destroy(&m);
        return;
    }
    if (m.type == SW_MSG_HELLO)
        on_hello(s, &m);
    else
        on_event(s, &m);
    sw_msg_destroy(&m);
}

void sw_session_on_close(sw_conn_t *c)
{
    sw_session_t *s = sw_conn_udata(c);
    if (!s)
        return;
    if (s->tok)
        sw_token_detach(s->tok, s);
    LIST_REMOVE(s, w_link);
    SW_STAT_SUB(s->w->stats, ws_open, 1);
    SW_STAT_SUB(s->w->stats, sse_open, s->sse ? 1 : 0); /* metrics */
    sw_conn_set_udata(c, NULL);
    free(s->router);
    free(s);
}

/* ---- SSE ---------------------------------------------------------------- */

/* Value of `key` in a query string, percent-decoded, into out; only
 * [A-Za-z0-9_-] are accepted. 1 found, 0 absent, -1 bad. */
static int query_get(const char *query, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t n = 0;
            for (size_t i = kl + 1; i < seg; i++) {
                char c = p[i];
                if (c == '%' && i + 2 < seg + 1 && i + 2 <= seg - 1) {
                    char hex[3] = {p[i + 1], p[i + 2], 0};
                    c = (char)strtol(hex, NULL, 16);
                    i += 2;
                }
                int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '-';
                if (!ok || n + 1 >= outlen)
                    return -1;
                out[n++] = c;
            }
            out[n] = '\0';
            return n > 0 ? 1 : 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

static void http_error(sw_conn_t *c, int status, const char *code, const char *msg)
{
    sw_conn_http_error(c, status, code, msg, NULL);
}

void sw_session_sse_open(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_worker_t *w = sw_conn_udata(c);
    char token[SW_TOKEN_MAX + 1], cid[SW_CONN_ID_MAX + 1], ctok[SW_CONN_ID_MAX + 1], last[24];
    int ht = query_get(req->query, "token", token, sizeof(token));
    int hc = query_get(req->query, "conn_id", cid, sizeof(cid));
    int hk = query_get(req->query, "conn_token", ctok, sizeof(ctok));
    int hl = query_get(req->query, "last_seq", last, sizeof(last));
    const char *lei = req->header(req, "Last-Event-ID");
    if (ht < 0 || hc < 0 || hk < 0 || hl < 0 || (hc > 0) != (hk > 0)) {
        http_error(c, 400, "bad_message", "token, conn_id, conn_token: [A-Za-z0-9_-], 1..64");
        return;
    }
    uint64_t last_seq = 0;
    int have_last = 0;
    if (lei && *lei) {
        last_seq = strtoull(lei, NULL, 10);
        have_last = 1;
    } else if (hl > 0) {
        last_seq = strtoull(last, NULL, 10);
        have_last = 1;
    }
    if (w->draining) {
        http_error(c, 503, "state_unavailable", "server is shutting down; reconnect");
        return;
    }
    if (sw_conn_sse_start(c) != 0)
        return;
    sw_session_t *s = session_new(w, c, 1);
    if (ht <= 0)
        sw_random_hex(token, 16);
    json_t *payload = NULL;
    if (hc > 0)
        payload = json_pack("{s:{s:s,s:s,s:I}}", "resume", "conn_id", cid, "conn_token", ctok,
                            "last_seq", (json_int_t)last_seq);
    else if (have_last)
        /* EventSource's own reconnect: same URL, Last-Event-ID */
        payload = json_pack("{s:{s:b,s:I}}", "resume", "sse", 1, "last_seq", (json_int_t)last_seq);
    sw_token_t *t = sw_token_get(w, token);
    sw_token_attach(t, s);
    sw_token_enqueue(t, sw_event_new(SW_EV_HELLO, -1, s, "hello", payload, NULL));
}

static sw_session_t *find_stream(sw_worker_t *w, const char *cid)
{
    sw_session_t *s;
    LIST_FOREACH(s, &w->sessions, w_link)
    {
        if (s->sse && !s->closing && strcmp(s->conn_id, cid) == 0)
            return s;
    }
    return NULL;
}

/* Queue the messages of a POST body on the local stream. Returns how many
 * were accepted, or a negative HTTP status. */
static int post_local(sw_worker_t *w, json_t *body)
{
    const char *cid = json_string_value(json_object_get(body, "conn_id"));
    const char *ctok = json_string_value(json_object_get(body, "conn_token"));
    json_t *msgs = json_object_get(body, "messages");
    sw_session_t *s = cid ? find_stream(w, cid) : NULL;
    if (!s)
        return -404;
    if (!ctok || !sw_secure_equal(ctok, strlen(ctok), s->conn_token, strlen(s->conn_token)))
        return -403;
    size_t i;
    json_t *m;
    int n = 0;
    json_array_foreach(msgs, i, m)
    {
        char *text = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            continue;
        sw_session_on_message(s->conn, text, strlen(text));
        free(text);
        n++;
    }
    return n;
}

typedef struct post_fwd {
    sw_conn_t *c; /* the HTTP conn waits for this reply (conn.c keeps it) */
    sw_worker_t *w;
    int n;
} post_fwd_t;

static void on_forwarded(void *udata, int status)
{
    post_fwd_t *pf = udata;
    char body[64];
    if (status == 0) {
        int len = snprintf(body, sizeof(body), "{\"accepted\":%d}", pf->n);
        sw_conn_http_reply(pf->c, 202, "application/json", "Cache-Control: no-store\r\n", body,
                           (size_t)len);
    } else {
        http_error(pf->c, 503, "state_unavailable", "could not reach the stream's worker; retry");
    }
    free(pf);
}

void sw_session_sse_post(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_worker_t *w = sw_conn_udata(c);
    json_error_t err;
    json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, &err) : NULL;
    json_t *msgs = json_object_get(body, "messages");
    const char *cid = json_string_value(json_object_get(body, "conn_id"));
    if (!json_is_object(body) || !json_is_array(msgs) || !cid ||
        !json_is_string(json_object_get(body, "conn_token"))) {
        http_error(c, 400, body ? "bad_message" : "bad_json",
                   "body must be {\"conn_id\",\"conn_token\",\"messages\":[...]}");
        json_decref(body);
        return;
    }
    int mine;
    size_t hl = sw_worker_id_holder(w, cid, '_', &mine);
    if (!strchr(cid, '_') || mine) {
        int n = post_local(w, body);
        if (n == -404)
            http_error(c, 404, "bad_resume", "no such event stream");
        else if (n == -403)
            http_error(c, 403, "bad_resume", "wrong conn_token");
        else {
            char out[64];
            int len = snprintf(out, sizeof(out), "{\"accepted\":%d}", n);
            sw_conn_http_reply(c, 202, "application/json", "Cache-Control: no-store\r\n", out,
                               (size_t)len);
        }
        json_decref(body);
        return;
    }
    /* The stream lives in another worker (here or on another host). */
    char inbox[80];
    snprintf(inbox, sizeof(inbox), "inbox:%.*s", (int)SW_MIN(hl, 60), cid);
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_buf_append(&b, "E:", 2);
    sw_buf_append(&b, req->body, req->body_len);
    post_fwd_t *pf = sw_xcalloc(1, sizeof(*pf));
    pf->c = c;
    pf->w = w;
    pf->n = (int)json_array_size(msgs);
    if (sw_store_publish_acked(w->store, inbox, b.data, b.len, on_forwarded, pf) != 0) {
        free(pf);
        http_error(c, 400, "bad_resume", "bad conn_id");
    }
    sw_buf_destroy(&b);
    json_decref(body);
}

void sw_session_sse_forwarded(sw_worker_t *w, const char *data, size_t len)
{
    json_t *body = json_loadb(data, len, 0, NULL);
    if (json_is_object(body)) {
        int n = post_local(w, body);
        if (n < 0)
            sw_log(SW_LOG_INFO, "forwarded POST refused (%d): unknown stream or conn_token", -n);
    }
    json_decref(body);
}
