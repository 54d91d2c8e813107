/* store_redis.c — the Redis store backend: requests on one command
 * connection (a store_link with a 5 s reply timeout) on the worker's
 * libev loop, fenced Lua scripts (worker/lua) sent by EVALSHA with an
 * EVAL fallback on NOSCRIPT; subscriptions on a second connection
 * (store_sub.c).
 *
 * Sources: Redis docs "EVALSHA" / "Scripting with Lua" (NOSCRIPT error,
 * script cache emptied by restarts and SCRIPT FLUSH), "SET" (NX, PX),
 * hiredis 0.14 async API (a pending callback gets a NULL reply when the
 * context is freed or the connection drops), "TIME", "ZADD" (XX). */
#include "worker/store_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/store_int.h"
#include "worker/store_link.h"
#include "worker/store_script.h"
#include "worker/store_sub.h"

/* A connection that answers nothing for this long while requests wait is
 * dropped and reopened (hiredis 0.14 has no async timeouts): the waiting
 * requests complete with SW_EUNAVAIL instead of hanging. */
#define REPLY_TIMEOUT_MS 5000

/* A connection from which nothing has come for this long is sent a PING,
 * so a connection that died silently is found while idle too. */
#define PING_MS 1000

typedef struct redis_store {
    sw_store_t base;
    int db;
    int freeing;
    sw_store_link_t *link; /* the command connection */
    sw_store_sub_t *subs;  /* the pub/sub connection and its subscriptions */
    struct rreq *pool;     /* spare requests (REQ_POOL_MAX) */
    unsigned npool;
    void (*on_rtt)(void *, uint64_t); /* opts->on_rtt */
    void *rtt_udata;
} redis_store_t;

enum { REQ_LOAD, REQ_COMMIT, REQ_RELEASE, REQ_READ, REQ_PRESENCE, REQ_LOG, REQ_PUBLISH };

/* One script request; kept until its reply so it can be resent as EVAL. */
typedef struct rreq {
    redis_store_t *rs;
    int kind;
    int script;       /* sw_store_script_t, or -1: a plain command */
    int evaled;       /* already resent with the full script text */
    uint64_t sent_ns; /* sw_now_ns() at the last send */
    sw_store_load_cb load_cb;
    sw_store_commit_cb commit_cb;
    sw_store_log_cb log_cb;
    sw_store_count_cb count_cb;
    void *udata;
    int argc;
    const char **argv;
    size_t *argvlen;
    size_t *off; /* offsets of argv[i] in buf while building */
    int cap;
    sw_buf_t buf;           /* argument bytes */
    struct rreq *next_free; /* in the store's pool of spare requests */
} rreq_t;

/* Spare requests kept for reuse (with their argv arrays and argument
 * buffer): a commit per event then allocates nothing here. */
#define REQ_POOL_MAX 256

static const sw_store_ops_t REDIS_OPS;

static redis_store_t *rs_of(sw_store_t *s)
{
    return sw_container_of(s, redis_store_t, base);
}

/* The command connection's context to send a request on; NULL while it
 * is down, and during an outage until Redis answers on a new connection
 * (a hung Redis still completes TCP connects): requests then fail at
 * once with SW_EUNAVAIL instead of each waiting out the reply timeout. */
static redisAsyncContext *cmd_ctx(const redis_store_t *rs)
{
    return sw_store_link_failing(rs->link) ? NULL : sw_store_link_ctx(rs->link);
}

/* ---- Requests ---------------------------------------------------------------- */

static rreq_t *req_new(redis_store_t *rs, int kind, int script, int nargs)
{
    rreq_t *q = rs->pool;
    if (q) {
        rs->pool = q->next_free;
        rs->npool--;
        sw_buf_reset(&q->buf);
    } else {
        q = sw_xcalloc(1, sizeof(*q));
        sw_buf_init(&q->buf, 0);
    }
    if (q->cap < nargs) {
        q->argv = sw_xrealloc(q->argv, (size_t)nargs * sizeof(*q->argv));
        q->argvlen = sw_xrealloc(q->argvlen, (size_t)nargs * sizeof(*q->argvlen));
        q->off = sw_xrealloc(q->off, (size_t)nargs * sizeof(*q->off));
        q->cap = nargs;
    }
    q->rs = rs;
    q->kind = kind;
    q->script = script;
    q->evaled = 0;
    q->sent_ns = 0;
    q->load_cb = NULL;
    q->commit_cb = NULL;
    q->log_cb = NULL;
    q->count_cb = NULL;
    q->udata = NULL;
    q->argc = 0;
    q->next_free = NULL;
    return q;
}

