/* store_mem.c — the in-memory store backend (development mode: no Redis,
 * one worker).
 *
 * Same semantics as the Redis backend: leases with expiry, fenced commits,
 * token TTL, a bounded replay log. All memory stores of one process share
 * one table (like several clients of one Redis), so stores with different
 * holder ids contend for leases. Expiry is lazy on access, plus a sweep
 * every 10 s. Each operation is applied when it is called; its completion
 * (with a copy of the data read) is delivered later from the loop. */
#include "worker/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "common/log.h"
#include "common/util.h"

#define SWEEP_INTERVAL_S 10.0

typedef struct mem_field {
    UT_hash_handle hh;
    char *name;
    size_t name_len;
    char *data;
    size_t len;
} mem_field_t;

typedef struct mem_entry {
    UT_hash_handle hh;
    char *token;
    mem_field_t *fields;   /* the token hash; NULL = does not exist */
    uint64_t hash_expiry;  /* monotonic ms; 0 = no TTL */
    char *holder;          /* lease holder; NULL = free */
    uint64_t lease_expiry; /* monotonic ms */
    char **log;            /* ring of log_cap entries, oldest at log_start */
    size_t *log_lens;
    size_t log_cap, log_start, log_len;
    uint64_t log_expiry;
} mem_entry_t;

typedef struct mem_store {
    sw_store_t base;
    ev_timer sweep_w;
} mem_store_t;

/* The process-wide table, shared by every memory store. */
static mem_entry_t *g_entries;
static unsigned g_refs;

static const sw_store_ops_t MEM_OPS;

/* ---- Entries --------------------------------------------------------------------- */

static void fields_clear(mem_entry_t *e)
{
    mem_field_t *f, *tmp;
    HASH_ITER(hh, e->fields, f, tmp)
    {
        HASH_DEL(e->fields, f);
        free(f->name);
        free(f->data);
        free(f);
    }
    e->hash_expiry = 0;
}

static void log_clear(mem_entry_t *e)
{
    for (size_t i = 0; i < e->log_len; i++)
        free(e->log[(e->log_start + i) % e->log_cap]);
    free(e->log);
    free(e->log_lens);
    e->log = NULL;
    e->log_lens = NULL;
    e->log_cap = e->log_start = e->log_len = 0;
    e->log_expiry = 0;
}

static void entry_free(mem_entry_t *e)
{
    HASH_DEL(g_entries, e);
    fields_clear(e);
    log_clear(e);
    free(e->holder);
    free(e->token);
    free(e);
}

/* Apply expiry at `now`; returns e, or NULL when nothing is left of it. */
static mem_entry_t *entry_expire(mem_entry_t *e, uint64_t now)
{
    if (e->fields && e->hash_expiry && now >= e->hash_expiry)
        fields_clear(e);
    if (e->holder && now >= e->lease_expiry) {
        free(e->holder);
        e->holder = NULL;
    }
    if (e->log_len && e->log_expiry && now >= e->log_expiry)
        log_clear(e);
    if (!e->fields && !e->holder && !e->log_len) {
        entry_free(e);
        return NULL;
    }
    return e;
}

static mem_entry_t *entry_find(const char *token, uint64_t now)
{
    mem_entry_t *e = NULL;
    HASH_FIND_STR(g_entries, token, e);
    return e ? entry_expire(e, now) : NULL;
}

static void field_set(mem_entry_t *e, const char *name, size_t name_len, const char *data,
                      size_t len)
{
    mem_field_t *f = NULL;
    HASH_FIND(hh, e->fields, name, name_len, f);
    if (!f) {
        f = sw_xcalloc(1, sizeof(*f));
        f->name = sw_xstrndup(name, name_len);
        f->name_len = name_len;
        HASH_ADD_KEYPTR(hh, e->fields, f->name, f->name_len, f);
    } else {
        free(f->data);
    }
    f->data = sw_xstrndup(data ? data : "", len);
    f->len = len;
}

/* Append to the replay log, keeping the newest `max` entries. */
static void log_push(mem_entry_t *e, const char *entry, size_t len, size_t max)
{
    if (e->log_cap != max) { /* (re)shape the ring, keeping the newest */
        char **log = sw_xcalloc(max, sizeof(*log));
        size_t *lens = sw_xcalloc(max, sizeof(*lens));
        size_t keep = SW_MIN(e->log_len, max);
        size_t drop = e->log_len - keep;
        for (size_t i = 0; i < e->log_len; i++) {
            size_t at = (e->log_start + i) % e->log_cap;
            if (i < drop) {
                free(e->log[at]);
            } else {
                log[i - drop] = e->log[at];
                lens[i - drop] = e->log_lens[at];
            }
        }
        free(e->log);
        free(e->log_lens);
        e->log = log;
        e->log_lens = lens;
        e->log_cap = max;
        e->log_start = 0;
        e->log_len = keep;
    }
    size_t at;
    if (e->log_len == e->log_cap) { /* full: overwrite the oldest */
        at = e->log_start;
        free(e->log[at]);
        e->log_start = (e->log_start + 1) % e->log_cap;
    } else {
        at = (e->log_start + e->log_len) % e->log_cap;
        e->log_len++;
    }
    e->log[at] = sw_xstrndup(entry, len);
    e->log_lens[at] = len;
}

