/* metrics.h — the Prometheus text exposition (format 0.0.4) of the shared
 * stats block, for GET /metrics.
 *
 * Any worker renders the whole block: counters and histograms are summed
 * over every slot plus what workers that are gone counted (the master
 * folds a slot's counters into st->retired before reusing it), so they
 * never decrease across worker deaths, respawns and reloads; gauges count
 * only slots whose pid is set. A render that overlaps a fold is done
 * again. Per-worker
 * gauges carry the label worker="<slot index>". Every family has one
 * # HELP and one # TYPE line, names prefixed statewire_. Histograms have
 * cumulative _bucket{le=...} series ending at le="+Inf", then _sum
 * (seconds) and _count.
 * Source: https://prometheus.io/docs/instrumenting/exposition_formats/ */
#ifndef SW_WORKER_METRICS_H
#define SW_WORKER_METRICS_H

#include "common/buf.h"
#include "core/stats.h"

/* Content-Type of the rendered text. */
#define SW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Append the exposition of `st` to `out` (its own bound applies: past it,
 * SW_ETOOLARGE with out holding a truncated text the caller must not
 * serve). The size grows with st->nslots only (about 3 KiB + 150 bytes a
 * slot). Returns 0, SW_EINVAL for NULL arguments, or SW_ETOOLARGE. */
int sw_metrics_render(const sw_stats_t *st, sw_buf_t *out);

#endif
