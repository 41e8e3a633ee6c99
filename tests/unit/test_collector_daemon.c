/*
 * test_collector_daemon.c - integration tests of the real ldprof-collectord
 * binary ($LDPROF_BUILD/collector/ldprof-collectord, LDPROF_BUILD defaulting
 * to ./build): a private socket and trace directory per test, datagrams
 * built with wire_build.h, bounded waits for the dumps, which must equal
 * what the collector library renders in-process from the same datagrams.
 * Covers idle flush, late spans (rewrite), bad datagrams, SIGTERM flush,
 * kill -9 + journal replay, stale/live socket handling, unsafe directory
 * refusal and SIGHUP log reopening.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "collector/json.h"
#include "collector/paths.h"
#include "collector/trace.h"
#include "wire_build.h"

/* The collector a test started, killed by the suite's fini when the test
 * ends early (a failed assertion), so no daemon outlives its test. */
static pid_t current_pid;
static char current_dir[64];

static void kill_leftover(void)
{
    if (current_pid > 0) {
        kill(current_pid, SIGKILL);
        waitpid(current_pid, NULL, 0);
        current_pid = 0;
    }
    if (current_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", current_dir);
        if (system(cmd) != 0)
            cr_log_warn("cleanup of %s failed", current_dir);
        current_dir[0] = '\0';
    }
}

TestSuite(collector_daemon, .timeout = 60, .fini = kill_leftover);

struct env {
    char dir[64];      /* private temp dir */
    char sock[128];
    char traces[128];
    char log[128];
    char ready[128];
    char stats[128];
    pid_t pid;
};

