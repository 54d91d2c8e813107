#include "server/master.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "common/log.h"
#include "common/util.h"
#include "core/fdpass.h"
#include "core/stats.h"
#include "worker/worker.h"

#define LISTEN_BACKLOG 4096
#define ACCEPT_BATCH 256        /* accept4() calls per wakeup */
#define ACCEPT_PAUSE_S 0.1      /* pause after EMFILE/ENFILE */
#define RATE_LOG_MS 1000        /* at most one such line per second */
#define RESPAWN_WINDOW_MS 10000 /* "died more than 3 times in 10 s" */
#define RESPAWN_FAST_DEATHS 3
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define FAST_STOP_KILL_S 5.0 /* TERM/INT: SIGKILL after this */
#define DRAIN_GRACE_MS 2000  /* QUIT, HUP: SIGKILL after drain + this */
#define GENERATIONS 2        /* slot halves: a reload overlaps two generations */
/* HUP: the old generation gets QUIT this long after the switch, so that it
 * first takes the sockets already passed to it (a draining worker reads its
 * channel no more). */
#define RELOAD_QUIT_DELAY_MS 100
/* ... and not before a worker of the new generation is ready (its store
 * answers: /healthz 200), checked this often, for at most this long. */
#define RELOAD_READY_POLL_S 0.02
#define RELOAD_READY_MAX_MS 10000

typedef struct master master_t;

/* One worker slot: the process living in it and its channel. Slots
 * [0, N) and [N, 2N) are the two halves; the current generation lives in
 * one half, a draining previous generation in the other. */
typedef struct wslot {
    master_t *m;
    int idx;
    unsigned gen; /* generation of the process (last) spawned here */
    pid_t pid;    /* 0 when no process is running */
    int chan;     /* master end of the fd channel, -1 when none */
    int chan_ok;  /* 0 once a send saw the worker's end closed */
    ev_child child_w;
    ev_timer respawn_w;
    uint64_t deaths[RESPAWN_FAST_DEATHS + 1]; /* ring: recent death times (mono ms) */
    unsigned ndeaths;
    uint32_t backoff_ms; /* last respawn delay, 0 after a calm death */
} wslot_t;

enum { RUNNING = 0, STOP_GRACEFUL = 1, STOP_FAST = 2 };

struct master {
    struct ev_loop *loop;
    const sw_config_t *cfg;
    const sw_appdef_t *app;
    sw_stats_t *stats;
    wslot_t *slots;
    int nslots;               /* GENERATIONS * nworkers */
    int nworkers;             /* workers per generation (cfg->workers) */
    int cur;                  /* half of the current generation: 0 or 1 */
    unsigned gen;             /* current generation number, 1 at start */
    int reloading;            /* the other half still runs the previous generation */
    int reload_queued;        /* a HUP arrived while reloading: reload again after */
    ev_tstamp reload_started; /* when the reload began (ev_now) */
    ev_timer reload_quit_w;   /* QUIT the old generation */
    ev_timer reload_kill_w;   /* reload deadline: SIGKILL the old generation */
    int lfd;
    int paused; /* accepting paused after EMFILE/ENFILE */
    ev_io accept_w;
    ev_timer pause_w;
    ev_signal sigs[5]; /* TERM INT QUIT USR1 HUP; data = master */
    ev_timer kill_w;   /* stop deadline: SIGKILL what is left */
    int stop;          /* RUNNING, STOP_GRACEFUL, STOP_FAST */
    unsigned rr;       /* round-robin start for ties, within the current half */
    uint64_t emfile_log_ms;
    uint64_t drop_log_ms;
    int held_fd; /* accepted socket no channel could take yet, or -1 */
    ev_tstamp held_since;
    ev_timer held_w; /* retries held_fd; accepting pauses meanwhile */
};

static const int master_signals[5] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP};

/* ---- Helpers ------------------------------------------------------------- */

static int slot_live(const wslot_t *w)
{
    return w->pid > 0 && w->chan >= 0 && w->chan_ok;
}

