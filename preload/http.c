/*
 * preload/http.c - per-fd HTTP stream tracking (see http.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <http_parser.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <sys/socket.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "buffer.h"
#include "config.h"
#include "http.h"
#include "init.h"
#include "log.h"
#include "propagation.h"
#include "span.h"
#include "tls.h"

#define PR_FMT "http"

#define LDPROF_HTTP_MAX_FDS 65536
#define LDPROF_HTTP_INJ_CAP 256 /* "X-Trace-Info: ...\r\nX-Trace-HMAC: ...\r\n" = 212 */

enum { H_NONE = 0, H_FIELD = 1, H_VALUE = 2 };
enum { W_OTHER = 0, W_INFO = 1, W_HMAC = 2 };

/* q_meta[] of a queued request: its method (enum http_method, all below
 * 0x80), and Q_SPAN when q_span[] holds its wsgi / http span. */
#define Q_SPAN 0x80
#define Q_METHOD(m) ((m) & 0x7f)

/*
 * The first 64 bytes (one cache line; the struct is aligned on it) hold
 * everything an untraced keep-alive request on a server connection touches
 * when the fast path frames it: locks, flags, the FIFO indexes and each
 * queued request's method, the body counts and the per-fd statistics.
 * Natively that request costs cache misses more than instructions.
 */
struct http_fd {
    int rx_lock;          /* request side (program reads) */
    int tx_lock;          /* response side (program writes) */
    uint8_t rx_dead;      /* stop parsing what the program reads */
    uint8_t tx_dead;      /* stop parsing what the program writes */
    /* Requests framed without the parser (rx_fast_head) while rx_fast is
     * set; rx is then at a message start and untouched. */
    uint8_t rx_fast;
    /* Server connections: responses framed without the parser (tx_fast_head)
     * while tx_fast is set; tx is then at a message start and untouched. */
    uint8_t tx_fast;      /* the fast path has the response stream */
    uint8_t tx_fast_done; /* it completed a message since tx was last used */
    /* FIFO of requests awaiting a response: rx pushes at q_tail, tx pops at
     * q_head (single producer, single consumer); q_meta[] and q_span[]
     * are written before q_tail is published. */
    uint8_t q_meta[LDPROF_HTTP_QDEPTH];
    uint16_t tx_status;   /* status of the response whose body is tx_left */
    uint32_t q_head, q_tail;
    uint64_t rx_left;     /* body bytes still to come (request) */
    uint64_t tx_left;     /* body bytes still to come (Content-Length) */
    /* Statistics counted here rather than in shared atomics: never reset
     * (a reused fd number goes on counting), summed by ldprof_http_stats;
     * written by the side that holds the lock (n_requests: rx, n_responses:
     * tx on server connections, rx on client ones, or both in fd_release). */
    uint64_t n_requests;
    uint64_t n_responses;
    /* ---- 64 bytes ---- */

    struct ldprof_span *q_span[LDPROF_HTTP_QDEPTH];
    uint8_t shared;       /* a forked process holds this fd too */
    uint8_t close_after;  /* 101 Switching Protocols: stop after this response */

    /* request side */
    uint8_t hlast;        /* H_*: last header callback */
    uint8_t hwhich;       /* W_*: the header whose value is arriving */
    uint8_t hname_len;    /* bytes of the current header name (saturates) */
    uint8_t hmatch;       /* bit 0: still "x-trace-info", bit 1: "x-trace-hmac" */
    uint8_t seen_info, seen_hmac, bad_hdr, url_trunc;
    uint16_t url_len, info_len, hmac_len;
    http_parser rx;
    /* response side */
    http_parser tx;
    char url[LDPROF_HTTP_URL_CAP];
    char info[LDPROF_HTTP_INFO_CAP];
    char hmac[LDPROF_HTTP_HMAC_CAP];

    /* client connections (outbound requests): tx parses the requests the
     * program writes, rx the responses it reads; url[] holds the request
     * line while it is being written */
    uint8_t tx_at_start;  /* the next byte written starts a request */
    uint8_t inj_state;    /* INJ_*: header injection for the current request */
    uint16_t inj_len, inj_off; /* injected bytes built / already sent */
    uint16_t peer_port;
    char inj[LDPROF_HTTP_INJ_CAP];
    char peer[48];        /* numeric address connected to */
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct http_fd, q_span) == 64,
               "the fast path's fields fill the first cache line");

enum { INJ_NONE = 0, INJ_LINE = 1, INJ_DONE = 2 };

int ldprof_http_nfds;
uint8_t *ldprof_http_kinds;
static struct http_fd *fdtab;
static int max_fd_seen = -1; /* highest fd ever followed (fork child reset) */
static struct ldprof_http_stats stats;

#define STAT_INC(f) __atomic_add_fetch(&stats.f, 1, __ATOMIC_RELAXED)

static int rx_on_message_begin(http_parser *p);
static int rx_on_url(http_parser *p, const char *at, size_t len);
static int rx_on_header_field(http_parser *p, const char *at, size_t len);
static int rx_on_header_value(http_parser *p, const char *at, size_t len);
static int rx_on_headers_complete(http_parser *p);
static int rx_on_message_complete(http_parser *p);
static int tx_on_message_begin(http_parser *p);
static int tx_on_headers_complete(http_parser *p);
static int tx_on_message_complete(http_parser *p);
static int tx_on_message_complete_srv(http_parser *p);

static const http_parser_settings rx_settings = {
    .on_message_begin = rx_on_message_begin,
    .on_url = rx_on_url,
    .on_header_field = rx_on_header_field,
    .on_header_value = rx_on_header_value,
    .on_headers_complete = rx_on_headers_complete,
    .on_message_complete = rx_on_message_complete,
};

static const http_parser_settings tx_settings = {
    .on_message_begin = tx_on_message_begin,
    .on_headers_complete = tx_on_headers_complete,
    .on_message_complete = tx_on_message_complete_srv,
};

int ldprof_http_init(void)
{
    struct rlimit rl;
    size_t n = 1024;
    void *kinds, *tab;

    if (fdtab != NULL)
        return 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t lim = rl.rlim_max > rl.rlim_cur ? rl.rlim_max : rl.rlim_cur;
        n = lim == RLIM_INFINITY || lim > LDPROF_HTTP_MAX_FDS ? LDPROF_HTTP_MAX_FDS : (size_t)lim;
        if (n < 1024)
            n = 1024;
    }
    kinds = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    tab = mmap(NULL, n * sizeof(struct http_fd), PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (kinds == MAP_FAILED || tab == MAP_FAILED) {
        pr_err("cannot map the fd table: %s; HTTP requests will not be traced", strerror(errno));
        if (kinds != MAP_FAILED)
            munmap(kinds, n);
        if (tab != MAP_FAILED)
            munmap(tab, n * sizeof(struct http_fd));
        return -1;
    }
    fdtab = tab;
    ldprof_http_kinds = kinds;
    ldprof_http_nfds = (int)n;
    return 0;
}

/* requests and responses: the per-fd counts (struct http_fd) of every fd
 * number ever followed; the rest: shared counters (rarer events). */
void ldprof_http_stats(struct ldprof_http_stats *out)
{
    int max = __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED);

    out->requests = out->responses = 0;
    for (int fd = 0; fd <= max && fdtab != NULL; fd++) {
        out->requests += __atomic_load_n(&fdtab[fd].n_requests, __ATOMIC_RELAXED);
        out->responses += __atomic_load_n(&fdtab[fd].n_responses, __ATOMIC_RELAXED);
    }
    out->traced = __atomic_load_n(&stats.traced, __ATOMIC_RELAXED);
    out->abandoned = __atomic_load_n(&stats.abandoned, __ATOMIC_RELAXED);
    out->desync = __atomic_load_n(&stats.desync, __ATOMIC_RELAXED);
    out->parsed = __atomic_load_n(&stats.parsed, __ATOMIC_RELAXED);
}

static inline struct http_fd *fd_state(int fd)
{
    return &fdtab[fd];
}

static inline int fd_of(const struct http_fd *h)
{
    return (int)(h - fdtab);
}

/* ------------------------------------------------------------ span ends */

/* End the span of the request in FIFO slot @i (if it has one). */
static void end_pending(struct http_fd *h, uint32_t i, const char *etype, const char *msg,
                        int shared)
{
    struct ldprof_span *s;

    i %= LDPROF_HTTP_QDEPTH;
    if (!(h->q_meta[i] & Q_SPAN))
        return;
    s = h->q_span[i];
    h->q_meta[i] &= (uint8_t)~Q_SPAN;
    ldprof_ctx_leave_root(s);
    if (etype == NULL) {
        ldprof_span_close(s, 0);
        return;
    }
    STAT_INC(abandoned);
    if (shared) {
        /* Another process (fork) holds the connection and may well answer
         * it: this process does not know the outcome, so it records nothing. */
        ldprof_span_discard(s);
        return;
    }
    ldprof_span_set_error(s, etype, msg);
    ldprof_span_close(s, 0);
}

/* Pop and end every request still waiting for its response. */
static void fail_all_pending(struct http_fd *h, const char *etype, const char *msg)
{
    uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_ACQUIRE);

    for (; head != tail; head++)
        end_pending(h, head, etype, msg, h->shared);
    __atomic_store_n(&h->q_head, head, __ATOMIC_RELEASE);
}

