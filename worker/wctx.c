/* wctx.c — the worker context's small services (see wctx.h). */
#include "worker/wctx.h"

#include <string.h>

size_t sw_wctx_id_holder(const sw_worker_t *w, const char *id, char sep, int *mine)
{
    const char *end = strrchr(id, sep);
    size_t hl = end ? (size_t)(end - id) : 0;
    *mine = end && hl == strlen(w->holder_id) && strncmp(id, w->holder_id, hl) == 0;
    return hl;
}

void sw_wctx_schedule_gc(sw_worker_t *w)
{
    if (!w->gc_pending) {
        w->gc_pending = 1;
        ev_idle_start(w->loop, &w->gc_w);
    }
}
