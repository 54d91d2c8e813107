#include "worker/session.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/credentials.h"
#include "worker/token.h"
#include "worker/wctx.h"

static void http_error(sw_conn_t *c, int status, const char *code, const char *msg);
static const sw_peer_ops_t SESSION_PEER;

static sw_session_t *session_new(sw_worker_t *w, sw_conn_t *c, int sse)
{
    sw_session_t *s = sw_xcalloc(1, sizeof(*s));
    s->peer.ops = &SESSION_PEER;
    s->w = w;
    s->conn = c;
    s->peer.sse = sse ? 1 : 0;
    snprintf(s->peer.sockid, sizeof(s->peer.sockid), "%s.%llu", w->holder_id,
             (unsigned long long)sw_conn_id(c));
    LIST_INSERT_HEAD(&w->sessions, s, w_link);
    SW_STAT_ADD(w->stats, ws_open, 1);
    SW_STAT_ADD(w->stats, sse_open, sse ? 1 : 0); /* metrics */
    if (sse) {
        /* An event stream's conn_id names its worker, and both credentials
         * are signed (worker/credentials.h): POSTs from any host are
         * checked where they land, then routed to it. */
        (void)sw_cred_stream_id(&w->cred_key, w->holder_id, sw_conn_id(c), s->peer.conn_id,
                                sizeof(s->peer.conn_id));
        sw_cred_stream_token(&w->cred_key, s->peer.conn_id, s->peer.conn_token);
    } else {
        sw_random_hex(s->peer.conn_id, 8);
        sw_random_hex(s->peer.conn_token, 16);
    }
    TAILQ_INIT(&s->held);
    s->max_id = -1;
    s->bucket = (double)w->cfg->max_events_per_s; /* a full second's worth */
    s->bucket_ms = sw_now_ms();
    sw_conn_set_udata(c, s);
    return s;
}

/* Take one event from the connection's token bucket (cfg->max_events_per_s
 * per second, at most one second's worth saved up). 1 when allowed. */
static int rate_take(sw_session_t *s)
{
    uint32_t rate = s->w->cfg->max_events_per_s;
    if (!rate)
        return 1;
    uint64_t now = sw_now_ms();
    double refill = (double)(now - s->bucket_ms) * rate / 1000.0;
    s->bucket = SW_MIN((double)rate, s->bucket + refill);
    s->bucket_ms = now;
    if (s->bucket < 1.0)
        return 0;
    s->bucket -= 1.0;
    return 1;
}

static void free_headers(sw_session_t *s)
{
    free(s->hdr_cookie);
    free(s->hdr_origin);
    free(s->hdr_authorization);
    s->hdr_cookie = s->hdr_origin = s->hdr_authorization = NULL;
}

/* ---- the peer interface (worker/peer.h) -------------------------------- */

static const char *const OUT_EVENT[] = {
    [SW_OUT_WELCOME] = "welcome", [SW_OUT_DELTA] = "delta", [SW_OUT_ERROR] = "error"};

/* A WebSocket message, or an event-stream event ("event:" the message's
 * kind, "id:" a delta's seq: from the metadata, not from the JSON). */
static int peer_send(sw_peer_t *p, const sw_out_t *out, const struct iovec *iov, int iovcnt)
{
    sw_session_t *s = sw_session_of(p);
    if (out->kind == SW_OUT_ERROR && (unsigned)out->code < SW_STATS_ERRC_MAX)
        SW_STAT_ADD(s->w->stats, errors[out->code], 1); /* metrics */
    if (!p->sse)
        return sw_conn_sendv(s->conn, iov, iovcnt);
    if (iovcnt < 0)
        return SW_EINVAL;
    char id[SW_U64_DIGITS + 1];
    if (out->kind == SW_OUT_DELTA)
        id[sw_u64_dec(id, out->seq)] = '\0';
    const char *event = (unsigned)out->kind < SW_ARRAY_SIZE(OUT_EVENT) && OUT_EVENT[out->kind]
                            ? OUT_EVENT[out->kind]
                            : "message";
    if (iovcnt == 1)
        return sw_conn_sse_send(s->conn, event, out->kind == SW_OUT_DELTA ? id : NULL,
                                iov[0].iov_base, iov[0].iov_len);
    sw_buf_t b; /* an event's data is one piece */
    sw_buf_init(&b, 0);
    (void)sw_buf_appendv(&b, iov, iovcnt); /* unbounded buffer: cannot fail */
    int rc = sw_conn_sse_send(s->conn, event, out->kind == SW_OUT_DELTA ? id : NULL,
                              b.data ? b.data : "", b.len);
    sw_buf_destroy(&b);
    return rc;
}

