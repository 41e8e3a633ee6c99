/*
 * tests/bench/collector_blast.c - feed ldprof-collectord as fast as it reads.
 *
 * Builds wire datagrams (include/ldprof/wire.h) the way the preload's
 * flusher does - a 32-byte header, the process block (host, service,
 * project, exe), then as many span records as fit in LDPROF_WIRE_MAX_DGRAM,
 * records of consecutive traces sharing a datagram - all before the clock
 * starts, then sends them on the collector's socket.  Sends are
 * non-blocking; on EAGAIN (the collector's queue is full) the sender counts
 * it and waits in poll(POLLOUT), so nothing is dropped by the sender.
 *
 * Each trace looks like a zaqard request (POST /v2/queues/<q>/messages):
 * one wsgi root span and 4 to 9 children (redis commands, a SQL query with
 * JSON parameters, a pool checkout), 5 to 10 spans in all, 7.5 on average,
 * with the info fields the preload's hooks record.
 *
 *   collector_blast --socket PATH --traces N [--seed S] [--pid P] [--t0 NS]
 *                   [--spans K] [--rate R]
 *                   [--collector-pid PID] [--wait-dumps DIR]
 *
 * --seed, --pid and --t0 (the first span's CLOCK_REALTIME ns; default a
 * minute ago) make the datagrams reproducible, to compare two collectors.
 *
 * --spans K (1..10): every trace has K spans (the wsgi root and K-1
 *   children) instead of 5 to 10: 1 and 3 are the server benchmark's
 *   traced requests with drivers off and on.
 * --rate R: send R traces a second instead of as fast as the collector
 *   reads, as zaqard's flusher would: one datagram per 10 ms holding that
 *   slice's traces (R/100 of them, at least one), sent on schedule.
 *
 * --collector-pid: after the last send, wait until the collector has read
 *   every datagram (SIOCOUTQ of our socket drops to 0: a unix datagram
 *   stays charged to its sender until it is received) and is asleep in
 *   its poll(2) again (/proc/PID/syscall), and report the CPU time it spent
 *   (/proc/PID/schedstat, ns) between the first send and that point.
 * --wait-dumps DIR: then wait until DIR holds one <base_id>.json per trace
 *   sent (at most 10 minutes), and report when; cpu_ns then runs until
 *   that point.
 *
 * Prints one line of key=value pairs (collector.sh parses it):
 *   traces spans dgrams bytes eagain send_s done_s cpu_ns dumps_s
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include "ldprof/wire.h"

#define MAX_SPANS 12
#define MAX_TRACES 2000000

struct dgram {
    uint8_t *p;
    size_t len;
    uint32_t nrec;
};

static struct dgram *dgrams;
static size_t ndgrams, capdgrams;
static uint8_t cur[LDPROF_WIRE_MAX_DGRAM];
static size_t curlen, proclen;
static uint32_t curnrec;
static uint64_t rng = 88172645463325252ull;

static uint64_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "collector_blast: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- one span record, built in a scratch buffer */

static uint8_t rec[sizeof(struct ldprof_wire_span) + LDPROF_WIRE_MAX_INFO];
static size_t reclen;

static void tlv(uint8_t type, const char *key, const void *val, size_t vlen)
{
    size_t klen = strlen(key);
    if (reclen + 4 + klen + vlen > sizeof rec) {
        fprintf(stderr, "collector_blast: span info too large\n");
        exit(1);
    }
    rec[reclen] = type;
    rec[reclen + 1] = (uint8_t)klen;
    le(rec + reclen + 2, vlen, 2);
    memcpy(rec + reclen + 4, key, klen);
    memcpy(rec + reclen + 4 + klen, val, vlen);
    reclen += 4 + klen + vlen;
}

static void tstr(int stop, const char *key, const char *val)
{
    tlv((uint8_t)(LDPROF_TLV_STR | (stop ? LDPROF_TLV_STOP : 0)), key, val, strlen(val));
}

static void tint(int stop, const char *key, int64_t v)
{
    uint8_t b[8];
    le(b, (uint64_t)v, 8);
    tlv((uint8_t)(LDPROF_TLV_INT | (stop ? LDPROF_TLV_STOP : 0)), key, b, 8);
}