static void req_destroy(rreq_t *q)
{
    free(q->argv);
    free(q->argvlen);
    free(q->off);
    sw_buf_destroy(&q->buf);
    free(q);
}

static void req_free(rreq_t *q)
{
    redis_store_t *rs = q->rs;
    if (rs->freeing || rs->npool >= REQ_POOL_MAX || q->buf.cap > 65536) {
        req_destroy(q); /* big argument buffers are not kept */
        return;
    }
    q->next_free = rs->pool;
    rs->pool = q;
    rs->npool++;
}

static void req_arg(rreq_t *q, const void *p, size_t n)
{
    q->off[q->argc] = q->buf.len;
    q->argvlen[q->argc] = n;
    q->argc++;
    if (n)
        (void)sw_buf_append(&q->buf, p, n); /* unbounded buffer: cannot fail */
}

/* A decimal argument: fmt is "%llu" or "<prefix>%llu" (e.g. "_log:%llu"). */
static void req_argf(rreq_t *q, const char *fmt, unsigned long long v)
{
    char num[64];
    size_t p = 0;
    const char *pct = strstr(fmt, "%llu");
    if (!pct || strcmp(pct, "%llu") != 0 || (size_t)(pct - fmt) > 32) {
        int n = snprintf(num, sizeof(num), fmt, v);
        req_arg(q, num, (size_t)n);
        return;
    }
    p = (size_t)(pct - fmt);
    memcpy(num, fmt, p);
    p += sw_u64_dec(num + p, v);
    req_arg(q, num, p);
}

static void req_arg_key(rreq_t *q, const char *token, const char *suffix)
{
    char key[SW_STORE_TOKEN_MAX + 32];
    size_t tl = strlen(token), sl = strlen(suffix);
    if (tl + sl + 6 > sizeof(key)) { /* cannot happen: tokens are bounded */
        int n = snprintf(key, sizeof(key), "sw:{%s}%s", token, suffix);
        req_arg(q, key, (size_t)n);
        return;
    }
    memcpy(key, "sw:{", 4);
    memcpy(key + 4, token, tl);
    key[4 + tl] = '}';
    memcpy(key + 5 + tl, suffix, sl);
    req_arg(q, key, 5 + tl + sl);
}

/* Point argv into the finished buffer; for a script argv[0..1] are
 * EVALSHA + sha (script < 0: a plain command). */
static void req_seal(rreq_t *q)
{
    for (int i = 0; i < q->argc; i++)
        q->argv[i] = q->buf.data ? q->buf.data + q->off[i] : "";
    if (q->script < 0)
        return;
    q->argv[0] = "EVALSHA";
    q->argvlen[0] = 7;
    q->argv[1] = sw_store_script_sha(q->script);
    q->argvlen[1] = 40;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* The request in RESP ("Redis serialization protocol specification":
 * an array of bulk strings), formatted into one reused buffer: hiredis
 * copies it into its output buffer (redisAsyncFormattedCommand), which
 * costs less than its own per-argument formatting. */
static void resp_count(sw_buf_t *b, char type, size_t n) /* "*3\r\n", "$7\r\n" */
{
    char line[24];
    line[0] = type;
    size_t len = 1 + sw_u64_dec(line + 1, n);
    line[len++] = '\r';
    line[len++] = '\n';
    (void)sw_buf_append(b, line, len); /* unbounded buffer: cannot fail */
}

static int req_send(redisAsyncContext *ac, rreq_t *q)
{
    static sw_buf_t resp; /* one worker thread per process */
    sw_buf_reset(&resp);
    resp_count(&resp, '*', (size_t)q->argc);
    for (int i = 0; i < q->argc; i++) {
        resp_count(&resp, '$', q->argvlen[i]);
        (void)sw_buf_append(&resp, q->argv[i], q->argvlen[i]);
        (void)sw_buf_append(&resp, "\r\n", 2);
    }
    int rc = redisAsyncFormattedCommand(ac, on_reply, q, resp.data, resp.len);
    if (resp.cap > 65536)
        sw_buf_destroy(&resp); /* big commands do not pin their buffer */
    if (rc != REDIS_OK)
        return SW_EUNAVAIL;
    q->sent_ns = sw_now_ns();
    sw_store_link_sent(q->rs->link);
    return 0;
}

/* Fill res from an HGETALL array (field, value, ...). raw / out are
 * allocated here, freed by the caller. Returns 0 or -1 (bad shape). */
static int fill_hash(sw_store_loaded_t *res, const redisReply *h, sw_store_field_t **raw,
                     sw_store_field_t **out)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return -1;
    size_t n = h->elements / 2;
    for (size_t i = 0; i < h->elements; i++)
        if (h->element[i]->type != REDIS_REPLY_STRING)
            return -1;
    *raw = sw_xcalloc(n ? n : 1, sizeof(**raw));
    *out = sw_xcalloc(n ? n : 1, sizeof(**out));
    for (size_t i = 0; i < n; i++) {
        (*raw)[i].name = h->element[2 * i]->str;
        (*raw)[i].name_len = (size_t)h->element[2 * i]->len;
        (*raw)[i].data = h->element[2 * i + 1]->str;
        (*raw)[i].len = (size_t)h->element[2 * i + 1]->len;
    }
    sw_store_loaded_fill(res, *raw, n, *out);
    return 0;
}