static int half_of(const master_t *m, const wslot_t *w)
{
    return w->idx / m->nworkers;
}

static int is_current(const master_t *m, const wslot_t *w)
{
    return half_of(m, w) == m->cur;
}

static int count_running(const master_t *m)
{
    int n = 0;
    for (int i = 0; i < m->nslots; i++)
        n += m->slots[i].pid > 0;
    return n;
}

static int count_running_half(const master_t *m, int half)
{
    int n = 0;
    for (int i = half * m->nworkers; i < (half + 1) * m->nworkers; i++)
        n += m->slots[i].pid > 0;
    return n;
}

/* Live workers of the current generation (the only ones given sockets). */
static int count_live(const master_t *m)
{
    int n = 0;
    for (int i = m->cur * m->nworkers; i < (m->cur + 1) * m->nworkers; i++)
        n += slot_live(&m->slots[i]);
    return n;
}

/* Accept while running, not paused, the socket is open and some worker can
 * take connections; otherwise clients wait in the backlog. */
/* Stop the master's own watchers: accept, timers, signals (in a forked
 * worker, and when the master exits). */
static void stop_master_watchers(master_t *m)
{
    ev_io_stop(m->loop, &m->accept_w);
    ev_timer_stop(m->loop, &m->pause_w);
    ev_timer_stop(m->loop, &m->kill_w);
    ev_timer_stop(m->loop, &m->reload_quit_w);
    ev_timer_stop(m->loop, &m->reload_kill_w);
    for (size_t i = 0; i < SW_ARRAY_SIZE(m->sigs); i++)
        ev_signal_stop(m->loop, &m->sigs[i]);
}

/* Close the listen socket and a socket held back for a full channel. */
static void close_listener(master_t *m)
{
    if (m->lfd >= 0) {
        close(m->lfd);
        m->lfd = -1;
    }
    ev_timer_stop(m->loop, &m->held_w);
    if (m->held_fd >= 0) {
        close(m->held_fd);
        m->held_fd = -1;
    }
}

static void update_accept(master_t *m)
{
    int want =
        m->stop == RUNNING && m->lfd >= 0 && !m->paused && m->held_fd < 0 && count_live(m) > 0;
    if (want && !ev_is_active(&m->accept_w))
        ev_io_start(m->loop, &m->accept_w);
    else if (!want && ev_is_active(&m->accept_w))
        ev_io_stop(m->loop, &m->accept_w);
}

static void signal_slots(master_t *m, int from, int to, int sig)
{
    for (int i = from; i < to; i++) {
        wslot_t *w = &m->slots[i];
        if (w->pid > 0 && kill(w->pid, sig) != 0 && errno != ESRCH)
            sw_log(SW_LOG_ERROR, "kill(%d, %s): %s", (int)w->pid, strsignal(sig), strerror(errno));
    }
}

/* Every worker of both generations. */
static void signal_workers(master_t *m, int sig)
{
    signal_slots(m, 0, m->nslots, sig);
}

static void signal_half(master_t *m, int half, int sig)
{
    signal_slots(m, half * m->nworkers, (half + 1) * m->nworkers, sig);
}

static void signal_name(int sig, char *out, size_t cap)
{
    const char *abbr = sigabbrev_np(sig);
    if (abbr)
        snprintf(out, cap, "SIG%s", abbr);
    else
        snprintf(out, cap, "signal %d", sig);
}

static int rate_ok(uint64_t *last_ms)
{
    uint64_t now = sw_now_ms();
    if (*last_ms && now - *last_ms < RATE_LOG_MS)
        return 0;
    *last_ms = now;
    return 1;
}

/* ---- Listen socket ------------------------------------------------------- */

static void format_addr(char *out, size_t cap, const char *host, int port)
{
    if (strchr(host, ':'))
        snprintf(out, cap, "[%s]:%d", host, port);
    else
        snprintf(out, cap, "%s:%d", host, port);
}