static const char *collectord_path(void)
{
    static char path[4096];
    const char *b = getenv("LDPROF_BUILD");
    snprintf(path, sizeof path, "%s/collector/ldprof-collectord", b && *b ? b : "build");
    cr_assert_eq(access(path, X_OK), 0, "%s: %s (set LDPROF_BUILD)", path, strerror(errno));
    return path;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void env_init(struct env *e)
{
    memset(e, 0, sizeof *e);
    strcpy(e->dir, "/tmp/ldprof-ct.XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(current_dir, sizeof current_dir, "%s", e->dir);
    snprintf(e->sock, sizeof e->sock, "%s/run/c.sock", e->dir);
    snprintf(e->traces, sizeof e->traces, "%s/traces", e->dir);
    snprintf(e->log, sizeof e->log, "%s/collectord.log", e->dir);
    snprintf(e->ready, sizeof e->ready, "%s/ready", e->dir);
    snprintf(e->stats, sizeof e->stats, "%s/run/c.stats.json", e->dir);
}

static void env_cleanup(struct env *e)
{
    (void)e;
    kill_leftover();
}

static const char *extra_opt; /* one more option for the collector, e.g. "--fsync=batch" */
static const char *extra_opts[8]; /* more options (NULL-terminated) */

static pid_t spawn(struct env *e, const char *idle_ms)
{
    const char *bin = collectord_path();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* never hold the runner's stdout/stderr (a pipe) open */
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        const char *argv[32] = {"ldprof-collectord", "--socket", e->sock, "--dir", e->traces,
                                "--log", e->log, "--ready-file", e->ready, "--idle-ms",
                                idle_ms, "--debug"};
        size_t n = 12;
        if (extra_opt)
            argv[n++] = extra_opt;
        for (size_t i = 0; i < 8 && extra_opts[i]; i++)
            argv[n++] = extra_opts[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_for(const char *path, unsigned ms)
{
    for (unsigned i = 0; i < ms / 10; i++) {
        if (access(path, F_OK) == 0)
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static void start(struct env *e, const char *idle_ms)
{
    unlink(e->ready); /* a killed collector leaves its ready file behind */
    e->pid = current_pid = spawn(e, idle_ms);
    if (wait_for(e->ready, 10000) < 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", e->log);
        if (system(cmd) != 0)
            cr_log_warn("no log at %s", e->log);
        cr_assert_fail("collector not ready after 10 s (log above)");
    }
}

/* Wait (bounded) for the child to exit; returns its wait status or -1. */
static int wait_exit(pid_t pid, unsigned ms)
{
    for (unsigned i = 0; i < ms / 10; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        sleep_ms(10);
    }
    return -1;
}

static int stop(struct env *e, int sig)
{
    kill(e->pid, sig);
    int st = wait_exit(e->pid, 20000);
    cr_assert_neq(st, -1, "collector did not exit after signal %d", sig);
    e->pid = current_pid = 0;
    return st;
}

static void send_dgram(const char *sock, const void *buf, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    ssize_t r = sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa);
    cr_assert_eq(r, (ssize_t)len, "sendto: %s", strerror(errno));
    close(fd);
}

static char *slurp(const char *path, size_t *len)
{
    struct coll_buf b;
    coll_buf_init(&b);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        coll_buf_add(&b, tmp, n);
    fclose(f);
    if (len)
        *len = b.len;
    return b.p ? b.p : strdup("");
}

/* Entries of a journal (store.h): datagrams framed as "\x1eLDG" + u32
 * length + bytes + "\n", and lines. */
static size_t journal_entries(const char *path)
{
    size_t len = 0, n = 0, off = 0;
    char *s = slurp(path, &len);
    while (off < len) {
        if (len - off >= 9 && memcmp(s + off, "\x1eLDG", 4) == 0) {
            uint32_t dl = (uint32_t)(uint8_t)s[off + 4] | (uint32_t)(uint8_t)s[off + 5] << 8 |
                          (uint32_t)(uint8_t)s[off + 6] << 16 | (uint32_t)(uint8_t)s[off + 7] << 24;
            if (dl > len - off - 9)
                break; /* still being written */
            off += 9 + dl;
        } else {
            char *nl = memchr(s + off, '\n', len - off);
            if (!nl)
                break;
            off = (size_t)(nl - s) + 1;
        }
        n++;
    }
    free(s);
    return n;
}

/* ------------------------------------------------------------ datagrams */

#define T0 1704164645000100000ull
static uint8_t BASE[16];

struct dg {
    struct wb b;
    size_t len;
};

/* Process `pid` (service svc, host h) sends spans of trace BASE. */
static void dg_begin(struct dg *d, uint32_t pid, const char *svc, const char *host)
{
    wb_begin(&d->b, LDPROF_MSG_SPANS, pid, 0);
    wb_proc(&d->b, "host", host);
    wb_proc(&d->b, "service", svc);
    wb_proc(&d->b, "project", "demo");
}

static void dg_span(struct dg *d, uint8_t kind, uint8_t flags, uint64_t tid, uint64_t parent,
                    uint64_t s_us, uint64_t e_us, const char *stmt)
{
    uint8_t t[16], p[16];
    wb_id(t, 0xaaaa0000u + (uint32_t)tid, tid);
    if (parent)
        wb_id(p, 0xaaaa0000u + (uint32_t)parent, parent);
    else
        memcpy(p, BASE, 16);
    wb_span_begin(&d->b, kind, flags, BASE, t, p, T0 + s_us * 1000,
                  flags & LDPROF_SPAN_UNFINISHED ? T0 + s_us * 1000 : T0 + e_us * 1000);
    if (kind == LDPROF_KIND_WSGI) {
        wb_str(&d->b, 0, "request.path", stmt);
        wb_str(&d->b, 0, "request.method", "GET");
    } else {
        wb_str(&d->b, 0, "db.statement", stmt);
    }
    if (flags & LDPROF_SPAN_ERROR) {
        wb_str(&d->b, LDPROF_TLV_STOP, "etype", "OSError");
        wb_str(&d->b, LDPROF_TLV_STOP, "message", "boom");
    }
    wb_span_end(&d->b);
}

static void dg_end(struct dg *d)
{
    d->len = wb_finish(&d->b);
}

/* The dump of these datagrams with the given marker counts. */
static char *expected_marked(struct dg **dgs, size_t n, uint64_t cut, size_t limit,
                             uint64_t early_open, uint64_t early_age)
{
    char id[37];
    coll_uuid_fmt(BASE, id);
    struct coll_trace *t = coll_trace_new(id);
    for (size_t i = 0; i < n; i++) {
        struct coll_dec d;
        struct coll_span sp;
        cr_assert_eq(coll_decode(&d, dgs[i]->b.buf, dgs[i]->len), 0, "%s", d.errstr);
        while (coll_decode_next(&d, &sp)) {
            json_t *s, *e;
            cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "unused", &s, &e), 0);
            coll_trace_add_span(t, s, e);
            json_decref(s);
            json_decref(e);
        }
    }
    t->cut_spans = cut;
    t->cut_limit = limit;
    t->early_open = early_open;
    t->early_age = early_age;
    struct coll_buf b;
    struct coll_report_ctx ctx;
    coll_buf_init(&b);
    cr_assert_eq(coll_trace_render(t, &b, &ctx), 0, "%s", ctx.errstr);
    coll_trace_free(t);
    return b.p;
}

/* What the daemon must write for these datagrams, rendered in-process. */
static char *expected_dump(struct dg **dgs, size_t n)
{
    return expected_marked(dgs, n, 0, 0, 0, 0);
}

static void dump_path(struct env *e, char *out, size_t n)
{
    char id[37];
    coll_uuid_fmt(BASE, id);
    snprintf(out, n, "%s/%s.json", e->traces, id);
}

/* Wait (bounded) until the dump exists and equals `want`. */
static void expect_dump(struct env *e, const char *want, unsigned ms)
{
    char path[256];
    dump_path(e, path, sizeof path);
    char *got = NULL;
    for (unsigned i = 0; i < ms / 20; i++) {
        free(got);
        got = slurp(path, NULL);
        if (got && strcmp(got, want) == 0)
            break;
        sleep_ms(20);
    }
    cr_assert_not_null(got, "no dump at %s after %u ms", path, ms);
    cr_assert_str_eq(got, want, "dump differs from the in-process rendering");
    free(got);
}

static void two_process_trace(struct dg *a, struct dg *b)
{
    wb_id(BASE, 0x5ca1ab1e, 0x77);
    dg_begin(a, 100, "api", "host-a");
    dg_span(a, LDPROF_KIND_DB, LDPROF_SPAN_ERROR, 2, 1, 1000, 19000, "SELECT * FROM t");
    dg_span(a, LDPROF_KIND_WSGI, 0, 1, 0, 0, 50000, "/v2/queues");
    dg_end(a);
    dg_begin(b, 200, "worker", "host-b");
    dg_span(b, LDPROF_KIND_REDIS, 0, 3, 1, 2500, 3400, "GET k");
    dg_span(b, LDPROF_KIND_MONGODB, LDPROF_SPAN_UNFINISHED, 4, 1, 30000, 0, "find");
    dg_end(b);
}

/* ------------------------------------------------------------ tests */

Test(collector_daemon, idle_flush_then_clean_stop)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "100");
    struct stat st;
    cr_assert_eq(stat(e.sock, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", st.st_mode & 0777);
    char sdir[160];
    snprintf(sdir, sizeof sdir, "%s/run", e.dir);
    cr_assert_eq(stat(sdir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);

    send_dgram(e.sock, a.b.buf, a.len);
    send_dgram(e.sock, b.b.buf, b.len);
    struct dg *all[] = {&a, &b};
    char *want = expected_dump(all, 2);
    expect_dump(&e, want, 5000);
    free(want);

    int status = stop(&e, SIGTERM);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %x", status);
    cr_assert_neq(access(e.sock, F_OK), 0, "socket removed at exit");
    cr_assert_neq(access(e.ready, F_OK), 0, "ready file removed at exit");

    char *stats = slurp(e.stats, NULL);
    cr_assert_not_null(stats, "stats file %s", e.stats);
    json_error_t je;
    json_t *j = json_loads(stats, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "datagrams"), "accepted")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "spans")), 4);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "traces"), "written")), 1);
    /* one sending process (this one, by its kernel-reported pid), whose
     * datagrams claimed pids 100 and 200 */
    json_t *snd = json_object_get(j, "senders");
    cr_assert_eq(json_array_size(snd), 1, "%s", stats);
    json_t *s0 = json_array_get(snd, 0);
    cr_assert_eq(json_integer_value(json_object_get(s0, "pid")), getpid());
    cr_assert_eq(json_integer_value(json_object_get(s0, "datagrams")), 2);
    cr_assert_eq(json_integer_value(json_object_get(s0, "pid_mismatches")), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "peers"), "pid_mismatches")), 2);
    json_decref(j);
    free(stats);

    char jpath[200];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", e.traces);
    cr_assert_eq(stat(jpath, &st), 0);
    cr_assert_eq(st.st_size, 0, "journal emptied once every trace is written");
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=stats why=exit"), "%s", log);
    free(log);
    env_cleanup(&e);
}

