/* pipeline.c — the runner: it moves the event in flight through its
 * stages, one after another, and alone finishes or fails events (the role
 * of nginx's phase engine). Each stage returns a verdict (token_int.h:
 * next, parked, later, done, fail); the runner calls the next stage, waits
 * for a completion, arms the retry timer, or answers and finishes the
 * event and starts the next one. Its entries: an event queued
 * (sw_token_enqueue), a store completion (load, commit, replay read), the
 * retry timer, a task's timer, and the resume of a token that waited for a
 * shared token (sw_token_run_resumes). The stages it runs itself are the
 * start (the oplock), the lease and load, the prepare (shared write slots
 * and copies, a hello's resume, rehydrating an expired state) and the
 * delivery after the commit; the others are in commit.c, links.c and
 * hello.c. */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"

static void run(sw_token_t *t, sw_verdict_t v);

/* Lease busy backoff: first delay, cap. */
#define SW_BUSY_FIRST_MS 5
#define SW_BUSY_MAX_MS 200
/* A lease's holder is asked again this often while the lease stays busy:
 * an ask is a pub/sub message, lost if the holder's pub/sub connection is
 * down or being replaced. */
#define SW_ASK_AGAIN_MS 1000

void sw_tok__answer_error(sw_token_t *t, sw_event_t *ev, sw_errc_t code, const char *msg)
{
    SW_STAT_ADD(t->w->stats, events_error, 1);
    if (ev->origin) {
        sw_peer_send_error(ev->origin, ev->id, code, msg);
        return;
    }
    if (ev->kind == SW_EV_TASK_STEP || ev->kind == SW_EV_CHAINED) {
        /* No one asked: tell every client of the token, without id. */
        sw_peer_t *s;
        LIST_FOREACH(s, &t->peers, tok_link)
        {
            if (s->welcomed)
                sw_peer_send_error(s, -1, code, msg);
        }
    }
}

/* ---- SW_PH_START, SW_PH_LOAD ------------------------------------------- */

static sw_verdict_t stage_start(sw_token_t *t)
{
    uint64_t now = sw_now_ms();
    if (t->have_tree && t->lease_held && now + t->w->cfg->lease_ms / 4 < t->lease_until_ms)
        /* The oplock: the lease is ours and the state cached, so the
         * event needs no load (one round trip: the commit). */
        t->flight->phase = SW_PH_PREPARE;
    else
        t->flight->phase = SW_PH_LOAD;
    return SW_V_NEXT;
}

static void on_loaded(void *udata, const sw_store_loaded_t *res);

static sw_verdict_t stage_load(sw_token_t *t)
{
    t->flight->load_sent_ms = sw_now_ms();
    int rc = sw_store_acquire_load(t->w->store, t->token, on_loaded, t);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
    }
    t->pending_store = 1;
    return SW_V_PARKED;
}

static json_t *load_meta(sw_token_t *t, const char *mp, size_t len)
{
    int err = 0;
    json_t *meta = sw_mpjson_decode(mp, len, &err);
    if (!json_is_object(meta)) {
        sw_log(SW_LOG_WARN, "token %.8s…: unreadable _meta (%s), using defaults", t->token,
               sw_strerror(err));
        json_decref(meta);
        return NULL;
    }
    return meta;
}

/* The acquire-and-load came back: the lease was busy (back off and ask
 * its holder to hand it over), the store failed, or the new tree. */