/* Queue a request (producer side; the caller checked there is room). */
static inline void q_push(struct http_fd *h, uint32_t tail, struct ldprof_span *s, unsigned method)
{
    if (s != NULL)
        h->q_span[tail % LDPROF_HTTP_QDEPTH] = s;
    h->q_meta[tail % LDPROF_HTTP_QDEPTH] = (uint8_t)(Q_METHOD(method) | (s != NULL ? Q_SPAN : 0));
    __atomic_store_n(&h->q_tail, tail + 1, __ATOMIC_RELEASE);
}

/* Is the request at the FIFO's head a HEAD (its response has no body)? */
static inline int q_head_is_head(const struct http_fd *h)
{
    uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_ACQUIRE);

    return head != tail && Q_METHOD(h->q_meta[head % LDPROF_HTTP_QDEPTH]) == HTTP_HEAD;
}

/* Count a request / a response head (per fd: see struct http_fd). */
static inline void count_one(uint64_t *n)
{
    __atomic_store_n(n, __atomic_load_n(n, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ fast framing */

/*
 * Server connections: most requests and responses are framed without
 * http_parser, whose byte state machine was most of the cost of an
 * untraced request.  The fast path takes only a common, strictly formed
 * subset that http_parser accepts and frames the same way: HTTP/1.1, CRLF
 * line ends, header names of letters, digits, '-', '_', '.' followed by
 * ':', values of printable ASCII and tabs, at most one Content-Length of
 * 1-18 digits (leading blanks allowed), no Transfer-Encoding, Connection,
 * Proxy-Connection or Upgrade header, and the whole head in one buffer of
 * at most FAST_HEAD_MAX bytes; responses with a Content-Length, or 204 and
 * 304 without one (tx_fast_head).  Of the X-Trace-* headers, only requests'
 * X-Trace-Info and X-Trace-HMAC are taken, each at most once and with a
 * value without inner or trailing blanks (fast_trace_value); the fast path
 * then opens the wsgi span with the same bytes the parser callbacks would
 * have captured (open_wsgi_span).  Anything else goes to the parser, which
 * the fast path leaves (and takes back only) at a message start.  Either
 * ends a traced request's span with the last byte of its response.
 * tests/unit/test_preload_http.c (fast_*) compares both on the same streams.
 */
#define FAST_HEAD_MAX 8192

struct fast_head {
    uint64_t cl;     /* Content-Length */
    uint8_t have_cl; /* there was one */
    /* requests: the values of X-Trace-Info / X-Trace-HMAC, as
     * rx_on_header_value captures them (NULL: no such header) */
    const char *info, *hmac;
    size_t info_len, hmac_len;
};

/* The bytes of a header name the fast path takes: letters, digits, '-',
 * '_', '.' (a table: one load per byte; fast_name_end's tail and the
 * scalar build). */
static const uint8_t fast_tchar_tab[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1, ['-'] = 1, ['_'] = 1, ['.'] = 1,
};

static inline int fast_tchar(char c)
{
    return fast_tchar_tab[(unsigned char)c];
}

#ifdef __SSE2__
/*
 * Sixteen bytes at a time, the last ones overlapping: fast_load gives the
 * sixteen bytes at @p when they lie before @end, else the last sixteen
 * before @end (the buffer starts at @lo) with *@skip = how many of them
 * come before @p; a mask of them shifted right by *@skip has its bits for
 * @p[0..] and none for bytes at or past @end.  0: fewer than sixteen bytes
 * in [@lo, @end) (the scalar loops take them).
 */
static inline __attribute__((always_inline)) int fast_load(const char *p, const char *lo,
                                                           const char *end, __m128i *v,
                                                           unsigned *skip)
{
    if (end - p >= 16) {
        *v = _mm_loadu_si128((const __m128i *)(const void *)p);
        *skip = 0;
        return 1;
    }
    if (end - lo < 16 || p >= end)
        return 0;
    *v = _mm_loadu_si128((const __m128i *)(const void *)(end - 16));
    *skip = (unsigned)(16 - (end - p));
    return 1;
}

static inline __m128i fast_load16(const char *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* Bits of the bytes that are not name bytes (fast_tchar). */
static inline unsigned fast_nonname_mask(__m128i v)
{
    __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20)); /* A-Z -> a-z */
    /* unsigned ranges with signed compares: x - lo + 0x80 < n + 0x80 - 0x100 */
    __m128i letter = _mm_cmplt_epi8(_mm_add_epi8(l, _mm_set1_epi8((char)(0x80 - 'a'))),
                                    _mm_set1_epi8((char)(0x80 + 26)));
    __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8((char)(0x80 - '0'))),
                                   _mm_set1_epi8((char)(0x80 + 10)));
    __m128i punct = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('-')),
                                              _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))),
                                 _mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
    return ~(unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), punct)) &
           0xffffu;
}

/* Bits of the bytes below 0x20 or above 0x7e (CR, LF and tabs too): x + 1
 * < 0x21 as signed bytes holds for 0x00-0x1f, 0x7f and 0x80-0xff. */
static inline unsigned fast_ctl_mask(__m128i v)
{
    return (unsigned)_mm_movemask_epi8(
        _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(1)), _mm_set1_epi8(0x21)));
}

/* The constants of fast_line's two masks (fast_nonalpha_k, fast_ctl_k),
 * made once per head: an empty asm hides where they come from, so that
 * they stay in registers across the head's lines (otherwise each line
 * reloads them from memory). */
struct fast_k {
    __m128i lower, a, n26, dash, one, n21;
};

static inline __attribute__((always_inline)) void fast_k_init(struct fast_k *k)
{
    k->lower = _mm_set1_epi8(0x20);
    k->a = _mm_set1_epi8((char)(0x80 - 'a'));
    k->n26 = _mm_set1_epi8((char)(0x80 + 26));
    k->dash = _mm_set1_epi8('-');
    k->one = _mm_set1_epi8(1);
    k->n21 = _mm_set1_epi8(0x21);
    __asm__("" : "+x"(k->lower), "+x"(k->a), "+x"(k->n26), "+x"(k->dash), "+x"(k->one),
                 "+x"(k->n21));
}

/* Bits of the bytes that are neither letters nor '-': where most header
 * names end (at their ':'), found with half of fast_nonname_mask's
 * operations. */
static inline unsigned fast_nonalpha_k(__m128i v, const struct fast_k *k)
{
    __m128i letter = _mm_cmplt_epi8(_mm_add_epi8(_mm_or_si128(v, k->lower), k->a), k->n26);
    return ~(unsigned)_mm_movemask_epi8(_mm_or_si128(letter, _mm_cmpeq_epi8(v, k->dash))) &
           0xffffu;
}

/* fast_ctl_mask with @k's constants. */
static inline unsigned fast_ctl_k(__m128i v, const struct fast_k *k)
{
    return (unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(_mm_add_epi8(v, k->one), k->n21));
}
#endif

/* The first byte from @p on that is not a name byte (fast_tchar), or @end. */
static inline const char *fast_name_end(const char *p, const char *end)
{
#ifdef __SSE2__
    while (end - p >= 16) {
        unsigned m = fast_nonname_mask(fast_load16(p));
        if (m != 0)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (p < end && fast_tchar(*p))
        p++;
    return p;
}

/* Does the header name [@s, @s+@n) (token characters) equal lower-case @name?
 * Eight bytes at a time (the last word overlapping the one before); OR 0x20
 * maps no token character but an upper-case letter onto another one. */
static inline int fast_name_is(const char *s, size_t n, const char *name, size_t len)
{
    uint64_t a, b;

    if (n != len)
        return 0;
    if (len >= 8) {
        /* (a loop with a bound known here: unrolled, @name's words become
         * immediates rather than loads from .rodata) */
        for (size_t i = 0; i + 8 < len; i += 8) {
            memcpy(&a, s + i, 8);
            memcpy(&b, name + i, 8);
            if ((a | 0x2020202020202020ull) != b)
                return 0;
        }
        memcpy(&a, s + len - 8, 8);
        memcpy(&b, name + len - 8, 8);
        return (a | 0x2020202020202020ull) == b;
    }
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != name[i])
            return 0;
    return 1;
}

/* The end of a line whose text (a header value, a reason phrase) starts at
 * @s: the '\n' of the first CR LF, when every byte before the CR is
 * printable ASCII or a tab; NULL when another byte comes first or the line
 * does not end before @end. */