static void peer_close(sw_peer_t *p, uint16_t code, const char *reason)
{
    sw_conn_close(sw_session_of(p)->conn, code, reason);
}

/* The welcome went out: what the client sent before it joins the queue of
 * the token the welcome names, in order. */
static void peer_welcomed(sw_peer_t *p)
{
    sw_session_t *s = sw_session_of(p);
    sw_event_t *ev;
    while ((ev = TAILQ_FIRST(&s->held))) {
        TAILQ_REMOVE(&s->held, ev, link);
        s->nheld--;
        sw_token_enqueue(p->tok, ev);
        if (!p->tok) /* the session closed meanwhile: the rest goes with it */
            break;
    }
}

static const sw_peer_ops_t SESSION_PEER = {
    .send = peer_send,
    .close = peer_close,
    .welcomed = peer_welcomed,
};

void sw_session_close(sw_session_t *s, uint16_t code, const char *reason)
{
    sw_peer_close(&s->peer, code, reason);
}

void sw_session_live_all(sw_worker_t *w, sw_live_op_t op)
{
    size_t n = 0, cap = 0;
    const char **toks = NULL, **socks = NULL;
    sw_session_t *s;
    LIST_FOREACH(s, &w->sessions, w_link)
    {
        if (!s->peer.welcomed || !s->peer.tok || s->peer.closing)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            toks = sw_xrealloc(toks, cap * sizeof(*toks));
            socks = sw_xrealloc(socks, cap * sizeof(*socks));
        }
        toks[n] = sw_token_name(s->peer.tok);
        socks[n] = s->peer.sockid;
        n++;
    }
    sw_store_live(w->store, op, toks, socks, n, w->cfg->presence_ttl_ms);
    free(toks);
    free(socks);
}

/* Run the app's auth hook for the hello of s (its upgrade request's
 * headers were kept for it): 0 with s->peer.user set, or SW_EPERM with the
 * reason in `reason`. */
static int authenticate(sw_session_t *s, const char *auth, const char *token, char *reason,
                        size_t reason_cap)
{
    sw_auth_request_t req = {
        .auth = auth,
        .cookie = s->hdr_cookie,
        .origin = s->hdr_origin,
        .authorization = s->hdr_authorization,
        .token = token && *token ? token : NULL,
        .transport = s->peer.sse ? "sse" : "websocket",
        .peer = sw_conn_peer(s->conn),
    };
    char user[SW_USER_MAX + 1];
    int rc = sw_appdef_authenticate(s->w->app, &req, user, reason, reason_cap);
    free_headers(s); /* needed by nothing else */
    if (rc != 0)
        return rc;
    free(s->peer.user);
    s->peer.user = user[0] ? sw_xstrdup(user) : NULL;
    return 0;
}

/* Is the request's Origin allowed (cfg->allowed_origins)? Otherwise it is
 * answered 403 forbidden_origin here. */
static int origin_ok(sw_worker_t *w, sw_conn_t *c, const sw_http_request_t *req)
{
    const char *origin = req->header(req, "Origin");
    if (sw_config_origin_allowed(w->cfg, origin))
        return 1;
    sw_log(SW_LOG_INFO, "conn %s: Origin %.100s is not allowed", sw_conn_peer(c), origin);
    http_error(c, 403, "forbidden_origin", "this Origin may not connect");
    return 0;
}

static char *header_copy(const sw_http_request_t *req, const char *name)
{
    const char *v = req->header(req, name);
    return v ? sw_xstrdup(v) : NULL;
}