/* ---- Sweep ---------------------------------------------------------------------------- */

static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    uint64_t now = sw_now_ms();
    mem_entry_t *e, *tmp;
    HASH_ITER(hh, g_entries, e, tmp)
    {
        entry_expire(e, now);
    }
}

/* ---- Backend ops ------------------------------------------------------------------------ */

sw_store_t *sw_store_mem_new(struct ev_loop *loop, const sw_store_opts_t *opts)
{
    mem_store_t *ms = sw_xcalloc(1, sizeof(*ms));
    sw_store_base_init(&ms->base, &MEM_OPS, loop, opts);
    ev_timer_init(&ms->sweep_w, on_sweep, SWEEP_INTERVAL_S, SWEEP_INTERVAL_S);
    ev_timer_start(loop, &ms->sweep_w);
    g_refs++;
    return &ms->base;
}

static void mem_destroy(sw_store_t *s)
{
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    ev_timer_stop(s->loop, &ms->sweep_w);
    sw_store_base_destroy(s);
    if (--g_refs == 0) {
        mem_entry_t *e, *tmp;
        HASH_ITER(hh, g_entries, e, tmp)
        {
            entry_free(e);
        }
    }
    free(ms);
}

static int mem_ready(const sw_store_t *s)
{
    return 1;
}

static int holder_is(const mem_entry_t *e, const sw_store_t *s)
{
    return e->holder && strcmp(e->holder, s->holder) == 0;
}

static int mem_acquire_load(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    uint64_t now = sw_now_ms();
    mem_entry_t *e = entry_find(token, now);
    if (e && e->holder && !holder_is(e, s)) {
        sw_store_defer_load(s, cb, udata, SW_EBUSY);
        return 0;
    }
    if (!e) {
        e = sw_xcalloc(1, sizeof(*e));
        e->token = sw_xstrdup(token);
        HASH_ADD_KEYPTR(hh, g_entries, e->token, strlen(e->token), e);
    }
    if (!e->holder)
        e->holder = sw_xstrdup(s->holder);
    e->lease_expiry = now + s->lease_ms;

    /* Snapshot the hash: the callback runs later and may see it changed. */
    size_t n = HASH_COUNT(e->fields), bytes = 0;
    mem_field_t *f, *tmp;
    HASH_ITER(hh, e->fields, f, tmp)
    {
        bytes += f->name_len + f->len + 2;
    }
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->load_cb = cb;
    d->udata = udata;
    sw_store_field_t *raw = sw_xcalloc(n ? n : 1, sizeof(*raw));
    d->fields = sw_xcalloc(n ? n : 1, sizeof(*d->fields));
    d->blob = sw_xmalloc(bytes ? bytes : 1);
    char *p = d->blob;
    size_t i = 0;
    HASH_ITER(hh, e->fields, f, tmp)
    {
        memcpy(p, f->name, f->name_len);
        p[f->name_len] = '\0';
        raw[i].name = p;
        raw[i].name_len = f->name_len;
        p += f->name_len + 1;
        memcpy(p, f->data, f->len);
        p[f->len] = '\0';
        raw[i].data = p;
        raw[i].len = f->len;
        p += f->len + 1;
        i++;
    }
    sw_store_loaded_fill(&d->loaded, raw, n, d->fields);
    free(raw);
    sw_store_defer(s, d);
    return 0;
}

static int mem_commit(sw_store_t *s, const sw_store_commit_t *c, sw_store_commit_cb cb, void *udata)
{
    uint64_t now = sw_now_ms();
    mem_entry_t *e = entry_find(c->token, now);
    if (!e || !holder_is(e, s)) {
        sw_store_defer_commit(s, cb, udata, SW_ELEASE);
        return 0;
    }
    uint64_t ttl_ms = (uint64_t)s->token_ttl_s * 1000u;
    for (size_t i = 0; i < c->nfields; i++)
        field_set(e, c->fields[i].name, c->fields[i].name_len, c->fields[i].data, c->fields[i].len);
    if (c->seq > 0) {
        char num[24];
        int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)c->seq);
        field_set(e, "_seq", 4, num, (size_t)len);
    }
    if (e->fields)
        e->hash_expiry = now + ttl_ms;
    if (c->log_entry && c->log_len > 0)
        log_push(e, c->log_entry, c->log_len, s->log_max);
    if (e->log_len)
        e->log_expiry = now + ttl_ms;
    if (c->release) {
        free(e->holder);
        e->holder = NULL;
        entry_expire(e, now); /* drops the entry if nothing is left */
    } else {
        e->lease_expiry = now + s->lease_ms;
    }
    sw_store_defer_commit(s, cb, udata, 0);
    return 0;
}

static int mem_release(sw_store_t *s, const char *token)
{
    uint64_t now = sw_now_ms();
    mem_entry_t *e = entry_find(token, now);
    if (e && holder_is(e, s)) {
        free(e->holder);
        e->holder = NULL;
        entry_expire(e, now);
    }
    return 0;
}

static const sw_store_ops_t MEM_OPS = {
    .kind = "memory",
    .destroy = mem_destroy,
    .ready = mem_ready,
    .acquire_load = mem_acquire_load,
    .commit = mem_commit,
    .release = mem_release,
};