static inline __attribute__((always_inline)) const char *fast_value_end(const char *s,
                                                                        const char *end)
{
#ifdef __SSE2__
    /* sixteen bytes at a time: the first byte below 0x20 or above 0x7e */
    while (end - s >= 16) {
        unsigned m = fast_ctl_mask(fast_load16(s));
        if (m == 0) {
            s += 16;
            continue;
        }
        s += __builtin_ctz(m);
        if (*s != '\t')
            break; /* CR or a bad byte: decided below */
        s++;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;

    for (; end - s >= 8; s += 8) {
        uint64_t x;
        memcpy(&x, s, 8);
        if (((x - 0x20 * ones) | (x + ones) | x) & highs)
            break; /* a CR, a tab or a bad byte in this word */
    }
#endif
    for (; s < end; s++) {
        if (*s == '\r')
            return end - s >= 2 && s[1] == '\n' ? s + 1 : NULL;
        if ((*s < 0x20 || *s > 0x7e) && *s != '\t')
            return NULL;
    }
    return NULL;
}

/* The end of a request-target starting at @s: the first byte from @s on
 * that is not 0x21-0x7e or is a '#', or @end (the buffer starts at @lo). */
#ifdef __SSE2__
/* Bits of the bytes that end a request-target (fast_target_end). */
static inline unsigned fast_target_mask(__m128i v)
{
    return (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x21)),
                                  _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))),
                     _mm_cmpeq_epi8(v, _mm_set1_epi8('#'))));
}
#endif

static const char *fast_target_end(const char *s, const char *lo, const char *end)
{
#ifdef __SSE2__
    __m128i v;
    unsigned skip, m;

    /* the first 32 bytes at once when they are there (most targets end
     * in them), then sixteen at a time, the last ones overlapping */
    if (end - s >= 32) {
        m = fast_target_mask(fast_load16(s)) | fast_target_mask(fast_load16(s + 16)) << 16;
        if (m != 0)
            return s + __builtin_ctz(m);
        s += 32;
    }
    while (fast_load(s, lo, end, &v, &skip)) {
        m = fast_target_mask(v) >> skip;
        if (m != 0)
            return s + __builtin_ctz(m);
        if (skip != 0)
            return end;
        s += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;

    (void)lo;
    for (; end - s >= 8; s += 8) {
        uint64_t x, h;
        memcpy(&x, s, 8);
        h = x ^ (0x23 * ones); /* '#' bytes become 0 */
        if (((x - 0x21 * ones) | (x + ones) | x | (h - ones)) & highs)
            break; /* a blank, a control or non-ASCII byte, or a '#', in this word */
    }
#endif
    while (s < end && *s > 0x20 && *s < 0x7f && *s != '#')
        s++;
    return s;
}

/*
 * The value of a trace header on the line [@v, @eol): taken when it is what
 * http_parser hands rx_on_header_value whole, i.e. the bytes after the
 * leading blanks up to the CR, with no blank at all in it (http_parser's
 * handling of inner and trailing blanks, empty values and obs-fold is left
 * to it), no longer than @cap (longer: capture() refuses it) and the first
 * header of its name (a repeated one is ambiguous).  NULL: not taken.
 */
static const char *fast_trace_value(const char *v, const char *eol, size_t cap,
                                    const char *seen, size_t *len)
{
    const char *e = eol - 1, *c;

    if (seen != NULL)
        return NULL;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    if (v == e || (size_t)(e - v) > cap)
        return NULL;
    c = v;
#ifdef __SSE2__
    /* no blank: sixteen bytes at a time */
    for (; e - c >= 16; c += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)c);
        if (_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(' ')),
                                           _mm_cmpeq_epi8(x, _mm_set1_epi8('\t')))) != 0)
            return NULL;
    }
#endif
    /* no blank: eight bytes at a time (a zero byte of x ^ ' ' or x ^ '\t'
     * flags a word, checked byte by byte) */
    for (; e - c >= 8; c += 8) {
        const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
        uint64_t x, sp, tb;
        memcpy(&x, c, 8);
        sp = x ^ (0x20 * ones);
        tb = x ^ (0x09 * ones);
        if (((sp - ones) & ~sp & highs) | ((tb - ones) & ~tb & highs))
            for (int i = 0; i < 8; i++)
                if (c[i] == ' ' || c[i] == '\t')
                    return NULL;
    }
    for (; c < e; c++)
        if (*c == ' ' || *c == '\t')
            return NULL;
    *len = (size_t)(e - v);
    return v;
}

/* The first bytes (OR 0x20, bit c & 31) of the names fast_headers compares. */
#define FAST_FIRST ((1u << ('c' & 31)) | (1u << ('t' & 31)) | (1u << ('u' & 31)) | \
                    (1u << ('p' & 31)) | (1u << ('x' & 31)))

/* A Content-Length value (the line's bytes after the ':' up to @eol, its
 * '\n'): 1-18 digits after optional blanks, nothing after them, and the
 * first one of the head.  0, or -1 (the parser takes the head). */
static int fast_content_length(const char *v, const char *eol, struct fast_head *fh)
{
    const char *e = eol - 1, *d;
    uint64_t cl = 0;

    if (fh->have_cl)
        return -1;
    fh->have_cl = 1;
    /* (the line ends with its CR at @e, no bound needed) */
    for (; *v == ' ' || *v == '\t'; v++)
        ;
    for (d = v; (unsigned)(*d - '0') < 10; d++)
        cl = cl * 10 + (uint64_t)(*d - '0');
    fh->cl = cl;
    return d == v || d - v > 18 || d != e ? -1 : 0;
}

/* A header whose name [@p, @p+@nlen) starts with an x: X-Trace-Info and
 * X-Trace-HMAC are taken with @trace (fast_trace_value); other X-Trace-*
 * names, and any without @trace, go to the parser (-1); 0: go on. */
static int fast_x_trace(const char *p, size_t nlen, const char *v, const char *eol, int trace,
                        struct fast_head *fh)
{
    if (nlen < 8 || !fast_name_is(p, 8, "x-trace-", 8))
        return 0;
    if (!trace)
        return -1;
    if (fast_name_is(p, nlen, "x-trace-info", 12)) {
        fh->info = fast_trace_value(v, eol, LDPROF_HTTP_INFO_CAP, fh->info, &fh->info_len);
        return fh->info != NULL ? 0 : -1;
    }
    if (fast_name_is(p, nlen, "x-trace-hmac", 12)) {
        fh->hmac = fast_trace_value(v, eol, LDPROF_HTTP_HMAC_CAP, fh->hmac, &fh->hmac_len);
        return fh->hmac != NULL ? 0 : -1;
    }
    return -1;
}

/*
 * One header line at @p (within @end): its '\n' with *@colon = its ':',
 * when it is a name of name bytes, a ':' and a value of printable ASCII
 * and tabs up to a CR LF.  Else NULL, with *@colon = the end of the head
 * when @p is the blank line, NULL when the line is not all there or not in
 * the fast path's subset.  @lim: end - 32 (when @p is before it, more than
 * 32 bytes are); @kv: fast_headers' struct fast_k.
 */
static inline __attribute__((always_inline)) const char *
fast_line(const char *p, const char *end, const char *lim, const char **colon, const void *kv)
{
    const char *c, *e;

    (void)kv;
    (void)lim;
#ifdef __SSE2__
    /* More than 32 bytes before @end (all lines but the last ones of a
     * buffer): the first sixteen give the name's end (a name of letters
     * and '-' ends at the first other byte if that is its ':', else the
     * name bytes decide; the blank line's CR ends an empty one), the
     * first 32 the value's end on most lines; a longer value goes on
     * sixteen bytes at a time, the last ones overlapping.  The same as
     * fast_name_end then fast_value_end, which take names of sixteen bytes
     * or more and the last bytes before @end. */
    if (p < lim) {
        const struct fast_k *k = kv;
        __m128i w = fast_load16(p);
        unsigned nn = fast_nonalpha_k(w, k), m;
        const char *q;

        if (nn == 0 || p[__builtin_ctz(nn)] != ':') {
            if (p[0] == '\r') {
                *colon = p[1] == '\n' ? p + 2 : NULL;
                return NULL;
            }
            nn = fast_nonname_mask(w);
            if (nn == 0 || p[__builtin_ctz(nn)] != ':')
                goto scalar; /* a long name, or not one (decided there) */
        }
        c = p + __builtin_ctz(nn);
        if (c == p)
            goto bad;
        *colon = c;
        m = (fast_ctl_k(w, k) | fast_ctl_k(fast_load16(p + 16), k) << 16) >> (c + 1 - p);
        if (m != 0) {
            /* (e + 1 < p + 32 < end) */
            e = c + 1 + __builtin_ctz(m);
            if (e[0] == '\r' && e[1] == '\n')
                return e + 1;
        } else {
            for (q = p + 32; m == 0; q += 16) {
                e = q;
                if (end - q >= 16) {
                    m = fast_ctl_k(fast_load16(q), k);
                } else {
                    if (q >= end)
                        goto bad;
                    m = fast_ctl_k(fast_load16(end - 16), k) >> (16 - (end - q));
                    if (m == 0)
                        goto bad; /* no CR before @end */
                }
            }
            e += __builtin_ctz(m);
            if (*e == '\r') {
                if (end - e < 2 || e[1] != '\n')
                    goto bad;
                return e + 1;
            }
        }
        if (*e != '\t' || (e = fast_value_end(e + 1, end)) == NULL)
            goto bad;
        return e;
    }
scalar:
#endif
    *colon = NULL;
    if (end - p < 2)
        return NULL;
    if (p[0] == '\r') {
        *colon = p[1] == '\n' ? p + 2 : NULL;
        return NULL;
    }
    c = fast_name_end(p, end);
    *colon = c;
    if (c == p || c == end || *c != ':' || (e = fast_value_end(c + 1, end)) == NULL)
        goto bad;
    return e;
bad:
    *colon = NULL;
    return NULL;
}

