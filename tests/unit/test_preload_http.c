/*
 * tests/unit/test_preload_http.c - the per-fd HTTP stream state machine
 * (preload/http.c) driven directly with byte streams: no sockets, no
 * preload.  fd numbers are only table indexes here.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "ldprof/wire.h"
#include "preload/config.h"
#include "preload/http.h"
#include "preload/propagation.h"
#include "preload/span.h"
#include "preload/tls.h"

struct tp_span {
    int kind, flags;
    uint8_t base[16], trace[16], parent[16];
    uint64_t start, end;
    int nfields;
    char key[16][64];
    char val[16][2100];
    int stop[16];
};
extern void tp_setup(void);
extern int tp_collect(struct tp_span *out, int max);
extern const char *tp_field(const struct tp_span *s, const char *key, int stop);
extern void tp_sign(const uint8_t base[16], const uint8_t parent[16], char *info, char *hmac);

#define FD 900

static const uint8_t BASE[16] = {0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x43, 0x33,
                                 0x84, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55};
static const uint8_t PARENT[16] = {0xaa, 0xaa, 0xaa, 0xaa, 0xbb, 0xbb, 0x4c, 0xcc,
                                   0x9d, 0xdd, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee};

static struct tp_span spans[32];

/* A request with valid trace headers (header names in the given spelling). */
static size_t traced_req(char *out, size_t cap, const char *method, const char *target,
                         const char *info_name, const char *hmac_name, const char *extra)
{
    char info[LDPROF_TRACE_INFO_SIZE], hmac[LDPROF_TRACE_HMAC_SIZE];
    tp_sign(BASE, PARENT, info, hmac);
    int n = snprintf(out, cap, "%s %s HTTP/1.1\r\nHost: localhost\r\n%s: %s\r\n%s: %s\r\n%s\r\n",
                     method, target, info_name, info, hmac_name, hmac, extra ? extra : "");
    cr_assert(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static size_t plain_req(char *out, size_t cap, const char *target)
{
    int n = snprintf(out, cap, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", target);
    return (size_t)n;
}

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
static const char CHUNKED[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";

static void setup(void)
{
    tp_setup();
}

TestSuite(preload_http, .init = setup);

static void check_wsgi(const struct tp_span *s, const char *method, const char *path,
                       const char *query)
{
    cr_assert_eq(s->kind, LDPROF_KIND_WSGI);
    cr_assert_eq(memcmp(s->base, BASE, 16), 0, "base_id comes from the header");
    cr_assert_eq(memcmp(s->parent, PARENT, 16), 0, "parent_id comes from the header");
    cr_assert_str_eq(tp_field(s, "request.method", 0), method);
    cr_assert_str_eq(tp_field(s, "request.path", 0), path);
    cr_assert_str_eq(tp_field(s, "request.query", 0), query);
    cr_assert_str_eq(tp_field(s, "request.scheme", 0), "http");
    cr_assert_leq(s->start, s->end);
}

Test(preload_http, traced_request_split_at_every_offset)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/v2/queues/q%201/messages?limit=5&echo=true",
                          "X-Trace-Info", "X-Trace-HMAC", NULL);

    for (size_t cut = 0; cut <= n; cut++) {
        ldprof_http_on_accept(FD);
        if (cut > 0)
            ldprof_http_on_recv(FD, req, cut);
        if (cut < n)
            ldprof_http_on_recv(FD, req + cut, n - cut);
        cr_assert_eq(tp_collect(spans, 32), 0, "no span before the response (cut %zu)", cut);
        for (size_t r = 0; r + 1 < sizeof(RESP) - 1; r++)
            ldprof_http_on_send(FD, RESP + r, 1);
        cr_assert_eq(tp_collect(spans, 32), 0, "span ended before the last byte (cut %zu)", cut);
        ldprof_http_on_send(FD, RESP + sizeof(RESP) - 2, 1);
        cr_assert_eq(tp_collect(spans, 32), 1, "cut %zu", cut);
        check_wsgi(&spans[0], "GET", "/v2/queues/q%201/messages", "limit=5&echo=true");
        cr_assert_eq(spans[0].flags, 0);
        ldprof_http_on_close(FD);
    }
}

Test(preload_http, byte_by_byte_with_lower_case_header_names)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "POST", "/q", "x-trace-info", "x-TRACE-hmac",
                          "Content-Length: 4\r\n");

    ldprof_http_on_accept(FD);
    for (size_t i = 0; i < n; i++)
        ldprof_http_on_recv(FD, req + i, 1);
    ldprof_http_on_recv(FD, "body", 4);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "POST", "/q", "");
}

Test(preload_http, untraced_request_records_nothing)
{
    char req[256];
    struct ldprof_http_stats st;
    size_t n = plain_req(req, sizeof(req), "/health");

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    ldprof_http_on_close(FD);
    cr_assert_eq(tp_collect(spans, 32), 0);
    ldprof_http_stats(&st);
    cr_assert_eq(st.requests, 1);
    cr_assert_eq(st.traced, 0);
    cr_assert_eq(st.responses, 1);
}

Test(preload_http, pipelined_requests_match_responses_in_order)
{
    char buf[4096];
    size_t n = 0;

    n += traced_req(buf + n, sizeof(buf) - n, "GET", "/one?a=1", "X-Trace-Info", "X-Trace-HMAC",
                    NULL);
    n += plain_req(buf + n, sizeof(buf) - n, "/two");
    n += traced_req(buf + n, sizeof(buf) - n, "DELETE", "/three", "X-Trace-Info", "X-Trace-HMAC",
                    NULL);
    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, buf, n); /* all three heads in one read */

    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "GET", "/one", "a=1");
    /* the untraced and the second traced response in one write */
    char two[512];
    int m = snprintf(two, sizeof(two), "%s%s", RESP, CHUNKED);
    ldprof_http_on_send(FD, two, (size_t)m);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "DELETE", "/three", "");
}

Test(preload_http, chunked_response_split_at_every_offset)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/chunked", "X-Trace-Info", "X-Trace-HMAC", NULL);
    size_t clen = sizeof(CHUNKED) - 1;

    for (size_t cut = 1; cut < clen; cut++) {
        ldprof_http_on_accept(FD);
        ldprof_http_on_recv(FD, req, n);
        ldprof_http_on_send(FD, CHUNKED, cut);
        cr_assert_eq(tp_collect(spans, 32), 0, "ended early at cut %zu", cut);
        ldprof_http_on_send(FD, CHUNKED + cut, clen - cut);
        cr_assert_eq(tp_collect(spans, 32), 1, "cut %zu", cut);
        ldprof_http_on_close(FD);
    }
}

Test(preload_http, keep_alive_requests_are_separate_spans)
{
    char req[1024];

    ldprof_http_on_accept(FD);
    for (int i = 0; i < 5; i++) {
        char target[32];
        snprintf(target, sizeof(target), "/r%d", i);
        size_t n = traced_req(req, sizeof(req), "GET", target, "X-Trace-Info", "X-Trace-HMAC",
                              NULL);
        ldprof_http_on_recv(FD, req, n);
        ldprof_http_on_send(FD, i % 2 ? CHUNKED : RESP, i % 2 ? sizeof(CHUNKED) - 1 : sizeof(RESP) - 1);
        cr_assert_eq(tp_collect(spans, 32), 1);
        check_wsgi(&spans[0], "GET", target, "");
    }
}

Test(preload_http, head_response_has_no_body)
{
    char req[1024];
    static const char head_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    size_t n = traced_req(req, sizeof(req), "HEAD", "/big", "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, head_resp, sizeof(head_resp) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "HEAD", "/big", "");
}

Test(preload_http, interim_100_continue_does_not_end_the_span)
{
    char req[1024];
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t n = traced_req(req, sizeof(req), "PUT", "/up", "X-Trace-Info", "X-Trace-HMAC",
                          "Expect: 100-continue\r\nContent-Length: 3\r\n");

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, cont, sizeof(cont) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0);
    ldprof_http_on_recv(FD, "abc", 3);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
}

Test(preload_http, close_before_response_is_an_error)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/x", "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, RESP, 20); /* part of the head only */
    ldprof_http_on_close(FD);
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert(spans[0].flags & LDPROF_SPAN_ERROR);
    cr_assert_str_eq(tp_field(&spans[0], "etype", 1), "ConnectionClosed");
    cr_assert_not_null(tp_field(&spans[0], "message", 1));
    cr_assert_not(ldprof_http_tracked(FD));
}

