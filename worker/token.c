#include "worker/token.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"
#include "worker/worker.h"

/* Chained events one handler step may queue; more is a handler bug. */
#define SW_MAX_CHAINED_PER_STEP 16
/* Internal events (chained, task steps) may use the queue up to this
 * multiple of max_queue; past it they are dropped with a log line. */
#define SW_INTERNAL_QUEUE_FACTOR 2
/* Lease busy backoff: first delay, cap. */
#define SW_BUSY_FIRST_MS 5
#define SW_BUSY_MAX_MS 200

static void kick(sw_token_t *t);
static void run_current(sw_token_t *t);
static void run_step(sw_token_t *t);
static void finish_current(sw_token_t *t);

/* ---- events -------------------------------------------------------------- */

sw_event_t *sw_event_new(sw_event_src_t kind, int64_t id, sw_session_t *origin, const char *name,
                         json_t *payload, json_t *router)
{
    sw_event_t *ev = sw_xcalloc(1, sizeof(*ev));
    ev->kind = kind;
    ev->id = id;
    ev->origin = origin;
    ev->name = sw_xstrdup(name ? name : "");
    ev->payload = payload ? payload : json_object();
    ev->router = router;
    return ev;
}

void sw_event_free(sw_event_t *ev)
{
    if (!ev)
        return;
    free(ev->name);
    json_decref(ev->payload);
    json_decref(ev->router);
    free(ev);
}

/* ---- tokens -------------------------------------------------------------- */

static void busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);

sw_token_t *sw_token_get(sw_worker_t *w, const char *token)
{
    sw_token_t *t = NULL;
    HASH_FIND_STR(w->tokens, token, t);
    if (t)
        return t;
    t = sw_xcalloc(1, sizeof(*t));
    snprintf(t->token, sizeof(t->token), "%s", token);
    t->w = w;
    TAILQ_INIT(&t->queue);
    LIST_INIT(&t->sessions);
    LIST_INIT(&t->tasks);
    ev_timer_init(&t->retry_w, busy_retry_cb, 0., 0.);
    HASH_ADD_STR(w->tokens, token, t);
    w->ntokens++;
    return t;
}

int sw_token_idle(const sw_token_t *t)
{
    return !t->current && TAILQ_EMPTY(&t->queue) && !t->pending_store;
}

static void task_free(sw_task_t *task)
{
    ev_timer_stop(task->tok->w->loop, &task->timer);
    LIST_REMOVE(task, link);
    free(task->name);
    json_decref(task->payload);
    free(task);
}

static void drop_tree(sw_token_t *t)
{
    if (t->have_tree) {
        sw_tree_destroy(&t->tree);
        t->have_tree = 0;
    }
}

static void clear_step(sw_token_t *t)
{
    if (t->have_step) {
        sw_step_destroy(&t->step);
        t->have_step = 0;
    }
    json_decref(t->acc);
    t->acc = NULL;
}

static void token_free(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev;
    while ((ev = TAILQ_FIRST(&t->queue))) {
        TAILQ_REMOVE(&t->queue, ev, link);
        sw_event_free(ev);
    }
    sw_event_free(t->current);
    while (!LIST_EMPTY(&t->tasks))
        task_free(LIST_FIRST(&t->tasks));
    ev_timer_stop(w->loop, &t->retry_w);
    clear_step(t);
    drop_tree(t);
    HASH_DEL(w->tokens, t);
    w->ntokens--;
    free(t);
}

void sw_token_gc(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        if (t->nsessions == 0 && LIST_EMPTY(&t->tasks) && sw_token_idle(t) &&
            !ev_is_active(&t->retry_w))
            token_free(t);
    }
}

void sw_token_free_all(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        sw_session_t *s;
        LIST_FOREACH(s, &t->sessions, tok_link)
        s->tok = NULL;
        token_free(t);
    }
}

void sw_token_attach(sw_token_t *t, sw_session_t *s)
{
    LIST_INSERT_HEAD(&t->sessions, s, tok_link);
    t->nsessions++;
    s->tok = t;
}

