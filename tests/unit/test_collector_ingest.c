/*
 * test_collector_ingest.c - the daemon's fast ingest path: spans held as
 * wire records (collector/ingest.c) render exactly as spans added as
 * events; the journal's datagram entries (collector/store.c); the
 * decoder's fast JSON check agrees with jansson (collector/decode.c); the
 * daemon replays a journal of both entry kinds after a crash.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "collector/ingest.h"
#include "collector/json.h"
#include "collector/store.h"
#include "collector/trace.h"
#include "tmpdir.h"
#include "wire_build.h"

#define T0 1704164645000100000ull

static char tmpdir[64];

static void setup(void)
{
    unit_tmpdir_make(tmpdir, sizeof tmpdir, "ing");
    coll_ingest_init("fallback-host");
}

static void teardown(void)
{
    unit_tmpdir_remove(tmpdir);
}

TestSuite(collector_ingest, .init = setup, .fini = teardown);

/* One datagram: a wsgi root and `nchild` children of trace `hi`, the
 * children in the order they end; `proc_host` may be NULL (no host in the
 * process block).  Some fields need escaping, one is not UTF-8, one is
 * JSON, one belongs to the stop event, and the last child is unfinished. */
static size_t build(struct wb *b, uint32_t hi, int nchild, const char *proc_host, int seq)
{
    uint8_t base[16], root[16], id[16];
    wb_id(base, hi, 0);
    wb_id(root, hi, 1);
    wb_begin(b, LDPROF_MSG_SPANS, 4242, 0);
    if (proc_host)
        wb_proc(b, "host", proc_host);
    wb_proc(b, "service", "zaqard");
    wb_proc(b, "project", "zaqar");
    for (int c = 0; c < nchild; c++) {
        uint64_t t = T0 + (uint64_t)(seq * 100 + c) * 1000000ull;
        int unfinished = c == nchild - 1;
        wb_id(id, hi, (uint64_t)(seq * 100 + c + 2));
        wb_span_begin(b, c % 2 ? LDPROF_KIND_REDIS : LDPROF_KIND_DB,
                      unfinished ? LDPROF_SPAN_UNFINISHED : 0, base, id, root, t,
                      unfinished ? t : t + 500000);
        wb_str(b, 0, "db.statement", "SELECT \"x\"\n FROM t WHERE a = 'é'");
        wb_str(b, 0, "db.raw", "bad \xff\xfe utf-8");
        wb_json(b, 0, "db.params", "[1, \"two\", {\"k\": null}]");
        wb_int(b, 0, "db.argc", -42);
        if (!unfinished)
            wb_str(b, LDPROF_TLV_STOP, "db.status", "PGRES_TUPLES_OK");
        wb_span_end(b);
    }
    wb_span_begin(b, LDPROF_KIND_WSGI, 0, base, root, base, T0, T0 + 900000000ull);
    wb_str(b, 0, "request.path", "/v2/queues");
    wb_int(b, LDPROF_TLV_STOP, "status_code", 201);
    wb_span_end(b);
    return wb_finish(b);
}

/* Add every span of the datagram: held (raw) or as events. */
static void add_all(struct coll_trace *t, const void *buf, size_t len, int raw)
{
    struct coll_dec d;
    struct coll_span sp;
    cr_assert_eq(coll_decode(&d, buf, len), 0, "%s", d.errstr);
    while (coll_decode_next(&d, &sp)) {
        if (raw) {
            cr_assert_eq(coll_raw_add(t, &d, &sp), 0);
        } else {
            json_t *start, *stop;
            cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback-host", &start, &stop), 0);
            cr_assert_geq(coll_trace_add_span(t, start, stop), 0);
            json_decref(start);
            json_decref(stop);
        }
    }
}

static char *render(struct coll_trace *t)
{
    struct coll_buf out;
    struct coll_report_ctx ctx;
    coll_buf_init(&out);
    cr_assert_eq(coll_trace_render(t, &out, &ctx), 0, "%s", ctx.errstr);
    return out.p;
}