static void complete_load(rreq_t *q, const redisReply *rep)
{
    sw_store_t *s = &q->rs->base;
    sw_store_loaded_t res = {.status = SW_EUNAVAIL};
    sw_store_field_t *raw = NULL, *out = NULL;
    const char *what = q->kind == REQ_READ ? "HGETALL" : "acquire script";
    if (q->kind == REQ_READ && rep && rep->type == REDIS_REPLY_ARRAY) {
        if (fill_hash(&res, rep, &raw, &out) < 0)
            sw_log(SW_LOG_ERROR, "redis: %s: unexpected reply shape", what);
    } else if (q->kind == REQ_LOAD && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
               rep->element[0]->type == REDIS_REPLY_INTEGER) {
        if (rep->element[0]->integer == 0) {
            res.status = SW_EBUSY;
            if (rep->elements >= 2 && rep->element[1]->type == REDIS_REPLY_STRING) {
                res.holder = rep->element[1]->str;
                res.holder_len = (size_t)rep->element[1]->len;
            }
        } else if (rep->elements != 3 || fill_hash(&res, rep->element[1], &raw, &out) < 0)
            sw_log(SW_LOG_ERROR, "redis: %s: unexpected reply shape", what);
        else if (rep->element[2]->type == REDIS_REPLY_STRING) {
            res.live = rep->element[2]->str;
            res.live_len = (size_t)rep->element[2]->len;
        }
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        sw_log(SW_LOG_WARN, "redis: %s: %s", what, rep->str);
    } else if (rep) {
        sw_log(SW_LOG_ERROR, "redis: %s: unexpected reply type %d", what, rep->type);
    }
    sw_store_complete_load(s, q->load_cb, q->udata, &res);
    free(raw);
    free(out);
}

static void complete_count(rreq_t *q, const redisReply *rep)
{
    int status = SW_EUNAVAIL;
    int64_t count = 0;
    if (rep && rep->type == REDIS_REPLY_INTEGER) {
        status = 0;
        count = rep->integer;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        sw_log(SW_LOG_WARN, "redis: presence script: %s", rep->str);
    } else if (rep) {
        sw_log(SW_LOG_ERROR, "redis: presence script: unexpected reply type %d", rep->type);
    }
    sw_store_complete_count(&q->rs->base, q->count_cb, q->udata, status, count);
}

static void complete_commit(rreq_t *q, const redisReply *rep)
{
    int status = SW_EUNAVAIL;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        status = rep->integer == 1   ? 0
                 : rep->integer == 2 ? SW_ECONFLICT
                 : rep->integer == 3 ? SW_EAGAIN
                                     : SW_ELEASE;
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        sw_log(SW_LOG_WARN, "redis: commit script: %s", rep->str);
    else if (rep)
        sw_log(SW_LOG_ERROR, "redis: commit script: unexpected reply type %d", rep->type);
    sw_store_complete_commit(&q->rs->base, q->commit_cb, q->udata, status);
}