Test(collector_daemon, late_span_rewrites_the_dump)
{
    struct env e;
    static struct dg a, b, c;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "50");
    send_dgram(e.sock, a.b.buf, a.len);
    struct dg *first[] = {&a};
    char *want = expected_dump(first, 1);
    expect_dump(&e, want, 5000);
    free(want);
    sleep_ms(200); /* the trace has left memory: the rewrite reads the dump */
    send_dgram(e.sock, b.b.buf, b.len);
    dg_begin(&c, 300, "late", "host-c");
    dg_span(&c, LDPROF_KIND_HTTP, 0, 5, 1, 40000, 45000, "/out");
    dg_end(&c);
    send_dgram(e.sock, c.b.buf, c.len);
    struct dg *all[] = {&a, &b, &c};
    want = expected_dump(all, 3);
    expect_dump(&e, want, 5000);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGINT)), 0);
    char *stats = slurp(e.stats, NULL);
    cr_assert_not_null(strstr(stats, "\"rewritten\": 1"), "%s", stats);
    free(stats);
    env_cleanup(&e);
}

Test(collector_daemon, bad_datagrams_are_counted_not_fatal)
{
    struct env e;
    static struct dg a, b, bad;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "50");
    send_dgram(e.sock, "garbage", 7);
    bad = a;
    bad.b.buf[0] ^= 0xff; /* bad magic */
    send_dgram(e.sock, bad.b.buf, bad.len);
    send_dgram(e.sock, a.b.buf, a.len - 1); /* length mismatch */
    bad = a;
    bad.b.buf[32 + (bad.b.buf[20] | bad.b.buf[21] << 8) + 2] = 99; /* kind */
    send_dgram(e.sock, bad.b.buf, bad.len);
    static uint8_t huge[LDPROF_WIRE_MAX_DGRAM + 100];
    memcpy(huge, a.b.buf, 32);
    send_dgram(e.sock, huge, sizeof huge); /* bigger than any datagram */
    send_dgram(e.sock, a.b.buf, a.len);
    struct dg *all[] = {&a};
    char *want = expected_dump(all, 1);
    expect_dump(&e, want, 5000);
    free(want);
    cr_assert_eq(kill(e.pid, 0), 0, "still running");
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    char *stats = slurp(e.stats, NULL);
    json_error_t je;
    json_t *j = json_loads(stats, 0, &je);
    json_t *d = json_object_get(j, "datagrams");
    cr_assert_eq(json_integer_value(json_object_get(d, "rejected")), 5, "%s", stats);
    cr_assert_eq(json_integer_value(json_object_get(d, "accepted")), 1);
    json_t *r = json_object_get(d, "rejected_by_reason");
    cr_assert_eq(json_integer_value(json_object_get(r, "short")), 1);
    cr_assert_eq(json_integer_value(json_object_get(r, "bad_magic")), 1);
    cr_assert_eq(json_integer_value(json_object_get(r, "bad_length")), 1);
    cr_assert_eq(json_integer_value(json_object_get(r, "bad_kind")), 1);
    cr_assert_eq(json_integer_value(json_object_get(r, "too_big")), 1);
    json_decref(j);
    free(stats);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=reject reason=bad_magic"), "%s", log);
    free(log);
    env_cleanup(&e);
}

Test(collector_daemon, sigterm_flushes_pending_traces)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "600000"); /* never idle during the test */
    send_dgram(e.sock, a.b.buf, a.len);
    send_dgram(e.sock, b.b.buf, b.len);
    int status = stop(&e, SIGTERM); /* both datagrams are queued or read */
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct dg *all[] = {&a, &b};
    char *want = expected_dump(all, 2);
    expect_dump(&e, want, 100);
    free(want);
    env_cleanup(&e);
}

