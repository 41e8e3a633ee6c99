/*
 * test_collector_cli.c - the `ldprof` CLI: header signing against the
 * OSProfiler vectors (tests/data/collector-header-vectors.json), list/show
 * rendering and id prefixes (collector/render.c), default paths
 * (collector/paths.c), and the real binary ($LDPROF_BUILD/collector/ldprof)
 * for exit codes, --help everywhere, `trace show --json` byte identity and
 * `ldprof run` (with a harmless stand-in for libldprof.so and a python3
 * command that sends one datagram to $LDPROF_COLLECTOR).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "collector/events.h"
#include "collector/headers.h"
#include "collector/json.h"
#include "collector/paths.h"
#include "collector/render.h"
#include "wire_build.h"

static char tmpdir[64];

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            cr_log_warn("cleanup failed");
        tmpdir[0] = '\0';
    }
}

TestSuite(collector_cli, .timeout = 60, .fini = cleanup);

static json_t *load_data(const char *name)
{
    const char *top = getenv("LDPROF_TOP");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/%s", top && *top ? top : ".", name);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "cannot load %s: %s (run from the top directory or set LDPROF_TOP)",
                       path, je.text);
    return j;
}

static const char *bin(const char *name)
{
    static char path[4][4096];
    static int k;
    char *p = path[k++ % 4];
    const char *b = getenv("LDPROF_BUILD");
    snprintf(p, 4096, "%s/collector/%s", b && *b ? b : "build", name);
    cr_assert_eq(access(p, X_OK), 0, "%s: %s (set LDPROF_BUILD)", p, strerror(errno));
    return p;
}

static void make_tmp(void)
{
    strcpy(tmpdir, "/tmp/ldprof-cli.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

/* Run a shell command, capturing stdout and stderr; returns the exit code. */
static int run(const char *cmd, char **out, char **errout)
{
    char o[128], e[128], full[8192];
    snprintf(o, sizeof o, "%s/.out", tmpdir);
    snprintf(e, sizeof e, "%s/.err", tmpdir);
    snprintf(full, sizeof full, "(%s) >'%s' 2>'%s' </dev/null", cmd, o, e);
    int st = system(full);
    struct coll_buf b;
    FILE *f;
    char tmp[4096];
    size_t n;
    const char *paths[2] = {o, e};
    char **dst[2] = {out, errout};
    for (int i = 0; i < 2; i++) {
        coll_buf_init(&b);
        coll_buf_add(&b, "", 0);
        if ((f = fopen(paths[i], "r"))) {
            while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
                coll_buf_add(&b, tmp, n);
            fclose(f);
        }
        if (dst[i])
            *dst[i] = b.p;
        else
            coll_buf_free(&b);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ------------------------------------------------------------ headers */

Test(collector_cli, headers_match_osprofiler_vectors)
{
    json_t *v = load_data("collector-header-vectors.json");
    json_t *vec = json_object_get(v, "vectors");
    cr_assert_eq(json_array_size(vec), 5);
    for (size_t i = 0; i < json_array_size(vec); i++) {
        json_t *x = json_array_get(vec, i);
        const char *key = json_string_value(json_object_get(x, "key"));
        struct coll_buf info;
        char hmac[41];
        coll_buf_init(&info);
        cr_assert_eq(coll_headers_sign(key, strlen(key),
                                       json_string_value(json_object_get(x, "base_id")),
                                       json_string_value(json_object_get(x, "parent_id")),
                                       &info, hmac),
                     0);
        const char *id = json_string_value(json_object_get(x, "id"));
        cr_assert_str_eq(info.p, json_string_value(json_object_get(x, "x_trace_info")), "%s", id);
        cr_assert_str_eq(hmac, json_string_value(json_object_get(x, "x_trace_hmac")), "%s", id);
        cr_assert_eq(info.len, 140, "%s: always 140 characters", id);
        coll_buf_free(&info);
    }
    json_decref(v);
}

Test(collector_cli, headers_command)
{
    make_tmp();
    char cmd[8192], *out, *err;
    snprintf(cmd, sizeof cmd,
             "'%s' headers --key SECRET_KEY --base-id 11111111-2222-3333-4444-555555555555 "
             "--parent-id AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
             bin("ldprof"));
    cr_assert_eq(run(cmd, &out, &err), 0, "%s", err);
    cr_assert_str_eq(out, "X-Trace-Info: eyJiYXNlX2lkIjogIjExMTExMTExLTIyMjItMzMzMy00NDQ0LTU1NTU1"
                          "NTU1NTU1NSIsICJwYXJlbnRfaWQiOiAiYWFhYWFhYWEtYmJiYi1jY2NjLWRkZGQtZWVlZW"
                          "VlZWVlZWVlIn0=\nX-Trace-HMAC: 916a1e50fffb7fb28b4cb6c70d18058a2928f789\n");
    free(out);
    free(err);

    /* random base id: parent defaults to it */
    snprintf(cmd, sizeof cmd, "'%s' headers --key k", bin("ldprof"));
    cr_assert_eq(run(cmd, &out, &err), 0);
    cr_assert_eq(strncmp(out, "X-Trace-Info: ", 14), 0);
    char b64[200];
    cr_assert_eq(sscanf(out + 14, "%199s", b64), 1);
    for (char *p = b64; *p; p++)
        *p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
    unsigned char dec[200];
    int n = EVP_DecodeBlock(dec, (unsigned char *)b64, (int)strlen(b64));
    cr_assert_gt(n, 0);
    dec[n] = '\0';
    char base[40], parent[40];
    cr_assert_eq(sscanf((char *)dec, "{\"base_id\": \"%36[^\"]\", \"parent_id\": \"%36[^\"]\"}",
                        base, parent), 2, "%s", dec);
    cr_assert_str_eq(base, parent);
    cr_assert_eq(base[14], '4', "UUID4: %s", base);
    free(out);
    free(err);

    snprintf(cmd, sizeof cmd, "'%s' headers", bin("ldprof"));
    cr_assert_eq(run(cmd, NULL, &err), 2);
    cr_assert_not_null(strstr(err, "--key is required"), "%s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' headers --key k --base-id nope", bin("ldprof"));
    cr_assert_eq(run(cmd, NULL, &err), 2);
    cr_assert_not_null(strstr(err, "not a UUID"), "%s", err);
    free(err);
}

/* ------------------------------------------------------------ render */

static const char *synthetic_dump(json_t *rep)
{
    return json_string_value(
        json_object_get(json_object_get(rep, "trace_synthetic"), "show_json_stdout"));
}

Test(collector_cli, summary_of_a_dump)
{
    json_t *rep = load_data("collector-osprofiler-reports.json");
    const char *d = synthetic_dump(rep);
    struct coll_summary s;
    cr_assert_eq(coll_summary_from_dump(d, strlen(d), &s), 0);
    char ts[32];
    coll_ts_fmt_us(s.start_us, ts);
    cr_assert_str_eq(ts, "2024-01-02T03:04:05.000100");
    cr_assert_eq(s.duration_ms, 50);
    cr_assert_eq(s.spans, 6);
    cr_assert_str_eq(s.root, "wsgi GET /v2/servers/1?a=1 (+1)");
    const char *tiny = json_string_value(
        json_object_get(json_object_get(rep, "trace_tiny"), "show_json_stdout"));
    cr_assert_eq(coll_summary_from_dump(tiny, strlen(tiny), &s), 0);
    cr_assert_str_eq(s.root, "db SELECT 1");
    cr_assert_eq(s.spans, 1);
    cr_assert_eq(coll_summary_from_dump("{}", 2, &s), -1);
    cr_assert_eq(coll_summary_from_dump("nope", 4, &s), -1);
    json_decref(rep);
}

Test(collector_cli, tree_rendering)
{
    json_t *rep = load_data("collector-osprofiler-reports.json");
    const char *d = synthetic_dump(rep);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(coll_render_tree(f, d, strlen(d), 20), 0);
    fclose(f);
    cr_assert_not_null(strstr(text, "trace 5ca1ab1e-0000-4000-8000-000000000000\n"), "%s", text);
    cr_assert_not_null(strstr(text, "started 2024-01-02T03:04:05.000100Z, 50 ms, 6 spans"),
                       "%s", text);
    cr_assert_not_null(
        strstr(text, "      0      50  |####################| wsgi [demo-api@host-a] GET "
                     "/v2/servers/1?a=1\n"),
        "%s", text);
    cr_assert_not_null(strstr(text, "      1      18  |########            |   db "
                                    "[demo-api@host-a] SELECT * FROM t WHERE id = ?  ERROR "
                                    "sqlite3.OperationalError: no such table: t\n"),
                       "%s", text);
    cr_assert_not_null(strstr(text, "driver [demo-api@host-a] function.name=demo.driver.Driver.attach  (unfinished)"),
                       "%s", text);
    /* rpc f has an unknown parent: a second top-level row, not indented */
    cr_assert_not_null(strstr(text, "| rpc [demo-compute@host-b]"), "%s", text);
    free(text);
    json_decref(rep);
}

Test(collector_cli, list_rendering)
{
    struct coll_summary v[3] = {
        {.base_id = "a0000000-0000-4000-8000-000000000000", .start_us = 10, .duration_ms = 5,
         .root = "wsgi GET /", .spans = 2},
        {.base_id = "b0000000-0000-4000-8000-000000000000", .start_us = 30, .duration_ms = 1234,
         .root = "db SELECT 1", .spans = 1},
        {.base_id = "c0000000-0000-4000-8000-000000000000", .start_us = 20, .duration_ms = 0,
         .root = "x", .spans = 10},
    };
    coll_summary_sort(v, 3);
    cr_assert_str_eq(v[0].base_id, "b0000000-0000-4000-8000-000000000000");
    cr_assert_str_eq(v[2].base_id, "a0000000-0000-4000-8000-000000000000");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    coll_render_list(f, v, 3);
    fclose(f);
    cr_assert_str_eq(text,
                     "BASE_ID                               START (UTC)                  "
                     "DURATION_MS  ROOT         SPANS\n"
                     "b0000000-0000-4000-8000-000000000000  1970-01-01T00:00:00.000030Z  "
                     "       1234  db SELECT 1      1\n"
                     "c0000000-0000-4000-8000-000000000000  1970-01-01T00:00:00.000020Z  "
                     "          0  x               10\n"
                     "a0000000-0000-4000-8000-000000000000  1970-01-01T00:00:00.000010Z  "
                     "          5  wsgi GET /       2\n");
    free(text);
}

Test(collector_cli, id_prefixes)
{
    const char *cids[] = {"5ca1ab1e-0000-4000-8000-000000000001",
                          "5ca1ab1e-0000-4000-8000-000000000002",
                          "7e570000-0000-4000-8000-000000000001", "7e57"};
    char *const *ids = (char *const *)cids; /* coll_match_id only reads */
    cr_assert_eq(coll_match_id("7e570", ids, 3), 2);
    cr_assert_eq(coll_match_id("7E570000", ids, 3), 2);
    cr_assert_eq(coll_match_id("5ca1", ids, 3), -2);
    cr_assert_eq(coll_match_id("5ca1ab1e-0000-4000-8000-000000000002", ids, 3), 1);
    cr_assert_eq(coll_match_id("ffff", ids, 3), -1);
    cr_assert_eq(coll_match_id("7e57", ids, 4), 3, "an exact id wins over longer ones");
    cr_assert(coll_is_dump_name("5ca1ab1e-0000-4000-8000-000000000001.json"));
    cr_assert(!coll_is_dump_name("5CA1AB1E-0000-4000-8000-000000000001.json"));
    cr_assert(!coll_is_dump_name("journal.jsonl"));
    cr_assert(!coll_is_dump_name(".5ca1ab1e-0000-4000-8000-000000000001.json.tmp.1"));
    cr_assert(!coll_is_dump_name("5ca1ab1e-0000-4000-8000-000000000001.json.bak"));
}

/* ------------------------------------------------------------ paths */

Test(collector_cli, default_paths)
{
    char p[4096], base[64];
    coll_tmp_base(base, sizeof base);
    unsetenv("LDPROF_COLLECTOR");
    unsetenv("LDPROF_TRACE_DIR");
    setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
    setenv("XDG_STATE_HOME", "/home/u/.st", 1);
    cr_assert_eq(coll_default_socket(p, sizeof p), 0);
    cr_assert_str_eq(p, "/run/user/7/ldprof/collector.sock");
    cr_assert_eq(coll_default_dir(p, sizeof p), 0);
    cr_assert_str_eq(p, "/home/u/.st/ldprof/traces");
    setenv("XDG_RUNTIME_DIR", "relative", 1); /* ignored, per XDG */
    unsetenv("XDG_STATE_HOME");
    setenv("HOME", "/home/u", 1);
    cr_assert_eq(coll_default_socket(p, sizeof p), 0);
    char want[128];
    snprintf(want, sizeof want, "%s/collector.sock", base);
    cr_assert_str_eq(p, want);
    cr_assert_eq(coll_default_dir(p, sizeof p), 0);
    cr_assert_str_eq(p, "/home/u/.local/state/ldprof/traces");
    unsetenv("HOME");
    cr_assert_eq(coll_default_dir(p, sizeof p), 0);
    snprintf(want, sizeof want, "%s/traces", base);
    cr_assert_str_eq(p, want);
    setenv("LDPROF_COLLECTOR", "/x/y.sock", 1);
    setenv("LDPROF_TRACE_DIR", "/x/traces", 1);
    cr_assert_eq(coll_default_socket(p, sizeof p), 0);
    cr_assert_str_eq(p, "/x/y.sock");
    cr_assert_eq(coll_default_dir(p, sizeof p), 0);
    cr_assert_str_eq(p, "/x/traces");
    cr_assert_eq(coll_stats_path("/x/y.sock", p, sizeof p), 0);
    cr_assert_str_eq(p, "/x/y.stats.json");
    cr_assert_eq(coll_stats_path("/x/sock", p, sizeof p), 0);
    cr_assert_str_eq(p, "/x/sock.stats.json");
}

Test(collector_cli, private_directories)
{
    make_tmp();
    char d[128], err[512];
    snprintf(d, sizeof d, "%s/a/b/c", tmpdir);
    cr_assert_eq(coll_prepare_dir(d, 1, err, sizeof err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(d, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    chmod(d, 0750);
    cr_assert_eq(coll_prepare_dir(d, 1, err, sizeof err), 0, "group-readable is fine");
    chmod(d, 0770);
    cr_assert_eq(coll_prepare_dir(d, 1, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "group-writable"), "%s", err);
    cr_assert_eq(coll_prepare_dir(d, 0, err, sizeof err), 0, "not strict: group ok");
    chmod(d, 0777);
    cr_assert_eq(coll_prepare_dir(d, 0, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "world-writable"), "%s", err);
    if (geteuid() == 0) {
        cr_assert_eq(chown(d, 12345, 12345), 0);
        chmod(d, 0700);
        cr_assert_eq(coll_prepare_dir(d, 0, err, sizeof err), -1);
        cr_assert_not_null(strstr(err, "owned by uid 12345"), "%s", err);
    }
}

/* ------------------------------------------------------------ the binary */

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(s, f);
    fclose(f);
}

Test(collector_cli, trace_list_and_show)
{
    make_tmp();
    json_t *rep = load_data("collector-osprofiler-reports.json");
    const char *names[] = {"trace_synthetic", "trace_live", "trace_tiny"};
    char path[256], cmd[8192], *out, *err;
    for (int i = 0; i < 3; i++) {
        json_t *t = json_object_get(rep, names[i]);
        snprintf(path, sizeof path, "%s/%s.json", tmpdir,
                 json_string_value(json_object_get(t, "base_id")));
        write_file(path, json_string_value(json_object_get(t, "show_json_stdout")));
    }
    snprintf(path, sizeof path, "%s/journal.jsonl", tmpdir);
    write_file(path, "");
    snprintf(path, sizeof path, "%s/5ca1ab1e-0000-4000-8000-0000000000ff.json", tmpdir);
    write_file(path, "{\"info\": {}, \"children\": []}\n"); /* an empty trace */
    const char *ldprof = bin("ldprof");

    snprintf(cmd, sizeof cmd, "'%s' trace list --dir '%s'", ldprof, tmpdir);
    cr_assert_eq(run(cmd, &out, &err), 0, "%s", err);
    cr_assert_eq(strncmp(out, "BASE_ID ", 8), 0, "%s", out);
    char *l1 = strchr(out, '\n') + 1; /* newest first: live (2026), tiny, synthetic */
    cr_assert_eq(strncmp(l1, "63697250-c951-484f-a7cc-909cb42ac67a  2026-11-24T23:02:42.922379Z", 65),
                 0, "%s", out);
    cr_assert_not_null(strstr(out, "\n5ca1ab1e-0000-4000-8000-000000000000  2024-01-02T03:04:05.000100Z"
                                   "           50  wsgi GET /v2/servers/1?a=1 (+1)    "),
                       "%s", out);
    cr_assert_not_null(strstr(out, "(+1)                   6\n"), "%s", out);
    free(out);
    free(err);

    /* show: unique prefix, --json byte-identical, text tree */
    snprintf(cmd, sizeof cmd, "'%s' trace show 7e57 --dir '%s' --json", ldprof, tmpdir);
    cr_assert_eq(run(cmd, &out, &err), 0, "%s", err);
    cr_assert_str_eq(out, json_string_value(json_object_get(json_object_get(rep, "trace_tiny"),
                                                            "show_json_stdout")));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' trace show --dir '%s' 63697250", ldprof, tmpdir);
    cr_assert_eq(run(cmd, &out, &err), 0, "%s", err);
    cr_assert_not_null(strstr(out, "rpc [demo-api@vm] topic=demo"), "%s", out);
    cr_assert_not_null(strstr(out, "ERROR RuntimeError: attach failed for vol-1"), "%s", out);
    free(out);
    free(err);

    /* errors: ambiguous (1), unknown (1), missing dir (1), usage (2) */
    snprintf(cmd, sizeof cmd, "'%s' trace show 5ca1 --dir '%s'", ldprof, tmpdir);
    cr_assert_eq(run(cmd, &out, &err), 1);
    cr_assert_not_null(strstr(err, "ambiguous: 2 traces match"), "%s", err);
    cr_assert_not_null(strstr(err, "5ca1ab1e-0000-4000-8000-000000000000"), "%s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' trace show abcd --dir '%s'", ldprof, tmpdir);
    cr_assert_eq(run(cmd, NULL, &err), 1);
    cr_assert_not_null(strstr(err, "no trace matches 'abcd'"), "%s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' trace list --dir '%s/nope'", ldprof, tmpdir);
    cr_assert_eq(run(cmd, NULL, &err), 1);
    cr_assert_not_null(strstr(err, "No such file or directory"), "%s", err);
    free(err);
    const char *usage[] = {"trace show", "trace show 'x y'", "trace list --bogus",
                           "trace list --dir", "trace", "trace frob", "frob", "",
                           "trace show a b", "run", "run --bogus -- true"};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' %s", ldprof, usage[i]);
        cr_assert_eq(run(cmd, NULL, &err), 2, "ldprof %s: %s", usage[i], err);
        cr_assert_eq(strncmp(err, "ldprof: ", 8) == 0 || strncmp(err, "Usage:", 6) == 0, 1,
                     "ldprof %s: %s", usage[i], err);
        free(err);
    }
    json_decref(rep);
}

Test(collector_cli, help_everywhere)
{
    make_tmp();
    const char *cmds[] = {"--help", "trace --help", "trace list --help", "trace show --help",
                          "headers --help", "run --help", "--version"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char cmd[4200], *out;
        snprintf(cmd, sizeof cmd, "'%s' %s", bin("ldprof"), cmds[i]);
        cr_assert_eq(run(cmd, &out, NULL), 0, "ldprof %s", cmds[i]);
        cr_assert(strncmp(out, "Usage: ldprof", 13) == 0 || strncmp(out, "ldprof ", 7) == 0,
                  "ldprof %s: %s", cmds[i], out);
        free(out);
    }
}

static const char *hex(const uint8_t *p, size_t n)
{
    static char buf[2 * WB_CAP + 1];
    for (size_t i = 0; i < n; i++)
        sprintf(buf + 2 * i, "%02x", p[i]);
    return buf;
}

Test(collector_cli, run_starts_and_stops_a_collector)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("needs /usr/bin/python3 to send a datagram");
    make_tmp();
    static struct wb b;
    uint8_t base[16], t[16];
    wb_id(base, 0x2a2a2a2a, 1);
    wb_id(t, 0x2a2a2a2a, 2);
    wb_begin(&b, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&b, "host", "h");
    wb_span_begin(&b, LDPROF_KIND_WSGI, 0, base, t, base, 1000000000, 2000000000);
    wb_str(&b, 0, "request.path", "/");
    wb_span_end(&b);
    size_t len = wb_finish(&b);
    /* the stand-in "libldprof.so": any loadable library */
    const char *lib = "/usr/lib/x86_64-linux-gnu/libm.so.6";
    if (access(lib, R_OK) != 0)
        lib = "/lib/x86_64-linux-gnu/libm.so.6";
    char cmd[2 * WB_CAP + 8192], *out, *err;
    snprintf(cmd, sizeof cmd,
             "'%s' run --lib %s --collector '%s/run/c.sock' --dir '%s/traces' --profile KEY -- "
             "/usr/bin/python3 -c 'import os, socket, sys\n"
             "assert os.environ[\"LD_PRELOAD\"].split(\":\")[0].endswith(\"libm.so.6\")\n"
             "assert os.environ[\"LDPROF_PROFILE\"] == \"KEY\"\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "s.sendto(bytes.fromhex(sys.argv[1]), os.environ[\"LDPROF_COLLECTOR\"])\n"
             "sys.exit(3)' %s",
             bin("ldprof"), lib, tmpdir, tmpdir, hex(b.buf, len));
    cr_assert_eq(run(cmd, &out, &err), 3, "%s", err);
    char want[256];
    snprintf(want, sizeof want, "ldprof: trace written: %s/traces/2a2a2a2a-0000-4000-8000-000000000001.json\n",
             tmpdir);
    cr_assert_not_null(strstr(err, want), "%s", err);
    char path[256];
    snprintf(path, sizeof path, "%s/run/c.sock", tmpdir);
    cr_assert_neq(access(path, F_OK), 0, "collector stopped, socket gone");
    free(out);
    free(err);

    /* a collector that is already running is used as it is (not stopped,
     * nothing printed), and a signalled command gives 128 + N */
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", tmpdir);
    pid_t coll = fork();
    cr_assert_geq(coll, 0);
    if (coll == 0) {
        char sock[128], dir[128], log[128];
        snprintf(sock, sizeof sock, "%s/run/c.sock", tmpdir);
        snprintf(dir, sizeof dir, "%s/traces", tmpdir);
        snprintf(log, sizeof log, "%s/own.log", tmpdir);
        execl(bin("ldprof-collectord"), "ldprof-collectord", "--socket", sock, "--dir", dir,
              "--log", log, "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && access(ready, F_OK) != 0; i++)
        usleep(10000);
    cr_assert_eq(access(ready, F_OK), 0, "own collector ready");
    snprintf(cmd, sizeof cmd, "'%s' run --lib %s --collector '%s/run/c.sock' -- sh -c 'kill -TERM $$'",
             bin("ldprof"), lib, tmpdir);
    int rc = run(cmd, &out, &err);
    int alive = kill(coll, 0) == 0;
    kill(coll, SIGTERM);
    int st;
    waitpid(coll, &st, 0);
    cr_assert_eq(rc, 128 + 15, "%s", err);
    cr_assert(alive, "the running collector was left alone");
    cr_assert_null(strstr(err, "trace written"), "%s", err);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(out);
    free(err);

    snprintf(cmd, sizeof cmd, "'%s' run --lib %s --collector '%s/run/c.sock' -- /nonexistent/cmd",
             bin("ldprof"), lib, tmpdir);
    cr_assert_eq(run(cmd, &out, &err), 127, "%s", err);
    cr_assert_not_null(strstr(err, "cannot run /nonexistent/cmd"), "%s", err);
    free(out);
    free(err);

    snprintf(cmd, sizeof cmd, "LDPROF_LIB= '%s' run --lib '%s/none.so' -- true", bin("ldprof"),
             tmpdir);
    cr_assert_eq(run(cmd, NULL, &err), 1, "%s", err);
    cr_assert_not_null(strstr(err, "none.so"), "%s", err);
    free(err);
}
