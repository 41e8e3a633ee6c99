/*
 * tests/unit/test_preload_e2e.c - libldprof.so preloaded into the small
 * programs of tests/targets/, with this test as the collector: it binds a
 * unix datagram socket, points LDPROF_COLLECTOR at it and decodes what
 * arrives (its own decoder, written from wire.h, not the preload's code).
 *
 * The test runner itself is never preloaded: only the spawned targets are.
 * Paths: $LDPROF_BUILD (the Makefile's build directory, default "build")
 * holds libldprof.so and tests/targets/.  A missing build skips the suite.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "ldprof/wire.h"
#include "preload/propagation.h"

static char build[4096], lib[PATH_MAX], tmpdir[64], sock_path[100];
static char asan_rt[PATH_MAX]; /* libasan.so when the preload is an ASAN=1 build */
static int coll = -1;
static char trace_info[LDPROF_TRACE_INFO_SIZE], trace_hmac[LDPROF_TRACE_HMAC_SIZE];
static uint8_t base_id[16], parent_id[16];

struct e2e_span {
    int kind, flags;
    uint32_t pid;
    uint8_t base[16], parent[16], trace[16];
    char path[256], query[256], method[16], etype[64];
};

static struct e2e_span got[4096];
static int ngot, nstats;
static uint64_t max_dropped;
static char proc_service[128];

