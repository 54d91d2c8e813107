/* jwt_auth.c — an example app, built as a loadable module, that admits a
 * client only with a connection JWT signed by the app's backend (HS256,
 * verified with libjwt). docs/auth.md documents it; run it with
 *     STATEWIRE_JWT_SECRET=<at least 32 bytes> statewire --app ./jwt_auth.so --redis ...
 *
 * Configuration (environment, read once when the app starts):
 *   STATEWIRE_JWT_SECRET    the HS256 key, at least 32 bytes (required: the
 *                           app refuses to start without it)
 *   STATEWIRE_JWT_AUDIENCE  when set, `aud` must be (or contain) this value
 *   STATEWIRE_JWT_ISSUER    when set, `iss` must equal this value
 *
 * The authentication hook takes the JWT from the hello's `auth` (SSE: the
 * `auth` query parameter or an `Authorization: Bearer` header) and admits
 * the client as the user named by `sub` when:
 *   - the token is a compact JWS whose header says "alg":"HS256" (any other
 *     alg, "none" included, is refused) and whose signature is right;
 *   - `sub` is a non-empty string that is a valid user id (1..128 bytes of
 *     UTF-8 without control characters);
 *   - `exp` is a NumericDate in the future;
 *   - `nbf` and `iat`, when present, are NumericDates no more than
 *     JWT_LEEWAY_S seconds in the future;
 *   - `aud` / `iss` match when the variables above are set.
 * Anything else is refused with a short reason (never a secret). A client
 * without a JWT is refused too: this app has no anonymous users.
 *
 * The app itself (both states private to the client's token):
 *   profile.user               the user id; set by profile.whoami, which
 *                              also runs on every hydrate (on_load "*")
 *   notes.items                a list of {"user", "text"}
 *   notes.add {"text": T}      appends T (1..280 bytes) stamped with the
 *                              user id; at most 50 notes */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>

#include "statewire.h"

#define JWT_MIN_KEY 32    /* bytes: HS256's output size */
#define JWT_MAX_LEN 4096  /* bytes of a compact JWT (the hello's auth bound) */
#define JWT_LEEWAY_S 30   /* seconds of clock skew allowed on nbf and iat */
#define NOTE_MAX_TEXT 280 /* bytes of one note */
#define NOTE_MAX_COUNT 50 /* notes per token */

/* Read once in statewire_app_init; kept for the life of the process. */
static unsigned char *jwt_key; /* STATEWIRE_JWT_SECRET (heap) */
static int jwt_key_len;
static char *jwt_audience; /* STATEWIRE_JWT_AUDIENCE (heap), NULL: not checked */
static char *jwt_issuer;   /* STATEWIRE_JWT_ISSUER (heap), NULL: not checked */

/* ---- the JWT ---------------------------------------------------------------- */

static int b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* 1 when `tok` has the shape of a compact JWS: three non-empty segments of
 * unpadded base64url separated by two dots, at most JWT_MAX_LEN bytes.
 * libjwt 1.10 decodes base64 leniently (it stops at the first character
 * outside the alphabet and writes past an empty segment's buffer), so
 * nothing else reaches it. */
static int jws_shape_ok(const char *tok)
{
    size_t seg = 0, len = 0;
    int dots = 0;
    for (const char *p = tok;; p++, len++) {
        if (len > JWT_MAX_LEN)
            return 0;
        if (*p == '.' || *p == '\0') {
            if (seg == 0 || seg % 4 == 1) /* empty, or not a base64 length */
                return 0;
            if (*p == '\0')
                break;
            if (++dots > 2)
                return 0;
            seg = 0;
        } else if (!b64url_char(*p)) {
            return 0;
        } else {
            seg++;
        }
    }
    return dots == 2;
}

/* A user id as include/statewire.h defines it: 1..SW_USER_MAX bytes, no
 * control characters (jansson already guarantees valid UTF-8 without NUL). */
static int user_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > SW_USER_MAX || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* A NumericDate claim (RFC 7519 §2: a JSON number of seconds since the
 * epoch, fractions allowed) into *out: 1, 0 when absent, -1 when present
 * but not a number. */
static int numeric_date(json_t *claims, const char *name, double *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return isfinite(*out) ? 1 : -1;
}

/* 1 when `aud` (a string or an array of strings) names `want`. */
static int audience_has(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), want) == 0)
            return 1;
    }
    return 0;
}

