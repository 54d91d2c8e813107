/* store_script.h — the Redis backend's Lua scripts: their texts, their
 * SHA1s (the names EVALSHA runs them by), and loading them into a
 * connection's script cache. The texts are worker/lua/NAME.lua, embedded
 * at build time by worker/store_lua_embed.cmake without each file's
 * opening "--" comment lines (which document its KEYS and ARGV).
 *
 * Sources: Redis docs "EVALSHA" / "Scripting with Lua" (a script is
 * named by the SHA1 of its text; NOSCRIPT when the cache lacks it). */
#ifndef SW_WORKER_STORE_SCRIPT_H
#define SW_WORKER_STORE_SCRIPT_H

#include <hiredis/async.h>

typedef enum {
    SW_SCRIPT_ACQUIRE,  /* take a lease, read the hash */
    SW_SCRIPT_COMMIT,   /* the fenced commit */
    SW_SCRIPT_RELEASE,  /* compare-and-delete a lease */
    SW_SCRIPT_PRESENCE, /* a shared token's presence */
    SW_SCRIPT_LIVE,     /* the sw:{T}:live keys */
    SW_SCRIPT_REAP,     /* free a dead holder's leases */
    SW_SCRIPT_SECRET,   /* the signing secret */
    SW_SCRIPT__COUNT
} sw_store_script_t;

/* The script's text (NUL-terminated, static). */
const char *sw_store_script_text(sw_store_script_t id);

/* The SHA1 of its text: 40 lowercase hex digits (static; computed at the
 * first call). */
const char *sw_store_script_sha(sw_store_script_t id);

/* Queue SCRIPT LOAD of every script but the secret's (which runs once per
 * worker start, by EVAL) on a connection, before any request: Redis runs
 * one connection's commands in order, so EVALSHA then never meets an empty
 * cache on it. Errors are logged. */
void sw_store_script_load_all(redisAsyncContext *ac);

#endif
