/*
 * collector/cli.c - main() of the `ldprof` command line tool:
 *
 *   ldprof trace list [--dir DIR] [--since T] [--min-duration MS] [--name S]
 *                     [--errors] [--format table|json]
 *   ldprof trace list --redis URI [the same filters]
 *   ldprof trace show <id> [--dir DIR|--redis URI] [--json|--dot|--chrome|--otlp|--html]
 *   ldprof headers --key K [--base-id ID] [--parent-id ID]
 *   ldprof run [--profile KEY] [--collector PATH] [--dir DIR] [--lib PATH] -- CMD...
 *   ldprof status [--socket PATH] [--stats-file PATH] [--json]   (status.c)
 *
 * Exit status: 0 ok, 1 runtime error (unknown id, missing directory, ...),
 * 2 usage error; `run` passes the command's status on (128+N for signal N).
 * Every error is one line on stderr starting with "ldprof: ".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "export_html.h"
#include "headers.h"
#include "json.h"
#include "paths.h"
#include "redis_list.h"
#include "redis_store.h"
#include "render.h"
#include "report.h"
#include "server.h" /* LDPROF_VERSION */
#include "status.h"
#include "store.h"

#define EXIT_USAGE 2

static const char main_usage[] =
    "Usage: ldprof COMMAND [ARGS]...\n"
    "Zero-code OSProfiler-compatible tracing for unmodified servers.\n"
    "\n"
    "Commands:\n"
    "  trace list               list the traces in the trace directory (or in\n"
    "                           Redis: --redis URI)\n"
    "  trace show ID            show one trace (text tree, --json, --dot, --chrome,\n"
    "                           --otlp, --html)\n"
    "  headers --key K          print signed X-Trace-Info/X-Trace-HMAC headers\n"
    "  run [OPTS] -- CMD...     run CMD under libldprof.so (and a collector)\n"
    "  status [--json]          is the collector running; its counters per sender\n"
    "\n"
    "  --help                   this help (also: ldprof COMMAND --help)\n"
    "  --version                the version\n";

static const char trace_usage[] =
    "Usage: ldprof trace list [--dir DIR|--redis URI] [--since T] [--min-duration MS]\n"
    "                         [--name S] [--errors] [--format table|json]\n"
    "       ldprof trace show ID [--dir DIR|--redis URI]\n"
    "                         [--json|--dot|--chrome|--otlp|--html]\n"
    "Read the per-trace dumps written by ldprof-collectord (or the traces stored\n"
    "in Redis in OSProfiler's layout).\n";

static const char list_usage[] =
    "Usage: ldprof trace list [--dir DIR|--redis URI] [--since T] [--min-duration MS]\n"
    "                         [--name S] [--errors] [--format table|json]\n"
    "List the traces, newest first: base_id, start time (UTC), duration in ms,\n"
    "root span, number of spans.  The filters combine (all must hold).\n"
    "\n"
    "  --dir DIR           trace directory (default: $LDPROF_TRACE_DIR, else\n"
    "                      $XDG_STATE_HOME/ldprof/traces, else\n"
    "                      ~/.local/state/ldprof/traces, else /tmp/ldprof-$UID/traces)\n"
    "  --redis URI         list the traces stored in Redis instead\n"
    "                      (redis://HOST[:PORT][/DB]): every osprofiler_opt:<id> key\n"
    "                      (found with SCAN), as OSProfiler or ldprof-collectord\n"
    "                      --redis store them\n"
    "  --since T           traces that started at or after T: a duration back from\n"
    "                      now (90s, 10m, 2h, 3d, 1w) or a UTC time (2026-11-24,\n"
    "                      2026-11-24T10:00, 2026-11-24T10:00:00[.ffffff][Z])\n"
    "  --min-duration MS   traces lasting at least MS milliseconds (an integer)\n"
    "  --name S            traces with a span whose name contains S, or whose ROOT\n"
    "                      column contains S (e.g. \"wsgi\", \"db\", \"/v2/queues\");\n"
    "                      case-sensitive\n"
    "  --errors            traces with at least one span whose stop event has an\n"
    "                      etype (an exception)\n"
    "  --format F          table (default) or json: an array of objects with the\n"
    "                      columns base_id, start, duration_ms, root, spans, and errors\n"
    "  --help              this help\n"
    "Example: ldprof trace list --since 2h --min-duration 100 --errors --format json\n";

