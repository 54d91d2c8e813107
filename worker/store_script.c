/* store_script.c — the Redis backend's Lua scripts
 * (worker/store_script.h). */
#include "worker/store_script.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "common/log.h"

/* Written by worker/store_lua_embed.cmake from worker/lua/NAME.lua. */
extern const char sw_store_lua_acquire[];
extern const char sw_store_lua_commit[];
extern const char sw_store_lua_release[];
extern const char sw_store_lua_presence[];
extern const char sw_store_lua_live[];
extern const char sw_store_lua_reap[];
extern const char sw_store_lua_secret[];

static const char *const TEXTS[SW_SCRIPT__COUNT] = {
    [SW_SCRIPT_ACQUIRE] = sw_store_lua_acquire, [SW_SCRIPT_COMMIT] = sw_store_lua_commit,
    [SW_SCRIPT_RELEASE] = sw_store_lua_release, [SW_SCRIPT_PRESENCE] = sw_store_lua_presence,
    [SW_SCRIPT_LIVE] = sw_store_lua_live,       [SW_SCRIPT_REAP] = sw_store_lua_reap,
    [SW_SCRIPT_SECRET] = sw_store_lua_secret,
};

/* One worker thread per process. */
static char g_sha[SW_SCRIPT__COUNT][41];

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        sw_log(SW_LOG_CRIT, "EVP_Digest(sha1) failed");
        abort();
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

const char *sw_store_script_text(sw_store_script_t id)
{
    return TEXTS[id];
}

const char *sw_store_script_sha(sw_store_script_t id)
{
    if (!g_sha[id][0])
        sha1_hex(TEXTS[id], g_sha[id]);
    return g_sha[id];
}

static void on_script_load(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        sw_log(SW_LOG_ERROR, "redis: SCRIPT LOAD: %s", rep->str);
}

void sw_store_script_load_all(redisAsyncContext *ac)
{
    for (int i = 0; i < SW_SCRIPT__COUNT; i++)
        if (i != SW_SCRIPT_SECRET)
            redisAsyncCommand(ac, on_script_load, NULL, "SCRIPT LOAD %s", TEXTS[i]);
}
