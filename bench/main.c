/* main.c — statewire-bench: flags, CPU accounting around the measure
 * window, and the report (a table, then JSON). See bench/README.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <jansson.h>

#include "client.h"
#include "hist.h"
#include "sysstat.h"
#include "common/log.h"
#include "common/util.h"

typedef struct run {
    int pid;               /* server master, 0 = none */
    const char *redis_url; /* NULL = none */
    redisContext *rc;
    sw_proc_snap_t *proc0, *proc1;
    int proc_ok;
    sw_redis_snap_t redis0, redis1;
    int redis_ok;
} run_t;

static void on_start(void *udata)
{
    run_t *r = udata;
    if (r->pid)
        r->proc_ok = sw_sysstat_procs(r->pid, r->proc0) == 0;
    if (r->rc)
        r->redis_ok = sw_sysstat_redis(r->rc, &r->redis0) == 0;
}

static void on_end(void *udata)
{
    run_t *r = udata;
    if (r->pid && r->proc_ok)
        r->proc_ok = sw_sysstat_procs(r->pid, r->proc1) == 0;
    if (r->rc && r->redis_ok)
        r->redis_ok = sw_sysstat_redis(r->rc, &r->redis1) == 0;
}

static void usage(const char *argv0)
{
    printf("usage: %s [options]\n"
           "  --host ADDR        server address (127.0.0.1)\n"
           "  --port N           server port (8000)\n"
           "  --path PATH        WebSocket path (/_event)\n"
           "  --connections N    concurrent clients (100)\n"
           "  --duration S       measure window, seconds (10)\n"
           "  --warmup S         warm-up before measuring, seconds (1)\n"
           "  --event NAME       event sent in the closed loop (counter.increment)\n"
           "  --payload JSON     its payload, a JSON object ({})\n"
           "  --pid PID          server master pid: report server CPU (master + children)\n"
           "  --redis URL        redis://host:port or unix:///path: report Redis CPU and "
           "commands\n"
           "  --json FILE        also write the JSON report to FILE (- = stdout)\n"
           "  --smoke            2 connections, 1 s, no warm-up (CI)\n"
           "  --help\n",
           argv0);
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0) || v > 1e6)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static void raise_nofile(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want + 16 > rl.rlim_cur)
        sw_log(SW_LOG_WARN, "bench: %d connections but RLIMIT_NOFILE is %llu", want,
               (unsigned long long)rl.rlim_cur);
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

