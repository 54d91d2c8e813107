/* pipeline.c — the stages that move one event through the pipeline: start
 * (kick), lease and load (start_load, on_loaded), prepare (shared write
 * slots, rehydrate an expired state), run (run_current), after the commit
 * (after_commit: deliver, chain, next step) and finish or fail. */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mpjson.h"
#include "common/util.h"

static json_t *load_meta(sw_token_t *t, const char *mp, size_t len);
static void on_loaded(void *udata, const sw_store_loaded_t *res);
static void run_current(sw_token_t *t);

/* Lease busy backoff: first delay, cap. */
#define SW_BUSY_FIRST_MS 5

#define SW_BUSY_MAX_MS 200

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

void sw_tok__start_load(sw_token_t *t)
{
    t->flight->load_sent_ms = sw_now_ms();
    int rc = sw_store_acquire_load(t->w->store, t->token, on_loaded, t);
    if (rc) {
        SW_STAT_ADD(t->w->stats, redis_errors, 1);
        sw_tok__answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE,
                             "state store unavailable; retry");
        sw_tok__finish_current(t);
        return;
    }
    t->pending_store = 1;
}

/* Start the next queued event if none is in flight. Events that fail
 * without reaching the store are answered and the loop goes on. */
void sw_tok__kick(sw_token_t *t)
{
    if (t->in_kick) /* an event finished inside the loop below: it goes on */
        return;
    t->in_kick = 1;
    while (!t->current && !t->pending_store && !ev_is_active(&t->retry_w)) {
        sw_event_t *ev = TAILQ_FIRST(&t->queue);
        if (!ev)
            break;
        TAILQ_REMOVE(&t->queue, ev, link);
        t->qlen--;
        t->current = ev;
        sw_tok__flight_get(t);
        t->flight->busy_since_ms = 0;
        t->flight->busy_delay_ms = 0;
        t->flight->asked_holder = 0;
        uint64_t now = sw_now_ms();
        t->last_active_ms = now;
        if (t->have_tree && t->lease_held && now + t->w->cfg->lease_ms / 4 < t->lease_until_ms) {
            /* The oplock: the lease is ours and the state cached, so the
             * event needs no load (one round trip: the commit). */
            sw_tok__prepare(t);
        } else {
            sw_tok__start_load(t);
        }
    }
    t->in_kick = 0;
}

/* The current event is done (answered or failed): free it, give back the
 * lease and the shared write slots, catch up with shared changes that
 * arrived meanwhile, and start the next one. The tree stays as the client
 * view while the token has clients. */
void sw_tok__finish_current(sw_token_t *t)
{
    if (t->current && t->current->kind == SW_EV_CLIENT) /* metrics: arrival to answer */
        sw_stats_observe(t->w->stats, SW_HIST_EVENT, sw_now_ns() - t->current->t0_ns);
    sw_tok__release_slots(t);
    sw_tok__clear_step(t);
    sw_tok__flight_put(t);
    t->waiting = WAIT_NONE;
    /* A hello's tree is nobody's view, unless other clients of the token
     * hold state: then it is theirs, and their catch-ups need it. */
    if (t->npeers == 0 ||
        (t->current && t->current->kind == SW_EV_HELLO && !sw_tok__clients_hold_state(t)))
        sw_tok__drop_tree(t);
    if (!sw_tok__keep_lease(t))
        sw_tok__release_lease(t);
    t->last_active_ms = sw_now_ms();
    sw_event_free(t->current);
    t->current = NULL;
    if (t->catchup_pending)
        sw_tok__do_catchup(t);
    sw_tok__kick(t);
    if (sw_token_idle(t) && t->npeers == 0)
        sw_wctx_schedule_gc(t->w);
}

void sw_tok__busy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sw_token_t *t = sw_container_of(w, sw_token_t, retry_w);
    if (t->current)
        sw_tok__start_load(t);
    else
        sw_tok__kick(t);
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

