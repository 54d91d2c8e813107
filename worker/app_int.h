/* app_int.h — the app registry's internal layout, shared by worker/app.c
 * (declaration, validation) and the runtime's files (worker/runtime*.c:
 * trees, handler steps).
 * Not part of any public interface. */
#ifndef SW_WORKER_APP_INT_H
#define SW_WORKER_APP_INT_H

#include <stddef.h>

#include <uthash.h>

#include "worker/runtime.h"

/* Bounds of a registry. A declaration past a bound is invalid (logged, the
 * app refuses to start). */
#define SW_APP_NAME_MAX 64   /* var, handler, task and app names (bytes) */
#define SW_APP_STATE_MAX 128 /* state path (bytes) */
#define SW_APP_MAX_STATES 256
#define SW_APP_MAX_VARS 4096   /* stored + computed, all states */
#define SW_APP_MAX_EVENTS 4096 /* handlers + tasks + setters */
#define SW_APP_MAX_ONLOAD 256
#define SW_APP_MAX_DEPS 32     /* dependencies of one computed var */
#define SW_APP_PATTERN_MAX 256 /* on_load pattern (bytes) */
#define SW_APP_MAX_SEGMENTS 32 /* segments of an on_load pattern */
#define SW_ROUTE_PARAM_MAX 128 /* route parameter value incl. NUL */

typedef struct sw_statedef sw_statedef_t;
typedef struct sw_vardef sw_vardef_t;

struct sw_vardef {
    char *name;
    sw_statedef_t *state;
    size_t id;          /* index in sw_appdef.vars */
    int computed;       /* 1 for a computed var */
    int backend;        /* name starts with '_': never sent */
    unsigned flags;     /* SW_VAR_* */
    json_t *def;        /* stored: parsed default, owned */
    sw_computed_fn fn;  /* computed */
    char *deps_text;    /* computed: the declared deps, owned */
    sw_vardef_t **deps; /* computed: resolved var deps */
    size_t ndeps;
    int dep_router;      /* computed: depends on the router */
    int dep_links;       /* computed: depends on "links" (sw_ctx_linked) */
    int dep_presence;    /* computed: depends on "presence" (sw_ctx_viewers) */
    sw_vardef_t **rdeps; /* computed vars that depend on this var */
    size_t nrdeps;
    UT_hash_handle hh; /* in sw_statedef.vars, by name */
};

struct sw_statedef {
    char *path;
    unsigned flags;       /* SW_STATE_* */
    size_t id;            /* index in sw_appdef.states */
    sw_vardef_t *vars;    /* uthash by name (stored and computed) */
    sw_vardef_t **stored; /* stored vars in declaration order */
    size_t nstored;
    UT_hash_handle hh; /* in sw_appdef.state_hash, by path */
};

typedef struct sw_eventdef {
    char *name; /* "<state>.<name>" */
    sw_event_kind_t kind;
    sw_handler_fn fn; /* handler and task */
    sw_vardef_t *var; /* setter */
    UT_hash_handle hh;
} sw_eventdef_t;

typedef struct sw_onload {
    char *pattern; /* as declared */
    char *event;
    int any;     /* "*" */
    char **segs; /* split pattern; "[id]" kept verbatim */
    size_t nsegs;
} sw_onload_t;

struct sw_appdef {
    char *name;
    sw_statedef_t **states; /* declaration order */
    size_t nstates;
    sw_statedef_t *state_hash; /* uthash by path */
    sw_vardef_t **vars;        /* every var, by id */
    size_t nvars;
    sw_vardef_t **topo; /* computed vars, dependencies first */
    size_t ntopo;
    sw_vardef_t **router_deps; /* computed vars that depend on "router" */
    size_t nrouter_deps;
    sw_vardef_t **links_deps; /* computed vars that depend on "links" */
    size_t nlinks_deps;
    sw_vardef_t **presence_deps; /* computed vars that depend on "presence" */
    size_t npresence_deps;
    int fanout_private;    /* sw_appdef_fanout_needs_private(), set by sw_appdef_new */
    sw_eventdef_t *events; /* uthash by full name */
    size_t nevents;
    sw_onload_t *onload;
    size_t nonload;
    sw_auth_fn auth; /* sw_app_auth, or NULL */
};

/* The registry's lookups (worker/app.c). NULL when not declared. */
sw_statedef_t *sw_appdef_find_state(const sw_appdef_t *app, const char *path);
sw_vardef_t *sw_appdef_find_var(const sw_appdef_t *app, const char *state, const char *var);
const sw_eventdef_t *sw_appdef_find_event(const sw_appdef_t *app, const char *name);

/* Match route `path` against on_load entry `ol`. With `param` non-NULL,
 * also copy the value of parameter `param` into out (SW_ROUTE_PARAM_MAX
 * bytes); returns 1 on a match (and, with param, when the pattern has
 * that parameter), 0 otherwise. Parameter values of SW_ROUTE_PARAM_MAX
 * bytes or more never match. */
int sw_onload_match(const sw_onload_t *ol, const char *path, const char *param, char *out);

#endif
