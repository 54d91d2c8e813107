/* store_lua.h — the Redis backend's Lua scripts, embedded at build time
 * from worker/lua/NAME.lua (worker/store_lua_embed.cmake writes their
 * definitions; each file's opening "--" comment lines, which document its
 * KEYS and ARGV, are left out). NUL-terminated script texts, static for
 * the process. */
#ifndef SW_WORKER_STORE_LUA_H
#define SW_WORKER_STORE_LUA_H

extern const char sw_store_lua_acquire[];  /* take a lease, read the hash */
extern const char sw_store_lua_commit[];   /* the fenced commit */
extern const char sw_store_lua_release[];  /* compare-and-delete a lease */
extern const char sw_store_lua_presence[]; /* a shared token's presence */
extern const char sw_store_lua_live[];     /* the sw:{T}:live keys */
extern const char sw_store_lua_reap[];     /* free a dead holder's leases */
extern const char sw_store_lua_secret[];   /* the signing secret */

#endif
