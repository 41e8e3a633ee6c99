/*
 * preload/span.c - open spans, thread context, TLV encoding, and the
 * public manual-span API (include/ldprof/ldprof.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "buffer.h"
#include "init.h"
#include "log.h"
#include "propagation.h"
#include "span.h"

#define PR_FMT "span"

_Static_assert(offsetof(struct ldprof_span, info) ==
                   offsetof(struct ldprof_span, w) + sizeof(struct ldprof_wire_span),
               "record head and info must be contiguous");
_Static_assert(offsetof(struct ldprof_span, w) % 8 == 0, "record head is 8-aligned");

#define POOL_WORDS (LDPROF_MAX_OPEN_SPANS / 64)

static struct ldprof_span *pool;        /* LDPROF_MAX_OPEN_SPANS slots */
static uint64_t pool_bits[POOL_WORDS];  /* 1 = slot taken (atomic) */

/* Keyrings: filled once in the constructor, read-only afterwards. */
static struct ldprof_keyring server_kr;
static struct ldprof_keyring profile_kr;

/* Client profile trace: a permanently open pseudo-span that is the root of
 * every thread's default context.  Never recorded. */
static struct ldprof_span profile_root;
int ldprof_profile_on;

int ldprof_span_pool_init(void)
{
    void *p;

    if (__atomic_load_n(&pool, __ATOMIC_ACQUIRE) != NULL)
        return 0;
    /* Virtual only: pages are touched as slots are used. */
    p = mmap(NULL, sizeof(struct ldprof_span) * LDPROF_MAX_OPEN_SPANS, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        pr_err("cannot map the span pool: %s; nothing will be recorded", strerror(errno));
        return -1;
    }
    struct ldprof_span *expected = NULL;
    if (!__atomic_compare_exchange_n(&pool, &expected, (struct ldprof_span *)p, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        munmap(p, sizeof(struct ldprof_span) * LDPROF_MAX_OPEN_SPANS);
    return 0;
}

/*
 * The spare slot (ldprof_tls.spare): the last slot a thread freed stays
 * taken in the bitmap (state FREE, generation bumped) and is that thread's
 * next slot, so a span that begins and ends on one thread costs no atomic
 * read-modify-write on the bitmap.  Touched only at depth 1 (the outermost
 * ldprof level): a signal handler interrupting ldprof code runs deeper and
 * uses the bitmap.  Kept only by a thread with a buffer, whose exit runs
 * ldprof_span_spare_release() (buffer.c's destructor); after a fork the
 * child gives back every FREE slot still taken (ldprof_span_fork_child).
 */
static struct ldprof_span *slot_alloc(void)
{
    struct ldprof_span *base, *sp = ldprof_tls.spare;
    unsigned start;

    if ((uintptr_t)sp > 1 && ldprof_tls.depth == 1) {
        ldprof_tls.spare = NULL;
        return sp;
    }
    base = __atomic_load_n(&pool, __ATOMIC_ACQUIRE);
    /* Start the scan at a per-thread place so threads do not all fight
     * over word 0. */
    start = (unsigned)ldprof_tls_tid() % POOL_WORDS;
    if (base == NULL)
        return NULL;
    for (unsigned k = 0; k < POOL_WORDS; k++) {
        unsigned w = (start + k) % POOL_WORDS;
        uint64_t bits = __atomic_load_n(&pool_bits[w], __ATOMIC_RELAXED);
        while (bits != ~0ull) {
            int bit = __builtin_ctzll(~bits);
            uint64_t want = bits | (1ull << bit);
            if (__atomic_compare_exchange_n(&pool_bits[w], &bits, want, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return &base[w * 64 + (unsigned)bit];
        }
    }
    return NULL;
}

static void slot_free(struct ldprof_span *s)
{
    size_t idx = (size_t)(s - pool);

    /* Only the thread that moved the span to CLOSING gets here: a plain
     * (atomic) store of gen + 1, no read-modify-write. */
    __atomic_store_n(&s->gen, __atomic_load_n(&s->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&s->state, LDPROF_SPAN_FREE, __ATOMIC_RELEASE);
    if (ldprof_tls.spare == NULL && ldprof_tls.depth == 1 && ldprof_tls.buf != NULL) {
        ldprof_tls.spare = s; /* stays taken in the bitmap */
        return;
    }
    __atomic_and_fetch(&pool_bits[idx / 64], ~(1ull << (idx % 64)), __ATOMIC_RELEASE);
}

void ldprof_span_spare_release(void)
{
    struct ldprof_span *sp;

    ldprof_tls.depth++; /* keep a signal handler off the spare meanwhile */
    sp = ldprof_tls.spare;
    ldprof_tls.spare = LDPROF_SPARE_OFF;
    if ((uintptr_t)sp > 1) {
        size_t idx = (size_t)(sp - pool);
        __atomic_and_fetch(&pool_bits[idx / 64], ~(1ull << (idx % 64)), __ATOMIC_RELEASE);
    }
    ldprof_tls.depth--;
}

void ldprof_span_fork_child(void)
{
    /* The only thread left: every slot taken but FREE is a spare of a
     * thread that is gone (or this thread's). */
    ldprof_tls.spare = NULL;
    if (pool == NULL)
        return;
    for (unsigned w = 0; w < POOL_WORDS; w++) {
        uint64_t bits = pool_bits[w], keep = bits;
        while (bits) {
            int bit = __builtin_ctzll(bits);
            bits &= bits - 1;
            if (__atomic_load_n(&pool[w * 64 + (unsigned)bit].state, __ATOMIC_RELAXED) ==
                LDPROF_SPAN_FREE)
                keep &= ~(1ull << bit);
        }
        pool_bits[w] = keep;
    }
}

static int is_pool_span(const struct ldprof_span *s)
{
    return pool != NULL && s >= pool && s < pool + LDPROF_MAX_OPEN_SPANS;
}

/* ldprof_span_open without a free slot (out of line: rare). */
static __attribute__((noinline, cold)) struct ldprof_span *span_open_failed(void)
{
    ldprof_buf_count_drop(1);
    pr_warn_once("more than %d spans open at once: spans dropped", LDPROF_MAX_OPEN_SPANS);
    return NULL;
}

struct ldprof_span *ldprof_span_open(int kind, const uint8_t base_id[16],
                                     const uint8_t parent_id[16], int key_idx)
{
    struct ldprof_span *s = slot_alloc();

    if (__builtin_expect(s == NULL, 0))
        return span_open_failed();
    s->key_idx = key_idx;
    s->is_root = 0;
    s->prev_valid = 0;
    s->info_len = 0;
    memset(&s->w, 0, sizeof(s->w));
    s->w.kind = (uint8_t)kind;
    s->w.tid = (uint32_t)ldprof_tls_tid();
    memcpy(s->w.base_id, base_id, 16);
    memcpy(s->w.parent_id, parent_id, 16);
    ldprof_uuid_new(s->w.trace_id);
    s->w.start_ns = ldprof_now_ns();
    __atomic_store_n(&s->state, LDPROF_SPAN_OPEN, __ATOMIC_RELEASE);
    return s;
}

int ldprof_tlv_put(uint8_t *dst, size_t cap, uint8_t type, const char *key, size_t klen,
                   const void *val, size_t vlen)
{
    struct ldprof_wire_tlv t;
    size_t need = sizeof(t) + klen + vlen;

    if (klen == 0 || klen > 255 || vlen > 65535 || need > cap)
        return -1;
    t.type = type;
    t.klen = (uint8_t)klen;
    t.vlen = (uint16_t)vlen;
    memcpy(dst, &t, sizeof(t));
    ldprof_copy_short(dst + sizeof(t), key, klen);
    ldprof_copy_short(dst + sizeof(t) + klen, val, vlen);
    return (int)need;
}

/* span_add when the field does not fit as it is (@type with its STOP bit):
 * cut a long string, else mark the span truncated.  Out of line: rare. */
static __attribute__((noinline, cold)) int span_add_slow(struct ldprof_span *s, uint8_t type,
                                                         const char *key, size_t klen,
                                                         const void *val, size_t vlen)
{
    size_t room = LDPROF_WIRE_MAX_INFO - s->info_len;
    int n;

    n = ldprof_tlv_put(s->info + s->info_len, room, type, key, klen, val, vlen);
    if (n < 0 && (type & ~LDPROF_TLV_STOP) == LDPROF_TLV_STR && klen <= 255 &&
        room > sizeof(struct ldprof_wire_tlv) + klen + 8) {
        /* Cut a long string to what fits rather than losing it, without
         * splitting a UTF-8 sequence. */
        size_t cut = room - sizeof(struct ldprof_wire_tlv) - klen;
        const uint8_t *v = val;
        if (cut > 65535)
            cut = 65535;
        while (cut > 0 && cut < vlen && (v[cut] & 0xc0) == 0x80)
            cut--;
        n = ldprof_tlv_put(s->info + s->info_len, room, type, key, klen, val, cut);
        s->w.flags |= LDPROF_SPAN_TRUNCATED;
        if (n > 0)
            s->info_len = (uint16_t)(s->info_len + n);
        return -1;
    }
    if (n < 0) {
        s->w.flags |= LDPROF_SPAN_TRUNCATED;
        return -1;
    }
    s->info_len = (uint16_t)(s->info_len + n);
    return 0;
}

/*
 * A field with the key's length known (@key not NULL; @type with the STOP
 * bit for a stop field: six arguments, so that the callers tail-call it).
 * One copy, not inlined: every field writer (the three entry points
 * below, behind each ldprof_span_add* call whose lengths are not both
 * constants) runs these same few code lines, which a request then touches
 * once however many fields it writes (docs/performance.md, section 3).
 * The fast path is span.h's ldprof_span_put, the one the call sites with
 * constant lengths inline.
 */
static __attribute__((noinline)) int span_add(struct ldprof_span *s, uint8_t type,
                                              const char *key, size_t klen, const void *val,
                                              size_t vlen)
{
    if (__builtin_expect(ldprof_span_put(s, type, key, klen, val, vlen) == 0, 1))
        return 0;
    return span_add_slow(s, type, key, klen, val, vlen);
}

int ldprof_span_add_k(struct ldprof_span *s, int when, uint8_t type, const char *key, long klen,
                      const void *val, size_t vlen)
{
    if (s == NULL || key == NULL)
        return -1;
    return span_add(s, LDPROF_SPAN_TYPE(when, type), key,
                    klen < 0 ? strlen(key) : (size_t)klen, val, vlen);
}

int ldprof_span_add_str_k(struct ldprof_span *s, int when, const char *key, long klen,
                          const char *val, long vlen)
{
    /* (nothing here can change errno: no errno save needed) */
    if (s == NULL || key == NULL || val == NULL)
        return -1;
    return span_add(s, LDPROF_SPAN_TYPE(when, LDPROF_TLV_STR), key,
                    klen < 0 ? strlen(key) : (size_t)klen, val,
                    vlen < 0 ? strlen(val) : (size_t)vlen);
}

int ldprof_span_add_int_k(struct ldprof_span *s, int when, const char *key, long klen,
                          int64_t val)
{
    if (s == NULL || key == NULL)
        return -1;
    return span_add(s, LDPROF_SPAN_TYPE(when, LDPROF_TLV_INT), key,
                    klen < 0 ? strlen(key) : (size_t)klen, &val,
                    sizeof(val));
}

void ldprof_span_close(struct ldprof_span *s, unsigned flags)
{
    uint32_t expect = LDPROF_SPAN_OPEN;
    uint64_t end;

    if (s == NULL)
        return;
    if (!__atomic_compare_exchange_n(&s->state, &expect, LDPROF_SPAN_CLOSING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return; /* already ended, or emitted as unfinished at exit */
    s->w.flags |= (uint8_t)flags;
    end = ldprof_now_ns();
    /* never a negative duration (a realtime step back, another CPU) */
    s->w.end_ns = end >= s->w.start_ns ? end : s->w.start_ns;
    s->w.info_len = s->info_len;
    s->w.rec_len = (uint16_t)(sizeof(s->w) + s->info_len);
    ldprof_buf_record(&s->w, s->w.rec_len);
    if (is_pool_span(s))
        slot_free(s);
}

void ldprof_span_discard(struct ldprof_span *s)
{
    uint32_t expect = LDPROF_SPAN_OPEN;

    if (s == NULL)
        return;
    if (!__atomic_compare_exchange_n(&s->state, &expect, LDPROF_SPAN_CLOSING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    if (is_pool_span(s))
        slot_free(s);
}

int ldprof_span_emit_unfinished(void)
{
    int n = 0;

    if (pool == NULL)
        return 0;
    for (unsigned w = 0; w < POOL_WORDS; w++) {
        uint64_t bits = __atomic_load_n(&pool_bits[w], __ATOMIC_ACQUIRE);
        while (bits) {
            int bit = __builtin_ctzll(bits);
            struct ldprof_span *s = &pool[w * 64 + (unsigned)bit];
            uint32_t expect = LDPROF_SPAN_OPEN;
            bits &= bits - 1;
            /* Claimed here, the slot is never freed: the owner's later
             * ldprof_span_close() sees CLOSING and leaves it alone. */
            if (!__atomic_compare_exchange_n(&s->state, &expect, LDPROF_SPAN_CLOSING, 0,
                                             __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                continue;
            s->w.flags |= LDPROF_SPAN_UNFINISHED;
            s->w.end_ns = s->w.start_ns;
            s->w.info_len = s->info_len;
            s->w.rec_len = (uint16_t)(sizeof(s->w) + s->info_len);
            ldprof_buf_record(&s->w, s->w.rec_len);
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------ context */

static int ctx_valid(const struct ldprof_ctx *c)
{
    const struct ldprof_span *r = c->root;
    return r != NULL && __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE) == c->root_gen &&
           __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == LDPROF_SPAN_OPEN;
}

struct ldprof_ctx *ldprof_ctx_current(void)
{
    struct ldprof_ctx *c = &ldprof_tls.ctx;

    if (ctx_valid(c))
        return c;
    if (ldprof_profile_on) {
        c->root = &profile_root;
        c->root_gen = profile_root.gen;
        c->key_idx = LDPROF_KEY_PROFILE;
        memcpy(c->base_id, profile_root.w.base_id, 16);
        memcpy(c->cur_id, profile_root.w.base_id, 16);
        return c;
    }
    c->root = NULL;
    return NULL;
}

void ldprof_ctx_enter_root(struct ldprof_span *s)
{
    struct ldprof_ctx *c = &ldprof_tls.ctx;

    s->is_root = 1;
    c->root = s;
    c->root_gen = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
    c->key_idx = s->key_idx;
    memcpy(c->base_id, s->w.base_id, 16);
    memcpy(c->cur_id, s->w.trace_id, 16);
}

void ldprof_ctx_leave_root(const struct ldprof_span *s)
{
    if (ldprof_tls.ctx.root == s)
        ldprof_tls.ctx.root = NULL;
}

/* ------------------------------------------------------------ keys, profile */

int ldprof_keyrings_init(const char *hmac_keys)
{
    int ignored = ldprof_keyring_init(&server_kr, hmac_keys);
    if (ignored > 0)
        pr_warn("hmac_keys lists more than %d keys: the last %d are ignored", LDPROF_MAX_KEYS,
                ignored);
    return server_kr.nkeys;
}

const struct ldprof_keyring *ldprof_keyring(void)
{
    return &server_kr;
}

const struct ldprof_keyring *ldprof_keyring_for(int key_idx, int *index_in_ring)
{
    if (key_idx == LDPROF_KEY_PROFILE) {
        *index_in_ring = 0;
        return &profile_kr;
    }
    *index_in_ring = key_idx;
    return &server_kr;
}

int ldprof_profile_start(const char *key)
{
    ldprof_keyring_init(&profile_kr, key);
    if (profile_kr.nkeys < 1) {
        pr_warn("LDPROF_PROFILE holds no usable key: client profile mode is off");
        return -1;
    }
    memset(&profile_root, 0, sizeof(profile_root));
    ldprof_uuid_new(profile_root.w.base_id);
    memcpy(profile_root.w.trace_id, profile_root.w.base_id, 16);
    profile_root.state = LDPROF_SPAN_OPEN;
    profile_root.gen = 1;
    profile_root.key_idx = LDPROF_KEY_PROFILE;
    ldprof_profile_on = 1;
    return 0;
}

int ldprof_profile_inherit(const char *id)
{
    uint8_t base[16];

    if (!ldprof_profile_on || ldprof_uuid_parse(id, strlen(id), base) != 0)
        return -1;
    memcpy(profile_root.w.base_id, base, 16);
    memcpy(profile_root.w.trace_id, base, 16);
    return 0;
}

const uint8_t *ldprof_profile_base(void)
{
    return ldprof_profile_on ? profile_root.w.base_id : NULL;
}

/* ------------------------------------------------------------ public API */

LDPROF_EXPORT struct ldprof_span *ldprof_span_begin(int kind)
{
    struct ldprof_span *s = NULL;
    struct ldprof_ctx *c;
    int saved = errno;

    if (!ldprof_recording() || kind < 1 || kind > LDPROF_KIND_MAX)
        goto out;
    if (!ldprof_enter())
        goto leave;
    c = ldprof_ctx_current();
    if (c == NULL)
        goto leave;
    s = ldprof_span_open(kind, c->base_id, c->cur_id, c->key_idx);
    if (s != NULL) {
        memcpy(s->prev_id, c->cur_id, 16);
        s->prev_valid = 1;
        memcpy(c->cur_id, s->w.trace_id, 16);
    }
leave:
    ldprof_leave();
out:
    errno = saved;
    return s;
}

/* (parenthesised names: span.h's macros of the same names route the
 * library's own calls to the _k variants) */
LDPROF_EXPORT int(ldprof_span_add_str)(struct ldprof_span *s, int when, const char *key,
                                       const char *val, long vlen)
{
    return ldprof_span_add_str_k(s, when, key, -1, val, vlen);
}

LDPROF_EXPORT int(ldprof_span_add_int)(struct ldprof_span *s, int when, const char *key,
                                       int64_t val)
{
    return ldprof_span_add_int_k(s, when, key, -1, val);
}

LDPROF_EXPORT int ldprof_span_set_error(struct ldprof_span *s, const char *etype,
                                        const char *message)
{
    int r;

    if (s == NULL)
        return -1;
    s->w.flags |= LDPROF_SPAN_ERROR;
    r = ldprof_span_add_str(s, LDPROF_FIELD_STOP, "etype", etype ? etype : "Error", -1);
    if (ldprof_span_add_str(s, LDPROF_FIELD_STOP, "message", message ? message : "", -1) < 0)
        r = -1;
    return r;
}

LDPROF_EXPORT void ldprof_span_end(struct ldprof_span *s)
{
    int saved = errno;
    struct ldprof_ctx *c = &ldprof_tls.ctx;

    if (s == NULL)
        return;
    /* Restore the parent as the thread's innermost span if this span is
     * the innermost one here (children ended in order). */
    if (s->prev_valid && c->root != NULL && memcmp(c->cur_id, s->w.trace_id, 16) == 0)
        memcpy(c->cur_id, s->prev_id, 16);
    if (s->is_root)
        ldprof_ctx_leave_root(s);
    ldprof_enter();
    ldprof_span_close(s, 0);
    ldprof_leave();
    errno = saved;
}
