/* test_metrics.c — the Prometheus exposition of the shared stats block:
 * sums over slots, labelled counters, cumulative histogram buckets with
 * _sum/_count, per-worker gauges of live slots only, and the format
 * itself (HELP/TYPE once per family, before its samples, samples
 * grouped). */
#include <criterion/criterion.h>

#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "proto/msg.h"
#include "core/stats.h"
#include "worker/metrics.h"

static sw_stats_t *st;
static sw_buf_t out;

static void setup(void)
{
    st = sw_stats_new(4);
    cr_assert(st);
    sw_buf_init(&out, 0);
}

static void teardown(void)
{
    sw_buf_destroy(&out);
    sw_stats_free(st);
}

TestSuite(metrics, .init = setup, .fini = teardown);

/* 1 when `line` is one whole line of the rendered text. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

#define ASSERT_LINE(text, line)                                                                    \
    cr_assert(has_line((text), (line)), "missing line: %s\n%s", (line), (text))

static void fill(void)
{
    atomic_store(&st->slot[0].pid, 100);
    atomic_store(&st->slot[1].pid, 101);
    /* slot 2: a dead worker (pid 0) whose counters still count, gauges not */
    atomic_store(&st->slot[0].connections, 3);
    atomic_store(&st->slot[1].connections, 5);
    atomic_store(&st->slot[2].connections, 40);
    atomic_store(&st->slot[0].ws_open, 3);
    atomic_store(&st->slot[0].sse_open, 1);
    atomic_store(&st->slot[1].ws_open, 2);
    atomic_store(&st->slot[0].events_ok, 3);
    atomic_store(&st->slot[1].events_ok, 4);
    atomic_store(&st->slot[2].events_ok, 10);
    atomic_store(&st->slot[1].events_error, 2);
    atomic_store(&st->slot[0].errors[SW_ERRC_UNKNOWN_EVENT], 2);
    atomic_store(&st->slot[1].errors[SW_ERRC_UNKNOWN_EVENT], 3);
    atomic_store(&st->slot[1].errors[SW_ERRC_BAD_RESUME], 1);
    atomic_store(&st->slot[0].resumes[SW_RESUME_REPLAYED], 2);
    atomic_store(&st->slot[1].resumes[SW_RESUME_NONE], 1);
    atomic_store(&st->slot[0].leases_held, 6);
    atomic_store(&st->slot[2].leases_held, 9);
    atomic_store(&st->slot[0].commits, 11);
    atomic_store(&st->worker_restarts, 2);
    /* event durations: 300 us, exactly 1 ms (le is inclusive), 3 s (+Inf) */
    sw_stats_observe(&st->slot[0], SW_HIST_EVENT, 300000);
    sw_stats_observe(&st->slot[1], SW_HIST_EVENT, 1000000);
    sw_stats_observe(&st->slot[1], SW_HIST_EVENT, 3000000000ull);
    sw_stats_observe(&st->slot[0], SW_HIST_REDIS_RTT, 50000);
}

Test(metrics, counters_are_summed_over_every_slot)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    ASSERT_LINE(out.data, "statewire_events_total{outcome=\"ok\"} 17");
    ASSERT_LINE(out.data, "statewire_events_total{outcome=\"error\"} 2");
    ASSERT_LINE(out.data, "statewire_commits_total 11");
    ASSERT_LINE(out.data, "statewire_worker_restarts_total 2");
    ASSERT_LINE(out.data, "statewire_up 1");
}

Test(metrics, labelled_counters)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    ASSERT_LINE(out.data, "statewire_errors_total{code=\"unknown_event\"} 5");
    ASSERT_LINE(out.data, "statewire_errors_total{code=\"bad_json\"} 0");
    ASSERT_LINE(out.data, "statewire_errors_total{code=\"state_unavailable\"} 0");
    ASSERT_LINE(out.data, "statewire_bad_resumes_total 1");
    ASSERT_LINE(out.data, "statewire_resumes_total{sync=\"replayed\"} 2");
    ASSERT_LINE(out.data, "statewire_resumes_total{sync=\"full\"} 0");
    ASSERT_LINE(out.data, "statewire_resumes_total{sync=\"none\"} 1");
}

Test(metrics, gauges_count_live_workers_only)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    ASSERT_LINE(out.data, "statewire_worker_connections{worker=\"0\"} 3");
    ASSERT_LINE(out.data, "statewire_worker_connections{worker=\"1\"} 5");
    cr_assert_null(strstr(out.data, "worker=\"2\""), "a dead slot has no gauge");
    cr_assert_null(strstr(out.data, "worker=\"3\""), "an empty slot has no gauge");
    ASSERT_LINE(out.data, "statewire_connections 8");
    ASSERT_LINE(out.data, "statewire_websocket_sessions 4");
    ASSERT_LINE(out.data, "statewire_sse_streams 1");
    ASSERT_LINE(out.data, "statewire_leases_held 6");
}

