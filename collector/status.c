/*
 * collector/status.c - `ldprof status` (see status.h).
 *
 * Reads the stats file ldprof-collectord rewrites every second (at most)
 * while something changes (docs/formats.md, "Stats file"), and checks that
 * the collector is really there: the pid in the file is alive and the
 * socket answers.  Text output for people, --json for scripts: the stats
 * file's object under "stats" plus the liveness checks.
 */
#include "status.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <jansson.h>

#include "json.h"
#include "paths.h"
#include "store.h"

#define EXIT_NOT_RUNNING 3

static const char status_usage[] =
    "Usage: ldprof status [--socket PATH] [--stats-file PATH] [--json]\n"
    "Show whether ldprof-collectord is running (the pid in its stats file is\n"
    "alive and its socket answers) and its counters: datagrams received,\n"
    "accepted and rejected (by reason), spans, traces open and written, what\n"
    "the limits cut, what retention pruned, Redis, and per sending process\n"
    "(kernel-reported pid): service, executable, datagrams, spans, rejected\n"
    "datagrams and the spans the preload itself had to drop.\n"
    "Exit status: 0 running, 3 not running (last counters shown), 1 no stats\n"
    "file, 2 usage error.\n"
    "\n"
    "  --socket PATH      the collector's socket (default: $LDPROF_COLLECTOR, else\n"
    "                     $XDG_RUNTIME_DIR/ldprof/collector.sock, else\n"
    "                     /tmp/ldprof-$UID/collector.sock); its stats file is the\n"
    "                     path with .sock replaced by .stats.json\n"
    "  --stats-file PATH  read this stats file instead (ldprof-collectord\n"
    "                     --stats-file)\n"
    "  --json             print {\"running\", \"pid_alive\", \"socket_answers\",\n"
    "                     \"stats_file\", \"stats\": <the stats file>} as JSON\n"
    "  --help             this help\n";

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...)
{
    va_list ap;
    fputs("ldprof: status: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static long long gi(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *gs(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "?";
}

/* "600 s", "10m" style: ms as the largest whole unit, "off" for 0. */
static const char *dur(long long ms, char out[32])
{
    static const struct {
        long long ms;
        const char *u;
    } units[] = {{604800000, "w"}, {86400000, "d"}, {3600000, "h"},
                 {60000, "m"},     {1000, "s"},     {1, "ms"}};
    if (ms <= 0) {
        snprintf(out, 32, "off");
        return out;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, 32, "%lld%s", ms / units[i].ms, units[i].u);
            return out;
        }
    return out;
}

static const char *count_or_off(long long v, char out[32])
{
    if (v <= 0)
        snprintf(out, 32, "off");
    else
        snprintf(out, 32, "%lld", v);
    return out;
}

/* The senders table, busiest first. */
static int cmp_sender(const void *a, const void *b)
{
    long long x = gi(*(json_t *const *)a, "spans"), y = gi(*(json_t *const *)b, "spans");
    if (x != y)
        return x > y ? -1 : 1;
    return gi(*(json_t *const *)a, "pid") < gi(*(json_t *const *)b, "pid") ? -1 : 1;
}

static void print_senders(FILE *out, json_t *snd)
{
    size_t n = json_array_size(snd);
    fprintf(out, "senders: %zu process%s (pid as reported by the kernel)\n", n,
            n == 1 ? "" : "es");
    if (!n)
        return;
    json_t **v = calloc(n, sizeof *v);
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(snd, i);
    qsort(v, n, sizeof *v, cmp_sender);
    fprintf(out, "  %8s  %-20s %10s %10s %9s %9s  %s\n", "PID", "SERVICE", "DATAGRAMS", "SPANS",
            "REJECTED", "DROPPED", "EXE");
    for (size_t i = 0; i < n; i++) {
        json_t *x = v[i];
        const char *svc = gs(x, "service");
        fprintf(out, "  %8lld  %-20s %10lld %10lld %9lld %9lld  %s", gi(x, "pid"),
                *svc ? svc : "-", gi(x, "datagrams"), gi(x, "spans"), gi(x, "rejected"),
                gi(x, "dropped"), *gs(x, "exe") ? gs(x, "exe") : "-");
        if (gi(x, "pid_mismatches"))
            fprintf(out, "  (header pid %lld in %lld datagrams)", gi(x, "header_pid"),
                    gi(x, "pid_mismatches"));
        fputc('\n', out);
    }
    free(v);
}