int main(int argc, char **argv)
{
    sw_bench_opts_t o = {
        .host = "127.0.0.1",
        .port = 8000,
        .path = "/_event",
        .connections = 100,
        .duration_s = 10,
        .warmup_s = 1,
        .event = "counter.increment",
        .payload = "{}",
    };
    run_t r = {0};
    const char *json_path = NULL;
    sw_bench_result_t res;
    int status = 1;
    enum {
        O_HOST = 256,
        O_PORT,
        O_PATH,
        O_CONN,
        O_DUR,
        O_WARM,
        O_EVENT,
        O_PAYLOAD,
        O_PID,
        O_REDIS,
        O_JSON,
        O_SMOKE,
        O_HELP
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"path", required_argument, NULL, O_PATH},
        {"connections", required_argument, NULL, O_CONN},
        {"duration", required_argument, NULL, O_DUR},
        {"warmup", required_argument, NULL, O_WARM},
        {"event", required_argument, NULL, O_EVENT},
        {"payload", required_argument, NULL, O_PAYLOAD},
        {"pid", required_argument, NULL, O_PID},
        {"redis", required_argument, NULL, O_REDIS},
        {"json", required_argument, NULL, O_JSON},
        {"smoke", no_argument, NULL, O_SMOKE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int smoke = 0, opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_HOST:
            o.host = optarg;
            break;
        case O_PORT:
            bad = parse_int(optarg, 1, 65535, &o.port);
            break;
        case O_PATH:
            o.path = optarg;
            break;
        case O_CONN:
            bad = parse_int(optarg, 1, 1000000, &o.connections);
            break;
        case O_DUR:
            bad = parse_double(optarg, &o.duration_s) || o.duration_s <= 0;
            break;
        case O_WARM:
            bad = parse_double(optarg, &o.warmup_s);
            break;
        case O_EVENT:
            o.event = optarg;
            break;
        case O_PAYLOAD:
            o.payload = optarg;
            break;
        case O_PID:
            bad = parse_int(optarg, 1, 0x7fffffff, &r.pid);
            break;
        case O_REDIS:
            r.redis_url = optarg;
            break;
        case O_JSON:
            json_path = optarg;
            break;
        case O_SMOKE:
            smoke = 1;
            break;
        case O_HELP:
            usage(argv[0]);
            return 0;
        default:
            usage(argv[0]);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "%s: bad value for --%s: %s\n", argv[0], longopts[opt - O_HOST].name,
                    optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument %s\n", argv[0], argv[optind]);
        return 2;
    }
    if (smoke) {
        o.connections = 2;
        o.duration_s = 1;
        o.warmup_s = 0;
    }
    sw_log_set_role("bench", -1);
    raise_nofile(o.connections);
    r.proc0 = sw_xcalloc(1, sizeof(*r.proc0));
    r.proc1 = sw_xcalloc(1, sizeof(*r.proc1));
    if (r.redis_url) {
        r.rc = sw_sysstat_redis_connect(r.redis_url);
        if (!r.rc)
            goto out_free;
    }

    if (sw_bench_run(&o, on_start, on_end, &r, &res) != 0) {
        sw_bench_result_destroy(&res);
        goto out_free;
    }

    uint64_t answered = res.events + res.errors;
    double secs = res.measured_s > 0 ? res.measured_s : 1e-9;
    const double pcts[] = {50, 90, 99, 99.9};
    const char *pnames[] = {"p50", "p90", "p99", "p99.9"};

    /* ---- table ---- */
    printf("statewire-bench: scenario events, %s:%d%s, event %s\n", o.host, o.port, o.path,
           o.event);
    printf("  %-28s %d ok, %d failed, %d dropped (of %d)\n", "connections", res.conn_ok,
           res.conn_failed, res.conn_dropped, o.connections);
    printf("  %-28s %.3f s (after %.3f s warm-up)\n", "measured", res.measured_s, o.warmup_s);
    printf("  %-28s %llu ok, %llu errors\n", "events", (unsigned long long)res.events,
           (unsigned long long)res.errors);
    printf("  %-28s %.1f\n", "events/s", (double)res.events / secs);
    printf("  %-28s", "RTT us");
    for (size_t i = 0; i < SW_ARRAY_SIZE(pcts); i++)
        printf(" %s %.1f", pnames[i], us(sw_hist_value_at_percentile(&res.rtt, pcts[i])));
    printf(" max %.1f\n", us(sw_hist_max(&res.rtt)));
    const char *code;
    json_t *n;
    json_object_foreach(res.errors_by_code, code, n)
        printf("  %-28s %lld\n", code, (long long)json_integer_value(n));
    if (res.setup_errors)
        printf("  %-28s %llu\n", "hydrate errors (setup)", (unsigned long long)res.setup_errors);

    json_t *rep = json_pack("{s:s, s:{s:i, s:i, s:i, s:i}, s:f, s:f, s:I, s:I, s:f, s:O, s:I}",
                            "scenario", "events", "connections", "requested", o.connections, "ok",
                            res.conn_ok, "failed", res.conn_failed, "dropped", res.conn_dropped,
                            "warmup_s", o.warmup_s, "duration_s", res.measured_s, "events",
                            (json_int_t)res.events, "errors", (json_int_t)res.errors,
                            "events_per_s", (double)res.events / secs, "errors_by_code",
                            res.errors_by_code, "setup_errors", (json_int_t)res.setup_errors);
    json_t *rtt = json_object();
    for (size_t i = 0; i < SW_ARRAY_SIZE(pcts); i++)
        json_object_set_new(rtt, pnames[i],
                            json_real(us(sw_hist_value_at_percentile(&res.rtt, pcts[i]))));
    json_object_set_new(rtt, "max", json_real(us(sw_hist_max(&res.rtt))));
    json_object_set_new(rep, "rtt_us", rtt);

    if (r.pid) {
        if (r.proc_ok) {
            double cpu = sw_sysstat_procs_delta_s(r.proc0, r.proc1);
            printf("  %-28s %.3f s (%zu processes)\n", "server CPU", cpu, r.proc1->n);
            json_object_set_new(rep, "server_cpu_s", json_real(cpu));
            if (answered) {
                printf("  %-28s %.1f\n", "server CPU us/event", cpu * 1e6 / (double)answered);
                json_object_set_new(rep, "server_cpu_us_per_event",
                                    json_real(cpu * 1e6 / (double)answered));
            }
        } else {
            printf("  %-28s unavailable (pid %d)\n", "server CPU", r.pid);
        }
    }
    if (r.rc) {
        if (r.redis_ok) {
            double cpu = r.redis1.cpu_s - r.redis0.cpu_s;
            /* the first INFO is counted by Redis after it ran, i.e. in the second */
            uint64_t calls = r.redis1.calls - r.redis0.calls;
            calls = calls > 0 ? calls - 1 : 0;
            printf("  %-28s %.3f s\n", "Redis CPU", cpu);
            json_object_set_new(rep, "redis_cpu_s", json_real(cpu));
            json_object_set_new(rep, "redis_commands", json_integer((json_int_t)calls));
            if (answered) {
                printf("  %-28s %.1f\n", "Redis CPU us/event", cpu * 1e6 / (double)answered);
                printf("  %-28s %.2f\n", "Redis commands/event", (double)calls / (double)answered);
                json_object_set_new(rep, "redis_cpu_us_per_event",
                                    json_real(cpu * 1e6 / (double)answered));
                json_object_set_new(rep, "redis_commands_per_event",
                                    json_real((double)calls / (double)answered));
            }
        } else {
            printf("  %-28s unavailable\n", "Redis");
        }
    }

    /* Exit status: fail when nothing completed, or errors / failed
     * connections exceed 1%. */
    int fail_events = res.events == 0;
    int fail_errors = answered && (double)res.errors > 0.01 * (double)answered;
    int fail_conns = (double)(res.conn_failed + res.conn_dropped) > 0.01 * o.connections;
    status = (fail_events || fail_errors || fail_conns) ? 1 : 0;
    json_object_set_new(rep, "ok", json_boolean(!status));
    if (status)
        printf("  FAIL: %s\n", fail_events   ? "no event completed"
                               : fail_errors ? "more than 1% of events failed"
                                             : "more than 1% of connections failed");

    if (json_path) {
        int jr;
        fflush(stdout);
        if (strcmp(json_path, "-") == 0) {
            jr = json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
            printf("\n");
        } else {
            jr = json_dump_file(rep, json_path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        }
        if (jr != 0) {
            sw_log(SW_LOG_ERROR, "bench: writing the JSON report to %s failed", json_path);
            status = 1;
        }
    }
    json_decref(rep);
    sw_bench_result_destroy(&res);
out_free:
    if (r.rc)
        redisFree(r.rc);
    free(r.proc0);
    free(r.proc1);
    return status;
}
