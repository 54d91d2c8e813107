/* token.c — the token registry, below the runner and its stages: get,
 * free, gc; attaching and detaching peers (presence); cancel; the resume
 * list. It starts nothing: the runner (pipeline.c) does. See token.h for the pipeline as a whole
 * and token_int.h for its stages. */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static void token_free(sw_token_t *t);

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
    /* retry_w stays zeroed until the runner arms it (ev_timer_init) */
    HASH_ADD_STR(w->tokens, token, t);
    w->ntokens++;
    return t;
}

const char *sw_token_name(const sw_token_t *t)
{
    return t->token;
}

int sw_token_idle(const sw_token_t *t)
{
    return !t->current && TAILQ_EMPTY(&t->queue) && !t->pending_store;
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
    sw_tok__flight_pool_free();
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
        ev->cancelled = 1; /* the runner's SW_PH_AFTER stops it before its next step */
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