Test(metrics, histogram_buckets_are_cumulative)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    const char *h = "statewire_event_duration_seconds";
    char line[160];
    static const struct {
        const char *le;
        int n;
    } want[] = {{"0.0001", 0}, {"0.00025", 0}, {"0.0005", 1}, {"0.001", 2},
                {"0.0025", 2}, {"1", 2},       {"2.5", 2},    {"+Inf", 3}};
    for (size_t i = 0; i < SW_ARRAY_SIZE(want); i++) {
        snprintf(line, sizeof(line), "%s_bucket{le=\"%s\"} %d", h, want[i].le, want[i].n);
        ASSERT_LINE(out.data, line);
    }
    snprintf(line, sizeof(line), "%s_sum 3.0013", h);
    ASSERT_LINE(out.data, line);
    snprintf(line, sizeof(line), "%s_count 3", h);
    ASSERT_LINE(out.data, line);
    ASSERT_LINE(out.data, "statewire_redis_roundtrip_seconds_bucket{le=\"0.0001\"} 1");
    ASSERT_LINE(out.data, "statewire_redis_roundtrip_seconds_sum 0.00005");
    ASSERT_LINE(out.data, "statewire_redis_roundtrip_seconds_count 1");
    /* every bucket line of the family, in order, never decreasing */
    unsigned long long prev = 0;
    int nb = 0;
    snprintf(line, sizeof(line), "%s_bucket{le=\"", h);
    for (const char *p = strstr(out.data, line); p; p = strstr(p + 1, line)) {
        const char *v = strchr(p, ' ');
        unsigned long long n = strtoull(v + 1, NULL, 10);
        cr_assert_geq(n, prev, "bucket counts must be cumulative");
        prev = n;
        nb++;
    }
    cr_assert_eq(nb, SW_STATS_HIST_NBOUNDS + 1);
}

Test(metrics, slot_reset_clears_new_counters)
{
    fill();
    sw_stats_reset_slot(st, 1);
    cr_assert_eq(atomic_load(&st->slot[1].errors[SW_ERRC_UNKNOWN_EVENT]), 0);
    cr_assert_eq(atomic_load(&st->slot[1].hist[SW_HIST_EVENT].bucket[SW_STATS_HIST_NBOUNDS]), 0);
    cr_assert_eq(atomic_load(&st->slot[1].hist[SW_HIST_EVENT].sum_ns), 0);
    cr_assert_eq(atomic_load(&st->slot[0].hist[SW_HIST_EVENT].sum_ns), 300000, "other slots keep");
    cr_assert_eq(atomic_load(&st->worker_restarts), 2, "the master's counter survives");
}

/* Counters never go backwards when a gone worker's slot is reused (a
 * respawn, or a reload into the other half of the slots): its counts move
 * to the retired block; gauges do not. */
Test(metrics, reset_slot_keeps_counters_monotonic)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    char *before = sw_xstrndup(out.data, out.len);
    sw_stats_reset_slot(st, 1); /* worker 101 died; respawned into slot 1 */
    sw_stats_reset_slot(st, 2);
    sw_stats_reset_slot(st, 1); /* and again: nothing counted twice */
    out.len = 0;
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    static const char *same[] = {
        "statewire_events_total{outcome=\"ok\"} 17",
        "statewire_events_total{outcome=\"error\"} 2",
        "statewire_commits_total 11",
        "statewire_errors_total{code=\"unknown_event\"} 5",
        "statewire_errors_total{code=\"bad_resume\"} 1",
        "statewire_resumes_total{sync=\"none\"} 1",
        "statewire_event_duration_seconds_count 3",
        "statewire_event_duration_seconds_bucket{le=\"+Inf\"} 3",
        "statewire_event_duration_seconds_bucket{le=\"0.001\"} 2",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(same); i++) {
        ASSERT_LINE(before, same[i]);
        ASSERT_LINE(out.data, same[i]);
    }
    /* gauges: slot 1's live connections are gone with it */
    ASSERT_LINE(out.data, "statewire_connections 3");
    cr_assert_eq(atomic_load(&st->fold_seq) % 2, 0, "no fold left under way");
    /* the new worker's counts add to what the old ones counted */
    atomic_store(&st->slot[1].pid, 102);
    atomic_store(&st->slot[1].events_ok, 5);
    out.len = 0;
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    ASSERT_LINE(out.data, "statewire_events_total{outcome=\"ok\"} 22");
    free(before);
}