int sw_session_on_open(sw_conn_t *c, const sw_http_request_t *req)
{
    /* Until on_open the conn's udata is the worker (set by sw_worker on
     * accept); from here on it is the session. */
    sw_worker_t *w = sw_conn_udata(c);
    if (!origin_ok(w, c, req))
        return 403; /* answered; no upgrade */
    sw_session_t *s = session_new(w, c, 0);
    /* The auth hook runs at the hello and sees these (bounded by the
     * request head bound); freed once it has run. */
    s->hdr_cookie = header_copy(req, "Cookie");
    s->hdr_origin = header_copy(req, "Origin");
    s->hdr_authorization = header_copy(req, "Authorization");
    return 0;
}

static void on_hello(sw_session_t *s, sw_msg_t *m)
{
    sw_worker_t *w = s->w;
    if (s->peer.tok) {
        sw_peer_send_error(&s->peer, -1, SW_ERRC_BAD_MESSAGE, "hello already received");
        return;
    }
    char reason[160];
    if (authenticate(s, m->auth, m->token, reason, sizeof(reason)) != 0) {
        sw_log(SW_LOG_INFO, "conn %s: hello refused by the auth hook", sw_conn_peer(s->conn));
        sw_peer_send_error(&s->peer, -1, SW_ERRC_UNAUTHORIZED,
                           reason[0] ? reason : "authentication refused");
        sw_session_close(s, 4401, "unauthorized");
        return;
    }
    char token[SW_TOKEN_MAX + 1];
    if (m->token[0])
        snprintf(token, sizeof(token), "%s", m->token);
    else
        sw_random_hex(token, 16);
    /* A resume is checked against the token's stored credentials when the
     * HELLO runs in the token's queue (it needs the token's state). */
    sw_resume_t r = {.last_seq = m->last_seq};
    if (m->has_resume) {
        snprintf(r.conn_id, sizeof(r.conn_id), "%s", m->conn_id);
        snprintf(r.conn_token, sizeof(r.conn_token), "%s", m->conn_token);
    }
    sw_token_t *t = sw_token_get(w, token);
    sw_token_attach(t, &s->peer);
    sw_token_enqueue(t, sw_event_new_hello(&s->peer, m->has_resume ? &r : NULL));
    sw_conn_ws_greeted(s->conn); /* the hello came in time (--http-timeout-ms) */
}

static void on_event(sw_session_t *s, sw_msg_t *m)
{
    sw_worker_t *w = s->w;
    if (!s->peer.tok) {
        sw_peer_send_error(&s->peer, m->id, SW_ERRC_BAD_MESSAGE, "send hello first");
        return;
    }
    if (m->id >= 0) {
        if (m->id <= s->max_id) {
            /* ids of a connection increase: a repeated or lower one is a
             * resend, not applied again, answered with an empty delta at
             * the client's seq (PROTOCOL-CORE "applied at most once") */
            sw_buf_t b;
            sw_buf_init(&b, 0);
            sw_msg_encode_delta(&b, s->peer.client_seq, m->id, NULL, NULL, 0);
            sw_out_t out = {.kind = SW_OUT_DELTA, .seq = s->peer.client_seq};
            sw_peer_send(&s->peer, &out, b.data, b.len);
            sw_buf_destroy(&b);
            return;
        }
        s->max_id = m->id;
    }
    if (!rate_take(s)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "more than %u events per second", w->cfg->max_events_per_s);
        SW_STAT_ADD(w->stats, events_error, 1);
        sw_peer_send_error(&s->peer, m->id, SW_ERRC_RATE_LIMITED, msg);
        return;
    }
    if (w->draining) {
        sw_peer_send_error(&s->peer, m->id, SW_ERRC_STATE_UNAVAILABLE,
                           "server is shutting down; reconnect and retry");
        return;
    }
    int hydrate = strcmp(m->name, "hydrate") == 0;
    json_t *payload = m->payload;
    json_t *router = m->router;
    if (router) { /* the page the client is on: used to rehydrate expired state */
        free(s->peer.router);
        s->peer.router = json_dumps(router, JSON_COMPACT);
    }
    m->payload = NULL;
    m->router = NULL;
    sw_event_t *ev = sw_event_new(hydrate ? SW_EV_HYDRATE : SW_EV_CLIENT, m->id, &s->peer, m->name,
                                  payload, router);
    if (s->peer.welcomed) {
        sw_token_enqueue(s->peer.tok, ev);
        return;
    }
    /* Before its welcome the session does not know its token yet (a
     * duplicate tab, or a token of another user, gets a new one): hold. */
    if (s->nheld >= w->cfg->max_queue) {
        char msg[96];
        snprintf(msg, sizeof(msg), "too many events before the welcome (max %u)",
                 w->cfg->max_queue);
        SW_STAT_ADD(w->stats, events_error, 1);
        sw_peer_send_error(&s->peer, ev->id, SW_ERRC_RATE_LIMITED, msg);
        sw_event_free(ev);
        return;
    }
    TAILQ_INSERT_TAIL(&s->held, ev, link);
    s->nheld++;
}