Test(collector_ingest, held_records_render_as_events_do)
{
    static struct wb a, b, c;
    size_t la = build(&a, 0xa1, 4, "host-a", 0);
    size_t lb = build(&b, 0xa1, 3, NULL, 1); /* a second datagram: fallback host */
    size_t lc = build(&c, 0xa1, 4, "host-a", 0); /* a as again: duplicates */
    struct coll_trace *held = coll_trace_new("x"), *ev = coll_trace_new("x");
    add_all(held, a.buf, la, 1);
    add_all(held, b.buf, lb, 1);
    add_all(held, c.buf, lc, 1);
    cr_assert_eq(coll_raw_count(held), 14);
    cr_assert_eq(held->n, 0, "nothing built before it is needed");
    add_all(ev, a.buf, la, 0);
    add_all(ev, b.buf, lb, 0);
    add_all(ev, c.buf, lc, 0);
    char *x = render(held), *y = render(ev);
    cr_assert_str_eq(x, y);
    /* rendered straight from the records (dumptext.c): still held */
    cr_assert_eq(coll_raw_count(held), 14);
    cr_assert_eq(held->n, 0);
    cr_assert_eq(coll_trace_realize(held), 0);
    cr_assert_null(held->raw, "realized and freed");
    cr_assert_eq(held->n, ev->n);
    cr_assert_eq(held->n, 8, "duplicates merged (4 + the root, 3 more)");
    cr_assert_not_null(strstr(x, "fallback-host"));
    cr_assert_not_null(strstr(x, "\\ufffd"), "bad UTF-8 replaced");
    free(x);
    free(y);
    coll_trace_free(held);
    coll_trace_free(ev);
}

Test(collector_ingest, events_added_later_come_after_held_records)
{
    /* A held trace merged into another, and an event added to a held
     * trace, give what adding everything as events in order gives. */
    static struct wb a, b;
    size_t la = build(&a, 0xb2, 2, "host-b", 0);
    size_t lb = build(&b, 0xb2, 2, "host-b", 1);
    struct coll_trace *held = coll_trace_new("y"), *ev = coll_trace_new("y"),
                      *dst = coll_trace_new("y");
    add_all(held, a.buf, la, 1);
    add_all(ev, a.buf, la, 0);
    add_all(ev, b.buf, lb, 0);
    add_all(dst, b.buf, lb, 1);
    /* the events of b's spans, added directly to `held` */
    struct coll_trace *tmp = coll_trace_new("y");
    add_all(tmp, b.buf, lb, 0);
    for (size_t i = 0; i < tmp->n; i++)
        cr_assert_geq(coll_trace_add_span(held, tmp->v[i].start, tmp->v[i].stop), 0);
    char *x = render(held), *y = render(ev);
    cr_assert_str_eq(x, y);
    free(x);
    /* merge: src held, dst held */
    struct coll_trace *src = coll_trace_new("y");
    add_all(src, a.buf, la, 1);
    cr_assert_gt(coll_trace_merge(dst, src), 0);
    struct coll_trace *ev2 = coll_trace_new("y");
    add_all(ev2, b.buf, lb, 0);
    add_all(ev2, a.buf, la, 0);
    x = render(dst);
    char *z = render(ev2);
    cr_assert_str_eq(x, z);
    free(x);
    free(y);
    free(z);
    coll_trace_free(held);
    coll_trace_free(ev);
    coll_trace_free(dst);
    coll_trace_free(tmp);
    coll_trace_free(src);
    coll_trace_free(ev2);
}

Test(collector_ingest, freeing_held_records)
{
    static struct wb a, b;
    struct coll_trace *t = coll_trace_new("z"), *ev = coll_trace_new("z");
    /* 400 spans of ~300 bytes: the block grows through every size class
     * to a malloc'ed one */
    for (int i = 0; i < 50; i++) {
        size_t la = build(&a, 0xc3, 7, "host-c", i);
        add_all(t, a.buf, la, 1);
        add_all(ev, a.buf, la, 0);
    }
    cr_assert_eq(coll_raw_count(t), 400);
    char *x = render(t), *y = render(ev);
    cr_assert_str_eq(x, y);
    cr_assert_eq(coll_trace_realize(t), 0);
    cr_assert_eq(t->n, 351, "350 children and the root");
    free(x);
    free(y);
    coll_trace_free(t);
    coll_trace_free(ev);
    /* released blocks are reused; a trace freed without being realized */
    size_t lb = build(&b, 0xc4, 9, "host-c", 0);
    for (int i = 0; i < 3; i++) {
        t = coll_trace_new("z");
        for (int k = 0; k < 20; k++)
            add_all(t, b.buf, lb, 1);
        cr_assert_eq(coll_raw_count(t), 200);
        coll_trace_free(t); /* leak-checked under make test ASAN=1 */
    }
}

/* ---- journal entries */

struct seen {
    int kind[8];
    char text[8][64];
    size_t len[8];
    int n;
};

static void scan_cb(void *arg, int kind, const char *p, size_t len)
{
    struct seen *s = arg;
    if (s->n < 8) {
        s->kind[s->n] = kind;
        s->len[s->n] = len;
        snprintf(s->text[s->n], 64, "%.*s", (int)(len < 63 ? len : 63), p);
        s->n++;
    }
}

static void line_cb(void *arg, const char *line, size_t len)
{
    scan_cb(arg, COLL_JENT_LINE, line, len);
}