/* Why a token that jwt_decode refused with the key was refused: decode it
 * again without verifying anything (libjwt parses it then) only to read
 * its header's alg. Nothing from this decode is trusted. */
static const char *decode_failure(const char *tok)
{
    jwt_t *peek = NULL;
    const char *alg = NULL;
    if (jwt_decode(&peek, tok, NULL, 0) == 0)
        alg = jwt_get_header(peek, "alg");
    const char *why = !peek                              ? "malformed token"
                      : alg && strcmp(alg, "HS256") == 0 ? "bad signature"
                                                         : "alg must be HS256";
    jwt_free(peek);
    return why;
}

/* Check the claims of a verified token against `now`; the user id into
 * user. Returns NULL, or the reason of the refusal. */
static const char *check_claims(json_t *claims, time_t now, char *user, size_t user_cap)
{
    if (!json_is_object(claims))
        return "malformed claims";
    json_t *sub = json_object_get(claims, "sub");
    if (!sub)
        return "sub is required";
    if (!json_is_string(sub))
        return "sub must be a string";
    if (!user_id_ok(json_string_value(sub), json_string_length(sub)) ||
        json_string_length(sub) >= user_cap)
        return "sub is not a valid user id";

    double exp = 0, nbf = 0, iat = 0;
    int has = numeric_date(claims, "exp", &exp);
    if (has == 0)
        return "exp is required";
    if (has < 0)
        return "exp must be a NumericDate";
    if ((double)now >= exp)
        return "token expired";
    has = numeric_date(claims, "nbf", &nbf);
    if (has < 0)
        return "nbf must be a NumericDate";
    if (has > 0 && nbf > (double)now + JWT_LEEWAY_S)
        return "token not valid yet";
    has = numeric_date(claims, "iat", &iat);
    if (has < 0)
        return "iat must be a NumericDate";
    if (has > 0 && iat > (double)now + JWT_LEEWAY_S)
        return "token issued in the future";

    if (jwt_audience && !audience_has(json_object_get(claims, "aud"), jwt_audience))
        return "wrong audience";
    if (jwt_issuer) {
        json_t *iss = json_object_get(claims, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), jwt_issuer) != 0)
            return "wrong issuer";
    }
    memcpy(user, json_string_value(sub), json_string_length(sub) + 1);
    return NULL;
}

/* The authentication hook (sw_auth_fn): admit the client as the JWT's sub,
 * or refuse with a short reason. */
static int auth(const sw_auth_request_t *req, char *user, size_t user_cap, char *reason,
                size_t reason_cap)
{
    const char *why = NULL, *alg = NULL;
    jwt_t *jwt = NULL;
    char *grants = NULL;
    json_t *claims = NULL;
    const char *tok = req->auth;

    if (!tok || !*tok) {
        why = "a JWT is required";
        goto fail;
    }
    if (!jws_shape_ok(tok)) {
        why = "malformed token";
        goto fail;
    }
    /* Verifies the signature with the alg the header names (none is
     * refused when a key is given); the alg is checked right after. */
    if (jwt_decode(&jwt, tok, jwt_key, jwt_key_len) != 0) {
        why = decode_failure(tok);
        goto fail;
    }
    alg = jwt_get_header(jwt, "alg");
    if (jwt_get_alg(jwt) != JWT_ALG_HS256 || !alg || strcmp(alg, "HS256") != 0) {
        why = "alg must be HS256";
        goto fail;
    }
    grants = jwt_get_grants_json(jwt, NULL);
    claims = grants ? json_loads(grants, 0, NULL) : NULL;
    if (!claims) {
        why = "malformed claims";
        goto fail;
    }
    why = check_claims(claims, time(NULL), user, user_cap);
    if (why)
        goto fail;
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return 0;
fail:
    user[0] = '\0';
    snprintf(reason, reason_cap, "%s", why);
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return -1;
}

