/* flight.c — the bottom of the token pipeline: events, the in-flight
 * record (its pool, its failure record, the step being committed), the
 * token's cached state (drop, private copies of linked states), pushes
 * onto a token's queue and the runner's completions table. Every stage
 * file uses it; it calls none of them. */
#include "worker/token_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

sw_tok_completions_t sw_tok__done; /* filled by sw_token_init (pipeline.c) */

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

sw_event_t *sw_event_new_hello(sw_peer_t *origin, const sw_resume_t *resume)
{
    sw_event_t *ev = sw_event_new(SW_EV_HELLO, -1, origin, "hello", NULL, NULL);
    if (resume) {
        ev->resume = sw_xmalloc(sizeof(*ev->resume));
        *ev->resume = *resume;
    }
    return ev;
}

void sw_event_free(sw_event_t *ev)
{
    if (!ev)
        return;
    free(ev->resume);
    free(ev->name);
    json_decref(ev->payload);
    json_decref(ev->router);
    free(ev);
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

sw_verdict_t sw_tok__fail(sw_token_t *t, sw_errc_t code, const char *msg)
{
    sw_inflight_t *f = t->flight;
    f->fail_code = code;
    free(f->fail_msg);
    f->fail_msg = sw_xstrdup(msg ? msg : "");
    return SW_V_FAIL;
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
    free(f->fail_msg);
    if (inflight_npool < SW_INFLIGHT_POOL) {
        memset(f, 0, sizeof(*f));
        inflight_pool[inflight_npool++] = f;
    } else {
        free(f);
    }
}

void sw_tok__flight_pool_free(void)
{
    while (inflight_npool)
        free(inflight_pool[--inflight_npool]);
}

void sw_tok__push(sw_token_t *t, sw_event_t *ev)
{
    TAILQ_INSERT_TAIL(&t->queue, ev, link);
    t->qlen++;
}

/* Insert internal events at the head, keeping their order: they run right
 * after the event that made them, before later client events. */
void sw_tok__push_front_chained(sw_token_t *t, const sw_chained_t *chained, size_t n)
{
    /* n is bounded by the step (sw_step_in_t.max_chained) */
    for (size_t i = n; i-- > 0;) {
        const sw_chained_t *c = &chained[i];
        sw_event_t *ev = sw_event_new(SW_EV_CHAINED, -1, NULL, c->name,
                                      c->payload ? json_incref(c->payload) : NULL, NULL);
        TAILQ_INSERT_HEAD(&t->queue, ev, link);
        t->qlen++;
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
