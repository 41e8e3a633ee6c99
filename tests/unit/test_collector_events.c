/*
 * test_collector_events.c - collector/events.c: span record -> OSProfiler
 * events.  The reference is the Redis list of OSProfiler's trace_synthetic
 * vector (tests/data/collector-osprofiler-reports.json): spans built on the
 * wire with the same ids, times and fields must serialise to exactly the
 * strings OSProfiler's Redis driver stored.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "collector/json.h"
#include "wire_build.h"

TestSuite(collector_events);

static struct wb B;

/* 2024-01-02T03:04:05 UTC */
#define EPOCH_NS 1704164645000000000ull
#define US(x) (EPOCH_NS + (uint64_t)(x) * 1000u)

static json_t *load_reports(void)
{
    const char *top = getenv("LDPROF_TOP");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/collector-osprofiler-reports.json",
             top && *top ? top : ".");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "cannot load %s: %s (run from the top directory or set LDPROF_TOP)",
                       path, je.text);
    return j;
}

static const char *redis_entry(json_t *reports, const char *trace, size_t i)
{
    json_t *lr = json_object_get(json_object_get(reports, trace), "lrange");
    const char *s = json_string_value(json_array_get(lr, i));
    cr_assert_not_null(s);
    return s;
}

static char *compact(json_t *v)
{
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, v, COLL_JSON_COMPACT), 0);
    return b.p;
}

/* Decode the datagram in B and build the events of its only span. */
static void events_of(size_t len, const char *fallback, json_t **start, json_t **stop)
{
    struct coll_dec d;
    struct coll_span sp;
    cr_assert_eq(coll_decode(&d, B.buf, len), 0, "%s", d.errstr);
    cr_assert_eq(coll_decode_next(&d, &sp), 1);
    cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, fallback, start, stop), 0);
}

/* The start event's info.thread is ldprof's own field (OSProfiler's events
 * have none): check it is {"pid": pid, "tid": 777 (wire_build's)} right
 * before "host", then take it out so the rest compares byte for byte with
 * what OSProfiler stored. */
static void take_thread(json_t *start, uint32_t pid)
{
    json_t *info = json_object_get(start, "info");
    char *t = compact(json_object_get(info, "thread"));
    char want[64];
    snprintf(want, sizeof want, "{\"pid\": %u, \"tid\": 777}", pid);
    cr_assert_str_eq(t, want);
    free(t);
    const char *key, *prev = NULL;
    json_t *v;
    json_object_foreach(info, key, v) {
        if (strcmp(key, "host") == 0)
            break;
        prev = key;
    }
    cr_assert(prev && strcmp(prev, "thread") == 0, "thread is not right before host");
    cr_assert_eq(json_object_del(info, "thread"), 0);
}

static void id_from(uint8_t out[16], const char *text)
{
    cr_assert_eq(coll_uuid_parse(text, out), 0, "%s", text);
}

static void proc_demo(const char *service, const char *host)
{
    wb_proc(&B, "host", host);
    wb_proc(&B, "service", service);
    wb_proc(&B, "project", "demo");
}

#define BASE "5ca1ab1e-0000-4000-8000-000000000000"

Test(collector_events, wsgi_span_matches_osprofiler_redis_bytes)
{
    json_t *rep = load_reports();
    uint8_t base[16], a[16];
    id_from(base, BASE);
    id_from(a, "aaaaaaaa-0000-4000-8000-00000000000a");
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    proc_demo("demo-api", "host-a");
    wb_span_begin(&B, LDPROF_KIND_WSGI, 0, base, a, base, US(100), US(50900));
    wb_str(&B, 0, "request.path", "/v2/servers/1");
    wb_str(&B, 0, "request.query", "a=1");
    wb_str(&B, 0, "request.method", "GET");
    wb_str(&B, 0, "request.scheme", "http");
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), NULL, &s, &e);
    take_thread(s, 1);
    char *js = compact(s), *je = compact(e);
    cr_assert_str_eq(js, redis_entry(rep, "trace_synthetic", 10));
    cr_assert_str_eq(je, redis_entry(rep, "trace_synthetic", 0));
    free(js);
    free(je);
    json_decref(s);
    json_decref(e);
    json_decref(rep);
}