void sw_token_detach(sw_token_t *t, sw_session_t *s)
{
    LIST_REMOVE(s, tok_link);
    t->nsessions--;
    s->tok = NULL;
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &t->queue, link)
    {
        if (ev->origin == s)
            ev->origin = NULL;
    }
    if (t->current && t->current->origin == s)
        t->current->origin = NULL;
    sw_worker_schedule_gc(t->w);
}

void sw_token_enqueue(sw_token_t *t, sw_event_t *ev)
{
    const sw_config_t *cfg = t->w->cfg;
    int internal = ev->kind == SW_EV_CHAINED || ev->kind == SW_EV_TASK_STEP;
    uint32_t bound = internal ? cfg->max_queue * SW_INTERNAL_QUEUE_FACTOR : cfg->max_queue;
    if (t->qlen >= bound) {
        if (ev->origin) {
            char msg[96];
            snprintf(msg, sizeof(msg), "too many queued events (max %u)", cfg->max_queue);
            sw_session_send_error(ev->origin, ev->id, SW_ERRC_RATE_LIMITED, msg);
        } else {
            sw_log(SW_LOG_WARN, "token %.8s…: event queue full, dropping %s", t->token, ev->name);
        }
        SW_STAT_ADD(t->w->stats, events_error, 1);
        sw_event_free(ev);
        return;
    }
    TAILQ_INSERT_TAIL(&t->queue, ev, link);
    t->qlen++;
    kick(t);
}

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
static void push_front_chained(sw_token_t *t, json_t *chained)
{
    size_t n = json_array_size(chained);
    if (n > SW_MAX_CHAINED_PER_STEP) {
        sw_log(SW_LOG_WARN, "token %.8s…: handler chained %zu events, keeping the first %d",
               t->token, n, SW_MAX_CHAINED_PER_STEP);
        n = SW_MAX_CHAINED_PER_STEP;
    }
    for (size_t i = n; i-- > 0;) {
        json_t *c = json_array_get(chained, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *payload = json_object_get(c, "payload");
        if (!name)
            continue;
        sw_event_t *ev = sw_event_new(SW_EV_CHAINED, -1, NULL, name,
                                      payload ? json_incref(payload) : NULL, NULL);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        t->qlen++;
    }
}

/* ---- delivery -------------------------------------------------------------- */

/* Send a delta to the token's clients: with `id` to `origin`, without to
 * the others. Sessions not yet welcomed are skipped (their welcome carries
 * a seq at or after this one). */
static void deliver(sw_token_t *t, sw_session_t *origin, int64_t id, uint64_t seq,
                    const json_t *delta, const json_t *events, int full, int origin_only)
{
    sw_buf_t plain, with_id;
    sw_buf_init(&plain, 0);
    sw_buf_init(&with_id, 0);
    sw_session_t *s, *next;
    for (s = LIST_FIRST(&t->sessions); s; s = next) {
        next = LIST_NEXT(s, tok_link);
        if (!s->welcomed || s->closing)
            continue;
        if (origin_only && s != origin)
            continue;
        sw_buf_t *b = &plain;
        if (s == origin && id >= 0) {
            b = &with_id;
            if (!b->len)
                sw_msg_encode_delta(b, seq, id, delta, events, full);
        } else if (!b->len) {
            sw_msg_encode_delta(b, seq, -1, delta, events, full);
        }
        if (seq > s->client_seq || full)
            s->client_seq = seq;
        if (sw_session_send(s, b->data, b->len) == 0)
            SW_STAT_ADD(t->w->stats, deltas_sent, 1);
    }
    sw_buf_destroy(&plain);
    sw_buf_destroy(&with_id);
}

static void answer_error(sw_token_t *t, sw_event_t *ev, sw_errc_t code, const char *msg)
{
    SW_STAT_ADD(t->w->stats, events_error, 1);
    if (ev->origin) {
        sw_session_send_error(ev->origin, ev->id, code, msg);
        return;
    }
    if (ev->kind == SW_EV_TASK_STEP || ev->kind == SW_EV_CHAINED) {
        /* No one asked: tell every client of the token, without id. */
        sw_session_t *s;
        LIST_FOREACH(s, &t->sessions, tok_link)
        {
            if (s->welcomed)
                sw_session_send_error(s, -1, code, msg);
        }
    }
}

/* A client whose seq is behind the store's missed changes made elsewhere
 * (another worker or host, or a commit whose outcome was unknown): give it
 * the whole state before anything else. */
static void resync_stale(sw_token_t *t, sw_session_t *skip)
{
    json_t *full = NULL;
    sw_session_t *s;
    LIST_FOREACH(s, &t->sessions, tok_link)
    {
        if (!s->welcomed || s->closing || s == skip || s->client_seq >= t->seq)
            continue;
        if (!full)
            full = sw_tree_full(&t->tree);
        sw_buf_t b;
        sw_buf_init(&b, 0);
        sw_msg_encode_delta(&b, t->seq, -1, full, NULL, 1);
        s->client_seq = t->seq;
        sw_session_send(s, b.data, b.len);
        sw_buf_destroy(&b);
    }
    json_decref(full);
}

/* ---- the pipeline ------------------------------------------------------------ */

static void on_loaded(void *udata, const sw_store_loaded_t *res);
static void on_committed(void *udata, int status);

static void start_load(sw_token_t *t)
{
    int rc = sw_store_acquire_load(t->w->store, t->token, on_loaded, t);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return;
    }
    t->pending_store = 1;
}

