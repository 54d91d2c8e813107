/* sysstat.c — /proc CPU times and Redis INFO for the bench report. */
#include "sysstat.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "core/redis_url.h"

/* utime + stime (fields 14 and 15 of /proc/PID/stat) in clock ticks. */
static int proc_ticks(int pid, uint64_t *ticks)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return SW_ENOTFOUND;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may hold spaces and parentheses: fields restart after the last ')' */
    char *p = strrchr(buf, ')');
    if (!p)
        return SW_EINVAL;
    unsigned long long ut = 0, st = 0;
    /* after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return SW_EINVAL;
    *ticks = ut + st;
    return 0;
}

static void add_proc(sw_proc_snap_t *out, int pid)
{
    for (size_t i = 0; i < out->n; i++)
        if (out->p[i].pid == pid)
            return;
    if (out->n >= SW_SYSSTAT_MAX_PROCS) {
        sw_log(SW_LOG_WARN, "bench: more than %d server processes, pid %d left out",
               SW_SYSSTAT_MAX_PROCS, pid);
        return;
    }
    uint64_t t;
    if (proc_ticks(pid, &t) != 0)
        return; /* exited meanwhile */
    out->p[out->n].pid = pid;
    out->p[out->n].ticks = t;
    out->n++;
}

int sw_sysstat_procs(int master_pid, sw_proc_snap_t *out)
{
    char path[64];
    out->n = 0;
    add_proc(out, master_pid);
    if (out->n == 0) {
        sw_log(SW_LOG_WARN, "bench: /proc/%d/stat: process not found", master_pid);
        return SW_ENOTFOUND;
    }
    snprintf(path, sizeof(path), "/proc/%d/task", master_pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char cpath[320];
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", master_pid, de->d_name);
        FILE *f = fopen(cpath, "r");
        if (!f)
            continue;
        int pid;
        while (fscanf(f, "%d", &pid) == 1)
            add_proc(out, pid);
        fclose(f);
    }
    closedir(d);
    return 0;
}

int sw_sysstat_cpu(uint64_t *steal, uint64_t *total)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) {
        sw_log(SW_LOG_WARN, "bench: fopen(/proc/stat): %s", strerror(errno));
        return SW_ENOTFOUND;
    }
    /* cpu user nice system idle iowait irq softirq steal guest guest_nice */
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) {
        sw_log(SW_LOG_WARN, "bench: /proc/stat: no cpu line with steal time");
        return SW_ENOTFOUND;
    }
    *steal = v[7];
    *total = 0;
    for (int i = 0; i < 8; i++) /* guest time is counted in user already */
        *total += v[i];
    return 0;
}

int sw_sysstat_children(int master_pid, int *first, int *count)
{
    char path[96];
    int pid;
    *first = 0;
    *count = 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", master_pid, master_pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        sw_log(SW_LOG_WARN, "bench: fopen %s: %s", path, strerror(errno));
        return SW_ENOTFOUND;
    }
    while (*count < SW_SYSSTAT_MAX_PROCS && fscanf(f, "%d", &pid) == 1) {
        if (*count == 0)
            *first = pid;
        (*count)++;
    }
    fclose(f);
    return 0;
}

double sw_sysstat_procs_delta_s(const sw_proc_snap_t *start, const sw_proc_snap_t *end)
{
    uint64_t ticks = 0;
    for (size_t i = 0; i < end->n; i++) {
        uint64_t before = 0;
        for (size_t j = 0; j < start->n; j++)
            if (start->p[j].pid == end->p[i].pid)
                before = start->p[j].ticks;
        if (end->p[i].ticks > before)
            ticks += end->p[i].ticks - before;
    }
    long hz = sysconf(_SC_CLK_TCK);
    return (double)ticks / (double)(hz > 0 ? hz : 100);
}

redisContext *sw_sysstat_redis_connect(const char *url)
{
    char host[512];
    int port, db;
    struct timeval tv = {2, 0};
    if (sw_redis_url_parse(url, host, sizeof(host), &port, &db) != 0) {
        sw_log(SW_LOG_ERROR, "bench: bad Redis URL \"%s\"", url);
        return NULL;
    }
    redisContext *rc =
        port ? redisConnectWithTimeout(host, port, tv) : redisConnectUnixWithTimeout(host, tv);
    if (!rc || rc->err) {
        sw_log(SW_LOG_ERROR, "bench: redis connect %s: %s", url, rc ? rc->errstr : "no memory");
        if (rc)
            redisFree(rc);
        return NULL;
    }
    (void)redisSetTimeout(rc, tv);
    return rc;
}

int sw_sysstat_parse_info(const char *info, sw_redis_snap_t *out)
{
    int have_sys = 0, have_user = 0;
    out->cpu_s = 0;
    out->calls = 0;
    const char *line = info;
    while (line && *line) {
        const char *eol = strchr(line, '\n');
        double v;
        if (sscanf(line, "used_cpu_sys:%lf", &v) == 1) {
            out->cpu_s += v;
            have_sys = 1;
        } else if (sscanf(line, "used_cpu_user:%lf", &v) == 1) {
            out->cpu_s += v;
            have_user = 1;
        } else if (strncmp(line, "cmdstat_", 8) == 0) {
            const char *c = strstr(line, ":calls=");
            if (c && (!eol || c < eol))
                out->calls += strtoull(c + 7, NULL, 10);
        }
        line = eol ? eol + 1 : NULL;
    }
    return have_sys && have_user ? 0 : SW_EINVAL;
}

int sw_sysstat_redis(redisContext *rc, sw_redis_snap_t *out)
{
    redisReply *r = redisCommand(rc, "INFO all");
    int ret = SW_EUNAVAIL;
    if (!r) {
        sw_log(SW_LOG_WARN, "bench: redis INFO: %s", rc->errstr);
        goto done;
    }
    if (r->type != REDIS_REPLY_STRING) {
        sw_log(SW_LOG_WARN, "bench: redis INFO: unexpected reply type %d", r->type);
        goto done;
    }
    if (sw_sysstat_parse_info(r->str, out) != 0) {
        sw_log(SW_LOG_WARN, "bench: redis INFO: no used_cpu_* fields");
        goto done;
    }
    ret = 0;
done:
    if (r)
        freeReplyObject(r);
    return ret;
}
