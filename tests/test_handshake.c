/* test_handshake.c — Sec-WebSocket-Accept computation (RFC 6455 §4.2.2). */
#include <criterion/criterion.h>

#include <string.h>

#include "common/util.h"
#include "worker/conn.h"

static int accept_of(const char *key, char out[29])
{
    return sw_ws_accept_key(key, strlen(key), out);
}

Test(handshake, rfc6455_example)
{
    /* RFC 6455 §1.3 */
    char out[29];
    memset(out, 'x', sizeof(out));
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    cr_assert_eq(strlen(out), 28);
}

Test(handshake, other_valid_key)
{
    /* RFC 6455 §4.1 example nonce (16 bytes). */
    char out[29];
    cr_assert_eq(accept_of("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
    cr_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

Test(handshake, wrong_length)
{
    char out[29];
    cr_assert_eq(accept_of("", out), SW_EINVAL);
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25jZQ=", out), SW_EINVAL);
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25jZQ===", out), SW_EINVAL);
    /* 15 bytes / 17 bytes of base64 */
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25j", out), SW_EINVAL);
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25jZWU=", out), SW_EINVAL);
    cr_assert_eq(sw_ws_accept_key(NULL, 0, out), SW_EINVAL);
}

Test(handshake, not_base64)
{
    char out[29];
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25j!Q==", out), SW_EINVAL);
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBu b25jZQ=", out), SW_EINVAL);
    cr_assert_eq(accept_of("dGhlIHNhbXBsZSBub25jZQ=A", out), SW_EINVAL);
    cr_assert_eq(accept_of("========================", out), SW_EINVAL);
    /* Embedded NUL with the right length. */
    cr_assert_eq(sw_ws_accept_key("dGhlIHNhbXBs\0SBub25jZQ==", 24, out), SW_EINVAL);
}
