#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    sw_log_level_t level;
    int json;
    char path[512];
    FILE *fp;
    char role[32];
} L = {SW_LOG_INFO, 0, "", NULL, "master"};

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error", "crit"};

int sw_log_parse_level(const char *s)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(s, level_names[i]) == 0)
            return (int)i;
    if (strcmp(s, "warning") == 0)
        return SW_LOG_WARN;
    return -1;
}

int sw_log_init(sw_log_level_t level, int json, const char *path)
{
    L.level = level;
    L.json = json;
    if (path && *path && strcmp(path, "-") != 0) {
        snprintf(L.path, sizeof(L.path), "%s", path);
        return sw_log_reopen();
    }
    L.path[0] = '\0';
    return 0;
}

void sw_log_set_role(const char *role, int id)
{
    if (id >= 0)
        snprintf(L.role, sizeof(L.role), "%s %d", role, id);
    else
        snprintf(L.role, sizeof(L.role), "%s", role);
}

int sw_log_reopen(void)
{
    if (!L.path[0])
        return 0;
    FILE *fp = fopen(L.path, "a");
    if (!fp) {
        int e = errno;
        sw_log(SW_LOG_ERROR, "fopen(%s): %s", L.path, strerror(e));
        return -1;
    }
    setvbuf(fp, NULL, _IOLBF, 0);
    FILE *old = L.fp;
    L.fp = fp;
    if (old)
        fclose(old);
    return 0;
}

sw_log_level_t sw_log_level(void)
{
    return L.level;
}

static void json_escape(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
}

void sw_vlog(sw_log_level_t level, const char *fmt, va_list ap)
{
    if (level < L.level)
        return;
    int saved = errno;
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    FILE *out = L.fp ? L.fp : stderr;
    flockfile(out);
    if (L.json) {
        fprintf(out, "{\"ts\":\"%s\",\"level\":\"%s\",\"role\":\"", ts, level_names[level]);
        json_escape(out, L.role);
        fprintf(out, "\",\"pid\":%d,\"msg\":\"", (int)getpid());
        json_escape(out, msg);
        fputs("\"}\n", out);
    } else {
        fprintf(out, "%s [%s] %s[%d]: %s\n", ts, level_names[level], L.role, (int)getpid(), msg);
    }
    funlockfile(out);
    fflush(out);
    errno = saved;
}

void sw_log(sw_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sw_vlog(level, fmt, ap);
    va_end(ap);
}
