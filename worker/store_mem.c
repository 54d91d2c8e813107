/* store_mem.c — the in-memory store backend (development mode: no Redis,
 * one worker).
 *
 * Same semantics as the Redis backend: leases with expiry, fenced commits,
 * token TTL, a bounded replay log. All memory stores of one process share
 * one table (like several clients of one Redis), so stores with different
 * holder ids contend for leases. Expiry is lazy on access, plus a sweep
 * every 10 s. Each operation is applied when it is called; its completion
 * (with a copy of the data read) is delivered later from the loop.
 *
 * Shared state: shared writes compare-and-set the entry's "_seq"; a
 * commit's messages are published to every memory store's subscription
 * on that shared token through the subscriber store's deferred queue, so
 * they keep publish order and never run inside the publishing call.
 * Presence is a per-token map member -> expiry (monotonic ms). */
#include "worker/store_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>
#include <utlist.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/store_int.h"

#define SWEEP_INTERVAL_S 10.0

typedef struct mem_field {
    UT_hash_handle hh;
    char *name;
    size_t name_len;
    char *data;
    size_t len;
} mem_field_t;

/* A presence entry (expiry: monotonic ms) or a linked member (expiry 0). */
typedef struct mem_member {
    UT_hash_handle hh;
    char *name;
    uint64_t expiry;
} mem_member_t;

typedef struct mem_entry {
    UT_hash_handle hh;
    mem_member_t *presence;   /* live presence entries */
    mem_member_t *members;    /* client tokens linked to this token */
    uint64_t presence_expiry; /* TTL of both sets, monotonic ms; 0 = none */
    char *token;
    mem_field_t *fields;   /* the token hash; NULL = does not exist */
    uint64_t hash_expiry;  /* monotonic ms; 0 = no TTL */
    char *holder;          /* lease holder; NULL = free */
    uint64_t lease_expiry; /* monotonic ms */
    char **log;            /* ring of log_cap entries, oldest at log_start */
    size_t *log_lens;
    size_t log_cap, log_start, log_len;
    uint64_t log_expiry;
    char *live;           /* sw:{T}:live: the live connection's socket id, or NULL */
    uint64_t live_expiry; /* monotonic ms */
} mem_entry_t;

typedef struct mem_sub {
    UT_hash_handle hh;
    char *token;
    uint64_t id; /* unique per store: stale deferred events are dropped */
    sw_store_message_cb on_message;
    sw_store_resync_cb on_resync;
    void *udata;
} mem_sub_t;

typedef struct mem_store {
    sw_store_t base;
    ev_timer sweep_w;
    mem_sub_t *subs; /* token -> subscription */
    uint64_t next_sub_id;
    struct mem_store *next; /* in g_stores */
} mem_store_t;

/* The process-wide table, shared by every memory store. */
static mem_entry_t *g_entries;
static unsigned g_refs;
/* Every memory store of the process: the targets of a publish. */
static mem_store_t *g_stores;

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

static void members_clear(mem_member_t **set)
{
    mem_member_t *m, *tmp;
    HASH_ITER(hh, *set, m, tmp)
    {
        HASH_DEL(*set, m);
        free(m->name);
        free(m);
    }
}

