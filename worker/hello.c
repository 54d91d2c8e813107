/* hello.c — hello, resume and duplicate tabs: the resume check against
 * the stored connection record, the welcome, the resume sync (replay log
 * or one full delta), closing a replaced socket, and moving a client that
 * may not use a token to a token of its own. Stages: SW_PH_RUN of a
 * HELLO (sw_tok__run_hello) and SW_PH_WELCOME (sw_tok__hello_welcome);
 * each returns a verdict to the runner (pipeline.c). */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

static sw_verdict_t hello_sync(sw_token_t *t, sw_peer_t *s);
static void close_elsewhere(sw_token_t *t, const char *sockid);
static int local_socket_gone(const sw_token_t *t, const char *sockid);
static void move_to_new_token(sw_token_t *t, sw_peer_t *s);

void sw_token_close_socket(sw_worker_t *w, const char *token, const char *sockid)
{
    sw_token_t *t = NULL;
    HASH_FIND_STR(w->tokens, token, t);
    if (!t)
        return;
    sw_peer_t *s;
    LIST_FOREACH(s, &t->peers, tok_link)
    {
        if (strcmp(s->sockid, sockid) == 0) {
            sw_log(SW_LOG_INFO, "token %.8s…: closing a socket replaced by a resume", t->token);
            sw_peer_close(s, 4001, "replaced by a resumed connection");
            return;
        }
    }
}

/* Hex SHA-256 of a conn_token: what the store keeps (never the token). */
static void conn_token_hash(const char *tok, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(tok, strlen(tok), md, &n, EVP_sha256(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32 && i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* Does the HELLO's resume match the stored connection record? Compared in
 * constant time; the conn_token itself is never stored or logged. */
int sw_tok__resume_valid(const sw_token_t *t, const sw_resume_t *resume)
{
    const char *cid = resume->conn_id;
    const char *ctok = resume->conn_token;
    const char *rid = json_string_value(json_object_get(t->conn_rec, "id"));
    const char *rkh = json_string_value(json_object_get(t->conn_rec, "kh"));
    if (!cid[0] || !ctok[0] || !rid || !rkh || strlen(rkh) != 64)
        return 0;
    char kh[65];
    conn_token_hash(ctok, kh);
    int id_ok = sw_secure_equal(cid, strlen(cid), rid, strlen(rid));
    int kh_ok = sw_secure_equal(kh, 64, rkh, 64);
    return id_ok & kh_ok;
}

/* The welcome to s (resumed or not), then what s held back joins the
 * queue (its welcomed callback). */
static void send_welcome(sw_token_t *t, sw_peer_t *s, int resumed)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_msg_encode_welcome(&b, t->token, s->conn_id, s->conn_token, resumed, t->seq);
    s->client_seq = t->seq;
    sw_out_t out = {.kind = SW_OUT_WELCOME};
    sw_peer_send(s, &out, b.data, b.len);
    sw_buf_destroy(&b);
    /* What it sent before its welcome joins this token's queue, behind
     * the HELLO (and so after the resume sync). */
    sw_peer_welcomed(s);
}

/* Replay of the missed deltas for a resumed session: every entry must be
 * there with the right seq, else the client gets one full delta. */
sw_verdict_t sw_tok__hello_replayed(sw_token_t *t, int status, const char *const *entries,
                                    const size_t *lens, size_t n)
{
    sw_event_t *ev = t->current;
    sw_peer_t *s = ev->origin;
    uint64_t first = ev->resume ? ev->resume->last_seq + 1 : 1;
    int whole = status == 0 && n == t->seq - first + 1;
    for (size_t i = 0; whole && i < n; i++) {
        const char *p = entries[i] ? memmem(entries[i], lens[i], "\"seq\":", 6) : NULL;
        if (!p || strtoull(p + 6, NULL, 10) != first + i)
            whole = 0;
    }
    SW_STAT_ADD(t->w->stats, resumes[whole ? SW_RESUME_REPLAYED : SW_RESUME_FULL], 1); /* metrics */
    if (s && whole) {
        for (size_t i = 0; i < n; i++) {
            sw_out_t out = {.kind = SW_OUT_DELTA, .seq = first + i};
            sw_peer_send(s, &out, entries[i], lens[i]);
        }
        s->client_seq = t->seq;
        s->hydrated = 1;
    } else if (s) {
        sw_tok__send_full(t, s);
    }
    SW_STAT_ADD(t->w->stats, events_ok, 1);
    return SW_V_DONE;
}

/* The token's previous socket `sockid` ("<holder>.<n>") is stale: close
 * it here, or ask its worker through its inbox. */
static void close_elsewhere(sw_token_t *t, const char *sockid)
{
    sw_worker_t *w = t->w;
    int mine;
    size_t hl = sw_wctx_id_holder(w, sockid, '.', &mine);
    if (hl == 0 || hl >= 48)
        return;
    if (mine) {
        sw_token_close_socket(w, t->token, sockid);
        return;
    }
    sw_inbox_msg_t m = {.cmd = SW_INBOX_CLOSE_SOCKET,
                        .token = t->token,
                        .token_len = strlen(t->token),
                        .sockid = sockid,
                        .sockid_len = strlen(sockid)};
    sw_wctx_inbox_send(w, sockid, hl, &m);
}

/* After the welcome of a resumed session: before anything else, the
 * missed deltas of the token's own stream (from the replay log) or one full
 * delta (the log no longer reaches back, or shared state is linked). */
static sw_verdict_t hello_sync(sw_token_t *t, sw_peer_t *s)
{
    const sw_resume_t *resume = t->current->resume;
    uint64_t last = resume ? resume->last_seq : 0;
    if (t->ntl || last > t->seq || t->seq - last > SW_REPLAY_LOG_LEN) {
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_FULL], 1); /* metrics */
        sw_tok__send_full(t, s);
    } else if (last < t->seq) {
        if (sw_store_read_log(t->w->store, t->token, last + 1, t->seq, sw_tok__done.replayed, t) ==
            0) {
            t->pending_store = 1;
            return SW_V_PARKED;
        }
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_FULL], 1); /* metrics */
        sw_tok__send_full(t, s);
    } else {
        SW_STAT_ADD(t->w->stats, resumes[SW_RESUME_NONE], 1); /* metrics */
        s->hydrated = 1; /* up to date: its state is the token's */
        t->old_view = 1;
    }
    SW_STAT_ADD(t->w->stats, events_ok, 1);
    return SW_V_DONE;
}

