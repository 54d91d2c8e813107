#include "worker/session.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/token.h"
#include "worker/worker.h"

void sw_session_on_open(sw_conn_t *c)
{
    /* Until on_open the conn's udata is the worker (set by sw_worker on
     * accept); from here on it is the session. */
    sw_session_t *s = sw_xcalloc(1, sizeof(*s));
    s->w = sw_conn_udata(c);
    s->conn = c;
    snprintf(s->sockid, sizeof(s->sockid), "%s.%llu", s->w->holder_id,
             (unsigned long long)sw_conn_id(c));
    LIST_INSERT_HEAD(&s->w->sessions, s, w_link);
    SW_STAT_ADD(s->w->stats, ws_open, 1);
    sw_random_hex(s->conn_id, 8);
    sw_random_hex(s->conn_token, 16);
    sw_conn_set_udata(c, s);
}

int sw_session_send(sw_session_t *s, const char *data, size_t len)
{
    if (s->closing)
        return SW_ECLOSED;
    return sw_conn_send(s->conn, data, len);
}

void sw_session_send_error(sw_session_t *s, int64_t id, sw_errc_t code, const char *message)
{
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
        json_decref(s->router);
        s->router = json_incref(router);
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
    sw_conn_set_udata(c, NULL);
    json_decref(s->router);
    free(s);
}