Test(preload_http, close_delimited_response_ends_at_close)
{
    char req[1024];
    static const char resp[] = "HTTP/1.0 200 OK\r\n\r\nuntil the end";
    size_t n = traced_req(req, sizeof(req), "GET", "/stream", "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, resp, sizeof(resp) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0);
    ldprof_http_on_shutdown(FD, 1 /* SHUT_WR */);
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert_eq(spans[0].flags, 0, "a body delimited by the close is not an error");
}

Test(preload_http, bad_or_duplicate_headers_are_not_traced)
{
    char req[2048], info[LDPROF_TRACE_INFO_SIZE], hmac[LDPROF_TRACE_HMAC_SIZE];
    int n;

    tp_sign(BASE, PARENT, info, hmac);
    hmac[0] = hmac[0] == 'a' ? 'b' : 'a'; /* wrong HMAC */
    n = snprintf(req, sizeof(req), "GET /a HTTP/1.1\r\nX-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n\r\n",
                 info, hmac);
    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, (size_t)n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0, "wrong HMAC");

    tp_sign(BASE, PARENT, info, hmac);
    n = snprintf(req, sizeof(req),
                 "GET /b HTTP/1.1\r\nX-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\nX-Trace-Info: %s\r\n\r\n",
                 info, hmac, info);
    ldprof_http_on_recv(FD, req, (size_t)n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0, "duplicate X-Trace-Info");

    n = snprintf(req, sizeof(req), "GET /c HTTP/1.1\r\nX-Trace-Infox: %s\r\nX-Trace-HMAC: %s\r\n\r\n",
                 info, hmac);
    ldprof_http_on_recv(FD, req, (size_t)n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0, "a longer header name is another header");

    /* and the connection still works for a good one */
    size_t m = traced_req(req, sizeof(req), "GET", "/d", "X-Trace-Info", "X-Trace-HMAC", NULL);
    ldprof_http_on_recv(FD, req, m);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "GET", "/d", "");
}

Test(preload_http, non_http_connection_is_dropped)
{
    static const char tls_hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";

    ldprof_http_on_accept(FD);
    cr_assert(ldprof_http_tracked(FD));
    ldprof_http_on_recv(FD, tls_hello, sizeof(tls_hello) - 1);
    cr_assert_not(ldprof_http_tracked(FD), "the wrappers pass this fd through from now on");
}

Test(preload_http, absolute_form_target)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "http://example.com:8080/p/q?x=%2F#frag",
                          "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    check_wsgi(&spans[0], "GET", "/p/q", "x=%2F");
}

Test(preload_http, long_target_is_truncated_and_flagged)
{
    char target[2000], req[4096];
    memset(target, 'a', sizeof(target) - 1);
    target[0] = '/';
    target[sizeof(target) - 1] = '\0';
    size_t n = traced_req(req, sizeof(req), "GET", target, "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert(spans[0].flags & LDPROF_SPAN_TRUNCATED);
    cr_assert_eq(strlen(tp_field(&spans[0], "request.path", 0)), LDPROF_HTTP_URL_CAP);
}

Test(preload_http, thread_context_follows_the_request)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/ctx", "X-Trace-Info", "X-Trace-HMAC", NULL);
    struct ldprof_ctx *c;

    cr_assert_null(ldprof_ctx_current());
    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    c = ldprof_ctx_current();
    cr_assert_not_null(c, "a traced head sets the reading thread's context");
    cr_assert_eq(memcmp(c->base_id, BASE, 16), 0);

    /* a child span (manual API) is parented to the wsgi span */
    struct ldprof_span *child = ldprof_span_begin(LDPROF_KIND_NET);
    cr_assert_not_null(child);
    ldprof_span_add_str(child, LDPROF_FIELD_START, "net.op", "lookup", -1);
    ldprof_span_add_int(child, LDPROF_FIELD_STOP, "net.bytes", 42);
    ldprof_span_end(child);

    ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_null(ldprof_ctx_current(), "the response clears it");
    cr_assert_eq(tp_collect(spans, 32), 2);
    cr_assert_eq(spans[0].kind, LDPROF_KIND_NET);
    cr_assert_eq(spans[1].kind, LDPROF_KIND_WSGI);
    cr_assert_eq(memcmp(spans[0].parent, spans[1].trace, 16), 0);
    cr_assert_eq(memcmp(spans[0].base, BASE, 16), 0);
    cr_assert_str_eq(tp_field(&spans[0], "net.op", 0), "lookup");
    cr_assert_str_eq(tp_field(&spans[0], "net.bytes", 1), "42");
    cr_assert_null(ldprof_span_begin(LDPROF_KIND_NET), "no context, no span");
}

Test(preload_http, many_connections_on_one_thread)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/multi", "X-Trace-Info", "X-Trace-HMAC", NULL);

    /* the epoll shape: heads on 50 fds, then the responses in another order */
    for (int fd = 100; fd < 150; fd++) {
        ldprof_http_on_accept(fd);
        ldprof_http_on_recv(fd, req, n);
    }
    for (int fd = 149; fd >= 100; fd--)
        ldprof_http_on_send(fd, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 50);
}

Test(preload_http, too_many_pipelined_requests_stop_the_request_side)
{
    char buf[8192];
    size_t n = 0;
    struct ldprof_http_stats st;

    for (int i = 0; i < LDPROF_HTTP_QDEPTH + 2; i++)
        n += traced_req(buf + n, sizeof(buf) - n, "GET", "/p", "X-Trace-Info", "X-Trace-HMAC",
                        NULL);
    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, buf, n);
    for (int i = 0; i < LDPROF_HTTP_QDEPTH + 2; i++)
        ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), LDPROF_HTTP_QDEPTH);
    ldprof_http_stats(&st);
    cr_assert_eq(st.desync, 1);
}

Test(preload_http, trace_wsgi_off_follows_nothing)
{
    char req[1024];
    size_t n = traced_req(req, sizeof(req), "GET", "/off", "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_cfg.trace_wsgi = 0;
    ldprof_http_on_accept(FD);
    cr_assert_not(ldprof_http_tracked(FD));
    (void)n;
}

Test(preload_http, sendfile_body_is_counted)
{
    char req[1024];
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
    size_t n = traced_req(req, sizeof(req), "GET", "/file", "X-Trace-Info", "X-Trace-HMAC", NULL);

    ldprof_http_on_accept(FD);
    ldprof_http_on_recv(FD, req, n);
    ldprof_http_on_send(FD, head, sizeof(head) - 1);
    ldprof_http_on_send_opaque(FD, 6000);
    cr_assert_eq(tp_collect(spans, 32), 0);
    ldprof_http_on_send_opaque(FD, 4000);
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert_eq(spans[0].flags, 0);
}

/* ------------------------------------------------------------ fast framing */

/*
 * Requests and responses in a common, strictly formed subset are framed
 * without http_parser (preload/http.c, "fast framing").  Each scenario below
 * is a keep-alive connection, fed three ways: every read and write whole
 * (heads in one buffer: the fast path where it applies), byte by byte (no
 * head is ever whole: http_parser alone, the reference), and every read and
 * write cut in two at each offset (the two mixed, switching inside
 * messages).  The outcome must be the same: the spans (all their fields)
 * completed after each step, the statistics, whether the fd is still
 * followed.  "@T" in a request stands for valid X-Trace-Info / X-Trace-HMAC
 * header lines; "@t" for the same with names in mixed case, "@I" and "@H"
 * for the X-Trace-Info or X-Trace-HMAC line alone, "@B" for a valid
 * X-Trace-Info with a wrong (well-formed) X-Trace-HMAC, "@W" for valid
 * values after several blanks, "@V" for valid ones with blanks after the
 * X-Trace-HMAC value (http_parser keeps them, the verify ignores them),
 * "@F" for a valid X-Trace-Info folded onto a continuation line
 * (obs-fold), "@X" for an X-Trace-Info 300 bytes long (more than the
 * preload keeps: not traced).
 */
struct fstep {
    char op;          /* 'R' read, 'W' write, 'O' sendfile of atoi(data) bytes, 'S' shutdown, 'E' eof */
    const char *data;
};

#define FSTEPS 16
#define FSIG 8192

struct foutcome {
    struct ldprof_http_stats st;
    int tracked;
    char sig[FSIG];  /* per step: the spans it completed */
};

static char fbuf[16384]; /* up to FAST_HEAD_MAX (8192) heads and more */
static struct tp_span fspans[32];

static size_t fexpand(const char *in)
{
    char info[LDPROF_TRACE_INFO_SIZE], hmac[LDPROF_TRACE_HMAC_SIZE];
    size_t n = 0;

    tp_sign(BASE, PARENT, info, hmac);
    for (const char *c = in; *c; c++) {
        if (c[0] == '@' && c[1] != '\0' && strchr("TtIHBWVFX", c[1]) != NULL) {
            char *o = fbuf + n;
            size_t room = sizeof(fbuf) - n;
            int k;

            switch (c[1]) {
            case 'T':
                k = snprintf(o, room, "X-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n", info, hmac);
                break;
            case 't':
                k = snprintf(o, room, "x-TRACE-info: %s\r\nX-TRACE-HMAC: %s\r\n", info, hmac);
                break;
            case 'I':
                k = snprintf(o, room, "X-Trace-Info: %s\r\n", info);
                break;
            case 'H':
                k = snprintf(o, room, "X-Trace-HMAC: %s\r\n", hmac);
                break;
            case 'B':
                k = snprintf(o, room, "X-Trace-Info: %s\r\nX-Trace-HMAC: %.39s%c\r\n", info, hmac,
                             hmac[39] == '0' ? '1' : '0');
                break;
            case 'W':
                k = snprintf(o, room, "X-Trace-Info:\t %s\r\nX-Trace-HMAC:  \t%s\r\n", info, hmac);
                break;
            case 'V':
                k = snprintf(o, room, "X-Trace-Info: %s\r\nX-Trace-HMAC: %s \t\r\n", info, hmac);
                break;
            case 'F':
                k = snprintf(o, room, "X-Trace-Info:\r\n %s\r\nX-Trace-HMAC: %s\r\n", info, hmac);
                break;
            default: /* 'X' */
                k = snprintf(o, room, "X-Trace-Info: %s%0*d\r\nX-Trace-HMAC: %s\r\n", info,
                             (int)(300 - strlen(info)), 0, hmac);
                break;
            }
            cr_assert(k > 0 && (size_t)k < room);
            n += (size_t)k;
            c++;
        } else {
            cr_assert(n + 1 < sizeof(fbuf));
            fbuf[n++] = *c;
        }
    }
    return n;
}

static void ffeed(char op, const char *b, size_t n)
{
    if (op == 'R')
        ldprof_http_on_recv(FD, b, n);
    else
        ldprof_http_on_send(FD, b, n);
}

/* mode 0: whole; 1: byte by byte; 2: cut at @cut (clamped) */
static void frun(const struct fstep *steps, int mode, size_t cut, struct foutcome *out)
{
    struct ldprof_http_stats a, b;
    size_t sl = 0;

    memset(out, 0, sizeof(*out));
    tp_collect(fspans, 32);
    ldprof_http_stats(&a);
    ldprof_http_on_accept(FD);
    for (int i = 0; i < FSTEPS && steps[i].op; i++) {
        const struct fstep *st = &steps[i];
        size_t n;
        int ns;

        if (st->op == 'R' || st->op == 'W') {
            n = fexpand(st->data);
            if (mode == 0) {
                ffeed(st->op, fbuf, n);
            } else if (mode == 1) {
                for (size_t k = 0; k < n; k++)
                    ffeed(st->op, fbuf + k, 1);
            } else {
                size_t c = cut < n ? cut : n;
                if (c > 0)
                    ffeed(st->op, fbuf, c);
                if (c < n)
                    ffeed(st->op, fbuf + c, n - c);
            }
        } else if (st->op == 'O') {
            ldprof_http_on_send_opaque(FD, (size_t)atoi(st->data));
        } else if (st->op == 'S') {
            ldprof_http_on_shutdown(FD, SHUT_WR);
        } else if (st->op == 'E') {
            ldprof_http_on_eof(FD);
        }
        ns = tp_collect(fspans, 32);
        sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "[%d:%d]", i, ns);
        for (int j = 0; j < ns && sl < FSIG; j++) {
            sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "{k%d f%d", fspans[j].kind,
                                   fspans[j].flags);
            for (int b = 0; b < 32 && sl < FSIG; b++) /* base and parent ids (trace: new) */
                sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "%s%02x", b % 16 ? "" : " ",
                                       b < 16 ? fspans[j].base[b] : fspans[j].parent[b - 16]);
            for (int f = 0; f < fspans[j].nfields && sl < FSIG; f++)
                sl += (size_t)snprintf(out->sig + sl, FSIG - sl, " %s%s=%s", fspans[j].stop[f] ? "/" : "",
                                       fspans[j].key[f], fspans[j].val[f]);
            if (sl < FSIG)
                sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "}");
        }
        cr_assert_lt(sl, FSIG);
    }
    out->tracked = ldprof_http_tracked(FD);
    ldprof_http_on_close(FD);
    {
        int ns = tp_collect(fspans, 32);
        sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "[close:%d]", ns);
        for (int j = 0; j < ns && sl < FSIG; j++)
            sl += (size_t)snprintf(out->sig + sl, FSIG - sl, "{f%d %s}", fspans[j].flags,
                                   tp_field(&fspans[j], "etype", 1) ? tp_field(&fspans[j], "etype", 1) : "");
    }
    ldprof_http_stats(&b);
    out->st.requests = b.requests - a.requests;
    out->st.traced = b.traced - a.traced;
    out->st.responses = b.responses - a.responses;
    out->st.abandoned = b.abandoned - a.abandoned;
    out->st.desync = b.desync - a.desync;
}

