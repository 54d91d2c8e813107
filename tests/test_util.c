#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"

Test(buf, append_within_and_past_bound)
{
    sw_buf_t b;
    sw_buf_init(&b, 8);
    cr_assert_eq(sw_buf_append(&b, "abcde", 5), 0);
    cr_assert_eq(sw_buf_append(&b, "fgh", 3), 0);
    cr_assert_eq(b.len, 8);
    cr_assert_str_eq(b.data, "abcdefgh");
    /* One byte past the bound: refused, buffer unchanged. */
    cr_assert_eq(sw_buf_append(&b, "i", 1), SW_ETOOLARGE);
    cr_assert_eq(b.len, 8);
    cr_assert_str_eq(b.data, "abcdefgh");
    cr_assert_eq(sw_buf_append_str(&b, "xyz"), SW_ETOOLARGE);
    cr_assert_eq(sw_buf_printf(&b, "%d", 1), SW_ETOOLARGE);
    cr_assert_eq(sw_buf_reserve(&b, 1), SW_ETOOLARGE);
    cr_assert_eq(sw_buf_reserve(&b, SIZE_MAX), SW_ETOOLARGE);
    cr_assert_eq(b.len, 8);
    cr_assert_str_eq(b.data, "abcdefgh");
    /* Empty append at the bound is fine. */
    cr_assert_eq(sw_buf_append(&b, "", 0), 0);
    sw_buf_destroy(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);

    sw_buf_init(&b, 4);
    cr_assert_eq(sw_buf_append(&b, "abcde", 5), SW_ETOOLARGE);
    cr_assert_eq(b.len, 0);
    sw_buf_destroy(&b);
}

Test(buf, appendv_concatenates_all_or_nothing)
{
    sw_buf_t b;
    sw_buf_init(&b, 8);
    struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
    cr_assert_eq(sw_buf_appendv(&b, iov, 3), 0);
    cr_assert_eq(b.len, 5);
    cr_assert_str_eq(b.data, "abcde");
    /* 5 + 5 bytes pass the bound of 8: nothing of it is appended. */
    cr_assert_eq(sw_buf_appendv(&b, iov, 3), SW_ETOOLARGE);
    cr_assert_eq(b.len, 5);
    cr_assert_str_eq(b.data, "abcde");
    cr_assert_eq(sw_buf_appendv(&b, iov, 0), 0);
    cr_assert_eq(b.len, 5);
    sw_buf_destroy(&b);
}

Test(util, u64_dec_writes_every_digit)
{
    char out[SW_U64_DIGITS + 1];
    size_t n = sw_u64_dec(out, 0);
    out[n] = '\0';
    cr_assert_str_eq(out, "0");
    n = sw_u64_dec(out, 1234567890u);
    out[n] = '\0';
    cr_assert_str_eq(out, "1234567890");
    n = sw_u64_dec(out, UINT64_MAX);
    cr_assert_eq(n, SW_U64_DIGITS);
    out[n] = '\0';
    cr_assert_str_eq(out, "18446744073709551615");
}

Test(buf, unbounded_growth_keeps_nul)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(sw_buf_append(&b, "0123456789", 10), 0);
    cr_assert_eq(b.len, 10000);
    cr_assert_geq(b.cap, b.len);
    cr_assert_eq(b.data[b.len], '\0');
    cr_assert_eq(memcmp(b.data + 9990, "0123456789", 10), 0);
    sw_buf_destroy(&b);
}

Test(buf, consume_and_reset)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_buf_append_str(&b, "hello world"), 0);
    sw_buf_consume(&b, 6);
    cr_assert_eq(b.len, 5);
    cr_assert_str_eq(b.data, "world");
    sw_buf_consume(&b, 0);
    cr_assert_str_eq(b.data, "world");
    sw_buf_consume(&b, 5);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.data, "");
    cr_assert_eq(sw_buf_append_str(&b, "again"), 0);
    cr_assert_str_eq(b.data, "again");
    sw_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    cr_assert_str_eq(b.data, "");
    sw_buf_destroy(&b);
}

