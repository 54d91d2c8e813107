/* main.c — statewire-bench: flags, CPU accounting around the measure
 * window, and the report (a table, then JSON). See bench/README.md. */
#include <getopt.h>
#include <inttypes.h>
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
    int measure_rss;               /* idle: read VmRSS at the window's end */
    uint64_t rss0, rss1;           /* bytes: before the first connect, at the end */
    size_t rss0_procs, rss1_procs; /* processes summed */
    int rss0_ok, rss1_ok;
    uint64_t steal0, steal1, total0, total1; /* machine CPU ticks (/proc/stat) */
    int cpu_ok;
} run_t;

/* Sum of VmRSS (proc(5), /proc/PID/status, kB) over the master `pid` and
 * its children, in bytes. Returns 0, or -1 when the master is gone. */
static int read_rss(int pid, sw_proc_snap_t *tmp, uint64_t *bytes, size_t *procs)
{
    *bytes = 0;
    *procs = 0;
    if (sw_sysstat_procs(pid, tmp) != 0)
        return -1;
    for (size_t i = 0; i < tmp->n; i++) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/status", tmp->p[i].pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* exited meanwhile */
        while (fgets(line, sizeof(line), f)) {
            unsigned long long kb;
            if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
                *bytes += (uint64_t)kb * 1024;
                (*procs)++;
                break;
            }
        }
        fclose(f);
    }
    return 0;
}

static void on_start(void *udata)
{
    run_t *r = udata;
    r->cpu_ok = sw_sysstat_cpu(&r->steal0, &r->total0) == 0;
    if (r->pid)
        r->proc_ok = sw_sysstat_procs(r->pid, r->proc0) == 0;
    if (r->rc)
        r->redis_ok = sw_sysstat_redis(r->rc, &r->redis0) == 0;
}

static void on_end(void *udata)
{
    run_t *r = udata;
    if (r->cpu_ok)
        r->cpu_ok = sw_sysstat_cpu(&r->steal1, &r->total1) == 0;
    if (r->pid && r->measure_rss) {
        sw_proc_snap_t *tmp = sw_xcalloc(1, sizeof(*tmp));
        r->rss1_ok = read_rss(r->pid, tmp, &r->rss1, &r->rss1_procs) == 0;
        free(tmp);
    }
    if (r->pid && r->proc_ok)
        r->proc_ok = sw_sysstat_procs(r->pid, r->proc1) == 0;
    if (r->rc && r->redis_ok)
        r->redis_ok = sw_sysstat_redis(r->rc, &r->redis1) == 0;
}