#define FANY UINT64_MAX /* fcheck: whatever the parser makes of it */

static void fcheck(const char *name, const struct fstep *steps, uint64_t want_requests,
                   uint64_t want_traced, uint64_t want_responses)
{
    static struct foutcome ref, got;
    size_t maxlen = 0;

    frun(steps, 1, 0, &ref);
    if (want_requests != FANY) {
        cr_assert_eq(ref.st.requests, want_requests, "%s: requests %lu", name,
                     (unsigned long)ref.st.requests);
        cr_assert_eq(ref.st.traced, want_traced, "%s: traced %lu", name, (unsigned long)ref.st.traced);
        cr_assert_eq(ref.st.responses, want_responses, "%s: responses %lu", name,
                     (unsigned long)ref.st.responses);
    }
    for (int i = 0; i < FSTEPS && steps[i].op; i++)
        if (steps[i].op == 'R' || steps[i].op == 'W') {
            size_t n = fexpand(steps[i].data);
            if (n > maxlen)
                maxlen = n;
        }
    for (size_t cut = 0; cut <= maxlen + 1; cut++) {
        frun(steps, cut == maxlen + 1 ? 0 : 2, cut, &got);
        cr_assert_str_eq(got.sig, ref.sig, "%s, cut %zu", name, cut);
        cr_assert_eq(memcmp(&got.st, &ref.st, sizeof(ref.st)), 0, "%s, cut %zu: stats differ", name, cut);
        cr_assert_eq(got.tracked, ref.tracked, "%s, cut %zu", name, cut);
    }
}

#define GETT "GET /t?x=1 HTTP/1.1\r\nHost: h\r\n@T\r\n"
#define R200(body) "HTTP/1.1 200 OK\r\nContent-Length: " #body "\r\n\r\n"

Test(preload_http, fast_content_length_responses)
{
    static const struct fstep s[] = {
        {'R', "POST /v2/queues/q/messages HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"},
        {'W', "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\ncontent-length:  2\r\n\r\n{}"},
        {'R', GETT},
        {'W', "HTTP/1.1 200 OK\r\nX_Odd.Name: a\tb\r\nContent-Length: 0\r\n\r\n"},
        {'R', "DELETE /d HTTP/1.1\r\nHost: h\r\n@TContent-Length: 3\r\n\r\nabc"},
        {'W', "HTTP/1.1 404 \r\nContent-Length: 10\r\n\r\n0123456789"},
        {'R', GETT},
        {'W', R200(3) "ab"},
        {'W', "c"},
        {0, NULL}};
    fcheck("content-length", s, 4, 3, 4);
}

