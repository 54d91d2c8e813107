/* hist.h — an HDR-style log-linear histogram of uint64 values (latencies
 * in nanoseconds), after HdrHistogram (hdrhistogram.org).
 *
 * Values are grouped in buckets of powers of two, each split into
 * 2^ceil(log2(2 * 10^digits)) linear sub-buckets, so every recorded value
 * is kept with a relative error below 10^-digits (values under the
 * sub-bucket count are exact). Memory is fixed at init:
 * (log2(max_value / sub_bucket_count) + 2) * sub_bucket_count / 2 counters
 * (about 220 KiB for max 60 s in ns at 3 digits). Recording never
 * allocates.
 *
 * Bound: a value above max_value is recorded as max_value and counted in
 * `clamped`. */
#ifndef SW_BENCH_HIST_H
#define SW_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct sw_hist {
    uint64_t max_value;     /* highest trackable value */
    int digits;             /* significant decimal digits, 1..5 */
    int sub_half_magnitude; /* log2(sub_bucket_count / 2) */
    uint64_t sub_count;     /* sub-buckets per bucket (power of two) */
    uint64_t sub_mask;      /* (sub_count - 1) */
    size_t bucket_count;
    size_t counts_len;
    uint64_t *counts;  /* owned */
    uint64_t total;    /* values recorded */
    uint64_t max_seen; /* exact highest recorded value (after clamping) */
    uint64_t min_seen; /* exact lowest recorded value; UINT64_MAX if empty */
    uint64_t clamped;  /* values recorded above max_value */
} sw_hist_t;

/* Initialise an embedded histogram for values 0..max_value (max_value >=
 * 2) with `digits` significant digits (1..5; 3 promises 0.1%). Returns 0
 * or SW_EINVAL. */
int sw_hist_init(sw_hist_t *h, uint64_t max_value, int digits);
void sw_hist_destroy(sw_hist_t *h);

/* Record one value (clamped to max_value, see above). */
void sw_hist_record(sw_hist_t *h, uint64_t value);

/* The value at percentile pct (0..100, clamped): the highest value
 * equivalent (same sub-bucket) to the recorded value at that rank, never
 * above the exact max recorded. 0 for an empty histogram. */
uint64_t sw_hist_value_at_percentile(const sw_hist_t *h, double pct);

/* Exact highest recorded value, 0 if empty. */
uint64_t sw_hist_max(const sw_hist_t *h);
/* Number of values recorded. */
uint64_t sw_hist_count(const sw_hist_t *h);

/* Add every value of src into dst. Both must have the same max_value and
 * digits; SW_EINVAL otherwise (dst unchanged). */
int sw_hist_merge(sw_hist_t *dst, const sw_hist_t *src);

/* Forget every value (storage kept). */
void sw_hist_reset(sw_hist_t *h);

#endif