static void usage(const char *argv0)
{
    printf("usage: %s [options]\n"
           "  --scenario NAME    events | fanout | hotroom | idle | resume (events)\n"
           "  --rooms R          fanout: rooms (1)\n"
           "  --room-size N      fanout: clients per room, the first one sends (100)\n"
           "  --rate E           fanout: increments per second per room (10); events:\n"
           "                     open loop, E events per second over all connections\n"
           "                     (without it: closed loop)\n"
           "  --host ADDR        server address (127.0.0.1)\n"
           "  --port N           server port (8000)\n"
           "  --path PATH        WebSocket path (/_event)\n"
           "  --connections N    concurrent clients, events, hotroom, idle (100), resume "
           "(1000)\n"
           "  --hold S           idle: seconds to hold the connections open (10)\n"
           "  --route PATH       events, idle: hydrate route (/)\n"
           "  --protocol P       statewire | socketio: Engine.IO/Socket.IO framing, path\n"
           "                     /socket.io/?EIO=4&transport=websocket (statewire)\n"
           "  --duration S       measure window, seconds (10; resume: 30, the bound for\n"
           "                     every dropped client to be back)\n"
           "  --kill-worker      resume: SIGKILL the master's first worker (default)\n"
           "  --no-kill-worker   resume: kill nothing; connections ended by someone else\n"
           "  --warmup S         warm-up before measuring, seconds (1)\n"
           "  --event NAME       events: event sent in the closed loop (counter.increment)\n"
           "  --payload JSON     events: its payload, a JSON object ({})\n"
           "  --pid PID          server master pid: report server CPU (master + children);\n"
           "                     resume: the master whose worker is killed (required)\n"
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

/* One table line of percentiles in microseconds, and the same as
 * rep[key] = {"p50": .., "max": ..}. */
static void print_hist(json_t *rep, const char *label, const char *key, const sw_hist_t *h)
{
    static const double pcts[] = {50, 90, 99, 99.9};
    static const char *pnames[] = {"p50", "p90", "p99", "p99.9"};
    json_t *o = json_object();
    printf("  %-28s", label);
    for (size_t i = 0; i < SW_ARRAY_SIZE(pcts); i++) {
        double v = us(sw_hist_value_at_percentile(h, pcts[i]));
        printf(" %s %.1f", pnames[i], v);
        json_object_set_new(o, pnames[i], json_real(v));
    }
    printf(" max %.1f\n", us(sw_hist_max(h)));
    json_object_set_new(o, "max", json_real(us(sw_hist_max(h))));
    json_object_set_new(rep, key, o);
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
        .scenario = SW_BENCH_EVENTS,
        .rooms = 1,
        .room_size = 100,
        .rate = 10,
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
        O_HELP,
        O_SCENARIO,
        O_ROOMS,
        O_ROOM_SIZE,
        O_RATE,
        O_HOLD,
        O_ROUTE,
        O_PROTOCOL,
        O_KILL,
        O_NO_KILL
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
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"rooms", required_argument, NULL, O_ROOMS},
        {"room-size", required_argument, NULL, O_ROOM_SIZE},
        {"rate", required_argument, NULL, O_RATE},
        {"hold", required_argument, NULL, O_HOLD},
        {"route", required_argument, NULL, O_ROUTE},
        {"protocol", required_argument, NULL, O_PROTOCOL},
        {"kill-worker", no_argument, NULL, O_KILL},
        {"no-kill-worker", no_argument, NULL, O_NO_KILL},
        {NULL, 0, NULL, 0},
    };
    int smoke = 0, opt, path_set = 0, conn_set = 0, dur_set = 0, rate_set = 0, kill_worker = 1;
    double hold_s = 10;
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
            path_set = 1;
            break;
        case O_CONN:
            bad = parse_int(optarg, 1, 1000000, &o.connections);
            conn_set = 1;
            break;
        case O_DUR:
            bad = parse_double(optarg, &o.duration_s) || o.duration_s <= 0;
            dur_set = 1;
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
        case O_SCENARIO:
            if (strcmp(optarg, "events") == 0)
                o.scenario = SW_BENCH_EVENTS;
            else if (strcmp(optarg, "fanout") == 0)
                o.scenario = SW_BENCH_FANOUT;
            else if (strcmp(optarg, "hotroom") == 0)
                o.scenario = SW_BENCH_HOTROOM;
            else if (strcmp(optarg, "idle") == 0)
                o.scenario = SW_BENCH_IDLE;
            else if (strcmp(optarg, "resume") == 0)
                o.scenario = SW_BENCH_RESUME;
            else
                bad = 1;
            break;
        case O_ROOMS:
            bad = parse_int(optarg, 1, 1000000, &o.rooms);
            break;
        case O_ROOM_SIZE:
            bad = parse_int(optarg, 1, 1000000, &o.room_size);
            break;
        case O_RATE:
            bad = parse_double(optarg, &o.rate) || o.rate <= 0;
            rate_set = 1;
            break;
        case O_HOLD:
            bad = parse_double(optarg, &hold_s) || hold_s <= 0;
            break;
        case O_ROUTE:
            o.route = optarg;
            bad = optarg[0] != '/' || strlen(optarg) > 47 || strpbrk(optarg, "\"\\") != NULL;
            break;
        case O_PROTOCOL:
            if (strcmp(optarg, "socketio") == 0)
                o.socketio = 1;
            else
                bad = strcmp(optarg, "statewire") != 0;
            break;
        case O_KILL:
            kill_worker = 1;
            break;
        case O_NO_KILL:
            kill_worker = 0;
            break;
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
    if (o.scenario == SW_BENCH_RESUME) {
        if (o.socketio) {
            fprintf(stderr, "%s: --scenario resume speaks the statewire protocol only\n", argv[0]);
            return 2;
        }
        if (kill_worker && !r.pid) {
            fprintf(stderr, "%s: --scenario resume needs --pid MASTER (or --no-kill-worker)\n",
                    argv[0]);
            return 2;
        }
        if (!conn_set)
            o.connections = 1000;
        if (!dur_set)
            o.duration_s = 30;
        o.warmup_s = 0;
        o.kill_pid = kill_worker ? r.pid : 0;
    }
    if (smoke) {
        o.connections = 2;
        o.duration_s = 1;
        o.warmup_s = 0;
        o.rooms = 1;
        o.room_size = 2;
    }
    if (o.scenario == SW_BENCH_EVENTS && rate_set)
        o.events_rate = o.rate; /* open loop */
    if (o.socketio && !path_set)
        o.path = "/socket.io/?EIO=4&transport=websocket";
    if (o.scenario != SW_BENCH_EVENTS) {
        o.event = "counter.increment";
        o.payload = "{}";
    }
    if (o.scenario == SW_BENCH_IDLE) {
        o.duration_s = smoke ? 1 : hold_s; /* the window is the hold */
        o.warmup_s = 0;
        r.measure_rss = 1;
    }
    if (o.scenario == SW_BENCH_FANOUT) {
        if ((long long)o.rooms * o.room_size > 1000000) {
            fprintf(stderr, "%s: --rooms x --room-size over 1000000\n", argv[0]);
            return 2;
        }
        o.connections = o.rooms * o.room_size;
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

    if (r.measure_rss && r.pid) {
        /* before the first connect: the server's baseline */
        r.rss0_ok = read_rss(r.pid, r.proc0, &r.rss0, &r.rss0_procs) == 0;
        if (!r.rss0_ok)
            sw_log(SW_LOG_WARN, "bench: server pid %d not found for its RSS", r.pid);
    }
    if (sw_bench_run(&o, on_start, on_end, &r, &res) != 0) {
        sw_bench_result_destroy(&res);
        goto out_free;
    }

    static const char *scen_names[] = {"events", "fanout", "hotroom", "idle", "resume"};
    const char *scen = scen_names[o.scenario];
    int fanout = o.scenario == SW_BENCH_FANOUT, hotroom = o.scenario == SW_BENCH_HOTROOM;
    int idle = o.scenario == SW_BENCH_IDLE, resume = o.scenario == SW_BENCH_RESUME;
    uint64_t answered = res.events + res.errors;
    double secs = res.measured_s > 0 ? res.measured_s : 1e-9;

    /* ---- table ---- */
    if (fanout)
        printf("statewire-bench: scenario fanout, %s:%d%s, %d rooms x %d clients, %g "
               "increments/s per room\n",
               o.host, o.port, o.path, o.rooms, o.room_size, o.rate);
    else if (idle || resume)
        printf("statewire-bench: scenario %s, %s:%d%s, route %s\n", scen, o.host, o.port, o.path,
               res.room);
    else
        printf("statewire-bench: scenario %s, %s:%d%s, event %s%s%s\n", scen, o.host, o.port,
               o.path, o.event, hotroom ? ", room " : "", hotroom ? res.room : "");
    printf("  %-28s %d ok, %d failed, %d dropped (of %d)\n", "connections", res.conn_ok,
           res.conn_failed, res.conn_dropped, o.connections);
    printf("  %-28s %.3f s (after %.3f s warm-up)\n", "measured", res.measured_s, o.warmup_s);
    json_t *rep = json_pack(
        "{s:s, s:s, s:{s:i, s:i, s:i, s:i}, s:f, s:f, s:I}", "scenario", scen, "protocol",
        o.socketio ? "socketio" : "statewire", "connections", "requested", o.connections, "ok",
        res.conn_ok, "failed", res.conn_failed, "dropped", res.conn_dropped, "warmup_s", o.warmup_s,
        "duration_s", res.measured_s, "setup_errors", (json_int_t)res.setup_errors);
    if (fanout) {
        printf("  %-28s %d of %d\n", "rooms sending", res.rooms_active, o.rooms);
        printf("  %-28s %llu sent, %llu acked; %llu errors (whole run)\n", "changes (window)",
               (unsigned long long)res.changes_sent, (unsigned long long)res.changes_acked,
               (unsigned long long)res.sender_errors);
        printf("  %-28s %llu of %llu expected\n", "deltas delivered",
               (unsigned long long)res.deliveries, (unsigned long long)res.expected);
        printf("  %-28s %.1f\n", "deltas/s", (double)res.deliveries / secs);
        print_hist(rep, "delivery latency us", "delivery_us", &res.delivery);
        printf("  %-28s %llu (%d clients)\n", "missing deliveries", (unsigned long long)res.missing,
               res.receivers_missing);
        if (res.stale || res.unexpected)
            printf("  %-28s %llu stale, %llu unexpected\n", "odd counts",
                   (unsigned long long)res.stale, (unsigned long long)res.unexpected);
        if (res.onload_missing)
            printf("  %-28s %llu\n", "on_load delta not seen",
                   (unsigned long long)res.onload_missing);
        json_t *f = json_pack(
            "{s:i, s:i, s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:i, s:I, "
            "s:I, s:I}",
            "rooms", o.rooms, "room_size", o.room_size, "rooms_active", res.rooms_active,
            "rate_per_room", o.rate, "changes_sent", (json_int_t)res.changes_sent, "changes_acked",
            (json_int_t)res.changes_acked, "sender_errors", (json_int_t)res.sender_errors,
            "deliveries", (json_int_t)res.deliveries, "expected", (json_int_t)res.expected,
            "deliveries_per_s", (double)res.deliveries / secs, "missing", (json_int_t)res.missing,
            "receivers_missing", res.receivers_missing, "stale", (json_int_t)res.stale,
            "unexpected", (json_int_t)res.unexpected, "onload_missing",
            (json_int_t)res.onload_missing);
        json_object_update(rep, f);
        json_decref(f);
    } else if (resume) {
        json_object_set_new(rep, "route", json_string(res.room));
        if (o.kill_pid && res.killed_pid)
            printf("  %-28s pid %d (1 of %d workers of master %d)\n", "killed worker",
                   res.killed_pid, res.workers, o.kill_pid);
        else if (o.kill_pid)
            printf("  %-28s none (see the log)\n", "killed worker");
        printf("  %-28s %d clients, %llu drops\n", "dropped", res.clients_dropped,
               (unsigned long long)res.drops);
        printf("  %-28s %llu resumed, %llu not resumed (%llu bad_resume)\n", "welcome",
               (unsigned long long)res.resumed, (unsigned long long)res.not_resumed,
               (unsigned long long)res.bad_resume);
        printf("  %-28s %llu full, %llu replayed; %llu full after the answer\n", "sync deltas",
               (unsigned long long)res.full_deltas, (unsigned long long)res.replayed_deltas,
               (unsigned long long)res.late_deltas);
        printf("  %-28s %llu answered (%llu delta, %llu error)\n", "first increment",
               (unsigned long long)res.synced, (unsigned long long)res.events,
               (unsigned long long)res.errors);
        printf("  %-28s %llu no welcome, %llu no answer\n", "never came back",
               (unsigned long long)res.never_back, (unsigned long long)res.not_working);
        printf("  %-28s %llu\n", "reconnect errors", (unsigned long long)res.reconnect_errors);
        print_hist(rep, "welcome time us", "welcome_us", &res.resume_welcome);
        print_hist(rep, "working time us", "working_us", &res.resume_working);
        json_t *rj = json_pack(
            "{s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "killed_pid", res.killed_pid, "workers", res.workers, "clients_dropped",
            res.clients_dropped, "drops", (json_int_t)res.drops, "resumed", (json_int_t)res.resumed,
            "not_resumed", (json_int_t)res.not_resumed, "bad_resume", (json_int_t)res.bad_resume,
            "full_deltas", (json_int_t)res.full_deltas, "replayed_deltas",
            (json_int_t)res.replayed_deltas, "late_deltas", (json_int_t)res.late_deltas, "synced",
            (json_int_t)res.synced, "events", (json_int_t)res.events, "errors",
            (json_int_t)res.errors, "never_back", (json_int_t)res.never_back, "not_working",
            (json_int_t)res.not_working, "reconnect_errors", (json_int_t)res.reconnect_errors);
        json_object_update(rep, rj);
        json_decref(rj);
    } else if (idle) {
        json_object_set_new(rep, "route", json_string(res.room));
        if (r.pid && r.rss0_ok && r.rss1_ok) {
            double per =
                res.conn_ok > 0 ? ((double)r.rss1 - (double)r.rss0) / (double)res.conn_ok : 0;
            printf("  %-28s %.1f MiB (%zu processes)\n", "server RSS before",
                   (double)r.rss0 / 1048576.0, r.rss0_procs);
            printf("  %-28s %.1f MiB (%zu processes)\n", "server RSS held",
                   (double)r.rss1 / 1048576.0, r.rss1_procs);
            printf("  %-28s %.0f\n", "server RSS bytes/connection", per);
            json_object_set_new(rep, "rss_before_bytes", json_integer((json_int_t)r.rss0));
            json_object_set_new(rep, "rss_held_bytes", json_integer((json_int_t)r.rss1));
            json_object_set_new(rep, "rss_bytes_per_conn", json_real(per));
        } else if (r.pid) {
            printf("  %-28s unavailable (pid %d)\n", "server RSS", r.pid);
        }
    } else {
        printf("  %-28s %llu ok, %llu errors\n", "events", (unsigned long long)res.events,
               (unsigned long long)res.errors);
        printf("  %-28s %.1f\n", "events/s", (double)res.events / secs);
        if (o.events_rate > 0) {
            printf("  %-28s target %.1f/s, achieved %.1f/s (%llu of %llu due sent)\n",
                   "rate (open loop)", o.events_rate, (double)res.sent / secs,
                   (unsigned long long)res.sent, (unsigned long long)res.scheduled);
            printf("  %-28s %llu (deepest queue %u)\n", "queued behind a previous",
                   (unsigned long long)res.queued, (unsigned)res.max_queue);
            if (res.queue_full || res.no_conn)
                printf("  %-28s %llu queue full, %llu no live connection\n", "due, not sent",
                       (unsigned long long)res.queue_full, (unsigned long long)res.no_conn);
            print_hist(rep, "send lag us", "send_lag_us", &res.send_lag);
            json_t *ol = json_pack("{s:s, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:i}", "mode", "open",
                                   "rate_target_per_s", o.events_rate, "rate_achieved_per_s",
                                   (double)res.sent / secs, "scheduled", (json_int_t)res.scheduled,
                                   "sent", (json_int_t)res.sent, "queued", (json_int_t)res.queued,
                                   "queue_full", (json_int_t)res.queue_full, "no_conn",
                                   (json_int_t)res.no_conn, "max_queue", (int)res.max_queue);
            json_object_update(rep, ol);
            json_decref(ol);
        } else if (!hotroom) {
            json_object_set_new(rep, "mode", json_string("closed"));
        }
        print_hist(rep, "RTT us", "rtt_us", &res.rtt);
        json_object_set_new(rep, "events", json_integer((json_int_t)res.events));
        json_object_set_new(rep, "errors", json_integer((json_int_t)res.errors));
        json_object_set_new(rep, "events_per_s", json_real((double)res.events / secs));
    }
    json_object_set(rep, "errors_by_code", res.errors_by_code);
    const char *code;
    json_t *n;
    json_object_foreach(res.errors_by_code, code, n)
        printf("  %-28s %lld\n", code, (long long)json_integer_value(n));
    if (res.setup_errors)
        printf("  %-28s %llu\n", "hydrate errors (setup)", (unsigned long long)res.setup_errors);

    int check_ok = 1;
    if (hotroom) {
        /* The room is new, so the count starts at 0. An increment whose
         * answer never came (connection dropped, drain timed out) may or
         * may not have been applied. */
        long long lo = (long long)res.acked_total, hi = lo + (long long)res.unknown;
        check_ok = res.reader_ok && res.final_count >= lo && res.final_count <= hi;
        printf("  %-28s %llu acked, %llu errors, %llu unknown (whole run)\n", "increments",
               (unsigned long long)res.acked_total, (unsigned long long)res.errors_total,
               (unsigned long long)res.unknown);
        if (res.reader_ok)
            printf("  %-28s %lld\n", "final count", res.final_count);
        else
            printf("  %-28s unavailable (the fresh client failed)\n", "final count");
        printf("  check: %s\n", check_ok ? "ok" : "FAILED");
        json_t *h = json_pack("{s:s, s:I, s:I, s:I, s:b, s:b}", "room", res.room, "acked",
                              (json_int_t)res.acked_total, "errors_total",
                              (json_int_t)res.errors_total, "unknown", (json_int_t)res.unknown,
                              "final_read", res.reader_ok, "check", check_ok);
        if (res.reader_ok)
            json_object_set_new(h, "final_count", json_integer(res.final_count));
        json_object_update(rep, h);
        json_decref(h);
    }

    /* A guest whose hypervisor hands its CPUs to others measures noise:
     * say how much of the machine was taken during the window. */
    if (r.cpu_ok && r.total1 > r.total0) {
        double pct = 100.0 * (double)(r.steal1 - r.steal0) / (double)(r.total1 - r.total0);
        printf("  %-28s %.1f %%\n", "CPU stolen (hypervisor)", pct);
        json_object_set_new(rep, "cpu_steal_pct", json_real(pct));
    }

    /* CPU and Redis per answered event, or per delivered delta and per
     * change sent (fanout) */
    double per1 = fanout ? (double)res.deliveries : resume ? 0 : (double)answered;
    double per2 = fanout ? (double)res.changes_sent : 0;
    const char *unit1 = fanout ? "delta" : "event";
    char label[64], key[64];
    if (r.pid) {
        if (r.proc_ok) {
            double cpu = sw_sysstat_procs_delta_s(r.proc0, r.proc1);
            printf("  %-28s %.3f s (%zu processes)\n", "server CPU", cpu, r.proc1->n);
            json_object_set_new(rep, "server_cpu_s", json_real(cpu));
            if (per1 > 0) {
                snprintf(label, sizeof(label), "server CPU us/%s", unit1);
                snprintf(key, sizeof(key), "server_cpu_us_per_%s", unit1);
                printf("  %-28s %.1f\n", label, cpu * 1e6 / per1);
                json_object_set_new(rep, key, json_real(cpu * 1e6 / per1));
            }
            if (per2 > 0) {
                printf("  %-28s %.1f\n", "server CPU us/change", cpu * 1e6 / per2);
                json_object_set_new(rep, "server_cpu_us_per_change", json_real(cpu * 1e6 / per2));
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
            if (!fanout && per1 > 0) {
                printf("  %-28s %.1f\n", "Redis CPU us/event", cpu * 1e6 / per1);
                printf("  %-28s %.2f\n", "Redis commands/event", (double)calls / per1);
                json_object_set_new(rep, "redis_cpu_us_per_event", json_real(cpu * 1e6 / per1));
                json_object_set_new(rep, "redis_commands_per_event",
                                    json_real((double)calls / per1));
            }
            if (per2 > 0) {
                printf("  %-28s %.1f\n", "Redis CPU us/change", cpu * 1e6 / per2);
                printf("  %-28s %.2f\n", "Redis commands/change", (double)calls / per2);
                json_object_set_new(rep, "redis_cpu_us_per_change", json_real(cpu * 1e6 / per2));
                json_object_set_new(rep, "redis_commands_per_change",
                                    json_real((double)calls / per2));
            }
        } else {
            printf("  %-28s unavailable\n", "Redis");
        }
    }

    /* Exit status: see bench/README.md. */
    const char *fail = NULL;
    if (resume && o.kill_pid && (res.kill_failed || !res.killed_pid))
        fail = "no worker killed";
    else if (resume && res.drops == 0)
        fail = "no connection dropped";
    else if (resume && res.not_resumed > 0)
        fail = "a dropped client was not resumed";
    else if (resume && res.never_back + res.not_working > 0)
        fail = "a dropped client never came back";
    else if (resume && (double)res.conn_failed > 0.01 * o.connections)
        fail = "more than 1% of connections failed";
    else if (resume)
        fail = NULL;
    else if (fanout && res.deliveries == 0)
        fail = "no delta delivered";
    else if (fanout && res.missing > 0)
        fail = "missing deliveries";
    else if (!fanout && !idle && res.events == 0)
        fail = "no event completed";
    else if (res.queue_full + res.no_conn > 0)
        fail = "open loop: due events not sent (queue full or no connection)";
    else if (hotroom && !check_ok)
        fail = "final count does not match the acked increments";
    else if (!fanout && answered && (double)res.errors > 0.01 * (double)answered)
        fail = "more than 1% of events failed";
    else if (idle && res.conn_ok == 0)
        fail = "no connection set up";
    else if ((double)(res.conn_failed + res.conn_dropped) > 0.01 * o.connections)
        fail = "more than 1% of connections failed";
    status = fail ? 1 : 0;
    json_object_set_new(rep, "ok", json_boolean(!status));
    if (fail)
        printf("  FAIL: %s\n", fail);

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
