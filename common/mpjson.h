/* mpjson.h — conversion between jansson values and MessagePack
 * (msgpack spec: https://github.com/msgpack/msgpack/blob/master/spec.md).
 *
 * State lives in memory as json_t and in Redis as msgpack; these two
 * functions are the only bridge. The mapping is:
 *
 *   JSON            msgpack
 *   null            nil
 *   true / false    true / false
 *   integer         the smallest int / uint format that holds it
 *   real            float 64 (always, even when integral: 3.0 stays a real)
 *   string          str (the smallest str format; UTF-8, NUL bytes allowed)
 *   array           array
 *   object          map with str keys
 *
 * Decoding accepts the inverse, plus float 32 (-> real). It refuses bin,
 * ext, non-str map keys, str that is not valid UTF-8, uint 64 above
 * INT64_MAX, NaN / infinities (JSON cannot hold them), trailing bytes and
 * truncated input. A map with a repeated key keeps the last value.
 *
 * Nesting is bounded on both sides at SW_MPJSON_MAX_DEPTH containers
 * (arrays / maps) nested inside each other: `[]` is depth 1, a scalar
 * depth 0. Anything deeper is SW_EINVAL. */
#ifndef SW_COMMON_MPJSON_H
#define SW_COMMON_MPJSON_H

#include <stddef.h>

#include <jansson.h>

#include "common/buf.h"

#define SW_MPJSON_MAX_DEPTH 64

/* Append the msgpack encoding of v (borrowed) to out.
 * Returns 0; SW_EINVAL when v nests deeper than SW_MPJSON_MAX_DEPTH;
 * SW_ETOOLARGE when out's bound (out->max) is reached. On error out is left
 * exactly as it was (nothing appended). */
int sw_mpjson_encode(const json_t *v, sw_buf_t *out);

/* Decode data/len, which must hold exactly one msgpack object, into a new
 * json_t reference (caller decrefs). Returns NULL with *err = SW_EINVAL
 * (err may be NULL) for anything the mapping above refuses. The parser is
 * msgpack-c's own (unpack_template.h), instantiated with a stack of
 * SW_MPJSON_MAX_DEPTH: the prebuilt msgpack_unpack_next() stops at 32
 * levels. Declared container sizes allocate nothing up front, so a short
 * input claiming a huge array costs nothing. */
json_t *sw_mpjson_decode(const char *data, size_t len, int *err);

#endif