static int listen_on(const char *host, int port)
{
    char portstr[16], where[300];
    snprintf(portstr, sizeof(portstr), "%d", port);
    format_addr(where, sizeof(where), host, port);

    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        sw_log(SW_LOG_ERROR, "getaddrinfo(%s): %s", host, gai_strerror(rc));
        return SW_ERR;
    }

    int fd = -1, err = 0;
    const char *what = "socket";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            what = "socket";
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
            err = errno;
            what = "setsockopt(SO_REUSEADDR)";
        } else if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            what = "bind";
        } else if (listen(fd, LISTEN_BACKLOG) != 0) {
            err = errno;
            what = "listen";
        } else {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        sw_log(SW_LOG_ERROR, "%s(%s): %s", what, where, strerror(err));
        return SW_ERR;
    }
    sw_log(SW_LOG_INFO, "listening on %s", where);
    return fd;
}

/* ---- Workers ------------------------------------------------------------- */

/* In a freshly forked worker: drop everything that belongs to the master,
 * then let libev rebuild its kernel state. */
static void child_detach(master_t *m)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    stop_master_watchers(m);
    for (int i = 0; i < m->nslots; i++) {
        wslot_t *w = &m->slots[i];
        ev_child_stop(m->loop, &w->child_w);
        ev_timer_stop(m->loop, &w->respawn_w);
        if (w->chan >= 0) {
            close(w->chan);
            w->chan = -1;
        }
    }
    close_listener(m);
    ev_loop_fork(m->loop);
}

static int spawn(wslot_t *w)
{
    master_t *m = w->m;
    int sv[2];
    if (sw_fdpass_pair(sv) != 0)
        return SW_ERR;
    sw_stats_reset_slot(m->stats, (uint32_t)w->idx);

    pid_t pid = fork();
    if (pid < 0) {
        sw_log(SW_LOG_ERROR, "fork(worker %d): %s", w->idx, strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return SW_ERR;
    }
    if (pid == 0) {
        close(sv[0]);
        child_detach(m);
        sw_log_set_role("worker", w->idx);
        sw_worker_stats_t *st = &m->stats->slot[w->idx];
        atomic_store_explicit(&st->pid, (int32_t)getpid(), memory_order_relaxed);
        atomic_store_explicit(&st->started_ms, sw_wall_ms(), memory_order_relaxed);
        _exit(sw_worker_run(m->loop, m->cfg, m->app, w->idx, sv[1], m->stats));
    }

    close(sv[1]);
    w->pid = pid;
    w->gen = m->gen;
    w->chan = sv[0];
    w->chan_ok = 1;
    /* Also set here so the slot reads as taken before the child runs. */
    atomic_store_explicit(&m->stats->slot[w->idx].pid, (int32_t)pid, memory_order_relaxed);
    ev_child_set(&w->child_w, pid, 0);
    ev_child_start(m->loop, &w->child_w);
    sw_log(SW_LOG_INFO, "worker %d started (pid %d, generation %u)", w->idx, (int)pid, m->gen);
    update_accept(m);
    return 0;
}

static void schedule_respawn(wslot_t *w, uint32_t delay_ms)
{
    sw_log(SW_LOG_NOTICE, "respawning worker %d in %u ms", w->idx, (unsigned)delay_ms);
    ev_timer_set(&w->respawn_w, delay_ms / 1000.0, 0.);
    ev_timer_start(w->m->loop, &w->respawn_w);
}

static uint32_t next_backoff(wslot_t *w)
{
    uint32_t d = w->backoff_ms ? SW_MIN(w->backoff_ms * 2, (uint32_t)BACKOFF_MAX_MS)
                               : (uint32_t)BACKOFF_MIN_MS;
    w->backoff_ms = d;
    return d;
}

static void spawn_or_retry(wslot_t *w)
{
    if (spawn(w) != 0)
        schedule_respawn(w, next_backoff(w));
}

static void on_respawn(struct ev_loop *loop, ev_timer *t, int revents)
{
    wslot_t *w = sw_container_of(t, wslot_t, respawn_w);
    if (w->m->stop != RUNNING || w->pid > 0 || !is_current(w->m, w))
        return;
    spawn_or_retry(w);
}

/* `expected`: the master stopped it (stop, or an old generation). */
static void log_death(const wslot_t *w, int expected, pid_t pid, int status)
{
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        sw_log(expected ? SW_LOG_INFO : SW_LOG_WARN,
               "worker %d (pid %d, generation %u) exited with code %d%s", w->idx, (int)pid, w->gen,
               code, expected ? "" : " unexpectedly");
    } else if (WIFSIGNALED(status)) {
        char name[32];
        signal_name(WTERMSIG(status), name, sizeof(name));
        sw_log(expected ? SW_LOG_WARN : SW_LOG_ERROR,
               "worker %d (pid %d, generation %u) killed by %s%s", w->idx, (int)pid, w->gen, name,
               WCOREDUMP(status) ? " (core dumped)" : "");
    } else {
        sw_log(SW_LOG_WARN, "worker %d (pid %d, generation %u) ended with status 0x%x", w->idx,
               (int)pid, w->gen, (unsigned)status);
    }
}