Test(collector_daemon, kill9_then_restart_replays_the_journal)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "600000");
    send_dgram(e.sock, a.b.buf, a.len);
    send_dgram(e.sock, b.b.buf, b.len);
    char jpath[200], dpath[256];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", e.traces);
    dump_path(&e, dpath, sizeof dpath);
    for (int i = 0; i < 500 && journal_entries(jpath) < 2; i++)
        sleep_ms(10);
    cr_assert_eq(journal_entries(jpath), 2, "one journal entry per datagram");
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    cr_assert_neq(access(dpath, F_OK), 0, "no dump yet");

    /* a torn line at the end (a crash mid-write) must be survived */
    int fd = open(jpath, O_WRONLY | O_APPEND);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "{\"v\": 1, \"base_", 15), 15);
    close(fd);

    start(&e, "600000"); /* stale socket: removed; journal: replayed */
    struct dg *all[] = {&a, &b};
    char *want = expected_dump(all, 2);
    expect_dump(&e, want, 100); /* written before the ready file */
    free(want);
    struct stat st;
    cr_assert_eq(stat(jpath, &st), 0);
    cr_assert_eq(st.st_size, 0, "journal emptied after the replayed dumps were written");
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=stale_socket_removed"), "%s", log);
    cr_assert_not_null(strstr(log, "event=journal_replayed lines=3 bad_lines=1 traces=1"),
                       "%s", log);
    free(log);

    /* a second restart with an up-to-date dump rewrites nothing */
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    env_cleanup(&e);
}

Test(collector_daemon, fsync_batch_mode_keeps_every_span)
{
    /* same scenario as above with --fsync=batch: idle flush, late span
     * rewrite, kill -9 with a pending trace, replay */
    struct env e;
    static struct dg a, b;
    extra_opt = "--fsync=batch";
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "50");
    send_dgram(e.sock, a.b.buf, a.len);
    struct dg *first[] = {&a};
    char *want = expected_dump(first, 1);
    expect_dump(&e, want, 5000);
    free(want);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "fsync=batch"), "%s", log);
    free(log);
    /* The syncfs() before a journal trim runs on a thread of its own (the
     * socket is read meanwhile); once it is done the journal is trimmed. */
    char jpath0[200];
    struct stat st;
    snprintf(jpath0, sizeof jpath0, "%s/journal.jsonl", e.traces);
    for (int i = 0; i < 500 && (stat(jpath0, &st) != 0 || st.st_size != 0); i++)
        sleep_ms(10);
    cr_assert_eq(stat(jpath0, &st), 0);
    cr_assert_eq(st.st_size, 0, "journal trimmed once the written dump was synced");
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    start(&e, "600000");
    send_dgram(e.sock, b.b.buf, b.len);
    char jpath[200];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", e.traces);
    for (int i = 0; i < 500 && journal_entries(jpath) < 1; i++)
        sleep_ms(10);
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    start(&e, "600000");
    struct dg *all[] = {&a, &b};
    want = expected_dump(all, 2);
    expect_dump(&e, want, 100);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    env_cleanup(&e);
}

Test(collector_daemon, replay_merges_with_an_existing_dump)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "50");
    send_dgram(e.sock, a.b.buf, a.len);
    struct dg *first[] = {&a};
    char *want = expected_dump(first, 1);
    expect_dump(&e, want, 5000);
    free(want);
    sleep_ms(100);
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    start(&e, "600000");
    send_dgram(e.sock, b.b.buf, b.len);
    char jpath[200];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", e.traces);
    for (int i = 0; i < 500 && journal_entries(jpath) < 1; i++)
        sleep_ms(10);
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    start(&e, "600000");
    struct dg *all[] = {&a, &b};
    want = expected_dump(all, 2);
    expect_dump(&e, want, 100);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    env_cleanup(&e);
}

Test(collector_daemon, refuses_a_second_instance_and_unsafe_dirs)
{
    struct env e;
    env_init(&e);
    start(&e, "100");
    /* a second collector on the same socket: refused, the first unharmed */
    struct env e2 = e;
    snprintf(e2.ready, sizeof e2.ready, "%s/ready2", e.dir);
    snprintf(e2.log, sizeof e2.log, "%s/second.log", e.dir);
    pid_t p2 = spawn(&e2, "100");
    int st = wait_exit(p2, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "second instance status %x", st);
    char *log = slurp(e2.log, NULL);
    cr_assert_not_null(strstr(log, "event=already_running"), "%s", log);
    free(log);
    cr_assert_eq(kill(e.pid, 0), 0);
    cr_assert_eq(access(e.sock, F_OK), 0, "first socket still there");
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);

    /* a group-writable socket directory: refused */
    char sdir[160];
    snprintf(sdir, sizeof sdir, "%s/run", e.dir);
    cr_assert_eq(chmod(sdir, 0770), 0);
    pid_t p3 = spawn(&e, "100");
    st = wait_exit(p3, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %x", st);
    log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "group-writable"), "%s", log);
    free(log);

    /* a path that exists and is not a socket: refused, left alone */
    cr_assert_eq(chmod(sdir, 0700), 0);
    FILE *f = fopen(e.sock, "w");
    fputs("precious", f);
    fclose(f);
    pid_t p4 = spawn(&e, "100");
    st = wait_exit(p4, 10000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %x", st);
    char *keep = slurp(e.sock, NULL);
    cr_assert_str_eq(keep, "precious");
    free(keep);
    env_cleanup(&e);
}

