/* wctx.c — the worker context's small services (see wctx.h). */
#include "worker/wctx.h"

#include <string.h>

#include "common/util.h"

/* Per-iteration step: continue waiting tokens, then let tokens linked to
 * shared state changed in this iteration catch up (one pass per shared
 * token however many messages came). Runs from an ev_check every
 * iteration; the ev_idle, started when work is queued, keeps the loop from
 * blocking meanwhile. */
static void run_queued(sw_worker_t *w)
{
    if (!TAILQ_EMPTY(&w->resumes))
        w->steps->run_resumes(w);
    if (!LIST_EMPTY(&w->catchups))
        w->steps->run_catchups(w);
    if (TAILQ_EMPTY(&w->resumes) && LIST_EMPTY(&w->catchups))
        ev_idle_stop(w->loop, &w->resume_w);
}

static void resume_cb(struct ev_loop *loop, ev_idle *iw, int revents)
{
    run_queued(sw_container_of(iw, sw_worker_t, resume_w));
}

static void resume_check_cb(struct ev_loop *loop, ev_check *cw, int revents)
{
    run_queued(sw_container_of(cw, sw_worker_t, resume_check_w));
}

static void gc_cb(struct ev_loop *loop, ev_idle *iw, int revents)
{
    sw_worker_t *w = sw_container_of(iw, sw_worker_t, gc_w);
    ev_idle_stop(loop, iw);
    w->gc_pending = 0;
    w->steps->gc(w);
}

void sw_wctx_init(sw_worker_t *w, struct ev_loop *loop, const sw_config_t *cfg,
                  const sw_appdef_t *app, const sw_wctx_steps_t *steps)
{
    w->loop = loop;
    w->cfg = cfg;
    w->app = app;
    w->steps = steps;
    LIST_INIT(&w->sessions);
    TAILQ_INIT(&w->resumes);
    LIST_INIT(&w->catchups);
    LIST_INIT(&w->posts);
    ev_idle_init(&w->resume_w, resume_cb);
    ev_idle_init(&w->gc_w, gc_cb);
    ev_check_init(&w->resume_check_w, resume_check_cb);
    ev_check_start(loop, &w->resume_check_w);
}

void sw_wctx_destroy(sw_worker_t *w)
{
    ev_idle_stop(w->loop, &w->resume_w);
    ev_idle_stop(w->loop, &w->gc_w);
    ev_check_stop(w->loop, &w->resume_check_w);
    w->gc_pending = 0;
}

size_t sw_wctx_id_holder(const sw_worker_t *w, const char *id, char sep, int *mine)
{
    const char *end = strrchr(id, sep);
    size_t hl = end ? (size_t)(end - id) : 0;
    *mine = end && hl == strlen(w->holder_id) && strncmp(id, w->holder_id, hl) == 0;
    return hl;
}

int sw_wctx_inbox_send(sw_worker_t *w, const char *holder, size_t holder_len,
                       const sw_inbox_msg_t *m)
{
    char channel[SW_INBOX_CHANNEL_MAX];
    int rc = sw_inbox_channel(holder, holder_len, channel);
    if (rc)
        return rc;
    sw_buf_t b;
    sw_buf_init(&b, 0);
    rc = sw_inbox_encode(m, &b);
    if (rc == 0)
        rc = sw_store_publish(w->store, channel, b.data, b.len);
    sw_buf_destroy(&b);
    return rc;
}

void sw_wctx_schedule_gc(sw_worker_t *w)
{
    if (!w->gc_pending) {
        w->gc_pending = 1;
        ev_idle_start(w->loop, &w->gc_w);
    }
}