static void tjson(int stop, const char *key, const char *json)
{
    tlv((uint8_t)(LDPROF_TLV_JSON | (stop ? LDPROF_TLV_STOP : 0)), key, json, strlen(json));
}

static void rec_begin(uint8_t kind, const uint8_t base[16], const uint8_t trace[16],
                      const uint8_t parent[16], uint64_t t0, uint64_t t1, uint32_t tid)
{
    memset(rec, 0, sizeof(struct ldprof_wire_span));
    rec[2] = kind;
    rec[3] = 0;
    le(rec + 4, tid, 4);
    memcpy(rec + 8, base, 16);
    memcpy(rec + 24, trace, 16);
    memcpy(rec + 40, parent, 16);
    le(rec + 56, t0, 8);
    le(rec + 64, t1, 8);
    reclen = sizeof(struct ldprof_wire_span);
}

static void dgram_close(void)
{
    if (!curnrec)
        return;
    le(cur + 8, curlen, 4);
    le(cur + 16, curnrec, 4);
    if (ndgrams == capdgrams) {
        capdgrams = capdgrams ? capdgrams * 2 : 1024;
        dgrams = realloc(dgrams, capdgrams * sizeof *dgrams);
        if (!dgrams)
            die("realloc");
    }
    struct dgram *d = &dgrams[ndgrams++];
    d->p = malloc(curlen);
    if (!d->p)
        die("malloc");
    memcpy(d->p, cur, curlen);
    d->len = curlen;
    d->nrec = curnrec;
    curlen = 32 + proclen;
    curnrec = 0;
}

static void rec_end(void)
{
    size_t info = reclen - sizeof(struct ldprof_wire_span);
    le(rec + 0, reclen, 2);
    le(rec + 72, info, 2);
    if (curlen + reclen > LDPROF_WIRE_MAX_DGRAM)
        dgram_close();
    memcpy(cur + curlen, rec, reclen);
    curlen += reclen;
    curnrec++;
}

static void dgram_init(uint32_t pid)
{
    memset(cur, 0, 32);
    le(cur + 0, LDPROF_WIRE_MAGIC, 4);
    le(cur + 4, LDPROF_WIRE_VERSION, 2);
    le(cur + 6, LDPROF_MSG_SPANS, 2);
    le(cur + 12, pid, 4);
    static const char *const kv[][2] = {{LDPROF_PROC_HOST, "bench-host"},
                                        {LDPROF_PROC_SERVICE, "zaqard"},
                                        {LDPROF_PROC_PROJECT, "zaqar"},
                                        {LDPROF_PROC_EXE, "/usr/local/bin/zaqard"}};
    size_t off = 32;
    for (size_t i = 0; i < 4; i++) {
        size_t k = strlen(kv[i][0]), v = strlen(kv[i][1]);
        cur[off] = LDPROF_TLV_STR;
        cur[off + 1] = (uint8_t)k;
        le(cur + off + 2, v, 2);
        memcpy(cur + off + 4, kv[i][0], k);
        memcpy(cur + off + 4 + k, kv[i][1], v);
        off += 4 + k + v;
    }
    proclen = off - 32;
    le(cur + 20, proclen, 2);
    curlen = off;
    curnrec = 0;
}

static void new_id(uint8_t id[16])
{
    uint64_t a = xorshift(), b = xorshift();
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
}

/* One zaqard-like request: children in the order they end, then the root
 * (what the preload's per-thread buffer holds).  Returns the span count. */
static int fixed_spans; /* --spans; 0: 5 to 10 */

