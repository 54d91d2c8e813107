/* store.c — the store's interface: argument checks, the in-flight bound,
 * and dispatch to the Redis or memory backend through its ops table
 * (worker/store_int.h). Every request is counted in flight here before a
 * backend sees it; the backend's completion uncounts it (store_base.c). */
#include "worker/store.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/redis_url.h"
#include "worker/store_int.h"
#include "worker/store_mem.h"
#include "worker/store_redis.h"

/* ---- Checks and the in-flight count ------------------------------------------------ */

static int token_ok(const char *token)
{
    if (!token || !token[0])
        return 0;
    size_t n = 0;
    for (const char *p = token; *p; p++, n++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f || ch == '{' || ch == '}')
            return 0;
    }
    return n <= SW_STORE_TOKEN_MAX;
}

static int fields_ok(const sw_store_field_t *fields, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const sw_store_field_t *f = &fields[i];
        if (!f->name || f->name_len == 0 || (f->len > 0 && !f->data) ||
            sw_store_field_is(f, "_seq"))
            return 0;
    }
    return 1;
}

/* Count a request in flight before a backend sees it. BOUNDED: refused
 * with SW_ENOMEM at SW_STORE_MAX_INFLIGHT (the calls the bound has always
 * covered); the others are counted but never refused. */
enum { UNBOUNDED, BOUNDED };

static int inflight_take(sw_store_t *s, int bounded)
{
    if (s->closing)
        return SW_EUNAVAIL;
    if (bounded && s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    s->inflight++;
    return 0;
}

/* The backend's answer to a counted request: one it refused (rc < 0)
 * never completes, so it is uncounted here. Returns rc. */
static int inflight_settle(sw_store_t *s, int rc)
{
    if (rc < 0 && s->inflight > 0)
        s->inflight--;
    return rc;
}

/* ---- Public API --------------------------------------------------------------- */

sw_store_t *sw_store_new(struct ev_loop *loop, const sw_store_opts_t *opts)
{
    if (!loop || !opts) {
        sw_log(SW_LOG_ERROR, "store: no loop or options");
        return NULL;
    }
    if (!opts->holder_id || !opts->holder_id[0]) {
        sw_log(SW_LOG_ERROR, "store: empty lease holder id");
        return NULL;
    }
    if (!opts->redis_url)
        return sw_store_mem_new(loop, opts);
    char host[512];
    int port, db;
    if (sw_redis_url_parse(opts->redis_url, host, sizeof(host), &port, &db) < 0) {
        sw_log(SW_LOG_ERROR,
               "store: bad Redis URL \"%s\" (want redis://host[:port][/db] or "
               "unix:///path[?db=N])",
               opts->redis_url);
        return NULL;
    }
    return sw_store_redis_new(loop, opts, host, port, db);
}

void sw_store_free(sw_store_t *s)
{
    if (!s)
        return;
    s->closing = 1; /* callbacks run by destroy cannot start new requests */
    s->ops->destroy(s);
}

int sw_store_ready(const sw_store_t *s)
{
    return s && !s->closing && s->ops->ready(s);
}

const char *sw_store_kind(const sw_store_t *s)
{
    return s->ops->kind;
}

int sw_store_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token))
        return SW_EINVAL;
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->acquire_load(s, token, cb, udata));
}

int sw_store_commit(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb, void *udata)
{
    if (!s || !c || !cb || !token_ok(c->token))
        return SW_EINVAL;
    if (c->nfields > 0 && !c->fields)
        return SW_EINVAL;
    if (c->log_len > 0 && !c->log_entry)
        return SW_EINVAL;
    if (!fields_ok(c->fields, c->nfields))
        return SW_EINVAL;
    if (c->nshared > SW_STORE_MAX_SHARED || (c->nshared > 0 && !c->shared))
        return SW_EINVAL;
    for (size_t i = 0; i < c->nshared; i++) {
        const sw_store_shared_write_t *w = &c->shared[i];
        if (!token_ok(w->token) || strcmp(w->token, c->token) == 0)
            return SW_EINVAL;
        if ((w->nfields > 0 && !w->fields) || !fields_ok(w->fields, w->nfields))
            return SW_EINVAL;
        if (w->message_len > 0 && !w->message)
            return SW_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->shared[j].token, w->token) == 0)
                return SW_EINVAL;
    }
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->commit(s, c, cb, udata));
}