static const char show_usage[] =
    "Usage: ldprof trace show ID [--dir DIR|--redis URI]\n"
    "                            [--json|--dot|--chrome|--otlp|--html]\n"
    "Show one trace as a tree with start offsets and durations in ms and a time\n"
    "bar per span.  ID may be any unique prefix of the base_id.  At most one\n"
    "output format may be given.\n"
    "\n"
    "  --json      print the dump exactly as stored: byte-identical to\n"
    "              `osprofiler trace show --json`\n"
    "  --dot       Graphviz DOT as `osprofiler trace show --dot` prints it\n"
    "              (ldprof trace show ID --dot | dot -Tsvg > trace.svg)\n"
    "  --chrome    Chrome trace-event JSON for Perfetto (ui.perfetto.dev) or\n"
    "              chrome://tracing: spans on their real process and thread\n"
    "              (complete events; async events where spans overlap on one\n"
    "              thread without nesting); spans without thread information\n"
    "              (OSProfiler's) on lanes of one process per service@host\n"
    "  --otlp      OTLP/JSON (resourceSpans) for OpenTelemetry tools: traceId =\n"
    "              base_id (128 bits), spanId = low 64 bits of the span's trace_id\n"
    "  --html      one self-contained HTML page (no network access: inline CSS and\n"
    "              script): the span tree with a timeline, details per span on\n"
    "              click, stats per category\n"
    "              (ldprof trace show ID --html > trace.html)\n"
    "  --dir DIR   trace directory (default as for `ldprof trace list`)\n"
    "  --redis URI read the trace from Redis instead (redis://HOST[:PORT][/DB]):\n"
    "              the events OSProfiler (or ldprof-collectord --redis) pushed to\n"
    "              osprofiler_opt:<id>, in LRANGE order; ID may be a unique prefix\n"
    "              (found with SCAN MATCH osprofiler_opt:ID*)\n"
    "  --help      this help\n";

static const char headers_usage[] =
    "Usage: ldprof headers --key KEY [--base-id ID] [--parent-id ID]\n"
    "Print the OSProfiler trace headers, signed with KEY (one of the server's\n"
    "hmac_keys), one per line, for example:\n"
    "  h=$(ldprof headers --key SECRET_KEY)\n"
    "  curl -H \"$(echo \"$h\" | sed -n 1p)\" -H \"$(echo \"$h\" | sed -n 2p)\" URL\n"
    "The trace is then <dir>/<base_id>.json (base_id: decode X-Trace-Info, or\n"
    "pass your own with --base-id).\n"
    "\n"
    "  --key KEY        HMAC key (required)\n"
    "  --base-id ID     trace id (default: a new random UUID4)\n"
    "  --parent-id ID   parent span id (default: the base id)\n"
    "  --help           this help\n";

