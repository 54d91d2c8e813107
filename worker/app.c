/* app.c — the app registry: the sw_app_* declarations of include/statewire.h
 * and the sw_appdef_* queries of worker/runtime.h. */
#include "worker/runtime.h"

#include <dlfcn.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/app_int.h"

/* The registration context handed to an app's init function. */
struct sw_app {
    sw_appdef_t *def;
    int failed; /* a declaration was invalid: sw_appdef_new() returns NULL */
};

/* Append `item` to a heap array of pointers. */
#define PUSH(arr, n, item)                                                                         \
    do {                                                                                           \
        (arr) = sw_xrealloc((arr), ((n) + 1) * sizeof(*(arr)));                                    \
        (arr)[(n)++] = (item);                                                                     \
    } while (0)

static int fail(sw_app_t *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(sw_app_t *app, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sw_log(SW_LOG_ERROR, "app: invalid declaration: %s", msg);
    if (app)
        app->failed = 1;
    return -1;
}

/* [A-Za-z0-9_]{1,64} */
static int valid_name(const char *s)
{
    size_t n = 0;

    if (!s || !*s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return n <= SW_APP_NAME_MAX;
}

/* Dotted path of [a-z0-9_]+ segments, at most SW_APP_STATE_MAX bytes. */
static int valid_state_path(const char *s)
{
    size_t n = 0, seg = 0;

    if (!s || !*s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (c == '.') {
            if (seg == 0)
                return 0;
            seg = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
        seg++;
    }
    return seg > 0 && n <= SW_APP_STATE_MAX;
}

sw_statedef_t *sw_appdef_find_state(const sw_appdef_t *app, const char *path)
{
    sw_statedef_t *s = NULL;

    if (path)
        HASH_FIND_STR(app->state_hash, path, s);
    return s;
}

sw_vardef_t *sw_appdef_find_var(const sw_appdef_t *app, const char *state, const char *var)
{
    sw_statedef_t *s = sw_appdef_find_state(app, state);
    sw_vardef_t *v = NULL;

    if (s && var)
        HASH_FIND_STR(s->vars, var, v);
    return v;
}

const sw_eventdef_t *sw_appdef_find_event(const sw_appdef_t *app, const char *name)
{
    sw_eventdef_t *e = NULL;

    if (name)
        HASH_FIND_STR(app->events, name, e);
    return e;
}

/* ---- Declarations ---------------------------------------------------------- */

int sw_app_name(sw_app_t *app, const char *name)
{
    if (!name || !*name || strlen(name) > SW_APP_NAME_MAX)
        return fail(app, "app name must be 1..%d bytes", SW_APP_NAME_MAX);
    free(app->def->name);
    app->def->name = sw_xstrdup(name);
    return 0;
}

int sw_app_auth(sw_app_t *app, sw_auth_fn fn)
{
    if (!fn)
        return fail(app, "sw_app_auth: NULL hook");
    if (app->def->auth)
        return fail(app, "sw_app_auth: a hook is declared already");
    app->def->auth = fn;
    return 0;
}

int sw_app_state(sw_app_t *app, const char *path, unsigned flags)
{
    sw_appdef_t *def = app->def;
    sw_statedef_t *s;

    if (!valid_state_path(path))
        return fail(app,
                    "state \"%s\": not a dotted path of [a-z0-9_] segments of at most %d bytes",
                    path ? path : "(null)", SW_APP_STATE_MAX);
    if (flags & ~SW_STATE_SHARED)
        return fail(app, "state \"%s\": unknown flags 0x%x", path, flags);
    if (sw_appdef_find_state(def, path))
        return fail(app, "state \"%s\" declared twice", path);
    if (def->nstates >= SW_APP_MAX_STATES)
        return fail(app, "state \"%s\": more than %d states", path, SW_APP_MAX_STATES);
    s = sw_xcalloc(1, sizeof(*s));
    s->path = sw_xstrdup(path);
    s->flags = flags;
    s->id = def->nstates;
    PUSH(def->states, def->nstates, s);
    HASH_ADD_KEYPTR(hh, def->state_hash, s->path, strlen(s->path), s);
    return 0;
}

/* Common checks for a new var/handler name in `state`; returns the state
 * or NULL (logged). */
static sw_statedef_t *check_member(sw_app_t *app, const char *what, const char *state,
                                   const char *name)
{
    sw_statedef_t *s = sw_appdef_find_state(app->def, state);

    if (!s) {
        fail(app, "%s \"%s.%s\": unknown state \"%s\" (declare it first)", what,
             state ? state : "(null)", name ? name : "(null)", state ? state : "(null)");
        return NULL;
    }
    if (!valid_name(name)) {
        fail(app, "%s \"%s.%s\": name must be [A-Za-z0-9_], 1..%d bytes", what, state,
             name ? name : "(null)", SW_APP_NAME_MAX);
        return NULL;
    }
    return s;
}

static int add_event(sw_app_t *app, sw_statedef_t *s, const char *name, sw_event_kind_t kind,
                     sw_handler_fn fn, sw_vardef_t *var)
{
    sw_appdef_t *def = app->def;
    char *full = sw_xasprintf("%s.%s", s->path, name);
    sw_eventdef_t *e;

    if (sw_appdef_find_event(def, full)) {
        fail(app, "event \"%s\" declared twice (handler, task or setter of a settable var)", full);
        free(full);
        return -1;
    }
    if (def->nevents >= SW_APP_MAX_EVENTS) {
        fail(app, "event \"%s\": more than %d events", full, SW_APP_MAX_EVENTS);
        free(full);
        return -1;
    }
    e = sw_xcalloc(1, sizeof(*e));
    e->name = full;
    e->kind = kind;
    e->fn = fn;
    e->var = var;
    HASH_ADD_KEYPTR(hh, def->events, e->name, strlen(e->name), e);
    def->nevents++;
    return 0;
}

static sw_vardef_t *add_var(sw_app_t *app, sw_statedef_t *s, const char *name)
{
    sw_appdef_t *def = app->def;
    sw_vardef_t *v = NULL;

    HASH_FIND_STR(s->vars, name, v);
    if (v) {
        fail(app, "var \"%s.%s\" declared twice", s->path, name);
        return NULL;
    }
    if (def->nvars >= SW_APP_MAX_VARS) {
        fail(app, "var \"%s.%s\": more than %d vars", s->path, name, SW_APP_MAX_VARS);
        return NULL;
    }
    v = sw_xcalloc(1, sizeof(*v));
    v->name = sw_xstrdup(name);
    v->state = s;
    v->id = def->nvars;
    v->backend = name[0] == '_';
    PUSH(def->vars, def->nvars, v);
    HASH_ADD_KEYPTR(hh, s->vars, v->name, strlen(v->name), v);
    return v;
}

int sw_app_var(sw_app_t *app, const char *state, const char *name, const char *default_json,
               unsigned flags)
{
    sw_statedef_t *s = check_member(app, "var", state, name);
    json_error_t jerr;
    json_t *def;
    sw_vardef_t *v;
    char *setter;
    int rc;

    if (!s)
        return -1;
    if (flags & ~SW_VAR_SETTABLE)
        return fail(app, "var \"%s.%s\": unknown flags 0x%x", state, name, flags);
    if ((flags & SW_VAR_SETTABLE) && name[0] == '_')
        return fail(app, "var \"%s.%s\": a backend-only var cannot be settable", state, name);
    if (!default_json)
        return fail(app, "var \"%s.%s\": no default", state, name);
    def = json_loads(default_json, JSON_DECODE_ANY, &jerr);
    if (!def)
        return fail(app, "var \"%s.%s\": bad JSON default '%s': %s (column %d)", state, name,
                    default_json, jerr.text, jerr.column);
    v = add_var(app, s, name);
    if (!v) {
        json_decref(def);
        return -1;
    }
    v->def = def;
    v->flags = flags;
    PUSH(s->stored, s->nstored, v);
    if (!(flags & SW_VAR_SETTABLE))
        return 0;
    setter = sw_xasprintf("set_%s", name);
    rc = add_event(app, s, setter, SW_EVENT_SETTER, NULL, v);
    free(setter);
    return rc;
}

/* Split "a.b, c.d ,router" and check each item's syntax; the names are
 * resolved once every var is declared. */
static int check_deps_syntax(sw_app_t *app, const char *state, const char *name, const char *deps)
{
    char *copy = sw_xstrdup(deps), *save = NULL, *tok;
    size_t n = 0;
    int rc = 0;

    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end, *dot;

        while (*tok == ' ' || *tok == '\t')
            tok++;
        end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (++n > SW_APP_MAX_DEPS) {
            rc = fail(app, "computed \"%s.%s\": more than %d deps", state, name, SW_APP_MAX_DEPS);
            break;
        }
        if (strcmp(tok, "router") == 0 || strcmp(tok, "links") == 0 || strcmp(tok, "presence") == 0)
            continue;
        dot = strrchr(tok, '.');
        if (!dot || dot == tok || !dot[1]) {
            rc = fail(app,
                      "computed \"%s.%s\": dep \"%s\" is not \"<state>.<var>\", \"router\", "
                      "\"links\" or \"presence\"",
                      state, name, tok);
            break;
        }
    }
    free(copy);
    return rc;
}

int sw_app_computed(sw_app_t *app, const char *state, const char *name, sw_computed_fn fn,
                    const char *deps)
{
    sw_statedef_t *s = check_member(app, "computed", state, name);
    sw_vardef_t *v;

    if (!s)
        return -1;
    if (!fn)
        return fail(app, "computed \"%s.%s\": no function", state, name);
    if (deps && check_deps_syntax(app, state, name, deps) < 0)
        return -1;
    v = add_var(app, s, name);
    if (!v)
        return -1;
    v->computed = 1;
    v->fn = fn;
    v->deps_text = sw_xstrdup(deps ? deps : "");
    return 0;
}

int sw_app_handler(sw_app_t *app, const char *state, const char *name, sw_handler_fn fn)
{
    sw_statedef_t *s = check_member(app, "handler", state, name);

    if (!s)
        return -1;
    if (!fn)
        return fail(app, "handler \"%s.%s\": no function", state, name);
    return add_event(app, s, name, SW_EVENT_HANDLER, fn, NULL);
}

int sw_app_task(sw_app_t *app, const char *state, const char *name, sw_handler_fn fn)
{
    sw_statedef_t *s = check_member(app, "task", state, name);

    if (!s)
        return -1;
    if (!fn)
        return fail(app, "task \"%s.%s\": no function", state, name);
    return add_event(app, s, name, SW_EVENT_TASK, fn, NULL);
}

/* A literal segment: anything but '/', '[' and ']'; a parameter: "[name]". */
static int valid_segment(const char *seg)
{
    size_t n = strlen(seg);

    if (n == 0)
        return 0;
    if (seg[0] == '[') {
        char inner[SW_APP_NAME_MAX + 1];
        if (n < 3 || seg[n - 1] != ']' || n - 2 > SW_APP_NAME_MAX)
            return 0;
        memcpy(inner, seg + 1, n - 2);
        inner[n - 2] = '\0';
        return valid_name(inner);
    }
    return strpbrk(seg, "[]") == NULL;
}

int sw_app_on_load(sw_app_t *app, const char *pattern, const char *event)
{
    sw_appdef_t *def = app->def;
    sw_onload_t ol = {0};
    char *copy, *save = NULL, *tok;

    if (!pattern || !event || !*event)
        return fail(app, "on_load: pattern and event are required");
    if (strlen(pattern) > SW_APP_PATTERN_MAX)
        return fail(app, "on_load \"%.32s...\": pattern longer than %d bytes", pattern,
                    SW_APP_PATTERN_MAX);
    if (def->nonload >= SW_APP_MAX_ONLOAD)
        return fail(app, "on_load \"%s\": more than %d on_load handlers", pattern,
                    SW_APP_MAX_ONLOAD);
    if (strcmp(pattern, "*") == 0) {
        ol.any = 1;
    } else {
        if (pattern[0] != '/')
            return fail(app, "on_load \"%s\": pattern must be \"*\" or start with '/'", pattern);
        copy = sw_xstrdup(pattern);
        for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
            if (!valid_segment(tok) || ol.nsegs >= SW_APP_MAX_SEGMENTS) {
                fail(app,
                     "on_load \"%s\": bad segment \"%s\" (literal, or [name] of [A-Za-z0-9_]; "
                     "at most %d segments)",
                     pattern, tok, SW_APP_MAX_SEGMENTS);
                for (size_t i = 0; i < ol.nsegs; i++)
                    free(ol.segs[i]);
                free(ol.segs);
                free(copy);
                return -1;
            }
            PUSH(ol.segs, ol.nsegs, sw_xstrdup(tok));
        }
        free(copy);
    }
    ol.pattern = sw_xstrdup(pattern);
    ol.event = sw_xstrdup(event);
    def->onload = sw_xrealloc(def->onload, (def->nonload + 1) * sizeof(*def->onload));
    def->onload[def->nonload++] = ol;
    return 0;
}

/* ---- Route matching --------------------------------------------------------- */

int sw_onload_match(const sw_onload_t *ol, const char *path, const char *param, char *out)
{
    const char *p = path ? path : "/";
    size_t i = 0;
    int found = 0;

    if (ol->any)
        return param == NULL;
    for (;;) {
        const char *seg, *end;
        size_t len;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        seg = p;
        end = strchr(seg, '/');
        if (!end)
            end = seg + strlen(seg);
        len = (size_t)(end - seg);
        p = end;
        if (i >= ol->nsegs)
            return 0;
        if (ol->segs[i][0] == '[') {
            if (len >= SW_ROUTE_PARAM_MAX)
                return 0;
            if (param && strlen(ol->segs[i]) == strlen(param) + 2 &&
                strncmp(ol->segs[i] + 1, param, strlen(param)) == 0) {
                memcpy(out, seg, len);
                out[len] = '\0';
                found = 1;
            }
        } else if (strlen(ol->segs[i]) != len || memcmp(ol->segs[i], seg, len) != 0) {
            return 0;
        }
        i++;
    }
    if (i != ol->nsegs)
        return 0;
    return param ? found : 1;
}

/* ---- Resolution: deps, reverse deps, topological order ----------------------- */

static int resolve_deps(sw_app_t *app, sw_vardef_t *v)
{
    sw_appdef_t *def = app->def;
    char *copy = sw_xstrdup(v->deps_text), *save = NULL, *tok;
    int rc = 0;

    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end, *dot;
        sw_vardef_t *d;
        size_t k;

        while (*tok == ' ' || *tok == '\t')
            tok++;
        end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (strcmp(tok, "router") == 0) {
            if (!v->dep_router)
                PUSH(def->router_deps, def->nrouter_deps, v);
            v->dep_router = 1;
            continue;
        }
        if (strcmp(tok, "links") == 0) {
            if (!v->dep_links)
                PUSH(def->links_deps, def->nlinks_deps, v);
            v->dep_links = 1;
            continue;
        }
        if (strcmp(tok, "presence") == 0) {
            if (!v->dep_presence)
                PUSH(def->presence_deps, def->npresence_deps, v);
            v->dep_presence = 1;
            continue;
        }
        dot = strrchr(tok, '.');
        *dot = '\0';
        d = sw_appdef_find_var(def, tok, dot + 1);
        if (!d) {
            rc = fail(app, "computed \"%s.%s\": unknown dep \"%s.%s\"", v->state->path, v->name,
                      tok, dot + 1);
            break;
        }
        for (k = 0; k < v->ndeps && v->deps[k] != d; k++)
            ;
        if (k < v->ndeps)
            continue; /* listed twice */
        PUSH(v->deps, v->ndeps, d);
        PUSH(d->rdeps, d->nrdeps, v);
    }
    free(copy);
    return rc;
}