Test(collector_daemon, sighup_reopens_the_log)
{
    struct env e;
    env_init(&e);
    start(&e, "100");
    char moved[200];
    snprintf(moved, sizeof moved, "%s.1", e.log);
    cr_assert_eq(rename(e.log, moved), 0);
    kill(e.pid, SIGHUP);
    cr_assert_eq(wait_for(e.log, 5000), 0, "log reopened under its name");
    sleep_ms(50);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=log_reopened"), "%s", log);
    free(log);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    env_cleanup(&e);
}

Test(collector_daemon, help_version_and_bad_options)
{
    const char *bin = collectord_path();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --help | grep -q -- --idle-ms", bin);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s' --version | grep -q '^ldprof-collectord '", bin);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s' --bogus 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' --idle-ms abc 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' --idle-ms 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' --fsync sometimes 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' extra-arg 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
}

/* ------------------------------------------------------------ limits */

static json_t *load_stats(struct env *e)
{
    char *text = slurp(e->stats, NULL);
    cr_assert_not_null(text, "no stats file %s", e->stats);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "stats: %s", je.text);
    free(text);
    return j;
}

/* stats value at "a.b.c" (integers), -1 when absent */
static long long stat_int(json_t *j, const char *path)
{
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = json_object_get(j, k);
    return json_is_integer(j) ? json_integer_value(j) : -1;
}

/* Wait (bounded) until the stats file shows `path` >= `min`. */
static void wait_stat(struct env *e, const char *path, long long min, unsigned ms)
{
    long long v = -1;
    for (unsigned i = 0; i < ms / 50; i++) {
        char *text = slurp(e->stats, NULL);
        json_t *j = text ? json_loads(text, 0, NULL) : NULL;
        free(text);
        v = j ? stat_int(j, path) : -1;
        json_decref(j);
        if (v >= min)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("stats %s: %lld, expected >= %lld within %u ms", path, v, min, ms);
}

static json_t *load_dump(struct env *e)
{
    char path[256];
    dump_path(e, path, sizeof path);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "%s: %s", path, je.text);
    return j;
}

Test(collector_daemon, span_limit_is_counted_and_marked)
{
    struct env e;
    static struct dg a, b, c;
    env_init(&e);
    two_process_trace(&a, &b);
    extra_opts[0] = "--max-spans-per-trace=2";
    start(&e, "100");
    send_dgram(e.sock, a.b.buf, a.len);
    send_dgram(e.sock, b.b.buf, b.len); /* both spans beyond the limit */
    struct dg *first[] = {&a};
    char *want = expected_marked(first, 1, 2, 2, 0, 0);
    expect_dump(&e, want, 5000);
    free(want);
    json_t *d = load_dump(&e);
    json_t *m = json_object_get(d, "ldprof");
    cr_assert(json_is_true(json_object_get(m, "truncated")));
    cr_assert_eq(json_integer_value(json_object_get(m, "spans_dropped")), 2);
    cr_assert_eq(json_integer_value(json_object_get(m, "max_spans_per_trace")), 2);
    cr_assert_null(json_object_get(m, "written_early"));
    json_decref(d);

    /* a late span: the dump already holds the maximum */
    dg_begin(&c, 300, "late", "host-c");
    dg_span(&c, LDPROF_KIND_HTTP, 0, 5, 1, 40000, 45000, "/out");
    dg_end(&c);
    send_dgram(e.sock, c.b.buf, c.len);
    want = expected_marked(first, 1, 3, 2, 0, 0);
    expect_dump(&e, want, 5000);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    json_t *j = load_stats(&e);
    cr_assert_eq(stat_int(j, "limits.spans_dropped"), 3);
    cr_assert_eq(stat_int(j, "limits.max_spans_per_trace"), 2);
    cr_assert_eq(stat_int(j, "spans"), 5, "every span was received");
    json_decref(j);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=span_limit"), "%s", log);
    free(log);
    env_cleanup(&e);
}

Test(collector_daemon, open_trace_limit_writes_the_oldest_early)
{
    struct env e;
    static struct dg a, b, x;
    uint8_t first_base[16];
    env_init(&e);
    two_process_trace(&a, &b);
    memcpy(first_base, BASE, 16);
    extra_opts[0] = "--max-open-traces=1";
    start(&e, "600000");
    send_dgram(e.sock, a.b.buf, a.len);
    wb_id(BASE, 0x0ddba11, 0x99); /* a second trace */
    dg_begin(&x, 400, "other", "host-x");
    dg_span(&x, LDPROF_KIND_WSGI, 0, 7, 0, 0, 1000, "/other");
    dg_end(&x);
    send_dgram(e.sock, x.b.buf, x.len);
    struct dg *second[] = {&x};
    char *want_x = expected_dump(second, 1);
    memcpy(BASE, first_base, 16);
    struct dg *first[] = {&a};
    char *want = expected_marked(first, 1, 0, 0, 1, 0);
    expect_dump(&e, want, 5000); /* written early, idle is 10 minutes */
    free(want);
    json_t *d = load_dump(&e);
    json_t *m = json_object_get(d, "ldprof");
    cr_assert(json_is_false(json_object_get(m, "truncated")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(m, "written_early"),
                                                    "max_open_traces")), 1);
    json_decref(d);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    wb_id(BASE, 0x0ddba11, 0x99);
    expect_dump(&e, want_x, 100); /* no marker: nothing cut */
    free(want_x);
    json_t *j = load_stats(&e);
    cr_assert_eq(stat_int(j, "limits.written_early.max_open_traces"), 1);
    json_decref(j);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=written_early reason=max_open_traces"), "%s", log);
    free(log);
    env_cleanup(&e);
}