static const char run_usage[] =
    "Usage: ldprof run [--profile KEY] [--collector PATH] [--dir DIR] [--lib PATH] -- CMD [ARGS]...\n"
    "Run CMD with libldprof.so preloaded.  When no collector answers on the\n"
    "socket, start ldprof-collectord for the duration of CMD, stop it afterwards\n"
    "(so every trace is written) and print the dump paths on stderr.\n"
    "Exit status: CMD's (128+N when killed by signal N).\n"
    "\n"
    "  --profile KEY     also trace CMD's own outgoing HTTP requests, signed with\n"
    "                    KEY (sets LDPROF_PROFILE)\n"
    "  --collector PATH  collector socket (default: $LDPROF_COLLECTOR, else\n"
    "                    $XDG_RUNTIME_DIR/ldprof/collector.sock, else\n"
    "                    /tmp/ldprof-$UID/collector.sock)\n"
    "  --dir DIR         trace directory of a collector started here\n"
    "  --lib PATH        libldprof.so (default: $LDPROF_LIB, else ../lib/ldprof/ or\n"
    "                    ../lib/ relative to this program, else next to it)\n"
    "  --help            this help\n"
    "ldprof-collectord is looked for in $LDPROF_COLLECTORD, else next to this program.\n";

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...)
{
    va_list ap;
    fputs("ldprof: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Options parsing shared by the subcommands: getopt_long with a leading ':'
 * (missing values reported as ':'), errors as one line + exit status 2. */
static int bad_option(const char *cmd, int c, char **argv)
{
    if (c == ':')
        err("%s: option '%s' needs a value (see ldprof %s --help)", cmd, argv[optind - 1],
            cmd);
    else
        err("%s: unknown option '%s' (see ldprof %s --help)", cmd, argv[optind - 1], cmd);
    return EXIT_USAGE;
}

static const char *resolve_dir(const char *opt, char *buf, size_t n)
{
    if (opt)
        return opt;
    if (coll_default_dir(buf, n) < 0)
        return NULL;
    return buf;
}

/* ------------------------------------------------------------ dump files */

struct dumps {
    char **ids;
    size_t n;
};

static void dumps_free(struct dumps *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ids[i]);
    free(d->ids);
    d->ids = NULL;
    d->n = 0;
}

/* The ids of <dir>/<uuid>.json.  0, or -1 after printing an error. */
static int dumps_list(const char *dir, struct dumps *d)
{
    memset(d, 0, sizeof *d);
    DIR *dp = opendir(dir);
    if (!dp) {
        err("trace directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    size_t cap = 0;
    while ((de = readdir(dp))) {
        if (!coll_is_dump_name(de->d_name))
            continue;
        if (d->n == cap) {
            cap = cap ? cap * 2 : 64;
            char **v = realloc(d->ids, cap * sizeof *v);
            if (!v) {
                closedir(dp);
                err("out of memory");
                return -1;
            }
            d->ids = v;
        }
        d->ids[d->n++] = strndup(de->d_name, 36);
    }
    closedir(dp);
    return 0;
}

/* ------------------------------------------------------------ trace list */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void list_skipped(void *arg, const char *id, const char *why)
{
    err("skipping %s " COLL_REDIS_KEY_PREFIX "%s: %s", (const char *)arg, id, why);
}

/* `trace list --redis URI`: the rows from Redis.  0, 1 (some keys
 * skipped) or -1 after a message. */
static int redis_rows(const char *uri, const struct coll_list_filter *flt,
                      struct coll_summary **rows, size_t *nrows)
{
    char e[256];
    size_t skipped = 0;
    if (coll_redis_list(uri, flt, rows, nrows, &skipped, list_skipped, (void *)uri, e,
                        sizeof e) < 0) {
        err("trace list: %s", e);
        return -1;
    }
    return skipped ? 1 : 0;
}

/* Sort, print (text or --json) and free the rows of `trace list`. */
static void print_list(struct coll_summary *rows, size_t n, int as_json)
{
    coll_summary_sort(rows, n);
    if (as_json)
        coll_render_list_json(stdout, rows, n);
    else
        coll_render_list(stdout, rows, n);
    free(rows);
}

static int cmd_trace_list(int argc, char **argv)
{
    static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                       {"redis", required_argument, NULL, 'R'},
                                       {"since", required_argument, NULL, 's'},
                                       {"min-duration", required_argument, NULL, 'm'},
                                       {"name", required_argument, NULL, 'n'},
                                       {"errors", no_argument, NULL, 'e'},
                                       {"format", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0, 0, 0, 0}};
    const char *diropt = NULL, *redis = NULL;
    char dirbuf[PATH_MAX];
    struct coll_list_filter flt = {.since_us = INT64_MIN, .min_ms = -1};
    int c, as_json = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'd')
            diropt = optarg;
        else if (c == 'R')
            redis = optarg;
        else if (c == 's') {
            if (coll_parse_since(optarg, now_us(), &flt.since_us) < 0) {
                err("trace list: --since '%s' is neither a duration (10m, 2h, 3d) nor a UTC "
                    "time (2026-11-24T10:00:00)",
                    optarg);
                return EXIT_USAGE;
            }
        } else if (c == 'm') {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (!*optarg || *end || errno || v < 0) {
                err("trace list: --min-duration '%s' is not a whole number of milliseconds >= 0",
                    optarg);
                return EXIT_USAGE;
            }
            flt.min_ms = v;
        } else if (c == 'n') {
            flt.name = optarg;
        } else if (c == 'e') {
            flt.errors = 1;
        } else if (c == 'f') {
            if (strcmp(optarg, "json") == 0)
                as_json = 1;
            else if (strcmp(optarg, "table") == 0)
                as_json = 0;
            else {
                err("trace list: --format '%s': use table or json", optarg);
                return EXIT_USAGE;
            }
        } else if (c == 'h') {
            fputs(list_usage, stdout);
            return 0;
        } else
            return bad_option("trace list", c, argv);
    }
    if (optind < argc) {
        err("trace list: unexpected argument '%s' (see ldprof trace list --help)", argv[optind]);
        return EXIT_USAGE;
    }
    if (redis) {
        struct coll_summary *rrows = NULL;
        size_t nr = 0;
        if (diropt) {
            err("trace list: --dir and --redis exclude each other");
            return EXIT_USAGE;
        }
        int r = redis_rows(redis, &flt, &rrows, &nr);
        if (r < 0)
            return 1;
        print_list(rrows, nr, as_json);
        return fflush(stdout) == 0 ? r : 1;
    }
    const char *dir = resolve_dir(diropt, dirbuf, sizeof dirbuf);
    if (!dir) {
        err("trace list: default trace directory path too long");
        return 1;
    }
    struct dumps d;
    if (dumps_list(dir, &d) < 0)
        return 1;
    struct coll_summary *rows = calloc(d.n ? d.n : 1, sizeof *rows);
    size_t nrows = 0;
    int rc = 0;
    if (!rows) {
        err("out of memory");
        dumps_free(&d);
        return 1;
    }
    for (size_t i = 0; i < d.n; i++) {
        char path[PATH_MAX + 64];
        struct coll_buf b;
        coll_buf_init(&b);
        snprintf(path, sizeof path, "%s/%s.json", dir, d.ids[i]);
        if (coll_read_file(path, &b) < 0 ||
            coll_summary_from_dump(b.p ? b.p : "", b.len, &rows[nrows]) < 0) {
            err("skipping %s: not a readable trace dump", path);
            rc = 1;
        } else if (coll_list_match(b.p, b.len, &rows[nrows], &flt)) {
            snprintf(rows[nrows].base_id, sizeof rows[nrows].base_id, "%s", d.ids[i]);
            nrows++;
        }
        coll_buf_free(&b);
    }
    print_list(rows, nrows, as_json);
    dumps_free(&d);
    return rc;
}

