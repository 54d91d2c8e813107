#include "worker/shared.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "worker/wctx.h"

/* Messages kept while a read or a commit is in flight; past it the copy is
 * reread instead. */
#define SW_SHARED_MAX_BUFFERED 4096

static void start_read(sw_shared_t *r);
static void presence_call(sw_shared_t *r, sw_presence_op_t op, const char *const *members,
                          size_t n);

/* ---- small pointer lists --------------------------------------------------- */

static void list_add(sw_token_t ***v, size_t *n, size_t *cap, sw_token_t *t)
{
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i] == t)
            return;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *v = sw_xrealloc(*v, *cap * sizeof(**v));
    }
    (*v)[(*n)++] = t;
}

static void list_del(sw_token_t **v, size_t *n, sw_token_t *t)
{
    for (size_t i = 0; i < *n; i++) {
        if (v[i] == t) {
            memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(*v));
            (*n)--;
            return;
        }
    }
}

/* ---- records ---------------------------------------------------------------- */

static void heartbeat_cb(struct ev_loop *loop, ev_timer *tw, int revents);
static void presence_due_cb(struct ev_loop *loop, ev_timer *tw, int revents);

sw_shared_t *sw_shared_get(sw_worker_t *w, const char *name)
{
    sw_shared_t *r = NULL;
    HASH_FIND_STR(w->shared, name, r);
    if (r)
        return r;
    r = sw_xcalloc(1, sizeof(*r));
    snprintf(r->token, sizeof(r->token), "%s", name);
    r->w = w;
    r->presence = -1;
    double period = w->cfg->presence_ttl_ms / 3000.0;
    ev_timer_init(&r->heartbeat_w, heartbeat_cb, period, period);
    ev_timer_init(&r->presence_w, presence_due_cb, 0., 0.);
    HASH_ADD_STR(w->shared, token, r);
    return r;
}

static void shared_free(sw_shared_t *r)
{
    sw_worker_t *w = r->w;
    ev_timer_stop(w->loop, &r->heartbeat_w);
    ev_timer_stop(w->loop, &r->presence_w);
    if (r->catchup_queued)
        LIST_REMOVE(r, catchup_link);
    if (r->subscribed)
        sw_store_unsubscribe(w->store, r->token);
    HASH_DEL(w->shared, r);
    for (unsigned k = 0; k < r->nsnaps; k++)
        json_decref(r->snaps[k].vars);
    json_decref(r->vars);
    json_decref(r->buffered);
    free(r->tokens);
    free(r->waiters);
    free(r->syncwait);
    free(r->syncfail);
    free(r);
}

void sw_shared_gc(sw_worker_t *w)
{
    sw_shared_t *r, *tmp;
    HASH_ITER(hh, w->shared, r, tmp)
    {
        if (r->ntokens == 0 && !r->reading && !r->committing && !r->slot)
            shared_free(r);
    }
}

void sw_shared_free_all(sw_worker_t *w)
{
    sw_shared_t *r, *tmp;
    HASH_ITER(hh, w->shared, r, tmp)
    shared_free(r);
}

/* ---- catching linked tokens up ----------------------------------------------- */

static void schedule_catchup(sw_shared_t *r)
{
    if (r->catchup_queued)
        return;
    r->catchup_queued = 1;
    LIST_INSERT_HEAD(&r->w->catchups, r, catchup_link);
    ev_idle_start(r->w->loop, &r->w->resume_w); /* keeps the loop from blocking */
}

static void presence_due_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_shared_t *r = sw_container_of(tw, sw_shared_t, presence_w);
    schedule_catchup(r);
}

/* The presence count changed: deliver it within SW_PRESENCE_COALESCE_MS. */
static void presence_changed(sw_shared_t *r)
{
    if (!ev_is_active(&r->presence_w)) {
        ev_timer_set(&r->presence_w, SW_PRESENCE_COALESCE_MS / 1000.0, 0.);
        ev_timer_start(r->w->loop, &r->presence_w);
    }
}

static void resume_syncwait(sw_shared_t *r)
{
    size_t n = r->nsyncwait;
    if (!n)
        return;
    sw_token_t **copy = sw_xmalloc(n * sizeof(*copy));
    memcpy(copy, r->syncwait, n * sizeof(*copy));
    r->nsyncwait = 0;
    for (size_t i = 0; i < n; i++)
        r->w->shared_hooks->resume(copy[i]);
    free(copy);
}