static void entry_free(mem_entry_t *e)
{
    HASH_DEL(g_entries, e);
    fields_clear(e);
    log_clear(e);
    members_clear(&e->presence);
    members_clear(&e->members);
    free(e->holder);
    free(e->live);
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
    if ((e->presence || e->members) && e->presence_expiry && now >= e->presence_expiry) {
        members_clear(&e->presence);
        members_clear(&e->members);
        e->presence_expiry = 0;
    }
    if (e->live && now >= e->live_expiry) {
        free(e->live);
        e->live = NULL;
    }
    if (!e->fields && !e->holder && !e->log_len && !e->presence && !e->members && !e->live) {
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

static mem_entry_t *entry_get(const char *token, uint64_t now)
{
    mem_entry_t *e = entry_find(token, now);
    if (!e) {
        e = sw_xcalloc(1, sizeof(*e));
        e->token = sw_xstrdup(token);
        HASH_ADD_KEYPTR(hh, g_entries, e->token, strlen(e->token), e);
    }
    return e;
}

/* The entry's "_seq" (0 when absent). */
static uint64_t entry_seq(const mem_entry_t *e)
{
    mem_field_t *f = NULL;
    if (!e)
        return 0;
    HASH_FIND(hh, e->fields, "_seq", 4, f);
    if (!f)
        return 0;
    char num[24];
    size_t n = SW_MIN(f->len, sizeof(num) - 1);
    memcpy(num, f->data, n);
    num[n] = '\0';
    return strtoull(num, NULL, 10);
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

/* Queue a load completion with a copy of e's hash (e may be NULL: empty).
 * The callback runs later and may see the entry changed. */
static void snapshot_defer(sw_store_t *s, const mem_entry_t *e, sw_store_load_cb cb, void *udata)
{
    size_t n = e ? HASH_COUNT(e->fields) : 0, bytes = 0;
    mem_field_t *f, *tmp;
    if (e) {
        HASH_ITER(hh, e->fields, f, tmp)
        {
            bytes += f->name_len + f->len + 2;
        }
    }
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->load_cb = cb;
    d->udata = udata;
    sw_store_field_t *raw = sw_xcalloc(n ? n : 1, sizeof(*raw));
    d->fields = sw_xcalloc(n ? n : 1, sizeof(*d->fields));
    d->blob = sw_xmalloc(bytes ? bytes : 1);
    char *p = d->blob;
    size_t i = 0;
    if (e) {
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
    }
    sw_store_loaded_fill(&d->loaded, raw, n, d->fields);
    free(raw);
    if (e && e->live && e->live_expiry > sw_now_ms()) {
        d->name = sw_xstrdup(e->live); /* owned by d, freed with it */
        d->loaded.live = d->name;
        d->loaded.live_len = strlen(d->name);
    }
    sw_store_defer(s, d);
}

/* ---- Pub/sub ------------------------------------------------------------------------------ */

static void run_message(sw_store_t *s, sw_store_done_t *d, int cancelled)
{
    if (cancelled)
        return;
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    mem_sub_t *sub = NULL;
    HASH_FIND_STR(ms->subs, d->name, sub);
    if (sub && sub->id == d->id)
        sub->on_message(sub->udata, d->blob ? d->blob : "", d->blob_len);
}

static void run_resync(sw_store_t *s, sw_store_done_t *d, int cancelled)
{
    if (cancelled)
        return;
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    mem_sub_t *sub = NULL;
    HASH_FIND_STR(ms->subs, d->name, sub);
    if (sub && sub->id == d->id && sub->on_resync)
        sub->on_resync(sub->udata);
}

/* Publish on token's channel: queue the message on every store that
 * subscribes to it. Returns how many do. */
static size_t publish(const char *token, const char *msg, size_t len)
{
    size_t n = 0;
    mem_store_t *st;
    LL_FOREACH(g_stores, st)
    {
        mem_sub_t *sub = NULL;
        HASH_FIND_STR(st->subs, token, sub);
        if (!sub)
            continue;
        sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
        d->run = run_message;
        d->name = sw_xstrdup(token);
        d->id = sub->id;
        d->blob = sw_xmalloc(len ? len : 1);
        if (len)
            memcpy(d->blob, msg, len);
        d->blob_len = len;
        sw_store_defer(&st->base, d);
        n++;
    }
    return n;
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
    LL_PREPEND(g_stores, ms);
    g_refs++;
    return &ms->base;
}

static void mem_destroy(sw_store_t *s)
{
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    ev_timer_stop(s->loop, &ms->sweep_w);
    LL_DELETE(g_stores, ms);
    sw_store_base_destroy(s);
    mem_sub_t *sub, *stmp;
    HASH_ITER(hh, ms->subs, sub, stmp)
    {
        HASH_DEL(ms->subs, sub);
        free(sub->token);
        free(sub);
    }
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
        /* One worker per memory store: the holder is another store of this
         * process (tests); its id is not needed for a hand-off. */
        sw_store_defer_load(s, cb, udata, SW_EBUSY);
        return 0;
    }
    e = entry_get(token, now);
    if (!e->holder)
        e->holder = sw_xstrdup(s->holder);
    e->lease_expiry = now + s->lease_ms;

    snapshot_defer(s, e, cb, udata);
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
    for (size_t k = 0; k < c->nshared; k++) {
        if (entry_seq(entry_find(c->shared[k].token, now)) != c->shared[k].expect_seq) {
            sw_store_defer_commit(s, cb, udata, SW_ECONFLICT);
            return 0;
        }
    }
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
    for (size_t k = 0; k < c->nshared; k++) {
        const sw_store_shared_write_t *w = &c->shared[k];
        mem_entry_t *r = entry_get(w->token, now);
        for (size_t i = 0; i < w->nfields; i++)
            field_set(r, w->fields[i].name, w->fields[i].name_len, w->fields[i].data,
                      w->fields[i].len);
        char num[24];
        int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)w->expect_seq + 1);
        field_set(r, "_seq", 4, num, (size_t)len);
        r->hash_expiry = now + ttl_ms;
        if (w->message)
            publish(w->token, w->message, w->message_len);
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
    sw_store_complete(s); /* applied: nothing to wait for */
    return 0;
}

static int mem_read(sw_store_t *s, const char *token, sw_store_load_cb cb, void *udata)
{
    snapshot_defer(s, entry_find(token, sw_now_ms()), cb, udata);
    return 0;
}

static void member_put(mem_member_t **set, const char *name, uint64_t expiry)
{
    mem_member_t *m = NULL;
    HASH_FIND_STR(*set, name, m);
    if (!m) {
        m = sw_xcalloc(1, sizeof(*m));
        m->name = sw_xstrdup(name);
        HASH_ADD_KEYPTR(hh, *set, m->name, strlen(m->name), m);
    }
    m->expiry = expiry;
}

static void member_del(mem_member_t **set, const char *name)
{
    mem_member_t *m = NULL;
    HASH_FIND_STR(*set, name, m);
    if (m) {
        HASH_DEL(*set, m);
        free(m->name);
        free(m);
    }
}

static int mem_presence(sw_store_t *s, const char *token, sw_presence_op_t op,
                        const char *const *members, size_t n, uint32_t ttl_ms, sw_store_count_cb cb,
                        void *udata)
{
    uint64_t now = sw_now_ms();
    mem_entry_t *e = entry_get(token, now);
    size_t before = HASH_COUNT(e->presence);
    mem_member_t *m, *tmp;
    HASH_ITER(hh, e->presence, m, tmp)
    {
        if (m->expiry <= now)
            member_del(&e->presence, m->name);
    }
    for (size_t i = 0; i < n; i++) {
        mem_member_t *cur = NULL;
        switch (op) {
        case SW_PRESENCE_ADD:
            member_put(&e->presence, members[i], now + ttl_ms);
            member_put(&e->members, members[i], 0);
            break;
        case SW_PRESENCE_REMOVE:
            member_del(&e->presence, members[i]);
            break;
        case SW_PRESENCE_UNLINK:
            member_del(&e->presence, members[i]);
            member_del(&e->members, members[i]);
            break;
        case SW_PRESENCE_REFRESH: /* like ZADD XX: never re-adds */
            HASH_FIND_STR(e->presence, members[i], cur);
            if (cur)
                cur->expiry = now + ttl_ms;
            break;
        default:
            break;
        }
    }
    size_t after = HASH_COUNT(e->presence);
    if (after != before) {
        char msg[48];
        int len = snprintf(msg, sizeof(msg), "{\"presence\":%zu}", after);
        publish(token, msg, (size_t)len);
    }
    uint64_t ttl_tok = (uint64_t)s->token_ttl_s * 1000u;
    if (e->fields)
        e->hash_expiry = now + ttl_tok;
    if (e->presence || e->members)
        e->presence_expiry = now + ttl_tok;
    entry_expire(e, now); /* drops the entry if nothing is left */
    sw_store_defer_count(s, cb, udata, 0, (int64_t)after);
    return 0;
}

static int mem_subscribe(sw_store_t *s, const char *token, sw_store_message_cb on_message,
                         sw_store_resync_cb on_resync, void *udata)
{
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    mem_sub_t *sub = NULL;
    HASH_FIND_STR(ms->subs, token, sub);
    if (sub)
        return SW_EBUSY;
    if (HASH_COUNT(ms->subs) >= SW_STORE_MAX_SUBS)
        return SW_ENOMEM;
    sub = sw_xcalloc(1, sizeof(*sub));
    sub->token = sw_xstrdup(token);
    sub->id = ++ms->next_sub_id;
    sub->on_message = on_message;
    sub->on_resync = on_resync;
    sub->udata = udata;
    HASH_ADD_KEYPTR(hh, ms->subs, sub->token, strlen(sub->token), sub);
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->run = run_resync;
    d->name = sw_xstrdup(token);
    d->id = sub->id;
    sw_store_defer(s, d);
    return 0;
}

static int mem_unsubscribe(sw_store_t *s, const char *token)
{
    mem_store_t *ms = sw_container_of(s, mem_store_t, base);
    mem_sub_t *sub = NULL;
    HASH_FIND_STR(ms->subs, token, sub);
    if (!sub)
        return SW_ENOTFOUND;
    HASH_DEL(ms->subs, sub);
    free(sub->token);
    free(sub);
    return 0;
}

/* The seq inside a logged delta message ({"type":"delta","seq":N,...}). */
static uint64_t entry_seq_of(const char *e, size_t len)
{
    const char *p = memmem(e, len, "\"seq\":", 6);
    return p ? strtoull(p + 6, NULL, 10) : 0;
}

static int mem_read_log(sw_store_t *s, const char *token, uint64_t first, uint64_t last,
                        sw_store_log_cb cb, void *udata)
{
    mem_entry_t *e = entry_find(token, sw_now_ms());
    size_t n = (size_t)(last - first + 1), bytes = 0;
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d)); /* a log completion */
    d->log_cb = cb;
    d->udata = udata;
    d->count = (int64_t)n;
    d->fields = sw_xcalloc(n, sizeof(*d->fields));
    for (size_t i = 0; e && i < e->log_len; i++)
        bytes += e->log_lens[(e->log_start + i) % e->log_cap];
    d->blob = sw_xmalloc(bytes ? bytes : 1);
    size_t off = 0;
    for (size_t i = 0; e && i < e->log_len; i++) {
        size_t at = (e->log_start + i) % e->log_cap;
        uint64_t seq = entry_seq_of(e->log[at], e->log_lens[at]);
        if (seq < first || seq > last)
            continue;
        memcpy(d->blob + off, e->log[at], e->log_lens[at]);
        d->fields[seq - first].data = d->blob + off;
        d->fields[seq - first].len = e->log_lens[at];
        off += e->log_lens[at];
    }
    sw_store_defer(s, d);
    return 0;
}

