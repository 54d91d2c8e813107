/* rooms.h — the default demo app: rooms with a shared counter and a chat.
 *
 * States (see docs/design.md §7):
 *   room    (private) loads, name (settable), computed room_id (route
 *           "/room/[id]", default "lobby") and current_count (counter.count)
 *   counter (shared)  count; increment, decrement, add {amount},
 *           toggle_link (unlink when linked, else link to
 *           "room:<room.room_id>"), task delayed_increment
 *           {amount, interval_ms}; computed linked (sw_ctx_linked, deps
 *           "links") and viewers (sw_ctx_viewers, deps "links,presence")
 *   chat    (shared)  messages [{name, text}] (last 50); send {text}
 *   on_load "/" and "/room/[id]" run room.on_load: loads += 1, and on
 *           "/room/<id>" link counter and chat to "room:<id>" (a no-op
 *           when already linked there). A room id that makes no valid
 *           shared token name (over 59 bytes, or characters other than
 *           [A-Za-z0-9_:.-]) links nothing on load and makes toggle_link
 *           fail with handler_error.
 *
 * No computed var mixes shared and private input
 * (sw_appdef_fanout_needs_private() is 0): one fan-out delta serves every
 * linked client. */
#ifndef SW_EXAMPLES_ROOMS_H
#define SW_EXAMPLES_ROOMS_H

#include "statewire.h"

/* Declare the rooms app into `app` (an sw_app_init_fn, e.g. for
 * sw_appdef_new(sw_rooms_app_init)). Returns 0, or -1 if a declaration
 * failed (logged). */
int sw_rooms_app_init(sw_app_t *app);

#endif