static void reload_finished(master_t *m);

static void on_child(struct ev_loop *loop, ev_child *cw, int revents)
{
    wslot_t *w = sw_container_of(cw, wslot_t, child_w);
    master_t *m = w->m;
    /* Stopped/continued notifications are not deaths (trace is 0 anyway). */
    if (!WIFEXITED(cw->rstatus) && !WIFSIGNALED(cw->rstatus))
        return;
    pid_t pid = cw->rpid;
    int status = cw->rstatus;
    ev_child_stop(loop, cw);
    if (w->chan >= 0)
        close(w->chan);
    w->chan = -1;
    w->pid = 0;
    atomic_store_explicit(&m->stats->slot[w->idx].pid, 0, memory_order_relaxed);
    int current = is_current(m, w);
    log_death(w, m->stop != RUNNING || !current, pid, status);

    if (m->stop != RUNNING) {
        if (count_running(m) == 0) {
            sw_log(SW_LOG_INFO, "all workers exited");
            ev_break(loop, EVBREAK_ALL);
        }
        return;
    }
    if (!current) {
        /* A replaced generation: no respawn. */
        if (m->reloading && count_running_half(m, half_of(m, w)) == 0)
            reload_finished(m);
        return;
    }
    update_accept(m);
    SW_STAT_ADD(m->stats, worker_restarts, 1); /* respawned below, now or after a backoff */

    uint64_t now = sw_now_ms();
    w->deaths[w->ndeaths % SW_ARRAY_SIZE(w->deaths)] = now;
    w->ndeaths++;
    /* After the increment this index holds the oldest of the last
     * RESPAWN_FAST_DEATHS + 1 deaths. */
    uint64_t oldest = w->deaths[w->ndeaths % SW_ARRAY_SIZE(w->deaths)];
    int flapping = w->ndeaths > RESPAWN_FAST_DEATHS && now - oldest <= RESPAWN_WINDOW_MS;
    if (!flapping) {
        w->backoff_ms = 0;
        spawn_or_retry(w);
    } else {
        schedule_respawn(w, next_backoff(w));
    }
}

/* ---- Accept loop --------------------------------------------------------- */

/* Among the live workers of `half` not tried yet (ready ones only when
 * want_ready: their store answers, see sw_worker_stats_t.ready), the one
 * with the fewest connections; scanning from the round-robin cursor
 * breaks ties in turn. -1 if none. */
static int pick_in(const master_t *m, int half, const unsigned char *tried, int want_ready)
{
    int best = -1;
    uint64_t best_conns = 0;
    int base = half * m->nworkers;
    for (int k = 0; k < m->nworkers; k++) {
        int i = base + (int)((m->rr + (unsigned)k) % (unsigned)m->nworkers);
        const wslot_t *w = &m->slots[i];
        if (!slot_live(w) || tried[i])
            continue;
        if (want_ready && !atomic_load_explicit(&m->stats->slot[i].ready, memory_order_relaxed))
            continue;
        uint64_t c = SW_STAT_GET(&m->stats->slot[i], connections);
        if (best < 0 || c < best_conns) {
            best = i;
            best_conns = c;
        }
    }
    return best;
}