static int mem_live(sw_store_t *s, sw_live_op_t op, const char *const *tokens,
                    const char *const *sockids, size_t n, uint32_t ttl_ms)
{
    uint64_t now = sw_now_ms();
    for (size_t i = 0; i < n; i++) {
        mem_entry_t *e = op == SW_LIVE_SET ? entry_get(tokens[i], now) : entry_find(tokens[i], now);
        if (!e)
            continue;
        if (e->live && e->live_expiry <= now) {
            free(e->live);
            e->live = NULL;
        }
        if (op == SW_LIVE_SET) {
            free(e->live);
            e->live = sw_xstrdup(sockids[i]);
            e->live_expiry = now + ttl_ms;
        } else if (e->live && strcmp(e->live, sockids[i]) == 0) {
            if (op == SW_LIVE_REFRESH) {
                e->live_expiry = now + ttl_ms;
            } else {
                free(e->live);
                e->live = NULL;
            }
        }
    }
    sw_store_complete(s);
    return 0;
}

static int mem_reap(sw_store_t *s, const char *holder)
{
    /* Development mode keeps state in the worker's memory: a dead worker
     * took it along, leases included. */
    (void)holder;
    sw_store_complete(s);
    return 0;
}

static int mem_publish_acked(sw_store_t *s, const char *name, const char *data, size_t len,
                             sw_store_count_cb cb, void *udata)
{
    sw_store_defer_count(s, cb, udata, 0, (int64_t)publish(name, data, len));
    return 0;
}