static void complete_log(rreq_t *q, const redisReply *rep)
{
    sw_store_t *s = &q->rs->base;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            sw_log(SW_LOG_WARN, "redis: HMGET log: %s", rep->str);
        sw_store_complete_log(s, q->log_cb, q->udata, SW_EUNAVAIL, NULL, NULL, 0);
        return;
    }
    size_t n = rep->elements;
    const char **entries = sw_xcalloc(n ? n : 1, sizeof(*entries));
    size_t *lens = sw_xcalloc(n ? n : 1, sizeof(*lens));
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type == REDIS_REPLY_STRING) {
            entries[i] = rep->element[i]->str;
            lens[i] = (size_t)rep->element[i]->len;
        }
    }
    sw_store_complete_log(s, q->log_cb, q->udata, 0, entries, lens, n);
    free(entries);
    free(lens);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rreq_t *q = priv;
    redisReply *rep = reply;
    if (rep)
        sw_store_link_replied(q->rs->link);
    if (rep && q->rs->on_rtt)
        q->rs->on_rtt(q->rs->rtt_udata, sw_now_ns() - q->sent_ns);
    if (rep && rep->type == REDIS_REPLY_ERROR && q->script >= 0 && !q->evaled &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* The script cache is empty (restart, SCRIPT FLUSH): send the text. */
        q->evaled = 1;
        q->argv[0] = "EVAL";
        q->argvlen[0] = 4;
        q->argv[1] = sw_store_script_text(q->script);
        q->argvlen[1] = strlen(q->argv[1]);
        if (req_send(ac, q) == 0)
            return;
        rep = NULL;
    }
    switch (q->kind) {
    case REQ_LOAD:
    case REQ_READ:
        complete_load(q, rep);
        break;
    case REQ_PRESENCE:
        complete_count(q, rep);
        break;
    case REQ_COMMIT:
        complete_commit(q, rep);
        break;
    case REQ_LOG:
        complete_log(q, rep);
        break;
    case REQ_PUBLISH:
        sw_store_complete_count(&q->rs->base, q->count_cb, q->udata,
                                rep && rep->type == REDIS_REPLY_INTEGER ? 0 : SW_EUNAVAIL,
                                rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0);
        break;
    default:
        if (rep && rep->type == REDIS_REPLY_ERROR)
            sw_log(SW_LOG_WARN, "redis: release script: %s", rep->str);
        sw_store_complete(&q->rs->base);
        break;
    }
    req_free(q);
}

/* ---- Connection --------------------------------------------------------------- */

static void on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    redis_store_t *rs = priv;
    if (!rep || rs->freeing)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        /* SELECT refused (db out of range): never write to the wrong db,
         * and the link never counts as up. */
        sw_log(SW_LOG_ERROR, "redis: SELECT %d: %s", rs->db, rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    sw_store_link_replied(rs->link); /* the link is up from here */
}

/* The idle ping's answer (or NULL: the connection is gone). */
static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    redis_store_t *rs = priv;
    if (reply && !rs->freeing)
        sw_store_link_replied(rs->link);
}

static int cmd_ping(void *udata, redisAsyncContext *ac)
{
    return redisAsyncCommand(ac, on_pong, udata, "PING") == REDIS_OK ? 0 : -1;
}

/* A new command connection. Always send a first command: it arms the
 * write watcher (so the connect completes) and, for db != 0, selects the
 * db before any request queued after it. Then load the scripts, before
 * any request too: the NOSCRIPT fallback (resend as EVAL) is then only
 * for a SCRIPT FLUSH by an operator; it must stay rare because the resent
 * request runs after requests sent in the meantime. */
static void cmd_on_open(void *udata, redisAsyncContext *ac)
{
    redis_store_t *rs = udata;
    int rc = rs->db != 0 ? redisAsyncCommand(ac, on_hello, rs, "SELECT %d", rs->db)
                         : redisAsyncCommand(ac, on_hello, rs, "PING");
    if (rc == REDIS_OK)
        sw_store_link_sent(rs->link); /* no answer within the reply timeout: dropped */
    sw_store_script_load_all(ac);
}

