/* store_redis.c — the Redis store backend: one hiredis async connection on
 * the worker's libev loop, fenced Lua scripts sent by EVALSHA (with an EVAL
 * fallback on NOSCRIPT), reconnect with backoff.
 *
 * Sources: Redis docs "EVALSHA" / "Scripting with Lua" (NOSCRIPT error,
 * script cache emptied by restarts and SCRIPT FLUSH), "SET" (NX, PX),
 * hiredis 0.14 async API (a pending callback gets a NULL reply when the
 * context is freed or the connection drops). */
#include "worker/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libev.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* A connection that answers nothing for this long while requests wait is
 * dropped and reopened (hiredis 0.14 has no async timeouts): the waiting
 * requests complete with SW_EUNAVAIL instead of hanging. */
#define REPLY_TIMEOUT_MS 5000
#define WATCHDOG_PERIOD_S 0.5

/* KEYS[1] hash, KEYS[2] lease; ARGV[1] holder, ARGV[2] lease_ms.
 * {0}: busy; {1, {field, value, ...}}: lease ours, hash read. */
static const char ACQUIRE_LUA[] =
    "local cur = redis.call('GET', KEYS[2])\n"
    "if cur == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
    "elseif not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {0}\n"
    "end\n"
    "return {1, redis.call('HGETALL', KEYS[1])}\n";

/* KEYS[1] hash, KEYS[2] lease, KEYS[3] log; ARGV[1] holder, ARGV[2] ttl_ms,
 * ARGV[3] lease_ms, ARGV[4] seq, ARGV[5] release (0/1), ARGV[6] log_max,
 * ARGV[7] log entry ("" = none), ARGV[8..] field, value pairs.
 * 0: the lease is not ours (nothing written); 1: committed. */
static const char COMMIT_LUA[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "for i = 8, #ARGV, 2 do\n"
    "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "end\n"
    "if ARGV[4] ~= '0' then redis.call('HSET', KEYS[1], '_seq', ARGV[4]) end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "if ARGV[7] ~= '' then\n"
    "  redis.call('RPUSH', KEYS[3], ARGV[7])\n"
    "  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[2])\n"
    "if ARGV[5] == '1' then\n"
    "  redis.call('DEL', KEYS[2])\n"
    "else\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
    "end\n"
    "return 1\n";

/* KEYS[1] lease; ARGV[1] holder. Compare-and-delete. */
static const char RELEASE_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

enum { SCRIPT_ACQUIRE, SCRIPT_COMMIT, SCRIPT_RELEASE, SCRIPT__COUNT };

static const char *const SCRIPTS[SCRIPT__COUNT] = {ACQUIRE_LUA, COMMIT_LUA, RELEASE_LUA};

typedef struct redis_store {
    sw_store_t base;
    char *host; /* host name, or unix socket path when port == 0 */
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while down */
    int connected;         /* ac is connected (onConnect OK) */
    int down;              /* a connection was lost / attempt failed, not back yet */
    int freeing;
    uint32_t backoff_ms;
    ev_timer retry_w;
    ev_timer watchdog_w;  /* drops a connection that stopped answering */
    uint32_t awaiting;    /* commands sent whose reply has not come */
    uint64_t progress_ms; /* last reply, or first send after a quiet spell */
    char sha[SCRIPT__COUNT][41];
} redis_store_t;

enum { REQ_LOAD, REQ_COMMIT, REQ_RELEASE };

/* One script request; kept until its reply so it can be resent as EVAL. */
typedef struct rreq {
    redis_store_t *rs;
    int kind;
    int script;
    int evaled; /* already resent with the full script text */
    sw_store_load_cb load_cb;
    sw_store_commit_cb commit_cb;
    void *udata;
    int argc;
    const char **argv;
    size_t *argvlen;
    size_t *off; /* offsets of argv[i] in buf while building */
    int cap;
    sw_buf_t buf; /* argument bytes */
} rreq_t;

static const sw_store_ops_t REDIS_OPS;

static redis_store_t *rs_of(sw_store_t *s)
{
    return sw_container_of(s, redis_store_t, base);
}

/* ---- Requests ---------------------------------------------------------------- */

static rreq_t *req_new(redis_store_t *rs, int kind, int script, int nargs)
{
    rreq_t *q = sw_xcalloc(1, sizeof(*q));
    q->rs = rs;
    q->kind = kind;
    q->script = script;
    q->cap = nargs;
    q->argv = sw_xcalloc((size_t)nargs, sizeof(*q->argv));
    q->argvlen = sw_xcalloc((size_t)nargs, sizeof(*q->argvlen));
    q->off = sw_xcalloc((size_t)nargs, sizeof(*q->off));
    sw_buf_init(&q->buf, 0);
    return q;
}

static void req_free(rreq_t *q)
{
    free(q->argv);
    free(q->argvlen);
    free(q->off);
    sw_buf_destroy(&q->buf);
    free(q);
}

static void req_arg(rreq_t *q, const void *p, size_t n)
{
    q->off[q->argc] = q->buf.len;
    q->argvlen[q->argc] = n;
    q->argc++;
    if (n)
        (void)sw_buf_append(&q->buf, p, n); /* unbounded buffer: cannot fail */
}

static void req_argf(rreq_t *q, const char *fmt, unsigned long long v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), fmt, v);
    req_arg(q, num, (size_t)n);
}