static int mem_publish(sw_store_t *s, const char *name, const char *data, size_t len)
{
    (void)s;
    publish(name, data, len);
    return 0;
}

/* One secret per process, like one Redis for its clients. */
static char g_secret[257];
static size_t g_secret_len;

static int mem_secret(sw_store_t *s, const char *proposal, size_t len, sw_store_value_cb cb,
                      void *udata)
{
    if (!g_secret_len) {
        memcpy(g_secret, proposal, len);
        g_secret_len = len;
    }
    sw_store_done_t *d = sw_xcalloc(1, sizeof(*d));
    d->value_cb = cb;
    d->udata = udata;
    d->blob = sw_xmalloc(g_secret_len);
    memcpy(d->blob, g_secret, g_secret_len);
    d->blob_len = g_secret_len;
    sw_store_defer(s, d);
    return 0;
}

static const sw_store_ops_t MEM_OPS = {
    .secret = mem_secret,
    .publish = mem_publish,
    .read_log = mem_read_log,
    .live = mem_live,
    .publish_acked = mem_publish_acked,
    .reap = mem_reap,
    .kind = "memory",
    .destroy = mem_destroy,
    .ready = mem_ready,
    .acquire_load = mem_acquire_load,
    .commit = mem_commit,
    .release = mem_release,
    .read = mem_read,
    .presence = mem_presence,
    .subscribe = mem_subscribe,
    .unsubscribe = mem_unsubscribe,
};
