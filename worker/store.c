/* store.c — the store front end: argument checks, dispatch to
 * the Redis or memory backend, and the deferred-completion queue both
 * backends use. */
#include "worker/store.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/redis_url.h"
#include "worker/store_int.h"

#define DEFAULT_TTL_S 3600
#define DEFAULT_LEASE_MS 10000
#define DEFAULT_LOG_MAX 256

/* ---- Base and deferred completions ------------------------------------------ */

static void done_free(sw_store_done_t *d)
{
    free(d->fields);
    free(d->blob);
    free(d->name);
    free(d);
}

static void deliver(sw_store_t *s, sw_store_done_t *d, int cancelled)
{
    if (d->run) { /* a backend event, not a request */
        d->run(s, d, cancelled);
        done_free(d);
        return;
    }
    if (s->inflight > 0)
        s->inflight--;
    if (d->load_cb)
        d->load_cb(d->udata, &d->loaded);
    else if (d->commit_cb)
        d->commit_cb(d->udata, d->status);
    else if (d->count_cb)
        d->count_cb(d->udata, d->status, d->count);
    else if (d->value_cb)
        d->value_cb(d->udata, d->status, d->blob ? d->blob : "", d->blob_len);
    done_free(d);
}

static void on_defer(struct ev_loop *loop, ev_idle *w, int revents)
{
    sw_store_t *s = sw_container_of(w, sw_store_t, defer_w);
    /* Deliver what is queued now; completions queued by the callbacks wait
     * for the next round. */
    sw_store_done_t *list = s->done_head;
    s->done_head = s->done_tail = NULL;
    ev_idle_stop(loop, w);
    while (list) {
        sw_store_done_t *d = list;
        list = d->next;
        deliver(s, d, 0);
    }
}

void sw_store_base_init(sw_store_t *s, const sw_store_ops_t *ops, struct ev_loop *loop,
                        const sw_store_opts_t *opts)
{
    s->ops = ops;
    s->loop = loop;
    const char *holder = opts->holder_id ? opts->holder_id : "";
    s->holder = sw_xstrdup(holder);
    s->holder_len = strlen(holder);
    s->token_ttl_s = opts->token_ttl_s ? opts->token_ttl_s : DEFAULT_TTL_S;
    s->lease_ms = opts->lease_ms ? opts->lease_ms : DEFAULT_LEASE_MS;
    s->log_max = opts->log_max ? opts->log_max : DEFAULT_LOG_MAX;
    s->inflight = 0;
    ev_idle_init(&s->defer_w, on_defer);
    s->done_head = s->done_tail = NULL;
}

void sw_store_base_destroy(sw_store_t *s)
{
    ev_idle_stop(s->loop, &s->defer_w);
    while (s->done_head) {
        sw_store_done_t *d = s->done_head;
        s->done_head = d->next;
        if (d->load_cb) {
            memset(&d->loaded, 0, sizeof(d->loaded));
            d->loaded.status = SW_EUNAVAIL;
        }
        d->status = SW_EUNAVAIL;
        d->count = 0;
        deliver(s, d, 1);
    }
    s->done_tail = NULL;
    free(s->holder);
    s->holder = NULL;
}

void sw_store_defer(sw_store_t *s, sw_store_done_t *d)
{
    d->next = NULL;
    if (s->done_tail)
        s->done_tail->next = d;
    else
        s->done_head = d;
    s->done_tail = d;
    ev_idle_start(s->loop, &s->defer_w);
}

void sw_store_defer_load(sw_store_t *s, sw_store_load_cb cb, void *udata, int status)
{
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->load_cb = cb;
    d->udata = udata;
    d->loaded.status = status;
    sw_store_defer(s, d);
}

void sw_store_defer_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status)
{
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->commit_cb = cb;
    d->udata = udata;
    d->status = status;
    sw_store_defer(s, d);
}

void sw_store_defer_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                          int64_t count)
{
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->count_cb = cb;
    d->udata = udata;
    d->status = status;
    d->count = count;
    sw_store_defer(s, d);
}

void sw_store_complete_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                             int64_t count)
{
    if (s->inflight > 0)
        s->inflight--;
    if (cb)
        cb(udata, status, count);
}

void sw_store_complete_load(sw_store_t *s, sw_store_load_cb cb, void *udata,
                            const sw_store_loaded_t *res)
{
    if (s->inflight > 0)
        s->inflight--;
    cb(udata, res);
}

void sw_store_complete_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status)
{
    if (s->inflight > 0)
        s->inflight--;
    cb(udata, status);
}