Test(collector_events, db_error_span_matches_osprofiler_redis_bytes)
{
    json_t *rep = load_reports();
    uint8_t base[16], a[16], c[16];
    id_from(base, BASE);
    id_from(a, "aaaaaaaa-0000-4000-8000-00000000000a");
    id_from(c, "cccccccc-0000-4000-8000-00000000000c");
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    proc_demo("demo-api", "host-a");
    wb_span_begin(&B, LDPROF_KIND_DB, LDPROF_SPAN_ERROR, base, c, a, US(1999), US(20000));
    wb_str(&B, 0, "db.statement", "SELECT * FROM t WHERE id = ?");
    wb_json(&B, 0, "db.params", "[1]");
    wb_str(&B, LDPROF_TLV_STOP, "etype", "sqlite3.OperationalError");
    wb_str(&B, LDPROF_TLV_STOP, "message", "no such table: t");
    wb_str(&B, LDPROF_TLV_STOP, "db.original_exception", "no such table: t");
    wb_str(&B, LDPROF_TLV_STOP, "db.chained_exception",
           "(sqlite3.OperationalError) no such table: t");
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), NULL, &s, &e);
    take_thread(s, 1);
    char *js = compact(s), *je = compact(e);
    cr_assert_str_eq(js, redis_entry(rep, "trace_synthetic", 8));
    cr_assert_str_eq(je, redis_entry(rep, "trace_synthetic", 4));
    free(js);
    free(je);
    json_decref(s);
    json_decref(e);

    /* the other db span: another process (service/host), params {} */
    uint8_t b[16], d[16];
    id_from(b, "bbbbbbbb-0000-4000-8000-00000000000b");
    id_from(d, "dddddddd-0000-4000-8000-00000000000d");
    wb_begin(&B, LDPROF_MSG_SPANS, 2, 0);
    proc_demo("demo-compute", "host-b");
    wb_span_begin(&B, LDPROF_KIND_DB, 0, base, d, b, US(2500), US(3400));
    wb_str(&B, 0, "db.statement", "SELECT 1");
    wb_json(&B, 0, "db.params", "{}");
    wb_span_end(&B);
    events_of(wb_finish(&B), NULL, &s, &e);
    take_thread(s, 2);
    js = compact(s);
    je = compact(e);
    cr_assert_str_eq(js, redis_entry(rep, "trace_synthetic", 7));
    cr_assert_str_eq(je, redis_entry(rep, "trace_synthetic", 6));
    free(js);
    free(je);
    json_decref(s);
    json_decref(e);
    json_decref(rep);
}

Test(collector_events, tiny_vector_null_project_service_nonascii_host)
{
    /* trace_tiny: no project/service in the process block -> null, and a
     * non-ASCII host; the start event (unfinished span) must match. */
    json_t *rep = load_reports();
    uint8_t base[16], t[16];
    id_from(base, "7e570000-0000-4000-8000-000000000001");
    id_from(t, "7e570000-0000-4000-8000-000000000002");
    uint64_t ns = EPOCH_NS + 123456000ull + 789; /* sub-µs part is dropped */
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&B, "host", "h\xc3\xa9");
    wb_span_begin(&B, LDPROF_KIND_DB, LDPROF_SPAN_UNFINISHED, base, t, base, ns, ns);
    wb_str(&B, 0, "db.statement", "SELECT 1");
    wb_json(&B, 0, "db.params", "[]");
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), NULL, &s, &e);
    cr_assert_null(e, "an unfinished span has no stop event");
    take_thread(s, 1);
    char *js = compact(s);
    cr_assert_str_eq(js, redis_entry(rep, "trace_tiny", 0));
    free(js);
    json_decref(s);
    json_decref(rep);
}