/* Start the next queued event if none is in flight. Events that fail
 * without reaching the store are answered and the loop goes on. */
static void kick(sw_token_t *t)
{
    while (!t->current && !t->pending_store && !ev_is_active(&t->retry_w)) {
        sw_event_t *ev = TAILQ_FIRST(&t->queue);
        if (!ev)
            return;
        TAILQ_REMOVE(&t->queue, ev, link);
        t->qlen--;
        t->current = ev;
        t->busy_since_ms = 0;
        t->busy_delay_ms = 0;
        start_load(t);
    }
}

static void release_lease(sw_token_t *t)
{
    if (t->lease_held) {
        sw_store_release(t->w->store, t->token);
        t->lease_held = 0;
    }
}

/* The current event is done (answered or failed): free it, drop the
 * cached state (it is reloaded under the lease for the next event) and
 * start the next one. */
static void finish_current(sw_token_t *t)
{
    release_lease(t);
    clear_step(t);
    drop_tree(t);
    sw_event_free(t->current);
    t->current = NULL;
    kick(t);
    if (sw_token_idle(t) && t->nsessions == 0)
        sw_worker_schedule_gc(t->w);
}

static void busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_token_t *t = sw_container_of(w, sw_token_t, retry_w);
    if (t->current)
        start_load(t);
    else
        kick(t);
}

static void load_meta(sw_token_t *t, const char *mp, size_t len)
{
    int err = 0;
    json_t *meta = sw_mpjson_decode(mp, len, &err);
    if (!meta) {
        sw_log(SW_LOG_WARN, "token %.8s…: unreadable _meta (%s), using defaults", t->token,
               sw_strerror(err));
        return;
    }
    json_t *router = json_object_get(meta, "router");
    if (json_is_object(router))
        sw_tree_set_router(&t->tree, json_incref(router), NULL);
    json_decref(meta);
}

static void on_loaded(void *udata, const sw_store_loaded_t *res)
{
    sw_token_t *t = udata;
    sw_worker_t *w = t->w;
    t->pending_store = 0;
    if (!t->current) { /* cannot happen: loads are made for the current event */
        kick(t);
        return;
    }
    if (res->status == SW_EBUSY) {
        uint64_t now = sw_now_ms();
        if (!t->busy_since_ms)
            t->busy_since_ms = now;
        if (now - t->busy_since_ms > (uint64_t)w->cfg->lease_ms + 1000) {
            sw_log(SW_LOG_WARN, "token %.8s…: lease held elsewhere for %llu ms, giving up on %s",
                   t->token, (unsigned long long)(now - t->busy_since_ms), t->current->name);
            answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE,
                         "state is locked by another worker; retry");
            finish_current(t);
            return;
        }
        t->busy_delay_ms =
            t->busy_delay_ms ? SW_MIN(t->busy_delay_ms * 2, SW_BUSY_MAX_MS) : SW_BUSY_FIRST_MS;
        ev_timer_set(&t->retry_w, t->busy_delay_ms / 1000., 0.);
        ev_timer_start(w->loop, &t->retry_w);
        return;
    }
    if (res->status != 0) {
        SW_STAT_ADD(w->stats, redis_errors, 1);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return;
    }
    t->lease_held = 1;
    drop_tree(t);
    sw_tree_init(&t->tree, w->app);
    t->have_tree = 1;
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *f = &res->fields[i];
        char name[256];
        if (f->name_len >= sizeof(name))
            continue;
        memcpy(name, f->name, f->name_len);
        name[f->name_len] = '\0';
        int rc = sw_tree_load_state(&t->tree, name, f->data, f->len);
        if (rc == SW_EINVAL)
            sw_log(SW_LOG_WARN, "token %.8s…: state %s unreadable, using defaults", t->token, name);
    }
    if (res->meta)
        load_meta(t, res->meta, res->meta_len);
    sw_tree_recompute_all(&t->tree);
    t->exists = res->exists;
    t->seq = res->seq;
    run_current(t);
}

