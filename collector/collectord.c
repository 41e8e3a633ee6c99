/*
 * collector/collectord.c - main() of ldprof-collectord: options, then
 * coll_server_run().  Kept apart from server.c so the unit-test binary can
 * link everything else.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "paths.h"
#include "redis_store.h"
#include "server.h"

static const char usage[] =
    "Usage: ldprof-collectord [OPTION]...\n"
    "Receive ldprof span batches on a unix datagram socket and write one\n"
    "OSProfiler-compatible JSON dump per trace.\n"
    "\n"
    "  --socket PATH      socket to listen on (default: $LDPROF_COLLECTOR, else\n"
    "                     $XDG_RUNTIME_DIR/ldprof/collector.sock, else\n"
    "                     /tmp/ldprof-$UID/collector.sock)\n"
    "  --dir DIR          trace directory (default: $LDPROF_TRACE_DIR, else\n"
    "                     $XDG_STATE_HOME/ldprof/traces, else\n"
    "                     ~/.local/state/ldprof/traces, else /tmp/ldprof-$UID/traces)\n"
    "  --idle-ms N        write a trace N ms after its last span (default 1000)\n"
    "  --log FILE         log to FILE (default: stderr); SIGHUP reopens it\n"
    "  --ready-file PATH  write our pid to PATH once listening (removed at exit)\n"
    "  --stats-file PATH  counters as JSON (default: the socket path with .sock\n"
    "                     replaced by .stats.json), rewritten every second\n"
    "  --journal-max-mb N compact the journal beyond N MiB (default 64)\n"
    "  --fsync MODE       each (default): fsync every dump before its rename;\n"
    "                     batch: fsync only rewrites, one syncfs before the journal\n"
    "                     drops spans (no span is lost either way; much faster)\n"
    "  --redis URI        also push the events of every span kept in memory (not\n"
    "                     those --max-spans-per-trace cuts) to Redis as OSProfiler\n"
    "                     does (LPUSH osprofiler_opt:<base_id>), URI\n"
    "                     redis://HOST[:PORT][/DB]; failures are counted, never\n"
    "                     block ingest, and the dumps are written as always\n"
    "  --max-open-traces N\n"
    "                     at most N traces in memory (default 10000); at the\n"
    "                     limit the least recently active one is written early\n"
    "  --max-spans-per-trace N\n"
    "                     keep at most N spans of one trace (default 20000); more\n"
    "                     are counted, and the dump says how many were dropped\n"
    "  --max-trace-age DURATION\n"
    "                     write a trace that has been open this long as it stands,\n"
    "                     even if spans keep coming (default 10m); later spans\n"
    "                     are merged into its dump\n"
    "                     (0 turns any of these three limits off; what a limit\n"
    "                     cuts is marked in the dump: \"ldprof\" key, see\n"
    "                     docs/formats.md)\n"
    "  --max-traces N     retention: keep the newest N dumps (by modification\n"
    "                     time), removing the oldest (default 0: keep all)\n"
    "  --max-age DURATION retention: remove dumps last written longer ago than\n"
    "                     DURATION (default 0: keep all).  Open traces are never\n"
    "                     removed.\n"
    "  --allow-uid UID[,UID...]\n"
    "                     also accept spans from these users (numbers or names);\n"
    "                     without it only our own uid and root may send.  Makes\n"
    "                     the socket mode 0666 and its directory traversable\n"
    "                     (0711); the kernel-reported uid of every datagram is\n"
    "                     checked (others are counted as rejected, peer_uid)\n"
    "  --debug            also log one line per written dump\n"
    "  --foreground       run in the foreground (the default and only mode: use\n"
    "                     systemd, or `ldprof-collectord &`, to run it in the background)\n"
    "  --help             show this help\n"
    "  --version          show the version\n"
    "\n"
    "SIGTERM/SIGINT: read what is queued, write every trace, remove the socket,\n"
    "exit 0.  SIGHUP: reopen the log file.  Formats: docs/formats.md.\n"
    "DURATION: a number with a unit: ms, s, m, h, d, w (e.g. 90s, 10m, 7d); a\n"
    "bare number is seconds.\n";

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "90s", "10m", "7d", "250ms", "30" (seconds) -> ms.  0 or -1. */
static int parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    char *end;
    errno = 0;
    if (!s || *s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > UINT64_MAX / units[i].ms / 1000)
                return -1;
            *ms = v * units[i].ms;
            return 0;
        }
    }
    return -1;
}