/* Kahn's algorithm over the computed vars. */
static int topo_sort(sw_app_t *app)
{
    sw_appdef_t *def = app->def;
    size_t *indeg = sw_xcalloc(def->nvars ? def->nvars : 1, sizeof(*indeg));
    sw_vardef_t **queue = sw_xcalloc(def->nvars ? def->nvars : 1, sizeof(*queue));
    size_t ncomputed = 0, head = 0, tail = 0;
    int rc = 0;

    for (size_t i = 0; i < def->nvars; i++) {
        sw_vardef_t *v = def->vars[i];
        if (!v->computed)
            continue;
        ncomputed++;
        for (size_t k = 0; k < v->ndeps; k++)
            indeg[i] += v->deps[k]->computed;
        if (indeg[i] == 0)
            queue[tail++] = v;
    }
    while (head < tail) {
        sw_vardef_t *v = queue[head++];
        for (size_t k = 0; k < v->nrdeps; k++) {
            sw_vardef_t *r = v->rdeps[k];
            if (--indeg[r->id] == 0)
                queue[tail++] = r;
        }
    }
    if (tail != ncomputed) {
        for (size_t i = 0; i < def->nvars; i++)
            if (def->vars[i]->computed && indeg[i] > 0) {
                rc = fail(app, "computed \"%s.%s\": its dependencies form a cycle (deps \"%s\")",
                          def->vars[i]->state->path, def->vars[i]->name, def->vars[i]->deps_text);
                break;
            }
        free(queue);
    } else {
        def->topo = queue;
        def->ntopo = ncomputed;
    }
    free(indeg);
    return rc;
}