/* The trace table (server.c: open addressing by the raw base_id, slots
 * emptied by moving their cluster up): 2,000 traces, at most 1,500 open,
 * two spans each sent in two rounds (the second in reverse order), many
 * records per datagram.  Round 1 writes the 500 oldest early; round 2
 * finds the 1,500 still open and reopens the 500 others, writing 500 more
 * early: exactly 1,000 when every lookup finds its trace (a lookup that
 * missed an open trace would open a second one and write more early).
 * Every dump must then hold both spans of its own trace. */
static void table_round(struct env *e, int second)
{
    static struct dg d;
    int n = 0;
    for (int k = 0; k < 2000; k++) {
        int i = second ? 1999 - k : k;
        if (n == 0)
            dg_begin(&d, 500, "api", "host-a");
        uint8_t base[16], t[16];
        wb_id(base, 0xb0b0b0b0, (uint64_t)i);
        wb_id(t, 0xaaaa0001, (uint64_t)(2 * i + second + 1));
        wb_span_begin(&d.b, LDPROF_KIND_DB, 0, base, t, base, T0 + (uint64_t)second * 1000,
                      T0 + (uint64_t)second * 1000 + 500);
        wb_str(&d.b, 0, "db.statement", "SELECT 1");
        wb_span_end(&d.b);
        if (++n == 300 || k == 1999) {
            dg_end(&d);
            send_dgram(e->sock, d.b.buf, d.len);
            n = 0;
            sleep_ms(5); /* the socket queues few datagrams */
        }
    }
}

Test(collector_daemon, many_traces_each_found_by_its_id)
{
    struct env e;
    env_init(&e);
    extra_opts[0] = "--max-open-traces=1500";
    extra_opts[1] = "--fsync=batch";
    start(&e, "600000");
    table_round(&e, 0);
    table_round(&e, 1);
    wait_stat(&e, "spans", 4000, 20000);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    json_t *j = load_stats(&e);
    cr_assert_eq(stat_int(j, "limits.written_early.max_open_traces"), 1000);
    json_decref(j);
    for (int i = 0; i < 2000; i++) {
        uint8_t base[16], t[16];
        char id[37], path[256];
        wb_id(base, 0xb0b0b0b0, (uint64_t)i);
        coll_uuid_fmt(base, id);
        snprintf(path, sizeof path, "%s/%s.json", e.traces, id);
        char *dump = slurp(path, NULL);
        cr_assert_not_null(dump, "no dump for trace %d", i);
        for (int k = 0; k < 2; k++) {
            wb_id(t, 0xaaaa0001, (uint64_t)(2 * i + k + 1));
            coll_uuid_fmt(t, id);
            cr_assert_not_null(strstr(dump, id), "trace %d lacks span %d", i, k);
        }
        wb_id(t, 0xaaaa0001, (uint64_t)(2 * (i + 1) + 1)); /* the next trace's */
        coll_uuid_fmt(t, id);
        cr_assert_null(strstr(dump, id), "trace %d holds a span of trace %d", i, i + 1);
        free(dump);
    }
    env_cleanup(&e);
}

/* A kill -9 during a dump (or journal) write leaves ".<name>.tmp.<pid>":
 * the next start removes those of dead writers and keeps those of live
 * ones (another collector may share the directory) and other files. */
static void touch_at(const char *dir, const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, "{\"partial", 9), 9);
    close(fd);
}

static int exists_at(const char *dir, const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

Test(collector_daemon, stale_temp_files_of_dead_writers_are_removed)
{
    struct env e;
    env_init(&e);
    start(&e, "600000"); /* creates the directory */
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    pid_t dead = fork(); /* a pid that is surely gone */
    cr_assert_geq(dead, 0);
    if (dead == 0)
        _exit(0);
    cr_assert_eq(waitpid(dead, NULL, 0), dead);
    char dead_dump[128], dead_journal[64], live_dump[128];
    const char *id = "5ca1ab1e-0000-4000-8000-000000000042";
    snprintf(dead_dump, sizeof dead_dump, ".%s.json.tmp.%d", id, (int)dead);
    snprintf(dead_journal, sizeof dead_journal, ".journal.jsonl.tmp.%d", (int)dead);
    snprintf(live_dump, sizeof live_dump, ".%s.json.tmp.%d", id, (int)getpid());
    const char *others[] = {".notes.tmp.1", ".x.json.tmp.12ab", ".x.json.tmp.", "x.json.tmp.1"};
    touch_at(e.traces, dead_dump);
    touch_at(e.traces, dead_journal);
    touch_at(e.traces, live_dump);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        touch_at(e.traces, others[i]);
    start(&e, "600000");
    cr_assert(!exists_at(e.traces, dead_dump), "%s left", dead_dump);
    cr_assert(!exists_at(e.traces, dead_journal), "%s left", dead_journal);
    cr_assert(exists_at(e.traces, live_dump), "%s (a live writer's) removed", live_dump);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        cr_assert(exists_at(e.traces, others[i]), "%s removed", others[i]);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    char *log = slurp(e.log, NULL);
    char want[200];
    snprintf(want, sizeof want, "event=stale_tmp_removed file=%s pid=%d", dead_dump, (int)dead);
    cr_assert_not_null(strstr(log, want), "%s", log);
    snprintf(want, sizeof want, "event=tmp_file_kept file=%s pid=%d", live_dump, (int)getpid());
    cr_assert_not_null(strstr(log, want), "%s", log);
    free(log);
    env_cleanup(&e);
}

Test(collector_daemon, trace_age_limit_writes_and_continues)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    extra_opts[0] = "--max-trace-age=300ms";
    start(&e, "600000");
    send_dgram(e.sock, a.b.buf, a.len);
    struct dg *first[] = {&a};
    char *want = expected_marked(first, 1, 0, 0, 0, 1);
    expect_dump(&e, want, 5000);
    free(want);
    send_dgram(e.sock, b.b.buf, b.len); /* continues the trace: merged into the dump */
    struct dg *all[] = {&a, &b};
    want = expected_marked(all, 2, 0, 0, 0, 2);
    expect_dump(&e, want, 5000);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    json_t *j = load_stats(&e);
    cr_assert_eq(stat_int(j, "limits.written_early.max_trace_age"), 2);
    json_decref(j);
    env_cleanup(&e);
}