sw_store_t *sw_store_redis_new(struct ev_loop *loop, const sw_store_opts_t *opts, const char *host,
                               int port, int db)
{
    redis_store_t *rs = sw_xcalloc(1, sizeof(*rs));
    sw_store_base_init(&rs->base, &REDIS_OPS, loop, opts);
    rs->db = db;
    rs->on_rtt = opts->on_rtt;
    rs->rtt_udata = opts->rtt_udata;
    sw_store_link_opts_t o = {.what = "connection",
                              .host = host,
                              .port = port,
                              .reply_timeout_ms = REPLY_TIMEOUT_MS,
                              .ping_ms = PING_MS,
                              .ping = cmd_ping,
                              .on_open = cmd_on_open,
                              .udata = rs};
    rs->link = sw_store_link_new(loop, &o);
    rs->subs = sw_store_sub_new(loop, host, port, REPLY_TIMEOUT_MS, PING_MS);
    sw_store_link_open(rs->link);
    return &rs->base;
}

/* ---- Backend ops ------------------------------------------------------------------ */

static void redis_destroy(sw_store_t *s)
{
    redis_store_t *rs = rs_of(s);
    rs->freeing = 1;
    while (rs->pool) {
        rreq_t *q = rs->pool;
        rs->pool = q->next_free;
        req_destroy(q);
    }
    rs->npool = 0;
    sw_store_link_free(rs->link); /* pending callbacks get NULL: SW_EUNAVAIL */
    rs->link = NULL;
    sw_store_sub_free(rs->subs);
    rs->subs = NULL;
    sw_store_base_destroy(s);
    free(rs);
}

static int redis_ready(const sw_store_t *s)
{
    const redis_store_t *rs = sw_container_of(s, redis_store_t, base);
    return sw_store_link_up(rs->link) && sw_store_sub_up(rs->subs);
}

static int redis_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs)) {
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_LOAD, SW_SCRIPT_ACQUIRE, 8);
    q->load_cb = cb;
    q->udata = udata;
    req_arg(q, "", 0); /* EVALSHA */
    req_arg(q, "", 0); /* sha */
    req_arg(q, "3", 1);
    req_arg_key(q, token, "");
    req_arg_key(q, token, ":lease");
    req_arg_key(q, token, ":live");
    req_arg(q, s->holder, s->holder_len);
    req_argf(q, "%llu", s->lease_ms);
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_commit(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb,
                        void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs)) {
        sw_store_defer_commit(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    int nargs = 14 + 2 * (int)c->nfields;
    for (size_t k = 0; k < c->nshared; k++)
        nargs += 6 + 2 * (int)c->shared[k].nfields;
    rreq_t *q = req_new(rs, REQ_COMMIT, SW_SCRIPT_COMMIT, nargs);
    q->commit_cb = cb;
    q->udata = udata;
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_argf(q, "%llu", 2 + (unsigned long long)c->nshared);
    req_arg_key(q, c->token, "");
    req_arg_key(q, c->token, ":lease");
    for (size_t k = 0; k < c->nshared; k++)
        req_arg_key(q, c->shared[k].token, "");
    req_arg(q, s->holder, s->holder_len);
    req_argf(q, "%llu", (unsigned long long)s->token_ttl_s * 1000ULL);
    req_argf(q, "%llu", s->lease_ms);
    req_argf(q, "%llu", (unsigned long long)c->seq);
    req_argf(q, "%llu",
             (c->release ? 1ULL : 0ULL) | (c->renew ? 2ULL : 0ULL) |
                 (c->refresh_ttl ? 4ULL : 0ULL));
    if (c->log_entry && c->seq) {
        char logf[32];
        int ln = snprintf(logf, sizeof(logf), "_log:%llu",
                          (unsigned long long)(c->seq % (s->log_max ? s->log_max : 256)));
        req_arg(q, logf, (size_t)ln);
    } else {
        req_arg(q, "", 0);
    }
    req_arg(q, c->log_entry, c->log_entry ? c->log_len : 0);
    req_argf(q, "%llu", (unsigned long long)c->nfields);
    req_argf(q, "%llu", (unsigned long long)c->nshared);
    for (size_t i = 0; i < c->nfields; i++) {
        req_arg(q, c->fields[i].name, c->fields[i].name_len);
        req_arg(q, c->fields[i].data, c->fields[i].len);
    }
    for (size_t k = 0; k < c->nshared; k++) {
        const sw_store_shared_write_t *w = &c->shared[k];
        req_argf(q, "%llu", (unsigned long long)w->expect_seq);
        req_argf(q, "%llu", (unsigned long long)w->expect_seq + 1);
        req_argf(q, "%llu", (unsigned long long)w->nfields);
        /* bit 1: publish the message; bit 2: claim priority (a writer
         * that keeps losing the compare-and-set makes the others step
         * aside until it has committed) */
        req_argf(q, "%llu", (w->message ? 1ULL : 0ULL) | (w->claim ? 2ULL : 0ULL));
        req_arg(q, w->message, w->message ? w->message_len : 0);
        for (size_t i = 0; i < w->nfields; i++) {
            req_arg(q, w->fields[i].name, w->fields[i].name_len);
            req_arg(q, w->fields[i].data, w->fields[i].len);
        }
    }
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_commit(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_release(sw_store_t *s, const char *token)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs))
        return SW_EUNAVAIL;
    rreq_t *q = req_new(rs, REQ_RELEASE, SW_SCRIPT_RELEASE, 5);
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_arg(q, "1", 1);
    req_arg_key(q, token, ":lease");
    req_arg(q, s->holder, s->holder_len);
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        return SW_EUNAVAIL;
    }
    return 0;
}