static void on_loaded(void *udata, const sw_store_loaded_t *res)
{
    sw_token_t *t = udata;
    sw_worker_t *w = t->w;
    t->pending_store = 0;
    if (!t->current) { /* cannot happen: loads are made for the current event */
        sw_tok__kick(t);
        return;
    }
    if (res->status == SW_EBUSY) {
        uint64_t now = sw_now_ms();
        sw_inflight_t *f = t->flight;
        if (!f->busy_since_ms)
            f->busy_since_ms = now;
        if (now - f->busy_since_ms > (uint64_t)w->cfg->lease_ms + 1000) {
            sw_log(SW_LOG_WARN, "token %.8s…: lease held elsewhere for %llu ms, giving up on %s",
                   t->token, (unsigned long long)(now - f->busy_since_ms), t->current->name);
            sw_tok__answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE,
                                 "state is locked by another worker; retry");
            sw_tok__finish_current(t);
            return;
        }
        if (!f->asked_holder && res->holder_len > 0 && res->holder_len < 64) {
            /* Ask the holder (its inbox) to finish and hand the lease over;
             * no keyspace notifications involved. */
            char inbox[80];
            snprintf(inbox, sizeof(inbox), "inbox:%.*s", (int)res->holder_len, res->holder);
            sw_store_publish(w->store, inbox, t->token, strlen(t->token));
            f->asked_holder = 1;
        }
        f->busy_delay_ms =
            f->busy_delay_ms ? SW_MIN(f->busy_delay_ms * 2, SW_BUSY_MAX_MS) : SW_BUSY_FIRST_MS;
        ev_timer_set(&t->retry_w, f->busy_delay_ms / 1000., 0.);
        ev_timer_start(w->loop, &t->retry_w);
        return;
    }
    if (res->status != 0) {
        SW_STAT_ADD(w->stats, redis_errors, 1);
        sw_tok__answer_error(t, t->current, SW_ERRC_STATE_UNAVAILABLE,
                             "state store unavailable; retry");
        sw_tok__finish_current(t);
        return;
    }
    t->lease_held = 1;
    t->lease_until_ms = t->flight->load_sent_ms + w->cfg->lease_ms;

    /* The new tree: private states from the store. */
    json_t *conn_rec = NULL;
    char *user = NULL;
    sw_tree_t fresh;
    sw_tree_init(&fresh, w->app);
    for (size_t i = 0; i < res->nfields; i++) {
        const sw_store_field_t *f = &res->fields[i];
        char name[256];
        if (f->name_len >= sizeof(name))
            continue;
        memcpy(name, f->name, f->name_len);
        name[f->name_len] = '\0';
        if (strcmp(name, "_conn") == 0) {
            json_decref(conn_rec);
            conn_rec = json_loadb(f->data, f->len, 0, NULL);
            continue;
        }
        if (strcmp(name, "_user") == 0) {
            free(user);
            user = f->len ? sw_xstrndup(f->data, SW_MIN(f->len, (size_t)SW_USER_MAX)) : NULL;
            continue;
        }
        int rc = sw_tree_load_state(&fresh, name, f->data, f->len);
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
    sw_tok__prepare(t);
}

/* Before a hydrate or a handler step: take the write slot of every linked
 * shared token (in name order) with a current copy, then fold the copies
 * in. Waits (resumed later) when a slot is busy or a copy is being read. */