/* Header lines from @p up to and including the blank line, within @end.
 * Returns the end of the head, or NULL when it is not all there or not in
 * the fast path's subset.  With @trace (requests), X-Trace-Info and
 * X-Trace-HMAC are taken (fast_trace_value); other X-Trace-* names, and
 * any X-Trace-* without @trace, go to the parser. */
static const char *fast_headers(const char *p, const char *end, int trace, struct fast_head *fh)
{
#ifdef __SSE2__
    struct fast_k k;
    const void *kp = &k;

    fast_k_init(&k);
#else
    const void *kp = NULL;
#endif
    /* lines that start before @lim have more than 32 bytes before @end */
    const char *lim = end - p > 32 ? end - 32 : p;

    fh->cl = 0;
    fh->have_cl = 0;
    fh->info = fh->hmac = NULL;
    fh->info_len = fh->hmac_len = 0;
    for (;;) {
        const char *c, *eol;
        size_t nlen;
        uint8_t c0;

        /* The names below differ in their first byte (OR 0x20 lower-cases
         * a letter and maps no other name byte onto one): most headers are
         * none of them and cost this one test of a bit (letters are bits
         * 1-26 of FAST_FIRST; digits and punctuation may hit a bit too, at
         * the cost of a compare), the others a compare or two.  The lines
         * of other names go by in this inner loop, which calls nothing (its
         * SSE2 constants stay in registers). */
        for (;;) {
            eol = fast_line(p, end, lim, &c, kp);
            if (eol == NULL)
                return c;
            c0 = (uint8_t)(*p | 0x20);
            if ((FAST_FIRST >> (c0 & 31)) & 1)
                break;
            p = eol + 1;
        }
        nlen = (size_t)(c - p);
        if (c0 == 'c') {
            if (fast_name_is(p, nlen, "content-length", 14)) {
                if (fast_content_length(c + 1, eol, fh) != 0)
                    return NULL;
            } else if (fast_name_is(p, nlen, "connection", 10)) {
                return NULL;
            }
        } else if (c0 == 'x') {
            if (fast_x_trace(p, nlen, c + 1, eol, trace, fh) != 0)
                return NULL;
        } else if ((c0 == 't' && fast_name_is(p, nlen, "transfer-encoding", 17)) ||
                   (c0 == 'u' && fast_name_is(p, nlen, "upgrade", 7)) ||
                   (c0 == 'p' && fast_name_is(p, nlen, "proxy-connection", 16))) {
            return NULL;
        }
        p = eol + 1;
    }
}

/* ------------------------------------------------------------ request side */

static int rx_on_message_begin(http_parser *p)
{
    struct http_fd *h = p->data;

    h->rx_fast = 0;
    h->hlast = H_NONE;
    h->hwhich = W_OTHER;
    h->seen_info = h->seen_hmac = h->bad_hdr = h->url_trunc = 0;
    h->url_len = h->info_len = h->hmac_len = 0;
    return 0;
}

static int rx_on_url(http_parser *p, const char *at, size_t len)
{
    struct http_fd *h = p->data;
    size_t room = LDPROF_HTTP_URL_CAP - h->url_len;

    if (len > room) {
        len = room;
        h->url_trunc = 1;
    }
    memcpy(h->url + h->url_len, at, len);
    h->url_len = (uint16_t)(h->url_len + len);
    return 0;
}

static int rx_on_header_field(http_parser *p, const char *at, size_t len)
{
    static const char info_name[] = "x-trace-info";
    static const char hmac_name[] = "x-trace-hmac";
    struct http_fd *h = p->data;

    if (h->hlast != H_FIELD) {
        /* A new header name begins (it may arrive in several pieces). */
        h->hname_len = 0;
        h->hmatch = 3;
    }
    h->hlast = H_FIELD;
    if (h->hname_len == 0 && h->hmatch == 3 && len > 0) {
        /* The name in one piece (the usual case): decide with a few word
         * compares what the loop below decides byte by byte.  OR 0x20
         * lower-cases A-Z and maps no other byte onto a lower-case letter
         * (the '-' are checked apart).  When no name matches, hname_len
         * may differ from the loop's, which only matters while hmatch != 0. */
        uint64_t w8;
        uint32_t w4;
        uint8_t m = 0;

        if ((at[0] | 0x20) != 'x') { /* most names stop at the first byte */
            h->hmatch = 0;
            h->hname_len = 1;
            return 0;
        }
        if (len >= 12) {
            memcpy(&w8, at, 8);
            memcpy(&w4, at + 8, 4);
            w8 |= 0x2020202020202020ull;
            w4 |= 0x20202020u;
            /* (the two '-' compared exactly: OR 0x20 also maps CR onto '-') */
            if (memcmp(&w8, info_name, 8) == 0 && at[1] == '-' && at[7] == '-')
                m = (memcmp(&w4, info_name + 8, 4) == 0 ? 1 : 0) |
                    (memcmp(&w4, hmac_name + 8, 4) == 0 ? 2 : 0);
            h->hname_len = 12;
            h->hmatch = len == 12 ? m : 0;
            return 0;
        }
    }
    for (size_t i = 0; i < len && h->hmatch; i++) {
        unsigned pos = h->hname_len;
        char c = at[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (pos >= 12) {
            h->hmatch = 0;
            break;
        }
        if (c != info_name[pos])
            h->hmatch &= (uint8_t)~1u;
        if (c != hmac_name[pos])
            h->hmatch &= (uint8_t)~2u;
        h->hname_len++;
    }
    return 0;
}

static void capture(char *dst, uint16_t *dlen, size_t cap, const char *at, size_t len,
                    uint8_t *bad)
{
    if (*dlen + len > cap) {
        *bad = 1; /* oversized: never traced */
        return;
    }
    memcpy(dst + *dlen, at, len);
    *dlen = (uint16_t)(*dlen + len);
}

static int rx_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_fd *h = p->data;

    if (h->hlast != H_VALUE) {
        /* First piece of this header's value: which header is it? */
        h->hwhich = W_OTHER;
        if (h->hname_len == 12 && (h->hmatch & 1))
            h->hwhich = W_INFO;
        else if (h->hname_len == 12 && (h->hmatch & 2))
            h->hwhich = W_HMAC;
        /* A repeated trace header is ambiguous: the request is not traced. */
        if (h->hwhich == W_INFO && h->seen_info++)
            h->bad_hdr = 1;
        if (h->hwhich == W_HMAC && h->seen_hmac++)
            h->bad_hdr = 1;
    }
    h->hlast = H_VALUE;
    if (h->hwhich == W_INFO)
        capture(h->info, &h->info_len, sizeof(h->info), at, len, &h->bad_hdr);
    else if (h->hwhich == W_HMAC)
        capture(h->hmac, &h->hmac_len, sizeof(h->hmac), at, len, &h->bad_hdr);
    return 0;
}

/* Split the request-target into path and query (both kept as received). */
static void split_target(const char *url, size_t n, const char **path, size_t *plen,
                         const char **query, size_t *qlen)
{
    const char *end = url + n, *p = url, *q;

    /* absolute-form "http://host:port/path?q": the path starts at the first
     * '/' after the authority */
    if (n > 0 && url[0] != '/' && url[0] != '*') {
        const char *s = memmem(url, n, "://", 3);
        if (s != NULL) {
            p = memchr(s + 3, '/', (size_t)(end - (s + 3)));
            if (p == NULL) {
                const char *qm = memchr(s + 3, '?', (size_t)(end - (s + 3)));
                p = qm ? qm : end;
            }
        }
    }
    q = memchr(p, '#', (size_t)(end - p));
    if (q != NULL)
        end = q;
    q = memchr(p, '?', (size_t)(end - p));
    *path = p;
    *plen = (size_t)((q ? q : end) - p);
    *query = q ? q + 1 : end;
    *qlen = q ? (size_t)(end - (q + 1)) : 0;
}

/* The wsgi span of a request with these trace header values, target (its
 * first LDPROF_HTTP_URL_CAP bytes; @url_trunc: there were more) and
 * method, or NULL when the headers do not verify.  Both the parser
 * (open_wsgi) and the fast path (rx_fast_head) open it here. */
static struct ldprof_span *open_wsgi_span(const struct http_fd *h, const char *info,
                                          size_t info_len, const char *hmac, size_t hmac_len,
                                          const char *url, size_t url_len, int url_trunc,
                                          unsigned http_method)
{
    struct ldprof_trace_ids ids;
    struct ldprof_span *s;
    const char *path, *query, *method;
    size_t plen, qlen;
    int key;

    key = ldprof_trace_verify(ldprof_keyring(), info, info_len, hmac, hmac_len, &ids);
    if (key < 0) {
        pr_dbg("fd %d: trace headers rejected (%s)", fd_of(h),
               ldprof_trace_verdict_name(ids.verdict));
        return NULL;
    }
    s = ldprof_span_open(LDPROF_KIND_WSGI, ids.base_id, ids.parent_id, key);
    if (s == NULL)
        return NULL;
    split_target(url, url_len, &path, &plen, &query, &qlen);
    method = http_method_str((enum http_method)http_method);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.path", path, plen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.query", query, qlen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.method", method,
                    strlen(method));
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.scheme", "http", 4);
    if (url_trunc)
        s->w.flags |= LDPROF_SPAN_TRUNCATED;
    return s;
}