sw_shared_t *sw_shared_take_changed(sw_worker_t *w)
{
    sw_shared_t *r = LIST_FIRST(&w->catchups);
    if (r) {
        LIST_REMOVE(r, catchup_link);
        r->catchup_queued = 0;
    }
    return r;
}

/* ---- views kept for lagging trees ------------------------------------------- */

void sw_shared_snapshot(sw_shared_t *r, int64_t presence)
{
    if (sw_shared_snapshot_find(r, r->seq, presence))
        return;
    if (r->nsnaps == SW_SHARED_SNAPS) {
        json_decref(r->snaps[0].vars);
        memmove(&r->snaps[0], &r->snaps[1], (SW_SHARED_SNAPS - 1) * sizeof(r->snaps[0]));
        r->nsnaps--;
    }
    /* r->vars' state objects change in place: copy them (values are
     * never modified in place, so they are shared). */
    json_t *vars = json_object();
    const char *state;
    json_t *v;
    json_object_foreach(r->vars, state, v) json_object_set_new(vars, state, json_copy(v));
    r->snaps[r->nsnaps++] =
        (struct sw_shared_snap){.seq = r->seq, .presence = presence, .vars = vars};
}

const json_t *sw_shared_snapshot_find(const sw_shared_t *r, uint64_t seq, int64_t presence)
{
    for (unsigned k = r->nsnaps; k-- > 0;)
        if (r->snaps[k].seq == seq && r->snaps[k].presence == presence)
            return r->snaps[k].vars;
    return NULL;
}

/* ---- applying messages in seq order ------------------------------------------ */

static void apply_vars(sw_shared_t *r, const json_t *changed)
{
    if (!r->vars)
        r->vars = json_object();
    const char *state;
    json_t *vars;
    json_object_foreach((json_t *)changed, state, vars)
    {
        json_t *dst = json_object_get(r->vars, state);
        if (!dst) {
            dst = json_object();
            json_object_set_new(r->vars, state, dst);
        }
        json_object_update(dst, vars);
    }
}

static void mark_stale(sw_shared_t *r)
{
    r->synced = 0;
    json_decref(r->buffered);
    r->buffered = NULL;
}

/* One parsed channel message, in arrival order. Returns 1 when linked
 * tokens should catch up. */
static int handle_message(sw_shared_t *r, json_t *msg)
{
    json_t *pres = json_object_get(msg, "presence");
    if (json_is_integer(pres)) {
        int64_t n = json_integer_value(pres);
        sw_log(SW_LOG_DEBUG, "shared %s: presence message %lld (had %lld)", r->token, (long long)n,
               (long long)r->presence);
        if (n == r->presence)
            return 0;
        r->presence = n;
        presence_changed(r);
        return 0;
    }
    json_t *jseq = json_object_get(msg, "seq");
    json_t *vars = json_object_get(msg, "vars");
    if (!json_is_integer(jseq) || !json_is_object(vars)) {
        sw_log(SW_LOG_WARN, "shared %s: malformed message ignored", r->token);
        return 0;
    }
    uint64_t seq = (uint64_t)json_integer_value(jseq);
    sw_log(SW_LOG_DEBUG, "shared %s: message seq %llu (have %llu, synced %d)", r->token,
           (unsigned long long)seq, (unsigned long long)r->seq, r->synced);
    if (!r->synced || seq <= r->seq)
        return 0; /* already in the copy (our own commit, or the read) */
    if (seq != r->seq + 1) {
        sw_log(SW_LOG_INFO, "shared %s: gap (have %llu, got %llu); rereading", r->token,
               (unsigned long long)r->seq, (unsigned long long)seq);
        mark_stale(r);
        start_read(r);
        return 0;
    }
    apply_vars(r, vars);
    r->seq = seq;
    return 1;
}

static void drain_buffered(sw_shared_t *r)
{
    json_t *buf = r->buffered;
    r->buffered = NULL;
    int catchup = 0;
    size_t i;
    json_t *m;
    json_array_foreach(buf, i, m)
    {
        if (r->reading || r->committing) { /* a gap started a read: keep the rest */
            if (!r->buffered)
                r->buffered = json_array();
            json_array_append(r->buffered, m);
            continue;
        }
        catchup |= handle_message(r, m);
    }
    json_decref(buf);
    if (catchup)
        schedule_catchup(r);
}