/* {"type":"cancel","id":N}: an event of this connection still held or
 * queued is removed and answered cancelled; one that is running stops
 * before its next step (token.c); anything else is ignored, no answer. */
static void on_cancel(sw_session_t *s, int64_t id)
{
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &s->held, link)
    {
        if (ev->id == id) {
            TAILQ_REMOVE(&s->held, ev, link);
            s->nheld--;
            sw_peer_send_error(&s->peer, id, SW_ERRC_CANCELLED, "cancelled");
            sw_event_free(ev);
            return;
        }
    }
    if (s->peer.tok)
        sw_token_cancel(s->peer.tok, &s->peer, id);
}

/* One decoded client message (err: its decoding's outcome, why: the
 * reason of a refusal): answer the refusal or act on it. Consumes m. */
static void handle_message(sw_session_t *s, sw_msg_t *m, sw_errc_t err, const char *why)
{
    if (err != SW_ERRC_NONE) {
        SW_STAT_ADD(s->w->stats, events_error, 1);
        sw_peer_send_error(&s->peer, m->id, err, why[0] ? why : sw_errc_name(err));
    } else if (m->type == SW_MSG_HELLO) {
        on_hello(s, m);
    } else if (m->type == SW_MSG_CANCEL) {
        on_cancel(s, m->id);
    } else {
        on_event(s, m);
    }
    sw_msg_destroy(m);
}

void sw_session_on_message(sw_conn_t *c, const char *data, size_t len)
{
    sw_session_t *s = sw_conn_udata(c);
    if (!s || s->peer.closing)
        return;
    sw_msg_t m;
    char why[256] = "";
    sw_errc_t err = sw_msg_decode(data, len, &m, why, sizeof(why));
    handle_message(s, &m, err, why);
}

void sw_session_on_close(sw_conn_t *c)
{
    sw_session_t *s = sw_conn_udata(c);
    if (!s)
        return;
    if (s->peer.tok)
        sw_token_detach(s->peer.tok, &s->peer);
    LIST_REMOVE(s, w_link);
    SW_STAT_SUB(s->w->stats, ws_open, 1);
    SW_STAT_SUB(s->w->stats, sse_open, s->peer.sse ? 1 : 0); /* metrics */
    sw_conn_set_udata(c, NULL);
    sw_event_t *ev;
    while ((ev = TAILQ_FIRST(&s->held))) {
        TAILQ_REMOVE(&s->held, ev, link);
        sw_event_free(ev);
    }
    free_headers(s);
    free(s->peer.user);
    free(s->peer.router);
    free(s);
}

/* ---- SSE ---------------------------------------------------------------- */

/* Value of `key` in a query string (application/x-www-form-urlencoded:
 * "+" is a space, %XX a byte) into out (outlen bytes with the NUL), as
 * UTF-8 text without control characters. 1 found, 0 absent, -1 bad (too
 * long, a bad escape, invalid UTF-8 or a control character). */