/* Is `sockid` (the token's live connection as the store had it) one of
 * this worker's sockets that has closed already (its live key's drop may
 * simply not have reached Redis yet)? Such a socket, still open, would be
 * one of this token's peers. Sockets of other workers count as live. */
static int local_socket_gone(const sw_token_t *t, const char *sockid)
{
    int mine;
    sw_wctx_id_holder(t->w, sockid, '.', &mine);
    if (!mine)
        return 0;
    const sw_peer_t *x;
    LIST_FOREACH(x, &t->peers, tok_link)
    {
        if (strcmp(x->sockid, sockid) == 0)
            return x->closing;
    }
    return 1;
}

/* The session moves to a token of its own (a duplicate tab, or a client
 * that may not use this token): a fresh HELLO there, started by the
 * runner's resume step (this stage starts nothing). The events it sent
 * before its welcome are held by the session and follow it. */
static void move_to_new_token(sw_token_t *t, sw_peer_t *s)
{
    char fresh[SW_TOKEN_MAX + 1];
    sw_random_hex(fresh, 16);
    sw_token_t *t2 = sw_token_get(t->w, fresh);
    s->welcomed = 0;
    sw_token_detach(t, s);
    sw_token_attach(t2, s);
    sw_tok__push(t2, sw_event_new(SW_EV_HELLO, -1, s, "hello", NULL, NULL));
    sw_token_resume(t2);
}

/* The "_conn" field: the connection record a resume is checked against;
 * and "_user" when this connection binds the token to its user. Two
 * fields always fit in a fresh commit_fields_t. */