static int build_trace(size_t n, uint64_t t0)
{
    static const char *const redis_cmds[][4] = {
        /* command, key, reply type, args */
        {"EVALSHA", "zaqar:q%zu:msgs", "array", "3"},
        {"HGETALL", "zaqar:q%zu:meta", "array", "2"},
        {"ZADD", "zaqar:q%zu:msgs.ids", "integer", "4"},
        {"HMSET", "zaqar:q%zu:msg:%zu", "status", "8"},
        {"EXPIRE", "zaqar:q%zu:msg:%zu", "integer", "3"},
        {"INCR", "zaqar:q%zu:counter", "integer", "2"},
    };
    uint8_t base[16], root[16], id[16];
    char key[96], qs[64], path[96];
    uint32_t tid = 4000 + (uint32_t)(n % 8);
    int nchild = fixed_spans ? fixed_spans - 1 : 4 + (int)(n % 6); /* 4..9: 5..10 spans */
    new_id(base);
    new_id(root);
    uint64_t t = t0 + 20000;
    for (int c = 0; c < nchild; c++) {
        uint64_t a = t, b = t + 35000 + (xorshift() % 40000);
        t = b + 5000;
        new_id(id);
        if (c == 0) {
            rec_begin(LDPROF_KIND_POOLING, base, id, root, a, b, tid);
            tstr(0, "pool.name", "redis");
            tint(0, "pool.size", 8);
            tint(1, "pool.waited_us", 3);
        } else if (c == 2) {
            rec_begin(LDPROF_KIND_DB, base, id, root, a, b, tid);
            tstr(0, "db.operation", "SELECT");
            tstr(0, "db.statement",
                 "SELECT name, metadata, created FROM catalog.queues "
                 "WHERE project = $1 AND name = $2");
            snprintf(qs, sizeof qs, "[\"zaqar\", \"q%zu\"]", n % 1000);
            tjson(0, "db.params", qs);
            tstr(1, "db.status", "PGRES_TUPLES_OK");
            tint(1, "db.nfields", 3);
            tint(1, "db.rows", 1);
        } else {
            const char *const *r = redis_cmds[(n + (size_t)c) % 6];
            rec_begin(LDPROF_KIND_REDIS, base, id, root, a, b, tid);
            tstr(0, "redis.command", r[0]);
            tint(0, "redis.argc", atoi(r[3]));
            snprintf(key, sizeof key, r[1], n % 1000, n);
            tstr(0, "redis.key", key);
            tstr(1, "redis.reply_type", r[2]);
            tint(1, "redis.reply_len", (int64_t)(xorshift() % 20));
        }
        rec_end();
    }
    rec_begin(LDPROF_KIND_WSGI, base, root, base, t0, t + 10000, tid);
    snprintf(path, sizeof path, "/v2/queues/q%zu/messages", n % 1000);
    tstr(0, "request.path", path);
    tstr(0, "request.query", "");
    tstr(0, "request.method", "POST");
    tstr(0, "request.scheme", "http");
    tint(1, "status_code", 201);
    rec_end();
    return nchild + 1;
}

/* ---- collector side */

static int proc_state(long pid)
{
    char p[64], b[512];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, b, sizeof b - 1);
    close(fd);
    if (r <= 0)
        return -1;
    b[r] = 0;
    char *q = strrchr(b, ')');
    return q && q[1] == ' ' ? q[2] : -1;
}

/* Is `pid` asleep in its main loop's poll(2)?  (/proc/PID/syscall starts
 * with the number of the system call it is blocked in; when that file
 * cannot be read, asleep at all is taken.)  Waiting on Redis is not idle. */