static sw_verdict_t loaded(sw_token_t *t, const sw_store_loaded_t *res)
{
    sw_worker_t *w = t->w;
    sw_inflight_t *f = t->flight;
    if (res->status == SW_EBUSY) {
        uint64_t now = sw_now_ms();
        if (!f->busy_since_ms)
            f->busy_since_ms = now;
        if (now - f->busy_since_ms > (uint64_t)w->cfg->lease_ms + 1000) {
            sw_log(SW_LOG_WARN, "token %.8s…: lease held elsewhere for %llu ms, giving up on %s",
                   t->token, (unsigned long long)(now - f->busy_since_ms), t->current->name);
            return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE,
                                "state is locked by another worker; retry");
        }
        if (!f->asked_ms || now - f->asked_ms >= SW_ASK_AGAIN_MS) {
            /* Ask the holder (its inbox) to finish and hand the lease over;
             * no keyspace notifications involved. Asked at the first busy
             * answer and again every SW_ASK_AGAIN_MS of the streak. */
            sw_inbox_msg_t m = {
                .cmd = SW_INBOX_LEASE_WANTED, .token = t->token, .token_len = strlen(t->token)};
            if (sw_wctx_inbox_send(w, res->holder, res->holder_len, &m) != SW_EINVAL)
                f->asked_ms = now;
        }
        f->busy_delay_ms =
            f->busy_delay_ms ? SW_MIN(f->busy_delay_ms * 2, SW_BUSY_MAX_MS) : SW_BUSY_FIRST_MS;
        f->retry_ms = f->busy_delay_ms;
        f->phase = SW_PH_LOAD;
        return SW_V_LATER;
    }
    if (res->status != 0) {
        SW_STAT_ADD(w->stats, redis_errors, 1);
        return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "state store unavailable; retry");
    }
    t->lease_held = 1;
    t->lease_until_ms = t->flight->load_sent_ms + w->cfg->lease_ms;

    /* The new tree: private states from the store. */
    json_t *conn_rec = NULL;
    char *user = NULL;
    sw_tree_t fresh;
    sw_tree_init(&fresh, w->app);
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *fd = &res->fields[i];
        char name[256];
        if (fd->name_len >= sizeof(name))
            continue;
        memcpy(name, fd->name, fd->name_len);
        name[fd->name_len] = '\0';
        if (strcmp(name, "_conn") == 0) {
            json_decref(conn_rec);
            conn_rec = json_loadb(fd->data, fd->len, 0, NULL);
            continue;
        }
        if (strcmp(name, "_user") == 0) {
            free(user);
            user = fd->len ? sw_xstrndup(fd->data, SW_MIN(fd->len, (size_t)SW_USER_MAX)) : NULL;
            continue;
        }
        int rc = sw_tree_load_state(&fresh, name, fd->data, fd->len);
        if (rc == SW_EINVAL)
            sw_log(SW_LOG_WARN, "token %.8s…: state %s unreadable, using defaults", t->token, name);
    }
    json_t *meta = res->meta ? load_meta(t, res->meta, res->meta_len) : NULL;
    json_t *router = json_object_get(meta, "router");
    if (json_is_object(router))
        sw_tree_set_router(&fresh, json_incref(router), NULL);
    json_t *links = json_object_get(meta, "links");
    if (json_is_object(links) && json_object_size(links))
        sw_tree_set_links(&fresh, json_incref(links), NULL);
    sw_tree_recompute_all(&fresh);

    /* Keep the private copies of linked states (unlink restores them), and
     * start linked states from what the clients hold (the old view) so
     * that folding in the shared copy yields what they miss. */
    json_decref(t->private_copies);
    t->private_copies = NULL; /* made on first use: most tokens link nothing */
    int old_view = t->have_tree && t->old_view;
    const char *state;
    json_t *v;
    json_object_foreach(fresh.links, state, v)
    {
        json_t *priv = sw_tree_state_vars(&fresh, state);
        if (priv)
            json_object_set_new(sw_tok__private_copies_make(t), state, json_deep_copy(priv));
        if (old_view && json_equal(json_object_get(t->tree.links, state), v))
            sw_tree_replace_state(&fresh, state, sw_tree_state_vars(&t->tree, state), 1, NULL);
    }
    if (old_view) {
        const char *r;
        json_t *n;
        json_object_foreach(t->tree.presence, r, n)
            sw_tree_set_presence(&fresh, r, json_integer_value(n), NULL);
    }
    sw_tok__drop_tree(t);
    t->tree = fresh;
    t->have_tree = 1;
    t->old_view = old_view;
    t->conn_rec = conn_rec;
    free(t->user);
    t->user = user;
    if (res->live && res->live_len) /* sw:{T}:live, as the store had it */
        t->live_seen = sw_xstrndup(res->live, SW_MIN(res->live_len, 63));
    t->exists = res->exists;
    t->seq = res->seq;
    sw_tok__sync_tlinks(t, t->tree.links);
    json_decref(meta);
    f->phase = SW_PH_PREPARE;
    return SW_V_NEXT;
}