Test(preload_http, fast_chunked_and_bodyless_responses)
{
    static const struct fstep s[] = {
        {'R', GETT},
        {'W', "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
        {'R', GETT},
        {'W', "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"},
        {'R', GETT},
        {'W', "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"},
        {'R', "HEAD /h HTTP/1.1\r\n@T\r\n"},
        {'W', "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"},
        {'R', GETT},
        {'W', R200(2) "ok"},
        {0, NULL}};
    fcheck("chunked/204/304/HEAD", s, 5, 5, 5);
}

/*
 * 204 and 304 without Content-Length or Transfer-Encoding end with their
 * head, whatever the request (http_parser's http_message_needs_eof): the
 * fast path frames them.  With a Content-Length http_parser reads a body
 * (but not after HEAD), with Transfer-Encoding chunks: those stay with it.
 */
#define HEADT "HEAD /h HTTP/1.1\r\nHost: h\r\n@T\r\n"
#define DELT "DELETE /v2/queues/q HTTP/1.1\r\nHost: h\r\n@T\r\n"
#define R204 "HTTP/1.1 204 No Content\r\nDate: d\r\n\r\n"
#define R304 "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"

Test(preload_http, fast_204_304_keep_alive)
{
    static const struct fstep s[] = {
        {'R', GETT},
        {'W', R200(5) "hello"},
        {'R', DELT},
        {'W', R204},
        {'R', GETT},
        {'W', R304},
        {'R', "PUT /v2/queues/q HTTP/1.1\r\nHost: h\r\n@TContent-Length: 0\r\n\r\n"},
        {'W', "HTTP/1.1 204 \r\n\r\n"},
        {'R', HEADT},
        {'W', R204},
        {'R', HEADT},
        {'W', R304},
        {'R', HEADT},
        {'W', R200(7)}, /* HEAD: no body (the parser) */
        {'R', GETT},
        {'W', R200(2) "ok"},
        {0, NULL}};
    fcheck("204/304 keep-alive", s, 8, 8, 8);
}

Test(preload_http, fast_204_304_with_length_or_chunked)
{
    static const struct fstep s[] = {
        {'R', DELT},
        {'W', "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"},
        {'R', GETT},
        {'W', "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"}, /* a body */
        {'R', HEADT},
        {'W', "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"}, /* none */
        {'R', GETT},
        {'W', "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {'W', "2\r\nab\r\n0\r\n\r\n"},
        {'R', HEADT},
        {'W', "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {'R', GETT},
        {'W', R204},
        {'R', GETT},
        {'W', "HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n"},
        {'W', "xy" R204}, /* the 304's body, then a 204 to no request */
        {0, NULL}};
    fcheck("204/304 with length or chunked", s, 7, 7, 8);
}

Test(preload_http, fast_204_304_pipelined_and_odd)
{
    static const struct fstep piped[] = {
        {'R', GETT DELT HEADT GETT "PUT /q HTTP/1.1\r\nHost: h\r\n\r\n" GETT},
        {'W', R200(2) "ok" R204 R304},
        {'W', R304 R204 R200(3) "abc"},
        {0, NULL}};
    static const struct fstep odd[] = {
        {'R', "PUT /up HTTP/1.1\r\n@TExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"},
        {'W', "HTTP/1.1 100 Continue\r\n\r\n"},
        {'R', "abc"},
        {'W', R204},
        {'R', DELT},
        {'W', "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"},
        {'R', GETT},
        {'W', R204}, /* after "close" */
        {0, NULL}};
    static const struct fstep nolen[] = {
        {'R', GETT},
        {'W', "HTTP/1.1 304 Not Modified\r\n\r\n"},
        {'R', GETT},
        {'W', "HTTP/1.1 205 Reset Content\r\n\r\n"}, /* no length: until the end */
        {'R', GETT},
        {'W', R204},
        {'S', ""},
        {0, NULL}};
    static const struct fstep http10[] = {
        {'R', GETT},
        {'W', "HTTP/1.0 204 No Content\r\n\r\n"},
        {'R', GETT},
        {'W', R204},
        {0, NULL}};
    static const struct fstep trailing[] = {
        {'R', DELT GETT},
        {'W', R204 "xyz"}, /* bytes after a 204: not a response */
        {'W', R200(0)},
        {0, NULL}};
    fcheck("204/304 pipelined", piped, 6, 5, 6);
    static const struct fstep s101[] = {/* 1xx: the parser's (101 ends both sides) */
        {'R', GETT},
        {'W', "HTTP/1.1 101 Switching Protocols\r\n\r\n"},
        {'R', GETT},
        {'W', R204},
        {0, NULL}};
    fcheck("204/304 odd", odd, 3, 3, 3);
    fcheck("bare 101", s101, 1, 1, 1);
    fcheck("no length", nolen, 3, 3, 2);
    fcheck("http/1.0 204", http10, 2, 2, 2);
    fcheck("bytes after 204", trailing, 2, 2, 1);
}

Test(preload_http, fast_interim_and_close_responses)
{
    static const struct fstep s[] = {
        {'R', "PUT /up HTTP/1.1\r\n@TExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"},
        {'W', "HTTP/1.1 100 Continue\r\n\r\n"},
        {'R', "abc"},
        {'W', R200(1) "x"},
        {'R', GETT},
        {'W', "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\ny"},
        {'R', GETT},
        {'W', R200(1) "z"}, /* after "close" (http_parser, not strict, goes on) */
        {0, NULL}};
    fcheck("100/close", s, 3, 3, 3);
}

Test(preload_http, fast_pipelined_untraced_then_traced)
{
    static const struct fstep s[] = {
        {'R', "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345"
              "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /d?q=1 HTTP/1.1\r\n@TContent-Length: 2\r\n\r\nxy"
              "GET /e HTTP/1.1\r\nHost: h\r\n\r\n"},
        {'W', R200(1) "1" R200(2) "22"},
        {'W', "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n3\r\n0\r\n\r\n"},
        {'W', R200(4) "4444" R200(5) "55555"},
        {0, NULL}};
    fcheck("pipelined", s, 5, 1, 5);
}

#define UNT "GET /u HTTP/1.1\r\nHost: h\r\n\r\n"

Test(preload_http, fast_too_many_pipelined_requests)
{
    /* 8 wait for their response, the 9th stops the request side */
    static const struct fstep s[] = {
        {'R', UNT UNT UNT UNT UNT UNT UNT UNT UNT GETT},
        {'W', R200(0) R200(0) R200(0) R200(0) R200(0)},
        {'W', R200(0) R200(0) R200(0) R200(0) R200(0)},
        {0, NULL}};
    fcheck("queue full", s, 9, 0, 10);
}

Test(preload_http, fast_requests_the_parser_must_take)
{
    static const struct fstep s[] = {
        {'R', "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
        {'W', R200(0)},
        {'R', "GET /f#frag HTTP/1.1\r\nConnection: keep-alive\r\nx-trace-other: 1\r\n\r\n"},
        {'W', R200(0)},
        {'R', "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"},
        {'W', R200(0)},
        {'R', "GET /t HTTP/1.1\r\nX-Trace-Info: abc\r\nX-Trace-HMAC: def\r\n\r\n"}, /* bad */
        {'W', R200(0)},
        {'R', "PATCH /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nZ" GETT},
        {'W', R200(0) R200(0)},
        {'R', "GET /l HTTP/1.1\nHost: h\n\n"}, /* bare LF */
        {'W', "HTTP/1.1 200 OK\nContent-Length: 0\n\n"},
        {0, NULL}};
    fcheck("parser requests", s, 7, 1, 7);
}

Test(preload_http, fast_bad_streams_desync_alike)
{
    static const struct fstep dup[] = {
        {'R', GETT},
        {'W', "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
        {0, NULL}};
    static const struct fstep garbage[] = {
        {'R', GETT "GET /u HTTP/1.1\r\n\r\n"},
        {'W', R200(1) "xyz"}, /* two bytes too many */
        {'W', R200(0)},
        {0, NULL}};
    static const struct fstep http10[] = {
        {'R', "GET /o HTTP/1.0\r\n@T\r\n"},
        {'W', "HTTP/1.0 200 OK\r\n\r\nuntil the end"},
        {'S', ""},
        {0, NULL}};
    static const struct fstep notreq[] = {
        {'R', "get /x HTTP/1.1\r\n\r\n"},
        {0, NULL}};
    static const struct fstep upgrade[] = {
        {'R', "GET /ws HTTP/1.1\r\n@TConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
        {'W', "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
        {'W', "\x81\x05hello"},
        {0, NULL}};
    fcheck("duplicate content-length", dup, 1, 1, 0);
    fcheck("body too long", garbage, 2, 1, 1);
    fcheck("http/1.0", http10, 1, 1, 1);
    fcheck("not a request", notreq, 0, 0, 0);
    fcheck("upgrade", upgrade, 1, 1, 1);
}

/*
 * Every byte value (but NUL) in each place the fast path checks a word at a
 * time or with a table - the request-target, a header name, an ordinary
 * value, a trace value, a response's reason phrase and header name - at an
 * offset inside an 8-byte word: the fast path must frame and trace exactly
 * as the parser does, whether it takes the byte or leaves the head to it.
 */
Test(preload_http, fast_every_byte_in_every_place)
{
    static char rq[12][160], rs[2][96];
    const char *fmt[12] = {
        "GET /0123456789%cz0123456789 HTTP/1.1\r\n@T\r\n",
        "GET /n HTTP/1.1\r\nX-0123456789%cz0123456789: 1\r\n@T\r\n",
        "GET /v HTTP/1.1\r\nHost: 0123456789%cz0123456789\r\n@T\r\n",
        "GET /i HTTP/1.1\r\n@HX-Trace-Info: 0123456789%cz0123456789\r\n\r\n",
        "GET /h HTTP/1.1\r\n@IX-Trace-HMAC: 0123456789%cz0123456789\r\n\r\n",
        "GET /%c HTTP/1.1\r\n@T\r\n",
        "GET /e HTTP/1.1\r\nHost: 0123456789%c\r\n@T\r\n", /* in the last (overlapping) word */
        "GET /y HTTP/1.1\r\n@TA%c: 1\r\n\r\n",  /* near the end of the buffer: */
        "GET /z HTTP/1.1\r\n@TA: %c\r\n\r\n",   /* byte by byte */
        "GET /w HTTP/1.1\r\n@TA: 0123456789abcdef\t0123456789abcd%cz0123456789\r\n\r\n",
        "POST /c HTTP/1.1\r\n@TContent-Lengt%c: 1\r\n\r\nZ", /* names the fast path */
        "GET /k HTTP/1.1\r\n@TConnectio%c: close\r\n\r\n",   /* compares */
    };
    const char *rfmt[2] = {
        "HTTP/1.1 200 O0123456789%cz0123456789\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA0123456789%cz0123456789: 1\r\nContent-Length: 0\r\n\r\n",
    };

    for (int b = 1; b < 256; b++) {
        for (int i = 0; i < 12; i++)
            snprintf(rq[i], sizeof(rq[i]), fmt[i], b);
        for (int i = 0; i < 2; i++)
            snprintf(rs[i], sizeof(rs[i]), rfmt[i], b);
        for (int i = 0; i < 12; i++) {
            const struct fstep s[] = {{'R', rq[i]}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            char name[32];
            snprintf(name, sizeof(name), "request %d, byte %d", i, b);
            fcheck(name, s, FANY, 0, 0);
        }
        for (int i = 0; i < 2; i++) {
            const struct fstep s[] = {{'R', GETT}, {'W', rs[i]}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            char name[32];
            snprintf(name, sizeof(name), "response %d, byte %d", i, b);
            fcheck(name, s, FANY, 0, 0);
        }
    }
}

/*
 * The head scan looks at a line 16 and 32 bytes at a time from its start
 * (name, then value), then 16 at a time with the last ones overlapping,
 * and byte by byte in the last 32 bytes of a buffer (the request-target:
 * 32, then 16 at a time): every byte 1-255 at the edges of those windows
 * (target bytes at 15-16, 31-33 and 47-48 bytes from its '/'; value bytes
 * as far from the line's start; name bytes at 0 and 14-16; a
 * Content-Length value's last byte; the blank line's LF; the last line of
 * a buffer starting 31-34 bytes before its end), outcomes equal to the
 * parser's.
 */
Test(preload_http, fast_every_byte_at_window_edges)
{
    static const char fill[] = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ";
    static const char nfill[] = "Abcdefghijklmnopq";
    static const int voff[] = {15, 16, 31, 32, 33, 47, 48}; /* from the line's start */
    static const int noff[] = {0, 14, 15, 16}; /* (0: the line's first byte) */
    static const int toff[] = {15, 16, 31, 32, 33, 47, 48}; /* from the target's '/' */
    static const int dist[] = {31, 32, 33, 34}; /* last line's start to the end */
    char rq[160], rs[160], name[48];

    for (int b = 1; b < 256; b++) {
        for (size_t i = 0; i < sizeof(voff) / sizeof(voff[0]); i++) {
            /* (after a CR, what would be a line of its own) */
            snprintf(rq, sizeof(rq), "GET /w HTTP/1.1\r\nA: %.*s%czB: 1\r\n@T\r\n", voff[i] - 3,
                     fill, b);
            const struct fstep s[] = {{'R', rq}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            snprintf(name, sizeof(name), "value at %d, byte %d", voff[i], b);
            fcheck(name, s, FANY, 0, 0);
        }
        for (size_t i = 0; i < sizeof(noff) / sizeof(noff[0]); i++) {
            snprintf(rq, sizeof(rq), "GET /n HTTP/1.1\r\n%.*s%cz: 1\r\n@T\r\n", noff[i], nfill, b);
            const struct fstep s[] = {{'R', rq}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            snprintf(name, sizeof(name), "name at %d, byte %d", noff[i], b);
            fcheck(name, s, FANY, 0, 0);
        }
        for (size_t i = 0; i < sizeof(toff) / sizeof(toff[0]); i++) {
            snprintf(rq, sizeof(rq), "GET /%.*s%cz HTTP/1.1\r\n@T\r\n", toff[i] - 1, fill, b);
            const struct fstep s[] = {{'R', rq}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            snprintf(name, sizeof(name), "target at %d, byte %d", toff[i], b);
            fcheck(name, s, FANY, 0, 0);
        }
        {
            /* a Content-Length value's byte (fast_content_length) */
            snprintf(rq, sizeof(rq), "POST /l HTTP/1.1\r\nContent-Length: 1%c\r\n@T\r\nZZ", b);
            const struct fstep s[] = {{'R', rq}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            snprintf(name, sizeof(name), "content-length, byte %d", b);
            fcheck(name, s, FANY, 0, 0);
        }
        {
            /* the blank line's second byte, more than 32 bytes before the end */
            snprintf(rq, sizeof(rq), "GET /b HTTP/1.1\r\nA: 1\r\n\r%c%s", b, fill);
            const struct fstep s[] = {{'R', rq}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
            snprintf(name, sizeof(name), "blank line, byte %d", b);
            fcheck(name, s, FANY, 0, 0);
        }
        for (size_t i = 0; i < sizeof(dist) / sizeof(dist[0]); i++) {
            /* "A: " value "\r\n\r\n": dist = 3 + k + 1 + 4; and a name byte */
            for (int inname = 0; inname < 2; inname++) {
                if (inname)
                    snprintf(rs, sizeof(rs),
                             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%.*s%c: 1\r\n\r\n",
                             dist[i] - 8, nfill, b);
                else
                    snprintf(rs, sizeof(rs),
                             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nA: %.*s%c\r\n\r\n",
                             dist[i] - 8, fill, b);
                const struct fstep s[] = {{'R', GETT}, {'W', rs}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
                snprintf(name, sizeof(name), "last line %d, %s byte %d", dist[i],
                         inname ? "name" : "value", b);
                fcheck(name, s, FANY, 0, 0);
            }
        }
    }
}

/*
 * Lines of every length from 0 to 100 bytes of value (with a tab every
 * seventeenth byte), first after the request line and last before the end
 * of the buffer, and request-targets of 1 to 101 bytes, are framed by the
 * fast path (never handed to the parser) and as the parser frames them.
 */
Test(preload_http, fast_lines_of_every_length)
{
    char val[128], tgt[128], rq[384], rs[256];
    struct ldprof_http_stats a, b;
    unsigned want = 0;

    for (int i = 0; i < 120; i++) {
        val[i] = i % 17 == 16 ? '\t' : (char)('a' + i % 26);
        tgt[i] = "abc/?=&%.-_~!$'()*+,;:@"[i % 23];
    }
    ldprof_http_stats(&a);
    ldprof_http_on_accept(FD);
    for (int k = 0; k <= 100; k++) {
        snprintf(rq, sizeof(rq), "GET /%.*s HTTP/1.1\r\nX-V: %.*s\r\nHost: h\r\n\r\n", k,
                 tgt, k, val);
        snprintf(rs, sizeof(rs), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-V: x%.*s\r\n\r\n", k,
                 val);
        ldprof_http_on_recv(FD, rq, strlen(rq));
        ldprof_http_on_send(FD, rs, strlen(rs));
        want++;
    }
    cr_assert(ldprof_http_tracked(FD));
    ldprof_http_on_close(FD);
    ldprof_http_stats(&b);
    cr_assert_eq(b.requests - a.requests, want);
    cr_assert_eq(b.responses - a.responses, want);
    cr_assert_eq(b.parsed - a.parsed, 0, "%lu hand-overs to the parser",
                 (unsigned long)(b.parsed - a.parsed));
    for (int k = 0; k <= 100; k += 3) {
        char name[32];
        snprintf(rq, sizeof(rq), "GET /%.*s HTTP/1.1\r\nX-V: %.*s\r\n@T\r\n", k, tgt, k, val);
        snprintf(rs, sizeof(rs), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-V: x%.*s\r\n\r\nZ", k,
                 val);
        const struct fstep s[] = {{'R', rq}, {'W', rs}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
        snprintf(name, sizeof(name), "value of %d bytes", k);
        fcheck(name, s, 2, 2, 2);
    }
}

/* Heads of FAST_HEAD_MAX (8192) bytes are framed by the fast path, with or
 * without a body in the same buffer; one byte more goes to the parser;
 * both as the parser frames them. */
Test(preload_http, fast_heads_at_the_size_limit)
{
    static char big[8400];
    static const char pre[] = "POST /big HTTP/1.1\r\n@TX-Pad: ";
    static const char post[] = "\r\nContent-Length: 2\r\n\r\n";
    char info[LDPROF_TRACE_INFO_SIZE], hmac[LDPROF_TRACE_HMAC_SIZE];
    size_t tlen;

    tp_sign(BASE, PARENT, info, hmac);
    tlen = strlen("X-Trace-Info: \r\nX-Trace-HMAC: \r\n") + strlen(info) + strlen(hmac);
    for (size_t head = 8191; head <= 8193; head++) {
        /* "@T" stands for tlen bytes: the head is @head bytes long */
        size_t pad = head - (sizeof(pre) - 1 - 2 + tlen) - (sizeof(post) - 1);
        struct ldprof_http_stats a, b;
        char name[48];

        snprintf(big, sizeof(big), "%s%0*d%sok", pre, (int)pad, 0, post);
        ldprof_http_stats(&a);
        ldprof_http_on_accept(FD);
        ldprof_http_on_recv(FD, fbuf, fexpand(big));
        ldprof_http_on_send(FD, R200(0), sizeof(R200(0)) - 1);
        ldprof_http_on_close(FD);
        ldprof_http_stats(&b);
        cr_assert_eq(b.requests - a.requests, 1);
        cr_assert_eq(b.traced - a.traced, 1);
        cr_assert_eq(b.parsed - a.parsed, head <= 8192 ? 0 : 1, "head of %zu bytes", head);

        const struct fstep s[] = {{'R', big}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
        snprintf(name, sizeof(name), "head of %zu bytes", head);
        fcheck(name, s, 2, 2, 2);
    }
}

/* Request and status lines: every method the fast path takes, near misses
 * it must leave to the parser, and reason phrases it scans for the CR LF. */
Test(preload_http, fast_request_and_status_lines)
{
    static const char *const reqs[] = {
        "GET /g HTTP/1.1\r\n@T\r\n",
        "PUT /u HTTP/1.1\r\n@TContent-Length: 1\r\n\r\nu",
        "POST /p HTTP/1.1\r\n@TContent-Length: 2\r\n\r\npp",
        "PATCH /a HTTP/1.1\r\n@T\r\n",
        "DELETE /d HTTP/1.1\r\n@T\r\n",
        "OPTIONS /o HTTP/1.1\r\n@T\r\n",
        "HEAD /h HTTP/1.1\r\n@T\r\n",
        "GETS /x HTTP/1.1\r\n@T\r\n",
        "POSTS /x HTTP/1.1\r\n@T\r\n",
        "PUTT /x HTTP/1.1\r\n@T\r\n",
        "DELETES /x HTTP/1.1\r\n@T\r\n",
        "OPTIONSS /x HTTP/1.1\r\n@T\r\n",
        "PURGE /x HTTP/1.1\r\n@T\r\n",
        "GET  /x HTTP/1.1\r\n@T\r\n",
        "GET /x  HTTP/1.1\r\n@T\r\n",
        "GET x HTTP/1.1\r\n@T\r\n",
        "GET /x HTTP/1.0\r\n@T\r\n",
        "GET /x HTTP/1.10\r\n@T\r\n",
        "GET /x HTTP/1.1 \r\n@T\r\n",
        "GET /x HTTP/1.1\n@T\r\n",
        "GET /x HTTP/1.1\r@T\r\n",
        "GET /x#y HTTP/1.1\r\n@T\r\n",
        "GET /0123456789abcdef0123456789abcde HTTP/1.1\r\n@T\r\n", /* target of 32 bytes */
        "GET / HTTP/1.1\r\n\r\n",                                  /* the shortest head */
    };
    static const char *const resps[] = {
        "HTTP/1.1 200 \tOK\t\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\rX\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 O\x80K\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 A reason phrase longer than sixteen bytes\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 599 X\r\nContent-Length: 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", /* the head alone (its body follows) */
    };

    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        const struct fstep s[] = {{'R', reqs[i]}, {'W', R200(0)}, {'R', GETT}, {'W', R200(1) "1"},
                                  {0, NULL}};
        char name[48];
        snprintf(name, sizeof(name), "request line %zu", i);
        fcheck(name, s, FANY, 0, 0);
    }
    for (size_t i = 0; i < sizeof(resps) / sizeof(resps[0]); i++) {
        const struct fstep s[] = {{'R', GETT}, {'W', resps[i]}, {'W', "x"}, {'R', GETT},
                                  {'W', R200(0)}, {0, NULL}};
        char name[48];
        snprintf(name, sizeof(name), "status line %zu", i);
        fcheck(name, s, FANY, 0, 0);
    }
}

/* ldprof_http_on_send_iov takes the tx lock once for all its buffers: the
 * outcome must be that of ldprof_http_on_send on each buffer in turn. */
Test(preload_http, send_iov_is_send_of_each_buffer)
{
    static const char *const cases[][4] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "hello", NULL},
        {"HTTP/1.1 200 OK\r\nContent-", "Length: 5\r\n\r\nhe", "llo"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n", "0\r\n\r\n"},
        {R200(1) "x" R200(2), "yy", "garbage after the response"},    /* desync, then more */
        {"not a response at all", R200(0), NULL},
        {R200(0), "", R200(0)},                                       /* an empty buffer */
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct ldprof_http_stats a[2], b[2];
        int nspans[2], tracked[2], flags[2][4];

        for (int way = 0; way < 2; way++) {
            struct iovec iov[3];
            size_t k = 0, total = 0;
            char req[1024];
            size_t n = traced_req(req, sizeof(req), "GET", "/iov", "X-Trace-Info", "X-Trace-HMAC",
                                  NULL);

            tp_collect(spans, 32);
            ldprof_http_stats(&a[way]);
            ldprof_http_on_accept(FD);
            ldprof_http_on_recv(FD, req, n);
            ldprof_http_on_recv(FD, req, n);
            for (; k < 3 && cases[c][k] != NULL; k++) {
                iov[k].iov_base = (void *)cases[c][k];
                iov[k].iov_len = strlen(cases[c][k]);
                total += iov[k].iov_len;
            }
            if (way == 0) {
                for (size_t i = 0; i < k; i++)
                    if (iov[i].iov_len > 0)
                        ldprof_http_on_send(FD, iov[i].iov_base, iov[i].iov_len);
            } else {
                ldprof_http_on_send_iov(FD, iov, k, total);
            }
            tracked[way] = ldprof_http_tracked(FD);
            ldprof_http_on_close(FD);
            nspans[way] = tp_collect(spans, 32);
            for (int i = 0; i < 4; i++)
                flags[way][i] = i < nspans[way] ? spans[i].flags : -1;
            ldprof_http_stats(&b[way]);
        }
        cr_assert_eq(nspans[0], nspans[1], "case %zu", c);
        cr_assert_eq(memcmp(flags[0], flags[1], sizeof(flags[0])), 0, "case %zu", c);
        cr_assert_eq(tracked[0], tracked[1], "case %zu", c);
        cr_assert_eq(b[0].requests - a[0].requests, b[1].requests - a[1].requests, "case %zu", c);
        cr_assert_eq(b[0].responses - a[0].responses, b[1].responses - a[1].responses, "case %zu", c);
        cr_assert_eq(b[0].desync - a[0].desync, b[1].desync - a[1].desync, "case %zu", c);
        cr_assert_eq(b[0].abandoned - a[0].abandoned, b[1].abandoned - a[1].abandoned, "case %zu", c);
    }
}

/* Requests and responses are counted per fd (no shared atomic per request):
 * the counts of a reused fd number, and of an fd dropped from tracking
 * without a close, are kept. */
Test(preload_http, stats_survive_fd_reuse_and_dropped_fds)
{
    static const char req[] = "GET /s HTTP/1.1\r\nHost: h\r\n\r\n";
    struct ldprof_http_stats a, b;

    ldprof_http_stats(&a);
    for (int i = 0; i < 2; i++) {
        ldprof_http_on_accept(FD);
        ldprof_http_on_recv(FD, req, sizeof(req) - 1);
        ldprof_http_on_send(FD, RESP, sizeof(RESP) - 1);
        ldprof_http_on_close(FD);
    }
    /* a response to no request (counted), then bytes that are not HTTP:
     * the fd is forgotten without a close */
    ldprof_http_on_accept(FD + 1);
    ldprof_http_on_send(FD + 1, RESP, sizeof(RESP) - 1);
    ldprof_http_on_recv(FD + 1, "\x16\x03\x01\x02\x00", 5);
    cr_assert_not(ldprof_http_tracked(FD + 1));
    ldprof_http_on_accept(FD + 1);
    ldprof_http_on_recv(FD + 1, req, sizeof(req) - 1);
    ldprof_http_on_send(FD + 1, RESP, sizeof(RESP) - 1);
    ldprof_http_on_close(FD + 1);
    ldprof_http_stats(&b);
    cr_assert_eq(b.requests - a.requests, 3);
    cr_assert_eq(b.responses - a.responses, 4);
    cr_assert_eq(b.traced - a.traced, 0);
    cr_assert_eq(b.desync - a.desync, 0);
}

/*
 * The fast path must frame common heads itself, not merely agree with the
 * parser (a fast path that declines too much is only slower, which the
 * comparisons above cannot see): stats.parsed counts the hand-overs to
 * http_parser.  zaqard's own request and response (curl, libmicrohttpd:
 * the response head in a buffer of its own), then lines of every length
 * from 0 to 40 bytes of value, and names of 1 to 20 bytes, first, in the
 * middle and last before the end of the buffer.
 */
Test(preload_http, fast_common_heads_skip_the_parser)
{
    static const char req[] =
        "POST /v2/queues/bench/messages HTTP/1.1\r\nHost: 127.0.0.1:38195\r\n"
        "User-Agent: curl/7.88.1\r\nAccept: */*\r\n"
        "Client-ID: fe33228b-6480-46de-92cd-d1bf709fcaa8\r\n"
        "X-Project-ID: bench1\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n"
        "{\"messages\":[{\"ttl\":300,\"body\":1}]}";
    static const char rhead[] = "HTTP/1.1 201 Created\r\nDate: Wed, 25 Nov 2026 07:04:19 GMT\r\n"
                                "Content-Type: application/json; charset=UTF-8\r\n"
                                "Content-Length: 76\r\n\r\n";
    static const char rbody[] =
        "{\"resources\":[\"/v2/queues/bench/messages/429731549a8b4dd482e89d8a6eee2037\"]}";
    static const char val[] = "0123456789abcdef\t0123456789abcdef0123456";
    static const char name[] = "abcdefghij-_.KLMNOPQ";
    struct ldprof_http_stats a, b;
    char rq[512], rs[512];
    unsigned want = 0;

    ldprof_http_stats(&a);
    ldprof_http_on_accept(FD);
    for (int i = 0; i < 3; i++) {
        struct iovec iov[2] = {{(void *)rhead, sizeof(rhead) - 1},
                               {(void *)rbody, sizeof(rbody) - 1}};
        ldprof_http_on_recv(FD, req, sizeof(req) - 1);
        ldprof_http_on_send_iov(FD, iov, 2, sizeof(rhead) + sizeof(rbody) - 2);
        want++;
    }
    for (int k = 0; k <= 40; k++) {
        for (int where = 0; where < 3; where++) {
            const char *pre = where == 0 ? "" : "Host: h\r\n";
            const char *post = where == 2 ? "" : "Accept: x\r\n";
            int n = snprintf(rq, sizeof(rq), "GET /k HTTP/1.1\r\n%sX-V: %.*s\r\n%s\r\n", pre, k,
                             val, post);
            int m = snprintf(rs, sizeof(rs),
                             "HTTP/1.1 200 OK\r\n%sContent-Length: 0\r\n%sX-V: %.*s\r\n%s\r\n", pre,
                             post, k, val, where == 2 ? "" : "Date: d\r\n");
            ldprof_http_on_recv(FD, rq, (size_t)n);
            ldprof_http_on_send(FD, rs, (size_t)m);
            want++;
        }
    }
    for (int k = 1; k <= 20; k++) {
        int n = snprintf(rq, sizeof(rq), "GET /n HTTP/1.1\r\n%.*s: 1\r\nHost: h\r\n\r\n", k, name);
        int m = snprintf(rs, sizeof(rs), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%.*s: 1\r\n\r\n",
                         k, name);
        ldprof_http_on_recv(FD, rq, (size_t)n);
        ldprof_http_on_send(FD, rs, (size_t)m);
        want++;
    }
    ldprof_http_on_recv(FD, "GET / HTTP/1.1\r\n\r\n", 18); /* the shortest head */
    ldprof_http_on_send(FD, R200(0), sizeof(R200(0)) - 1);
    want++;
    cr_assert(ldprof_http_tracked(FD));
    ldprof_http_on_close(FD);
    ldprof_http_stats(&b);
    cr_assert_eq(b.requests - a.requests, want);
    cr_assert_eq(b.responses - a.responses, want);
    cr_assert_eq(b.parsed - a.parsed, 0, "%lu hand-overs to the parser",
                 (unsigned long)(b.parsed - a.parsed));
}

/* zaqard's 204 (DELETE, PUT of an existing queue) and 304 responses
 * without Content-Length, to GET, HEAD and the rest, pipelined too: framed
 * without the parser; with a Content-Length they are handed to it. */
Test(preload_http, fast_204_304_skip_the_parser)
{
    static const char *const rq[] = {
        "DELETE /v2/queues/q HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUser-Agent: curl/7.88.1\r\n"
        "Accept: */*\r\nClient-ID: c\r\nX-Project-ID: p\r\n\r\n",
        "PUT /v2/queues/q HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        "GET /g HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\n",
        "HEAD /g HTTP/1.1\r\n\r\n",
        "HEAD /g HTTP/1.1\r\n\r\n",
    };
    static const char *const rs[] = {
        "HTTP/1.1 204 No Content\r\nDate: Wed, 25 Nov 2026 07:04:19 GMT\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    };
    static const char piped_rq[] = "DELETE /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
                                   "HEAD /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
    static const char piped_rs[] = R204 R304 R204 R200(2) "ok";
    static const char withcl[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    struct ldprof_http_stats a, b;
    unsigned want = 0;

    ldprof_http_stats(&a);
    ldprof_http_on_accept(FD);
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof(rq) / sizeof(rq[0]); k++) {
            ldprof_http_on_recv(FD, rq[k], strlen(rq[k]));
            ldprof_http_on_send(FD, rs[k], strlen(rs[k]));
            want++;
        }
    ldprof_http_on_recv(FD, piped_rq, sizeof(piped_rq) - 1);
    ldprof_http_on_send(FD, piped_rs, sizeof(piped_rs) - 1);
    want += 4;
    ldprof_http_stats(&b);
    cr_assert_eq(b.parsed - a.parsed, 0, "%lu hand-overs to the parser",
                 (unsigned long)(b.parsed - a.parsed));
    /* with a Content-Length (even 0): the parser, each time */
    for (int i = 0; i < 2; i++) {
        ldprof_http_on_recv(FD, rq[0], strlen(rq[0]));
        ldprof_http_on_send(FD, withcl, sizeof(withcl) - 1);
        want++;
    }
    cr_assert(ldprof_http_tracked(FD));
    ldprof_http_on_close(FD);
    ldprof_http_stats(&b);
    cr_assert_eq(b.requests - a.requests, want);
    cr_assert_eq(b.responses - a.responses, want);
    cr_assert_eq(b.desync - a.desync, 0);
    cr_assert_eq(b.parsed - a.parsed, 2);
}

/* Trace headers in every form the fast path takes or leaves to the parser. */
Test(preload_http, fast_trace_header_forms)
{
    static const struct fstep s[] = {
        {'R', GETT},
        {'W', R200(0)},
        {'R', "OPTIONS /v2/m?a=1&b HTTP/1.1\r\n@tHost: h\r\n\r\n"}, /* mixed-case names */
        {'W', R200(0)},
        {'R', "GET /bad HTTP/1.1\r\n@B\r\n"},                    /* wrong HMAC */
        {'W', R200(0)},
        {'R', "GET /i HTTP/1.1\r\n@I\r\n" "GET /h HTTP/1.1\r\n@H\r\n"}, /* one of two */
        {'W', R200(0) R200(0)},
        {'R', "DELETE /ws HTTP/1.1\r\n@W\r\n"},                /* blanks around the values */
        {'W', R200(0)},
        {'R', "PATCH /fold HTTP/1.1\r\n@FContent-Length: 1\r\n\r\nz"}, /* obs-fold */
        {'W', R200(0)},
        {'R', "PUT /long HTTP/1.1\r\n@X\r\n"},                  /* X-Trace-Info too long */
        {'W', R200(0)},
        {'R', "HEAD /x?q HTTP/1.1\r\n@TX-Trace-Other: 1\r\nX-Trace-Infos: 2\r\n\r\n"},
        {'W', R200(7)},
        {0, NULL}};
    static const struct fstep values[] = {
        {'R', "GET /e HTTP/1.1\r\nX-Trace-Info:\r\n@H\r\n"},        /* empty value */
        {'W', R200(0)},
        {'R', "GET /tab HTTP/1.1\r\n@TX-Trace-Info: a\tb\r\n\r\n"},   /* + a repeated one */
        {'W', R200(0)},
        {'R', "POST /p HTTP/1.1\r\nContent-Length: 2\r\n@t\r\nok"},
        {'W', R200(0)},
        {'R', "GET /v HTTP/1.1\r\n@V\r\n" "GET /x HTTP/1.1\r\nX-Trace-Info: x\tb\r\n@H\r\n"},
        {'W', R200(0) R200(0)},
        {0, NULL}};
    fcheck("trace header forms", s, 9, 5, 9);
    fcheck("trace header values", values, 5, 2, 5);
}

Test(preload_http, fast_duplicate_trace_headers)
{
    static const struct fstep s[] = {
        {'R', "GET /1 HTTP/1.1\r\n@T@T\r\n"},
        {'W', R200(0)},
        {'R', "GET /2 HTTP/1.1\r\n@I@T\r\n"},
        {'W', R200(0)},
        {'R', "GET /3 HTTP/1.1\r\n@T@H\r\n"},
        {'W', R200(0)},
        {'R', "GET /4 HTTP/1.1\r\n@tx-trace-hmac: 0\r\n\r\n"},
        {'W', R200(0)},
        {'R', GETT},
        {'W', R200(0)},
        {0, NULL}};
    fcheck("duplicate trace headers", s, 5, 1, 5);
}

Test(preload_http, fast_traced_requests_pipelined_and_split)
{
    static char longt[1200];
    static const struct fstep s[] = {
        {'R', UNT UNT "POST /m?x HTTP/1.1\r\n@TContent-Length: 3\r\n\r\nabc" GETT UNT},
        {'W', R200(0) R200(0) R200(1) "a"},
        {'W', R200(0) R200(0)},
        {'R', "PUT /split HTTP/1.1\r\nHost: h\r\n@I"}, /* a head in two reads */
        {'R', "@H\r\n" UNT},
        {'W', R200(2) "ok" R200(0)},
        {'R', "GET /sp"},
        {'R', "lit HTTP/1.1\r\n@T\r\n" GETT},
        {'W', R200(0) R200(0)},
        {0, NULL}};
    struct fstep l[] = {{'R', longt}, {'W', R200(0)}, {'R', GETT}, {'W', R200(0)}, {0, NULL}};
    int k = snprintf(longt, sizeof(longt), "GET /%0600d?q=1 HTTP/1.1\r\n@T\r\n", 7);

    cr_assert(k > 0 && (size_t)k < sizeof(longt));
    fcheck("pipelined and split traced", s, 9, 5, 9);
    fcheck("long traced target", l, 2, 2, 2);
}

Test(preload_http, fast_sendfile_and_eof)
{
    static const struct fstep s[] = {
        {'R', GETT},
        {'W', "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n"},
        {'O', "6000"},
        {'O', "4000"},
        {'R', GETT},
        {'O', "10"}, /* no response under way: lost */
        {0, NULL}};
    static const struct fstep eof[] = {
        {'R', GETT},
        {'E', ""},
        {'W', R200(3) "abc"},
        {0, NULL}};
    fcheck("sendfile", s, 2, 2, 1);
    fcheck("eof", eof, 1, 1, 1);
}

/* ------------------------------------------------------------ outbound */

/* A scripted transport for ldprof_http_client_send(): what "goes out" is
 * appended to wire[]; each call sends at most `limit` bytes (then the
 * limit lifts), 0 meaning EAGAIN. */
static char wire[8192];
static size_t wire_len;
static long limit = -1;

static ssize_t script_send(int fd, const void *buf, size_t len, const struct iovec *iov,
                           size_t iovcnt, int flags)
{
    struct iovec one = {(void *)buf, len};
    size_t sent = 0, cap;

    (void)fd;
    (void)flags;
    if (buf != NULL) {
        iov = &one;
        iovcnt = 1;
    }
    if (limit == 0) {
        limit = -1;
        errno = EAGAIN;
        return -1;
    }
    cap = limit < 0 ? (size_t)-1 : (size_t)limit;
    limit = -1;
    for (size_t i = 0; i < iovcnt && sent < cap; i++) {
        size_t k = iov[i].iov_len < cap - sent ? iov[i].iov_len : cap - sent;
        memcpy(wire + wire_len, iov[i].iov_base, k);
        wire_len += k;
        sent += k;
    }
    return (ssize_t)sent;
}

/* What a program does: write() until everything went out; a PASS means the
 * wrapper makes the real call (here: the script) and reports it. */
static void program_write(int fd, const char *data, size_t n)
{
    size_t off = 0;
    int guard = 0;

    while (off < n) {
        struct iovec iov = {(void *)(data + off), n - off};
        ssize_t r = ldprof_http_client_send(fd, &iov, 1, 0, script_send);
        cr_assert_lt(guard++, 100, "no progress");
        if (r == LDPROF_HTTP_PASS) {
            r = script_send(fd, data + off, n - off, NULL, 0, 0);
            if (r > 0)
                ldprof_http_on_send(fd, data + off, (size_t)r);
        }
        if (r < 0) {
            cr_assert_eq(errno, EAGAIN);
            continue;
        }
        cr_assert_leq((size_t)r, n - off, "more than the caller's bytes reported");
        off += (size_t)r;
    }
}

static const struct sockaddr_in backend = {.sin_family = AF_INET, .sin_port = 0x5000};

static void check_injected(const char *line, const char *rest)
{
    size_t ll = strlen(line);
    const char *hdr = wire + ll;
    const char *info, *hmac, *eol;
    struct ldprof_trace_ids ids;

    cr_assert_eq(memcmp(wire, line, ll), 0, "request line first");
    cr_assert_eq(strncmp(hdr, "X-Trace-Info: ", 14), 0, "headers right after it: %.*s",
                 (int)wire_len, wire);
    info = hdr + 14;
    eol = strstr(info, "\r\n");
    cr_assert_eq(strncmp(eol + 2, "X-Trace-HMAC: ", 14), 0);
    hmac = eol + 16;
    cr_assert_geq(ldprof_trace_verify(ldprof_keyring(), info, (size_t)(eol - info), hmac, 40, &ids),
                  0, "the injected headers verify");
    cr_assert_eq(memcmp(ids.base_id, ldprof_profile_base(), 16), 0);
    cr_assert_str_eq(hmac + 42, rest, "then the caller's bytes, unchanged");
}

Test(preload_http, outbound_headers_with_partial_writes_at_every_offset)
{
    static const char line[] = "GET /api/v1/items?sort=asc HTTP/1.1\r\n";
    static const char rest[] = "Host: backend\r\nAccept: */*\r\n\r\n";
    char req[256];
    size_t n = (size_t)snprintf(req, sizeof(req), "%s%s", line, rest);

    cr_assert_eq(ldprof_profile_start("SECRET_KEY"), 0);
    for (long k = 0; k <= (long)(n + 212); k++) {
        ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
        wire_len = 0;
        limit = k; /* the first real send moves k bytes at most (0: EAGAIN) */
        program_write(FD, req, n);
        cr_assert_eq(wire_len, n + 212, "k=%ld: all caller bytes plus 212 injected", k);
        wire[wire_len] = '\0';
        check_injected(line, rest);
        cr_assert_eq(tp_collect(spans, 32), 0, "the span waits for the response");
        ldprof_http_on_recv(FD, RESP, sizeof(RESP) - 1);
        cr_assert_eq(tp_collect(spans, 32), 1, "k=%ld", k);
        cr_assert_eq(spans[0].kind, LDPROF_KIND_HTTP);
        cr_assert_str_eq(tp_field(&spans[0], "request.path", 0), "/api/v1/items");
        cr_assert_str_eq(tp_field(&spans[0], "request.query", 0), "sort=asc");
        cr_assert_str_eq(tp_field(&spans[0], "request.host", 0), "0.0.0.0");
        cr_assert_str_eq(tp_field(&spans[0], "request.port", 0), "80");
        cr_assert_str_eq(tp_field(&spans[0], "status_code", 1), "200");
        cr_assert_eq(memcmp(spans[0].parent, ldprof_profile_base(), 16), 0,
                     "a client trace's first spans hang off base_id");
        ldprof_http_on_close(FD);
    }
}

Test(preload_http, outbound_request_line_split_across_writes)
{
    static const char line[] = "POST /x HTTP/1.1\r\n";
    static const char rest[] = "Content-Length: 2\r\n\r\nhi";

    cr_assert_eq(ldprof_profile_start("SECRET_KEY"), 0);
    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, "PO", 2);
    program_write(FD, "ST /x HTT", 9);
    program_write(FD, "P/1.1\r\nContent-Length: 2\r\n", 26);
    program_write(FD, "\r\nhi", 4);
    wire[wire_len] = '\0';
    check_injected(line, rest);
    /* keep-alive: the next request gets its own headers and span */
    program_write(FD, "GET /y HTTP/1.1\r\n\r\n", 19);
    cr_assert_not_null(strstr(wire, "GET /y HTTP/1.1\r\nX-Trace-Info: "));
    ldprof_http_on_recv(FD, RESP, sizeof(RESP) - 1);
    ldprof_http_on_recv(FD, CHUNKED, sizeof(CHUNKED) - 1);
    cr_assert_eq(tp_collect(spans, 32), 2);
    cr_assert_str_eq(tp_field(&spans[0], "request.method", 0), "POST");
    cr_assert_str_eq(tp_field(&spans[1], "request.path", 0), "/y");
}

Test(preload_http, outbound_without_a_trace_is_untouched)
{
    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, "GET / HTTP/1.1\r\n\r\n", 18);
    cr_assert_eq(wire_len, 18);
    ldprof_http_on_recv(FD, RESP, sizeof(RESP) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0);
}

Test(preload_http, outbound_non_http_protocols_are_left_alone)
{
    static const char resp_cmd[] = "*1\r\n$4\r\nPING\r\n";
    static const char inline_cmd[] = "GET key\r\n"; /* Redis inline: no HTTP version */

    cr_assert_eq(ldprof_profile_start("SECRET_KEY"), 0);
    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, resp_cmd, sizeof(resp_cmd) - 1);
    cr_assert_eq(wire_len, sizeof(resp_cmd) - 1);
    cr_assert_not(ldprof_http_tracked(FD), "followed no longer");

    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, inline_cmd, sizeof(inline_cmd) - 1);
    cr_assert_eq(wire_len, sizeof(inline_cmd) - 1, "nothing injected");
    cr_assert_eq(tp_collect(spans, 32), 0);
}

Test(preload_http, outbound_connection_closed_before_the_response)
{
    cr_assert_eq(ldprof_profile_start("SECRET_KEY"), 0);
    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, "GET /gone HTTP/1.1\r\n\r\n", 22);
    ldprof_http_on_recv(FD, RESP, 10);
    ldprof_http_on_eof(FD);
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert_str_eq(tp_field(&spans[0], "etype", 1), "ConnectionClosed");
}

Test(preload_http, outbound_close_delimited_response_ends_at_close)
{
    static const char resp[] = "HTTP/1.0 200 OK\r\n\r\nall of it";

    cr_assert_eq(ldprof_profile_start("SECRET_KEY"), 0);
    ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
    wire_len = 0;
    program_write(FD, "GET /old HTTP/1.0\r\n\r\n", 21);
    ldprof_http_on_recv(FD, resp, sizeof(resp) - 1);
    cr_assert_eq(tp_collect(spans, 32), 0);
    ldprof_http_on_close(FD); /* no read of the end of stream first */
    cr_assert_eq(tp_collect(spans, 32), 1);
    cr_assert_eq(spans[0].flags, 0);
    cr_assert_str_eq(tp_field(&spans[0], "status_code", 1), "200");
}

/* The driver hooks (hooks/hiredis.c, libpq.c) call the driver without
 * holding the depth on a thread with no trace, so a driver's TCP
 * connection - followed from its connect() as a possible HTTP client - has
 * its first request written through here with no context.  It must stop
 * being followed at that write (the read/write gate then passes its I/O at
 * its first test) and go out unchanged, recording nothing. */
Test(preload_http, outbound_driver_protocols_untraced_stop_being_followed)
{
    static const char redis_get[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    /* PostgreSQL: a StartupMessage (length, protocol 3.0, "user" "u") and
     * a simple Query ('Q', length, "SELECT 1") */
    static const char pg_startup[] = "\0\0\0\x10\0\x03\0\0user\0u\0\0";
    static const char pg_query[] = "Q\0\0\0\x0dSELECT 1";
    const struct {
        const char *bytes;
        size_t n;
    } first[] = {
        {redis_get, sizeof(redis_get) - 1},
        {pg_startup, sizeof(pg_startup) - 1},
        {pg_query, sizeof(pg_query)}, /* with its terminating NUL */
    };

    cr_assert_null(ldprof_ctx_current(), "no trace on this thread");
    for (size_t i = 0; i < sizeof(first) / sizeof(first[0]); i++) {
        ldprof_http_on_connect(FD, (const struct sockaddr *)&backend);
        cr_assert(ldprof_http_tracked(FD));
        wire_len = 0;
        program_write(FD, first[i].bytes, first[i].n);
        cr_assert_eq(wire_len, first[i].n, "case %zu: the bytes went out unchanged", i);
        cr_assert_eq(memcmp(wire, first[i].bytes, first[i].n), 0, "case %zu", i);
        cr_assert_not(ldprof_http_tracked(FD), "case %zu: followed no longer", i);
    }
    cr_assert_eq(tp_collect(spans, 32), 0);
}