/* ------------------------------------------------------------ trace show */

/* "prefix is ambiguous" with the first candidates among `ids`. */
static void ambiguous_id(const char *id, char *const *ids, size_t n)
{
    size_t pl = strlen(id), shown = 0, hits = 0;
    char list[512] = "";
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(ids[i], id, pl) != 0)
            continue;
        hits++;
        if (shown < 5) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", shown ? ", " : "", ids[i]);
            shown++;
        }
    }
    err("trace id prefix '%s' is ambiguous: %zu traces match (%s%s)", id, hits, list,
        hits > shown ? ", ..." : "");
}

/* The full id of the trace `id` (a unique prefix, any case) in Redis, as
 * the directory lookup resolves it (coll_match_id): into out.  0, or -1
 * after a message (no match, ambiguous, Redis error). */
static int redis_resolve_id(const char *uri, const char *id, char *out, size_t outlen)
{
    char e[256];
    char **ids;
    size_t n;
    if (coll_redis_find_ids(uri, id, &ids, &n, e, sizeof e) < 0) {
        err("trace show: %s", e);
        return -1;
    }
    long m = coll_match_id(id, ids, n);
    if (m == -1)
        err("no trace matches '%s' in %s", id, uri);
    else if (m == -2)
        ambiguous_id(id, ids, n);
    else
        snprintf(out, outlen, "%s", ids[m]);
    coll_redis_ids_free(ids, n);
    return m < 0 ? -1 : 0;
}

/* The report of trace `id` read from Redis (LRANGE osprofiler_opt:<id>,
 * OSProfiler's read order), serialised exactly as a dump.  `what` names the
 * source for messages.  0, or -1 after a message. */
static int redis_dump(const char *uri, const char *id, struct coll_buf *b, char *what,
                      size_t wlen)
{
    char e[256];
    snprintf(what, wlen, "%s " COLL_REDIS_KEY_PREFIX "%s", uri, id);
    json_t *evs = coll_redis_fetch(uri, id, e, sizeof e);
    if (!evs) {
        err("trace show: %s", e);
        return -1;
    }
    if (json_array_size(evs) == 0) {
        err("no trace matches '%s' in %s", id, uri);
        json_decref(evs);
        return -1;
    }
    struct coll_report_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    json_t *rep = coll_report_build(evs, &ctx);
    if (!rep) {
        err("%s: cannot build the report: %s", what, ctx.errstr);
        json_decref(evs);
        return -1;
    }
    int r = coll_report_dump(b, rep);
    coll_report_free(rep);
    json_decref(evs);
    if (r < 0 || b->oom) {
        err("%s: out of memory", what);
        return -1;
    }
    return 0;
}