static int proc_idle(long pid)
{
    char p[64], b[64];
    if (proc_state(pid) == 'R')
        return 0;
    snprintf(p, sizeof p, "/proc/%ld/syscall", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t r = read(fd, b, sizeof b - 1);
    close(fd);
    if (r <= 0)
        return 1;
    b[r] = 0;
    long nr = strtol(b, NULL, 10);
    return nr == SYS_poll || nr == SYS_ppoll;
}

static uint64_t proc_cpu_ns(long pid)
{
    char p[64];
    unsigned long long ns = 0;
    snprintf(p, sizeof p, "/proc/%ld/schedstat", pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return ns;
}

static size_t count_dumps(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] != '.' && l == 41 && strcmp(e->d_name + 36, ".json") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, us % 1000000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *dumps = NULL;
    long ntraces = 0, cpid = 0, rate = 0;
    uint64_t t0 = 0;
    uint32_t pid = (uint32_t)getpid();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "collector_blast: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--socket") == 0)
            sock = v;
        else if (strcmp(a, "--traces") == 0)
            ntraces = atol(v);
        else if (strcmp(a, "--seed") == 0)
            rng ^= strtoull(v, NULL, 10) * 0x9e3779b97f4a7c15ull;
        else if (strcmp(a, "--pid") == 0)
            pid = (uint32_t)atol(v);
        else if (strcmp(a, "--t0") == 0)
            t0 = strtoull(v, NULL, 10);
        else if (strcmp(a, "--collector-pid") == 0)
            cpid = atol(v);
        else if (strcmp(a, "--wait-dumps") == 0)
            dumps = v;
        else if (strcmp(a, "--spans") == 0)
            fixed_spans = atoi(v);
        else if (strcmp(a, "--rate") == 0)
            rate = atol(v);
        else {
            fprintf(stderr, "collector_blast: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (!sock || ntraces < 1 || ntraces > MAX_TRACES || fixed_spans < 0 || fixed_spans > 10 ||
        rate < 0) {
        fprintf(stderr, "usage: collector_blast --socket PATH --traces N(1..%d) [--seed S] "
                        "[--pid P] [--t0 NS] [--spans 1..10] [--rate TRACES_PER_S] "
                        "[--collector-pid PID] [--wait-dumps DIR]\n",
                MAX_TRACES);
        return 2;
    }
    if (!rng)
        rng = 1;

    /* Build everything first. */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    if (!t0)
        t0 = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec - 60000000000ull;
    uint64_t spans = 0, bytes = 0;
    dgram_init(pid);
    long per = rate ? (rate >= 200 ? rate / 100 : 1) : 0; /* traces per paced datagram */
    for (long n = 0; n < ntraces; n++) {
        spans += (uint64_t)build_trace((size_t)n, t0 + (uint64_t)n * 100000);
        if (per && (n + 1) % per == 0)
            dgram_close();
    }
    dgram_close();
    double gap = rate ? (double)per / (double)rate : 0; /* seconds between datagrams */
    for (size_t i = 0; i < ndgrams; i++)
        bytes += dgrams[i].len;

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");

    uint64_t eagain = 0, cpu0 = cpid ? proc_cpu_ns(cpid) : 0;
    double start = now_s();
    for (size_t i = 0; i < ndgrams; i++) {
        if (gap > 0) {
            double late = start + (double)i * gap - now_s();
            if (late > 0)
                nap_us((long)(late * 1e6));
        }
        for (;;) {
            ssize_t r = send(fd, dgrams[i].p, dgrams[i].len, MSG_NOSIGNAL);
            if (r >= 0)
                break;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                die("send");
            eagain++;
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, 10000) == 0) {
                fprintf(stderr, "collector_blast: collector stopped reading\n");
                return 1;
            }
        }
    }
    double sent = now_s(), done = sent, dumped = 0;
    uint64_t cpu = 0;
    if (cpid) {
        /* Everything received (SIOCOUTQ 0), then processed (asleep): at
         * most 120 s each (50 us naps), else said on stderr and the figures
         * run to that point. */
        long k;
        for (k = 0; k < 2400000; k++) {
            int q = 0;
            if (ioctl(fd, SIOCOUTQ, &q) < 0 || q == 0)
                break;
            nap_us(50);
        }
        if (k == 2400000)
            fprintf(stderr, "collector_blast: the collector left datagrams unread for 120 s\n");
        for (k = 0; k < 2400000; k++) {
            if (proc_idle(cpid))
                break;
            nap_us(50);
        }
        if (k == 2400000)
            fprintf(stderr, "collector_blast: the collector did not go idle (poll) within 120 s\n");
        done = now_s();
        cpu = proc_cpu_ns(cpid) - cpu0;
    }
    if (dumps) {
        for (long k = 0; k < 600000; k++) {
            if (count_dumps(dumps) >= (size_t)ntraces)
                break;
            nap_us(1000);
        }
        dumped = now_s() - start;
        if (cpid)
            cpu = proc_cpu_ns(cpid) - cpu0;
    }
    printf("traces=%ld spans=%llu dgrams=%zu bytes=%llu eagain=%llu send_s=%.6f done_s=%.6f "
           "cpu_ns=%llu dumps_s=%.6f\n",
           ntraces, (unsigned long long)spans, ndgrams, (unsigned long long)bytes,
           (unsigned long long)eagain, sent - start, done - start, (unsigned long long)cpu,
           dumped);
    close(fd);
    for (size_t i = 0; i < ndgrams; i++)
        free(dgrams[i].p);
    free(dgrams);
    return 0;
}