/* ------------------------------------------------------------ retention */

static int dump_exists(struct env *e, const char *id)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", e->traces, id);
    return access(path, F_OK) == 0;
}

static void write_old_dump(struct env *e, const char *id, time_t age_s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", e->traces, id);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs("{}\n", f);
    fclose(f);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

Test(collector_daemon, retention_keeps_the_newest_dumps)
{
    struct env e;
    static struct dg x[5];
    char ids[5][37];
    env_init(&e);
    extra_opts[0] = "--max-traces=2";
    start(&e, "50");
    for (int i = 0; i < 5; i++) {
        wb_id(BASE, 0x7e7e0000u + (uint32_t)i, 0x100 + (uint64_t)i);
        coll_uuid_fmt(BASE, ids[i]);
        dg_begin(&x[i], 500, "svc", "host");
        dg_span(&x[i], LDPROF_KIND_WSGI, 0, 10 + (uint64_t)i, 0, 0, 1000, "/r");
        dg_end(&x[i]);
        send_dgram(e.sock, x[i].b.buf, x[i].len);
        for (int k = 0; k < 250 && !dump_exists(&e, ids[i]); k++)
            sleep_ms(20);
        cr_assert(dump_exists(&e, ids[i]) || i < 3, "dump %d written", i);
    }
    wait_stat(&e, "retention.pruned_by_count", 3, 10000);
    for (int i = 0; i < 3; i++)
        cr_assert(!dump_exists(&e, ids[i]), "oldest dump %d pruned", i);
    cr_assert(dump_exists(&e, ids[3]) && dump_exists(&e, ids[4]), "newest two kept");
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=retention_pruned"), "%s", log);
    free(log);
    env_cleanup(&e);
}

Test(collector_daemon, retention_by_age_spares_open_traces)
{
    struct env e;
    static struct dg a, b;
    char old_id[37], fresh_id[37], open_id[37];
    env_init(&e);
    cr_assert_eq(coll_mkdirs(e.traces, 0700), 0);
    wb_id(BASE, 0x01d01d, 1);
    coll_uuid_fmt(BASE, old_id);
    wb_id(BASE, 0xf4e54, 2);
    coll_uuid_fmt(BASE, fresh_id);
    write_old_dump(&e, old_id, 2 * 86400);
    write_old_dump(&e, fresh_id, 0);
    extra_opts[0] = "--max-age=1d";
    start(&e, "600000");
    two_process_trace(&a, &b);
    coll_uuid_fmt(BASE, open_id);
    send_dgram(e.sock, a.b.buf, a.len); /* open for 10 minutes */
    wait_stat(&e, "traces.pending", 1, 5000);
    write_old_dump(&e, open_id, 2 * 86400); /* as if written early, long ago */
    wait_stat(&e, "retention.pruned_by_age", 1, 10000);
    wait_stat(&e, "retention.skipped_open", 1, 10000);
    cr_assert(!dump_exists(&e, old_id), "old dump pruned");
    cr_assert(dump_exists(&e, fresh_id), "fresh dump kept");
    cr_assert(dump_exists(&e, open_id), "the dump of an open trace is never pruned");
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    env_cleanup(&e);
}

/* ------------------------------------------------------------ peers */

/* Send `buf` as uid/gid 65534 (nobody) from a child; its errno (0: sent)
 * and pid. */
static int send_as_nobody(const char *sock, const void *buf, size_t len, pid_t *child)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
            _exit(100);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
        ssize_t r = sendto(fd, buf, len, 0, (struct sockaddr *)&sa, sizeof sa);
        _exit(r == (ssize_t)len ? 0 : (errno & 0x7f));
    }
    int st = wait_exit(pid, 10000);
    cr_assert(WIFEXITED(st), "child status %x", st);
    cr_assert_neq(WEXITSTATUS(st), 100, "cannot become uid 65534");
    if (child)
        *child = pid;
    return WEXITSTATUS(st);
}