/* "1001,backup,1002" -> uids.  0, or -1 with a message printed. */
static int parse_uids(const char *arg, struct coll_opts *o)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", arg) >= (int)sizeof buf || !*buf) {
        fprintf(stderr, "ldprof-collectord: --allow-uid: bad list '%s'\n", arg);
        return -1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned long v;
        if (parse_uint(tok, 0xfffffffeul, &v) < 0) {
            struct passwd *pw = getpwnam(tok);
            if (!pw) {
                fprintf(stderr,
                        "ldprof-collectord: --allow-uid: '%s' is neither a uid nor a user\n",
                        tok);
                return -1;
            }
            v = pw->pw_uid;
        }
        if (o->nallow_uid == COLL_MAX_ALLOW_UIDS) {
            fprintf(stderr, "ldprof-collectord: --allow-uid: more than %d uids\n",
                    COLL_MAX_ALLOW_UIDS);
            return -1;
        }
        o->allow_uid[o->nallow_uid++] = (uid_t)v;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_SOCKET = 256, O_DIR, O_IDLE, O_LOG, O_READY, O_STATS, O_JMAX, O_FSYNC, O_REDIS, O_DEBUG,
           O_FG, O_HELP, O_VERSION, O_MAXOPEN, O_MAXSPANS, O_MAXTAGE, O_MAXTRACES, O_MAXAGE,
           O_ALLOWUID };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"dir", required_argument, NULL, O_DIR},
        {"idle-ms", required_argument, NULL, O_IDLE},
        {"log", required_argument, NULL, O_LOG},
        {"ready-file", required_argument, NULL, O_READY},
        {"stats-file", required_argument, NULL, O_STATS},
        {"journal-max-mb", required_argument, NULL, O_JMAX},
        {"fsync", required_argument, NULL, O_FSYNC},
        {"redis", required_argument, NULL, O_REDIS},
        {"max-open-traces", required_argument, NULL, O_MAXOPEN},
        {"max-spans-per-trace", required_argument, NULL, O_MAXSPANS},
        {"max-trace-age", required_argument, NULL, O_MAXTAGE},
        {"max-traces", required_argument, NULL, O_MAXTRACES},
        {"max-age", required_argument, NULL, O_MAXAGE},
        {"allow-uid", required_argument, NULL, O_ALLOWUID},
        {"debug", no_argument, NULL, O_DEBUG},
        {"foreground", no_argument, NULL, O_FG},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct coll_opts o;
    char sock[PATH_MAX], dir[PATH_MAX];
    unsigned long v;
    coll_opts_defaults(&o);

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET:
            o.socket_path = optarg;
            break;
        case O_DIR:
            o.dir = optarg;
            break;
        case O_IDLE:
            if (parse_uint(optarg, 86400000ul, &v) < 0) {
                fprintf(stderr, "ldprof-collectord: --idle-ms: not a number of ms: '%s'\n",
                        optarg);
                return 2;
            }
            o.idle_ms = (unsigned)v;
            break;
        case O_LOG:
            o.log_path = optarg;
            break;
        case O_READY:
            o.ready_file = optarg;
            break;
        case O_STATS:
            o.stats_file = optarg;
            break;
        case O_JMAX:
            if (parse_uint(optarg, 1ul << 20, &v) < 0 || v == 0) {
                fprintf(stderr, "ldprof-collectord: --journal-max-mb: bad value '%s'\n",
                        optarg);
                return 2;
            }
            o.journal_max = (size_t)v << 20;
            break;
        case O_FSYNC:
            if (strcmp(optarg, "each") == 0)
                o.fsync_batch = 0;
            else if (strcmp(optarg, "batch") == 0)
                o.fsync_batch = 1;
            else {
                fprintf(stderr, "ldprof-collectord: --fsync: 'each' or 'batch', not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_REDIS: {
            struct coll_redis_uri u;
            if (coll_redis_parse_uri(optarg, &u) < 0) {
                fprintf(stderr,
                        "ldprof-collectord: --redis: expected redis://HOST[:PORT][/DB], not '%s'\n",
                        optarg);
                return 2;
            }
            o.redis_uri = optarg;
            break;
        }
        case O_MAXOPEN:
        case O_MAXSPANS:
        case O_MAXTRACES:
            if (parse_uint(optarg, 1ul << 30, &v) < 0) {
                fprintf(stderr, "ldprof-collectord: %s: not a count (0..%lu): '%s'\n",
                        argv[optind - 1], 1ul << 30, optarg);
                return 2;
            }
            if (c == O_MAXOPEN)
                o.max_open_traces = v;
            else if (c == O_MAXSPANS)
                o.max_spans_per_trace = v;
            else
                o.max_traces = v;
            break;
        case O_MAXTAGE:
        case O_MAXAGE: {
            uint64_t ms;
            if (parse_duration(optarg, &ms) < 0) {
                fprintf(stderr,
                        "ldprof-collectord: %s: not a duration (e.g. 90s, 10m, 7d, 0): '%s'\n",
                        c == O_MAXTAGE ? "--max-trace-age" : "--max-age", optarg);
                return 2;
            }
            if (c == O_MAXTAGE)
                o.max_trace_age_ms = ms;
            else
                o.max_age_ms = ms;
            break;
        }
        case O_ALLOWUID:
            if (parse_uids(optarg, &o) < 0)
                return 2;
            break;
        case O_DEBUG:
            coll_log_set_level(COLL_LOG_DEBUG);
            break;
        case O_FG:
            break;
        case O_HELP:
            fputs(usage, stdout);
            return 0;
        case O_VERSION:
            printf("ldprof-collectord %s\n", LDPROF_VERSION);
            return 0;
        case ':':
            fprintf(stderr, "ldprof-collectord: option '%s' needs a value (see --help)\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "ldprof-collectord: unknown option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ldprof-collectord: unexpected argument '%s' (see --help)\n",
                argv[optind]);
        return 2;
    }
    if (!o.socket_path) {
        if (coll_default_socket(sock, sizeof sock) < 0) {
            fprintf(stderr, "ldprof-collectord: default socket path too long\n");
            return 1;
        }
        o.socket_path = sock;
    }
    if (!o.dir) {
        if (coll_default_dir(dir, sizeof dir) < 0) {
            fprintf(stderr, "ldprof-collectord: default trace directory too long\n");
            return 1;
        }
        o.dir = dir;
    }
    if (coll_log_open(o.log_path) < 0) {
        fprintf(stderr, "ldprof-collectord: cannot open log %s: %s\n", o.log_path,
                strerror(errno));
        return 1;
    }
    int rc = coll_server_run(&o);
    coll_log_close();
    return rc;
}