void sw_tok__prepare(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    if (ev->kind == SW_EV_HELLO) {
        json_t *resume = json_object_get(ev->payload, "resume");
        sw_inflight_t *f = t->flight;
        f->hello_resume = SW_HELLO_FRESH;
        if (json_is_true(json_object_get(resume, "sse")))
            /* an EventSource reconnecting by itself (Last-Event-ID, same
             * URL, no credentials): sw_tok__run_hello decides */
            f->hello_resume = json_is_true(json_object_get(t->conn_rec, "sse")) ? SW_HELLO_BARE_SSE
                                                                                : SW_HELLO_FRESH;
        else if (resume)
            f->hello_resume = sw_tok__resume_valid(t, resume) ? SW_HELLO_RESUME : SW_HELLO_REFUSED;
        if (f->hello_resume > 0 && t->ntl) {
            /* a resumed client of shared state gets it current: the copies */
            for (size_t i = 0; i < t->ntl; i++) {
                int rc = sw_shared_want_sync(t->tl[i].r, t);
                if (rc == 0) {
                    t->waiting = WAIT_PREPARE;
                    return;
                }
            }
            sw_tok__fold_shared(t, NULL, 1);
        }
    } else {
        if (!t->exists && ev->kind != SW_EV_HYDRATE && sw_tok__clients_hold_state(t)) {
            /* The state expired in the store while clients hold it: run a
             * hydrate first (defaults + on_load, a full delta to every
             * client), then this event. */
            sw_peer_t *s = ev->origin ? ev->origin : LIST_FIRST(&t->peers);
            json_t *router = ev->router       ? json_incref(ev->router)
                             : s && s->router ? json_loads(s->router, 0, NULL)
                                              : NULL;
            sw_event_t *h = sw_event_new(SW_EV_HYDRATE, -1, NULL, "hydrate", NULL, router);
            sw_log(SW_LOG_INFO, "token %.8s…: state expired in the store; rehydrating", t->token);
            TAILQ_INSERT_HEAD(&t->queue, ev, link);
            TAILQ_INSERT_HEAD(&t->queue, h, link);
            t->qlen += 2;
            t->current = NULL;
            sw_tok__kick(t);
            return;
        }
        for (size_t i = 0; i < t->ntl; i++) {
            int rc = sw_shared_want_slot(t->tl[i].r, t);
            if (rc == 0) {
                t->waiting = WAIT_PREPARE;
                return;
            }
            if (rc < 0) {
                sw_tok__answer_error(t, ev, SW_ERRC_STATE_UNAVAILABLE,
                                     "shared state unavailable; retry");
                sw_tok__drop_tree(t);
                sw_tok__finish_current(t);
                return;
            }
        }
        sw_tok__clear_step(t);
        t->flight->acc = json_object();
        sw_tok__fold_shared(t, t->flight->acc, !t->old_view);
    }
    run_current(t);
}

void sw_tok__merge_delta(json_t *acc, json_t *delta)
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

void sw_tok__fail_current(sw_token_t *t, sw_errc_t code, const char *msg)
{
    sw_event_t *ev = t->current;
    /* Shared changes folded in before the handler ran are in the tree:
     * the clients get them even though the event failed. */
    if (t->have_tree && t->flight->acc && json_object_size(t->flight->acc))
        sw_tok__deliver(t, NULL, -1, t->seq, t->flight->acc, NULL, 0, 0);
    sw_tok__answer_error(t, ev, code, msg);
    if (ev->task)
        sw_tok__task_free(ev->task);
    sw_tok__finish_current(t);
}

/* Deliver the step's delta, queue what it chained, and go on (next step
 * of a yielding handler, next task step, or the next event). */
void sw_tok__after_commit(sw_token_t *t)
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
    if (!f->have_step) {
        sw_tok__finish_current(t);
        return;
    }
    sw_tok__push_front_chained(t, f->step.chained);
    sw_event_kind_t kind = sw_appdef_event_kind(w->app, ev->name);
    if (f->step.status == SW_YIELD) {
        if (kind == SW_EVENT_TASK) {
            sw_tok__task_schedule(t, ev, f->step.sleep_ms);
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
            sw_tok__run_step(t); /* the lease and slots are still ours, the tree current */
            return;
        }
    } else if (ev->task) {
        sw_tok__task_free(ev->task);
    }
    sw_tok__finish_current(t);
}

static void run_current(sw_token_t *t)
{
    sw_event_t *ev = t->current;
    switch (ev->kind) {
    case SW_EV_HELLO:
        sw_tok__run_hello(t);
        return;
    case SW_EV_HYDRATE:
        sw_tok__resync_stale(t, ev->origin);
        sw_tok__run_hydrate(t);
        return;
    default:
        sw_tok__resync_stale(t, NULL);
        sw_tok__run_step(t);
        return;
    }
}