static void on_loaded(void *udata, const sw_store_loaded_t *res)
{
    sw_token_t *t = udata;
    t->pending_store = 0;
    if (!t->current) { /* cannot happen: loads are made for the current event */
        sw_tok__kick(t);
        return;
    }
    run(t, loaded(t, res));
}

/* ---- SW_PH_PREPARE, SW_PH_RUN ------------------------------------------ */

/* Before a hydrate or a handler step: take the write slot of every linked
 * shared token (in name order) with a current copy, then fold the copies
 * in; a HELLO judges its resume (and a resumed client of shared state
 * waits for current copies). Parks (the token is resumed) while a slot is
 * busy or a copy is being read. */
static sw_verdict_t stage_prepare(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    if (ev->kind == SW_EV_HELLO) {
        const sw_resume_t *resume = ev->resume;
        f->hello_resume = SW_HELLO_FRESH;
        if (resume && resume->bare_sse)
            /* an EventSource reconnecting by itself (Last-Event-ID, same
             * URL, no credentials): sw_tok__run_hello decides */
            f->hello_resume = json_is_true(json_object_get(t->conn_rec, "sse")) ? SW_HELLO_BARE_SSE
                                                                                : SW_HELLO_FRESH;
        else if (resume)
            f->hello_resume = sw_tok__resume_valid(t, resume) ? SW_HELLO_RESUME : SW_HELLO_REFUSED;
        if (f->hello_resume > 0 && t->ntl) {
            /* a resumed client of shared state gets it current: the copies */
            for (size_t i = 0; i < t->ntl; i++) {
                if (sw_shared_want_sync(t->tl[i].r, t) == 0) {
                    t->waiting = 1;
                    return SW_V_PARKED;
                }
            }
            sw_tok__fold_shared(t, NULL, 1);
        }
        f->phase = SW_PH_RUN;
        return SW_V_NEXT;
    }
    if (!t->exists && ev->kind != SW_EV_HYDRATE && sw_tok__clients_hold_state(t)) {
        /* The state expired in the store while clients hold it: run a
         * hydrate first (defaults + on_load, a full delta to every
         * client), then this event. Both go back to the queue's head. */
        sw_peer_t *s = ev->origin ? ev->origin : LIST_FIRST(&t->peers);
        json_t *router = ev->router       ? json_incref(ev->router)
                         : s && s->router ? json_loads(s->router, 0, NULL)
                                          : NULL;
        sw_event_t *h = sw_event_new(SW_EV_HYDRATE, -1, NULL, "hydrate", NULL, router);
        sw_log(SW_LOG_INFO, "token %.8s…: state expired in the store; rehydrating", t->token);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        TAILQ_INSERT_HEAD(&t->queue, h, link);
        t->qlen += 2;
        t->current = NULL; /* the runner starts the queue's head */
        return SW_V_NEXT;
    }
    for (size_t i = 0; i < t->ntl; i++) {
        int rc = sw_shared_want_slot(t->tl[i].r, t);
        if (rc == 0) {
            t->waiting = 1;
            return SW_V_PARKED;
        }
        if (rc < 0) {
            sw_tok__drop_tree(t);
            return sw_tok__fail(t, SW_ERRC_STATE_UNAVAILABLE, "shared state unavailable; retry");
        }
    }
    sw_tok__clear_step(t);
    f->acc = json_object();
    sw_tok__fold_shared(t, f->acc, !t->old_view);
    f->phase = SW_PH_RUN;
    return SW_V_NEXT;
}

static sw_verdict_t stage_run(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    switch (ev->kind) {
    case SW_EV_HELLO:
        return sw_tok__run_hello(t);
    case SW_EV_HYDRATE:
        sw_tok__resync_stale(t, ev->origin);
        return sw_tok__run_hydrate(t);
    default:
        sw_tok__resync_stale(t, NULL);
        t->flight->phase = SW_PH_STEP;
        return SW_V_NEXT;
    }
}

/* ---- SW_PH_AFTER --------------------------------------------------------- */

static void task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_task_t *task = sw_container_of(w, sw_task_t, timer);
    sw_event_t *ev =
        sw_event_new(SW_EV_TASK_STEP, -1, NULL, task->name, json_incref(task->payload), NULL);
    ev->task = task;
    ev->step = task->step;
    sw_token_enqueue(task->tok, ev);
}