Test(collector_events, key_order_and_stop_fields)
{
    uint8_t id[16], p[16];
    wb_id(id, 0x11111111, 1);
    wb_id(p, 0x22222222, 2);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&B, "service", "svc");
    wb_span_begin(&B, LDPROF_KIND_REDIS, 0, id, id, p, US(0), US(5));
    wb_str(&B, 0, "z", "1");
    wb_int(&B, LDPROF_TLV_STOP, "result.bytes", -42);
    wb_str(&B, 0, "a", "2");
    wb_int(&B, 0, "big", 9007199254740993LL);
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), "fallback-host", &s, &e);
    char *js = compact(s), *je = compact(e);
    cr_assert_str_eq(js, "{\"name\": \"redis-start\", \"base_id\": \"11111111-0000-4000-8000-000000000001\", "
                         "\"trace_id\": \"11111111-0000-4000-8000-000000000001\", \"parent_id\": "
                         "\"22222222-0000-4000-8000-000000000002\", \"timestamp\": "
                         "\"2024-01-02T03:04:05.000000\", \"info\": {\"z\": \"1\", \"a\": \"2\", "
                         "\"big\": 9007199254740993, \"thread\": {\"pid\": 1, \"tid\": 777}, "
                         "\"host\": \"fallback-host\"}, \"project\": null, "
                         "\"service\": \"svc\"}");
    cr_assert_str_eq(je, "{\"name\": \"redis-stop\", \"base_id\": \"11111111-0000-4000-8000-000000000001\", "
                         "\"trace_id\": \"11111111-0000-4000-8000-000000000001\", \"parent_id\": "
                         "\"22222222-0000-4000-8000-000000000002\", \"timestamp\": "
                         "\"2024-01-02T03:04:05.000005\", \"info\": {\"result\": {\"bytes\": -42}, "
                         "\"host\": \"fallback-host\"}, \"project\": null, \"service\": \"svc\"}");
    free(js);
    free(je);
    json_decref(s);
    json_decref(e);
}

static char *info_of(json_t *ev)
{
    char *s = compact(json_object_get(ev, "info"));
    json_decref(ev);
    return s;
}

Test(collector_events, nesting_rules)
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&B, "host", "h");
    wb_span_begin(&B, LDPROF_KIND_HTTP, LDPROF_SPAN_TRUNCATED, id, id, id, 1000, 2000);
    wb_str(&B, 0, "request.path", "/p");
    wb_str(&B, 0, "x", "scalar");
    wb_str(&B, 0, "request.headers.accept", "*/*");
    wb_str(&B, 0, "x.y", "flat");        /* x is a string: kept flat */
    wb_str(&B, 0, "request.path", "/q"); /* repeated: replaced in place */
    wb_json(&B, 0, "doc", "{\"b\": 1, \"a\": [2, 3]}");
    wb_json(&B, 0, "doc.c", "true");     /* nests into the JSON object */
    wb_str(&B, 0, "host", "spoofed");   /* overwritten in place by the host */
    wb_str(&B, 0, "last", "1");
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), NULL, &s, &e);
    char *i = info_of(s);
    cr_assert_str_eq(i, "{\"request\": {\"path\": \"/q\", \"headers\": {\"accept\": \"*/*\"}}, "
                        "\"x\": \"scalar\", \"x.y\": \"flat\", \"doc\": {\"b\": 1, \"a\": [2, 3], "
                        "\"c\": true}, \"host\": \"h\", \"last\": \"1\", \"ldprof\": "
                        "{\"truncated\": true}, \"thread\": {\"pid\": 1, \"tid\": 777}}");
    free(i);
    i = info_of(e);
    cr_assert_str_eq(i, "{\"host\": \"h\"}");
    free(i);
}

Test(collector_events, string_values_are_escaped_and_sanitised)
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&B, "host", "h");
    wb_span_begin(&B, LDPROF_KIND_DB, 0, id, id, id, 1000, 2000);
    static const char v[] = "q\"\\\n\x01\x7f\xc3\xa9\xf0\x9f\x98\x80\xff\0end";
    wb_tlv(&B, LDPROF_TLV_STR, "db.statement", v, sizeof v - 1);
    wb_span_end(&B);
    json_t *s, *e;
    events_of(wb_finish(&B), NULL, &s, &e);
    char *i = info_of(s);
    cr_assert_str_eq(i, "{\"db\": {\"statement\": \"q\\\"\\\\\\n\\u0001\\u007f\\u00e9\\ud83d\\ude00"
                        "\\ufffd\\u0000end\"}, \"thread\": {\"pid\": 1, \"tid\": 777}, "
                        "\"host\": \"h\"}");
    free(i);
    json_decref(e);
}

Test(collector_events, every_kind_has_its_name)
{
    static const char *names[] = {NULL, "wsgi", "http", "db", "mongodb", "redis", "pooling", "net"};
    for (unsigned k = 1; k <= LDPROF_KIND_MAX; k++)
        cr_assert_str_eq(coll_kind_name(k), names[k]);
    cr_assert_null(coll_kind_name(0));
    cr_assert_null(coll_kind_name(LDPROF_KIND_MAX + 1));
    for (unsigned k = 1; k <= LDPROF_KIND_MAX; k++)
        cr_assert_null(strchr(coll_kind_name(k), '-'), "names must not contain '-'");
}