static int cmd_trace_show(int argc, char **argv)
{
    static const struct option lo[] = {{"dir", required_argument, NULL, 'd'},
                                       {"redis", required_argument, NULL, 'R'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"dot", no_argument, NULL, 'D'},
                                       {"chrome", no_argument, NULL, 'C'},
                                       {"otlp", no_argument, NULL, 'O'},
                                       {"html", no_argument, NULL, 'H'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0, 0, 0, 0}};
    const char *diropt = NULL, *id = NULL, *redis = NULL;
    char dirbuf[PATH_MAX];
    int json = 0, fmt = 0, c;
    optind = 1;
    /* permute: the id may come before or after the options */
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (c == 'd')
            diropt = optarg;
        else if (c == 'R')
            redis = optarg;
        else if (c == 'j' || c == 'D' || c == 'C' || c == 'O' || c == 'H') {
            if (fmt && fmt != c) {
                err("trace show: --json, --dot, --chrome, --otlp and --html exclude each "
                    "other");
                return EXIT_USAGE;
            }
            fmt = c;
            json = c == 'j';
        } else if (c == 'h') {
            fputs(show_usage, stdout);
            return 0;
        } else
            return bad_option("trace show", c, argv);
    }
    if (optind >= argc) {
        err("trace show: missing trace id (see ldprof trace show --help)");
        return EXIT_USAGE;
    }
    id = argv[optind];
    if (optind + 1 < argc) {
        err("trace show: unexpected argument '%s' (see ldprof trace show --help)",
            argv[optind + 1]);
        return EXIT_USAGE;
    }
    if (!*id || strlen(id) > 36 || strspn(id, "0123456789abcdefABCDEF-") != strlen(id)) {
        err("trace show: '%s' is not a trace id or id prefix", id);
        return EXIT_USAGE;
    }
    struct coll_buf b;
    coll_buf_init(&b);
    char path[PATH_MAX + 64];
    if (redis) {
        if (diropt) {
            err("trace show: --dir and --redis exclude each other");
            return EXIT_USAGE;
        }
        /* a prefix (or an id in another case) is resolved with SCAN */
        char full[256];
        if (redis_resolve_id(redis, id, full, sizeof full) < 0 ||
            redis_dump(redis, full, &b, path, sizeof path) < 0) {
            coll_buf_free(&b);
            return 1;
        }
        goto render;
    }
    const char *dir = resolve_dir(diropt, dirbuf, sizeof dirbuf);
    if (!dir) {
        err("trace show: default trace directory path too long");
        return 1;
    }
    struct dumps d;
    if (dumps_list(dir, &d) < 0)
        return 1;
    long m = coll_match_id(id, d.ids, d.n);
    if (m == -1) {
        err("no trace matches '%s' in %s", id, dir);
        dumps_free(&d);
        return 1;
    }
    if (m == -2) {
        ambiguous_id(id, d.ids, d.n);
        dumps_free(&d);
        return 1;
    }
    snprintf(path, sizeof path, "%s/%s.json", dir, d.ids[m]);
    dumps_free(&d);
    if (coll_read_file(path, &b) < 0) {
        err("%s: %s", path, strerror(errno));
        coll_buf_free(&b);
        return 1;
    }
render:;
    int rc = 0;
    if (json) {
        if (b.len && fwrite(b.p, 1, b.len, stdout) != b.len)
            rc = 1;
    } else if (fmt) {
        struct coll_buf o;
        coll_buf_init(&o);
        int (*fn)(struct coll_buf *, const char *, size_t) =
            fmt == 'D'   ? coll_export_dot
            : fmt == 'C' ? coll_export_chrome
            : fmt == 'H' ? coll_export_html
                         : coll_export_otlp;
        if (fn(&o, b.p ? b.p : "", b.len) < 0) {
            err("%s: not a trace dump", path);
            rc = 1;
        } else if (o.len && fwrite(o.p, 1, o.len, stdout) != o.len) {
            rc = 1;
        }
        coll_buf_free(&o);
    } else if (coll_render_tree(stdout, b.p ? b.p : "", b.len, 40) < 0) {
        err("%s: not a trace dump", path);
        rc = 1;
    }
    coll_buf_free(&b);
    if (fflush(stdout) != 0) {
        err("write error: %s", strerror(errno));
        rc = 1;
    }
    return rc;
}