static void add_conn_field(sw_token_t *t, commit_fields_t *cf, const sw_peer_t *s)
{
    if (s->user && !t->user)
        sw_tok__add_field(cf, "_user", s->user, strlen(s->user));
    char kh[65], rec[SW_CONN_ID_MAX + 128];
    conn_token_hash(s->conn_token, kh);
    int n = snprintf(rec, sizeof(rec), "{\"id\":\"%s\",\"kh\":\"%s\"%s}", s->conn_id, kh,
                     s->sse ? ",\"sse\":true" : "");
    sw_tok__add_field(cf, "_conn", rec, (size_t)SW_MIN(n, (int)sizeof(rec) - 1));
}

/* hello: a valid resume is the same connection coming back, on any worker
 * or host; on_load does not run. A WebSocket keeps its credentials and is
 * welcomed at once; an event stream gets new ones (its conn_id routes POSTs
 * to its worker), stored before its welcome. A fresh connection (no
 * resume, or a refused one: bad_resume) stores its credentials, then gets
 * its welcome. A client that may not use this token (bound to another
 * user) or a second live connection without valid credentials (a
 * duplicate tab) moves to a new token: it never reads, writes or closes
 * anything of this one. */
sw_verdict_t sw_tok__run_hello(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    sw_peer_t *s = ev->origin;
    if (!s)
        return SW_V_DONE;
    const sw_resume_t *resume = ev->resume;
    sw_worker_t *w = t->w;
    const char *tok1[1] = {t->token}, *sock1[1] = {s->sockid};
    if (t->user && (!s->user || strcmp(t->user, s->user) != 0)) {
        sw_log(SW_LOG_INFO, "token %.8s…: bound to another user; the client gets a new token",
               t->token);
        if (f->hello_resume == SW_HELLO_RESUME || f->hello_resume == SW_HELLO_REFUSED)
            sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                               "this token belongs to another user; continuing with a new token");
        move_to_new_token(t, s);
        return SW_V_DONE;
    }
    int other_live = t->live_seen && t->live_seen[0] && strcmp(t->live_seen, s->sockid) != 0 &&
                     !local_socket_gone(t, t->live_seen);
    if (f->hello_resume == SW_HELLO_BARE_SSE) /* only once the last stream really ended */
        f->hello_resume = other_live ? SW_HELLO_FRESH : SW_HELLO_RESUME;
    if (f->hello_resume != SW_HELLO_RESUME && other_live) {
        sw_log(SW_LOG_INFO, "token %.8s…: duplicate tab gets a new token", t->token);
        if (f->hello_resume == SW_HELLO_REFUSED) /* refused credentials: said before the welcome */
            sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                               "unknown conn_id or conn_token; continuing as a new connection");
        move_to_new_token(t, s);
        return SW_V_DONE;
    }
    if (f->hello_resume == SW_HELLO_RESUME && other_live) /* the stale socket, if still open */
        close_elsewhere(t, t->live_seen);
    sw_store_live(w->store, SW_LIVE_SET, tok1, sock1, 1, w->cfg->presence_ttl_ms);
    if (f->hello_resume == SW_HELLO_RESUME && !s->sse) {
        snprintf(s->conn_id, sizeof(s->conn_id), "%s", resume->conn_id);
        snprintf(s->conn_token, sizeof(s->conn_token), "%s", resume->conn_token);
        send_welcome(t, s, 1);
        return hello_sync(t, s);
    }
    if (f->hello_resume == SW_HELLO_REFUSED)
        sw_peer_send_error(s, -1, SW_ERRC_BAD_RESUME,
                           "unknown conn_id or conn_token; continuing as a new connection");
    commit_fields_t cf;
    cf.n = 0;
    add_conn_field(t, &cf, s);
    return sw_tok__commit(t, &cf, NULL, 0, NULL, 0,
                          0); /* welcome once the credentials are stored */
}

sw_verdict_t sw_tok__hello_welcome(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    if (!ev->origin)
        return SW_V_DONE;
    if (f->commit_via_store && ev->origin->user && !t->user) /* the commit bound the token */
        t->user = sw_xstrdup(ev->origin->user);
    send_welcome(t, ev->origin, f->hello_resume == SW_HELLO_RESUME);
    if (f->hello_resume == SW_HELLO_RESUME)
        return hello_sync(t, ev->origin);
    return SW_V_DONE;
}