Test(buf, printf_growth)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    cr_assert_eq(sw_buf_printf(&b, "%s=%d;", "a", 1), 0);
    cr_assert_str_eq(b.data, "a=1;");
    /* Longer than the internal 256-byte scratch: goes through the grow path. */
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    cr_assert_eq(sw_buf_printf(&b, "[%s]", big), 0);
    cr_assert_eq(b.len, 4 + 1002);
    cr_assert_eq(strlen(b.data), b.len);
    cr_assert_eq(b.data[4], '[');
    cr_assert_eq(b.data[b.len - 1], ']');
    sw_buf_destroy(&b);

    /* Bounded: a long printf past the bound is refused whole. */
    sw_buf_init(&b, 500);
    cr_assert_eq(sw_buf_printf(&b, "ok"), 0);
    cr_assert_eq(sw_buf_printf(&b, "%s", big), SW_ETOOLARGE);
    cr_assert_eq(b.len, 2);
    cr_assert_str_eq(b.data, "ok");
    sw_buf_destroy(&b);
}

Test(buf, steal)
{
    sw_buf_t b;
    sw_buf_init(&b, 0);
    size_t len = 99;
    cr_assert_null(sw_buf_steal(&b, &len));
    cr_assert_eq(len, 0);

    cr_assert_eq(sw_buf_append_str(&b, "payload"), 0);
    char *p = sw_buf_steal(&b, &len);
    cr_assert_not_null(p);
    cr_assert_eq(len, 7);
    cr_assert_str_eq(p, "payload");
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    free(p);
    /* Reusable afterwards. */
    cr_assert_eq(sw_buf_append_str(&b, "next"), 0);
    cr_assert_str_eq(b.data, "next");
    sw_buf_destroy(&b);
}

Test(util, random_hex)
{
    char a[65], b[65];
    memset(a, '#', sizeof(a));
    sw_random_hex(a, 32);
    sw_random_hex(b, 32);
    cr_assert_eq(strlen(a), 64);
    cr_assert_eq(strlen(b), 64);
    for (int i = 0; i < 64; i++)
        cr_assert(strchr("0123456789abcdef", a[i]) && a[i] != '\0', "bad char %c", a[i]);
    cr_assert_str_neq(a, b);

    char big[2 * 200 + 1]; /* more than the internal 64-byte chunk */
    sw_random_hex(big, 200);
    cr_assert_eq(strlen(big), 400);
    cr_assert_eq(strspn(big, "0123456789abcdef"), 400);

    char one[3];
    sw_random_hex(one, 1);
    cr_assert_eq(strlen(one), 2);
    char none[1] = {'x'};
    sw_random_hex(none, 0);
    cr_assert_eq(none[0], '\0');
}

Test(util, secure_equal)
{
    cr_assert_eq(sw_secure_equal("abc", 3, "abc", 3), 1);
    cr_assert_eq(sw_secure_equal("abc", 3, "abd", 3), 0);
    cr_assert_eq(sw_secure_equal("abc", 3, "abcd", 4), 0);
    cr_assert_eq(sw_secure_equal("abcd", 3, "abcx", 3), 1); /* only len bytes count */
    cr_assert_eq(sw_secure_equal("", 0, "", 0), 1);
    cr_assert_eq(sw_secure_equal("a\0b", 3, "a\0c", 3), 0);
}

Test(util, utf8_valid_prefix)
{
    cr_assert_eq(sw_utf8_valid_prefix("", 0), 0);
    cr_assert_eq(sw_utf8_valid_prefix("abc", 3), 3);
    cr_assert_eq(sw_utf8_valid_prefix("a\xc3\xa9b", 4), 4, "e-acute");
    cr_assert_eq(sw_utf8_valid_prefix("a\xc3", 2), 1, "cut in the middle of a character");
    cr_assert_eq(sw_utf8_valid_prefix("ab\xe2\x82", 4), 2);
    cr_assert_eq(sw_utf8_valid_prefix("a\xffb", 3), 1, "invalid byte");
    cr_assert_eq(sw_utf8_valid_prefix("\xc0\xaf", 2), 0, "overlong");
    cr_assert_eq(sw_utf8_valid_prefix("x\xed\xa0\x80", 4), 1, "surrogate");
    cr_assert_eq(sw_utf8_valid_prefix("\xf4\x90\x80\x80", 4), 0, "above U+10FFFF");
    cr_assert_eq(sw_utf8_valid_prefix("\xf0\x9f\x98\x80!", 5), 5, "4-byte sequence");
    cr_assert_eq(sw_utf8_seq((const unsigned char *)"\xe2\x82\xac", 3), 3);
    cr_assert_eq(sw_utf8_seq((const unsigned char *)"\xe2\x82\xac", 2), 0, "cut short");
}