Test(metrics, block_of_finds_the_block)
{
    cr_assert_eq(sw_stats_block_of(&st->slot[0], 0), st);
    cr_assert_eq(sw_stats_block_of(&st->slot[3], 3), st);
}

Test(metrics, bounded_output_fails_cleanly)
{
    sw_buf_t small;
    sw_buf_init(&small, 256);
    cr_assert_eq(sw_metrics_render(st, &small), SW_ETOOLARGE);
    sw_buf_destroy(&small);
    cr_assert_eq(sw_metrics_render(NULL, &out), SW_EINVAL);
}

/* The family a sample belongs to, given the declared histogram names. */
static void family_of(const char *name, char *fam, size_t famlen, const char *types)
{
    snprintf(fam, famlen, "%s", name);
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(sfx); i++) {
        size_t n = strlen(name), k = strlen(sfx[i]);
        if (n > k && strcmp(name + n - k, sfx[i]) == 0) {
            char base[128], key[160];
            snprintf(base, sizeof(base), "%.*s", (int)(n - k), name);
            snprintf(key, sizeof(key), "\n%s histogram\n", base);
            if (strstr(types, key))
                snprintf(fam, famlen, "%s", base);
        }
    }
}

Test(metrics, text_is_valid_exposition_format)
{
    fill();
    cr_assert_eq(sw_metrics_render(st, &out), 0);
    cr_assert(out.len > 0 && out.data[out.len - 1] == '\n', "ends with a newline");
    regex_t sample, help, type;
    cr_assert_eq(regcomp(&sample,
                         "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                         "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                         "(\\+Inf|[0-9]+(\\.[0-9]+)?)$",
                         REG_EXTENDED),
                 0);
    cr_assert_eq(regcomp(&help, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^ ].*$", REG_EXTENDED), 0);
    cr_assert_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$",
                         REG_EXTENDED),
                 0);
    /* "\n<name> <type>\n" per TYPE line; names of HELP lines; finished families */
    sw_buf_t types, helps, done;
    sw_buf_init(&types, 0);
    sw_buf_init(&helps, 0);
    sw_buf_init(&done, 0);
    sw_buf_append_str(&types, "\n");
    sw_buf_append_str(&helps, "\n");
    sw_buf_append_str(&done, "\n");
    char cur[128] = "";
    int nsamples = 0;
    char *text = strdup(out.data);
    for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln;
         ln = strtok_r(NULL, "\n", &save)) {
        regmatch_t m[3];
        char name[128], key[160];
        if (regexec(&help, ln, 2, m, 0) == 0) {
            snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), ln + m[1].rm_so);
            snprintf(key, sizeof(key), "\n%s\n", name);
            cr_assert_null(strstr(helps.data, key), "HELP twice for %s", name);
            sw_buf_printf(&helps, "%s\n", name);
            continue;
        }
        if (regexec(&type, ln, 3, m, 0) == 0) {
            snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), ln + m[1].rm_so);
            snprintf(key, sizeof(key), "\n%s ", name);
            cr_assert_null(strstr(types.data, key), "TYPE twice for %s", name);
            snprintf(key, sizeof(key), "\n%s\n", name);
            cr_assert(strstr(helps.data, key), "HELP before TYPE for %s", name);
            sw_buf_printf(&types, "%s %.*s\n", name, (int)(m[2].rm_eo - m[2].rm_so),
                          ln + m[2].rm_so);
            if (cur[0])
                sw_buf_printf(&done, "%s\n", cur);
            snprintf(cur, sizeof(cur), "%s", name);
            continue;
        }
        cr_assert_neq(ln[0], '#', "unexpected comment: %s", ln);
        cr_assert_eq(regexec(&sample, ln, 2, m, 0), 0, "not a sample line: %s", ln);
        snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), ln + m[1].rm_so);
        char fam[128];
        family_of(name, fam, sizeof(fam), types.data);
        cr_assert_str_eq(fam, cur, "sample %s outside its family's block (TYPE %s first)", ln, fam);
        snprintf(key, sizeof(key), "\n%s\n", fam);
        cr_assert_null(strstr(done.data, key), "family %s continued after another", fam);
        cr_assert(strncmp(name, "statewire_", 10) == 0, "prefix: %s", name);
        nsamples++;
    }
    cr_assert_gt(nsamples, 40);
    free(text);
    sw_buf_destroy(&types);
    sw_buf_destroy(&helps);
    sw_buf_destroy(&done);
    regfree(&sample);
    regfree(&help);
    regfree(&type);
}