Test(collector_daemon, foreign_uids_are_refused_unless_allowed)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (to send as another uid)");
    struct env e;
    static struct dg a, b;
    env_init(&e);
    cr_assert_eq(chmod(e.dir, 0711), 0);
    two_process_trace(&a, &b);

    /* default: the socket is 0600 in a 0700 directory */
    start(&e, "50");
    cr_assert_eq(send_as_nobody(e.sock, a.b.buf, a.len, NULL), EACCES);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);

    /* another uid allowed: the socket opens up, uid 65534 is still refused */
    extra_opts[0] = "--allow-uid=12345";
    start(&e, "50");
    struct stat st;
    cr_assert_eq(stat(e.sock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0666, "socket mode %o", st.st_mode & 0777);
    char sdir[160];
    snprintf(sdir, sizeof sdir, "%s/run", e.dir);
    cr_assert_eq(stat(sdir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0711, "socket dir mode %o", st.st_mode & 0777);
    cr_assert_eq(send_as_nobody(e.sock, a.b.buf, a.len, NULL), 0);
    wait_stat(&e, "datagrams.rejected_by_reason.peer_uid", 1, 5000);
    json_t *j = load_stats(&e);
    cr_assert_eq(stat_int(j, "datagrams.accepted"), 0);
    cr_assert_eq(stat_int(j, "peers.uid_rejected"), 1);
    cr_assert_eq(json_array_size(json_object_get(j, "senders")), 0);
    json_decref(j);
    char *log = slurp(e.log, NULL);
    cr_assert_not_null(strstr(log, "event=reject reason=peer_uid"), "%s", log);
    cr_assert_not_null(strstr(log, "uid=65534"), "%s", log);
    free(log);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    char path[256];
    dump_path(&e, path, sizeof path);
    cr_assert_neq(access(path, F_OK), 0, "nothing written for a refused sender");

    /* allowed by name: accepted, counted under the kernel's pid */
    extra_opts[0] = "--allow-uid=12345,nobody";
    start(&e, "50");
    pid_t child;
    cr_assert_eq(send_as_nobody(e.sock, a.b.buf, a.len, &child), 0);
    struct dg *first[] = {&a};
    char *want = expected_dump(first, 1);
    expect_dump(&e, want, 5000);
    free(want);
    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    j = load_stats(&e);
    json_t *s0 = json_array_get(json_object_get(j, "senders"), 0);
    cr_assert_eq(json_integer_value(json_object_get(s0, "pid")), child);
    cr_assert_eq(json_integer_value(json_object_get(s0, "header_pid")), 100);
    cr_assert_eq(json_integer_value(json_object_get(s0, "pid_mismatches")), 1);
    cr_assert_eq(stat_int(j, "datagrams.rejected"), 0);
    json_decref(j);
    env_cleanup(&e);
}

/* ------------------------------------------------------------ ldprof status */

static int run_status(const char *args, char **out)
{
    static char path[4096];
    const char *b = getenv("LDPROF_BUILD");
    snprintf(path, sizeof path, "%s/collector/ldprof", b && *b ? b : "build");
    char cmd[8192], tmp[] = "/tmp/ldprof-status.XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "'%s' status %s >'%s' 2>&1", path, args, tmp);
    int st = system(cmd);
    *out = slurp(tmp, NULL);
    unlink(tmp);
    return WEXITSTATUS(st);
}

Test(collector_daemon, ldprof_status_shows_senders)
{
    struct env e;
    static struct dg a, b;
    env_init(&e);
    two_process_trace(&a, &b);
    start(&e, "50");
    send_dgram(e.sock, a.b.buf, a.len);
    send_dgram(e.sock, "garbage", 7);
    wait_stat(&e, "traces.written", 1, 5000);
    wait_stat(&e, "datagrams.rejected", 1, 5000);
    char args[512], *out;
    snprintf(args, sizeof args, "--socket '%s'", e.sock);
    cr_assert_eq(run_status(args, &out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "collector: running"), "%s", out);
    cr_assert_not_null(strstr(out, "2 received, 1 accepted, 1 rejected (short 1)"), "%s", out);
    char line[128];
    snprintf(line, sizeof line, "  %8d  %-20s %10d %10d %9d %9d", (int)getpid(), "api", 1, 2, 1,
             0);
    cr_assert_not_null(strstr(out, line), "no line '%s' in:\n%s", line, out);
    free(out);

    snprintf(args, sizeof args, "--socket '%s' --json", e.sock);
    cr_assert_eq(run_status(args, &out), 0, "%s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    cr_assert(json_is_true(json_object_get(j, "running")));
    json_t *s0 = json_array_get(json_object_get(json_object_get(j, "stats"), "senders"), 0);
    cr_assert_eq(json_integer_value(json_object_get(s0, "pid")), getpid());
    cr_assert_eq(json_integer_value(json_object_get(s0, "spans")), 2);
    cr_assert_eq(json_integer_value(json_object_get(s0, "rejected")), 1);
    json_decref(j);
    free(out);

    cr_assert_eq(WEXITSTATUS(stop(&e, SIGTERM)), 0);
    snprintf(args, sizeof args, "--socket '%s'", e.sock);
    cr_assert_eq(run_status(args, &out), 3, "%s", out);
    cr_assert_not_null(strstr(out, "NOT running"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "--socket '%s/nowhere.sock'", e.dir);
    cr_assert_eq(run_status(args, &out), 1, "%s", out);
    cr_assert_not_null(strstr(out, "ldprof: status: no collector: no stats file"), "%s", out);
    free(out);
    cr_assert_eq(run_status("--bogus", &out), 2, "%s", out);
    free(out);
    env_cleanup(&e);
}

Test(collector_daemon, limit_options_are_checked)
{
    const char *bin = collectord_path();
    char cmd[4200];
    static const char *bad[] = {"--max-age 10x", "--max-age -1", "--max-trace-age ''",
                                "--max-spans-per-trace abc", "--max-open-traces -5",
                                "--max-traces 1.5", "--allow-uid no-such-user-here",
                                "--allow-uid ''"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", bin, bad[i]);
        cr_assert_eq(WEXITSTATUS(system(cmd)), 2, "%s", bad[i]);
    }
    snprintf(cmd, sizeof cmd, "'%s' --help | grep -q -- --max-spans-per-trace", bin);
    cr_assert_eq(system(cmd), 0);
}