/* 1 when some live worker of `half` is ready. */
static int half_ready(const master_t *m, int half)
{
    unsigned char none[GENERATIONS * 256];
    memset(none, 0, sizeof(none));
    return pick_in(m, half, none, 1) >= 0;
}

/* The worker for a new connection: a ready worker of the current
 * generation; during a reload, until one of the new generation is ready
 * and while the old one has not been told to drain, a ready worker of the
 * old generation (a reload costs no 503 and no failed event while the new
 * workers connect to Redis); else any live worker of the current
 * generation (at start, or while Redis is out of reach for all). -1 if
 * none. */
static int pick_worker(const master_t *m, const unsigned char *tried)
{
    int i = pick_in(m, m->cur, tried, 1);
    if (i < 0 && m->reloading && ev_is_active(&m->reload_quit_w))
        i = pick_in(m, 1 - m->cur, tried, 1);
    if (i < 0)
        i = pick_in(m, m->cur, tried, 0);
    return i;
}

/* Hand fd to a worker; the caller closes its copy either way. */
static int dispatch(master_t *m, int fd)
{
    unsigned char tried[GENERATIONS * 256];
    memset(tried, 0, sizeof(tried));
    for (int attempt = 0; attempt < GENERATIONS * m->nworkers; attempt++) {
        int i = pick_worker(m, tried);
        if (i < 0)
            break;
        tried[i] = 1;
        wslot_t *w = &m->slots[i];
        int rc = sw_fdpass_send(w->chan, fd);
        if (rc == 0) {
            m->rr = (unsigned)(i % m->nworkers + 1) % (unsigned)m->nworkers;
            return 0;
        }
        if (rc == SW_ECLOSED) {
            /* Going away; its ev_child will follow. */
            w->chan_ok = 0;
            update_accept(m);
        }
    }
    return SW_EAGAIN;
}

/* Every channel is full (a burst of connections): hold the socket, stop
 * accepting — new clients wait in the kernel's listen backlog — and retry
 * every HELD_RETRY_S until a worker takes it. A socket held longer than
 * HELD_MAX_MS (no worker reads its channel) is closed. */
#define HELD_RETRY_S 0.002
#define HELD_MAX_MS 5000

static void on_held_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    master_t *m = sw_container_of(t, master_t, held_w);
    if (m->held_fd < 0)
        return;
    if (dispatch(m, m->held_fd) == 0 || m->stop != RUNNING || count_live(m) == 0 ||
        (ev_now(loop) - m->held_since) * 1000 > HELD_MAX_MS) {
        close(m->held_fd);
        m->held_fd = -1;
        ev_timer_stop(loop, t);
        update_accept(m);
        return;
    }
}

static void hold(master_t *m, int fd)
{
    if (rate_ok(&m->drop_log_ms))
        sw_log(SW_LOG_NOTICE, "every worker's channel is full; pausing accept until one "
                              "takes the connection");
    m->held_fd = fd;
    m->held_since = ev_now(m->loop);
    ev_timer_set(&m->held_w, HELD_RETRY_S, HELD_RETRY_S);
    ev_timer_start(m->loop, &m->held_w);
    update_accept(m);
}

static void on_accept_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
    master_t *m = sw_container_of(t, master_t, pause_w);
    m->paused = 0;
    update_accept(m);
}