static void on_message(void *udata, const char *data, size_t len)
{
    sw_shared_t *r = udata;
    json_error_t err;
    json_t *msg = json_loadb(data, len, 0, &err);
    if (!json_is_object(msg)) {
        sw_log(SW_LOG_WARN, "shared %s: unparseable message ignored", r->token);
        json_decref(msg);
        return;
    }
    if ((r->reading || r->committing) && !json_is_integer(json_object_get(msg, "presence"))) {
        if (!r->buffered)
            r->buffered = json_array();
        if (json_array_size(r->buffered) >= SW_SHARED_MAX_BUFFERED)
            mark_stale(r); /* reread once the read/commit is done */
        else
            json_array_append(r->buffered, msg);
        json_decref(msg);
        return;
    }
    if (handle_message(r, msg))
        schedule_catchup(r);
    json_decref(msg);
}

static void on_resync(void *udata)
{
    sw_shared_t *r = udata;
    /* (Re)subscribed: messages may have been missed. */
    mark_stale(r);
    start_read(r);
    presence_call(r, SW_PRESENCE_REAP, NULL, 0);
}

/* ---- reading the copy ------------------------------------------------------------ */

static void on_read(void *udata, const sw_store_loaded_t *res)
{
    sw_shared_t *r = udata;
    r->reading = 0;
    if (res->status != 0) {
        if (!r->read_failing) /* once per streak */
            sw_log(SW_LOG_WARN, "shared %s: read failed (%s)", r->token, sw_strerror(res->status));
        r->read_failing = 1;
        r->synced = 0;
        json_decref(r->buffered);
        r->buffered = NULL;
        /* The waiters are told once (sw_shared_want_sync: SW_EUNAVAIL),
         * not sent back to a read that fails again at once. */
        for (size_t i = 0; i < r->nsyncwait; i++)
            list_add(&r->syncfail, &r->nsyncfail, &r->capsyncfail, r->syncwait[i]);
        resume_syncwait(r);
        sw_wctx_schedule_gc(r->w);
        return;
    }
    json_t *vars = json_object();
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *f = &res->fields[i];
        int e = 0;
        json_t *v = sw_mpjson_decode(f->data, f->len, &e);
        if (!json_is_object(v)) {
            json_decref(v);
            continue;
        }
        char name[256];
        if (f->name_len >= sizeof(name)) {
            json_decref(v);
            continue;
        }
        memcpy(name, f->name, f->name_len);
        name[f->name_len] = '\0';
        json_object_set_new(vars, name, v);
    }
    json_decref(r->vars);
    r->vars = vars;
    r->seq = res->seq;
    r->read_failing = 0;
    sw_log(SW_LOG_DEBUG, "shared %s: read seq %llu", r->token, (unsigned long long)r->seq);
    r->synced = 1;
    drain_buffered(r);
    resume_syncwait(r);
    schedule_catchup(r);
    sw_wctx_schedule_gc(r->w);
}

static void start_read(sw_shared_t *r)
{
    if (r->reading)
        return;
    if (sw_store_read(r->w->store, r->token, on_read, r) == 0)
        r->reading = 1;
}

/* ---- linking, slot, sync ------------------------------------------------------------ */

void sw_shared_link(sw_shared_t *r, sw_token_t *t)
{
    list_add(&r->tokens, &r->ntokens, &r->captokens, t);
    if (!r->subscribed) {
        if (sw_store_subscribe(r->w->store, r->token, on_message, on_resync, r) == 0)
            r->subscribed = 1;
        ev_timer_again(r->w->loop, &r->heartbeat_w);
    }
}

void sw_shared_unlink(sw_shared_t *r, sw_token_t *t)
{
    list_del(r->tokens, &r->ntokens, t);
    list_del(r->waiters, &r->nwaiters, t);
    list_del(r->syncwait, &r->nsyncwait, t);
    list_del(r->syncfail, &r->nsyncfail, t);
    sw_shared_release_slot(r, t);
    if (r->ntokens == 0) {
        ev_timer_stop(r->w->loop, &r->heartbeat_w);
        if (r->subscribed) {
            sw_store_unsubscribe(r->w->store, r->token);
            r->subscribed = 0;
        }
        mark_stale(r);
        sw_wctx_schedule_gc(r->w);
    }
}

int sw_shared_want_sync(sw_shared_t *r, sw_token_t *t)
{
    if (r->synced)
        return 1;
    size_t nfail = r->nsyncfail;
    list_del(r->syncfail, &r->nsyncfail, t);
    if (r->nsyncfail < nfail)
        return SW_EUNAVAIL; /* its read failed; its next event reads again */
    if (!r->reading) {
        start_read(r);
        if (!r->reading)
            return SW_EUNAVAIL;
    }
    list_add(&r->syncwait, &r->nsyncwait, &r->capsyncwait, t);
    return 0;
}