/* sw_appdef_fanout_needs_private(): walk the computed vars in topological
 * order (dependencies first) and carry two bits per var: `shared` (a
 * stored var of a shared state reaches it through its deps) and `priv` (it
 * depends on a stored var of a non-shared state or on "router"). "links"
 * and "presence" are per shared token, hence not private input. */
static int fanout_needs_private(const sw_appdef_t *def)
{
    uint8_t *bits = sw_xcalloc(def->nvars ? def->nvars : 1, 1);
    int found = 0;

    for (size_t i = 0; i < def->ntopo && !found; i++) {
        const sw_vardef_t *v = def->topo[i];
        uint8_t b = v->dep_router ? 0x2 : 0;

        for (size_t k = 0; k < v->ndeps; k++) {
            const sw_vardef_t *d = v->deps[k];
            if (d->computed)
                b |= bits[d->id];
            else
                b |= (d->state->flags & SW_STATE_SHARED) ? 0x1 : 0x2;
        }
        bits[v->id] = b;
        found = b == 0x3;
    }
    free(bits);
    return found;
}

static int finish(sw_app_t *app)
{
    sw_appdef_t *def = app->def;

    for (size_t i = 0; i < def->nvars; i++)
        if (def->vars[i]->computed && resolve_deps(app, def->vars[i]) < 0)
            return -1;
    for (size_t i = 0; i < def->nonload; i++) {
        const sw_eventdef_t *e = sw_appdef_find_event(def, def->onload[i].event);
        if (!e || (e->kind != SW_EVENT_HANDLER && e->kind != SW_EVENT_TASK))
            return fail(app, "on_load \"%s\": \"%s\" is not a declared handler or task",
                        def->onload[i].pattern, def->onload[i].event);
    }
    if (topo_sort(app) < 0)
        return -1;
    def->fanout_private = fanout_needs_private(def);
    return 0;
}