static int redis_read(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs)) {
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_READ, -1, 2);
    q->load_cb = cb;
    q->udata = udata;
    req_arg(q, "HGETALL", 7);
    req_arg_key(q, token, "");
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_presence(sw_store_t *s, const char *token, sw_presence_op_t op,
                          const char *const *members, size_t n, uint32_t ttl_ms,
                          sw_store_count_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs)) {
        sw_store_defer_count(s, cb, udata, SW_EUNAVAIL, 0);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_PRESENCE, SW_SCRIPT_PRESENCE, 9 + (int)n);
    q->count_cb = cb;
    q->udata = udata;
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_arg(q, "3", 1);
    req_arg_key(q, token, ":presence");
    req_arg_key(q, token, ":members");
    req_arg_key(q, token, "");
    req_argf(q, "%llu", (unsigned long long)op);
    req_argf(q, "%llu", (unsigned long long)ttl_ms);
    req_argf(q, "%llu", (unsigned long long)s->token_ttl_s * 1000ULL);
    for (size_t i = 0; i < n; i++)
        req_arg(q, members[i], strlen(members[i]));
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_count(s, cb, udata, SW_EUNAVAIL, 0);
    }
    return 0;
}

static int redis_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                          sw_store_log_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    uint64_t max = s->log_max ? s->log_max : 256;
    if (!cmd_ctx(rs)) {
        sw_store_defer_log(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_LOG, -1, (int)(last - first + 3));
    q->log_cb = cb;
    q->udata = udata;
    req_arg(q, "HMGET", 5);
    req_arg_key(q, token, "");
    for (uint64_t seq = first; seq <= last; seq++)
        req_argf(q, "_log:%llu", (unsigned long long)(seq % max));
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_log(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_live(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                      const char *const *sockids, size_t n, uint32_t ttl_ms)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs))
        return SW_EUNAVAIL;
    rreq_t *q = req_new(rs, REQ_RELEASE, SW_SCRIPT_LIVE, (int)(5 + 2 * n));
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_argf(q, "%llu", (unsigned long long)n);
    for (size_t i = 0; i < n; i++)
        req_arg_key(q, tokens[i], ":live");
    req_argf(q, "%llu", (unsigned long long)op);
    req_argf(q, "%llu", (unsigned long long)ttl_ms);
    for (size_t i = 0; i < n; i++)
        req_arg(q, sockids[i], strlen(sockids[i]));
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        return SW_EUNAVAIL;
    }
    return 0;
}

static void on_reaped(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    redis_store_t *rs = priv;
    sw_store_complete(&rs->base);
    if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
        sw_log(SW_LOG_NOTICE, "released %lld lease(s) left by the previous worker in this slot",
               rep->integer);
}