int sw_store_release(sw_store_t *s, const char *token)
{
    if (!s || !token_ok(token))
        return SW_EINVAL;
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->release(s, token));
}

int sw_store_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                      sw_store_log_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token) || first == 0 || last < first ||
        last - first + 1 > (s->log_max ? s->log_max : 256))
        return SW_EINVAL;
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->read_log(s, token, first, last, cb, udata));
}

int sw_store_live(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                  const char *const *sockids, size_t n, uint32_t ttl_ms)
{
    if (!s || (n && (!tokens || !sockids)) || op < SW_LIVE_SET || op > SW_LIVE_DROP)
        return SW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!token_ok(tokens[i]) || !sockids[i])
            return SW_EINVAL;
    for (size_t off = 0; off < n; off += SW_STORE_LIVE_BATCH) {
        size_t k = SW_MIN(n - off, SW_STORE_LIVE_BATCH);
        if (inflight_take(s, UNBOUNDED) < 0)
            return SW_EUNAVAIL;
        int rc = inflight_settle(
            s, s->ops->live(s, op, tokens + off, sockids + off, k, ttl_ms ? ttl_ms : 15000));
        if (rc < 0)
            return rc;
    }
    return 0;
}

int sw_store_reap(sw_store_t *s, const char *holder)
{
    if (!s || !holder || !token_ok(holder))
        return SW_EINVAL;
    if (inflight_take(s, UNBOUNDED) < 0)
        return SW_EUNAVAIL;
    return inflight_settle(s, s->ops->reap(s, holder));
}

int sw_store_publish_acked(sw_store_t *s, const char *name, const char *data, size_t len,
                           sw_store_count_cb cb, void *udata)
{
    if (!s || !data || !cb || !token_ok(name))
        return SW_EINVAL;
    if (inflight_take(s, UNBOUNDED) < 0)
        return SW_EUNAVAIL;
    return inflight_settle(s, s->ops->publish_acked(s, name, data, len, cb, udata));
}

int sw_store_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                    void *udata)
{
    if (!s || !proposal || len == 0 || len > 256 || !cb)
        return SW_EINVAL;
    if (inflight_take(s, UNBOUNDED) < 0)
        return SW_EUNAVAIL;
    return inflight_settle(s, s->ops->secret(s, proposal, len, cb, udata));
}

int sw_store_publish(sw_store_t *s, const char *name, const char *data, size_t len)
{
    if (!s || !data || !token_ok(name))
        return SW_EINVAL;
    if (s->closing)
        return SW_EUNAVAIL;
    return s->ops->publish(s, name, data, len);
}

int sw_store_read(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token))
        return SW_EINVAL;
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->read(s, token, cb, udata));
}

int sw_store_presence(sw_store_t *s, const char *shared_token, sw_presence_op_t op,
                      const char *const *members, size_t n, uint32_t ttl_ms, sw_store_count_cb cb,
                      void *udata)
{
    if (!s || !token_ok(shared_token) || op < SW_PRESENCE_ADD || op > SW_PRESENCE_REAP)
        return SW_EINVAL;
    if ((n > 0 && !members) || n > SW_STORE_MAX_PRESENCE_MEMBERS || ttl_ms == 0)
        return SW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!token_ok(members[i]))
            return SW_EINVAL;
    int rc = inflight_take(s, BOUNDED);
    if (rc < 0)
        return rc;
    return inflight_settle(s, s->ops->presence(s, shared_token, op, members, n, ttl_ms, cb, udata));
}

int sw_store_subscribe(sw_store_t *s, const char *shared_token, sw_store_message_cb on_message,
                       sw_store_resync_cb on_resync, void *udata)
{
    if (!s || !on_message || !token_ok(shared_token))
        return SW_EINVAL;
    if (s->closing)
        return SW_EUNAVAIL;
    return s->ops->subscribe(s, shared_token, on_message, on_resync, udata);
}

int sw_store_unsubscribe(sw_store_t *s, const char *shared_token)
{
    if (!s || !token_ok(shared_token) || s->closing)
        return SW_ENOTFOUND;
    return s->ops->unsubscribe(s, shared_token);
}