/* ---- Registry lifetime and queries ----------------------------------------- */

sw_appdef_t *sw_appdef_new(sw_app_init_fn init)
{
    sw_app_t app = {0};

    if (!init) {
        sw_log(SW_LOG_ERROR, "app: no init function");
        return NULL;
    }
    app.def = sw_xcalloc(1, sizeof(*app.def));
    if (init(&app) != 0) {
        sw_log(SW_LOG_ERROR, "app: init function failed");
        goto fail;
    }
    if (app.failed || finish(&app) < 0)
        goto fail;
    if (!app.def->name)
        app.def->name = sw_xstrdup("app");
    sw_log(SW_LOG_INFO, "app %s: %zu states, %zu vars, %zu events, %zu on_load", app.def->name,
           app.def->nstates, app.def->nvars, app.def->nevents, app.def->nonload);
    return app.def;
fail:
    sw_log(SW_LOG_ERROR, "app: registration failed");
    sw_appdef_free(app.def);
    return NULL;
}

sw_appdef_t *sw_appdef_load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    sw_app_init_fn init;
    void *sym;

    if (!h) {
        sw_log(SW_LOG_ERROR, "app: dlopen(%s): %s", path, dlerror());
        return NULL;
    }
    dlerror();
    sym = dlsym(h, "statewire_app_init");
    if (!sym) {
        sw_log(SW_LOG_ERROR, "app: dlsym(%s, statewire_app_init): %s", path,
               dlerror() ? "symbol not found" : "symbol is NULL");
        dlclose(h);
        return NULL;
    }
    memcpy(&init, &sym, sizeof(init));
    /* The handle stays open: the registry points into the object. */
    return sw_appdef_new(init);
}