static struct ldprof_span *open_wsgi(struct http_fd *h, http_parser *p)
{
    if (h->bad_hdr || !h->seen_info || !h->seen_hmac)
        return NULL;
    return open_wsgi_span(h, h->info, h->info_len, h->hmac, h->hmac_len, h->url, h->url_len,
                          h->url_trunc, p->method);
}

static int rx_on_headers_complete(http_parser *p)
{
    struct http_fd *h = p->data;
    uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_RELAXED);
    uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_ACQUIRE);
    struct ldprof_span *s = NULL;

    count_one(&h->n_requests);
    if (tail - head >= LDPROF_HTTP_QDEPTH) {
        /* Too many requests without a response: give up on this
         * connection's request side (the pending ones still complete). */
        h->rx_dead = 1;
        STAT_INC(desync);
        pr_dbg("fd %d: more than %d pipelined requests, no longer followed", fd_of(h),
               LDPROF_HTTP_QDEPTH);
        http_parser_pause(p, 1); /* stop parsing this buffer here */
        return 0;
    }
    if (ldprof_cfg.trace_wsgi)
        s = open_wsgi(h, p);
    q_push(h, tail, s, p->method);
    if (s != NULL) {
        STAT_INC(traced);
        ldprof_ctx_enter_root(s);
    }
    return 0;
}

/* Back at a message start (keep-alive): the fast path may take over. */
static int rx_on_message_complete(http_parser *p)
{
    struct http_fd *h = p->data;

    h->rx_fast = http_should_keep_alive(p) && !p->upgrade;
    return 0;
}

/* The method of the request line at @m (at least 8 bytes there), one the
 * fast path takes and its space (others, CONNECT first, go to the parser):
 * its enum http_method and *@len, or -1. */
static int fast_method(const char *m, size_t *len)
{
#define FAST_METHOD(s, id)                                                                        \
    do {                                                                                          \
        if (memcmp(m, s " ", sizeof(s)) == 0) {                                                   \
            *len = sizeof(s) - 1;                                                                 \
            return id;                                                                            \
        }                                                                                         \
    } while (0)
    /* (an if-chain, the common methods first: cheaper than a jump table) */
    if (m[0] == 'P') {
        FAST_METHOD("POST", HTTP_POST);
        FAST_METHOD("PUT", HTTP_PUT);
        FAST_METHOD("PATCH", HTTP_PATCH);
    } else if (m[0] == 'G') {
        FAST_METHOD("GET", HTTP_GET);
    } else if (m[0] == 'D') {
        FAST_METHOD("DELETE", HTTP_DELETE);
    } else if (m[0] == 'H') {
        FAST_METHOD("HEAD", HTTP_HEAD);
    } else if (m[0] == 'O') {
        FAST_METHOD("OPTIONS", HTTP_OPTIONS);
    }
    return -1;
#undef FAST_METHOD
}

/*
 * rx_fast_head - take a request head without http_parser (see
 * fast_headers): "METHOD /target HTTP/1.1" with one of fast_method's
 * methods and a target of printable ASCII but '#'.  0: left to the parser.
 * Else the head's length; the request is queued (with its wsgi span when
 * its trace headers verify, as rx_on_headers_complete would) and its body
 * is h->rx_left bytes.
 */
static size_t rx_fast_head(struct http_fd *h, const char *buf, size_t n)
{
    const char *end = buf + (n < FAST_HEAD_MAX ? n : FAST_HEAD_MAX);
    const char *sp, *t, *eol, *p;
    struct fast_head fh;
    struct ldprof_span *s = NULL;
    size_t mlen;
    int method;
    uint32_t tail, head;

    /* (no head is shorter than "GET / HTTP/1.1\r\n\r\n") */
    if (n < 18 || (method = fast_method(buf, &mlen)) < 0)
        return 0;
    sp = buf + mlen;
    /* sp "/" ... " HTTP/1.1\r\n": the target ends at its first byte that
     * is not one of the fast path's */
    if (sp[1] != '/')
        return 0;
    t = fast_target_end(sp + 1, buf, end);
    if (end - t < 11 || memcmp(t, " HTTP/1.1\r\n", 11) != 0)
        return 0;
    eol = t + 10;
    p = fast_headers(eol + 1, end, 1, &fh);
    if (p == NULL)
        return 0;
    tail = __atomic_load_n(&h->q_tail, __ATOMIC_RELAXED);
    head = __atomic_load_n(&h->q_head, __ATOMIC_ACQUIRE);
    if (tail - head >= LDPROF_HTTP_QDEPTH)
        return 0; /* the parser gives up on the connection */
    count_one(&h->n_requests);
    /* As rx_on_headers_complete with what the parser callbacks capture:
     * the target (rx_on_url) and both trace values (rx_on_header_value). */
    if (fh.info != NULL && fh.hmac != NULL && ldprof_cfg.trace_wsgi) {
        size_t ulen = (size_t)(eol - 10 - (sp + 1));
        s = open_wsgi_span(h, fh.info, fh.info_len, fh.hmac, fh.hmac_len, sp + 1,
                           ulen < LDPROF_HTTP_URL_CAP ? ulen : LDPROF_HTTP_URL_CAP,
                           ulen > LDPROF_HTTP_URL_CAP, (unsigned)method);
    }
    q_push(h, tail, s, (unsigned)method);
    if (s != NULL) {
        STAT_INC(traced);
        ldprof_ctx_enter_root(s);
    }
    h->rx_left = fh.have_cl ? fh.cl : 0;
    return (size_t)(p - buf);
}

static void rx_parse(struct http_fd *h, const char *buf, size_t n);

static void rx_feed(struct http_fd *h, const char *buf, size_t n)
{
    while (h->rx_fast && n > 0) {
        size_t k;
        if (h->rx_left > 0) {
            k = n < h->rx_left ? n : (size_t)h->rx_left;
            h->rx_left -= k;
        } else if ((k = rx_fast_head(h, buf, n)) == 0) {
            break;
        }
        buf += k;
        n -= k;
    }
    if (n > 0)
        rx_parse(h, buf, n);
}

/* The parser takes over at a message start (out of line: the fast path's
 * code stays small). */
static __attribute__((noinline, cold)) void rx_parse(struct http_fd *h, const char *buf, size_t n)
{
    size_t done;

    if (h->rx_fast)
        STAT_INC(parsed); /* a hand-over, not each buffer of a parsed stream */
    h->rx_fast = 0;
    h->rx.data = h;
    done = http_parser_execute(&h->rx, &rx_settings, buf, n);
    if (h->rx_dead)
        return; /* a callback gave up on this stream (and said why) */
    if (h->rx.upgrade) {
        /* CONNECT or Upgrade: what follows is not HTTP/1.x. */
        h->rx_dead = 1;
        return;
    }
    if (HTTP_PARSER_ERRNO(&h->rx) != HPE_OK || done != n) {
        h->rx_dead = 1;
        if (__atomic_load_n(&h->q_tail, __ATOMIC_RELAXED) == 0) {
            /* Never spoke HTTP (TLS, a binary protocol): forget it. */
            __atomic_store_n(&ldprof_http_kinds[fd_of(h)], LDPROF_FD_NONE, __ATOMIC_RELAXED);
        } else {
            STAT_INC(desync);
        }
    }
}

/* ------------------------------------------------------------ response side */

static int tx_on_headers_complete(http_parser *p)
{
    /* The response to HEAD has no body whatever its headers say. */
    return q_head_is_head(p->data);
}

/* A response with status @status is complete: end the request it answers. */
static void tx_complete(struct http_fd *h, unsigned status)
{
    uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_ACQUIRE);

    if (status >= 100 && status < 200 && status != 101)
        return; /* interim response (100 Continue): the real one follows */
    count_one(&h->n_responses);
    if (head == tail)
        return; /* a response to no request we saw (408, or rx was lost) */
    end_pending(h, head, NULL, NULL, 0);
    __atomic_store_n(&h->q_head, head + 1, __ATOMIC_RELEASE);
    if (status == 101)
        h->close_after = 1;
}

static int tx_on_message_complete(http_parser *p)
{
    tx_complete(p->data, p->status_code);
    return 0;
}

/* Server side: also note whether the parser is back at a message start
 * (keep-alive), where the fast path may take the stream over again. */
static int tx_on_message_complete_srv(http_parser *p)
{
    struct http_fd *h = p->data;

    h->tx_fast = http_should_keep_alive(p) && !p->upgrade;
    tx_complete(h, p->status_code);
    return 0;
}

static int tx_on_message_begin(http_parser *p)
{
    struct http_fd *h = p->data;

    h->tx_fast = 0;
    return 0;
}

/*
 * tx_fast_head - frame a response head without http_parser (see
 * fast_headers): "HTTP/1.1 DDD reason" with a status of 200-599 and either
 * a Content-Length (not a 204 or 304, not the answer to a HEAD request),
 * or none with a 204 or 304: those end with their head whatever the
 * request, as http_parser ends them (http_message_needs_eof; after a 204
 * or 304 with a Content-Length it reads a body but for HEAD: the parser's
 * too).  1xx are the parser's.  0: left to the parser (at a message start,
 * as the fast path leaves it).  Else the head's length; the body is
 * h->tx_left bytes (the response is complete when they have gone out).
 */
