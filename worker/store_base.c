/* store_base.c — what every store backend shares (worker/store_int.h):
 * the common head of a store, the queue that delivers completions from
 * the loop, and the end of every request's in-flight count. */
#include "worker/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define DEFAULT_TTL_S 3600
#define DEFAULT_LEASE_MS 10000
#define DEFAULT_LOG_MAX 256

/* A request is done: uncount it. */
static void request_done(sw_store_t *s)
{
    if (s->inflight > 0)
        s->inflight--;
}

static void done_free(sw_store_done_t *d)
{
    free(d->fields);
    free(d->blob);
    free(d->name);
    free(d);
}

/* A log completion: its entries are views into the item. */
static void deliver_log(sw_store_done_t *d)
{
    if (d->status != 0) {
        d->log_cb(d->udata, d->status, NULL, NULL, 0);
        return;
    }
    size_t n = (size_t)d->count;
    const char **entries = sw_xcalloc(n ? n : 1, sizeof(*entries));
    size_t *lens = sw_xcalloc(n ? n : 1, sizeof(*lens));
    for (size_t i = 0; i < n; i++) {
        entries[i] = d->fields[i].data;
        lens[i] = d->fields[i].len;
    }
    d->log_cb(d->udata, 0, entries, lens, n);
    free(entries);
    free(lens);
}

static void deliver(sw_store_t *s, sw_store_done_t *d, int cancelled)
{
    if (d->run) { /* a backend event, not a request */
        d->run(s, d, cancelled);
        done_free(d);
        return;
    }
    request_done(s);
    if (d->load_cb)
        d->load_cb(d->udata, &d->loaded);
    else if (d->commit_cb)
        d->commit_cb(d->udata, d->status);
    else if (d->log_cb) {
        if (!cancelled)
            deliver_log(d);
    } else if (d->value_cb)
        d->value_cb(d->udata, d->status, d->blob ? d->blob : "", d->blob_len);
    else if (d->count_cb)
        d->count_cb(d->udata, d->status, d->count);
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

/* A completion record of udata and status, to be given its callback. */
static sw_store_done_t *done_new(void *udata, int status)
{
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->udata = udata;
    d->status = status;
    return d;
}

void sw_store_defer_load(sw_store_t *s, sw_store_load_cb cb, void *udata, int status)
{
    sw_store_done_t *d = done_new(udata, status);
    d->load_cb = cb;
    d->loaded.status = status;
    sw_store_defer(s, d);
}

void sw_store_defer_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status)
{
    sw_store_done_t *d = done_new(udata, status);
    d->commit_cb = cb;
    sw_store_defer(s, d);
}

void sw_store_defer_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                          int64_t count)
{
    sw_store_done_t *d = done_new(udata, status);
    d->count_cb = cb;
    d->count = count;
    sw_store_defer(s, d);
}

void sw_store_defer_log(sw_store_t *s, sw_store_log_cb cb, void *udata, int status)
{
    sw_store_done_t *d = done_new(udata, status);
    d->log_cb = cb;
    sw_store_defer(s, d);
}

void sw_store_complete(sw_store_t *s)
{
    request_done(s);
}

void sw_store_complete_load(sw_store_t *s, sw_store_load_cb cb, void *udata,
                            const sw_store_loaded_t *res)
{
    request_done(s);
    cb(udata, res);
}

void sw_store_complete_commit(sw_store_t *s, sw_store_commit_cb cb, void *udata, int status)
{
    request_done(s);
    cb(udata, status);
}

void sw_store_complete_count(sw_store_t *s, sw_store_count_cb cb, void *udata, int status,
                             int64_t count)
{
    request_done(s);
    if (cb)
        cb(udata, status, count);
}

void sw_store_complete_log(sw_store_t *s, sw_store_log_cb cb, void *udata, int status,
                           const char *const *entries, const size_t *lens, size_t n)
{
    request_done(s);
    cb(udata, status, entries, lens, n);
}

void sw_store_complete_value(sw_store_t *s, sw_store_value_cb cb, void *udata, int status,
                             const char *value, size_t len)
{
    request_done(s);
    cb(udata, status, value, len);
}

int sw_store_field_is(const sw_store_field_t *f, const char *name)
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
        if (sw_store_field_is(f, "_seq")) {
            char num[24];
            size_t n = SW_MIN(f->len, sizeof(num) - 1);
            memcpy(num, f->data, n);
            num[n] = '\0';
            res->seq = strtoull(num, NULL, 10);
        } else if (sw_store_field_is(f, "_meta")) {
            res->meta = f->data;
            res->meta_len = f->len;
        } else {
            out[res->nfields++] = *f;
        }
    }
}