static void setup(void)
{
    const char *b = getenv("LDPROF_BUILD");
    struct sockaddr_un sa;
    struct ldprof_keyring kr;
    int rcv = 4 << 20;

    char rel[4200];

    snprintf(build, sizeof(build), "%s", b && b[0] ? b : "build");
    snprintf(rel, sizeof(rel), "%s/libldprof.so", build);
    if (realpath(rel, lib) == NULL)
        cr_skip_test("%s not built", rel);
    {
        /* An ASAN=1 build of the preload needs the ASan runtime first in
         * LD_PRELOAD (it must come before every other library). */
        char cmd[PATH_MAX + 64], line[PATH_MAX + 64];
        FILE *p;
        snprintf(cmd, sizeof(cmd), "ldd '%s'", lib);
        asan_rt[0] = '\0';
        if ((p = popen(cmd, "r")) != NULL) {
            while (fgets(line, sizeof(line), p)) {
                char name[256], path[PATH_MAX];
                if (sscanf(line, " %255s => %4095s", name, path) == 2 &&
                    strncmp(name, "libasan.so", 10) == 0)
                    snprintf(asan_rt, sizeof(asan_rt), "%s", path);
            }
            pclose(p);
        }
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ldprof-e2e.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(sock_path, sizeof(sock_path), "%s/c.sock", tmpdir);
    coll = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    cr_assert_eq(bind(coll, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(coll, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));

    ldprof_keyring_init(&kr, "SECRET_KEY");
    ldprof_uuid_new(base_id);
    ldprof_uuid_new(parent_id);
    cr_assert_eq(ldprof_trace_sign(&kr, 0, base_id, parent_id, trace_info, sizeof(trace_info),
                                   trace_hmac),
                 LDPROF_TRACE_INFO_LEN);
    ngot = nstats = 0;
    max_dropped = 0;
    signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
    if (coll >= 0)
        close(coll);
    if (sock_path[0])
        unlink(sock_path);
    if (tmpdir[0])
        rmdir(tmpdir);
}

TestSuite(preload_e2e, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------ decoding */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void copy_field(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static void decode(const uint8_t *d, size_t len)
{
    size_t off, end;
    uint32_t nrec;
    uint16_t plen;

    cr_assert_geq(len, 32);
    cr_assert_eq(rd32(d), LDPROF_WIRE_MAGIC);
    cr_assert_eq(rd16(d + 4), LDPROF_WIRE_VERSION);
    cr_assert_eq(rd32(d + 8), len, "header length = datagram length");
    nrec = rd32(d + 16);
    plen = rd16(d + 20);
    if (rd64(d + 24) > max_dropped)
        max_dropped = rd64(d + 24);
    if (rd16(d + 6) == LDPROF_MSG_STATS) {
        nstats++;
        cr_assert_eq(nrec, 0);
    }
    /* process block */
    off = 32;
    end = 32 + (size_t)plen;
    cr_assert_leq(end, len);
    while (off < end) {
        uint8_t kl = d[off + 1];
        uint16_t vl = rd16(d + off + 2);
        cr_assert_leq(off + 4 + kl + vl, end);
        if (kl == 7 && memcmp(d + off + 4, "service", 7) == 0)
            copy_field(proc_service, sizeof(proc_service), d + off + 4 + kl, vl);
        off += 4 + (size_t)kl + vl;
    }
    for (uint32_t i = 0; i < nrec; i++) {
        uint16_t rec_len = rd16(d + off), info_len = rd16(d + off + 72);
        struct e2e_span *s = &got[ngot < 4096 ? ngot : 4095];
        size_t p = off + 80, rend = off + rec_len;

        cr_assert_eq(rec_len, 80 + info_len);
        cr_assert_leq(rend, len);
        memset(s, 0, sizeof(*s));
        s->kind = d[off + 2];
        s->flags = d[off + 3];
        s->pid = rd32(d + 12);
        memcpy(s->base, d + off + 8, 16);
        memcpy(s->trace, d + off + 24, 16);
        memcpy(s->parent, d + off + 40, 16);
        cr_assert_leq(rd64(d + off + 56), rd64(d + off + 64), "start <= end");
        while (p < rend) {
            uint8_t kl = d[p + 1];
            uint16_t vl = rd16(d + p + 2);
            const char *k = (const char *)d + p + 4;
            const uint8_t *v = d + p + 4 + kl;
            cr_assert_leq(p + 4 + kl + vl, rend);
            if (kl == 12 && !memcmp(k, "request.path", 12))
                copy_field(s->path, sizeof(s->path), v, vl);
            else if (kl == 13 && !memcmp(k, "request.query", 13))
                copy_field(s->query, sizeof(s->query), v, vl);
            else if (kl == 14 && !memcmp(k, "request.method", 14))
                copy_field(s->method, sizeof(s->method), v, vl);
            else if (kl == 5 && !memcmp(k, "etype", 5))
                copy_field(s->etype, sizeof(s->etype), v, vl);
            p += 4 + (size_t)kl + vl;
        }
        ngot++;
        off = rend;
    }
    cr_assert_eq(off, len, "records fill the datagram exactly");
}

/* Read every datagram that arrives until @quiet_ms pass without one. */
static void collect(int quiet_ms)
{
    static uint8_t d[LDPROF_WIRE_MAX_DGRAM + 1];
    struct pollfd pfd = {coll, POLLIN, 0};

    while (poll(&pfd, 1, quiet_ms) == 1) {
        ssize_t n = recv(coll, d, sizeof(d), 0);
        cr_assert_gt(n, 0);
        decode(d, (size_t)n);
    }
}

static int count_path(const char *path)
{
    int n = 0;
    for (int i = 0; i < ngot; i++)
        if (strcmp(got[i].path, path) == 0)
            n++;
    return n;
}

/* ------------------------------------------------------------ processes */

/* Spawn a target under the preload; its stdout comes back on *out_fd.
 * @extra_env: one more NAME=value; an LD_PRELOAD=... replaces ours. */
static pid_t spawn(const char *target, char *const args[], const char *extra_env, int *out_fd)
{
    char path[4300], env_pre[4 * PATH_MAX + 64], env_coll[200], env_info[200], env_hmac[80];
    char *argv[8];
    char *envp[12];
    int n = 0, k = 0, pfd[2];
    pid_t pid;

    snprintf(path, sizeof(path), "%s/tests/targets/%s", build, target);
    if (access(path, X_OK) != 0)
        cr_skip_test("%s not built", path);
    snprintf(env_pre, sizeof(env_pre), "LD_PRELOAD=%s%s%s", asan_rt, asan_rt[0] ? ":" : "", lib);
    snprintf(env_coll, sizeof(env_coll), "LDPROF_COLLECTOR=%s", sock_path);
    snprintf(env_info, sizeof(env_info), "TRACE_INFO=%s", trace_info);
    snprintf(env_hmac, sizeof(env_hmac), "TRACE_HMAC=%s", trace_hmac);
    if (extra_env && strncmp(extra_env, "LD_PRELOAD=", 11) == 0) {
        snprintf(env_pre, sizeof(env_pre), "%s", extra_env);
        extra_env = NULL;
    }
    envp[k++] = env_pre;
    envp[k++] = env_coll;
    envp[k++] = env_info;
    envp[k++] = env_hmac;
    envp[k++] = (char *)"LDPROF_CONFIG=/dev/null";
    envp[k++] = (char *)"PATH=/usr/bin:/bin";
    if (extra_env)
        envp[k++] = (char *)extra_env;
    envp[k] = NULL;
    argv[n++] = path;
    for (int i = 0; args && args[i] && n < 7; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    cr_assert_eq(pipe(pfd), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execve(path, argv, envp);
        _exit(127);
    }
    close(pfd[1]);
    *out_fd = pfd[0];
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    return n;
}

static int read_port(int fd)
{
    char line[64];
    size_t n = 0;
    while (n + 1 < sizeof(line) && read(fd, line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    cr_assert_eq(strncmp(line, "PORT ", 5), 0, "server said \"%s\"", line);
    return atoi(line + 5);
}

static int dial(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static size_t req(char *buf, size_t cap, const char *method, const char *target, int traced,
                  int close_conn)
{
    int n;
    if (traced)
        n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: t\r\nX-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n%s\r\n",
                     method, target, trace_info, trace_hmac, close_conn ? "Connection: close\r\n" : "");
    else
        n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n", method, target,
                     close_conn ? "Connection: close\r\n" : "");
    return (size_t)n;
}

/* Send @data and read until the peer closes; returns bytes read. */
static size_t exchange(int fd, const char *data, size_t n, char *resp, size_t cap)
{
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    return read_all(fd, resp, cap);
}

static void drive_server(const char *mode_arg)
{
    char *args[] = {(char *)"--max", (char *)"4", (char *)mode_arg, NULL};
    char buf[8192], resp[16384];
    int out, port, fd;
    size_t n;
    pid_t pid = spawn("http_server", args, NULL, &out);

    port = read_port(out);
    /* 1: keep-alive + pipelining: traced, untraced, traced chunked, traced HEAD (closes) */
    fd = dial(port);
    n = req(buf, sizeof(buf), "GET", "/v2/queues?limit=2", 1, 0);
    n += req(buf + n, sizeof(buf) - n, "GET", "/untraced", 0, 0);
    n += req(buf + n, sizeof(buf) - n, "GET", "/chunked", 1, 0);
    n += req(buf + n, sizeof(buf) - n, "HEAD", "/head", 1, 1);
    exchange(fd, buf, n, resp, sizeof(resp));
    cr_assert_not_null(strstr(resp, "hello"), "chunked body arrived: %s", resp);
    /* 2: a response delimited by the close */
    fd = dial(port);
    n = req(buf, sizeof(buf), "POST", "/close", 1, 0);
    exchange(fd, buf, n, resp, sizeof(resp));
    /* 3: the client goes away before the (slow) response is complete */
    fd = dial(port);
    n = req(buf, sizeof(buf), "GET", "/slow", 1, 1);
    cr_assert_eq(write(fd, buf, n), (ssize_t)n);
    usleep(20000);
    {
        struct linger lg = {1, 0}; /* RST: the server's writes fail */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    /* 4: a normal one to finish */
    fd = dial(port);
    n = req(buf, sizeof(buf), "DELETE", "/v2/queues/q%201", 1, 1);
    exchange(fd, buf, n, resp, sizeof(resp));
    close(out);
    cr_assert_eq(wait_exit(pid), 0);
    collect(300);

    cr_assert_eq(count_path("/untraced"), 0);
    cr_assert_eq(count_path("/v2/queues"), 1);
    cr_assert_eq(count_path("/chunked"), 1);
    cr_assert_eq(count_path("/head"), 1);
    cr_assert_eq(count_path("/close"), 1);
    cr_assert_eq(count_path("/v2/queues/q%201"), 1);
    cr_assert_eq(count_path("/slow"), 1);
    for (int i = 0; i < ngot; i++) {
        struct e2e_span *s = &got[i];
        cr_assert_eq(s->kind, LDPROF_KIND_WSGI);
        cr_assert_eq(s->pid, (uint32_t)pid);
        cr_assert_eq(memcmp(s->base, base_id, 16), 0);
        cr_assert_eq(memcmp(s->parent, parent_id, 16), 0);
        if (strcmp(s->path, "/slow") == 0) {
            cr_assert(s->flags & LDPROF_SPAN_ERROR, "/slow was cut short");
            cr_assert_str_eq(s->etype, "ConnectionClosed");
        } else {
            cr_assert_eq(s->flags, 0, "%s flags %d", s->path, s->flags);
        }
        if (strcmp(s->path, "/v2/queues") == 0)
            cr_assert_str_eq(s->query, "limit=2");
    }
    cr_assert_str_eq(proc_service, "http_server");
    cr_assert_eq(max_dropped, 0);
}

Test(preload_e2e, http_server_thread_per_connection)
{
    drive_server(NULL);
}

Test(preload_e2e, http_server_one_epoll_thread)
{
    drive_server("--epoll");
}

static struct e2e_span *find_span(const char *path, int kind)
{
    for (int i = 0; i < ngot; i++)
        if (got[i].kind == kind && strcmp(got[i].path, path) == 0)
            return &got[i];
    return NULL;
}

Test(preload_e2e, outbound_requests_carry_the_trace)
{
    char *args[] = {(char *)"--max", (char *)"1", NULL};
    char buf[2048], resp[4096], target[64];
    int outa, outb, pa, pb, fd;
    size_t n;
    pid_t a = spawn("http_server", args, NULL, &outa);
    pid_t b = spawn("http_server", args, NULL, &outb);
    struct e2e_span *wa, *ha, *wb;

    pa = read_port(outa);
    pb = read_port(outb);
    snprintf(target, sizeof(target), "/fwd/%d/backend?x=1", pb);
    fd = dial(pa);
    n = req(buf, sizeof(buf), "GET", target, 1, 1);
    exchange(fd, buf, n, resp, sizeof(resp));
    cr_assert_not_null(strstr(resp, "200 OK"), "%s", resp);
    close(outa);
    close(outb);
    cr_assert_eq(wait_exit(a), 0);
    cr_assert_eq(wait_exit(b), 0);
    collect(300);
    cr_assert_eq(ngot, 3);
    snprintf(target, sizeof(target), "/fwd/%d/backend", pb);
    wa = find_span(target, LDPROF_KIND_WSGI);
    ha = find_span("/backend", LDPROF_KIND_HTTP);
    wb = find_span("/backend", LDPROF_KIND_WSGI);
    cr_assert(wa && ha && wb, "wsgi A, http A, wsgi B");
    cr_assert_eq(memcmp(ha->parent, wa->trace, 16), 0, "A's http span is a child of its wsgi span");
    cr_assert_eq(memcmp(wb->parent, ha->trace, 16), 0, "B's wsgi span is a child of A's http span");
    cr_assert_eq(memcmp(wb->base, base_id, 16), 0, "one trace");
    cr_assert_eq(ha->pid, (uint32_t)a);
    cr_assert_eq(wb->pid, (uint32_t)b);
    cr_assert_str_eq(ha->query, "x=1");
}

Test(preload_e2e, client_profile_mode_starts_a_trace)
{
    char *args[] = {(char *)"--max", (char *)"1", NULL};
    char buf[2048], resp[4096], target[64], errs[4096], errpath[128];
    int outa, outb, pa, pb, fd, efd;
    size_t n;
    pid_t a, b = spawn("http_server", args, NULL, &outb);

    snprintf(errpath, sizeof(errpath), "%s/stderr", tmpdir);
    efd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    {
        int saved = dup(2);
        dup2(efd, 2);
        a = spawn("http_server", args, "LDPROF_PROFILE=SECRET_KEY", &outa);
        dup2(saved, 2);
        close(saved);
    }
    pa = read_port(outa);
    pb = read_port(outb);
    snprintf(target, sizeof(target), "/fwd/%d/profiled", pb);
    fd = dial(pa);
    n = req(buf, sizeof(buf), "GET", target, 0, 1); /* untraced: A is the client */
    exchange(fd, buf, n, resp, sizeof(resp));
    close(outa);
    close(outb);
    cr_assert_eq(wait_exit(a), 0);
    cr_assert_eq(wait_exit(b), 0);
    collect(300);
    lseek(efd, 0, SEEK_SET);
    read_all(efd, errs, sizeof(errs));
    unlink(errpath);

    struct e2e_span *ha = find_span("/profiled", LDPROF_KIND_HTTP);
    struct e2e_span *wb = find_span("/profiled", LDPROF_KIND_WSGI);
    char id[LDPROF_UUID_SIZE], want[128];
    cr_assert(ha && wb);
    cr_assert_eq(memcmp(ha->parent, ha->base, 16), 0, "parent = base_id");
    cr_assert_eq(memcmp(wb->parent, ha->trace, 16), 0);
    cr_assert_eq(memcmp(wb->base, ha->base, 16), 0);
    ldprof_uuid_format(ha->base, id);
    snprintf(want, sizeof(want), "Trace ID: %s\nShow it: ldprof trace show %s\n", id, id);
    cr_assert_not_null(strstr(errs, want), "stderr: %s", errs);
}

Test(preload_e2e, disabled_records_nothing)
{
    char *args[] = {(char *)"--max", (char *)"1", NULL};
    char buf[2048], resp[4096];
    int out, port, fd;
    size_t n;
    pid_t pid = spawn("http_server", args, "LDPROF_ENABLED=false", &out);

    port = read_port(out);
    fd = dial(port);
    n = req(buf, sizeof(buf), "GET", "/off", 1, 1);
    exchange(fd, buf, n, resp, sizeof(resp));
    cr_assert_not_null(strstr(resp, "200 OK"));
    close(out);
    cr_assert_eq(wait_exit(pid), 0);
    collect(300);
    cr_assert_eq(ngot, 0);
}

Test(preload_e2e, echo_bytes_and_errno_exact)
{
    char out[4096];
    int fd;
    pid_t pid = spawn("echo", NULL, NULL, &fd);

    read_all(fd, out, sizeof(out));
    cr_assert_eq(wait_exit(pid), 0, "%s", out);
    cr_assert_str_eq(out, "OK\n");
}

Test(preload_e2e, hooked_calls_from_a_constructor_that_runs_before_ours)
{
    char pre[4 * PATH_MAX], out[4096], err[4096], errpath[128];
    int fd, efd;
    pid_t pid;

    /* the later preload is initialised first: libctor's constructor calls
     * our wrappers before libldprof's constructor has run */
    snprintf(pre, sizeof(pre), "LD_PRELOAD=%s%s%s %s/tests/targets/libctor.so", asan_rt,
             asan_rt[0] ? ":" : "", lib, build);
    snprintf(errpath, sizeof(errpath), "%s/stderr", tmpdir);
    efd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(efd, 0);
    {
        int saved = dup(2);
        dup2(efd, 2); /* the child inherits it */
        pid = spawn("echo", NULL, pre, &fd);
        dup2(saved, 2);
        close(saved);
    }
    read_all(fd, out, sizeof(out));
    cr_assert_eq(wait_exit(pid), 0, "%s", out);
    lseek(efd, 0, SEEK_SET);
    read_all(efd, err, sizeof(err));
    unlink(errpath);
    cr_assert_not_null(strstr(err, "libctor: ok"), "stderr: %s", err);
    cr_assert_str_eq(out, "OK\n");
}

Test(preload_e2e, collector_socket_survives_a_close_all_loop)
{
    char out[4096];
    int fd;
    pid_t pid = spawn("fd_closer", NULL, NULL, &fd);

    read_all(fd, out, sizeof(out));
    cr_assert_eq(wait_exit(pid), 0, "%s", out);
    collect(300);
    cr_assert_eq(count_path("/before"), 1);
    cr_assert_eq(count_path("/after"), 1, "the span after the close-all loop arrived");
    cr_assert_eq(max_dropped, 0, "nothing was lost on a closed socket");
}

Test(preload_e2e, exec_keeps_the_preload_even_with_an_empty_environment)
{
    char out[8192], want[2 * PATH_MAX + 64];
    int fd, lines = 0;
    pid_t pid = spawn("fork_exec", NULL, NULL, &fd);

    read_all(fd, out, sizeof(out));
    cr_assert_eq(wait_exit(pid), 0, "%s", out);
    snprintf(want, sizeof(want), "preload=%s%s%s ldprof_vars=2 mapped=yes", asan_rt,
             asan_rt[0] ? ":" : "", lib);
    for (char *l = strtok(out, "\n"); l; l = strtok(NULL, "\n")) {
        cr_assert_not_null(strstr(l, want), "child lost ldprof: %s (want %s)", l, want);
        lines++;
    }
    cr_assert_eq(lines, 5);
}

Test(preload_e2e, fork_with_threads_signals_and_spans, .timeout = 120)
{
    char *args[] = {(char *)"--stress", (char *)"30", NULL};
    char out[4096];
    int fd;
    /* LeakSanitizer misreads the forked children's threads: leaks are
     * checked by the other tests. */
    pid_t pid = spawn("fork_exec", args, asan_rt[0] ? "ASAN_OPTIONS=detect_leaks=0" : NULL, &fd);

    read_all(fd, out, sizeof(out));
    cr_assert_eq(wait_exit(pid), 0, "%s", out);
    collect(500);
    cr_assert_gt(count_path("/child"), 0, "fork children record and send spans");
    cr_assert_gt(count_path("/thread"), 0);
}

Test(preload_e2e, only_wrappers_and_the_public_api_are_exported)
{
    static const char *const expected[] = {
        "__read_chk", "__recv_chk", "__recvfrom_chk", "accept", "accept4", "close",
        "close_range", "closefrom", "connect", "dup", "dup2", "dup3", "execl", "execle",
        "execlp", "execv", "execve", "execvp", "execvpe", "ldprof_span_add_int",
        "ldprof_span_add_str", "ldprof_span_begin", "ldprof_span_end",
        "ldprof_span_set_error", "posix_spawn", "posix_spawnp", "read", "readv", "recv",
        "recvfrom", "recvmsg", "send", "sendfile", "sendfile64", "sendmsg", "sendto", "shutdown", "write",
        "writev",
    };
    char cmd[4400], line[256];
    size_t i = 0;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s' | awk '{print $3}' | sort", lib);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        /* Driver wrappers (hooks/mongoc.c, hiredis.c, libpq.c) are exported
         * by prefix; their own e2e tests check each one by name. */
        if (strncmp(line, "mongoc_", 7) == 0 || strncmp(line, "redis", 5) == 0 ||
            strncmp(line, "PQ", 2) == 0)
            continue;
        cr_assert_lt(i, sizeof(expected) / sizeof(expected[0]), "unexpected export %s", line);
        cr_assert_str_eq(line, expected[i], "export list differs at %s", line);
        i++;
    }
    pclose(p);
    cr_assert_eq(i, sizeof(expected) / sizeof(expected[0]));
}
