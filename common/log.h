/* log.h — one log line per call, to stderr or a log file.
 *
 * Lines carry a timestamp, the level, the process role ("master",
 * "worker 1") and pid. Format "text" (default) or "json" (one object per
 * line with keys ts, level, role, pid, msg). Never log secrets (conn_token,
 * lease ids are fine). Safe to call before sw_log_init(): defaults apply. */
#ifndef SW_COMMON_LOG_H
#define SW_COMMON_LOG_H

#include <stdarg.h>

typedef enum {
    SW_LOG_DEBUG = 0,
    SW_LOG_INFO = 1,
    SW_LOG_NOTICE = 2,
    SW_LOG_WARN = 3,
    SW_LOG_ERROR = 4,
    SW_LOG_CRIT = 5,
} sw_log_level_t;

/* Parse "debug|info|notice|warn|error|crit"; returns level or -1. */
int sw_log_parse_level(const char *s);

/* Configure logging. path NULL or "-" means stderr; json != 0 selects the
 * JSON line format. Returns 0, or SW_ERR if the file cannot be opened
 * (logged; stderr stays in use). */
int sw_log_init(sw_log_level_t level, int json, const char *path);

/* Name this process in every line: role "master" or "worker", id the
 * worker slot (ignored for the master, pass -1). */
void sw_log_set_role(const char *role, int id);

/* Reopen the log file (after rotation; USR1). No-op on stderr. */
int sw_log_reopen(void);

/* Current threshold; lines below it are dropped. */
sw_log_level_t sw_log_level(void);

void sw_log(sw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sw_vlog(sw_log_level_t level, const char *fmt, va_list ap);

#define sw_log_enabled(lvl) ((lvl) >= sw_log_level())

#endif