int sw_shared_want_slot(sw_shared_t *r, sw_token_t *t)
{
    if (r->slot && r->slot != t) {
        list_add(&r->waiters, &r->nwaiters, &r->capwaiters, t);
        return 0;
    }
    r->slot = t;
    return sw_shared_want_sync(r, t);
}

void sw_shared_release_slot(sw_shared_t *r, sw_token_t *t)
{
    if (r->slot != t)
        return;
    r->slot = NULL;
    if (r->nwaiters) {
        sw_token_t *next = r->waiters[0];
        list_del(r->waiters, &r->nwaiters, next);
        r->slot = next;
        r->w->shared_hooks->resume(next);
    }
}

void sw_shared_commit_begin(sw_shared_t *r)
{
    r->committing = 1;
}

void sw_shared_commit_end(sw_shared_t *r, int status, const json_t *changed, uint64_t seq)
{
    sw_log(SW_LOG_DEBUG, "shared %s: commit end %s (seq %llu, synced %d, reading %d)", r->token,
           sw_strerror(status), (unsigned long long)r->seq, r->synced, r->reading);
    r->committing = 0;
    if (status == 0 && r->synced && r->seq >= seq) {
        /* a read that finished meanwhile already includes the commit */
    } else if (status == 0 && r->synced && r->seq + 1 == seq) {
        apply_vars(r, changed);
        r->seq = seq;
        /* Our own message will be skipped as already applied: the other
         * local linked tokens catch up (this iteration). */
        schedule_catchup(r);
    } else {
        mark_stale(r);
        if (status == 0 && r->ntokens)
            start_read(r); /* our change is committed: make the copy show it */
    }
    drain_buffered(r);
}

json_t *sw_shared_message(uint64_t seq, const json_t *changed)
{
    return json_pack("{s:I,s:O}", "seq", (json_int_t)seq, "vars", changed);
}

/* ---- presence ----------------------------------------------------------------------- */

/* Every presence call answers with the live count. Changes also arrive
 * by message, but a worker that subscribed just now may have missed the
 * message of its own op, so the answer is used too; the heartbeat's answer
 * corrects any stale count within ttl/3. */
typedef struct presence_ctx {
    sw_worker_t *w;
    char token[SW_SHARED_TOKEN_MAX + 1];
} presence_ctx_t;

static void on_presence(void *udata, int status, int64_t count)
{
    presence_ctx_t *pc = udata;
    sw_shared_t *r = NULL;
    HASH_FIND_STR(pc->w->shared, pc->token, r);
    sw_log(SW_LOG_DEBUG, "shared %s: presence answer %lld (status %d, record %s)", pc->token,
           (long long)count, status, r ? "yes" : "no");
    if (r && status == 0 && count != r->presence) {
        r->presence = count;
        presence_changed(r);
    }
    free(pc);
}

static void presence_call(sw_shared_t *r, sw_presence_op_t op, const char *const *members, size_t n)
{
    presence_ctx_t *pc = sw_xmalloc(sizeof(*pc));
    pc->w = r->w;
    snprintf(pc->token, sizeof(pc->token), "%s", r->token);
    if (sw_store_presence(r->w->store, r->token, op, members, n, r->w->cfg->presence_ttl_ms,
                          on_presence, pc) != 0)
        free(pc);
}

void sw_shared_presence(sw_shared_t *r, sw_token_t *t, sw_presence_op_t op)
{
    const char *name = r->w->shared_hooks->name(t);
    sw_log(SW_LOG_DEBUG, "shared %s: presence op %d for %.8s…", r->token, (int)op, name);
    const char *members[1] = {name};
    presence_call(r, op, members, 1);
}

static void heartbeat_cb(struct ev_loop *loop, ev_timer *tw, int revents)
{
    sw_shared_t *r = sw_container_of(tw, sw_shared_t, heartbeat_w);
    /* Refresh every connected local token linked here (and reap expired
     * entries of other workers) in one script call. */
    const char **members = sw_xmalloc((r->ntokens ? r->ntokens : 1) * sizeof(*members));
    size_t n = 0;
    const sw_shared_hooks_t *h = r->w->shared_hooks;
    for (size_t i = 0; i < r->ntokens; i++)
        if (h->connected(r->tokens[i]))
            members[n++] = h->name(r->tokens[i]);
    presence_call(r, n ? SW_PRESENCE_ADD : SW_PRESENCE_REAP, members, n);
    free(members);
    if (!r->synced && !r->reading && r->read_failing)
        start_read(r); /* a resync read failed (store out of reach): again */
}
