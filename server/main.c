/* main.c — the statewire executable: configuration, logging, the app, then
 * the master process (server/master.h). */
#include <stdio.h>

#include "common/log.h"
#include "examples/rooms.h"
#include "core/config.h"
#include "server/master.h"
#include "worker/runtime.h"

int main(int argc, char **argv)
{
    sw_config_t cfg;
    sw_config_defaults(&cfg);
    int rc = sw_config_parse(&cfg, argc, argv);
    if (rc == 1)
        return 0; /* --help / --version */
    if (rc != 0)
        return 2;

    sw_log_set_role("master", -1);
    if (sw_log_init((sw_log_level_t)cfg.log_level, cfg.log_json, cfg.log_file) != 0)
        return 1;
    if (!cfg.redis_url[0])
        sw_log(SW_LOG_NOTICE, "development mode: in-memory state, 1 worker");

    sw_appdef_t *app =
        cfg.app_path[0] ? sw_appdef_load(cfg.app_path) : sw_appdef_new(sw_rooms_app_init);
    if (!app) {
        sw_log(SW_LOG_CRIT, "could not load the app %s", cfg.app_path[0] ? cfg.app_path : "rooms");
        return 1;
    }
    sw_log(SW_LOG_INFO, "app %s loaded", sw_appdef_name(app));

    rc = sw_master_run(&cfg, app);
    sw_appdef_free(app);
    return rc;
}
