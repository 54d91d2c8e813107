/* token.c — the token registry and each token's event queue: events, tokens
 * (get, attach and detach peers, free, gc), enqueue and cancel, chained
 * events, background tasks, the in-flight record pool, resumes. See
 * token.h for the pipeline as a whole and token_int.h for its stages. */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static int token_connected(const sw_token_t *t);
static void token_free(sw_token_t *t);
static void task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- events -------------------------------------------------------------- */

sw_event_t *sw_event_new(sw_event_src_t kind, int64_t id, sw_peer_t *origin, const char *name,
                         json_t *payload, json_t *router)
{
    sw_event_t *ev = sw_xcalloc(1, sizeof(*ev));
    ev->kind = kind;
    ev->id = id;
    ev->origin = origin;
    ev->name = sw_xstrdup(name ? name : "");
    ev->payload = payload ? payload : json_object();
    ev->router = router;
    ev->t0_ns = sw_now_ns();
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
    LIST_INIT(&t->peers);
    LIST_INIT(&t->tasks);
    ev_timer_init(&t->retry_w, sw_tok__busy_retry_cb, 0., 0.);
    HASH_ADD_STR(w->tokens, token, t);
    w->ntokens++;
    return t;
}

const char *sw_token_name(const sw_token_t *t)
{
    return t->token;
}

static int token_connected(const sw_token_t *t)
{
    return t->npeers > 0;
}

static const sw_shared_hooks_t SHARED_HOOKS = {
    .catchup = sw_token_catchup,
    .catchup_group = sw_token_catchup_group,
    .resume = sw_token_resume,
    .name = sw_token_name,
    .connected = token_connected,
};

void sw_token_init(sw_worker_t *w)
{
    w->shared_hooks = &SHARED_HOOKS;
}

int sw_token_idle(const sw_token_t *t)
{
    return !t->current && TAILQ_EMPTY(&t->queue) && !t->pending_store;
}

void sw_tok__task_free(sw_task_t *task)
{
    ev_timer_stop(task->tok->w->loop, &task->timer);
    LIST_REMOVE(task, link);
    free(task->name);
    json_decref(task->payload);
    free(task);
}

/* Drop the cached state, with what was read along with it (the next event
 * loads again). */
void sw_tok__drop_tree(sw_token_t *t)
{
    if (t->have_tree) {
        sw_tree_destroy(&t->tree);
        t->have_tree = 0;
    }
    t->old_view = 0;
    json_decref(t->conn_rec);
    t->conn_rec = NULL;
    free(t->live_seen);
    t->live_seen = NULL;
}

void sw_tok__clear_step(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    if (!f)
        return;
    if (f->have_step) {
        sw_step_destroy(&f->step);
        f->have_step = 0;
    }
    json_decref(f->acc);
    f->acc = NULL;
    json_decref(f->new_links);
    f->new_links = NULL;
    f->link_idx = 0;
    for (size_t i = 0; i < f->nwrites; i++)
        json_decref(f->write_changed[i]);
    f->nwrites = 0;
}

/* t->private_copies, made if NULL (it stays NULL while nothing is linked). */
json_t *sw_tok__private_copies_make(sw_token_t *t)
{
    if (!t->private_copies)
        t->private_copies = json_object();
    return t->private_copies;
}

/* Recycled in-flight records: one worker per process (worker.h), so this
 * is the worker's free list; at most SW_INFLIGHT_POOL entries. */
static sw_inflight_t *inflight_pool[SW_INFLIGHT_POOL];

static size_t inflight_npool;

/* Give the token an in-flight record (zeroed) unless it has one. */
void sw_tok__flight_get(sw_token_t *t)
{
    if (t->flight)
        return;
    t->flight =
        inflight_npool ? inflight_pool[--inflight_npool] : sw_xcalloc(1, sizeof(*t->flight));
}

/* Return the token's in-flight record (after sw_tok__clear_step) to the pool. */
void sw_tok__flight_put(sw_token_t *t)
{
    sw_inflight_t *f = t->flight;
    if (!f)
        return;
    t->flight = NULL;
    if (inflight_npool < SW_INFLIGHT_POOL) {
        memset(f, 0, sizeof(*f));
        inflight_pool[inflight_npool++] = f;
    } else {
        free(f);
    }
}

static void token_free(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev;
    if (!w->stopping)
        sw_tok__release_lease(t); /* an oplock must not outlive its token */
    while ((ev = TAILQ_FIRST(&t->queue))) {
        TAILQ_REMOVE(&t->queue, ev, link);
        sw_event_free(ev);
    }
    sw_event_free(t->current);
    while (!LIST_EMPTY(&t->tasks))
        sw_tok__task_free(LIST_FIRST(&t->tasks));
    ev_timer_stop(w->loop, &t->retry_w);
    if (t->resume_queued)
        TAILQ_REMOVE(&w->resumes, t, resume_link);
    while (t->ntl)
        sw_tok__tlink_remove(t, &t->tl[t->ntl - 1], SW_PRESENCE_REMOVE);
    sw_tok__clear_step(t);
    sw_tok__flight_put(t);
    sw_tok__drop_tree(t);
    free(t->user);
    json_decref(t->private_copies);
    HASH_DEL(w->tokens, t);
    w->ntokens--;
    free(t);
}