static void send_welcome(sw_token_t *t, sw_session_t *s)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    sw_msg_encode_welcome(&b, t->token, s->conn_id, s->conn_token, 0, t->seq);
    s->welcomed = 1;
    s->client_seq = t->seq;
    sw_session_send(s, b.data, b.len);
    sw_buf_destroy(&b);
}

/* Encode the fields of a commit: the dirty states, and _meta (router)
 * when asked. Buffers are kept in `bufs` (nbufs entries) until the store
 * has copied them, which sw_store_commit does before returning. */
typedef struct commit_fields {
    sw_store_field_t f[64];
    sw_buf_t bufs[64];
    size_t n;
} commit_fields_t;

static int add_state_field(sw_token_t *t, commit_fields_t *cf, const char *state)
{
    if (cf->n >= SW_ARRAY_SIZE(cf->f))
        return SW_ETOOLARGE;
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    int rc = sw_tree_encode_state(&t->tree, state, b);
    if (rc) {
        sw_buf_destroy(b);
        return rc;
    }
    cf->f[cf->n] = (sw_store_field_t){state, strlen(state), b->data, b->len};
    cf->n++;
    return 0;
}

static int add_meta_field(sw_token_t *t, commit_fields_t *cf)
{
    if (cf->n >= SW_ARRAY_SIZE(cf->f))
        return SW_ETOOLARGE;
    sw_buf_t *b = &cf->bufs[cf->n];
    sw_buf_init(b, 0);
    json_t *meta = json_pack("{s:O}", "router", t->tree.router);
    int rc = sw_mpjson_encode(meta, b);
    json_decref(meta);
    if (rc) {
        sw_buf_destroy(b);
        return rc;
    }
    cf->f[cf->n] = (sw_store_field_t){"_meta", 5, b->data, b->len};
    cf->n++;
    return 0;
}

static void commit_fields_destroy(commit_fields_t *cf)
{
    for (size_t i = 0; i < cf->n; i++)
        sw_buf_destroy(&cf->bufs[i]);
}

/* Send the fenced commit. seq 0 keeps the seq (no delta of the stream);
 * log_entry NULL writes no log entry. Returns 0 when the commit is in
 * flight; otherwise the event has been answered and finished. */
static int commit(sw_token_t *t, commit_fields_t *cf, uint64_t seq, const char *log_entry,
                  size_t log_len, int release)
{
    sw_store_commit_t c = {
        .token = t->token,
        .seq = seq,
        .log_entry = log_entry,
        .log_len = log_len,
        .fields = cf->f,
        .nfields = cf->n,
        .release = release,
    };
    t->commit_seq = seq;
    t->commit_release = release;
    int rc = sw_store_commit(t->w->store, &c, on_committed, t);
    commit_fields_destroy(cf);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return rc;
    }
    t->pending_store = 1;
    return 0;
}

static void queue_on_load(sw_token_t *t)
{
    const char *names[32];
    const char *path = json_string_value(json_object_get(t->tree.router, "path"));
    size_t n = sw_appdef_on_load(t->w->app, path ? path : "/", names, SW_ARRAY_SIZE(names));
    n = SW_MIN(n, SW_ARRAY_SIZE(names));
    for (size_t i = n; i-- > 0;) {
        sw_event_t *ev = sw_event_new(SW_EV_CHAINED, -1, NULL, names[i], NULL, NULL);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        t->qlen++;
    }
}