/* The task of a step that yielded runs again after sleep_ms (made on the
 * task's first yield); sw_tok__task_free stops and frees it. */
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

/* Deliver the step's delta, queue what it chained, and go on: the next
 * step of a yielding handler (SW_PH_STEP), a task's next step (its timer),
 * or done. */
static sw_verdict_t stage_after(sw_token_t *t)
{
    sw_worker_t *w = t->w;
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    int64_t id = ev->kind == SW_EV_CLIENT ? ev->id : -1;
    const json_t *actions = f->have_step ? f->step.actions : NULL;
    if (json_object_size(f->acc) || json_array_size(actions)) {
        sw_tok__deliver(t, ev->origin, id, t->seq, f->acc, actions, 0, 0);
    } else if (ev->kind == SW_EV_CLIENT && ev->origin && id >= 0 && ev->step == 0) {
        /* Nothing changed: answer with an empty delta at the current seq
         * (not a new delta of the stream, not logged). */
        sw_tok__deliver(t, ev->origin, id, t->seq, f->acc, NULL, 0, 1);
    }
    t->old_view = 1;
    if (ev->step == 0 && ev->kind == SW_EV_CLIENT)
        SW_STAT_ADD(w->stats, events_ok, 1);
    if (!f->have_step)
        return SW_V_DONE;
    sw_tok__push_front_chained(t, f->step.chained, f->step.nchained);
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (f->step.status == SW_YIELD) {
        if (kind == SW_EVENT_TASK) {
            task_schedule(t, ev, f->step.sleep_ms);
        } else if (ev->cancelled) {
            /* Cancelled while it ran: its committed steps stay, their
             * deltas went out first; no next step. */
            SW_STAT_ADD(w->stats, events_error, 1);
            if (ev->origin)
                sw_peer_send_error(ev->origin, ev->id, SW_ERRC_CANCELLED, "cancelled");
        } else {
            ev->step++;
            json_decref(f->acc);
            f->acc = json_object();
            json_decref(f->new_links);
            f->new_links = NULL;
            f->link_idx = 0;
            f->phase = SW_PH_STEP; /* the lease and slots are still ours, the tree current */
            return SW_V_NEXT;
        }
    } else if (ev->task) {
        sw_tok__task_free(ev->task);
    }
    return SW_V_DONE;
}

/* ---- the runner ------------------------------------------------------------ */

/* The current event is done (answered or failed): free it, give back the
 * lease and the shared write slots, and catch up with shared changes that
 * arrived meanwhile. The tree stays as the client view while the token
 * has clients. */
static void finish_current(sw_token_t *t)
{
    if (t->current->kind == SW_EV_CLIENT) /* metrics: arrival to answer */
        sw_stats_observe(t->w->stats, SW_HIST_EVENT, sw_now_ns() - t->current->t0_ns);
    sw_tok__release_slots(t);
    sw_tok__clear_step(t);
    sw_tok__flight_put(t);
    t->waiting = 0;
    /* A hello's tree is nobody's view, unless other clients of the token
     * hold state: then it is theirs, and their catch-ups need it. */
    if (t->npeers == 0 || (t->current->kind == SW_EV_HELLO && !sw_tok__clients_hold_state(t)))
        sw_tok__drop_tree(t);
    if (!sw_tok__keep_lease(t))
        sw_tok__release_lease(t);
    t->last_active_ms = sw_now_ms();
    sw_event_free(t->current);
    t->current = NULL;
    if (t->catchup_pending)
        sw_tok__do_catchup(t);
}

/* Answer the failure the stage recorded: shared changes folded in before
 * the handler ran are in the tree, so the clients get them even though
 * the event failed; then the error; a failed task ends. */
static void fail_current(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    sw_inflight_t *f = t->flight;
    if (t->have_tree && f->acc && json_object_size(f->acc))
        sw_tok__deliver(t, NULL, -1, t->seq, f->acc, NULL, 0, 0);
    sw_tok__answer_error(t, ev, f->fail_code, f->fail_msg ? f->fail_msg : "");
    if (ev->task)
        sw_tok__task_free(ev->task);
}

static void busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_token_t *t = sw_container_of(w, sw_token_t, retry_w);
    if (t->current)
        run(t, SW_V_NEXT);
    else
        sw_tok__kick(t);
}