void sw_appdef_free(sw_appdef_t *def)
{
    sw_eventdef_t *e, *etmp;
    sw_statedef_t *s, *stmp;

    if (!def)
        return;
    HASH_ITER(hh, def->events, e, etmp)
    {
        HASH_DEL(def->events, e);
        free(e->name);
        free(e);
    }
    /* the var hashes first: HASH_CLEAR reads the table through the vars */
    HASH_ITER(hh, def->state_hash, s, stmp)
    {
        HASH_DEL(def->state_hash, s);
        HASH_CLEAR(hh, s->vars);
        free(s->stored);
        free(s->path);
        free(s);
    }
    for (size_t i = 0; i < def->nvars; i++) {
        sw_vardef_t *v = def->vars[i];
        free(v->name);
        json_decref(v->def);
        free(v->deps_text);
        free(v->deps);
        free(v->rdeps);
        free(v);
    }
    for (size_t i = 0; i < def->nonload; i++) {
        for (size_t k = 0; k < def->onload[i].nsegs; k++)
            free(def->onload[i].segs[k]);
        free(def->onload[i].segs);
        free(def->onload[i].pattern);
        free(def->onload[i].event);
    }
    free(def->onload);
    free(def->vars);
    free(def->states);
    free(def->topo);
    free(def->router_deps);
    free(def->links_deps);
    free(def->presence_deps);
    free(def->name);
    free(def);
}