static int cmd_trace(int argc, char **argv)
{
    if (argc < 2) {
        err("trace: missing subcommand: list or show (see ldprof trace --help)");
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(trace_usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "list") == 0)
        return cmd_trace_list(argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0)
        return cmd_trace_show(argc - 1, argv + 1);
    err("trace: unknown subcommand '%s' (see ldprof trace --help)", argv[1]);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------ headers */

static int cmd_headers(int argc, char **argv)
{
    static const struct option lo[] = {{"key", required_argument, NULL, 'k'},
                                       {"base-id", required_argument, NULL, 'b'},
                                       {"parent-id", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0, 0, 0, 0}};
    const char *key = NULL, *base = NULL, *parent = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        switch (c) {
        case 'k': key = optarg; break;
        case 'b': base = optarg; break;
        case 'p': parent = optarg; break;
        case 'h': fputs(headers_usage, stdout); return 0;
        default: return bad_option("headers", c, argv);
        }
    }
    if (optind < argc) {
        err("headers: unexpected argument '%s' (see ldprof headers --help)", argv[optind]);
        return EXIT_USAGE;
    }
    if (!key || !*key) {
        err("headers: --key is required (see ldprof headers --help)");
        return EXIT_USAGE;
    }
    uint8_t raw[16];
    char b[37], p[37];
    if (base) {
        /* The preload carries ids as 16 raw bytes, so they must be UUIDs. */
        if (coll_uuid_parse(base, raw) < 0) {
            err("headers: --base-id '%s' is not a UUID", base);
            return EXIT_USAGE;
        }
    } else if (coll_uuid4(raw) < 0) {
        err("headers: no randomness: %s", strerror(errno));
        return 1;
    }
    coll_uuid_fmt(raw, b);
    if (parent) {
        if (coll_uuid_parse(parent, raw) < 0) {
            err("headers: --parent-id '%s' is not a UUID", parent);
            return EXIT_USAGE;
        }
        coll_uuid_fmt(raw, p);
    } else {
        memcpy(p, b, sizeof p);
    }
    struct coll_buf info;
    char hmac[41];
    coll_buf_init(&info);
    if (coll_headers_sign(key, strlen(key), b, p, &info, hmac) < 0) {
        err("headers: signing failed");
        coll_buf_free(&info);
        return 1;
    }
    printf("X-Trace-Info: %s\nX-Trace-HMAC: %s\n", info.p, hmac);
    coll_buf_free(&info);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ run */

static volatile sig_atomic_t run_child = 0;

static void forward_signal(int sig)
{
    if (run_child > 0)
        kill((pid_t)run_child, sig);
}

static int exe_dir(char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t r = readlink("/proc/self/exe", self, sizeof self - 1);
    if (r <= 0)
        return -1;
    self[r] = '\0';
    coll_dirname(self, out, n);
    return 0;
}

static int find_lib(const char *opt, char *out, size_t n)
{
    const char *env = getenv("LDPROF_LIB");
    char bindir[PATH_MAX], cand[PATH_MAX + 32];
    if (opt || (env && *env)) {
        const char *p = opt ? opt : env;
        if (!realpath(p, out) || access(out, R_OK) < 0) {
            err("run: %s %s: %s", opt ? "--lib" : "LDPROF_LIB", p, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (exe_dir(bindir, sizeof bindir) == 0) {
        /* installed layouts first (make install puts the library in
         * $(PREFIX)/lib/ldprof/), then next to the binary, then the build
         * tree ($(O)/collector/ldprof with $(O)/libldprof.so). */
        static const char *const rel[] = {"/../lib/ldprof/libldprof.so", "/../lib/libldprof.so",
                                          "/libldprof.so", "/../libldprof.so",
                                          "/../preload/libldprof.so"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(cand, sizeof cand, "%s%s", bindir, rel[i]);
            if (access(cand, R_OK) == 0 && realpath(cand, out) && strlen(out) < n)
                return 0;
        }
    }
    err("run: cannot find libldprof.so (looked in ../lib/ and next to this program); "
        "use --lib or LDPROF_LIB");
    return -1;
}

static int find_collectord(char *out, size_t n)
{
    const char *env = getenv("LDPROF_COLLECTORD");
    char bindir[PATH_MAX];
    int w;
    if (env && *env) {
        w = snprintf(out, n, "%s", env);
    } else if (exe_dir(bindir, sizeof bindir) == 0) {
        w = snprintf(out, n, "%s/ldprof-collectord", bindir);
    } else {
        w = -1;
    }
    if (w < 0 || (size_t)w >= n) {
        err("run: cannot find ldprof-collectord; set LDPROF_COLLECTORD");
        return -1;
    }
    if (access(out, X_OK) < 0) {
        err("run: ldprof-collectord %s: %s (set LDPROF_COLLECTORD)", out, strerror(errno));
        return -1;
    }
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Start ldprof-collectord in its own process group (a terminal ^C must not
 * stop it before CMD has finished sending) and wait until it is ready.
 * Returns its pid or -1. */
static pid_t start_collector(const char *bin, const char *sock, const char *dir,
                             const char *log, const char *ready)
{
    unlink(ready);
    pid_t pid = fork();
    if (pid < 0) {
        err("run: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execl(bin, "ldprof-collectord", "--socket", sock, "--dir", dir, "--log", log,
              "--ready-file", ready, (char *)NULL);
        fprintf(stderr, "ldprof: run: cannot execute %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) { /* 10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            err("run: ldprof-collectord exited (status %d) before it was ready; see %s",
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), log);
            return -1;
        }
        FILE *f = fopen(ready, "re");
        if (f) {
            long got = 0;
            int ok = fscanf(f, "%ld", &got) == 1 && got == (long)pid;
            fclose(f);
            if (ok)
                return pid;
        }
        sleep_ms(10);
    }
    err("run: ldprof-collectord not ready after 10 s; see %s", log);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return -1;
}

struct snap {
    char name[48];
    struct timespec mtime;
};

/* name+mtime of the dumps in dir (to report what a run wrote). */
static struct snap *snapshot(const char *dir, size_t *n)
{
    struct dumps d;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return NULL;
    closedir(dp);
    if (dumps_list(dir, &d) < 0)
        return NULL;
    struct snap *v = calloc(d.n ? d.n : 1, sizeof *v);
    for (size_t i = 0; v && i < d.n; i++) {
        struct stat st;
        char path[PATH_MAX + 64];
        snprintf(v[*n].name, sizeof v[*n].name, "%s.json", d.ids[i]);
        snprintf(path, sizeof path, "%s/%s", dir, v[*n].name);
        if (stat(path, &st) == 0) {
            v[*n].mtime = st.st_mtim;
            (*n)++;
        }
    }
    dumps_free(&d);
    return v;
}

static void print_new_dumps(const char *dir, const struct snap *before, size_t nb)
{
    size_t na;
    struct snap *after = snapshot(dir, &na);
    int any = 0;
    for (size_t i = 0; after && i < na; i++) {
        int old = 0;
        for (size_t k = 0; k < nb; k++)
            if (strcmp(before[k].name, after[i].name) == 0 &&
                before[k].mtime.tv_sec == after[i].mtime.tv_sec &&
                before[k].mtime.tv_nsec == after[i].mtime.tv_nsec)
                old = 1;
        if (!old) {
            fprintf(stderr, "ldprof: trace written: %s/%s\n", dir, after[i].name);
            any = 1;
        }
    }
    if (!any)
        fprintf(stderr, "ldprof: no trace was written (nothing traced, or no trace headers "
                        "arrived: see ldprof headers)\n");
    free(after);
}

static int cmd_run(int argc, char **argv)
{
    static const struct option lo[] = {{"profile", required_argument, NULL, 'p'},
                                       {"collector", required_argument, NULL, 'c'},
                                       {"dir", required_argument, NULL, 'd'},
                                       {"lib", required_argument, NULL, 'l'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0, 0, 0, 0}};
    const char *profile = NULL, *sockopt = NULL, *diropt = NULL, *libopt = NULL;
    int c;
    optind = 1;
    /* '+': stop at CMD, its options are its own */
    while ((c = getopt_long(argc, argv, "+:", lo, NULL)) != -1) {
        switch (c) {
        case 'p': profile = optarg; break;
        case 'c': sockopt = optarg; break;
        case 'd': diropt = optarg; break;
        case 'l': libopt = optarg; break;
        case 'h': fputs(run_usage, stdout); return 0;
        default: return bad_option("run", c, argv);
        }
    }
    if (optind >= argc) {
        err("run: missing command (see ldprof run --help)");
        return EXIT_USAGE;
    }
    char **cmd = argv + optind;
    if (profile && !*profile) {
        err("run: --profile needs a non-empty key");
        return EXIT_USAGE;
    }

    char lib[PATH_MAX], sock[PATH_MAX], dirbuf[PATH_MAX], bin[PATH_MAX];
    if (find_lib(libopt, lib, sizeof lib) < 0)
        return 1;
    if (sockopt)
        snprintf(sock, sizeof sock, "%s", sockopt);
    else if (coll_default_socket(sock, sizeof sock) < 0) {
        err("run: default socket path too long");
        return 1;
    }
    const char *dir = resolve_dir(diropt, dirbuf, sizeof dirbuf);
    if (!dir) {
        err("run: default trace directory path too long");
        return 1;
    }

    pid_t coll = 0;
    char log[PATH_MAX + 16] = "", ready[PATH_MAX + 16] = "";
    struct snap *before = NULL;
    size_t nbefore = 0;
    int probe = coll_socket_probe(sock);
    if (probe < 0) {
        err("run: collector socket %s: %s", sock, strerror(errno));
        return 1;
    }
    if (probe == 0) {
        if (find_collectord(bin, sizeof bin) < 0)
            return 1;
        size_t l = strlen(sock);
        if (l >= 5 && strcmp(sock + l - 5, ".sock") == 0)
            l -= 5;
        snprintf(log, sizeof log, "%.*s.log", (int)l, sock);
        snprintf(ready, sizeof ready, "%.*s.ready", (int)l, sock);
        /* the collector creates and checks the socket directory; the log
         * and ready files live there, so make sure it exists first */
        char sdir[PATH_MAX], e[512];
        coll_dirname(sock, sdir, sizeof sdir);
        if (coll_prepare_dir(sdir, 1, e, sizeof e) < 0) {
            err("run: %s", e);
            return 1;
        }
        before = snapshot(dir, &nbefore);
        coll = start_collector(bin, sock, dir, log, ready);
        if (coll < 0) {
            free(before);
            return 1;
        }
    } else if (diropt) {
        err("run: note: a collector is already running on %s; --dir is ignored", sock);
    }

    /* LD_PRELOAD = lib[:old] */
    const char *old = getenv("LD_PRELOAD");
    size_t plen = strlen(lib) + (old ? strlen(old) + 2 : 1);
    char *pre = malloc(plen);
    if (!pre) {
        err("out of memory");
        return 1;
    }
    snprintf(pre, plen, "%s%s%s", lib, old && *old ? ":" : "", old && *old ? old : "");

    /* Profile mode: the trace id is chosen here and handed down
     * (LDPROF_TRACE_BASE), so it can be printed once CMD has ended even when
     * CMD leaves without running destructors (dash and others _exit()). */
    char trace_base[37] = "";
    if (profile) {
        uint8_t id[16];
        const char *inh = getenv("LDPROF_TRACE_BASE");
        if (inh && coll_uuid_parse(inh, id) == 0)
            coll_uuid_fmt(id, trace_base);
        else if (coll_uuid4(id) == 0)
            coll_uuid_fmt(id, trace_base);
    }

    pid_t child = fork();
    if (child < 0) {
        err("run: fork: %s", strerror(errno));
        free(pre);
        return 1;
    }
    if (child == 0) {
        setenv("LD_PRELOAD", pre, 1);
        setenv("LDPROF_COLLECTOR", sock, 1);
        if (profile) {
            setenv("LDPROF_PROFILE", profile, 1);
            if (trace_base[0])
                setenv("LDPROF_TRACE_BASE", trace_base, 1);
        }
        execvp(cmd[0], cmd);
        int e = errno;
        fprintf(stderr, "ldprof: run: cannot run %s: %s\n", cmd[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    free(pre);
    /* Like system(3): the terminal's ^C/^\ reach CMD directly; we wait. */
    run_child = child;
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int st = 0;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR)
        ;
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
    if (trace_base[0])
        fprintf(stderr, "Trace ID: %s\nShow it: ldprof trace show %s\n", trace_base, trace_base);

    if (coll > 0) {
        kill(coll, SIGTERM);
        int cst = 0, done = 0;
        for (int i = 0; i < 6000 && !done; i++) { /* 60 s */
            pid_t r = waitpid(coll, &cst, WNOHANG);
            if (r == coll || (r < 0 && errno != EINTR))
                done = 1;
            else
                sleep_ms(10);
        }
        if (!done)
            err("run: ldprof-collectord (pid %ld) still writing after 60 s; left running",
                (long)coll);
        else if (!WIFEXITED(cst) || WEXITSTATUS(cst) != 0)
            err("run: ldprof-collectord ended with an error; see %s", log);
        print_new_dumps(dir, before, nbefore);
        free(before);
    }
    return status;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("ldprof %s\n", LDPROF_VERSION);
        return 0;
    }
    if (strcmp(cmd, "trace") == 0)
        return cmd_trace(argc - 1, argv + 1);
    if (strcmp(cmd, "headers") == 0)
        return cmd_headers(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return coll_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    err("unknown command '%s' (see ldprof --help)", cmd);
    return EXIT_USAGE;
}
