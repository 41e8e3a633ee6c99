/*
 * test_collector_store.c - collector/store.c (dumps, journal) and the
 * journal line format of collector/trace.c.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector/json.h"
#include "collector/store.h"
#include "collector/trace.h"
#include "tmpdir.h"

static char tmpdir[64];

static void setup(void)
{
    unit_tmpdir_make(tmpdir, sizeof tmpdir, "st");
}

static void teardown(void)
{
    unit_tmpdir_remove(tmpdir);
}

TestSuite(collector_store, .init = setup, .fini = teardown);

static size_t entries(void)
{
    DIR *d = opendir(tmpdir);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

struct lines {
    char text[8][128];
    size_t n;
};

static void collect(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    if (l->n < 8)
        snprintf(l->text[l->n++], 128, "%.*s", (int)len, line);
}

Test(collector_store, journal_append_read_truncate_replace)
{
    struct coll_store s;
    char err[256];
    cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.jsize, 0);
    cr_assert_eq(coll_store_journal_append(&s, "a\nbb\n", 5), 0);
    cr_assert_eq(coll_store_journal_append(&s, "torn", 4), 0);
    cr_assert_eq(s.jsize, 9);
    cr_assert_eq(coll_store_journal_sync(&s), 0);
    struct lines l = {0};
    cr_assert_eq(coll_store_journal_read(&s, collect, &l), 3);
    cr_assert_str_eq(l.text[0], "a");
    cr_assert_str_eq(l.text[1], "bb");
    cr_assert_str_eq(l.text[2], "torn");

    cr_assert_eq(coll_store_journal_replace(&s, "x\n", 2), 0);
    cr_assert_eq(s.jsize, 2);
    cr_assert_eq(coll_store_journal_append(&s, "y\n", 2), 0);
    memset(&l, 0, sizeof l);
    cr_assert_eq(coll_store_journal_read(&s, collect, &l), 2);
    cr_assert_str_eq(l.text[1], "y");

    cr_assert_eq(coll_store_journal_truncate(&s), 0);
    cr_assert_eq(coll_store_journal_append(&s, "z\n", 2), 0);
    memset(&l, 0, sizeof l);
    cr_assert_eq(coll_store_journal_read(&s, collect, &l), 1);
    cr_assert_str_eq(l.text[0], "z");
    coll_store_close(&s);

    /* reopening keeps the journal and its size */
    cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.jsize, 2);
    coll_store_close(&s);
    cr_assert_eq(entries(), 1, "only journal.jsonl, no temporary files");
}