/* hydrate: persist a brand-new token's defaults and the router, answer one
 * full delta, then run the route's on_load handlers as chained events. */
static void run_hydrate(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    int router_changed = 0;
    if (ev->router && !json_equal(ev->router, t->tree.router)) {
        /* the event keeps its router: a retry from fresh state needs it */
        sw_tree_set_router(&t->tree, json_incref(ev->router), NULL);
        router_changed = 1;
    }
    t->commit_full = 1;
    if (t->exists && !router_changed) {
        on_committed(t, 0); /* nothing to write: answer now */
        return;
    }
    commit_fields_t cf;
    cf.n = 0;
    int rc = 0;
    if (!t->exists) {
        for (size_t i = 0; i < sw_appdef_nstates(t->w->app) && !rc; i++)
            rc = add_state_field(t, &cf, sw_appdef_state(t->w->app, i));
    }
    if (!rc)
        rc = add_meta_field(t, &cf);
    if (rc) {
        commit_fields_destroy(&cf);
        answer_error(t, ev, SW_ERRC_HANDLER_ERROR, "state too large to store");
        finish_current(t);
        return;
    }
    commit(t, &cf, 0, NULL, 0, 1);
}

static void merge_delta(json_t *acc, json_t *delta)
{
    const char *state;
    json_t *vars;
    json_object_foreach(delta, state, vars)
    {
        json_t *dst = json_object_get(acc, state);
        if (!dst)
            json_object_set(acc, state, vars);
        else
            json_object_update(dst, vars);
    }
}

static void task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_task_t *task = sw_container_of(w, sw_task_t, timer);
    sw_event_t *ev =
        sw_event_new(SW_EV_TASK_STEP, -1, NULL, task->name, json_incref(task->payload), NULL);
    ev->task = task;
    ev->step = task->step;
    sw_token_enqueue(task->tok, ev);
}

static void task_schedule(sw_token_t *t, sw_event_t *ev, unsigned sleep_ms)
{
    sw_task_t *task = ev->task;
    if (!task) {
        task = sw_xcalloc(1, sizeof(*task));
        task->tok = t;
        task->name = sw_xstrdup(ev->name);
        task->payload = json_incref(ev->payload);
        ev_timer_init(&task->timer, task_timer_cb, 0., 0.);
        LIST_INSERT_HEAD(&t->tasks, task, link);
    }
    task->step = ev->step + 1;
    ev_timer_set(&task->timer, sleep_ms / 1000., 0.);
    ev_timer_start(t->w->loop, &task->timer);
}

/* Run one handler step of the current event and commit what it changed. */
static void run_step(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (kind == SW_EVENT_UNKNOWN) {
        char msg[SW_EVENT_NAME_MAX + 32];
        snprintf(msg, sizeof(msg), "no handler %s", ev->name);
        answer_error(t, ev, SW_ERRC_UNKNOWN_EVENT, msg);
        finish_current(t);
        return;
    }
    clear_step(t);
    t->acc = json_object();
    int router_changed = 0;
    if (ev->router && !json_equal(ev->router, t->tree.router)) {
        sw_tree_set_router(&t->tree, json_incref(ev->router), t->acc);
        router_changed = 1;
    }
    sw_runtime_step(&t->tree, t->token, ev->name, ev->payload, ev->step, &t->step);
    t->have_step = 1;
    if (t->step.status < 0) {
        answer_error(t, ev, sw_errc_parse(t->step.error_code), t->step.error_msg);
        if (ev->task)
            task_free(ev->task);
        finish_current(t);
        return;
    }
    merge_delta(t->acc, t->step.delta);

    commit_fields_t cf;
    cf.n = 0;
    int rc = 0;
    for (size_t i = 0; i < json_array_size(t->step.dirty) && !rc; i++)
        rc = add_state_field(t, &cf, json_string_value(json_array_get(t->step.dirty, i)));
    if (!rc && router_changed)
        rc = add_meta_field(t, &cf);
    if (rc) {
        commit_fields_destroy(&cf);
        drop_tree(t);
        answer_error(t, ev, SW_ERRC_HANDLER_ERROR, "state too large to store");
        if (ev->task)
            task_free(ev->task);
        finish_current(t);
        return;
    }
    int yield_inline = t->step.status == SW_YIELD && kind != SW_EVENT_TASK;
    int changed = cf.n > 0 || json_object_size(t->acc) > 0 || json_array_size(t->step.actions) > 0;
    t->commit_full = 0;
    if (!changed) {
        commit_fields_destroy(&cf);
        on_committed(t, 0);
        return;
    }
    sw_buf_t log;
    sw_buf_init(&log, 0);
    uint64_t seq = t->seq + 1;
    sw_msg_encode_delta(&log, seq, -1, t->acc, t->step.actions, 0);
    commit(t, &cf, seq, log.data, log.len, !yield_inline);
    sw_buf_destroy(&log);
}