Test(collector_ingest, journal_datagram_entries)
{
    struct coll_store s;
    char err[256];
    static struct wb a;
    size_t la = build(&a, 0xd4, 2, "host-d", 0);
    cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(coll_store_journal_append(&s, "{\"v\": 1}\n", 9), 0);
    cr_assert_eq(coll_store_journal_append_dgram(&s, a.buf, la), 0);
    cr_assert_eq(coll_store_journal_append_dgram(&s, "ab\ncd", 5), 0);
    cr_assert_eq(coll_store_journal_append(&s, "line two\n", 9), 0);
    cr_assert_eq(s.jsize, (off_t)(9 + 9 + la + 9 + 5 + 9));
    /* a crash in the middle of the next datagram entry */
    cr_assert_eq(coll_store_journal_append(&s, "\x1eLDG\x40\x00\x00\x00partial", 15), 0);
    struct seen v = {0};
    cr_assert_eq(coll_store_journal_scan(&s, scan_cb, &v), 5);
    cr_assert_eq(v.n, 5);
    cr_assert_eq(v.kind[0], COLL_JENT_LINE);
    cr_assert_str_eq(v.text[0], "{\"v\": 1}");
    cr_assert_eq(v.kind[1], COLL_JENT_DGRAM);
    cr_assert_eq(v.len[1], la);
    cr_assert_eq(v.kind[2], COLL_JENT_DGRAM);
    cr_assert_str_eq(v.text[2], "ab\ncd", "a newline inside a datagram is data");
    cr_assert_eq(v.kind[3], COLL_JENT_LINE);
    cr_assert_str_eq(v.text[3], "line two");
    cr_assert_eq(v.kind[4], COLL_JENT_TORN);
    /* the line reader sees only the lines */
    struct seen l = {0};
    cr_assert_eq(coll_store_journal_read(&s, line_cb, &l), 2);
    cr_assert_str_eq(l.text[1], "line two");
    /* the datagram comes back byte for byte and decodes */
    struct coll_buf b;
    coll_buf_init(&b);
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, COLL_JOURNAL_NAME);
    cr_assert_eq(coll_read_file(path, &b), 0);
    cr_assert_eq(memcmp(b.p + 17, a.buf, la), 0);
    struct coll_dec d;
    cr_assert_eq(coll_decode(&d, b.p + 17, la), 0);
    cr_assert_eq(d.hdr.nrec, 3);
    coll_buf_free(&b);
    coll_store_close(&s);
}

/* ---- JSON values: the decoder's verdict is jansson's */

static int decoder_accepts(const char *json, size_t n)
{
    static struct wb b;
    uint8_t base[16], id[16];
    wb_id(base, 0xe5, 0);
    wb_id(id, 0xe5, 1);
    wb_begin(&b, LDPROF_MSG_SPANS, 1, 0);
    wb_span_begin(&b, LDPROF_KIND_DB, 0, base, id, base, T0, T0 + 1);
    wb_tlv(&b, LDPROF_TLV_JSON, "v", json, n);
    wb_span_end(&b);
    size_t len = wb_finish(&b);
    struct coll_dec d;
    return coll_decode(&d, b.buf, len) == 0;
}