static int query_get_text(const char *query, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg >= kl && strncmp(p, key, kl) == 0 && (seg == kl || p[kl] == '=')) {
            size_t n = 0;
            for (size_t i = kl + 1; i < seg; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (i + 2 >= seg || !isxdigit((unsigned char)p[i + 1]) ||
                        !isxdigit((unsigned char)p[i + 2]))
                        return -1;
                    char hex[3] = {p[i + 1], p[i + 2], 0};
                    c = (unsigned char)strtol(hex, NULL, 16);
                    i += 2;
                }
                if (c < 0x20 || c == 0x7f || n + 1 >= outlen)
                    return -1;
                out[n++] = (char)c;
            }
            out[n] = '\0';
            return sw_utf8_valid_prefix(out, n) == n ? 1 : -1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

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
    if (!origin_ok(w, c, req))
        return;
    if (ht < 0 || hc < 0 || hk < 0 || hl < 0 || (hc > 0) != (hk > 0)) {
        http_error(c, 400, "bad_message", "token, conn_id, conn_token: [A-Za-z0-9_-], 1..64");
        return;
    }
    /* The hello's auth: the auth parameter, else a Bearer token. */
    char *auth = sw_xmalloc(SW_AUTH_MAX + 1);
    int ha = query_get_text(req->query, "auth", auth, SW_AUTH_MAX + 1);
    const char *authz = req->header(req, "Authorization");
    if (ha == 0 && authz && strncasecmp(authz, "Bearer ", 7) == 0) {
        const char *b = authz + 7;
        while (*b == ' ')
            b++;
        size_t n = strlen(b);
        if (n <= SW_AUTH_MAX) {
            memcpy(auth, b, n + 1);
            ha = 1;
        }
    }
    if (ha < 0) {
        free(auth);
        http_error(c, 400, "bad_message", "auth: at most 4096 bytes of UTF-8 text");
        return;
    }
    uint64_t last_seq = 0;
    int have_last = 0;
    const char *ls = lei && *lei ? lei : hl > 0 ? last : NULL;
    if (ls) { /* a seq: 1..19 decimal digits */
        size_t n = strspn(ls, "0123456789");
        if (n == 0 || n > 19 || ls[n] != '\0') {
            free(auth);
            http_error(c, 400, "bad_message", "last_seq / Last-Event-ID must be a seq (digits)");
            return;
        }
        last_seq = strtoull(ls, NULL, 10);
        have_last = 1;
    }
    if (w->draining || !w->have_cred_key) {
        free(auth);
        http_error(c, 503, "state_unavailable",
                   w->draining ? "server is shutting down; reconnect"
                               : "server is starting (state store out of reach); retry");
        return;
    }
    char user[SW_USER_MAX + 1], reason[160];
    sw_auth_request_t areq = {
        .auth = ha > 0 ? auth : NULL,
        .cookie = req->header(req, "Cookie"),
        .origin = req->header(req, "Origin"),
        .authorization = authz,
        .token = ht > 0 ? token : NULL,
        .transport = "sse",
        .peer = sw_conn_peer(c),
    };
    int arc = sw_appdef_authenticate(w->app, &areq, user, reason, sizeof(reason));
    free(auth);
    if (arc != 0) {
        sw_log(SW_LOG_INFO, "conn %s: event stream refused by the auth hook", sw_conn_peer(c));
        http_error(c, 401, "unauthorized", reason[0] ? reason : "authentication refused");
        return;
    }
    if (sw_conn_sse_start(c) != 0)
        return;
    sw_session_t *s = session_new(w, c, 1);
    s->peer.user = user[0] ? sw_xstrdup(user) : NULL;
    if (ht <= 0)
        sw_random_hex(token, 16);
    sw_resume_t r = {.last_seq = (uint64_t)last_seq};
    if (hc > 0) {
        snprintf(r.conn_id, sizeof(r.conn_id), "%s", cid);
        snprintf(r.conn_token, sizeof(r.conn_token), "%s", ctok);
    } else {
        r.bare_sse = 1; /* EventSource's own reconnect: same URL, Last-Event-ID */
    }
    sw_token_t *t = sw_token_get(w, token);
    sw_token_attach(t, &s->peer);
    sw_token_enqueue(t, sw_event_new_hello(&s->peer, hc > 0 || have_last ? &r : NULL));
}

static sw_session_t *find_stream(sw_worker_t *w, const char *cid)
{
    sw_session_t *s;
    LIST_FOREACH(s, &w->sessions, w_link)
    {
        if (s->peer.sse && !s->peer.closing && strcmp(s->peer.conn_id, cid) == 0)
            return s;
    }
    return NULL;
}

/* Queue the messages of a POST body on the local stream `cid`. Returns
 * how many were accepted, or a negative HTTP status: -404 no such live
 * stream here, -403 a wrong conn_token. */