static size_t tx_fast_head(struct http_fd *h, const char *buf, size_t n)
{
    const char *end = buf + (n < FAST_HEAD_MAX ? n : FAST_HEAD_MAX);
    const char *p, *eol;
    struct fast_head fh;
    unsigned status;

    if (n < 19 || memcmp(buf, "HTTP/1.1 ", 9) != 0 || buf[12] != ' ')
        return 0;
    if (buf[9] < '2' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
        buf[11] > '9')
        return 0;
    status = (unsigned)((buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0'));
    /* the reason phrase: printable ASCII and tabs up to the first CR LF */
    eol = fast_value_end(buf + 13, end);
    if (eol == NULL)
        return 0;
    p = fast_headers(eol + 1, end, 0, &fh);
    if (p == NULL)
        return 0;
    if (status == 204 || status == 304) {
        if (fh.have_cl)
            return 0;
    } else if (!fh.have_cl || q_head_is_head(h)) {
        /* (the response to HEAD has no body whatever its headers say) */
        return 0;
    }
    h->tx_status = (uint16_t)status;
    h->tx_left = fh.cl;
    if (fh.cl == 0) {
        h->tx_fast_done = 1;
        tx_complete(h, status);
    }
    return (size_t)(p - buf);
}

static void tx_parse(struct http_fd *h, const char *buf, size_t n);

/* Server connections: @n bytes the program wrote, in the buffers of @iov
 * in turn (as one call per buffer would take them: a head is framed by the
 * fast path only when it is whole in one buffer), until the stream is
 * dead.  One function for every buffer of a writev/sendmsg: a response's
 * head and body, most often two buffers, cost one call. */
static void tx_feed_iov(struct http_fd *h, const struct iovec *iov, size_t iovcnt, size_t n)
{
    for (size_t i = 0; i < iovcnt && n > 0 && !h->tx_dead; i++) {
        const char *buf = iov[i].iov_base;
        size_t len = iov[i].iov_len < n ? iov[i].iov_len : n;

        n -= len;
        while (h->tx_fast && len > 0) {
            size_t k;
            if (h->tx_left > 0) {
                k = len < h->tx_left ? len : (size_t)h->tx_left;
                h->tx_left -= k;
                if (h->tx_left == 0) {
                    h->tx_fast_done = 1;
                    tx_complete(h, h->tx_status);
                }
            } else if ((k = tx_fast_head(h, buf, len)) == 0) {
                break;
            }
            buf += k;
            len -= k;
        }
        if (len > 0)
            tx_parse(h, buf, len);
    }
}

static inline void tx_feed(struct http_fd *h, const char *buf, size_t n)
{
    struct iovec one = {(void *)buf, n};

    tx_feed_iov(h, &one, 1, n);
}

/* The parser takes over at a message start (the fast path never stops
 * inside a message); out of line as rx_parse. */
static __attribute__((noinline, cold)) void tx_parse(struct http_fd *h, const char *buf, size_t n)
{
    size_t done;

    if (h->tx_fast)
        STAT_INC(parsed);
    h->tx_fast = h->tx_fast_done = 0;
    h->tx.data = h;
    done = http_parser_execute(&h->tx, &tx_settings, buf, n);
    if (h->close_after || h->tx.upgrade) {
        h->tx_dead = h->rx_dead = 1;
        fail_all_pending(h, NULL, NULL); /* cannot happen in order; be safe */
        return;
    }
    if (HTTP_PARSER_ERRNO(&h->tx) != HPE_OK || done != n) {
        /* The program wrote something that is not an HTTP/1.x response:
         * the requests waiting for one cannot be matched any more. */
        h->tx_dead = 1;
        STAT_INC(desync);
        fail_all_pending(h, "ProtocolError", "response is not HTTP/1.x");
    }
}


/* ------------------------------------------------------------ client side */

static int ctx_on_message_begin(http_parser *p)
{
    struct http_fd *h = p->data;
    h->tx_at_start = 0;
    return 0;
}

static int ctx_on_message_complete(http_parser *p)
{
    struct http_fd *h = p->data;
    h->tx_at_start = 1;
    h->inj_state = INJ_NONE;
    return 0;
}

static int crx_on_headers_complete(http_parser *p)
{
    struct http_fd *h = p->data;
    uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_RELAXED);
    uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_ACQUIRE);
    uint8_t meta = head != tail ? h->q_meta[head % LDPROF_HTTP_QDEPTH] : 0;

    if ((meta & Q_SPAN) && (p->status_code < 100 || p->status_code >= 200)) {
        int64_t code = p->status_code;
        ldprof_span_add(h->q_span[head % LDPROF_HTTP_QDEPTH], LDPROF_FIELD_STOP, LDPROF_TLV_INT,
                        "status_code", &code, sizeof(code));
    }
    return head != tail && Q_METHOD(meta) == HTTP_HEAD;
}

static const http_parser_settings ctx_settings = {
    .on_message_begin = ctx_on_message_begin,
    .on_message_complete = ctx_on_message_complete,
};

static const http_parser_settings crx_settings = {
    .on_headers_complete = crx_on_headers_complete,
    .on_message_complete = tx_on_message_complete, /* same matching as the server side */
};

/* Request bytes the program wrote (caller bytes only, never injected ones). */
static void client_tx_feed(struct http_fd *h, const char *buf, size_t n)
{
    size_t done;

    if (h->inj_state == INJ_LINE) {
        /* still inside the request line: keep it for validation */
        size_t room = LDPROF_HTTP_URL_CAP - h->url_len;
        if (n > room) {
            h->inj_state = INJ_DONE; /* too long to be worth tracing */
        } else {
            memcpy(h->url + h->url_len, buf, n);
            h->url_len = (uint16_t)(h->url_len + n);
        }
    }
    h->tx.data = h;
    done = http_parser_execute(&h->tx, &ctx_settings, buf, n);
    if (HTTP_PARSER_ERRNO(&h->tx) != HPE_OK || done != n || h->tx.upgrade) {
        /* Not HTTP/1.x (a database protocol, TLS...) or a tunnel from
         * now on: stop following the connection at once if nothing waits. */
        h->tx_dead = 1;
        if (__atomic_load_n(&h->q_tail, __ATOMIC_RELAXED) ==
            __atomic_load_n(&h->q_head, __ATOMIC_RELAXED))
            __atomic_store_n(&ldprof_http_kinds[fd_of(h)], LDPROF_FD_NONE, __ATOMIC_RELAXED);
    }
}

static void client_rx_feed(struct http_fd *h, const char *buf, size_t n)
{
    size_t done;

    h->rx.data = h;
    done = http_parser_execute(&h->rx, &crx_settings, buf, n);
    if (h->close_after || h->rx.upgrade) {
        h->rx_dead = h->tx_dead = 1;
        fail_all_pending(h, NULL, NULL);
        return;
    }
    if (HTTP_PARSER_ERRNO(&h->rx) != HPE_OK || done != n) {
        h->rx_dead = 1;
        STAT_INC(desync);
        fail_all_pending(h, "ProtocolError", "response is not HTTP/1.x");
    }
}

/* A request line "METHOD SP target SP HTTP/1.x CRLF"?  Fills method/target. */
static int parse_request_line(const char *l, size_t n, const char **m, size_t *mlen,
                              const char **t, size_t *tlen)
{
    const char *sp1, *sp2, *end;

    if (n < 16 || l[n - 1] != '\n' || l[n - 2] != '\r')
        return -1;
    end = l + n - 2;
    sp1 = memchr(l, ' ', (size_t)(end - l));
    if (sp1 == NULL || sp1 == l || sp1 - l > 20)
        return -1;
    for (const char *c = l; c < sp1; c++)
        if (*c < 'A' || *c > 'Z')
            return -1;
    sp2 = end - 9;
    if (sp2 <= sp1 + 1 || *sp2 != ' ' || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (end[-1] != '0' && end[-1] != '1'))
        return -1;
    *m = l;
    *mlen = (size_t)(sp1 - l);
    *t = sp1 + 1;
    *tlen = (size_t)(sp2 - (sp1 + 1));
    return 0;
}

/* Open the http span for the request line in h->url and build the headers
 * to inject into h->inj.  Returns the span, or NULL (not traced). */
static struct ldprof_span *client_open(struct http_fd *h, struct ldprof_ctx *c, uint8_t *method)
{
    const char *m, *t, *path, *query;
    size_t mlen, tlen, plen, qlen;
    char info[LDPROF_TRACE_INFO_SIZE], hmac[LDPROF_TRACE_HMAC_SIZE];
    const struct ldprof_keyring *kr;
    struct ldprof_span *s;
    int idx, n;
    int64_t port = h->peer_port;