static void pause_accept(master_t *m, int err)
{
    if (rate_ok(&m->emfile_log_ms))
        sw_log(SW_LOG_ERROR, "accept4: %s; pausing accept for %d ms", strerror(err),
               (int)(ACCEPT_PAUSE_S * 1000));
    m->paused = 1;
    update_accept(m);
    ev_timer_set(&m->pause_w, ACCEPT_PAUSE_S, 0.);
    ev_timer_start(m->loop, &m->pause_w);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    master_t *m = sw_container_of(io, master_t, accept_w);
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            switch (err) {
            case EINTR:
            case ECONNABORTED:
            /* Linux reports pending network errors of the new socket
             * through accept (accept(2) "Error handling"): skip it. */
            case EPROTO:
            case ENOPROTOOPT:
            case EHOSTDOWN:
            case ENONET:
            case EHOSTUNREACH:
            case EOPNOTSUPP:
            case ENETUNREACH:
            case ENETDOWN:
            case EPERM:
                continue;
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                pause_accept(m, err);
                return;
            default:
                sw_log(SW_LOG_ERROR, "accept4: %s", strerror(err));
                return;
            }
        }
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
            sw_log(SW_LOG_DEBUG, "setsockopt(TCP_NODELAY): %s", strerror(errno));
        if (dispatch(m, fd) == SW_EAGAIN && count_live(m) > 0) {
            hold(m, fd); /* accepting pauses until a worker takes it */
            return;
        }
        close(fd);
        if (!ev_is_active(&m->accept_w))
            return; /* no live worker left */
    }
}

/* ---- Stop deadline ----------------------------------------------------- */

static void on_kill_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    master_t *m = sw_container_of(t, master_t, kill_w);
    sw_log(SW_LOG_WARN, "%d worker(s) still running at the stop deadline; sending SIGKILL",
           count_running(m));
    signal_workers(m, SIGKILL);
}

/* ---- Reload (HUP) ------------------------------------------------------- */

static void begin_reload(master_t *m);

static void on_reload_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    master_t *m = sw_container_of(t, master_t, reload_kill_w);
    int old = 1 - m->cur;
    sw_log(SW_LOG_WARN,
           "reload: %d worker(s) of generation %u still running at the drain deadline; "
           "sending SIGKILL",
           count_running_half(m, old), m->gen - 1);
    signal_half(m, old, SIGKILL);
}

static void on_reload_quit(struct ev_loop *loop, ev_timer *t, int revents)
{
    master_t *m = sw_container_of(t, master_t, reload_quit_w);
    int old = 1 - m->cur;
    double waited_ms = (ev_now(loop) - m->reload_started) * 1000.0;
    if (!half_ready(m, m->cur) && waited_ms < RELOAD_READY_MAX_MS) {
        /* The new generation is not ready yet (its store has not
         * answered): the old one keeps serving new connections. */
        ev_timer_set(t, RELOAD_READY_POLL_S, 0.);
        ev_timer_start(loop, t);
        return;
    }
    if (!half_ready(m, m->cur))
        sw_log(SW_LOG_WARN, "reload: generation %u is not ready after %u ms; draining %u anyway",
               m->gen, (unsigned)RELOAD_READY_MAX_MS, m->gen - 1);
    sw_log(SW_LOG_NOTICE,
           "reload: draining generation %u (%d worker(s), SIGQUIT), SIGKILL after %u ms",
           m->gen - 1, count_running_half(m, old),
           (unsigned)(m->cfg->drain_timeout_ms + DRAIN_GRACE_MS));
    signal_half(m, old, SIGQUIT);
    ev_timer_set(&m->reload_kill_w, ((double)m->cfg->drain_timeout_ms + DRAIN_GRACE_MS) / 1000.0,
                 0.);
    ev_timer_start(m->loop, &m->reload_kill_w);
}

/* The previous generation has exited: the reload is over. */
static void reload_finished(master_t *m)
{
    ev_timer_stop(m->loop, &m->reload_quit_w);
    ev_timer_stop(m->loop, &m->reload_kill_w);
    m->reloading = 0;
    sw_log(SW_LOG_NOTICE, "reload complete: generation %u has exited, generation %u serves",
           m->gen - 1, m->gen);
    if (m->reload_queued) {
        m->reload_queued = 0;
        sw_log(SW_LOG_NOTICE, "reload: starting the reload requested meanwhile");
        begin_reload(m);
    }
}