typedef sw_verdict_t (*stage_fn)(sw_token_t *t);

static const stage_fn STAGES[] = {
    [SW_PH_START] = stage_start,
    [SW_PH_LOAD] = stage_load,
    [SW_PH_PREPARE] = stage_prepare,
    [SW_PH_RUN] = stage_run,
    [SW_PH_STEP] = sw_tok__run_step,
    [SW_PH_COMMITTED] = sw_tok__committed,
    [SW_PH_WELCOME] = sw_tok__hello_welcome,
    [SW_PH_LINK] = sw_tok__link_phase,
    [SW_PH_AFTER] = stage_after,
};

/* Go on with verdict v for the current event, then with the queued events
 * until the queue is empty or an event is parked. */
static void run(sw_token_t *t, sw_verdict_t v)
{
    t->running = 1;
    for (;;) {
        if (!t->current) {
            if (t->pending_store || ev_is_active(&t->retry_w))
                break;
            sw_event_t *ev = TAILQ_FIRST(&t->queue);
            if (!ev)
                break;
            TAILQ_REMOVE(&t->queue, ev, link);
            t->qlen--;
            t->current = ev;
            sw_tok__flight_get(t);
            sw_inflight_t *f = t->flight;
            f->busy_since_ms = 0;
            f->busy_delay_ms = 0;
            f->asked_ms = 0;
            f->phase = SW_PH_START;
            t->last_active_ms = sw_now_ms();
            v = SW_V_NEXT;
        }
        switch (v) {
        case SW_V_NEXT:
            v = STAGES[t->flight->phase](t);
            continue;
        case SW_V_PARKED:
            break;
        case SW_V_LATER:
            ev_timer_init(&t->retry_w, busy_retry_cb, t->flight->retry_ms / 1000., 0.);
            ev_timer_start(t->w->loop, &t->retry_w);
            break;
        case SW_V_FAIL:
            fail_current(t);
            finish_current(t);
            v = SW_V_NEXT;
            continue;
        case SW_V_DONE:
            finish_current(t);
            v = SW_V_NEXT;
            continue;
        }
        break;
    }
    t->running = 0;
    if (sw_token_idle(t) && t->npeers == 0)
        sw_wctx_schedule_gc(t->w);
}

void sw_tok__kick(sw_token_t *t)
{
    if (t->running || t->current) /* it goes on there, or when the current one ends */
        return;
    run(t, SW_V_NEXT);
}

/* ---- the runner's entries ------------------------------------------------ */

static void on_committed(void *udata, int status)
{
    sw_token_t *t = udata;
    t->pending_store = 0;
    if (!t->current) {
        sw_tok__kick(t);
        return;
    }
    t->flight->commit_status = status;
    t->flight->commit_via_store = 1;
    t->flight->phase = SW_PH_COMMITTED;
    run(t, SW_V_NEXT);
}

static void on_replay(void *udata, int status, const char *const *entries, const size_t *lens,
                      size_t n)
{
    sw_token_t *t = udata;
    t->pending_store = 0;
    if (!t->current) {
        sw_tok__kick(t);
        return;
    }
    run(t, sw_tok__hello_replayed(t, status, entries, lens, n));
}

static int token_connected(const sw_token_t *t)
{
    return t->npeers > 0;
}

static const sw_shared_hooks_t SHARED_HOOKS = {
    .resume = sw_token_resume,
    .name = sw_token_name,
    .connected = token_connected,
};

void sw_token_init(sw_worker_t *w)
{
    w->shared_hooks = &SHARED_HOOKS;
    sw_tok__done.committed = on_committed;
    sw_tok__done.replayed = on_replay;
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

void sw_token_run_resumes(sw_worker_t *w)
{
    sw_token_t *t;
    while ((t = TAILQ_FIRST(&w->resumes))) {
        TAILQ_REMOVE(&w->resumes, t, resume_link);
        t->resume_queued = 0;
        if (!t->current) { /* a token given an event by another's stage */
            sw_tok__kick(t);
            continue;
        }
        if (!t->waiting)
            continue;
        t->waiting = 0;
        run(t, SW_V_NEXT); /* at the phase it parked in */
    }
}