    if (parse_request_line(h->url, h->url_len, &m, &mlen, &t, &tlen) != 0)
        return NULL;
    kr = ldprof_keyring_for(c->key_idx, &idx);
    s = ldprof_span_open(LDPROF_KIND_HTTP, c->base_id, c->cur_id, c->key_idx);
    if (s == NULL)
        return NULL;
    /* downstream: same trace, parent = this http span */
    if (ldprof_trace_sign(kr, idx, c->base_id, s->w.trace_id, info, sizeof(info), hmac) < 0) {
        ldprof_span_discard(s);
        return NULL;
    }
    n = snprintf(h->inj, sizeof(h->inj), "X-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n", info, hmac);
    if (n <= 0 || (size_t)n >= sizeof(h->inj)) {
        ldprof_span_discard(s);
        return NULL;
    }
    h->inj_len = (uint16_t)n;
    h->inj_off = 0;
    split_target(t, tlen, &path, &plen, &query, &qlen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.method", m, mlen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.path", path, plen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.query", query, qlen);
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.host", h->peer,
                    strlen(h->peer));
    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_INT, "request.port", &port, sizeof(port));
    *method = (mlen == 4 && memcmp(m, "HEAD", 4) == 0) ? HTTP_HEAD : HTTP_GET;
    return s;
}

/* Send the rest of the injected headers.  0 when all are out, else -1 with
 * errno (EAGAIN on a non-blocking socket: the caller retries later). */
static int client_send_pending(int fd, struct http_fd *h, int flags, ldprof_http_sendmsg_t sendfn)
{
    while (h->inj_off < h->inj_len) {
        ssize_t r = sendfn(fd, h->inj + h->inj_off, (size_t)(h->inj_len - h->inj_off), NULL, 0,
                           flags);
        if (r < 0)
            return -1;
        h->inj_off = (uint16_t)(h->inj_off + r);
    }
    return 0;
}

static size_t iov_total(const struct iovec *iov, size_t iovcnt)
{
    size_t t = 0;
    for (size_t i = 0; i < iovcnt; i++)
        t += iov[i].iov_len;
    return t;
}

/* Offset just past the first '\n' in the caller's data, or 0. */
static size_t iov_find_nl(const struct iovec *iov, size_t iovcnt)
{
    size_t off = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        const char *nl = memchr(iov[i].iov_base, '\n', iov[i].iov_len);
        if (nl != NULL)
            return off + (size_t)(nl - (const char *)iov[i].iov_base) + 1;
        off += iov[i].iov_len;
    }
    return 0;
}

/* Copy the first @n caller bytes (for the request line buffer). */
static void iov_copy(char *dst, const struct iovec *iov, size_t iovcnt, size_t n)
{
    for (size_t i = 0; i < iovcnt && n > 0; i++) {
        size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
        memcpy(dst, iov[i].iov_base, k);
        dst += k;
        n -= k;
    }
}

static void client_feed_iov(struct http_fd *h, const struct iovec *iov, size_t iovcnt, size_t n)
{
    for (size_t i = 0; i < iovcnt && n > 0; i++) {
        size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
        if (k)
            client_tx_feed(h, iov[i].iov_base, k);
        n -= k;
    }
}

ssize_t ldprof_http_client_send(int fd, const struct iovec *iov, size_t iovcnt, int flags,
                                ldprof_http_sendmsg_t sendfn)
{
    struct http_fd *h = fd_state(fd);
    struct ldprof_ctx *c;
    struct ldprof_span *s;
    size_t total, L, room;
    uint8_t method = HTTP_GET;
    ssize_t r;

    if (h->tx_dead || !ldprof_spin_trylock(&h->tx_lock))
        return LDPROF_HTTP_PASS;
    if (h->inj_off < h->inj_len && client_send_pending(fd, h, flags, sendfn) != 0) {
        int e = errno;
        ldprof_spin_unlock(&h->tx_lock);
        errno = e;
        return -1;
    }
    total = iov_total(iov, iovcnt);
    if (total == 0 || iovcnt > LDPROF_HTTP_MAX_IOV)
        goto pass;
    if (h->tx_at_start && h->inj_state == INJ_NONE) {
        /* First byte of a new request: trace it if the thread is inside a
         * trace.  The decision is taken once per request. */
        c = ldprof_ctx_current();
        if (c == NULL)
            goto pass;
        h->inj_state = INJ_LINE;
        h->url_len = 0;
    }
    if (h->inj_state != INJ_LINE)
        goto pass;
    L = iov_find_nl(iov, iovcnt);
    if (L == 0)
        goto pass; /* the request line continues in a later write */
    room = LDPROF_HTTP_URL_CAP - h->url_len;
    c = ldprof_ctx_current();
    if (L > room || c == NULL) {
        h->inj_state = INJ_DONE;
        goto pass;
    }
    /* Validate the complete line (earlier pieces + this one) before
     * touching the stream. */
    iov_copy(h->url + h->url_len, iov, iovcnt, L);
    h->url_len = (uint16_t)(h->url_len + L);
    s = client_open(h, c, &method);
    h->url_len = (uint16_t)(h->url_len - L); /* client_tx_feed appends what is sent */
    if (s == NULL) {
        h->inj_state = INJ_DONE;
        goto pass;
    }
    {
        /* caller[0..L) + injected headers + caller[L..) in one sendmsg */
        struct iovec out[LDPROF_HTTP_MAX_IOV + 2];
        size_t k = 0, off = 0, H = h->inj_len;
        int added = 0;

        for (size_t i = 0; i < iovcnt && k < LDPROF_HTTP_MAX_IOV; i++) {
            const char *b = iov[i].iov_base;
            size_t len = iov[i].iov_len;
            if (!added && off + len >= L) {
                size_t first = L - off;
                if (first)
                    out[k++] = (struct iovec){(void *)b, first};
                out[k++] = (struct iovec){h->inj, H};
                if (len - first)
                    out[k++] = (struct iovec){(void *)(b + first), len - first};
                added = 1;
            } else {
                out[k++] = iov[i];
            }
            off += len;
        }
        r = sendfn(fd, NULL, 0, out, k, flags);
        if (r < 0 || (size_t)r < L) {
            /* The headers did not go out: undo, and try again with the rest
             * of the line on the next write. */
            int e = errno;
            ldprof_span_discard(s);
            h->inj_len = h->inj_off = 0;
            if (r > 0)
                client_feed_iov(h, iov, iovcnt, (size_t)r);
            ldprof_spin_unlock(&h->tx_lock);
            errno = e;
            return r;
        }
        /* From here the request carries our headers (some may be pending). */
        {
            uint32_t tail = __atomic_load_n(&h->q_tail, __ATOMIC_RELAXED);
            uint32_t head = __atomic_load_n(&h->q_head, __ATOMIC_ACQUIRE);
            if (tail - head < LDPROF_HTTP_QDEPTH) {
                q_push(h, tail, s, method);
            } else {
                ldprof_span_discard(s);
            }
        }
        h->inj_state = INJ_DONE;
        if ((size_t)r < L + H) {
            h->inj_off = (uint16_t)((size_t)r - L);
            r = (ssize_t)L;
        } else {
            h->inj_off = h->inj_len;
            r -= (ssize_t)H;
        }
        client_feed_iov(h, iov, iovcnt, (size_t)r);
        ldprof_spin_unlock(&h->tx_lock);
        return r;
    }
pass:
    ldprof_spin_unlock(&h->tx_lock);
    return LDPROF_HTTP_PASS;
}

