/* test_hist.c — the bench's log-linear histogram: percentiles within the
 * promised relative error, exact max, merge, reset and clamping. */
#include <criterion/criterion.h>

#include <math.h>

#include "common/util.h"
/* The histogram lives in the bench executable, which the test support
 * library does not link: compile it into this test. */
#include "bench/hist.h"

#define MAXV (60ull * 1000 * 1000 * 1000) /* 60 s in ns */

static void assert_close(uint64_t got, uint64_t want, double rel)
{
    double err = fabs((double)got - (double)want) / (double)want;
    cr_assert(err <= rel, "got %llu, want %llu (relative error %g > %g)", (unsigned long long)got,
              (unsigned long long)want, err, rel);
}

Test(hist, init_rejects_bad_arguments)
{
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, 1, 3), SW_EINVAL);
    cr_assert_eq(sw_hist_init(&h, MAXV, 0), SW_EINVAL);
    cr_assert_eq(sw_hist_init(&h, MAXV, 6), SW_EINVAL);
    cr_assert_eq(sw_hist_init(&h, MAXV, 3), 0);
    cr_assert_eq(sw_hist_count(&h), 0);
    cr_assert_eq(sw_hist_max(&h), 0);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 50), 0);
    sw_hist_destroy(&h);
}

Test(hist, small_values_are_exact)
{
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, MAXV, 3), 0);
    for (uint64_t v = 1; v <= 1000; v++)
        sw_hist_record(&h, v);
    cr_assert_eq(sw_hist_count(&h), 1000);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 50), 500);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 90), 900);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 99.9), 999);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 100), 1000);
    cr_assert_eq(sw_hist_max(&h), 1000);
    sw_hist_destroy(&h);
}

Test(hist, uniform_percentiles_within_relative_error)
{
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, MAXV, 3), 0);
    /* 1 us .. 1 s in 1 us steps, as ns */
    const uint64_t n = 1000000;
    for (uint64_t i = 1; i <= n; i++)
        sw_hist_record(&h, i * 1000);
    const double pcts[] = {10, 50, 90, 99, 99.9, 99.99};
    for (size_t k = 0; k < SW_ARRAY_SIZE(pcts); k++) {
        uint64_t want = (uint64_t)ceil(pcts[k] / 100.0 * (double)n) * 1000;
        assert_close(sw_hist_value_at_percentile(&h, pcts[k]), want, 1e-3);
    }
    cr_assert_eq(sw_hist_max(&h), n * 1000, "max is exact");
    cr_assert_eq(sw_hist_value_at_percentile(&h, 100), n * 1000);
    sw_hist_destroy(&h);
}

Test(hist, every_value_within_relative_error)
{
    /* A single recorded value comes back within 10^-digits, at every
     * magnitude. */
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, MAXV, 3), 0);
    for (uint64_t v = 3; v < MAXV; v = v * 7 / 3 + 1) {
        sw_hist_reset(&h);
        sw_hist_record(&h, v);
        sw_hist_record(&h, v + 1);
        assert_close(sw_hist_value_at_percentile(&h, 50), v, 1e-3);
        cr_assert_eq(sw_hist_max(&h), v + 1);
    }
    sw_hist_destroy(&h);
}

Test(hist, bimodal_distribution)
{
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, MAXV, 3), 0);
    for (int i = 0; i < 9900; i++)
        sw_hist_record(&h, 200000); /* 200 us */
    for (int i = 0; i < 100; i++)
        sw_hist_record(&h, 50000000); /* 50 ms */
    assert_close(sw_hist_value_at_percentile(&h, 50), 200000, 1e-3);
    assert_close(sw_hist_value_at_percentile(&h, 99), 200000, 1e-3);
    assert_close(sw_hist_value_at_percentile(&h, 99.5), 50000000, 1e-3);
    cr_assert_eq(sw_hist_max(&h), 50000000);
    sw_hist_destroy(&h);
}

Test(hist, merge_adds_counts)
{
    sw_hist_t a, b, other;
    cr_assert_eq(sw_hist_init(&a, MAXV, 3), 0);
    cr_assert_eq(sw_hist_init(&b, MAXV, 3), 0);
    cr_assert_eq(sw_hist_init(&other, MAXV, 2), 0);
    for (uint64_t i = 1; i <= 500; i++)
        sw_hist_record(&a, i * 1000000);
    for (uint64_t i = 501; i <= 1000; i++)
        sw_hist_record(&b, i * 1000000);
    cr_assert_eq(sw_hist_merge(&a, &b), 0);
    cr_assert_eq(sw_hist_count(&a), 1000);
    cr_assert_eq(sw_hist_max(&a), 1000000000ull);
    assert_close(sw_hist_value_at_percentile(&a, 50), 500000000ull, 1e-3);
    assert_close(sw_hist_value_at_percentile(&a, 90), 900000000ull, 1e-3);
    cr_assert_eq(sw_hist_count(&b), 500, "src unchanged");
    cr_assert_eq(sw_hist_merge(&a, &other), SW_EINVAL);
    cr_assert_eq(sw_hist_count(&a), 1000, "dst unchanged on mismatch");
    sw_hist_destroy(&a);
    sw_hist_destroy(&b);
    sw_hist_destroy(&other);
}

Test(hist, values_above_max_are_clamped)
{
    sw_hist_t h;
    cr_assert_eq(sw_hist_init(&h, 1000000, 3), 0);
    sw_hist_record(&h, 10);
    sw_hist_record(&h, 5000000);
    sw_hist_record(&h, UINT64_MAX);
    cr_assert_eq(sw_hist_count(&h), 3);
    cr_assert_eq(h.clamped, 2);
    cr_assert_eq(sw_hist_max(&h), 1000000);
    assert_close(sw_hist_value_at_percentile(&h, 100), 1000000, 1e-3);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 10), 10);
    sw_hist_reset(&h);
    cr_assert_eq(sw_hist_count(&h), 0);
    cr_assert_eq(sw_hist_max(&h), 0);
    cr_assert_eq(h.clamped, 0);
    cr_assert_eq(sw_hist_value_at_percentile(&h, 99), 0);
    sw_hist_destroy(&h);
}