static int jansson_accepts(const char *json, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(json, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    json_decref(j);
    return j != NULL;
}

Test(collector_ingest, json_values_checked_as_jansson_does)
{
    static const char *const texts[] = {
        "1", "-0", "0.5", "-12.5e+3", "1E2", "01", "1.", ".5", "-", "+1", "1e", "1e999",
        "-1e999", "1e-999", "123456789012345678", "1234567890123456789",
        "12345678901234567890123", "9223372036854775807", "9223372036854775808",
        "true", "false", "null", "tru", "nul", "True", "\"\"", "\"a\\\"b\\\\c\\/\\n\\t\"",
        "\"\\x\"", "\"\\u0041\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\ud83d\\ude00\"",
        "\"caf\xc3\xa9\"", "\"bad \xff\"", "\"tab\there\"", "\"del\x7f\"", "[]", "{}",
        "[1,]", "[,1]", "[1 2]", "{\"a\":1}", "{\"a\" : [1, {\"b\": null}] }", "{\"a\"}",
        "{\"a\":}", "{1:2}", "{\"a\":1,}", " 1 ", "\t[\n1\r]\n", "1 2", "[", "]", "",
        " ", "\"unterminated", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        size_t n = strlen(texts[i]);
        cr_assert_eq(decoder_accepts(texts[i], n), jansson_accepts(texts[i], n), "%s",
                     texts[i]);
    }
    /* NUL bytes: inside a string only as \u0000, never raw */
    cr_assert_eq(decoder_accepts("\"a\0b\"", 5), jansson_accepts("\"a\0b\"", 5));
    cr_assert_eq(decoder_accepts("1\0", 2), jansson_accepts("1\0", 2));
    /* random short texts over a JSON-ish alphabet */
    static const char alpha[] = "[]{}\",:0123-.eE+tfnul \\a\n\x80";
    srand(6);
    for (int k = 0; k < 20000; k++) {
        char t[12];
        size_t n = (size_t)(rand() % 12);
        for (size_t i = 0; i < n; i++)
            t[i] = alpha[rand() % (int)(sizeof alpha - 1)];
        cr_assert_eq(decoder_accepts(t, n), jansson_accepts(t, n), "%.*s", (int)n, t);
    }
}

/* ---- replay of a journal holding both kinds (the daemon) */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

Test(collector_ingest, daemon_replays_lines_and_datagrams)
{
    /* What a crash leaves: a compacted line (span of datagram a), then the
     * datagram entries of a (again) and b, then a torn entry. */
    static struct wb a, b;
    size_t la = build(&a, 0xf6, 2, "host-f", 0);
    size_t lb = build(&b, 0xf6, 3, "host-f", 1);
    char traces[128], sock[128], logp[128], ready[128], dump[256];
    snprintf(traces, sizeof traces, "%s/t", tmpdir);
    snprintf(sock, sizeof sock, "%s/c.sock", tmpdir);
    snprintf(logp, sizeof logp, "%s/log", tmpdir);
    snprintf(ready, sizeof ready, "%s/ready", tmpdir);
    cr_assert_eq(mkdir(traces, 0700), 0);

    struct coll_trace *want = coll_trace_new("w");
    struct coll_store st;
    char err[256];
    cr_assert_eq(coll_store_open(&st, traces, err, sizeof err), 0, "%s", err);
    struct coll_dec d;
    struct coll_span sp;
    cr_assert_eq(coll_decode(&d, a.buf, la), 0);
    cr_assert(coll_decode_next(&d, &sp));
    json_t *start, *stop;
    cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback-host", &start, &stop), 0);
    struct coll_buf line;
    coll_buf_init(&line);
    char base[37];
    coll_uuid_fmt(sp.hdr.base_id, base);
    json_t *tid = json_object_get(start, "trace_id");
    cr_assert_eq(coll_journal_line(&line, base, tid, start, stop), 0);
    cr_assert_eq(coll_buf_addc(&line, '\n'), 0);
    cr_assert_eq(coll_store_journal_append(&st, line.p, line.len), 0);
    cr_assert_geq(coll_trace_add_span(want, start, stop), 0);
    json_decref(start);
    json_decref(stop);
    coll_buf_free(&line);
    cr_assert_eq(coll_store_journal_append_dgram(&st, a.buf, la), 0);
    cr_assert_eq(coll_store_journal_append_dgram(&st, b.buf, lb), 0);
    cr_assert_eq(coll_store_journal_append(&st, "\x1eLDG\xff", 5), 0);
    coll_store_close(&st);
    add_all(want, a.buf, la, 0);
    add_all(want, b.buf, lb, 0);
    char *expect = render(want);
    coll_trace_free(want);

    const char *bd = getenv("LDPROF_BUILD");
    char bin[256];
    snprintf(bin, sizeof bin, "%s/collector/ldprof-collectord", bd && *bd ? bd : "build");
    cr_assert_eq(access(bin, X_OK), 0, "%s: %s (set LDPROF_BUILD)", bin, strerror(errno));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl(bin, "ldprof-collectord", "--socket", sock, "--dir", traces, "--log", logp,
              "--ready-file", ready, "--idle-ms", "600000", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && access(ready, F_OK) != 0; i++)
        sleep_ms(10);
    cr_assert_eq(access(ready, F_OK), 0, "the collector did not start");
    struct coll_buf got, log;
    coll_buf_init(&got);
    coll_buf_init(&log);
    snprintf(dump, sizeof dump, "%s/%s.json", traces, base);
    cr_assert_eq(coll_read_file(dump, &got), 0, "%s written at replay", dump);
    cr_assert_str_eq(got.p, expect);
    cr_assert_eq(coll_read_file(logp, &log), 0);
    cr_assert_not_null(strstr(log.p, "event=journal_replayed lines=4 bad_lines=1 traces=1"),
                       "%s", log.p);
    kill(pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat jst;
    char jpath[256];
    snprintf(jpath, sizeof jpath, "%s/%s", traces, COLL_JOURNAL_NAME);
    cr_assert_eq(stat(jpath, &jst), 0);
    cr_assert_eq(jst.st_size, 0, "journal emptied once the dump is durable");
    coll_buf_free(&got);
    coll_buf_free(&log);
    free(expect);
}