int ldprof_http_covered(int fd)
{
    struct http_fd *h;
    int kind;

    if ((unsigned)fd >= (unsigned)ldprof_http_nfds || fdtab == NULL)
        return 0;
    kind = __atomic_load_n(&ldprof_http_kinds[fd], __ATOMIC_RELAXED);
    if (kind == LDPROF_FD_SERVER)
        return 1;
    if (kind != LDPROF_FD_CLIENT)
        return 0;
    h = fd_state(fd);
    return __atomic_load_n(&h->q_tail, __ATOMIC_ACQUIRE) !=
               __atomic_load_n(&h->q_head, __ATOMIC_ACQUIRE) ||
           __atomic_load_n(&h->inj_off, __ATOMIC_RELAXED) <
               __atomic_load_n(&h->inj_len, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ events */

static void fd_reset(struct http_fd *h, int kind)
{
    h->rx_dead = h->tx_dead = h->shared = h->close_after = 0;
    h->q_head = h->q_tail = 0;
    h->tx_fast = kind == LDPROF_FD_SERVER; /* tx starts at a message start */
    h->tx_fast_done = 0;
    h->tx_left = 0;
    h->rx_fast = kind == LDPROF_FD_SERVER;
    h->rx_left = 0;
    if (kind == LDPROF_FD_SERVER) {
        http_parser_init(&h->rx, HTTP_REQUEST);
        http_parser_init(&h->tx, HTTP_RESPONSE);
    } else {
        http_parser_init(&h->rx, HTTP_RESPONSE);
        http_parser_init(&h->tx, HTTP_REQUEST);
    }
    h->hlast = H_NONE;
}

/* Take both locks, spinning a bounded time (the holders never block). */
static int lock_both(struct http_fd *h)
{
    for (int i = 0; i < 100000; i++) {
        if (ldprof_spin_trylock(&h->rx_lock)) {
            if (ldprof_spin_trylock(&h->tx_lock))
                return 0;
            ldprof_spin_unlock(&h->rx_lock);
        }
        ldprof_cpu_relax();
    }
    return -1;
}

static void fd_release(int fd, int graceful)
{
    struct http_fd *h = fd_state(fd);

    if (lock_both(h) != 0) {
        /* Another thread is inside a read/write on an fd being closed:
         * stop following it; its open spans are reported at exit. */
        __atomic_store_n(&ldprof_http_kinds[fd], LDPROF_FD_NONE, __ATOMIC_RELAXED);
        return;
    }
    if (graceful && ldprof_http_kinds[fd] == LDPROF_FD_SERVER && !h->tx_dead) {
        /* End of the response stream: completes a close-delimited body. */
        h->tx.data = h;
        http_parser_execute(&h->tx, &tx_settings, NULL, 0);
    } else if (graceful && ldprof_http_kinds[fd] == LDPROF_FD_CLIENT && !h->rx_dead) {
        /* A client closing after the last byte of a close-delimited
         * response, without waiting for the end of stream. */
        h->rx.data = h;
        http_parser_execute(&h->rx, &crx_settings, NULL, 0);
    }
    fail_all_pending(h, "ConnectionClosed", "connection closed before the response was complete");
    __atomic_store_n(&ldprof_http_kinds[fd], LDPROF_FD_NONE, __ATOMIC_RELAXED);
    ldprof_spin_unlock(&h->tx_lock);
    ldprof_spin_unlock(&h->rx_lock);
}

void ldprof_http_on_accept(int fd)
{
    struct http_fd *h;

    if ((unsigned)fd >= (unsigned)ldprof_http_nfds || fdtab == NULL)
        return;
    if (__atomic_load_n(&ldprof_http_kinds[fd], __ATOMIC_RELAXED) != LDPROF_FD_NONE)
        fd_release(fd, 0); /* closed behind our back (fclose, a raw syscall) */
    if (!ldprof_cfg.trace_wsgi)
        return;
    h = fd_state(fd);
    fd_reset(h, LDPROF_FD_SERVER);
    h->rx_lock = h->tx_lock = 0;
    if (fd > __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED))
        __atomic_store_n(&max_fd_seen, fd, __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_http_kinds[fd], LDPROF_FD_SERVER, __ATOMIC_RELEASE);
}

void ldprof_http_on_connect(int fd, const struct sockaddr *addr)
{
    struct http_fd *h;

    if ((unsigned)fd >= (unsigned)ldprof_http_nfds || fdtab == NULL)
        return;
    /* A reused number must not keep the state of its last connection. */
    if (__atomic_load_n(&ldprof_http_kinds[fd], __ATOMIC_RELAXED) != LDPROF_FD_NONE)
        fd_release(fd, 0);
    h = fd_state(fd);
    fd_reset(h, LDPROF_FD_CLIENT);
    h->rx_lock = h->tx_lock = 0;
    h->tx_at_start = 1;
    h->inj_state = INJ_NONE;
    h->inj_len = h->inj_off = 0;
    h->url_len = 0;
    h->peer[0] = '\0';
    h->peer_port = 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)addr;
        inet_ntop(AF_INET, &in->sin_addr, h->peer, sizeof(h->peer));
        h->peer_port = ntohs(in->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, h->peer, sizeof(h->peer));
        h->peer_port = ntohs(in6->sin6_port);
    }
    if (fd > __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED))
        __atomic_store_n(&max_fd_seen, fd, __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_http_kinds[fd], LDPROF_FD_CLIENT, __ATOMIC_RELEASE);
}

void ldprof_http_on_recv(int fd, const void *buf, size_t n)
{
    struct http_fd *h = fd_state(fd);

    if (h->rx_dead)
        return;
    if (!ldprof_spin_trylock(&h->rx_lock)) {
        h->rx_dead = 1; /* two readers at once: our parser lost bytes */
        return;
    }
    if (ldprof_http_kinds[fd] == LDPROF_FD_SERVER)
        rx_feed(h, buf, n);
    else if (ldprof_http_kinds[fd] == LDPROF_FD_CLIENT)
        client_rx_feed(h, buf, n);
    ldprof_spin_unlock(&h->rx_lock);
}

void ldprof_http_on_recv_iov(int fd, const struct iovec *iov, size_t iovcnt, size_t n)
{
    for (size_t i = 0; i < iovcnt && n > 0; i++) {
        size_t len = iov[i].iov_len < n ? iov[i].iov_len : n;
        if (len)
            ldprof_http_on_recv(fd, iov[i].iov_base, len);
        n -= len;
    }
}

/* Take @h's tx lock: 0 when its stream is not followed (dead, or another
 * writer holds the lock: two writers at once, our parser would lose bytes,
 * so it is dead from now on). */
static inline int tx_take(struct http_fd *h)
{
    if (h->tx_dead)
        return 0;
    if (!ldprof_spin_trylock(&h->tx_lock)) {
        h->tx_dead = 1;
        return 0;
    }
    return 1;
}

/* @n bytes the program wrote on @fd, to its stream's parser (tx lock held). */
static inline void tx_feed_kind(struct http_fd *h, int fd, const char *buf, size_t n)
{
    if (ldprof_http_kinds[fd] == LDPROF_FD_SERVER)
        tx_feed(h, buf, n);
    else if (ldprof_http_kinds[fd] == LDPROF_FD_CLIENT)
        client_tx_feed(h, buf, n);
}

void ldprof_http_on_send(int fd, const void *buf, size_t n)
{
    struct http_fd *h = fd_state(fd);

    if (!tx_take(h))
        return;
    tx_feed_kind(h, fd, buf, n);
    ldprof_spin_unlock(&h->tx_lock);
}

/* As ldprof_http_on_send for each buffer in turn, under one lock. */
void ldprof_http_on_send_iov(int fd, const struct iovec *iov, size_t iovcnt, size_t n)
{
    struct http_fd *h = fd_state(fd);

    if (!tx_take(h))
        return;
    if (ldprof_http_kinds[fd] == LDPROF_FD_SERVER) {
        tx_feed_iov(h, iov, iovcnt, n);
    } else {
        for (size_t i = 0; i < iovcnt && n > 0 && !h->tx_dead; i++) {
            size_t len = iov[i].iov_len < n ? iov[i].iov_len : n;
            if (len == 0)
                continue;
            tx_feed_kind(h, fd, iov[i].iov_base, len);
            n -= len;
        }
    }
    ldprof_spin_unlock(&h->tx_lock);
}

void ldprof_http_on_send_opaque(int fd, size_t n)
{
    static const char zeros[4096];
    struct http_fd *h = fd_state(fd);

    if (h->tx_dead || !ldprof_spin_trylock(&h->tx_lock))
        return;
    /* content_length is what is left of the body (or of the current chunk;
     * ULLONG_MAX while reading a close-delimited body).  A body parser only
     * counts these bytes, so zeros stand in for the file's.  With the fast
     * path: its own count, 0 between its messages (as the parser's after
     * a Content-Length body). */
    uint64_t left = !h->tx_fast ? h->tx.content_length
                    : h->tx_left != 0 || h->tx_fast_done ? h->tx_left
                                                         : h->tx.content_length;
    if (left != 0 && left >= n) {
        while (n > 0 && !h->tx_dead) {
            size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
            tx_feed(h, zeros, k);
            n -= k;
        }
    } else {
        h->tx_dead = 1;
        STAT_INC(desync);
        fail_all_pending(h, "ProtocolError", "response body sent with sendfile() not followed");
    }
    ldprof_spin_unlock(&h->tx_lock);
}

void ldprof_http_on_eof(int fd)
{
    struct http_fd *h = fd_state(fd);

    /* Server side: the peer will send no more requests (responses may still
     * follow).  Client side: the end of a close-delimited response. */
    if (h->rx_dead || !ldprof_spin_trylock(&h->rx_lock))
        return;
    h->rx.data = h;
    if (ldprof_http_kinds[fd] == LDPROF_FD_CLIENT) {
        http_parser_execute(&h->rx, &crx_settings, NULL, 0);
        fail_all_pending(h, "ConnectionClosed", "connection closed before the response was complete");
    } else {
        http_parser_execute(&h->rx, &rx_settings, NULL, 0);
    }
    h->rx_dead = 1;
    ldprof_spin_unlock(&h->rx_lock);
}

void ldprof_http_on_shutdown(int fd, int how)
{
    /* A server that shuts its sending side down has finished its responses;
     * a client doing so has only finished its requests. */
    if ((how == SHUT_WR || how == SHUT_RDWR) && ldprof_http_kind(fd) == LDPROF_FD_SERVER)
        fd_release(fd, 1);
}

void ldprof_http_on_close(int fd)
{
    if (ldprof_http_tracked(fd))
        fd_release(fd, 1);
}

void ldprof_http_fork_parent(void)
{
    int max = __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED);
    for (int fd = 0; fd <= max; fd++)
        if (ldprof_http_kinds[fd] != LDPROF_FD_NONE)
            fdtab[fd].shared = 1;
}

void ldprof_http_fork_child(void)
{
    int max = __atomic_load_n(&max_fd_seen, __ATOMIC_RELAXED);
    for (int fd = 0; fd <= max; fd++) {
        if (ldprof_http_kinds[fd] != LDPROF_FD_NONE) {
            fdtab[fd].shared = 1;
            fdtab[fd].rx_lock = fdtab[fd].tx_lock = 0;
        }
    }
}