static void on_committed(void *udata, int status)
{
    sw_token_t *t = udata;
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    int via_store = t->pending_store;
    t->pending_store = 0;
    if (!ev) {
        kick(t);
        return;
    }
    if (status == SW_ELEASE) {
        SW_STAT_ADD(w->stats, commit_lease_lost, 1);
        t->lease_held = 0;
        drop_tree(t);
        clear_step(t);
        if (!ev->retried) {
            sw_log(SW_LOG_WARN,
                   "token %.8s…: lease lost before commit of %s (expired or taken); "
                   "retrying once from fresh state",
                   t->token, ev->name);
            ev->retried = 1;
            start_load(t);
            return;
        }
        sw_log(SW_LOG_WARN, "token %.8s…: lease lost again for %s; giving up", t->token, ev->name);
        answer_error(t, ev, SW_ERRC_STATE_UNAVAILABLE, "state changed hands; retry");
        finish_current(t);
        return;
    }
    if (status != 0) {
        /* Outcome unknown: drop the cache; the next load tells the truth and
         * resync_stale() brings clients up to date. */
        SW_STAT_ADD(w->stats, redis_errors, 1);
        t->lease_held = 0;
        answer_error(t, ev, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
        finish_current(t);
        return;
    }
    if (via_store) {
        SW_STAT_ADD(w->stats, commits, 1);
        t->exists = 1;
        if (t->commit_release)
            t->lease_held = 0;
        if (t->commit_seq)
            t->seq = t->commit_seq;
    }

    if (t->commit_full) {
        json_t *full = sw_tree_full(&t->tree);
        deliver(t, ev->origin, ev->id, t->seq, full, NULL, 1, 1);
        json_decref(full);
        SW_STAT_ADD(w->stats, events_ok, 1);
        queue_on_load(t);
        finish_current(t);
        return;
    }

    /* A handler step. */
    int64_t id = ev->kind == SW_EV_CLIENT ? ev->id : -1;
    if (via_store && t->commit_seq) {
        deliver(t, ev->origin, id, t->seq, t->acc, t->step.actions, 0, 0);
    } else if (ev->kind == SW_EV_CLIENT && ev->origin && id >= 0 && ev->step == 0) {
        /* Nothing changed: answer with an empty delta at the current seq
         * (not a new delta of the stream, not logged). */
        deliver(t, ev->origin, id, t->seq, t->acc, NULL, 0, 1);
    }
    if (ev->step == 0 && ev->kind == SW_EV_CLIENT)
        SW_STAT_ADD(w->stats, events_ok, 1);
    push_front_chained(t, t->step.chained);
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (t->step.status == SW_YIELD) {
        if (kind == SW_EVENT_TASK) {
            task_schedule(t, ev, t->step.sleep_ms);
        } else {
            ev->step++;
            clear_step(t);
            run_step(t); /* the lease is still ours and the tree current */
            return;
        }
    } else if (ev->task) {
        task_free(ev->task);
    }
    finish_current(t);
}

static void run_current(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    switch (ev->kind) {
    case SW_EV_HELLO:
        if (ev->origin)
            send_welcome(t, ev->origin);
        finish_current(t);
        return;
    case SW_EV_HYDRATE:
        resync_stale(t, ev->origin);
        run_hydrate(t);
        return;
    default:
        resync_stale(t, NULL);
        run_step(t);
        return;
    }
}