/* Start a new generation in the other half of the slots, hand it every new
 * connection from now on, and drain the old generation (QUIT after
 * RELOAD_QUIT_DELAY_MS), SIGKILL after drain_timeout_ms + DRAIN_GRACE_MS
 * more. One reload at a time: a HUP
 * during a reload is remembered (once) and starts the next reload when the
 * old generation has exited. */
static void begin_reload(master_t *m)
{
    if (m->stop != RUNNING) {
        sw_log(SW_LOG_NOTICE, "reload (HUP) ignored: the server is stopping");
        return;
    }
    if (m->reloading) {
        m->reload_queued = 1;
        sw_log(SW_LOG_NOTICE,
               "reload (HUP): generation %u is still draining; the next reload starts once it "
               "has exited",
               m->gen - 1);
        return;
    }
    int old = m->cur;
    int neu = 1 - old;
    m->gen++;
    sw_log(SW_LOG_NOTICE, "reload (HUP): starting generation %u (%d worker(s)) to replace %u",
           m->gen, m->nworkers, m->gen - 1);

    /* The old half respawns nothing from now on. */
    for (int i = old * m->nworkers; i < (old + 1) * m->nworkers; i++)
        ev_timer_stop(m->loop, &m->slots[i].respawn_w);

    m->cur = neu;
    m->rr = 0;
    for (int i = neu * m->nworkers; i < (neu + 1) * m->nworkers; i++) {
        wslot_t *w = &m->slots[i];
        w->ndeaths = 0;
        w->backoff_ms = 0;
        memset(w->deaths, 0, sizeof(w->deaths));
        spawn_or_retry(w);
    }
    update_accept(m);
    sw_log(SW_LOG_NOTICE, "reload: new connections go to generation %u", m->gen);

    int nold = count_running_half(m, old);
    if (nold == 0) {
        sw_log(SW_LOG_NOTICE, "reload complete: generation %u had no running worker", m->gen - 1);
        return;
    }
    m->reloading = 1;
    m->reload_started = ev_now(m->loop);
    ev_timer_set(&m->reload_quit_w, RELOAD_QUIT_DELAY_MS / 1000.0, 0.);
    ev_timer_start(m->loop, &m->reload_quit_w);
}

/* ---- Stopping ------------------------------------------------------------ */