void sw_token_gc(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        if (t->npeers == 0 && LIST_EMPTY(&t->tasks) && sw_token_idle(t) &&
            !ev_is_active(&t->retry_w) && !t->resume_queued)
            token_free(t);
    }
    sw_shared_gc(w);
}

void sw_token_free_all(sw_worker_t *w)
{
    sw_token_t *t, *tmp;
    HASH_ITER(hh, w->tokens, t, tmp)
    {
        sw_peer_t *s;
        LIST_FOREACH(s, &t->peers, tok_link)
        s->tok = NULL;
        t->presence_on = 0; /* the entries expire; no writes at exit */
        token_free(t);
    }
    sw_shared_free_all(w);
    while (inflight_npool)
        free(inflight_pool[--inflight_npool]);
}

void sw_token_attach(sw_token_t *t, sw_peer_t *s)
{
    LIST_INSERT_HEAD(&t->peers, s, tok_link);
    t->npeers++;
    s->tok = t;
    if (!t->presence_on) {
        t->presence_on = 1;
        sw_tok__presence_all(t, SW_PRESENCE_ADD);
    }
}

void sw_token_detach(sw_token_t *t, sw_peer_t *s)
{
    if (s->welcomed) {
        /* Before any presence removal, on the same connection: a newer
         * connection of this token (a resume elsewhere) keeps its key, and
         * presence removal then leaves the token counted. */
        const char *tok[1] = {t->token}, *sock[1] = {s->sockid};
        sw_store_live(t->w->store, SW_LIVE_DROP, tok, sock, 1, t->w->cfg->presence_ttl_ms);
    }
    LIST_REMOVE(s, tok_link);
    t->npeers--;
    s->tok = NULL;
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &t->queue, link)
    {
        if (ev->origin == s)
            ev->origin = NULL;
    }
    if (t->current && t->current->origin == s)
        t->current->origin = NULL;
    if (t->npeers == 0) {
        if (t->presence_on)
            sw_tok__presence_all(t, SW_PRESENCE_REMOVE);
        t->presence_on = 0;
        if (!t->current)
            sw_tok__drop_tree(t); /* no client view to keep */
    }
    sw_wctx_schedule_gc(t->w);
}

void sw_token_cancel(sw_token_t *t, sw_peer_t *s, int64_t id)
{
    sw_event_t *ev;
    TAILQ_FOREACH(ev, &t->queue, link)
    {
        if (ev->origin == s && ev->id == id &&
            (ev->kind == SW_EV_CLIENT || ev->kind == SW_EV_HYDRATE)) {
            TAILQ_REMOVE(&t->queue, ev, link);
            t->qlen--;
            SW_STAT_ADD(t->w->stats, events_error, 1);
            sw_peer_send_error(s, id, SW_ERRC_CANCELLED, "cancelled");
            sw_event_free(ev);
            return;
        }
    }
    ev = t->current;
    if (ev && ev->origin == s && ev->id == id && ev->kind == SW_EV_CLIENT)
        ev->cancelled = 1; /* sw_tok__after_commit stops it before its next step */
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
            sw_peer_send_error(ev->origin, ev->id, SW_ERRC_RATE_LIMITED, msg);
        } else {
            sw_log(SW_LOG_WARN, "token %.8s…: event queue full, dropping %s", t->token, ev->name);
        }
        SW_STAT_ADD(t->w->stats, events_error, 1);
        sw_event_free(ev);
        return;
    }
    TAILQ_INSERT_TAIL(&t->queue, ev, link);
    t->qlen++;
    sw_tok__kick(t);
}

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
void sw_tok__push_front_chained(sw_token_t *t, json_t *chained)
{
    size_t n = json_array_size(chained); /* bounded by the step (sw_step_in_t.max_chained) */
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

void sw_token_resume(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    if (t->resume_queued)
        return;
    t->resume_queued = 1;
    TAILQ_INSERT_TAIL(&w->resumes, t, resume_link);
    ev_idle_start(w->loop, &w->resume_w);
}

void sw_token_run_resumes(sw_worker_t *w)
{
    sw_token_t *t;
    while ((t = TAILQ_FIRST(&w->resumes))) {
        TAILQ_REMOVE(&w->resumes, t, resume_link);
        t->resume_queued = 0;
        int waiting = t->waiting;
        if (!t->current || !waiting)
            continue;
        t->waiting = WAIT_NONE;
        if (waiting == WAIT_PREPARE)
            sw_tok__prepare(t);
        else if (sw_tok__link_phase(t))
            sw_tok__after_commit(t);
    }
}

/* A session that holds state (it got a full delta) of a token whose state
 * is gone from the store (expired): the server rehydrates first. */
int sw_tok__clients_hold_state(const sw_token_t *t)
{
    const sw_peer_t *s;
    LIST_FOREACH(s, &t->peers, tok_link)
    {
        if (s->hydrated)
            return 1;
    }
    return 0;
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

void sw_tok__task_schedule(sw_token_t *t, sw_event_t *ev, unsigned sleep_ms)
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

size_t sw_token_leases_held(sw_worker_t *w)
{
    size_t held = 0;
    for (sw_token_t *t = w->tokens; t; t = t->hh.next)
        held += t->lease_held ? 1 : 0;
    return held;
}

int sw_token_any_pending(sw_worker_t *w)
{
    for (sw_token_t *t = w->tokens; t; t = t->hh.next)
        if (t->pending_store)
            return 1;
    return 0;
}
