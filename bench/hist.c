/* hist.c — log-linear histogram (the HdrHistogram index layout). */
#include "hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int sw_hist_init(sw_hist_t *h, uint64_t max_value, int digits)
{
    memset(h, 0, sizeof(*h));
    if (digits < 1 || digits > 5 || max_value < 2)
        return SW_EINVAL;
    uint64_t largest_single = 2;
    for (int i = 0; i < digits; i++)
        largest_single *= 10;
    /* sub_count = 2^ceil(log2(2 * 10^digits)) */
    int mag = 0;
    while ((1ull << mag) < largest_single)
        mag++;
    h->max_value = max_value;
    h->digits = digits;
    h->sub_half_magnitude = mag - 1;
    h->sub_count = 1ull << mag;
    h->sub_mask = h->sub_count - 1;
    /* buckets until the first value that cannot be tracked exceeds max */
    uint64_t untrackable = h->sub_count;
    size_t buckets = 1;
    while (untrackable <= max_value) {
        if (untrackable > UINT64_MAX / 2) {
            buckets++;
            break;
        }
        untrackable <<= 1;
        buckets++;
    }
    h->bucket_count = buckets;
    h->counts_len = (buckets + 1) * (size_t)(h->sub_count / 2);
    h->counts = sw_xcalloc(h->counts_len, sizeof(uint64_t));
    h->min_seen = UINT64_MAX;
    return 0;
}

void sw_hist_destroy(sw_hist_t *h)
{
    free(h->counts);
    h->counts = NULL;
}

static int bucket_index(const sw_hist_t *h, uint64_t v)
{
    int pow2ceil = 64 - __builtin_clzll(v | h->sub_mask);
    return pow2ceil - (h->sub_half_magnitude + 1);
}

static size_t counts_index(const sw_hist_t *h, uint64_t v)
{
    int b = bucket_index(h, v);
    uint64_t sub = v >> b;
    uint64_t half = h->sub_count / 2;
    return ((size_t)(b + 1) << h->sub_half_magnitude) + (size_t)(sub - half);
}

/* Lowest value and width of the sub-bucket at counts index i. */
static void index_range(const sw_hist_t *h, size_t i, uint64_t *lowest, uint64_t *width)
{
    uint64_t half = h->sub_count / 2;
    long b = (long)(i >> h->sub_half_magnitude) - 1;
    uint64_t sub = (i & (half - 1)) + half;
    if (b < 0) {
        sub -= half;
        b = 0;
    }
    *lowest = sub << b;
    *width = 1ull << b;
}

void sw_hist_record(sw_hist_t *h, uint64_t value)
{
    if (value > h->max_value) {
        value = h->max_value;
        h->clamped++;
    }
    size_t i = counts_index(h, value);
    if (i >= h->counts_len)
        i = h->counts_len - 1; /* not reached: max_value is trackable */
    h->counts[i]++;
    h->total++;
    if (value > h->max_seen)
        h->max_seen = value;
    if (value < h->min_seen)
        h->min_seen = value;
}

uint64_t sw_hist_value_at_percentile(const sw_hist_t *h, double pct)
{
    if (h->total == 0)
        return 0;
    if (!(pct >= 0.0))
        pct = 0.0;
    if (pct > 100.0)
        pct = 100.0;
    /* rank of the value; the epsilon keeps 99.9% of 1000 at 999, not 1000 */
    double rank = pct / 100.0 * (double)h->total;
    uint64_t want = (uint64_t)ceil(rank - rank * 1e-12);
    if (want == 0)
        want = 1;
    if (want > h->total)
        want = h->total;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->counts_len; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t lo, width;
            index_range(h, i, &lo, &width);
            uint64_t v = lo + width - 1;
            return SW_MIN(v, h->max_seen);
        }
    }
    return h->max_seen;
}

uint64_t sw_hist_max(const sw_hist_t *h)
{
    return h->max_seen;
}

uint64_t sw_hist_count(const sw_hist_t *h)
{
    return h->total;
}

int sw_hist_merge(sw_hist_t *dst, const sw_hist_t *src)
{
    if (dst->max_value != src->max_value || dst->digits != src->digits ||
        dst->counts_len != src->counts_len)
        return SW_EINVAL;
    for (size_t i = 0; i < src->counts_len; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    if (src->max_seen > dst->max_seen)
        dst->max_seen = src->max_seen;
    if (src->min_seen < dst->min_seen)
        dst->min_seen = src->min_seen;
    return 0;
}

void sw_hist_reset(sw_hist_t *h)
{
    memset(h->counts, 0, h->counts_len * sizeof(uint64_t));
    h->total = 0;
    h->max_seen = 0;
    h->min_seen = UINT64_MAX;
    h->clamped = 0;
}