/* ---- the app ---------------------------------------------------------------- */

static int whoami(sw_ctx_t *ctx, json_t *payload)
{
    (void)payload;
    return sw_ctx_set(ctx, "profile", "user", json_string(sw_ctx_user(ctx)));
}

static int notes_add(sw_ctx_t *ctx, json_t *payload)
{
    json_t *text = json_object_get(payload, "text");
    if (!json_is_string(text) || json_string_length(text) == 0 ||
        json_string_length(text) > NOTE_MAX_TEXT)
        return sw_ctx_fail(ctx, SW_FAIL_BAD_PAYLOAD, "text must be a string of 1..%d bytes",
                           NOTE_MAX_TEXT);
    json_t *items = sw_ctx_get(ctx, "notes", "items");
    if (json_array_size(items) >= NOTE_MAX_COUNT)
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "at most %d notes", NOTE_MAX_COUNT);
    json_t *next = json_is_array(items) ? json_copy(items) : json_array();
    if (!next || json_array_append_new(
                     next, json_pack("{s:s,s:O}", "user", sw_ctx_user(ctx), "text", text)) != 0) {
        json_decref(next);
        return sw_ctx_fail(ctx, SW_FAIL_HANDLER, "out of memory");
    }
    return sw_ctx_set(ctx, "notes", "items", next);
}

/* A copy of the environment variable `name`, NULL when unset or empty. */
static char *env_copy(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

int statewire_app_init(sw_app_t *app);

int statewire_app_init(sw_app_t *app)
{
    const char *secret = getenv("STATEWIRE_JWT_SECRET");
    size_t n = secret ? strlen(secret) : 0;
    if (n == 0) {
        fprintf(stderr,
                "jwt_auth: STATEWIRE_JWT_SECRET is not set; it must hold the HS256 key "
                "(at least %d bytes); refusing to start\n",
                JWT_MIN_KEY);
        goto fail;
    }
    if (n < JWT_MIN_KEY || n > INT_MAX) {
        fprintf(stderr,
                "jwt_auth: STATEWIRE_JWT_SECRET is %zu bytes; an HS256 key needs at least %d; "
                "refusing to start\n",
                n, JWT_MIN_KEY);
        goto fail;
    }
    jwt_key = (unsigned char *)strdup(secret);
    jwt_key_len = (int)n;
    jwt_audience = env_copy("STATEWIRE_JWT_AUDIENCE");
    jwt_issuer = env_copy("STATEWIRE_JWT_ISSUER");
    if (!jwt_key) {
        fprintf(stderr, "jwt_auth: out of memory; refusing to start\n");
        goto fail;
    }
    if (sw_app_name(app, "jwt-auth") < 0 || sw_app_auth(app, auth) < 0 ||
        sw_app_state(app, "profile", 0) < 0 || sw_app_var(app, "profile", "user", "\"\"", 0) < 0 ||
        sw_app_handler(app, "profile", "whoami", whoami) < 0 ||
        sw_app_on_load(app, "*", "profile.whoami") < 0 || sw_app_state(app, "notes", 0) < 0 ||
        sw_app_var(app, "notes", "items", "[]", 0) < 0 ||
        sw_app_handler(app, "notes", "add", notes_add) < 0)
        goto fail;
    fprintf(stderr, "jwt_auth: connection JWTs required (HS256%s%s%s%s)\n",
            jwt_audience ? ", aud " : "", jwt_audience ? jwt_audience : "",
            jwt_issuer ? ", iss " : "", jwt_issuer ? jwt_issuer : "");
    return 0;
fail:
    if (jwt_key)
        memset(jwt_key, 0, n);
    free(jwt_key);
    free(jwt_audience);
    free(jwt_issuer);
    jwt_key = NULL;
    jwt_audience = jwt_issuer = NULL;
    jwt_key_len = 0;
    return -1;
}
