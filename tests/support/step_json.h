/* step_json.h — a step's chained events and link operations (typed in
 * worker/runtime.h) as JSON, for tests that compare them with an expected
 * text. */
#ifndef SW_TEST_STEP_JSON_H
#define SW_TEST_STEP_JSON_H

#include <jansson.h>

#include "worker/runtime.h"

/* [{"op":"link","state":S,"token":R} | {"op":"unlink","state":S}], in call
 * order. New reference. */
json_t *sw_test_link_ops_json(const sw_step_t *s);

/* [{"name":N,"payload":P}], in call order. New reference. */
json_t *sw_test_chained_json(const sw_step_t *s);

#endif