static int post_local(sw_worker_t *w, const char *cid, const char *ctok, json_t *msgs)
{
    sw_session_t *s = find_stream(w, cid);
    if (!s)
        return -404;
    if (!sw_secure_equal(ctok, strlen(ctok), s->peer.conn_token, strlen(s->peer.conn_token)))
        return -403;
    size_t i;
    json_t *m;
    int n = 0;
    json_array_foreach(msgs, i, m)
    {
        if (!s->peer.closing) { /* counted as accepted either way */
            sw_msg_t msg;
            char why[256] = "";
            sw_errc_t err = sw_msg_decode_json(m, &msg, why, sizeof(why));
            handle_message(s, &msg, err, why);
        }
        n++;
    }
    return n;
}

/* Answer a POST /_event: 202 {"accepted": n}, or the refusal for a
 * negative status from post_local. */
static void post_answer(sw_conn_t *c, int n)
{
    if (n == -404) {
        http_error(c, 404, "bad_resume", "no such event stream");
    } else if (n == -403) {
        http_error(c, 403, "bad_resume", "wrong conn_token");
    } else {
        char out[64];
        int len = snprintf(out, sizeof(out), "{\"accepted\":%d}", n);
        sw_conn_http_reply(c, 202, "application/json", "Cache-Control: no-store\r\n", out,
                           (size_t)len);
    }
}

/* How long a POST forwarded to the stream's worker waits for its answer. */
#define POST_FORWARD_TIMEOUT_S 5.0

/* A POST forwarded to the worker that owns the stream, waiting for that
 * worker's answer ("A:" in this worker's inbox). It holds the HTTP conn
 * (sw_conn_ref) and is freed once it has answered the client and the
 * PUBLISH has completed (the store's callback has it as udata). */
typedef struct sw_post_fwd {
    LIST_ENTRY(sw_post_fwd) link; /* w->posts */
    sw_worker_t *w;
    sw_conn_t *c;
    uint64_t id;
    ev_timer timer;
    int answered;  /* the client has its answer */
    int published; /* the PUBLISH completed */
} sw_post_fwd_t;

static void fwd_maybe_free(sw_post_fwd_t *pf)
{
    if (!pf->answered || !pf->published)
        return;
    LIST_REMOVE(pf, link);
    free(pf);
}

/* Answer the client once: n accepted, or -403 / -404; -503 could not be
 * forwarded; -504 no answer in time. */
static void fwd_answer(sw_post_fwd_t *pf, int n)
{
    if (pf->answered)
        return;
    pf->answered = 1;
    ev_timer_stop(pf->w->loop, &pf->timer);
    if (n == -503)
        http_error(pf->c, 503, "state_unavailable",
                   "could not reach the stream's worker; nothing was queued; retry");
    else if (n == -504)
        http_error(pf->c, 504, "state_unavailable",
                   "the stream's worker did not confirm in time; answers, if any, arrive on the "
                   "stream");
    else
        post_answer(pf->c, n);
    sw_conn_unref(pf->c);
    pf->c = NULL;
}

static void fwd_timeout_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_post_fwd_t *pf = sw_container_of(tw, sw_post_fwd_t, timer);
    sw_log(SW_LOG_WARN, "forwarded POST %llu: no answer within %.0f s", (unsigned long long)pf->id,
           POST_FORWARD_TIMEOUT_S);
    fwd_answer(pf, -504);
    fwd_maybe_free(pf);
}

static void on_forwarded(void *udata, int status, int64_t receivers)
{
    sw_post_fwd_t *pf = udata;
    pf->published = 1;
    if (status != 0)
        fwd_answer(pf, -503);
    else if (receivers == 0) /* its worker is gone, and the stream with it */
        fwd_answer(pf, -404);
    fwd_maybe_free(pf);
}