static void print_text(FILE *out, json_t *st, const char *stats_path, int running, int alive,
                       int answers)
{
    char a[32], b[32], c[32];
    json_t *dg = json_object_get(st, "datagrams");
    json_t *tr = json_object_get(st, "traces");
    json_t *lim = json_object_get(st, "limits");
    json_t *ret = json_object_get(st, "retention");
    json_t *peers = json_object_get(st, "peers");
    json_t *jr = json_object_get(st, "journal");
    json_t *rd = json_object_get(st, "redis");

    if (running)
        fprintf(out, "collector: running, pid %lld, version %s, since %s\n", gi(st, "pid"),
                gs(st, "version"), gs(st, "started"));
    else
        fprintf(out, "collector: NOT running (pid %lld %s, socket %s; it %s)\n", gi(st, "pid"),
                alive ? "alive" : "gone", answers ? "answers" : "does not answer",
                json_is_true(json_object_get(st, "running")) ? "did not stop cleanly"
                                                             : "stopped cleanly");
    fprintf(out, "  socket %s\n  traces %s\n  stats  %s (updated %s)\n", gs(st, "socket"),
            gs(st, "dir"), stats_path, gs(st, "updated"));

    fprintf(out, "datagrams: %lld received, %lld accepted, %lld rejected", gi(dg, "received"),
            gi(dg, "accepted"), gi(dg, "rejected"));
    json_t *rej = json_object_get(dg, "rejected_by_reason");
    if (json_object_size(rej)) {
        const char *k;
        json_t *v;
        int first = 1;
        fputs(" (", out);
        json_object_foreach(rej, k, v) {
            fprintf(out, "%s%s %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
            first = 0;
        }
        fputc(')', out);
    }
    fprintf(out, ", %lld stats messages\n", gi(dg, "stats_messages"));
    fprintf(out, "spans: %lld received; %lld dropped by the senders' preload (queue full or no "
                 "collector)\n",
            gi(st, "spans"), gi(st, "dropped"));
    fprintf(out,
            "traces: %lld open (%lld spans), %lld written, %lld rewritten (late spans), "
            "%lld write errors\n",
            gi(tr, "pending"), gi(tr, "pending_spans"), gi(tr, "written"), gi(tr, "rewritten"),
            gi(tr, "write_errors"));
    if (lim) {
        json_t *early = json_object_get(lim, "written_early");
        fprintf(out,
                "limits: open traces %s, spans per trace %s, trace age %s; cut: %lld spans "
                "dropped in %lld traces, written early %lld (open traces) + %lld (age)\n",
                count_or_off(gi(lim, "max_open_traces"), a),
                count_or_off(gi(lim, "max_spans_per_trace"), b),
                dur(gi(lim, "max_trace_age_ms"), c), gi(lim, "spans_dropped"),
                gi(lim, "traces_truncated"), gi(early, "max_open_traces"),
                gi(early, "max_trace_age"));
    }
    if (ret)
        fprintf(out,
                "retention: keep %s dumps, max age %s; pruned %lld by count, %lld by age, "
                "%lld errors (%lld dumps at the last scan)\n",
                count_or_off(gi(ret, "max_traces"), a), dur(gi(ret, "max_age_ms"), b),
                gi(ret, "pruned_by_count"), gi(ret, "pruned_by_age"), gi(ret, "errors"),
                gi(ret, "dumps"));
    if (peers) {
        json_t *uids = json_object_get(peers, "allowed_uids");
        if (gi(peers, "euid") == 0)
            fputs("peers: root", out);
        else
            fprintf(out, "peers: uid %lld and root", gi(peers, "euid"));
        for (size_t i = 0; i < json_array_size(uids); i++)
            fprintf(out, "%s%lld", i ? "," : ", allowed: ",
                    (long long)json_integer_value(json_array_get(uids, i)));
        fprintf(out, "; %lld datagrams refused (peer_uid), %lld with a header pid that is not "
                     "the sender's\n",
                gi(peers, "uid_rejected"), gi(peers, "pid_mismatches"));
    }
    if (jr)
        fprintf(out, "journal: %lld bytes, %lld spans replayed at start, %lld bad lines\n",
                gi(jr, "bytes"), gi(jr, "replayed_spans"), gi(jr, "bad_lines"));
    if (rd)
        fprintf(out, "redis: %s %s, %lld events pushed, %lld failed, %lld errors\n",
                gs(rd, "uri"), json_is_true(json_object_get(rd, "connected")) ? "connected"
                                                                                : "not connected",
                gi(rd, "pushed"), gi(rd, "failed"), gi(rd, "errors"));
    else
        fputs("redis: not used\n", out);
    print_senders(out, json_object_get(st, "senders"));
}

int coll_cmd_status(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, 's'},
                                       {"stats-file", required_argument, NULL, 'f'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0, 0, 0, 0}};
    const char *sock = NULL, *stats = NULL;
    char sockbuf[PATH_MAX], statsbuf[PATH_MAX];
    int as_json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 's')
            sock = optarg;
        else if (c == 'f')
            stats = optarg;
        else if (c == 'j')
            as_json = 1;
        else if (c == 'h') {
            fputs(status_usage, stdout);
            return 0;
        } else {
            err("option '%s' %s (see ldprof status --help)", argv[optind - 1],
                c == ':' ? "needs a value" : "is unknown");
            return 2;
        }
    }
    if (optind < argc) {
        err("unexpected argument '%s' (see ldprof status --help)", argv[optind]);
        return 2;
    }
    if (!sock) {
        if (coll_default_socket(sockbuf, sizeof sockbuf) < 0) {
            err("default socket path too long");
            return 1;
        }
        sock = sockbuf;
    }
    if (!stats) {
        if (coll_stats_path(sock, statsbuf, sizeof statsbuf) < 0) {
            err("stats file path too long");
            return 1;
        }
        stats = statsbuf;
    }
    struct coll_buf b;
    coll_buf_init(&b);
    if (coll_read_file(stats, &b) < 0) {
        if (errno == ENOENT)
            err("no collector: no stats file %s (start ldprof-collectord%s%s, or give the "
                "socket it uses with --socket)",
                stats, sock == sockbuf ? "" : " --socket ", sock == sockbuf ? "" : sock);
        else
            err("cannot read %s: %s", stats, strerror(errno));
        coll_buf_free(&b);
        return 1;
    }
    json_error_t je;
    json_t *st = json_loadb(b.p ? b.p : "", b.len, 0, &je);
    coll_buf_free(&b);
    if (!json_is_object(st) || !json_is_integer(json_object_get(st, "pid"))) {
        err("%s is not a collector stats file (%s)", stats, st ? "no pid" : je.text);
        json_decref(st);
        return 1;
    }
    long long pid = gi(st, "pid");
    int alive = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    const char *ssock = json_string_value(json_object_get(st, "socket"));
    int answers = coll_socket_probe(ssock ? ssock : sock) == 1;
    int running = alive && answers && json_is_true(json_object_get(st, "running"));
    int rc = 0;
    if (as_json) {
        json_t *o = json_pack("{s:b,s:b,s:b,s:s,s:O}", "running", running, "pid_alive", alive,
                              "socket_answers", answers, "stats_file", stats, "stats", st);
        struct coll_buf ob;
        coll_buf_init(&ob);
        if (!o || coll_json_dump(&ob, o, 2) < 0 || coll_buf_addc(&ob, '\n') < 0) {
            err("out of memory");
            rc = 1;
        } else if (fwrite(ob.p, 1, ob.len, stdout) != ob.len) {
            rc = 1;
        }
        coll_buf_free(&ob);
        json_decref(o);
    } else {
        print_text(stdout, st, stats, running, alive, answers);
    }
    json_decref(st);
    if (fflush(stdout) != 0) {
        err("write error: %s", strerror(errno));
        return 1;
    }
    if (rc)
        return rc;
    return running ? 0 : EXIT_NOT_RUNNING;
}