static int field_is(const sw_store_field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && memcmp(f->name, name, n) == 0;
}

void sw_store_loaded_fill(sw_store_loaded_t *res, const sw_store_field_t *raw, size_t nraw,
                          sw_store_field_t *out)
{
    memset(res, 0, sizeof(*res));
    res->status = 0;
    res->exists = nraw > 0;
    res->fields = out;
    for (size_t i = 0; i < nraw; i++) {
        const sw_store_field_t *f = &raw[i];
        if (field_is(f, "_seq")) {
            char num[24];
            size_t n = SW_MIN(f->len, sizeof(num) - 1);
            memcpy(num, f->data, n);
            num[n] = '\0';
            res->seq = strtoull(num, NULL, 10);
        } else if (field_is(f, "_meta")) {
            res->meta = f->data;
            res->meta_len = f->len;
        } else {
            out[res->nfields++] = *f;
        }
    }
}

/* ---- Public API --------------------------------------------------------------- */

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
        if (!f->name || f->name_len == 0 || (f->len > 0 && !f->data) || field_is(f, "_seq"))
            return 0;
    }
    return 1;
}

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
    s->ops->destroy(s); /* frees the backend struct after base destroy */
}

int sw_store_ready(const sw_store_t *s)
{
    return s->ops->ready(s);
}

const char *sw_store_kind(const sw_store_t *s)
{
    return s->ops->kind;
}

int sw_store_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token))
        return SW_EINVAL;
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    int rc = s->ops->acquire_load(s, token, cb, udata);
    if (rc == 0)
        s->inflight++;
    return rc;
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
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    int rc = s->ops->commit(s, c, cb, udata);
    if (rc == 0)
        s->inflight++;
    return rc;
}

int sw_store_release(sw_store_t *s, const char *token)
{
    if (!s || !token_ok(token))
        return SW_EINVAL;
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    return s->ops->release(s, token);
}

int sw_store_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                      sw_store_log_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token) || first == 0 || last < first ||
        last - first + 1 > (s->log_max ? s->log_max : 256))
        return SW_EINVAL;
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    return s->ops->read_log(s, token, first, last, cb, udata);
}

int sw_store_live(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                  const char *const *sockids, size_t n, uint32_t ttl_ms)
{
    if (!s || (n && (!tokens || !sockids)) || op < SW_LIVE_SET || op > SW_LIVE_DROP)
        return SW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!token_ok(tokens[i]) || !sockids[i])
            return SW_EINVAL;
    if (n == 0)
        return 0;
    return s->ops->live(s, op, tokens, sockids, n, ttl_ms ? ttl_ms : 15000);
}

int sw_store_reap(sw_store_t *s, const char *holder)
{
    if (!s || !holder || !token_ok(holder))
        return SW_EINVAL;
    return s->ops->reap(s, holder);
}

int sw_store_publish_acked(sw_store_t *s, const char *name, const char *data, size_t len,
                           sw_store_count_cb cb, void *udata)
{
    if (!s || !data || !cb || !token_ok(name))
        return SW_EINVAL;
    return s->ops->publish_acked(s, name, data, len, cb, udata);
}

int sw_store_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                    void *udata)
{
    if (!s || !proposal || len == 0 || len > 256 || !cb)
        return SW_EINVAL;
    return s->ops->secret(s, proposal, len, cb, udata);
}

int sw_store_publish(sw_store_t *s, const char *name, const char *data, size_t len)
{
    if (!s || !data || !token_ok(name))
        return SW_EINVAL;
    return s->ops->publish(s, name, data, len);
}

int sw_store_read(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    if (!s || !cb || !token_ok(token))
        return SW_EINVAL;
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    int rc = s->ops->read(s, token, cb, udata);
    if (rc == 0)
        s->inflight++;
    return rc;
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
    if (s->inflight >= SW_STORE_MAX_INFLIGHT)
        return SW_ENOMEM;
    int rc = s->ops->presence(s, shared_token, op, members, n, ttl_ms, cb, udata);
    if (rc == 0)
        s->inflight++;
    return rc;
}

int sw_store_subscribe(sw_store_t *s, const char *shared_token, sw_store_message_cb on_message,
                       sw_store_resync_cb on_resync, void *udata)
{
    if (!s || !on_message || !token_ok(shared_token))
        return SW_EINVAL;
    return s->ops->subscribe(s, shared_token, on_message, on_resync, udata);
}

int sw_store_unsubscribe(sw_store_t *s, const char *shared_token)
{
    if (!s || !token_ok(shared_token))
        return SW_ENOTFOUND;
    return s->ops->unsubscribe(s, shared_token);
}