Test(collector_events, timestamps_format)
{
    char out[32];
    coll_ts_fmt(0, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000000");
    coll_ts_fmt(999, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000000");
    coll_ts_fmt(1999, out);
    cr_assert_str_eq(out, "1970-01-01T00:00:00.000001");
    coll_ts_fmt(US(100), out);
    cr_assert_str_eq(out, "2024-01-02T03:04:05.000100");
    coll_ts_fmt(951782400000000000ull + 86399999999999ull, out); /* 2000-02-29 */
    cr_assert_str_eq(out, "2000-02-29T23:59:59.999999");
    coll_ts_fmt(UINT64_MAX, out);
    cr_assert_str_eq(out, "2554-07-21T23:34:33.709551");
    coll_ts_fmt_us(-1, out);
    cr_assert_str_eq(out, "1969-12-31T23:59:59.999999");
}

Test(collector_events, timestamps_parse_like_strptime)
{
    int64_t us;
#define OK(s, want)                                                                        \
    do {                                                                                   \
        cr_assert_eq(coll_ts_parse(s, strlen(s), &us), 0, "%s", s);                        \
        cr_assert_eq(us, (int64_t)(want), "%s", s);                                        \
    } while (0)
#define BAD(s) cr_assert_eq(coll_ts_parse(s, strlen(s), &us), -1, "%s", s)
    int64_t t0 = (int64_t)(EPOCH_NS / 1000);
    OK("2024-01-02T03:04:05.000100", t0 + 100);
    OK("2024-01-02T03:04:05.5", t0 + 500000);
    OK("2024-1-2T3:4:5.5", t0 + 500000);
    OK("2024-01-02t03:04:05.000100", t0 + 100);
    OK("2024-01- 2T03:04:05.1", t0 + 100000);
    OK("1970-01-01T00:00:00.0", 0);
    OK("0001-01-01T00:00:00.000000", -62135596800000000LL);
    OK("9999-12-31T23:59:59.999999", 253402300799999999LL);
    OK("2000-02-29T00:00:00.0", 951782400000000LL);
    BAD("2024-01-02T03:04:05");
    BAD("2024-01-02T03:04:05.");
    BAD("2024-01-02T03:04:05.0000001");
    BAD("2024-01-02T03:04:05.000100Z");
    BAD("2024-01-02T03:04:05.000100+00:00");
    BAD("2024-01-02 03:04:05.000100");
    BAD("2024-02-30T03:04:05.0");
    BAD("2023-02-29T03:04:05.0");
    BAD("2024-13-01T03:04:05.0");
    BAD("2024-00-01T03:04:05.0");
    BAD("2024-01-02T24:00:00.0");
    BAD("2024-01-02T03:60:00.0");
    BAD("2024-01-02T03:04:60.0");
    BAD("0000-01-01T00:00:00.0");
    BAD("24-01-02T03:04:05.0");
    BAD("");
    /* round trip */
    char out[32];
    for (int64_t x = -5; x < 5; x++) {
        coll_ts_fmt_us(t0 + x * 123456789, out);
        OK(out, t0 + x * 123456789);
    }
#undef OK
#undef BAD
}

Test(collector_events, uuids)
{
    uint8_t raw[16];
    char out[37];
    cr_assert_eq(coll_uuid_parse("5CA1AB1E-0000-4000-8000-00000000000F", raw), 0);
    coll_uuid_fmt(raw, out);
    cr_assert_str_eq(out, "5ca1ab1e-0000-4000-8000-00000000000f");
    cr_assert_eq(coll_uuid_parse("5ca1ab1e00004000800000000000000f", raw), -1);
    cr_assert_eq(coll_uuid_parse("5ca1ab1e-0000-4000-8000-00000000000g", raw), -1);
    cr_assert_eq(coll_uuid_parse("5ca1ab1e-0000-4000-8000-00000000000", raw), -1);
    cr_assert_eq(coll_uuid_parse("5ca1ab1e+0000-4000-8000-00000000000f", raw), -1);
}