static int redis_reap(sw_store_t *s, const char *holder)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs))
        return SW_EUNAVAIL;
    /* EVAL (not EVALSHA): it runs once per worker start, before the script
     * cache may be loaded on a fresh Redis */
    const char *text = sw_store_script_text(SW_SCRIPT_REAP);
    const char *argv[4] = {"EVAL", text, "0", holder};
    size_t argvlen[4] = {4, strlen(text), 1, strlen(holder)};
    if (redisAsyncCommandArgv(cmd_ctx(rs), on_reaped, rs, 4, argv, argvlen) != REDIS_OK)
        return SW_EUNAVAIL;
    return 0;
}

typedef struct secret_req {
    redis_store_t *rs;
    sw_store_value_cb cb;
    void *udata;
} secret_req_t;

static void on_secret(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    secret_req_t *q = priv;
    if (rep && rep->type == REDIS_REPLY_STRING && rep->len > 0) {
        sw_store_complete_value(&q->rs->base, q->cb, q->udata, 0, rep->str, rep->len);
    } else {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            sw_log(SW_LOG_WARN, "redis: secret script: %s", rep->str);
        sw_store_complete_value(&q->rs->base, q->cb, q->udata, SW_EUNAVAIL, "", 0);
    }
    free(q);
}

static int redis_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                        void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs))
        return SW_EUNAVAIL;
    secret_req_t *q = sw_xcalloc(1, sizeof(*q));
    q->rs = rs;
    q->cb = cb;
    q->udata = udata;
    /* EVAL (not EVALSHA): once per worker start, like the reap */
    const char *text = sw_store_script_text(SW_SCRIPT_SECRET);
    const char *argv[5] = {"EVAL", text, "1", "sw:secret", proposal};
    size_t argvlen[5] = {4, strlen(text), 1, 9, len};
    if (redisAsyncCommandArgv(cmd_ctx(rs), on_secret, q, 5, argv, argvlen) != REDIS_OK) {
        free(q);
        return SW_EUNAVAIL;
    }
    return 0;
}

static int redis_publish_acked(sw_store_t *s, const char *name, const char *data, size_t len,
                               sw_store_count_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs)) {
        sw_store_defer_count(s, cb, udata, SW_EUNAVAIL, 0);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_PUBLISH, -1, 3);
    q->count_cb = cb;
    q->udata = udata;
    req_arg(q, "PUBLISH", 7);
    req_arg_key(q, name, ":ch");
    req_arg(q, data, len);
    req_seal(q);
    if (req_send(cmd_ctx(rs), q) < 0) {
        req_free(q);
        sw_store_defer_count(s, cb, udata, SW_EUNAVAIL, 0);
    }
    return 0;
}

static int redis_publish(sw_store_t *s, const char *name, const char *data, size_t len)
{
    redis_store_t *rs = rs_of(s);
    if (!cmd_ctx(rs))
        return SW_EUNAVAIL;
    char channel[SW_STORE_TOKEN_MAX + 16];
    int n = snprintf(channel, sizeof(channel), "sw:{%s}:ch", name);
    const char *argv[3] = {"PUBLISH", channel, data};
    size_t argvlen[3] = {7, (size_t)n, len};
    if (redisAsyncCommandArgv(cmd_ctx(rs), NULL, NULL, 3, argv, argvlen) != REDIS_OK)
        return SW_EUNAVAIL;
    return 0;
}

/* ---- Pub/sub (store_sub.c) ------------------------------------------------------ */

static int redis_subscribe(sw_store_t *s, const char *token, sw_store_message_cb on_message,
                           sw_store_resync_cb on_resync, void *udata)
{
    return sw_store_sub_add(rs_of(s)->subs, token, on_message, on_resync, udata);
}

static int redis_unsubscribe(sw_store_t *s, const char *token)
{
    return sw_store_sub_remove(rs_of(s)->subs, token);
}

static const sw_store_ops_t REDIS_OPS = {
    .kind = "redis",
    .publish = redis_publish,
    .read_log = redis_read_log,
    .live = redis_live,
    .publish_acked = redis_publish_acked,
    .reap = redis_reap,
    .secret = redis_secret,
    .destroy = redis_destroy,
    .ready = redis_ready,
    .acquire_load = redis_acquire_load,
    .commit = redis_commit,
    .release = redis_release,
    .read = redis_read,
    .presence = redis_presence,
    .subscribe = redis_subscribe,
    .unsubscribe = redis_unsubscribe,
};
