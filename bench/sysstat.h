/* sysstat.h — what the server and Redis spent during a measure window:
 * CPU time of the server's processes from /proc (proc(5)) and Redis's CPU
 * and command counts from INFO (https://redis.io/commands/info/). */
#ifndef SW_BENCH_SYSSTAT_H
#define SW_BENCH_SYSSTAT_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* Bound on processes followed: the master and its children. Past it the
 * remaining children are left out (logged). */
#define SW_SYSSTAT_MAX_PROCS 1024

/* CPU time (utime + stime, clock ticks) of each process at one moment. */
typedef struct sw_proc_snap {
    size_t n;
    struct {
        int pid;
        uint64_t ticks;
    } p[SW_SYSSTAT_MAX_PROCS];
} sw_proc_snap_t;

/* Snapshot `master_pid` and its children (from
 * /proc/PID/task/TID/children, every thread). Returns 0, or SW_ENOTFOUND
 * when the master is gone (logged). */
int sw_sysstat_procs(int master_pid, sw_proc_snap_t *out);

/* CPU seconds spent between two snapshots: for each process of `end`,
 * its ticks minus its ticks in `start` (0 for a process born in between).
 * Processes that died in between are not counted. */
double sw_sysstat_procs_delta_s(const sw_proc_snap_t *start, const sw_proc_snap_t *end);

/* The children of `master_pid` as listed in
 * /proc/PID/task/PID/children (proc(5); the main thread's children, in
 * the kernel's order): *first = the first one, *count = how many (at
 * most SW_SYSSTAT_MAX_PROCS are counted). Returns 0, or SW_ENOTFOUND
 * when the file cannot be read (the master is gone; logged). With no
 * child, *first = 0 and *count = 0. */
int sw_sysstat_children(int master_pid, int *first, int *count);

/* The machine's CPU time (clock ticks, every CPU) from the "cpu" line of
 * /proc/stat (proc(5)): *total = every field, *steal = "steal", the time
 * a hypervisor gave to other guests. Returns 0, or SW_ENOTFOUND when the
 * file cannot be read or parsed (logged). */
int sw_sysstat_cpu(uint64_t *steal, uint64_t *total);

/* Redis counters at one moment. */
typedef struct sw_redis_snap {
    double cpu_s;   /* used_cpu_sys + used_cpu_user, seconds */
    uint64_t calls; /* sum of calls= over every cmdstat_* line */
} sw_redis_snap_t;

/* A synchronous hiredis connection for url ("redis://host:port/db" or
 * "unix:///path"), 2 s timeout. NULL on failure (logged). Free with
 * redisFree. */
redisContext *sw_sysstat_redis_connect(const char *url);

/* One "INFO all" (sections cpu and commandstats). Redis counts a command
 * after it ran, so the INFO that takes a snapshot shows up in the next
 * one: one call to subtract per snapshot taken before the last. Returns 0
 * or SW_EUNAVAIL (logged). */
int sw_sysstat_redis(redisContext *rc, sw_redis_snap_t *out);

/* Parse an INFO reply (exposed for tests). Returns 0 or SW_EINVAL when
 * the cpu fields are missing. */
int sw_sysstat_parse_info(const char *info, sw_redis_snap_t *out);

#endif
