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
        execl(bin, "ldprof-collectord", "--socket", e->sock, "--dir", e->traces, "--log",
              e->log, "--ready-file", e->ready, "--idle-ms", idle_ms, "--debug", extra_opt,
              (char *)NULL);
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

static size_t count_lines(const char *path)
{
    char *s = slurp(path, NULL);
    size_t n = 0;
    for (char *p = s; p && *p; p++)
        n += *p == '\n';
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

/* What the daemon must write for these datagrams, rendered in-process. */
static char *expected_dump(struct dg **dgs, size_t n)
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
            cr_assert_eq(coll_events_build(&d.proc, &sp, "unused", &s, &e), 0);
            coll_trace_add_span(t, s, e);
            json_decref(s);
            json_decref(e);
        }
    }
    struct coll_buf b;
    struct coll_report_ctx ctx;
    coll_buf_init(&b);
    cr_assert_eq(coll_trace_render(t, &b, &ctx), 0, "%s", ctx.errstr);
    coll_trace_free(t);
    return b.p;
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
    cr_assert_eq(json_array_size(json_object_get(j, "senders")), 2);
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
    for (int i = 0; i < 500 && count_lines(jpath) < 4; i++)
        sleep_ms(10);
    cr_assert_eq(count_lines(jpath), 4, "one journal line per span");
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
    cr_assert_not_null(strstr(log, "event=journal_replayed lines=5 bad_lines=1 traces=1"),
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
    cr_assert_eq(stop(&e, SIGKILL) & 0x7f, SIGKILL);
    start(&e, "600000");
    send_dgram(e.sock, b.b.buf, b.len);
    char jpath[200];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", e.traces);
    for (int i = 0; i < 500 && count_lines(jpath) < 2; i++)
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
    for (int i = 0; i < 500 && count_lines(jpath) < 2; i++)
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
