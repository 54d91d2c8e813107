/* test_credentials.c — signed event-stream credentials: made and checked
 * by any holder of the same key, refused with any other key, any change
 * of a byte, or a malformed id. */
#include "worker/credentials.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "common/util.h"

static sw_cred_key_t key, other;

static void setup(void)
{
    sw_cred_key_init(&key, "the deployment's secret", 23);
    sw_cred_key_init(&other, "another secret", 14);
}

TestSuite(credentials, .init = setup);

Test(credentials, made_and_checked)
{
    char id[80], tok[SW_CRED_TOKEN_HEX + 1];
    int n = sw_cred_stream_id(&key, "w0-1234-abcdef", 42, id, sizeof(id));
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(id));
    cr_assert_eq(strncmp(id, "w0-1234-abcdef_42_", 18), 0, "%s", id);
    cr_assert_eq(strlen(id), 18 + SW_CRED_TAG_HEX);
    size_t hl = 0;
    cr_assert(sw_cred_check_id(&key, id, &hl));
    cr_assert_eq(hl, 14, "the holder part");
    sw_cred_stream_token(&key, id, tok);
    cr_assert_eq(strlen(tok), SW_CRED_TOKEN_HEX);
    cr_assert(sw_cred_check_token(&key, id, tok));

    /* The same inputs give the same credentials on any worker with the key. */
    sw_cred_key_t again;
    sw_cred_key_init(&again, "the deployment's secret", 23);
    char id2[80], tok2[SW_CRED_TOKEN_HEX + 1];
    sw_cred_stream_id(&again, "w0-1234-abcdef", 42, id2, sizeof(id2));
    sw_cred_stream_token(&again, id2, tok2);
    cr_assert_str_eq(id, id2);
    cr_assert_str_eq(tok, tok2);
}

Test(credentials, refused)
{
    char id[80], tok[SW_CRED_TOKEN_HEX + 1];
    sw_cred_stream_id(&key, "w1-99-00ff", 7, id, sizeof(id));
    sw_cred_stream_token(&key, id, tok);
    cr_assert_not(sw_cred_check_id(&other, id, NULL), "another key");
    cr_assert_not(sw_cred_check_token(&other, id, tok));
    for (size_t i = 0; i < strlen(id); i++) {
        char bad[80];
        snprintf(bad, sizeof(bad), "%s", id);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        if (strcmp(bad, id) != 0)
            cr_assert_not(sw_cred_check_id(&key, bad, NULL), "byte %zu changed: %s", i, bad);
    }
    for (size_t i = 0; i < strlen(tok); i++) {
        char bad[SW_CRED_TOKEN_HEX + 1];
        memcpy(bad, tok, sizeof(bad));
        bad[i] = bad[i] == '0' ? '1' : '0';
        cr_assert_not(sw_cred_check_token(&key, id, bad), "token byte %zu changed", i);
    }
    char id2[80];
    sw_cred_stream_id(&key, "w1-99-00ff", 8, id2, sizeof(id2));
    cr_assert_not(sw_cred_check_token(&key, id2, tok), "another stream's token");
    const char *malformed[] = {"",
                               "x",
                               "w1-99-00ff_7",
                               "w1-99-00ff_7_",
                               "_7_0123456789abcdef",
                               "w1_x_0123456789abcdef",
                               "w1-99-00ff_0123456789abcdef",
                               "w1-99-00ff__0123456789abcdef"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(malformed); i++)
        cr_assert_not(sw_cred_check_id(&key, malformed[i], NULL), "%s", malformed[i]);
    cr_assert_not(sw_cred_check_token(&key, id, ""));
    cr_assert_not(sw_cred_check_token(&key, id, NULL));
    cr_assert_eq(sw_cred_stream_id(&key, "w_1", 1, id2, sizeof(id2)), SW_EINVAL);
    cr_assert_eq(sw_cred_stream_id(&key, "", 1, id2, sizeof(id2)), SW_EINVAL);
    cr_assert_eq(sw_cred_stream_id(&key, "w1", 1, id2, 10), SW_EINVAL, "out too small");
}