void sw_session_sse_post(sw_conn_t *c, const sw_http_request_t *req)
{
    sw_worker_t *w = sw_conn_udata(c);
    if (!origin_ok(w, c, req))
        return;
    json_error_t err;
    json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, &err) : NULL;
    json_t *msgs = json_object_get(body, "messages");
    const char *cid = json_string_value(json_object_get(body, "conn_id"));
    const char *ctok = json_string_value(json_object_get(body, "conn_token"));
    if (!json_is_object(body) || !json_is_array(msgs) || !cid || !ctok) {
        http_error(c, 400, body ? "bad_message" : "bad_json",
                   "body must be {\"conn_id\",\"conn_token\",\"messages\":[...]}");
        json_decref(body);
        return;
    }
    /* Checked here, whichever worker this is: a made-up conn_id or a
     * wrong conn_token costs no one else anything. */
    size_t hl = 0;
    if (!w->have_cred_key) {
        http_error(c, 503, "state_unavailable",
                   "server is starting (state store out of reach); retry");
    } else if (!sw_cred_check_id(&w->cred_key, cid, &hl)) {
        post_answer(c, -404);
    } else if (!sw_cred_check_token(&w->cred_key, cid, ctok)) {
        post_answer(c, -403);
    } else if (hl == strlen(w->holder_id) && strncmp(cid, w->holder_id, hl) == 0) {
        post_answer(c, post_local(w, cid, ctok, msgs));
    } else {
        /* The stream lives in another worker (here or on another host):
         * it checks and queues, then answers through our inbox. */
        sw_post_fwd_t *pf = sw_xcalloc(1, sizeof(*pf));
        pf->w = w;
        pf->c = c;
        pf->id = ++w->next_post_id;
        sw_conn_ref(c);
        LIST_INSERT_HEAD(&w->posts, pf, link);
        char inbox[SW_INBOX_CHANNEL_MAX];
        sw_inbox_msg_t m = {.cmd = SW_INBOX_POST,
                            .post_id = pf->id,
                            .reply_to = w->holder_id,
                            .reply_to_len = strlen(w->holder_id),
                            .body = req->body,
                            .body_len = req->body_len};
        sw_buf_t b;
        sw_buf_init(&b, 0);
        ev_timer_init(&pf->timer, fwd_timeout_cb, POST_FORWARD_TIMEOUT_S, 0.);
        ev_timer_start(w->loop, &pf->timer);
        if (sw_inbox_channel(cid, hl, inbox) != 0 || sw_inbox_encode(&m, &b) != 0 ||
            sw_store_publish_acked(w->store, inbox, b.data, b.len, on_forwarded, pf) != 0) {
            pf->published = 1;
            fwd_answer(pf, -404);
            fwd_maybe_free(pf);
        }
        sw_buf_destroy(&b);
    }
    json_decref(body);
}

void sw_session_post_forwarded(sw_worker_t *w, const sw_inbox_msg_t *fwd)
{
    json_t *body = json_loadb(fwd->body, fwd->body_len, 0, NULL);
    const char *cid = json_string_value(json_object_get(body, "conn_id"));
    const char *ctok = json_string_value(json_object_get(body, "conn_token"));
    json_t *msgs = json_object_get(body, "messages");
    int n = cid && ctok && json_is_array(msgs) ? post_local(w, cid, ctok, msgs) : -404;
    if (n < 0)
        sw_log(SW_LOG_INFO, "forwarded POST refused (%d): the stream is gone or the token wrong",
               -n);
    sw_inbox_msg_t ans = {.cmd = SW_INBOX_POST_ANSWER, .post_id = fwd->post_id, .result = n};
    if (sw_wctx_inbox_send(w, fwd->reply_to, fwd->reply_to_len, &ans) != 0)
        sw_log(SW_LOG_WARN, "cannot answer forwarded POST %llu (state store out of reach)",
               (unsigned long long)fwd->post_id);
    json_decref(body);
}

void sw_session_post_answered(sw_worker_t *w, uint64_t id, int n)
{
    sw_post_fwd_t *pf;
    LIST_FOREACH(pf, &w->posts, link)
    {
        if (pf->id == id) {
            fwd_answer(pf, n);
            fwd_maybe_free(pf);
            return;
        }
    }
}

void sw_session_posts_cancel(sw_worker_t *w)
{
    sw_post_fwd_t *pf;
    while ((pf = LIST_FIRST(&w->posts))) {
        ev_timer_stop(w->loop, &pf->timer);
        if (pf->c)
            sw_conn_unref(pf->c);
        LIST_REMOVE(pf, link);
        free(pf); /* the store is freed after this: its callbacks are cancelled */
    }
}