const char *sw_appdef_name(const sw_appdef_t *def)
{
    return def->name ? def->name : "app";
}

size_t sw_appdef_nstates(const sw_appdef_t *def)
{
    return def->nstates;
}

const char *sw_appdef_state(const sw_appdef_t *def, size_t i)
{
    return i < def->nstates ? def->states[i]->path : NULL;
}

int sw_appdef_state_flags(const sw_appdef_t *def, const char *path)
{
    sw_statedef_t *s = sw_appdef_find_state(def, path);

    return s ? (int)s->flags : -1;
}

sw_event_kind_t sw_appdef_event_kind(const sw_appdef_t *def, const char *name)
{
    const sw_eventdef_t *e = sw_appdef_find_event(def, name);

    return e ? e->kind : SW_EVENT_UNKNOWN;
}

int sw_appdef_fanout_needs_private(const sw_appdef_t *def)
{
    return def->fanout_private;
}

size_t sw_appdef_on_load(const sw_appdef_t *def, const char *path, const char **out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < def->nonload; i++) {
        if (!sw_onload_match(&def->onload[i], path, NULL, NULL))
            continue;
        if (n < max)
            out[n] = def->onload[i].event;
        n++;
    }
    return n;
}

int sw_appdef_has_auth(const sw_appdef_t *def)
{
    return def->auth != NULL;
}

/* A user id: 1..SW_USER_MAX bytes of UTF-8 without control characters
 * (C0, DEL, C1). */
static int user_valid(const char *u)
{
    size_t n = strnlen(u, SW_USER_MAX + 1);
    if (n == 0 || n > SW_USER_MAX || sw_utf8_valid_prefix(u, n) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c < 0x20 || c == 0x7f)
            return 0; /* C0 and DEL */
        if (c == 0xc2 && i + 1 < n && (unsigned char)u[i + 1] < 0xa0)
            return 0; /* C1: U+0080..U+009F */
    }
    return 1;
}

int sw_appdef_authenticate(const sw_appdef_t *def, const sw_auth_request_t *req,
                           char user[SW_USER_MAX + 1], char *reason, size_t reason_cap)
{
    user[0] = '\0';
    if (reason_cap)
        reason[0] = '\0';
    if (!def->auth)
        return 0;
    char buf[SW_USER_MAX + 2];
    buf[0] = '\0';
    buf[sizeof(buf) - 1] = '\0';
    int rc = def->auth(req, buf, sizeof(buf) - 1, reason, reason_cap);
    if (reason_cap) {
        reason[reason_cap - 1] = '\0';
        reason[sw_utf8_valid_prefix(reason, strlen(reason))] = '\0';
    }
    if (rc != 0)
        return SW_EPERM;
    if (buf[0] == '\0')
        return 0; /* anonymous */
    if (!user_valid(buf)) {
        sw_log(SW_LOG_WARN,
               "app: the auth hook returned an invalid user id (1..%d bytes of "
               "UTF-8 without control characters); refusing the client",
               SW_USER_MAX);
        if (reason_cap)
            snprintf(reason, reason_cap, "authentication failed");
        return SW_EPERM;
    }
    memcpy(user, buf, strlen(buf) + 1);
    return 0;
}
