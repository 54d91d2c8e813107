#include "worker/metrics.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>

#include "common/util.h"
#include "proto/msg.h"

#define LD(p) atomic_load_explicit((p), memory_order_relaxed)

#define AT(s, off) LD((const _Atomic uint64_t *)((const char *)(s) + (off)))

/* Sum the counter at byte offset `off` of each slot: every slot and what
 * gone workers counted (counters), or only the slots of live workers
 * (gauges). */
static uint64_t sum_at(const sw_stats_t *st, size_t off, int live_only)
{
    uint64_t sum = live_only ? 0 : AT(&st->retired, off);
    for (uint32_t i = 0; i < st->nslots; i++) {
        const sw_worker_stats_t *s = &st->slot[i];
        if (live_only && LD(&s->pid) == 0)
            continue;
        sum += AT(s, off);
    }
    return sum;
}

#define SUM_ALL(st, field) sum_at((st), offsetof(sw_worker_stats_t, field), 0)
#define SUM_LIVE(st, field) sum_at((st), offsetof(sw_worker_stats_t, field), 1)
#define SUM_ALL_AT(st, arr, i)                                                                     \
    sum_at((st), offsetof(sw_worker_stats_t, arr) + (size_t)(i) * sizeof(uint64_t), 0)

static int head(sw_buf_t *out, const char *name, const char *type, const char *help)
{
    return sw_buf_printf(out, "# HELP statewire_%s %s\n# TYPE statewire_%s %s\n", name, help, name,
                         type);
}

static int one(sw_buf_t *out, const char *name, const char *type, const char *help, uint64_t v)
{
    int rc = head(out, name, type, help);
    rc |= sw_buf_printf(out, "statewire_%s %" PRIu64 "\n", name, v);
    return rc;
}

/* Seconds from ns, exact to the ns ("0.000500000" style trimmed). */
static int print_seconds(sw_buf_t *out, uint64_t ns)
{
    char frac[16];
    snprintf(frac, sizeof(frac), "%09" PRIu64, ns % UINT64_C(1000000000));
    int n = 9;
    while (n > 0 && frac[n - 1] == '0')
        n--;
    if (n == 0)
        return sw_buf_printf(out, "%" PRIu64, ns / UINT64_C(1000000000));
    return sw_buf_printf(out, "%" PRIu64 ".%.*s", ns / UINT64_C(1000000000), n, frac);
}

static int histogram(sw_buf_t *out, const sw_stats_t *st, sw_stats_hist_id_t which,
                     const char *name, const char *help)
{
    int rc = head(out, name, "histogram", help);
    uint64_t cum = 0, sum_ns = LD(&st->retired.hist[which].sum_ns);
    for (uint32_t s = 0; s < st->nslots; s++)
        sum_ns += LD(&st->slot[s].hist[which].sum_ns);
    for (unsigned b = 0; b <= SW_STATS_HIST_NBOUNDS; b++) {
        cum += LD(&st->retired.hist[which].bucket[b]);
        for (uint32_t s = 0; s < st->nslots; s++)
            cum += LD(&st->slot[s].hist[which].bucket[b]);
        rc |= sw_buf_printf(out, "statewire_%s_bucket{le=\"", name);
        if (b == SW_STATS_HIST_NBOUNDS)
            rc |= sw_buf_append_str(out, "+Inf");
        else
            rc |= print_seconds(out, sw_stats_hist_bound(b));
        rc |= sw_buf_printf(out, "\"} %" PRIu64 "\n", cum);
    }
    rc |= sw_buf_printf(out, "statewire_%s_sum ", name);
    rc |= print_seconds(out, sum_ns);
    rc |= sw_buf_printf(out, "\nstatewire_%s_count %" PRIu64 "\n", name, cum);
    return rc;
}