static void req_arg_key(rreq_t *q, const char *token, const char *suffix)
{
    char key[SW_STORE_TOKEN_MAX + 32];
    int n = snprintf(key, sizeof(key), "sw:{%s}%s", token, suffix);
    req_arg(q, key, (size_t)n);
}

/* Point argv into the finished buffer; argv[0..1] are EVALSHA + sha. */
static void req_seal(rreq_t *q)
{
    for (int i = 0; i < q->argc; i++)
        q->argv[i] = q->buf.data ? q->buf.data + q->off[i] : "";
    q->argv[0] = "EVALSHA";
    q->argvlen[0] = 7;
    q->argv[1] = q->rs->sha[q->script];
    q->argvlen[1] = 40;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

static int req_send(redisAsyncContext *ac, rreq_t *q)
{
    if (redisAsyncCommandArgv(ac, on_reply, q, q->argc, q->argv, q->argvlen) != REDIS_OK)
        return SW_EUNAVAIL;
    if (q->rs->awaiting++ == 0)
        q->rs->progress_ms = sw_now_ms();
    return 0;
}

static void complete_load(rreq_t *q, const redisReply *rep)
{
    sw_store_t *s = &q->rs->base;
    sw_store_loaded_t res = {.status = SW_EUNAVAIL};
    sw_store_field_t *raw = NULL, *out = NULL;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        if (rep->element[0]->integer == 0) {
            res.status = SW_EBUSY;
        } else if (rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_ARRAY &&
                   rep->element[1]->elements % 2 == 0) {
            const redisReply *h = rep->element[1];
            size_t n = h->elements / 2;
            raw = sw_xcalloc(n ? n : 1, sizeof(*raw));
            out = sw_xcalloc(n ? n : 1, sizeof(*out));
            for (size_t i = 0; i < n; i++) {
                raw[i].name = h->element[2 * i]->str;
                raw[i].name_len = (size_t)h->element[2 * i]->len;
                raw[i].data = h->element[2 * i + 1]->str;
                raw[i].len = (size_t)h->element[2 * i + 1]->len;
            }
            sw_store_loaded_fill(&res, raw, n, out);
        } else {
            sw_log(SW_LOG_ERROR, "redis: acquire script: unexpected reply shape");
        }
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        sw_log(SW_LOG_WARN, "redis: acquire script: %s", rep->str);
    } else if (rep) {
        sw_log(SW_LOG_ERROR, "redis: acquire script: unexpected reply type %d", rep->type);
    }
    sw_store_complete_load(s, q->load_cb, q->udata, &res);
    free(raw);
    free(out);
}

static void complete_commit(rreq_t *q, const redisReply *rep)
{
    int status = SW_EUNAVAIL;
    if (rep && rep->type == REDIS_REPLY_INTEGER)
        status = rep->integer == 1 ? 0 : SW_ELEASE;
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        sw_log(SW_LOG_WARN, "redis: commit script: %s", rep->str);
    else if (rep)
        sw_log(SW_LOG_ERROR, "redis: commit script: unexpected reply type %d", rep->type);
    sw_store_complete_commit(&q->rs->base, q->commit_cb, q->udata, status);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rreq_t *q = priv;
    redisReply *rep = reply;
    if (q->rs->awaiting > 0)
        q->rs->awaiting--;
    q->rs->progress_ms = sw_now_ms();
    if (rep && rep->type == REDIS_REPLY_ERROR && !q->evaled &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* The script cache is empty (restart, SCRIPT FLUSH): send the text. */
        q->evaled = 1;
        q->argv[0] = "EVAL";
        q->argvlen[0] = 4;
        q->argv[1] = SCRIPTS[q->script];
        q->argvlen[1] = strlen(SCRIPTS[q->script]);
        if (req_send(ac, q) == 0)
            return;
        rep = NULL;
    }
    switch (q->kind) {
    case REQ_LOAD:
        complete_load(q, rep);
        break;
    case REQ_COMMIT:
        complete_commit(q, rep);
        break;
    default:
        if (rep && rep->type == REDIS_REPLY_ERROR)
            sw_log(SW_LOG_WARN, "redis: release script: %s", rep->str);
        if (q->rs->base.inflight > 0)
            q->rs->base.inflight--;
        break;
    }
    req_free(q);
}