Test(collector_store, dumps_are_written_atomically)
{
    struct coll_store s;
    char err[256];
    cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_store_read_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", &b), 1);
    cr_assert_eq(coll_store_write_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", "{}\n", 3, 0), 0);
    cr_assert_eq(coll_store_write_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", "[1]\n", 4, 1), 0);
    cr_assert_eq(coll_store_sync_dir(&s), 0);
    cr_assert_eq(coll_store_read_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", &b), 0);
    cr_assert_eq(b.len, 4);
    cr_assert_str_eq(b.p, "[1]\n");
    char path[128];
    snprintf(path, sizeof path, "%s/5ca1ab1e-0000-4000-8000-000000000000.json", tmpdir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(entries(), 2, "journal + dump, no temporary file left");
    /* batch mode: same files, sync through syncfs */
    s.sync_each = 0;
    cr_assert_eq(coll_store_write_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", "[2]\n", 4, 0), 0);
    cr_assert_eq(coll_store_sync_dir(&s), 0);
    coll_buf_reset(&b);
    cr_assert_eq(coll_store_read_dump(&s, "5ca1ab1e-0000-4000-8000-000000000000", &b), 0);
    cr_assert_str_eq(b.p, "[2]\n");
    coll_buf_free(&b);
    coll_store_close(&s);

    snprintf(path, sizeof path, "%s/stats.json", tmpdir);
    cr_assert_eq(coll_write_file_atomic(path, "1", 1, 0), 0);
    cr_assert_eq(coll_write_file_atomic(path, "22", 2, 1), 0);
    coll_buf_init(&b);
    cr_assert_eq(coll_read_file(path, &b), 0);
    cr_assert_str_eq(b.p, "22");
    coll_buf_free(&b);
    cr_assert_eq(entries(), 3);
}

static void expect_file(const char *name, const char *want, size_t wlen, struct stat *st)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_read_file(path, &b), 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(b.len, wlen, "%s: %zu bytes, want %zu", name, b.len, wlen);
    cr_assert(memcmp(b.p, want, wlen) == 0, "%s: content differs", name);
    coll_buf_free(&b);
    cr_assert_eq(stat(path, st), 0);
}

/* coll_store_create_dump: the first dump of a trace, never replacing one
 * that exists, with the bytes, mode and owner coll_store_write_dump()
 * gives, and no file left behind; both ways of linking, both --fsync
 * modes. */
Test(collector_store, first_dumps_are_created_never_replaced)
{
    static char big[300000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    const char *ids[] = {"5ca1ab1e-0000-4000-8000-000000000001",
                         "5ca1ab1e-0000-4000-8000-000000000002",
                         "5ca1ab1e-0000-4000-8000-000000000003",
                         "5ca1ab1e-0000-4000-8000-000000000004"};
    size_t files = 1; /* the journal */
    for (int round = 0; round < 4; round++) {
        struct coll_store s;
        char err[256], name[64], ref[64];
        cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
        cr_assert_eq(s.link_mode, 0);
        s.link_mode = round < 2 ? 0 : 2; /* find out / /proc/self/fd */
        s.sync_each = round % 2;
        const char *id = ids[round];
        const char *data = round == 3 ? big : "{\"a\": 1}\n";
        size_t len = round == 3 ? sizeof big : strlen(data);
        int rc = coll_store_create_dump(&s, id, data, len);
        cr_assert_eq(rc, 0, "round %d: %d %s", round, rc, strerror(errno));
        cr_assert(s.link_mode == 1 || s.link_mode == 2, "link_mode %d", s.link_mode);
        if (round >= 2)
            cr_assert_eq(s.link_mode, 2);
        files++;
        snprintf(name, sizeof name, "%s.json", id);
        struct stat st, st_ref;
        expect_file(name, data, len, &st);
        /* the same bytes written the other way: same mode and owner */
        snprintf(ref, sizeof ref, "ref-%d", round);
        cr_assert_eq(coll_store_write_dump(&s, ref, data, len, 0), 0);
        files++;
        snprintf(ref, sizeof ref, "ref-%d.json", round);
        expect_file(ref, data, len, &st_ref);
        cr_assert_eq(st.st_mode, st_ref.st_mode, "mode %o vs %o", st.st_mode, st_ref.st_mode);
        cr_assert_eq(st.st_uid, st_ref.st_uid);
        cr_assert_eq(st.st_gid, st_ref.st_gid);
        cr_assert_eq(st.st_nlink, 1);
        /* a dump exists: 1, and it is left as it was */
        cr_assert_eq(coll_store_create_dump(&s, id, "[]\n", 3), 1);
        expect_file(name, data, len, &st);
        cr_assert_eq(coll_store_create_dump(&s, "ref-0", "[]\n", 3), 1);
        cr_assert_eq(entries(), files, "no temporary file left (round %d)", round);
        cr_assert_eq(coll_store_sync_dir(&s), 0);
        /* not available here: nothing written, the caller goes the other way */
        s.link_mode = -1;
        cr_assert_eq(coll_store_create_dump(&s, "5ca1ab1e-0000-4000-8000-0000000000ff", "{}\n", 3),
                     -1);
        cr_assert_eq(entries(), files);
        coll_store_close(&s);
    }
}

/* The temporary names the writers use are the ones the start-up clean-up
 * recognises (collector_daemon/stale_temp_files_of_dead_writers_are_removed
 * checks the removal itself); other files' are not. */
Test(collector_store, temporary_names_and_their_pids)
{
    char n[128];
    cr_assert_eq(coll_store_tmp_name(n, sizeof n, "5ca1ab1e-0000-4000-8000-000000000042.json",
                                     4242), 0);
    cr_assert_str_eq(n, ".5ca1ab1e-0000-4000-8000-000000000042.json.tmp.4242");
    cr_assert_eq(coll_store_tmp_pid(n), 4242);
    cr_assert_eq(coll_store_tmp_name(n, sizeof n, COLL_JOURNAL_NAME, 123456789), 0);
    cr_assert_str_eq(n, "." COLL_JOURNAL_NAME ".tmp.123456789");
    cr_assert_eq(coll_store_tmp_pid(n), 123456789);
    cr_assert_eq(coll_store_tmp_name(n, 12, COLL_JOURNAL_NAME, 1), -1);
    cr_assert_eq(errno, ENAMETOOLONG);
    const char *not_ours[] = {".notes.tmp.1",       ".x.json.tmp.12ab",  ".x.json.tmp.",
                              "x.json.tmp.1",       ".json.tmp.1",       ".journal.tmp.1",
                              ".journal.jsonlx.tmp.1", ".x.json.tmp.1234567890",
                              ".x.json.tmp.-1",     "." COLL_JOURNAL_NAME, ".x.json"};
    for (size_t i = 0; i < sizeof not_ours / sizeof not_ours[0]; i++)
        cr_expect_eq(coll_store_tmp_pid(not_ours[i]), 0, "%s", not_ours[i]);
    cr_assert_eq(coll_store_tmp_pid(".a.json.tmp.7"), 7);
    /* a dump written and renamed leaves no temporary file behind */
    struct coll_store s;
    char err[256];
    cr_assert_eq(coll_store_open(&s, tmpdir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(coll_store_write_dump(&s, "5ca1ab1e-0000-4000-8000-000000000042", "{}", 2, 1),
                 0);
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while ((de = readdir(d)))
        cr_expect_eq(coll_store_tmp_pid(de->d_name), 0, "%s left", de->d_name);
    closedir(d);
    coll_store_close(&s);
}

Test(collector_store, open_fails_cleanly)
{
    struct coll_store s;
    char err[256], path[128];
    snprintf(path, sizeof path, "%s/missing", tmpdir);
    cr_assert_eq(coll_store_open(&s, path, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "missing"), "%s", err);
}

static json_t *event(const char *name, const char *trace, const char *ts)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s},s:s,s:n}", "name", name, "base_id",
                     "5ca1ab1e-0000-4000-8000-000000000000", "trace_id", trace, "parent_id",
                     "p", "timestamp", ts, "info", "host", "h", "project", "demo", "service");
}

Test(collector_store, journal_lines)
{
    json_t *s = event("db-start", "t1", "2024-01-02T03:04:05.000100");
    json_t *e = event("db-stop", "t1", "2024-01-02T03:04:05.000200");
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_journal_line(&b, "5ca1ab1e-0000-4000-8000-000000000000",
                                   json_object_get(s, "trace_id"), s, e),
                 0);
    cr_assert_str_eq(
        b.p,
        "{\"v\": 1, \"base_id\": \"5ca1ab1e-0000-4000-8000-000000000000\", \"trace_id\": \"t1\", "
        "\"events\": [{\"name\": \"db-stop\", \"base_id\": \"5ca1ab1e-0000-4000-8000-000000000000\", "
        "\"trace_id\": \"t1\", \"parent_id\": \"p\", \"timestamp\": \"2024-01-02T03:04:05.000200\", "
        "\"info\": {\"host\": \"h\"}, \"project\": \"demo\", \"service\": null}, {\"name\": "
        "\"db-start\", \"base_id\": \"5ca1ab1e-0000-4000-8000-000000000000\", \"trace_id\": "
        "\"t1\", \"parent_id\": \"p\", \"timestamp\": \"2024-01-02T03:04:05.000100\", \"info\": "
        "{\"host\": \"h\"}, \"project\": \"demo\", \"service\": null}]}");
    char base[64];
    json_t *evs = coll_journal_parse(b.p, b.len, base);
    cr_assert_not_null(evs);
    cr_assert_str_eq(base, "5ca1ab1e-0000-4000-8000-000000000000");
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert(json_equal(json_array_get(evs, 0), e));
    json_decref(evs);

    /* every proper prefix (a torn line) is refused */
    for (size_t n = 0; n < b.len; n++)
        cr_assert_null(coll_journal_parse(b.p, n, base), "prefix %zu", n);
    const char *bad[] = {"{}", "[]", "{\"v\": 2, \"base_id\": \"x\", \"events\": [{}]}",
                         "{\"v\": 1, \"base_id\": \"x\", \"events\": []}",
                         "{\"v\": 1, \"base_id\": \"x\", \"events\": [{\"trace_id\": \"t\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_null(coll_journal_parse(bad[i], strlen(bad[i]), base), "%s", bad[i]);
    coll_buf_free(&b);
    json_decref(s);
    json_decref(e);
}

Test(collector_store, trace_merge_rules)
{
    struct coll_trace *t = coll_trace_new("b");
    json_t *s = event("db-start", "t1", "2024-01-02T03:04:05.000100");
    json_t *e = event("db-stop", "t1", "2024-01-02T03:04:05.000200");
    cr_assert_eq(coll_trace_add_span(t, s, NULL), 1, "unfinished span");
    cr_assert_eq(coll_trace_add_span(t, s, NULL), 0, "same again: no change");
    cr_assert_eq(coll_trace_add_span(t, s, e), 1, "now finished");
    cr_assert_eq(t->n, 1);
    cr_assert_eq(coll_trace_add_span(t, s, NULL), 0, "a stop is never lost");
    cr_assert_not_null(t->v[0].stop);
    json_t *bad = json_pack("{s:s}", "name", "x-start");
    cr_assert_eq(coll_trace_add_event(t, bad), -1);
    json_decref(bad);
    coll_trace_free(t);
    json_decref(s);
    json_decref(e);
}
