/* rooms.h — the default demo app: rooms with a shared counter and a chat.
 *
 * States (see DESIGN.md §7):
 *   room    (private) loads, name (settable), computed room_id (route
 *           "/room/[id]", default "lobby") and current_count (counter.count)
 *   counter (shared)  count, _linked; increment, decrement, add {amount},
 *           toggle_link, task delayed_increment {amount, interval_ms};
 *           computed linked and viewers
 *   chat    (shared)  messages [{name, text}] (last 50); send {text}
 *   on_load "/" and "/room/[id]" run room.on_load (loads += 1).
 *
 * Until shared-state linking exists, toggle_link flips the private
 * counter._linked and viewers counts only the client itself. */
#ifndef SW_EXAMPLES_ROOMS_H
#define SW_EXAMPLES_ROOMS_H

#include "statewire.h"

/* Declare the rooms app into `app` (an sw_app_init_fn, e.g. for
 * sw_appdef_new(sw_rooms_app_init)). Returns 0, or -1 if a declaration
 * failed (logged). */
int sw_rooms_app_init(sw_app_t *app);

#endif