/* ---- Connection --------------------------------------------------------------- */

static void start_connect(redis_store_t *rs);

static void schedule_retry(redis_store_t *rs)
{
    if (rs->freeing)
        return;
    ev_timer_stop(rs->base.loop, &rs->retry_w);
    ev_timer_set(&rs->retry_w, rs->backoff_ms / 1000.0, 0.);
    ev_timer_start(rs->base.loop, &rs->retry_w);
    rs->backoff_ms = SW_MIN(rs->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void went_down(redis_store_t *rs, const char *why)
{
    rs->ac = NULL;
    rs->connected = 0;
    rs->awaiting = 0;
    if (rs->freeing)
        return;
    if (!rs->down) {
        rs->down = 1;
        sw_log(SW_LOG_WARN, "redis: connection lost: %s", why && why[0] ? why : "closed");
    }
    schedule_retry(rs);
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    redis_store_t *rs = sw_container_of(w, redis_store_t, watchdog_w);
    if (!rs->ac || !rs->awaiting)
        return;
    uint64_t quiet = sw_now_ms() - rs->progress_ms;
    if (quiet < REPLY_TIMEOUT_MS)
        return;
    sw_log(SW_LOG_WARN, "redis: no reply for %llu ms with %u command(s) waiting; reconnecting",
           (unsigned long long)quiet, rs->awaiting);
    redisAsyncContext *ac = rs->ac;
    redisAsyncFree(ac); /* waiting callbacks get NULL: SW_EUNAVAIL */
    if (rs->ac == ac)   /* no disconnect callback came: mark it down here */
        went_down(rs, "reply timeout");
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    redis_store_t *rs = sw_container_of(w, redis_store_t, retry_w);
    if (!rs->ac)
        start_connect(rs);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_store_t *rs = ac->data;
    if (status != REDIS_OK) {
        went_down(rs, ac->errstr); /* hiredis frees ac after this */
        return;
    }
    rs->connected = 1;
    rs->backoff_ms = BACKOFF_MIN_MS;
    if (rs->down) {
        rs->down = 0;
        sw_log(SW_LOG_NOTICE, "redis: connection restored");
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_store_t *rs = ac->data;
    went_down(rs, status == REDIS_OK ? "closed" : ac->errstr);
}

static void on_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    redis_store_t *rs = ac->data;
    if (rep && rep->type == REDIS_REPLY_ERROR && !rs->freeing) {
        /* SELECT refused (db out of range): never write to the wrong db. */
        sw_log(SW_LOG_ERROR, "redis: SELECT %d: %s", rs->db, rep->str);
        redisAsyncDisconnect(ac);
    }
}

static void on_script_load(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        sw_log(SW_LOG_ERROR, "redis: SCRIPT LOAD: %s", rep->str);
}

static void start_connect(redis_store_t *rs)
{
    redisAsyncContext *ac =
        rs->port ? redisAsyncConnect(rs->host, rs->port) : redisAsyncConnectUnix(rs->host);
    if (!ac) {
        went_down(rs, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(rs, why);
        return;
    }
    ac->data = rs;
    rs->ac = ac;
    rs->connected = 0;
    redisLibevAttach(rs->base.loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Always send a first command: it arms the write watcher (so the
     * connect completes) and, for db != 0, selects the db before any
     * request queued after it. */
    if (rs->db != 0)
        redisAsyncCommand(ac, on_hello, NULL, "SELECT %d", rs->db);
    else
        redisAsyncCommand(ac, on_hello, NULL, "PING");
    /* Load every script before any request: Redis runs one connection's
     * commands in order, so EVALSHA never meets an empty script cache on
     * this connection. The NOSCRIPT fallback (resend as EVAL) is then
     * only for a SCRIPT FLUSH by an operator; it must stay rare because
     * the resent request runs after requests sent in the meantime. */
    for (int i = 0; i < SCRIPT__COUNT; i++)
        redisAsyncCommand(ac, on_script_load, NULL, "SCRIPT LOAD %s", SCRIPTS[i]);
}

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        sw_log(SW_LOG_CRIT, "EVP_Digest(sha1) failed");
        abort();
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

sw_store_t *sw_store_redis_new(struct ev_loop *loop, const sw_store_opts_t *opts, const char *host,
                               int port, int db)
{
    redis_store_t *rs = sw_xcalloc(1, sizeof(*rs));
    sw_store_base_init(&rs->base, &REDIS_OPS, loop, opts);
    rs->host = sw_xstrdup(host);
    rs->port = port;
    rs->db = db;
    rs->backoff_ms = BACKOFF_MIN_MS;
    ev_timer_init(&rs->retry_w, on_retry, 0., 0.);
    ev_timer_init(&rs->watchdog_w, on_watchdog, WATCHDOG_PERIOD_S, WATCHDOG_PERIOD_S);
    ev_timer_start(loop, &rs->watchdog_w);
    ev_unref(loop); /* the watchdog alone does not keep the loop alive */
    for (int i = 0; i < SCRIPT__COUNT; i++)
        sha1_hex(SCRIPTS[i], rs->sha[i]);
    start_connect(rs);
    return &rs->base;
}

/* ---- Backend ops ------------------------------------------------------------------ */

static void redis_destroy(sw_store_t *s)
{
    redis_store_t *rs = rs_of(s);
    rs->freeing = 1;
    ev_timer_stop(s->loop, &rs->retry_w);
    ev_ref(s->loop);
    ev_timer_stop(s->loop, &rs->watchdog_w);
    if (rs->ac) {
        redisAsyncContext *ac = rs->ac;
        rs->ac = NULL;
        redisAsyncFree(ac); /* pending callbacks get NULL: SW_EUNAVAIL */
    }
    sw_store_base_destroy(s);
    free(rs->host);
    free(rs);
}

static int redis_ready(const sw_store_t *s)
{
    const redis_store_t *rs = sw_container_of(s, redis_store_t, base);
    return rs->ac && rs->connected;
}

static int redis_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!rs->ac) {
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_LOAD, SCRIPT_ACQUIRE, 7);
    q->load_cb = cb;
    q->udata = udata;
    req_arg(q, "", 0); /* EVALSHA */
    req_arg(q, "", 0); /* sha */
    req_arg(q, "2", 1);
    req_arg_key(q, token, "");
    req_arg_key(q, token, ":lease");
    req_arg(q, s->holder, s->holder_len);
    req_argf(q, "%llu", s->lease_ms);
    req_seal(q);
    if (req_send(rs->ac, q) < 0) {
        req_free(q);
        sw_store_defer_load(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_commit(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb,
                        void *udata)
{
    redis_store_t *rs = rs_of(s);
    if (!rs->ac) {
        sw_store_defer_commit(s, cb, udata, SW_EUNAVAIL);
        return 0;
    }
    rreq_t *q = req_new(rs, REQ_COMMIT, SCRIPT_COMMIT, 13 + 2 * (int)c->nfields);
    q->commit_cb = cb;
    q->udata = udata;
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_arg(q, "3", 1);
    req_arg_key(q, c->token, "");
    req_arg_key(q, c->token, ":lease");
    req_arg_key(q, c->token, ":log");
    req_arg(q, s->holder, s->holder_len);
    req_argf(q, "%llu", (unsigned long long)s->token_ttl_s * 1000ULL);
    req_argf(q, "%llu", s->lease_ms);
    req_argf(q, "%llu", (unsigned long long)c->seq);
    req_arg(q, c->release ? "1" : "0", 1);
    req_argf(q, "%llu", s->log_max);
    req_arg(q, c->log_entry, c->log_entry ? c->log_len : 0);
    for (size_t i = 0; i < c->nfields; i++) {
        req_arg(q, c->fields[i].name, c->fields[i].name_len);
        req_arg(q, c->fields[i].data, c->fields[i].len);
    }
    req_seal(q);
    if (req_send(rs->ac, q) < 0) {
        req_free(q);
        sw_store_defer_commit(s, cb, udata, SW_EUNAVAIL);
    }
    return 0;
}

static int redis_release(sw_store_t *s, const char *token)
{
    redis_store_t *rs = rs_of(s);
    if (!rs->ac)
        return SW_EUNAVAIL;
    rreq_t *q = req_new(rs, REQ_RELEASE, SCRIPT_RELEASE, 5);
    req_arg(q, "", 0);
    req_arg(q, "", 0);
    req_arg(q, "1", 1);
    req_arg_key(q, token, ":lease");
    req_arg(q, s->holder, s->holder_len);
    req_seal(q);
    if (req_send(rs->ac, q) < 0) {
        req_free(q);
        return SW_EUNAVAIL;
    }
    s->inflight++;
    return 0;
}

static const sw_store_ops_t REDIS_OPS = {
    .kind = "redis",
    .destroy = redis_destroy,
    .ready = redis_ready,
    .acquire_load = redis_acquire_load,
    .commit = redis_commit,
    .release = redis_release,
};