static void begin_stop(master_t *m, int mode, int signum)
{
    if (mode <= m->stop)
        return;
    char name[32];
    signal_name(signum, name, sizeof(name));
    double deadline_s;
    if (mode == STOP_FAST) {
        deadline_s = FAST_STOP_KILL_S;
        sw_log(SW_LOG_NOTICE, "fast stop (%s): stopping workers", name);
    } else {
        deadline_s = ((double)m->cfg->drain_timeout_ms + DRAIN_GRACE_MS) / 1000.0;
        sw_log(SW_LOG_NOTICE, "graceful stop (%s): draining workers for up to %u ms", name,
               (unsigned)m->cfg->drain_timeout_ms);
    }
    m->stop = mode;
    m->reload_queued = 0;
    ev_timer_stop(m->loop, &m->reload_quit_w); /* every worker gets the stop signal */

    ev_io_stop(m->loop, &m->accept_w);
    ev_timer_stop(m->loop, &m->pause_w);
    close_listener(m);
    for (int i = 0; i < m->nslots; i++)
        ev_timer_stop(m->loop, &m->slots[i].respawn_w);

    signal_workers(m, mode == STOP_FAST ? SIGTERM : SIGQUIT);

    /* Escalating from a graceful stop never moves the deadline later. */
    if (!ev_is_active(&m->kill_w) || ev_timer_remaining(m->loop, &m->kill_w) > deadline_s) {
        ev_timer_stop(m->loop, &m->kill_w);
        ev_timer_set(&m->kill_w, deadline_s, 0.);
        ev_timer_start(m->loop, &m->kill_w);
    }
    if (count_running(m) == 0)
        ev_break(m->loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    master_t *m = s->data;
    switch (s->signum) {
    case SIGTERM:
    case SIGINT:
        begin_stop(m, STOP_FAST, s->signum);
        break;
    case SIGQUIT:
        begin_stop(m, STOP_GRACEFUL, s->signum);
        break;
    case SIGUSR1:
        sw_log(SW_LOG_NOTICE, "reopening log file (USR1)");
        sw_log_reopen();
        signal_workers(m, SIGUSR1);
        break;
    case SIGHUP:
        begin_reload(m);
        break;
    default:
        break;
    }
}

/* ---- Entry --------------------------------------------------------------- */

int sw_master_run(const sw_config_t *cfg, const sw_appdef_t *app)
{
    int status = 1;
    master_t *m = sw_xcalloc(1, sizeof(*m));
    m->cfg = cfg;
    m->app = app;
    m->lfd = -1;
    m->nworkers = cfg->workers;
    m->nslots = GENERATIONS * cfg->workers;
    m->gen = 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        sw_log(SW_LOG_ERROR, "sigaction(SIGPIPE, SIG_IGN): %s", strerror(errno));
        goto out;
    }

    if (m->nworkers < 1 || m->nworkers > 256) {
        sw_log(SW_LOG_ERROR, "workers must be 1..256 (got %d)", m->nworkers);
        goto out;
    }
    m->loop = ev_default_loop(0);
    if (!m->loop) {
        sw_log(SW_LOG_ERROR, "ev_default_loop: could not initialise libev");
        goto out;
    }
    m->stats = sw_stats_new((uint32_t)m->nslots);
    if (!m->stats)
        goto out;
    m->lfd = listen_on(cfg->host, cfg->port);
    if (m->lfd < 0)
        goto out;

    ev_io_init(&m->accept_w, on_accept, m->lfd, EV_READ);
    ev_timer_init(&m->pause_w, on_accept_resume, 0., 0.);
    ev_timer_init(&m->held_w, on_held_retry, 0., 0.);
    m->held_fd = -1;
    ev_timer_init(&m->kill_w, on_kill_deadline, 0., 0.);
    ev_timer_init(&m->reload_quit_w, on_reload_quit, 0., 0.);
    ev_timer_init(&m->reload_kill_w, on_reload_deadline, 0., 0.);
    for (size_t i = 0; i < SW_ARRAY_SIZE(m->sigs); i++) {
        ev_signal_init(&m->sigs[i], on_signal, master_signals[i]);
        m->sigs[i].data = m;
        ev_signal_start(m->loop, &m->sigs[i]);
    }

    m->slots = sw_xcalloc((size_t)m->nslots, sizeof(*m->slots));
    for (int i = 0; i < m->nslots; i++) {
        wslot_t *w = &m->slots[i];
        w->m = m;
        w->idx = i;
        w->chan = -1;
        ev_child_init(&w->child_w, on_child, 0, 0);
        ev_timer_init(&w->respawn_w, on_respawn, 0., 0.);
    }
    sw_log(SW_LOG_INFO, "master pid %d starting %d worker(s)", (int)getpid(), m->nworkers);
    for (int i = 0; i < m->nworkers; i++)
        spawn_or_retry(&m->slots[i]);

    ev_run(m->loop, 0);
    sw_log(SW_LOG_NOTICE, "stopped");
    status = 0;

out:
    if (m->loop)
        stop_master_watchers(m);
    for (int i = 0; m->slots && i < m->nslots; i++) {
        wslot_t *w = &m->slots[i];
        ev_child_stop(m->loop, &w->child_w);
        ev_timer_stop(m->loop, &w->respawn_w);
        if (w->chan >= 0)
            close(w->chan);
    }
    if (m->lfd >= 0)
        close(m->lfd);
    sw_stats_free(m->stats);
    free(m->slots);
    free(m);
    return status;
}