static int render_once(const sw_stats_t *st, sw_buf_t *out)
{
    int rc = 0;
    rc |= one(out, "up", "gauge", "1 while the server answers.", 1);

    uint64_t conns = 0;
    rc |= head(out, "worker_connections", "gauge", "Live connections of one worker.");
    for (uint32_t i = 0; i < st->nslots; i++) {
        const sw_worker_stats_t *s = &st->slot[i];
        if (LD(&s->pid) == 0)
            continue;
        uint64_t c = LD(&s->connections);
        conns += c;
        rc |= sw_buf_printf(
            out, "statewire_worker_connections{worker=\"%" PRIu32 "\"} %" PRIu64 "\n", i, c);
    }
    rc |= one(out, "connections", "gauge", "Live connections (all kinds), all workers.", conns);
    uint64_t sessions = SUM_LIVE(st, ws_open), sse = SUM_LIVE(st, sse_open);
    rc |= one(out, "websocket_sessions", "gauge", "Live WebSocket sessions.",
              sessions >= sse ? sessions - sse : 0);
    rc |= one(out, "sse_streams", "gauge", "Live SSE event streams.", sse);
    rc |= one(out, "connections_accepted_total", "counter",
              "Connections handed to workers by the master.", SUM_ALL(st, accepted));

    rc |= head(out, "events_total", "counter", "Events answered, by outcome.");
    rc |= sw_buf_printf(out, "statewire_events_total{outcome=\"ok\"} %" PRIu64 "\n",
                        SUM_ALL(st, events_ok));
    rc |= sw_buf_printf(out, "statewire_events_total{outcome=\"error\"} %" PRIu64 "\n",
                        SUM_ALL(st, events_error));

    rc |= head(out, "errors_total", "counter", "Error messages sent to clients, by code.");
    for (int c = 1; c < SW_ERRC__COUNT; c++)
        rc |= sw_buf_printf(out, "statewire_errors_total{code=\"%s\"} %" PRIu64 "\n",
                            sw_errc_name((sw_errc_t)c), SUM_ALL_AT(st, errors, c));

    rc |= histogram(out, st, SW_HIST_EVENT, "event_duration_seconds",
                    "Client events: time from arrival to the answer.");
    rc |= histogram(out, st, SW_HIST_REDIS_RTT, "redis_roundtrip_seconds",
                    "Redis requests: time from send to reply.");

    rc |= one(out, "deltas_total", "counter", "Delta messages written to clients.",
              SUM_ALL(st, deltas_sent));
    rc |= one(out, "fanout_deltas_total", "counter",
              "Delta messages written without an event id (fan-out, catch-up).",
              SUM_ALL(st, deltas_fanout));
    rc |= one(out, "leases_held", "gauge", "Token leases (oplocks) held by live workers.",
              SUM_LIVE(st, leases_held));
    rc |=
        one(out, "lease_handoffs_total", "counter",
            "Leases given up because another worker asked for them.", SUM_ALL(st, lease_handoffs));
    rc |= one(out, "commits_total", "counter", "Successful fenced commits.", SUM_ALL(st, commits));
    rc |= one(out, "commit_lease_lost_total", "counter",
              "Commits refused because the lease was no longer held.",
              SUM_ALL(st, commit_lease_lost));
    rc |= one(out, "redis_errors_total", "counter",
              "Requests failed because Redis was out of reach.", SUM_ALL(st, redis_errors));

    static const char *const sync_names[SW_RESUME__COUNT] = {"replayed", "full", "none"};
    rc |= head(out, "resumes_total", "counter",
               "Valid resumes, by how the client was brought up to date.");
    for (int k = 0; k < SW_RESUME__COUNT; k++)
        rc |= sw_buf_printf(out, "statewire_resumes_total{sync=\"%s\"} %" PRIu64 "\n",
                            sync_names[k], SUM_ALL_AT(st, resumes, k));
    rc |=
        one(out, "bad_resumes_total", "counter", "Resumes refused (unknown conn_id or conn_token).",
            SUM_ALL_AT(st, errors, SW_ERRC_BAD_RESUME));
    rc |= one(out, "worker_restarts_total", "counter", "Workers respawned by the master.",
              LD(&st->worker_restarts));
    return rc ? SW_ETOOLARGE : 0;
}

int sw_metrics_render(const sw_stats_t *st, sw_buf_t *out)
{
    if (!st || !out)
        return SW_EINVAL;
    /* Counters are read consistently with the master folding a gone
     * worker's slot into st->retired: a render that overlapped a fold is
     * thrown away and done again (a few times at most). */
    size_t start = out->len;
    int rc = 0;
    for (int tries = 0; tries < 4; tries++) {
        uint64_t seq = sw_stats_read_begin(st);
        out->len = start;
        rc = render_once(st, out);
        if (!sw_stats_read_retry(st, seq))
            break;
    }
    return rc;
}
