/* credentials.c — signed event-stream credentials (see credentials.h). */
#include "worker/credentials.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"

#define KEY_LABEL "statewire stream credentials|"

static const char HEX[] = "0123456789abcdef";

void sw_cred_key_init(sw_cred_key_t *key, const void *secret, size_t len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(md, KEY_LABEL, sizeof(KEY_LABEL) - 1) ||
        !EVP_DigestUpdate(md, secret, len) || !EVP_DigestFinal_ex(md, key->k, &n) || n != 32) {
        sw_log(SW_LOG_CRIT, "EVP_Digest(sha256) failed");
        abort();
    }
    EVP_MD_CTX_free(md);
}

/* hex(HMAC-SHA256(key, a || b))[0..nhex) into out (nhex + 1 bytes). */
static void mac_hex(const sw_cred_key_t *key, const char *a, const char *b, size_t nhex, char *out)
{
    unsigned char data[256], mac[32];
    size_t la = strlen(a), lb = strlen(b), outl = 0;
    if (la + lb > sizeof(data)) { /* callers bound b; cannot happen */
        memset(out, '0', nhex);
        out[nhex] = '\0';
        return;
    }
    memcpy(data, a, la);
    memcpy(data + la, b, lb);
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->k, sizeof(key->k), data, la + lb, mac,
                   sizeof(mac), &outl) ||
        outl != sizeof(mac)) {
        sw_log(SW_LOG_CRIT, "EVP_Q_mac(HMAC-SHA256) failed");
        abort();
    }
    for (size_t i = 0; i < nhex; i++)
        out[i] = HEX[(mac[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[nhex] = '\0';
}

int sw_cred_stream_id(const sw_cred_key_t *key, const char *holder, uint64_t n, char *out,
                      size_t cap)
{
    if (!holder || !*holder || strchr(holder, '_'))
        return SW_EINVAL;
    char body[128];
    int bl = snprintf(body, sizeof(body), "%s_%llu", holder, (unsigned long long)n);
    if (bl < 0 || (size_t)bl >= sizeof(body) || (size_t)bl + 1 + SW_CRED_TAG_HEX + 1 > cap)
        return SW_EINVAL;
    char tag[SW_CRED_TAG_HEX + 1];
    mac_hex(key, "id|", body, SW_CRED_TAG_HEX, tag);
    return snprintf(out, cap, "%s_%s", body, tag);
}

void sw_cred_stream_token(const sw_cred_key_t *key, const char *conn_id,
                          char out[SW_CRED_TOKEN_HEX + 1])
{
    char id[129];
    snprintf(id, sizeof(id), "%s", conn_id);
    mac_hex(key, "token|", id, SW_CRED_TOKEN_HEX, out);
}

int sw_cred_check_id(const sw_cred_key_t *key, const char *conn_id, size_t *holder_len)
{
    size_t len = conn_id ? strlen(conn_id) : 0;
    if (len < SW_CRED_TAG_HEX + 4 || len > 128)
        return 0;
    const char *tag = conn_id + len - SW_CRED_TAG_HEX;
    if (tag[-1] != '_')
        return 0;
    size_t body_len = (size_t)(tag - 1 - conn_id);
    char body[129];
    memcpy(body, conn_id, body_len);
    body[body_len] = '\0';
    const char *us = strrchr(body, '_'); /* <holder> "_" <n> */
    if (!us || us == body || us[1] == '\0')
        return 0;
    for (const char *p = us + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    char want[SW_CRED_TAG_HEX + 1];
    mac_hex(key, "id|", body, SW_CRED_TAG_HEX, want);
    if (CRYPTO_memcmp(want, tag, SW_CRED_TAG_HEX) != 0)
        return 0;
    if (holder_len)
        *holder_len = (size_t)(us - body);
    return 1;
}

int sw_cred_check_token(const sw_cred_key_t *key, const char *conn_id, const char *conn_token)
{
    if (!conn_id || !conn_token || strlen(conn_token) != SW_CRED_TOKEN_HEX)
        return 0;
    char want[SW_CRED_TOKEN_HEX + 1];
    sw_cred_stream_token(key, conn_id, want);
    return CRYPTO_memcmp(want, conn_token, SW_CRED_TOKEN_HEX) == 0;
}
