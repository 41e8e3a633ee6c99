/*
 * propagation.c - OSProfiler X-Trace-Info / X-Trace-HMAC codec.
 *
 * See propagation.h for the contracts and
 * /work/shared/reference/osprofiler-compat.md §1, §2 for the format.  What
 * runs per request (verify, sign, uuid helpers) uses only the stack: no
 * malloc, no locks, no stdio, no getenv, no syscalls (except the one
 * getrandom() per thread that seeds the id generator).
 *
 * Layout of this file:
 *   0. choice of implementation: portable C, or x86 (SHA-NI + SSSE3 +
 *      SSE4.1, the same answers, faster), detected once
 *   1. SHA-1 (portable C and x86 SHA-NI) and HMAC-SHA1 with precomputed
 *      inner/outer states; on x86 an HMAC engine that keeps the state in
 *      registers from the first block to the MAC and runs several keys
 *      as interleaved streams
 *   2. keyring construction (osprofiler._utils.split semantics)
 *   3. hex and base64 (Python's lenient urlsafe_b64decode)
 *   4. UTF-8 check and a small JSON parser (Python json.loads rules)
 *   5. verify (with a per-thread cache of accepted pairs) / sign
 *   6. ids: uuid text, short id, per-thread UUID4 generator
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gettid() */
#endif
#include "propagation.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define LDPROF_X86 1
#include <cpuid.h>
#include <immintrin.h>
/* Functions using these instructions; called only when impl_get() says
 * the CPU has them. */
#define X86_TARGET __attribute__((target("sha,ssse3,sse4.1")))
#else
#define LDPROF_X86 0
#endif

/* ---------------------------------------------------- 0. implementation */

#if LDPROF_X86
static int cpu_has_x86_ext(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & bit_SHA) != 0;
}
#else
static int cpu_has_x86_ext(void)
{
    return 0;
}
#endif

/* enum ldprof_impl, or -1 until the first use detects the CPU.  Relaxed
 * atomics: every thread computes the same value, only once each at most. */
static int codec_impl = -1;

static inline enum ldprof_impl impl_get(void)
{
    int v = __atomic_load_n(&codec_impl, __ATOMIC_RELAXED);

    if (__builtin_expect(v < 0, 0)) {
        v = cpu_has_x86_ext() ? LDPROF_IMPL_X86 : LDPROF_IMPL_PORTABLE;
        __atomic_store_n(&codec_impl, v, __ATOMIC_RELAXED);
    }
    return (enum ldprof_impl)v;
}

enum ldprof_impl ldprof_codec_impl(void)
{
    return impl_get();
}

int ldprof_codec_set_impl(enum ldprof_impl impl)
{
    if (impl != LDPROF_IMPL_PORTABLE && (impl != LDPROF_IMPL_X86 || !cpu_has_x86_ext()))
        return -1;
    __atomic_store_n(&codec_impl, (int)impl, __ATOMIC_RELAXED);
    return 0;
}

/* ------------------------------------------------------------------ 1. SHA-1 */

static const uint32_t sha1_iv[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u,
                                    0xc3d2e1f0u};

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

static inline uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

/* FIPS 180-4 SHA-1 block function, 16-word rolling schedule. */
static void sha1_blocks_portable(uint32_t st[5], const uint8_t *p, size_t nblocks)
{
    for (; nblocks; nblocks--, p += 64) {
        uint32_t w[16];
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];

        for (int i = 0; i < 16; i++)
            w[i] = load_be32(p + 4 * i);
        for (int i = 0; i < 80; i++) {
            uint32_t f, k, t;

            if (i >= 16) {
                t = w[(i + 13) & 15] ^ w[(i + 8) & 15] ^ w[(i + 2) & 15] ^ w[i & 15];
                w[i & 15] = rol32(t, 1);
            }
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5a827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ed9eba1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8f1bbcdcu;
            } else {
                f = b ^ c ^ d;
                k = 0xca62c1d6u;
            }
            t = rol32(a, 5) + f + e + k + w[i & 15];
            e = d;
            d = c;
            c = rol32(b, 30);
            b = a;
            a = t;
        }
        st[0] += a;
        st[1] += b;
        st[2] += c;
        st[3] += d;
        st[4] += e;
    }
}

#if LDPROF_X86
/*
 * SHA-1 with the x86 SHA extensions.  M[0..3] hold the message schedule
 * W[4g..4g+3] of four-round group g in rotation; E alternates between the
 * two registers sha1nexte needs.  Each SHANI_GROUP is four rounds.
 */
#define SHANI_SCHED(g)                                                                  \
    M[(g) & 3] = _mm_sha1msg2_epu32(                                                    \
        _mm_xor_si128(_mm_sha1msg1_epu32(M[(g) & 3], M[((g) + 1) & 3]), M[((g) + 2) & 3]), \
        M[((g) + 3) & 3])
#define SHANI_GROUP(g)                                                 \
    do {                                                               \
        if ((g) >= 4)                                                  \
            SHANI_SCHED(g);                                            \
        E[(g) & 1] = _mm_sha1nexte_epu32(E[(g) & 1], M[(g) & 3]);      \
        E[((g) + 1) & 1] = abcd;                                       \
        abcd = _mm_sha1rnds4_epu32(abcd, E[(g) & 1], (g) / 5);         \
    } while (0)

X86_TARGET static void sha1_blocks_shani(uint32_t st[5], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0x1b);
    __m128i e0 = _mm_set_epi32((int)st[4], 0, 0, 0);

    for (; nblocks; nblocks--, p += 64) {
        __m128i M[4], E[2];
        __m128i abcd_save = abcd, e_save = e0;

        for (int i = 0; i < 4; i++)
            M[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
        /* Group 0 adds E to W directly; later groups derive it with nexte. */
        E[0] = _mm_add_epi32(e0, M[0]);
        E[1] = abcd;
        abcd = _mm_sha1rnds4_epu32(abcd, E[0], 0);
        SHANI_GROUP(1);
        SHANI_GROUP(2);
        SHANI_GROUP(3);
        SHANI_GROUP(4);
        SHANI_GROUP(5);
        SHANI_GROUP(6);
        SHANI_GROUP(7);
        SHANI_GROUP(8);
        SHANI_GROUP(9);
        SHANI_GROUP(10);
        SHANI_GROUP(11);
        SHANI_GROUP(12);
        SHANI_GROUP(13);
        SHANI_GROUP(14);
        SHANI_GROUP(15);
        SHANI_GROUP(16);
        SHANI_GROUP(17);
        SHANI_GROUP(18);
        SHANI_GROUP(19);
        /* E[0] holds A as it was before group 19: E_out = rol30(A) + E_in. */
        e0 = _mm_sha1nexte_epu32(E[0], e_save);
        abcd = _mm_add_epi32(abcd, abcd_save);
    }
    _mm_storeu_si128((__m128i *)st, _mm_shuffle_epi32(abcd, 0x1b));
    st[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}
#undef SHANI_GROUP
#undef SHANI_SCHED
#endif

static inline void sha1_blocks(enum ldprof_impl impl, uint32_t st[5], const uint8_t *p,
                               size_t nblocks)
{
#if LDPROF_X86
    if (impl == LDPROF_IMPL_X86) {
        sha1_blocks_shani(st, p, nblocks);
        return;
    }
#endif
    (void)impl;
    sha1_blocks_portable(st, p, nblocks);
}

/*
 * Finish a SHA-1 whose state @st has already absorbed @prefix_len bytes
 * (a multiple of 64) and now absorbs @len more bytes at @msg; the digest
 * replaces nothing, it is written to @out.
 */
static void sha1_finish(enum ldprof_impl impl, uint32_t st[5], uint64_t prefix_len,
                        const uint8_t *msg, size_t len, uint8_t out[20])
{
    uint8_t block[128];
    size_t full = len / 64, rem = len % 64, tail;

    if (full)
        sha1_blocks(impl, st, msg, full);
    memcpy(block, msg + full * 64, rem);
    block[rem] = 0x80;
    tail = rem < 56 ? 64 : 128;
    memset(block + rem + 1, 0, tail - rem - 1 - 8);
    store_be64(block + tail - 8, (prefix_len + len) * 8);
    sha1_blocks(impl, st, block, tail / 64);
    for (int i = 0; i < 5; i++)
        store_be32(out + 4 * i, st[i]);
}

static void hmac_key_setup(enum ldprof_impl impl, struct ldprof_hmac_key *k,
                           const uint8_t *key, size_t len)
{
    uint8_t kb[64] = {0}, pad[64];

    if (len > 64) { /* RFC 2104: long keys are hashed first */
        uint32_t st[5];

        memcpy(st, sha1_iv, sizeof st);
        sha1_finish(impl, st, 0, key, len, kb);
    } else {
        memcpy(kb, key, len);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = kb[i] ^ 0x36;
    memcpy(k->inner, sha1_iv, sizeof k->inner);
    sha1_blocks(impl, k->inner, pad, 1);
    for (int i = 0; i < 64; i++)
        pad[i] = kb[i] ^ 0x5c;
    memcpy(k->outer, sha1_iv, sizeof k->outer);
    sha1_blocks(impl, k->outer, pad, 1);
    k->key_len = len;
    memset(kb, 0, sizeof kb);
    memset(pad, 0, sizeof pad);
    __asm__ __volatile__("" : : "r"(kb), "r"(pad) : "memory"); /* keep the wipes */
}

/*
 * Per-thread memo of one keyed inner state after a message's first
 * 64-byte block.  An X-Trace-Info text's first 64 characters encode
 * '{"base_id": "' and 35 characters of the base id: the same for every
 * header of one trace (the verify of each of its requests, the sign of
 * each outbound call made for it), so the second and later HMACs of a
 * trace on a thread skip one of their 4 SHA-1 blocks.  The entry is valid
 * only for the exact key state and the exact 64 bytes (both compared), so
 * the result is always the one computed from scratch.  Initial-exec TLS,
 * written only here; verify and sign run under the preload's reentrancy
 * guard, so a signal handler never interleaves with an update.
 */
struct hmac_memo {
    uint32_t key_inner[5]; /* the key's precomputed inner state (identity) */
    uint32_t st[5];        /* that state after block[] */
    uint8_t block[64];
    int valid;
};

static __thread struct hmac_memo tls_memo __attribute__((tls_model("initial-exec")));

/* Keep @st, the state after the first block @msg under key @k, in @m. */
static void memo_store(struct hmac_memo *m, const struct ldprof_hmac_key *k, const uint8_t *msg,
                       const uint32_t st[5])
{
    memcpy(m->key_inner, k->inner, sizeof m->key_inner);
    memcpy(m->block, msg, 64);
    memcpy(m->st, st, sizeof m->st);
    m->valid = 1;
}

/* HMAC-SHA1 from the precomputed states: 1 + ceil((len + 9) / 64) blocks. */
static void hmac_run(enum ldprof_impl impl, const struct ldprof_hmac_key *k,
                     const uint8_t *msg, size_t len, uint8_t mac[20])
{
    uint32_t st[5];
    uint8_t inner[20];

    if (len >= 128) { /* at least one block besides the last */
        struct hmac_memo *m = &tls_memo;

        if (m->valid && memcmp(m->key_inner, k->inner, sizeof m->key_inner) == 0 &&
            memcmp(m->block, msg, 64) == 0) {
            memcpy(st, m->st, sizeof st);
        } else {
            memcpy(st, k->inner, sizeof st);
            sha1_blocks(impl, st, msg, 1);
            memo_store(m, k, msg, st);
        }
        sha1_finish(impl, st, 128, msg + 64, len - 64, inner);
    } else {
        memcpy(st, k->inner, sizeof st);
        sha1_finish(impl, st, 64, msg, len, inner);
    }
    memcpy(st, k->outer, sizeof st);
    sha1_finish(impl, st, 64, inner, sizeof inner, mac);
}

#if LDPROF_X86
/*
 * HMAC-SHA1 kept in SHA-NI registers from the first block to the MAC.
 *
 * A SHA-1 block is a chain of 20 dependent sha1rnds4: its cost is their
 * latency, and the CPU can run other chains beside it almost for free
 * (measured on the test VM: two independent blocks cost 1.12 times one,
 * four 1.67 times).
 * So the HMACs of several keys over the same message run as interleaved
 * streams, and nothing between two blocks of one chain goes through
 * memory: the inner digest is the outer block's message as it sits in the
 * registers (W0..W3 = A..D, W4 = E), so the outer block is formed without
 * a store, and verify compares the MAC in the registers.
 *
 * State form: abcd holds A..D in lanes 3..0 (SHA-NI order), e holds E in
 * lane 3 and zeros in lanes 0..2 (the first round group adds e to W0..W3,
 * so the zeros matter).
 */
struct shani_state {
    __m128i abcd, e;
};

X86_TARGET static inline struct shani_state shani_state_load(const uint32_t st[5])
{
    struct shani_state s;

    s.abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0x1b);
    s.e = _mm_set_epi32((int)st[4], 0, 0, 0);
    return s;
}

X86_TARGET static inline void shani_state_store(struct shani_state s, uint32_t st[5])
{
    _mm_storeu_si128((__m128i *)st, _mm_shuffle_epi32(s.abcd, 0x1b));
    st[4] = (uint32_t)_mm_extract_epi32(s.e, 3);
}

/* 64 message bytes -> W0..W15 in the four registers sha1rnds4 takes. */
X86_TARGET static inline void shani_msg_load(const uint8_t *p, __m128i M[4])
{
    const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);

    for (int i = 0; i < 4; i++)
        M[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
}

/*
 * One block for @ns independent states (1..4, a constant after inlining);
 * stream s absorbs the message M[s].  The same round groups as
 * sha1_blocks_shani, with the streams' groups side by side.
 */
#define SHANI_N_SCHED(Ms, g)                                                                    \
    Ms[(g) & 3] = _mm_sha1msg2_epu32(                                                           \
        _mm_xor_si128(_mm_sha1msg1_epu32(Ms[(g) & 3], Ms[((g) + 1) & 3]), Ms[((g) + 2) & 3]), \
        Ms[((g) + 3) & 3])
#define SHANI_N_GROUP(g)                                                                     \
    do {                                                                                     \
        _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)                                 \
        {                                                                                    \
            if ((g) >= 4)                                                                    \
                SHANI_N_SCHED(M[s], g);                                                      \
            E[s][(g) & 1] = _mm_sha1nexte_epu32(E[s][(g) & 1], M[s][(g) & 3]);               \
            E[s][((g) + 1) & 1] = st[s].abcd;                                                \
            st[s].abcd = _mm_sha1rnds4_epu32(st[s].abcd, E[s][(g) & 1], (g) / 5);            \
        }                                                                                    \
    } while (0)

X86_TARGET __attribute__((always_inline)) static inline void
shani_block_n(struct shani_state *st, int ns, __m128i M[][4])
{
    __m128i E[4][2];
    struct shani_state save[4];

    _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)
    {
        save[s] = st[s];
        E[s][0] = _mm_add_epi32(st[s].e, M[s][0]);
        E[s][1] = st[s].abcd;
        st[s].abcd = _mm_sha1rnds4_epu32(st[s].abcd, E[s][0], 0);
    }
    SHANI_N_GROUP(1);
    SHANI_N_GROUP(2);
    SHANI_N_GROUP(3);
    SHANI_N_GROUP(4);
    SHANI_N_GROUP(5);
    SHANI_N_GROUP(6);
    SHANI_N_GROUP(7);
    SHANI_N_GROUP(8);
    SHANI_N_GROUP(9);
    SHANI_N_GROUP(10);
    SHANI_N_GROUP(11);
    SHANI_N_GROUP(12);
    SHANI_N_GROUP(13);
    SHANI_N_GROUP(14);
    SHANI_N_GROUP(15);
    SHANI_N_GROUP(16);
    SHANI_N_GROUP(17);
    SHANI_N_GROUP(18);
    SHANI_N_GROUP(19);
    _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)
    {
        st[s].e = _mm_sha1nexte_epu32(E[s][0], save[s].e);
        st[s].abcd = _mm_add_epi32(st[s].abcd, save[s].abcd);
    }
}
#undef SHANI_N_GROUP
#undef SHANI_N_SCHED

/* The same 64 message bytes into all @ns streams. */
X86_TARGET __attribute__((always_inline)) static inline void
shani_block_same(struct shani_state *st, int ns, const uint8_t *p)
{
    __m128i M[4][4];

    shani_msg_load(p, M[0]);
    _Pragma("GCC unroll 4") for (int s = 1; s < ns; s++)
        for (int i = 0; i < 4; i++)
            M[s][i] = M[0][i];
    shani_block_n(st, ns, M);
}

/*
 * HMAC-SHA1 of @msg/@len under the @ns keys @k[] (1..4, a constant after
 * inlining); out[s] gets key s's MAC as a state (A..E = the MAC's five
 * big-endian words).  @start (ns == 1 only): the key's inner state after
 * the first 64 message bytes (a memo hit), else NULL.  When len >= 128
 * and @start is NULL, after0[s] gets that state for the memo.
 */
struct verify_pre;
static void verify_predecode(struct verify_pre *pre);

X86_TARGET __attribute__((always_inline)) static inline void
hmac_x86_n(int ns, const struct ldprof_hmac_key *const *k, const uint8_t *msg, size_t len,
           const uint32_t *start, struct shani_state *out, struct shani_state *after0,
           struct verify_pre *pre)
{
    struct shani_state st[4];
    __m128i M[4][4];
    uint8_t tail[128] __attribute__((aligned(16)));
    size_t off = 0, rem, nt;

    _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)
        after0[s] = st[s] = shani_state_load(start ? start : k[s]->inner);
    if (start) {
        off = 64;
    } else if (len >= 128) {
        shani_block_same(st, ns, msg);
        _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)
            after0[s] = st[s];
        off = 64;
    }
    if (len - off >= 64) {
        shani_block_same(st, ns, msg + off);
        off += 64;
    }
    /* Verify's decoding, placed here so that the CPU runs it while the
     * block above is still going through its round chain. */
    if (pre)
        verify_predecode(pre);
    for (; len - off >= 64; off += 64)
        shani_block_same(st, ns, msg + off);
    /* Padding: 0x80, zeros, the bit length (the key block counts). */
    rem = len - off;
    nt = rem < 56 ? 1 : 2;
    for (int i = 0; i < 8; i++)
        _mm_store_si128((__m128i *)tail + i, _mm_setzero_si128());
    memcpy(tail, msg + off, rem);
    tail[rem] = 0x80;
    store_be64(tail + nt * 64 - 8, ((uint64_t)len + 64) * 8);
    shani_block_same(st, ns, tail);
    if (nt == 2)
        shani_block_same(st, ns, tail + 64);
    /* Outer: W0..W3 = A..D, W4 = E, W5 = 0x80 pad, W15 = (64 + 20) * 8 bits. */
    _Pragma("GCC unroll 4") for (int s = 0; s < ns; s++)
    {
        M[s][0] = st[s].abcd;
        M[s][1] = _mm_or_si128(st[s].e, _mm_set_epi32(0, (int)0x80000000u, 0, 0));
        M[s][2] = _mm_setzero_si128();
        M[s][3] = _mm_set_epi32(0, 0, 0, (64 + 20) * 8);
        out[s] = shani_state_load(k[s]->outer);
    }
    shani_block_n(out, ns, M);
}

/* A MAC state -> the 20 MAC bytes, as two vectors: bytes 0..15, and
 * bytes 16..19 in lanes 0..3 (the rest zero). */
X86_TARGET static inline void shani_mac_bytes(struct shani_state s, __m128i *b0, __m128i *b1)
{
    const __m128i bswap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);

    *b0 = _mm_shuffle_epi8(s.abcd, bswap);
    *b1 = _mm_shuffle_epi8(s.e, _mm_setr_epi8(15, 14, 13, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                              -1, -1, -1, -1));
}

X86_TARGET static void shani_mac_store(struct shani_state s, uint8_t mac[20])
{
    __m128i b0, b1;
    uint32_t last;

    shani_mac_bytes(s, &b0, &b1);
    _mm_storeu_si128((__m128i *)mac, b0);
    last = (uint32_t)_mm_cvtsi128_si32(b1);
    memcpy(mac + 16, &last, 4);
}

/* The MAC state equals the 20 bytes @want (constant time). */
X86_TARGET static inline int shani_mac_equal(struct shani_state s, __m128i want0, __m128i want1)
{
    __m128i b0, b1;

    shani_mac_bytes(s, &b0, &b1);
    __m128i diff = _mm_or_si128(_mm_xor_si128(b0, want0), _mm_xor_si128(b1, want1));
    return _mm_testz_si128(diff, diff);
}

/* Memo lookup for one key (see struct hmac_memo): the state to start
 * from, or NULL. */
X86_TARGET static inline const uint32_t *memo_find_x86(const struct hmac_memo *m,
                                                        const struct ldprof_hmac_key *k,
                                                        const uint8_t *msg)
{
    __m128i d = _mm_xor_si128(_mm_loadu_si128((const __m128i *)m->key_inner),
                              _mm_loadu_si128((const __m128i *)k->inner));

    if (!m->valid)
        return NULL;
    d = _mm_or_si128(d, _mm_set_epi32((int)(m->key_inner[4] ^ k->inner[4]), 0, 0, 0));
    for (int i = 0; i < 4; i++)
        d = _mm_or_si128(d, _mm_xor_si128(_mm_loadu_si128((const __m128i *)(m->block + 16 * i)),
                                          _mm_loadu_si128((const __m128i *)(msg + 16 * i))));
    return _mm_testz_si128(d, d) ? m->st : NULL;
}

/* One key, with the memo (read and written, as hmac_run). */
X86_TARGET static struct shani_state hmac_x86_memo(const struct ldprof_hmac_key *k,
                                                   const uint8_t *msg, size_t len,
                                                   struct verify_pre *pre)
{
    struct hmac_memo *m = &tls_memo;
    const uint32_t *start = len >= 128 ? memo_find_x86(m, k, msg) : NULL;
    struct shani_state out, after0;
    uint32_t st[5];

    hmac_x86_n(1, &k, msg, len, start, &out, &after0, pre);
    if (len >= 128 && !start) {
        shani_state_store(after0, st);
        memo_store(m, k, msg, st);
    }
    return out;
}

/*
 * The keys @idx[0..NS-1] of @kr (ascending key order) against the MAC
 * @want0/@want1: the index of the first that matches, or -1.  The memo is
 * not read (a group's keys differ from the memo's, usually); it gets the
 * matching key's state.
 */
#define HMAC_X86_GROUP(NS)                                                                    \
    X86_TARGET __attribute__((noinline)) static int hmac_x86_group##NS(                      \
        const struct ldprof_keyring *kr, const uint8_t *idx, const uint8_t *msg, size_t len, \
        __m128i want0, __m128i want1)                                                       \
    {                                                                                        \
        const struct ldprof_hmac_key *k[NS];                                                \
        struct shani_state out[NS], after0[NS];                                              \
        uint32_t st[5];                                                                      \
                                                                                             \
        for (int s = 0; s < NS; s++)                                                         \
            k[s] = &kr->keys[idx[s]];                                                        \
        hmac_x86_n(NS, k, msg, len, NULL, out, after0, NULL);                                \
        for (int s = 0; s < NS; s++) {                                                       \
            if (shani_mac_equal(out[s], want0, want1)) {                                     \
                if (len >= 128) {                                                            \
                    shani_state_store(after0[s], st);                                        \
                    memo_store(&tls_memo, k[s], msg, st);                                    \
                }                                                                            \
                return idx[s];                                                               \
            }                                                                                \
        }                                                                                    \
        return -1;                                                                           \
    }
HMAC_X86_GROUP(1)
HMAC_X86_GROUP(2)
HMAC_X86_GROUP(3)
HMAC_X86_GROUP(4)
#undef HMAC_X86_GROUP

/*
 * The key verify tries @t-th (0, 1, ...) after key @first: the others in
 * key order, 0..first-1 then first+1...  Both searches (x86 and portable)
 * take their order from here.
 */
static inline int verify_other(int first, int t)
{
    return t < first ? t : t + 1;
}

/*
 * Verify's key search on x86: key @first alone (the thread's or the
 * process's hint, see verify_hint_get(): the key that matched last,
 * usually the one most requests are signed with; key 0 without a hint),
 * then the others in key order, four at a time.  Returns the first of
 * the others that matches in key order, or @first when it matched (the
 * caller maps that to the first key with the same states:
 * verify_first_same()), or -1; *@ntried gets the number of keys whose
 * HMAC it computed.
 */
X86_TARGET static int verify_keys_x86(const struct ldprof_keyring *kr, int first,
                                      const uint8_t *msg, size_t len, const uint8_t want[20],
                                      struct verify_pre *pre, int *ntried)
{
    uint32_t last;
    uint8_t rest[LDPROF_MAX_KEYS];
    int nrest = kr->nkeys - 1;
    __m128i want0 = _mm_loadu_si128((const __m128i *)want), want1;

    memcpy(&last, want + 16, 4);
    want1 = _mm_cvtsi32_si128((int)last);
    *ntried = 1;
    if (shani_mac_equal(hmac_x86_memo(&kr->keys[first], msg, len, pre), want0, want1))
        return first;
    for (int t = 0; t < nrest; t++)
        rest[t] = (uint8_t)verify_other(first, t);
    for (int i = 0; i < nrest;) {
        int left = nrest - i, idx;

        if (left >= 4)
            idx = hmac_x86_group4(kr, rest + i, msg, len, want0, want1), i += 4;
        else if (left == 3)
            idx = hmac_x86_group3(kr, rest + i, msg, len, want0, want1), i += 3;
        else if (left == 2)
            idx = hmac_x86_group2(kr, rest + i, msg, len, want0, want1), i += 2;
        else
            idx = hmac_x86_group1(kr, rest + i, msg, len, want0, want1), i += 1;
        *ntried = 1 + i;
        if (idx >= 0)
            return idx;
    }
    return -1;
}
#endif

int ldprof_hmac_sha1(const struct ldprof_keyring *kr, int key_index, const void *msg, size_t len,
                     uint8_t mac[20])
{
    if (!kr || key_index < 0 || key_index >= kr->nkeys)
        return -1;
#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86) {
        shani_mac_store(hmac_x86_memo(&kr->keys[key_index], msg, len, NULL), mac);
        return 0;
    }
#endif
    hmac_run(impl_get(), &kr->keys[key_index], msg, len, mac);
    return 0;
}

/* ------------------------------------------------------------- 2. keyring */

/*
 * Length of the Python str.isspace() character that starts at @p (UTF-8),
 * or 0.  The set: \t \n \v \f \r, U+001C..U+001F, space, U+0085, U+00A0,
 * U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
 */
static size_t py_space_len(const uint8_t *p, size_t n)
{
    if (n >= 1 && ((p[0] >= 0x09 && p[0] <= 0x0d) || (p[0] >= 0x1c && p[0] <= 0x20)))
        return 1;
    if (n >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0))
        return 2;
    if (n >= 3) {
        if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80)
            return 3;
        if (p[0] == 0xe2 && p[1] == 0x80 &&
            (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf) && p[2] >= 0x80)
            return 3;
        if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f)
            return 3;
        if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80)
            return 3;
    }
    return 0;
}

/* Same, for a white-space character that ends just before @end. */
static size_t py_space_len_back(const uint8_t *start, const uint8_t *end)
{
    size_t n = (size_t)(end - start);

    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (py_space_len(end - k, k) == k)
            return k;
    return 0;
}

int ldprof_keyring_init(struct ldprof_keyring *kr, const char *spec)
{
    static uint64_t generations;

    if (!kr)
        return -1;
    memset(kr, 0, sizeof *kr);
    kr->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    if (!spec)
        return 0;

    const uint8_t *p = (const uint8_t *)spec, *end = p + strlen(spec);

    while (p <= end) {
        const uint8_t *comma = memchr(p, ',', (size_t)(end - p));
        const uint8_t *s = p, *e = comma ? comma : end;
        size_t k;

        while (s < e && (k = py_space_len(s, (size_t)(e - s))) > 0)
            s += k;
        while (e > s && (k = py_space_len_back(s, e)) > 0)
            e -= k;
        if (e > s) {
            if (kr->nkeys < LDPROF_MAX_KEYS)
                hmac_key_setup(impl_get(), &kr->keys[kr->nkeys++], s, (size_t)(e - s));
            else
                kr->ignored++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return kr->ignored;
}

/* ------------------------------------------------------- 3. hex and base64 */

static const char hex_lower[] = "0123456789abcdef";

/*
 * Hex digit tables: HEX_OK | value for a digit, 0 for anything else, so
 * that AND-ing the entries of a whole string tells whether all were
 * digits.  hex_any: either case (UUID text, \uXXXX); hex_low: lower case
 * only (X-Trace-HMAC, which must equal hexdigest()).
 */
#define HEX_OK 0x10
#define HEX_DIGITS_LOW                                                                     \
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14, ['5'] = 0x15,   \
    ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19, ['a'] = 0x1a, ['b'] = 0x1b,   \
    ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, ['f'] = 0x1f
static const uint8_t hex_low[256] = {HEX_DIGITS_LOW};
static const uint8_t hex_any[256] = {
    HEX_DIGITS_LOW, ['A'] = 0x1a, ['B'] = 0x1b, ['C'] = 0x1c, ['D'] = 0x1d, ['E'] = 0x1e,
    ['F'] = 0x1f,
};
#undef HEX_DIGITS_LOW

static inline int hex_value(uint8_t c)
{
    return (hex_any[c] & HEX_OK) ? hex_any[c] & 15 : -1;
}

#if LDPROF_X86
/* 16 bytes -> their 32 hex digits, as two vectors (bytes 0-7, 8-15). */
X86_TARGET static inline void hex16v_x86(__m128i v, __m128i *first, __m128i *second)
{
    const __m128i lut = _mm_setr_epi8('0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b',
                                      'c', 'd', 'e', 'f');
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(v, 4), low4));
    __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(v, low4));

    *first = _mm_unpacklo_epi8(hi, lo);
    *second = _mm_unpackhi_epi8(hi, lo);
}

X86_TARGET static inline void hex16_x86(const uint8_t *in, __m128i *first, __m128i *second)
{
    hex16v_x86(_mm_loadu_si128((const __m128i *)in), first, second);
}

/* 16 hex digit characters -> 16 nibble values; *bad gets 0xff lanes for
 * non-digits (upper case counts as a digit unless @lower_only). */
X86_TARGET static inline __m128i hex_nibbles_x86(__m128i c, int lower_only, __m128i *bad)
{
    __m128i lc = lower_only ? c : _mm_or_si128(c, _mm_set1_epi8(0x20));
    __m128i dig = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
    __m128i alp = _mm_and_si128(_mm_cmpgt_epi8(lc, _mm_set1_epi8('a' - 1)),
                                _mm_cmplt_epi8(lc, _mm_set1_epi8('f' + 1)));

    *bad = _mm_or_si128(*bad, _mm_cmpeq_epi8(_mm_or_si128(dig, alp), _mm_setzero_si128()));
    return _mm_blendv_epi8(_mm_sub_epi8(lc, _mm_set1_epi8('a' - 10)),
                           _mm_sub_epi8(c, _mm_set1_epi8('0')), dig);
}

/* Two vectors of 16 nibbles (pairs high, low) -> 16 bytes. */
X86_TARGET static inline __m128i hex_pack_x86(__m128i n0, __m128i n1)
{
    const __m128i weights = _mm_set1_epi16(0x0110); /* high nibble * 16 + low nibble */

    return _mm_packus_epi16(_mm_maddubs_epi16(n0, weights), _mm_maddubs_epi16(n1, weights));
}

X86_TARGET static void mac_hex_x86(const uint8_t mac[20], char out[40])
{
    __m128i a, b;

    hex16_x86(mac + 4, &a, &b); /* bytes 4..19 -> characters 8..39 */
    _mm_storeu_si128((__m128i *)(out + 8), a);
    _mm_storeu_si128((__m128i *)(out + 24), b);
    hex16_x86(mac, &a, &b); /* bytes 0..15 -> characters 0..31 (overlap: same values) */
    _mm_storeu_si128((__m128i *)out, a);
}

/* A MAC state (hmac_x86_n) -> hexdigest(), 40 characters, from registers. */
X86_TARGET static void mac_state_hex_x86(struct shani_state s, char out[40])
{
    __m128i b0, b1, a, b;

    shani_mac_bytes(s, &b0, &b1);
    hex16v_x86(b0, &a, &b); /* bytes 0..15 -> characters 0..31 */
    _mm_storeu_si128((__m128i *)out, a);
    _mm_storeu_si128((__m128i *)(out + 16), b);
    hex16v_x86(b1, &a, &b); /* bytes 16..19 -> characters 32..39 */
    _mm_storel_epi64((__m128i *)(out + 32), a);
}

X86_TARGET static int hmac_hex_decode_x86(const uint8_t *s, uint8_t out[20])
{
    __m128i bad = _mm_setzero_si128();
    __m128i n0 = hex_nibbles_x86(_mm_loadu_si128((const __m128i *)s), 1, &bad);
    __m128i n1 = hex_nibbles_x86(_mm_loadu_si128((const __m128i *)(s + 16)), 1, &bad);
    __m128i n2 = hex_nibbles_x86(_mm_loadu_si128((const __m128i *)(s + 24)), 1, &bad);

    _mm_storeu_si128((__m128i *)out, hex_pack_x86(n0, n1));       /* bytes 0..15 */
    _mm_storel_epi64((__m128i *)(out + 12), hex_pack_x86(n2, n2)); /* bytes 12..19 */
    return _mm_movemask_epi8(bad) ? -1 : 0;
}
#endif

/* HMAC-SHA1 -> hexdigest(), 40 lower-case characters (no NUL). */
static void mac_hex(const uint8_t mac[20], char out[40])
{
#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86) {
        mac_hex_x86(mac, out);
        return;
    }
#endif
    for (int i = 0; i < 20; i++) {
        out[2 * i] = hex_lower[mac[i] >> 4];
        out[2 * i + 1] = hex_lower[mac[i] & 15];
    }
}

/* 40 lower-case hex digits -> 20 bytes; anything else (upper case
 * included) is -1, because it can never equal hexdigest(). */
static int hmac_hex_decode(enum ldprof_impl impl, const uint8_t *s, uint8_t out[20])
{
    unsigned ok = HEX_OK;

#if LDPROF_X86
    if (impl == LDPROF_IMPL_X86)
        return hmac_hex_decode_x86(s, out);
#endif
    (void)impl;
    for (int i = 0; i < 20; i++) {
        unsigned hi = hex_low[s[2 * i]], lo = hex_low[s[2 * i + 1]];

        ok &= hi & lo;
        out[i] = (uint8_t)(hi << 4 | (lo & 15));
    }
    return ok ? 0 : -1;
}

/* Constant-time equality of two 20-byte MACs: no branch on the data; the
 * barrier keeps the compiler from inventing an early exit. */
static int mac_equal(const uint8_t a[20], const uint8_t b[20])
{
    uint64_t a0, a1, b0, b1;
    uint32_t a2, b2;

    memcpy(&a0, a, 8);
    memcpy(&a1, a + 8, 8);
    memcpy(&a2, a + 16, 4);
    memcpy(&b0, b, 8);
    memcpy(&b1, b + 8, 8);
    memcpy(&b2, b + 16, 4);

    uint64_t diff = (a0 ^ b0) | (a1 ^ b1) | (a2 ^ b2);

    __asm__("" : "+r"(diff));
    return diff == 0;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#if LDPROF_X86
/* 12 bytes (lanes 0..11 of @v, as loaded) -> their 16 URL-safe base64
 * characters (W. Muła and D. Lemire's SSSE3 method, with the URL-safe
 * alphabet). */
X86_TARGET static inline __m128i b64url_step_x86(__m128i v)
{
    /* bytes s0 s1 s2 -> 32-bit lane s1 s0 s2 s1, then cut 4 x 6 bits */
    v = _mm_shuffle_epi8(v, _mm_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1));
    __m128i t0 = _mm_mulhi_epu16(_mm_and_si128(v, _mm_set1_epi32(0x0fc0fc00)),
                                 _mm_set1_epi32(0x04000040));
    __m128i t1 = _mm_mullo_epi16(_mm_and_si128(v, _mm_set1_epi32(0x003f03f0)),
                                 _mm_set1_epi32(0x01000010));
    __m128i idx = _mm_or_si128(t0, t1);
    /* index -> class 13 (A-Z), 0 (a-z), 1..10 (0-9), 11 ('-'), 12 ('_') */
    __m128i cls = _mm_subs_epu8(idx, _mm_set1_epi8(51));
    __m128i less = _mm_cmpgt_epi8(_mm_set1_epi8(26), idx);
    cls = _mm_or_si128(cls, _mm_and_si128(less, _mm_set1_epi8(13)));
    const __m128i shift = _mm_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                        '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                                        '0' - 52, '-' - 62, '_' - 63, 'A', 0, 0);
    return _mm_add_epi8(_mm_shuffle_epi8(shift, cls), idx);
}

/*
 * URL-safe base64 with padding, 12 input bytes per step.  The steps load
 * 16 bytes: @in must have 16 readable zero bytes after its @n, so that
 * the last step, over the 1..12 bytes left, encodes the missing bytes of
 * a partial group as zeros (what base64 asks for), and only its whole
 * characters are stored.  Returns the characters written, 4 * ceil(@n/3).
 */
X86_TARGET static size_t b64url_encode_x86(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0, o = 0;

    for (; i + 12 <= n; i += 12, o += 16)
        _mm_storeu_si128((__m128i *)(out + o),
                         b64url_step_x86(_mm_loadu_si128((const __m128i *)(in + i))));
    if (i < n) {
        uint8_t chars[16] __attribute__((aligned(16)));
        size_t c = (n - i + 2) / 3 * 4; /* 4, 8, 12 or 16 */

        _mm_store_si128((__m128i *)chars,
                        b64url_step_x86(_mm_loadu_si128((const __m128i *)(in + i))));
        for (size_t k = 0; k < c; k += 4)
            memcpy(out + o + k, chars + k, 4);
        o += c;
        if ((n - i) % 3 != 0) {
            out[o - 1] = '=';
            if ((n - i) % 3 == 1)
                out[o - 2] = '=';
        }
    }
    return o;
}
#endif

/* URL-safe base64 with '=' padding (base64.urlsafe_b64encode).  @in must
 * have 16 readable zero bytes after its @n (b64url_encode_x86). */
static size_t b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;

#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86)
        return b64url_encode_x86(in, n, out);
#endif
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

/* Both alphabets: '+'/'-' are 62, '/'/'_' are 63 (urlsafe_b64decode maps
 * '-' and '_' and leaves '+' and '/' valid).  An entry is V(value), with
 * the 0x40 bit set; 0 means "not in the alphabet". */
#define V(n) (0x40 | (n))
static const uint8_t b64_value[256] = {
    ['A'] = V(0), ['B'] = V(1), ['C'] = V(2), ['D'] = V(3), ['E'] = V(4), ['F'] = V(5),
    ['G'] = V(6), ['H'] = V(7), ['I'] = V(8), ['J'] = V(9), ['K'] = V(10), ['L'] = V(11),
    ['M'] = V(12), ['N'] = V(13), ['O'] = V(14), ['P'] = V(15), ['Q'] = V(16), ['R'] = V(17),
    ['S'] = V(18), ['T'] = V(19), ['U'] = V(20), ['V'] = V(21), ['W'] = V(22), ['X'] = V(23),
    ['Y'] = V(24), ['Z'] = V(25), ['a'] = V(26), ['b'] = V(27), ['c'] = V(28), ['d'] = V(29),
    ['e'] = V(30), ['f'] = V(31), ['g'] = V(32), ['h'] = V(33), ['i'] = V(34), ['j'] = V(35),
    ['k'] = V(36), ['l'] = V(37), ['m'] = V(38), ['n'] = V(39), ['o'] = V(40), ['p'] = V(41),
    ['q'] = V(42), ['r'] = V(43), ['s'] = V(44), ['t'] = V(45), ['u'] = V(46), ['v'] = V(47),
    ['w'] = V(48), ['x'] = V(49), ['y'] = V(50), ['z'] = V(51), ['0'] = V(52), ['1'] = V(53),
    ['2'] = V(54), ['3'] = V(55), ['4'] = V(56), ['5'] = V(57), ['6'] = V(58), ['7'] = V(59),
    ['8'] = V(60), ['9'] = V(61), ['+'] = V(62), ['/'] = V(63), ['-'] = V(62), ['_'] = V(63),
};
#undef V

#if LDPROF_X86
/*
 * 16 characters @c -> their 12 bytes in lanes 0..11 of *@v; 0 when one of
 * them is in neither alphabet (then *@v is not set).
 */
X86_TARGET static inline int b64_step_x86(__m128i c, __m128i *v)
{
    /* Membership by nibbles: bit h-2 of hi_class[h] for high nibble h in
     * 2..7, and lo_ok[l] has the bits of the high nibbles with which l
     * makes an alphabet character: 2: + - /  3: 0-9  4: A-O  5: P-Z _
     * 6: a-o  7: p-z.  Bytes >= 0x80 have no class. */
    const __m128i lo_ok = _mm_setr_epi8(0x2a, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e, 0x3e,
                                        0x3e, 0x3c, 0x15, 0x14, 0x15, 0x14, 0x1d);
    const __m128i hi_class = _mm_setr_epi8(0, 0, 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0, 0, 0, 0, 0,
                                           0, 0, 0);
    /* character + offset = 6-bit value: by high nibble, except '_' and
     * the high nibble 2 ('+' 0x2b, '-' 0x2d, '/' 0x2f: by low nibble) */
    const __m128i off_hi = _mm_setr_epi8(0, 0, 0, 52 - '0', -'A', -'A', 26 - 'a', 26 - 'a', 0, 0,
                                         0, 0, 0, 0, 0, 0);
    const __m128i off_lo2 = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 62 - '+', 0, 62 - '-', 0,
                                          63 - '/');
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(c, 4), low4), lo = _mm_and_si128(c, low4);
    __m128i ok = _mm_and_si128(_mm_shuffle_epi8(lo_ok, lo), _mm_shuffle_epi8(hi_class, hi));

    if (_mm_movemask_epi8(_mm_cmpeq_epi8(ok, _mm_setzero_si128())) != 0)
        return 0;
    __m128i off = _mm_blendv_epi8(_mm_shuffle_epi8(off_hi, hi), _mm_shuffle_epi8(off_lo2, lo),
                                  _mm_cmpeq_epi8(hi, _mm_set1_epi8(2)));
    off = _mm_blendv_epi8(off, _mm_set1_epi8(63 - '_'), _mm_cmpeq_epi8(c, _mm_set1_epi8('_')));
    __m128i x = _mm_add_epi8(c, off);
    /* 4 x 6 bits -> 24 bits per 32-bit lane, then the 3 bytes of each lane */
    x = _mm_maddubs_epi16(x, _mm_set1_epi32(0x01400140));
    x = _mm_madd_epi16(x, _mm_set1_epi32(0x00011000));
    *v = _mm_shuffle_epi8(x, _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1,
                                           -1));
    return 1;
}

/* Store the 12 bytes of a step. */
X86_TARGET static inline void b64_store12_x86(uint8_t *out, __m128i v)
{
    uint32_t tail = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(v, 8));

    _mm_storel_epi64((__m128i *)out, v);
    memcpy(out + 8, &tail, 4);
}

/*
 * Decode 16 characters per step while every one of them is in one of the
 * two alphabets (no '=', nothing to skip): each step is then exactly four
 * complete quads, so the scalar decoder can take over at any step with the
 * same state.  Returns the bytes written; *used gets the characters used.
 *
 * The end, when fewer than 16 characters are left after whole steps and
 * the text is whole quads (@n a multiple of 4, at least 16): its last 16
 * characters are decoded as one more step (overlapping characters already
 * decoded, which give the same bytes again) when they are all alphabet
 * characters, or all but a final '=' after an alphabet character.  The
 * scalar decoder would decode the same quads and, for "xyz=", stop at
 * that complete padding with 2 bytes of the last quad (the '=' counts as
 * a zero digit here, and only the third byte depends on it).  Either way
 * all @n characters are used, and the scalar decoder, left with none,
 * finds the state complete.
 */
X86_TARGET static size_t b64_decode_x86(const uint8_t *in, size_t n, uint8_t *out, size_t *used)
{
    size_t i = 0, o = 0;
    __m128i v;

    for (; i + 16 <= n; i += 16, o += 12) {
        if (!b64_step_x86(_mm_loadu_si128((const __m128i *)(in + i)), &v))
            break;
        b64_store12_x86(out + o, v);
    }
    if (i < n && i + 16 > n && n >= 16 && n % 4 == 0) {
        __m128i c = _mm_loadu_si128((const __m128i *)(in + n - 16));
        int pad = in[n - 1] == '=' && in[n - 2] != '=';

        if (pad) /* '=' -> 'A' (digit 0) in the last lane */
            c = _mm_insert_epi8(c, 'A', 15);
        if (b64_step_x86(c, &v)) {
            o = (n - 16) / 4 * 3;
            b64_store12_x86(out + o, v);
            o += pad ? 11 : 12;
            i = n;
        }
    }
    *used = i;
    return o;
}
#endif

/*
 * base64.urlsafe_b64decode(s) for an ASCII @in, i.e. binascii.a2b_base64 in
 * its default non-strict mode (CPython 3.11), after mapping '-' -> '+' and
 * '_' -> '/':
 *  - characters outside the alphabet (and '=' seen with fewer than two
 *    characters of the current quad) are skipped;
 *  - '=' after two or three characters of a quad counts towards the pad;
 *    once the pad completes the quad, decoding stops and the rest of the
 *    input is ignored; an alphabet character resets the pad count;
 *  - leftover bits of an incomplete final quad are discarded;
 *  - ending inside a quad is an error ("Incorrect padding", or "1 more than
 *    a multiple of 4").
 * @out needs room for 3 * n / 4 bytes.  Returns the decoded length,
 * or -1.
 */
static long b64_decode_py(enum ldprof_impl impl, const uint8_t *in, size_t n, uint8_t *out)
{
    unsigned quad = 0, pads = 0;
    uint32_t left = 0;
    uint8_t *o = out;
    size_t i = 0;

#if LDPROF_X86
    if (impl == LDPROF_IMPL_X86)
        o += b64_decode_x86(in, n, out, &i);
#endif
    (void)impl;
    /* Whole quads of alphabet characters.  Like the vector loop, this
     * leaves the state exactly as the general loop would (quad 0, no pad
     * pending). */
    for (; i + 4 <= n; i += 4) {
        unsigned a = b64_value[in[i]], b = b64_value[in[i + 1]], c = b64_value[in[i + 2]],
                 d = b64_value[in[i + 3]];
        if (!(a & b & c & d & 0x40))
            break;
        uint32_t v = (a & 63) << 18 | (b & 63) << 12 | (c & 63) << 6 | (d & 63);
        o[0] = (uint8_t)(v >> 16);
        o[1] = (uint8_t)(v >> 8);
        o[2] = (uint8_t)v;
        o += 3;
    }
    for (; i < n; i++) {
        uint8_t ch = in[i];
        unsigned v;

        if (ch == '=') {
            if (quad >= 2 && quad + ++pads >= 4)
                return o - out;
            continue;
        }
        if (!((v = b64_value[ch]) & 0x40))
            continue;
        v &= 63;
        pads = 0;
        switch (quad) {
        case 0:
            left = v;
            quad = 1;
            break;
        case 1:
            *o++ = (uint8_t)(left << 2 | v >> 4);
            left = v & 0x0f;
            quad = 2;
            break;
        case 2:
            *o++ = (uint8_t)(left << 4 | v >> 2);
            left = v & 0x03;
            quad = 3;
            break;
        default:
            *o++ = (uint8_t)(left << 6 | v);
            quad = 0;
            break;
        }
    }
    return quad == 0 ? o - out : -1;
}

/* ------------------------------------------------------------ 4. UTF-8, JSON */

/* bytes.decode("utf-8") in strict mode: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. */
static int all_ascii(const uint8_t *p, size_t n)
{
    uint64_t acc = 0, w;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= p[i];
    return !(acc & 0x8080808080808080ull);
}

static int utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    if (all_ascii(p, n)) /* the usual case: ids and member names */
        return 1;
    while (i < n) {
        uint8_t c = p[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the 2nd byte */

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= k || p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

#if LDPROF_X86
/* all_ascii() 16 bytes at a time; a last partial block as the 16 bytes
 * that end the text (they overlap bytes already seen). */
X86_TARGET static int all_ascii_x86(const uint8_t *p, size_t n)
{
    __m128i acc = _mm_setzero_si128();
    size_t i = 0;

    if (n < 16)
        return all_ascii(p, n);
    for (; i + 16 <= n; i += 16)
        acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)(p + i)));
    if (i < n)
        acc = _mm_or_si128(acc, _mm_loadu_si128((const __m128i *)(p + n - 16)));
    return _mm_movemask_epi8(acc) == 0;
}
#endif

static inline int info_ascii(enum ldprof_impl impl, const uint8_t *p, size_t n)
{
#if LDPROF_X86
    if (impl == LDPROF_IMPL_X86)
        return all_ascii_x86(p, n);
#endif
    (void)impl;
    return all_ascii(p, n);
}

struct json_cur {
    const uint8_t *p, *end;
};

/* A decoded JSON string, kept only when it is short enough to matter (a
 * member name we know, or a UUID). */
#define JSON_STR_CAP 40
struct json_str {
    size_t len; /* decoded UTF-8 bytes; JSON_STR_NOMATCH when it did not fit
                 * or contains a lone surrogate: then it equals nothing we
                 * compare with, but it is not empty either */
    char buf[JSON_STR_CAP];
};
#define JSON_STR_NOMATCH ((size_t)-1)

enum json_class { JSON_FALSY, JSON_TRUTHY, JSON_STRING };

#define JSON_MAX_DEPTH 64

static inline void json_ws(struct json_cur *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int json_hex4(const uint8_t *p, unsigned *cp)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *cp = v;
    return 0;
}

static void json_str_put(struct json_str *s, const uint8_t *b, size_t n)
{
    if (!s || s->len == JSON_STR_NOMATCH)
        return;
    if (s->len + n > JSON_STR_CAP) {
        s->len = JSON_STR_NOMATCH;
        return;
    }
    memcpy(s->buf + s->len, b, n);
    s->len += n;
}

/*
 * A JSON string at j->p (which is '"'), as Python's scanner reads it (the
 * input is valid UTF-8 already): control characters are errors (strict
 * mode), escapes are the JSON ones, \uXXXX takes exactly four hex digits
 * of either case, a high surrogate followed by an escaped low surrogate
 * joins them, a lone surrogate is kept (Python keeps it in the str).
 * Decodes into @s when not NULL.  Returns 0 or -1.
 */
static int json_string(struct json_cur *j, struct json_str *s)
{
    const uint8_t *p = j->p + 1, *end = j->end;

    if (s)
        s->len = 0;
    for (;;) {
        const uint8_t *run = p;

        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20)
            p++;
        json_str_put(s, run, (size_t)(p - run));
        if (p == end || *p < 0x20)
            return -1;
        if (*p == '"')
            break;
        /* backslash */
        if (end - p < 2)
            return -1;
        uint8_t e = p[1], ch;
        p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            ch = e;
            break;
        case 'b':
            ch = '\b';
            break;
        case 'f':
            ch = '\f';
            break;
        case 'n':
            ch = '\n';
            break;
        case 'r':
            ch = '\r';
            break;
        case 't':
            ch = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            uint8_t u[4];

            if (end - p < 4 || json_hex4(p, &cp) < 0)
                return -1;
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                if (json_hex4(p + 2, &lo) < 0)
                    return -1;
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff) {
                if (s)
                    s->len = JSON_STR_NOMATCH;
            } else if (cp < 0x80) {
                u[0] = (uint8_t)cp;
                json_str_put(s, u, 1);
            } else if (cp < 0x800) {
                u[0] = (uint8_t)(0xc0 | cp >> 6);
                u[1] = (uint8_t)(0x80 | (cp & 0x3f));
                json_str_put(s, u, 2);
            } else if (cp < 0x10000) {
                u[0] = (uint8_t)(0xe0 | cp >> 12);
                u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (uint8_t)(0x80 | (cp & 0x3f));
                json_str_put(s, u, 3);
            } else {
                u[0] = (uint8_t)(0xf0 | cp >> 18);
                u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
                u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                u[3] = (uint8_t)(0x80 | (cp & 0x3f));
                json_str_put(s, u, 4);
            }
            continue;
        }
        default:
            return -1;
        }
        json_str_put(s, &ch, 1);
    }
    j->p = p + 1;
    return 0;
}

static int json_literal(struct json_cur *j, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

static inline int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?  Sets *zero when every
 * mantissa digit is 0 (Python: int 0 or float 0.0, both false). */
static int json_number(struct json_cur *j, int *zero)
{
    const uint8_t *p = j->p, *end = j->end;
    int nz = 0;

    if (p < end && *p == '-')
        p++;
    if (p == end || !is_digit(*p))
        return -1;
    if (*p == '0') {
        p++;
    } else {
        while (p < end && is_digit(*p))
            nz = 1, p++;
    }
    if (end - p >= 2 && *p == '.' && is_digit(p[1])) {
        for (p++; p < end && is_digit(*p); p++)
            nz |= *p != '0';
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const uint8_t *q = p + 1;

        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q < end && is_digit(*q)) {
            while (q < end && is_digit(*q))
                q++;
            p = q;
        } /* else Python backtracks; the 'e' then fails as trailing data */
    }
    *zero = !nz;
    j->p = p;
    return 0;
}

/*
 * Any JSON value (Python json.loads rules: also NaN, Infinity, -Infinity).
 * Iterative, containers nested at most JSON_MAX_DEPTH deep.  @cls gets
 * the value's class for Python truthiness; a string is decoded into @s
 * (may be NULL) and classed JSON_STRING.  Returns 0 or -1.
 */
static int json_value(struct json_cur *j, struct json_str *s, enum json_class *cls)
{
    uint64_t is_obj = 0; /* bit d: the container at depth d+1 is an object */
    int depth = 0, zero = 0;

    *cls = JSON_TRUTHY;
value:
    json_ws(j);
    if (j->p == j->end)
        return -1;
    switch (*j->p) {
    case '{':
    case '[': {
        uint8_t open = *j->p++, close = open == '{' ? '}' : ']';

        if (depth == JSON_MAX_DEPTH) /* this container would be level 65 */
            return -1;
        json_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            if (depth == 0)
                *cls = JSON_FALSY;
            goto after;
        }
        is_obj = (is_obj & ~(1ull << depth)) | (uint64_t)(open == '{') << depth;
        depth++;
        if (open == '{')
            goto member;
        goto value;
    }
    case '"':
        if (json_string(j, depth == 0 ? s : NULL) < 0)
            return -1;
        if (depth == 0)
            *cls = JSON_STRING;
        goto after;
    case 'n':
        if (json_literal(j, "null") < 0)
            return -1;
        if (depth == 0)
            *cls = JSON_FALSY;
        goto after;
    case 'f':
        if (json_literal(j, "false") < 0)
            return -1;
        if (depth == 0)
            *cls = JSON_FALSY;
        goto after;
    case 't':
        if (json_literal(j, "true") < 0)
            return -1;
        goto after;
    case 'N':
        if (json_literal(j, "NaN") < 0)
            return -1;
        goto after;
    case 'I':
        if (json_literal(j, "Infinity") < 0)
            return -1;
        goto after;
    case '-':
        if (json_literal(j, "-Infinity") == 0)
            goto after;
        /* fall through */
    default:
        if (json_number(j, &zero) < 0)
            return -1;
        if (depth == 0 && zero)
            *cls = JSON_FALSY;
        goto after;
    }
member:
    json_ws(j);
    if (j->p == j->end || *j->p != '"' || json_string(j, NULL) < 0)
        return -1;
    json_ws(j);
    if (j->p == j->end || *j->p != ':')
        return -1;
    j->p++;
    goto value;
after:
    if (depth == 0)
        return 0;
    json_ws(j);
    if (j->p == j->end)
        return -1;
    if (*j->p == ',') {
        j->p++;
        if (is_obj >> (depth - 1) & 1)
            goto member;
        goto value;
    }
    if (*j->p != ((is_obj >> (depth - 1) & 1) ? '}' : ']'))
        return -1;
    j->p++;
    depth--;
    goto after;
}

static int json_str_is(const struct json_str *s, const char *lit)
{
    size_t n = strlen(lit);

    return s->len == n && memcmp(s->buf, lit, n) == 0;
}

struct json_member {
    int present;
    enum json_class cls;
    struct json_str str;
};

/*
 * Parse the decoded X-Trace-Info JSON text and pick base_id/parent_id.
 * Returns LDPROF_TRACE_OK (members filled) or the verdict.
 */
static enum ldprof_trace_verdict trace_json(const uint8_t *text, size_t n,
                                            struct json_member *base, struct json_member *parent)
{
    struct json_cur j = {text, text + n};
    int other = 0;

    base->present = parent->present = 0;
    json_ws(&j);
    if (j.p == j.end)
        return LDPROF_TRACE_BAD_JSON;
    if (*j.p != '{') { /* valid JSON of another type is a middleware reject */
        enum json_class cls;

        if (json_value(&j, NULL, &cls) < 0)
            return LDPROF_TRACE_BAD_JSON;
        json_ws(&j);
        return j.p == j.end ? LDPROF_TRACE_BAD_MEMBERS : LDPROF_TRACE_BAD_JSON;
    }
    j.p++;
    json_ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        for (;;) {
            struct json_str name;
            struct json_member tmp, *m;

            json_ws(&j);
            if (j.p == j.end || *j.p != '"' || json_string(&j, &name) < 0)
                return LDPROF_TRACE_BAD_JSON;
            json_ws(&j);
            if (j.p == j.end || *j.p != ':')
                return LDPROF_TRACE_BAD_JSON;
            j.p++;
            if (json_str_is(&name, "base_id")) {
                m = base;
            } else if (json_str_is(&name, "parent_id")) {
                m = parent;
            } else {
                m = &tmp; /* hmac_key: any value, OSProfiler overwrites it */
                other |= !json_str_is(&name, "hmac_key");
            }
            if (json_value(&j, &m->str, &m->cls) < 0)
                return LDPROF_TRACE_BAD_JSON;
            m->present = 1; /* a repeated member: the last one wins, as in a dict */
            json_ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if (j.p < j.end && *j.p == '}') {
                j.p++;
                break;
            }
            return LDPROF_TRACE_BAD_JSON;
        }
    }
    json_ws(&j);
    if (j.p != j.end)
        return LDPROF_TRACE_BAD_JSON; /* "Extra data" */
    if (other || !base->present)
        return LDPROF_TRACE_BAD_MEMBERS;
    return LDPROF_TRACE_OK;
}

/* ------------------------------------------------------- 5. verify and sign */

/* The JSON text of OSProfiler's get_trace_id_headers() (and of
 * ldprof_trace_sign), around the two UUIDs. */
static const char json_head[] = "{\"base_id\": \"", json_mid[] = "\", \"parent_id\": \"",
                  json_tail[] = "\"}";
#define JSON_HEAD_LEN (sizeof json_head - 1)
#define JSON_MID_LEN (sizeof json_mid - 1)
#define JSON_TAIL_LEN (sizeof json_tail - 1)
#define JSON_IDS_LEN \
    (JSON_HEAD_LEN + LDPROF_UUID_LEN + JSON_MID_LEN + LDPROF_UUID_LEN + JSON_TAIL_LEN)
#define JSON_BASE_LEN (JSON_HEAD_LEN + LDPROF_UUID_LEN + JSON_TAIL_LEN)

/*
 * Fast path for what real senders produce: exactly
 * {"base_id": "<uuid>", "parent_id": "<uuid>"} or {"base_id": "<uuid>"}.
 * Such a text is ASCII, valid JSON, and has the right members, so the
 * general path would accept it with the same ids; anything else (-1) goes
 * through the general path.
 */
/* @n (8..16) bytes at @p equal @lit, by two overlapping 8-byte words
 * (what memcmp would say, without the call). */
static inline int same8_16(const uint8_t *p, const char *lit, size_t n)
{
    uint64_t a0, a1, b0, b1;

    memcpy(&a0, p, 8);
    memcpy(&a1, p + n - 8, 8);
    memcpy(&b0, lit, 8);
    memcpy(&b1, lit + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

static int canonical_ids(const uint8_t *t, size_t n, uint8_t base[16], uint8_t parent[16])
{
    _Static_assert(JSON_HEAD_LEN >= 8 && JSON_HEAD_LEN <= 16 && JSON_MID_LEN == 17 &&
                       JSON_TAIL_LEN == 2,
                   "canonical_ids compares these as words");
    if (n == JSON_IDS_LEN) {
        const uint8_t *mid = t + JSON_HEAD_LEN + LDPROF_UUID_LEN;

        if (!same8_16(t, json_head, JSON_HEAD_LEN) || mid[0] != (uint8_t)json_mid[0] ||
            !same8_16(mid + 1, json_mid + 1, JSON_MID_LEN - 1) ||
            t[n - 2] != (uint8_t)json_tail[0] || t[n - 1] != (uint8_t)json_tail[1])
            return -1;
        if (ldprof_uuid_parse((const char *)t + JSON_HEAD_LEN, LDPROF_UUID_LEN, base) < 0 ||
            ldprof_uuid_parse((const char *)mid + JSON_MID_LEN, LDPROF_UUID_LEN, parent) < 0)
            return -1;
        return 0;
    }
    if (n == JSON_BASE_LEN) {
        if (memcmp(t, json_head, JSON_HEAD_LEN) != 0 ||
            memcmp(t + n - JSON_TAIL_LEN, json_tail, JSON_TAIL_LEN) != 0 ||
            ldprof_uuid_parse((const char *)t + JSON_HEAD_LEN, LDPROF_UUID_LEN, base) < 0)
            return -1;
        memcpy(parent, base, 16);
        return 0;
    }
    return -1;
}

/*
 * The decoding verify needs once a key matches: base64, and the ids when
 * the text is canonical_ids()'s.  It depends only on the (public) header
 * text, so it is done whatever the MAC turns out to be: on x86 while the
 * first key's HMAC runs (hmac_x86_n calls it between two SHA-1 blocks),
 * otherwise after the keys are tried.  Its results are read only once a
 * key matched, in the order of the steps of ldprof_trace_verify(), so the
 * verdicts are the same as decoding afterwards.
 */
struct verify_pre {
    enum ldprof_impl impl;
    const uint8_t *in;
    size_t len;
    uint8_t *text; /* 3/4 of len */
    long n;        /* b64_decode_py() */
    int canon;     /* canonical_ids() */
    int done;
    uint8_t base_id[16], parent_id[16];
};

static void verify_predecode(struct verify_pre *pre)
{
    pre->n = b64_decode_py(pre->impl, pre->in, pre->len, pre->text);
    pre->canon = -1;
    if (pre->n >= 0)
        pre->canon = canonical_ids(pre->text, (size_t)pre->n, pre->base_id, pre->parent_id);
    pre->done = 1;
}

static int reject(struct ldprof_trace_ids *out, enum ldprof_trace_verdict v)
{
    out->verdict = v;
    return -1;
}

/* White space str.strip() removes from a header value WSGI decoded as
 * latin-1: \t..\r, 0x1c..0x20, 0x85, 0xa0. */
static inline int latin1_space(uint8_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0;
}

/*
 * Per-thread cache of the last few accepted header pairs.  A client often
 * sends the same X-Trace-Info / X-Trace-HMAC with several requests of one
 * trace (the parent is the client's span, the same for its calls); the
 * verify of a repeat then costs a few comparisons instead of 4 SHA-1
 * blocks.  verify's answer depends only on the keyring, the two header
 * values and the implementation (both give the same answers; keyed by it
 * anyway so that tests of one never read the other's results), so an
 * entry answers only for the exact info bytes, the exact MAC bytes
 * (compared in constant time), the same keyring generation (each
 * ldprof_keyring_init() call makes a new one) and key count.  Only
 * accepted pairs are kept: a rejected pair, or any pair differing in one
 * byte, is computed in full.  Initial-exec TLS, like the HMAC memo.
 */
#define VERIFY_CACHE_WAYS 4
#define VERIFY_CACHE_INFO_MAX 192 /* longer values are never cached */

struct verify_cache_entry {
    uint64_t generation; /* kr->generation; 0: empty */
    int nkeys, impl;
    size_t info_len;
    uint8_t mac[20];
    struct ldprof_trace_ids ids;
    uint8_t info[VERIFY_CACHE_INFO_MAX];
};

struct verify_cache {
    struct verify_cache_entry e[VERIFY_CACHE_WAYS];
    unsigned next; /* the entry to replace */
};

static __thread struct verify_cache tls_vcache __attribute__((tls_model("initial-exec")));

static int verify_cache_find(const struct ldprof_keyring *kr, enum ldprof_impl impl,
                             const uint8_t *info, size_t info_len, const uint8_t mac[20],
                             struct ldprof_trace_ids *out)
{
    struct verify_cache *c = &tls_vcache;

    for (int i = 0; i < VERIFY_CACHE_WAYS; i++) {
        const struct verify_cache_entry *e = &c->e[i];

        /* the MAC first: it filters out the other pairs in a few
         * instructions, where the info text's first 18 characters are
         * the same in every header */
        if (mac_equal(e->mac, mac) && e->generation == kr->generation && e->generation != 0 &&
            e->nkeys == kr->nkeys && e->impl == (int)impl && e->info_len == info_len &&
            memcmp(e->info, info, info_len) == 0) {
            *out = e->ids;
            return 1;
        }
    }
    return 0;
}

static void verify_cache_add(const struct ldprof_keyring *kr, enum ldprof_impl impl,
                             const uint8_t *info, size_t info_len, const uint8_t mac[20],
                             const struct ldprof_trace_ids *ids)
{
    struct verify_cache *c = &tls_vcache;
    struct verify_cache_entry *e;

    if (info_len > VERIFY_CACHE_INFO_MAX || kr->generation == 0)
        return;
    e = &c->e[c->next++ % VERIFY_CACHE_WAYS];
    e->generation = kr->generation;
    e->nkeys = kr->nkeys;
    e->impl = (int)impl;
    e->info_len = info_len;
    memcpy(e->mac, mac, 20);
    e->ids = *ids;
    memcpy(e->info, info, info_len);
}

/*
 * Key hints: the key that matched last, tried first (alone) by the next
 * verify with the same keyring.  In a key rotation nearly every request
 * is signed with one key (the new one, or still the old one), whatever
 * its place in the list, so verify then runs one key's HMAC instead of
 * the leading keys' too.  Two of them:
 *  - the thread's own (tls_hint): the key that matched last on this
 *    thread, used whenever it is of the keyring verified with;
 *  - the process's (proc_hint), for a thread without a hint of that
 *    keyring (its first request, or its first since the keyring
 *    changed): the key a thread last learned as its own hint, so only
 *    the process's first verify with a keyring tries key 0 first.  A
 *    thread publishes its hint when its own hint changes, and writes the
 *    shared word only when the value differs: in the steady state no
 *    request writes it (nor reads it: the thread's own hint answers),
 *    so the line is never passed between cores per request.
 *
 * The answer stays the one of trying the keys in order, whichever hint
 * (or none) is used:
 *  - a hint is used only for the keyring generation it was learned from
 *    and only when it is below that keyring's key count;
 *  - when the hinted key does not match, the others are tried in key
 *    order, so the first match among them is the first in order;
 *  - when it matches, an earlier key could match too only if it has the
 *    same HMAC states (the same key, listed twice, or an equivalent key
 *    text: RFC 2104 pads short keys with zeros and hashes long ones), and
 *    verify_first_same() then reports that earlier key, as the search in
 *    order would.  An earlier key with other states giving the same
 *    160-bit MAC for the header would be an HMAC-SHA1 collision between
 *    the two keys: only someone holding both could look for one, and
 *    whoever holds both can sign with either anyway.
 * tls_hint is initial-exec TLS, like the memo.
 */
struct verify_hint {
    uint64_t generation; /* kr->generation the key index is of; 0: none */
    int key;
    unsigned long tried; /* keys whose HMAC verify computed (ldprof_trace_keys_tried) */
};

static __thread struct verify_hint tls_hint __attribute__((tls_model("initial-exec")));

/*
 * The process's hint: generation << 8 | key in one 64-bit word (relaxed
 * atomics; one word, so a reader never pairs one generation with another
 * one's key), 0 for none.  A generation of 2^56 or more is never
 * published (one is drawn per ldprof_keyring_init call: never reached).
 * On a cache line of its own: it may be written while other threads
 * verify, and nothing read per request should share its line.
 */
#define HINT_GEN_MAX (UINT64_MAX >> 8)
_Static_assert(LDPROF_MAX_KEYS <= 256, "a key index fits the hint word's low byte");

static struct {
    uint64_t word;
    uint8_t pad[56];
} proc_hint __attribute__((aligned(64)));

/* The key to try first: the thread's hint when it is of @kr, else the
 * process's when it is of @kr, else key 0. */
static inline int verify_hint_get(const struct ldprof_keyring *kr)
{
    const struct verify_hint *h = &tls_hint;
    uint64_t p;

    if (h->generation == kr->generation && h->generation != 0)
        return (unsigned)h->key < (unsigned)kr->nkeys ? h->key : 0;
    p = __atomic_load_n(&proc_hint.word, __ATOMIC_RELAXED);
    if (p >> 8 == kr->generation && p != 0 && (p & 0xff) < (unsigned)kr->nkeys)
        return (int)(p & 0xff);
    return 0;
}

/* Publish @key of @kr as the process's hint (out of line: a thread's
 * hint changes rarely). */
static __attribute__((noinline)) void verify_hint_share(const struct ldprof_keyring *kr,
                                                        int key)
{
    uint64_t want = kr->generation << 8 | (unsigned)key;

    if (kr->generation == 0 || kr->generation > HINT_GEN_MAX)
        return;
    if (__atomic_load_n(&proc_hint.word, __ATOMIC_RELAXED) != want)
        __atomic_store_n(&proc_hint.word, want, __ATOMIC_RELAXED);
}

static inline void verify_hint_set(const struct ldprof_keyring *kr, int key)
{
    struct verify_hint *h = &tls_hint;

    if (h->generation == kr->generation && h->key == key)
        return;
    h->generation = kr->generation;
    h->key = key;
    verify_hint_share(kr, key);
}

void ldprof_trace_hint_forget(void)
{
    tls_hint.generation = 0;
    tls_hint.key = 0;
}

void ldprof_trace_hint_forget_process(void)
{
    __atomic_store_n(&proc_hint.word, 0, __ATOMIC_RELAXED);
}

unsigned long ldprof_trace_keys_tried(void)
{
    return tls_hint.tried;
}

/* The first key of @kr with the same HMAC states as key @idx (@idx when
 * there is none): the key the search in order reports for a MAC that key
 * @idx produced.  Constant time in the states' contents. */
static int verify_first_same(const struct ldprof_keyring *kr, int idx)
{
    const struct ldprof_hmac_key *k = &kr->keys[idx];
    int first = idx;

    for (int j = idx - 1; j >= 0; j--) {
        const struct ldprof_hmac_key *o = &kr->keys[j];
        uint32_t d = 0;

        for (int w = 0; w < 5; w++)
            d |= (o->inner[w] ^ k->inner[w]) | (o->outer[w] ^ k->outer[w]);
        /* all-ones when d == 0, without a branch on the states */
        uint32_t same = (uint32_t)(((uint64_t)d - 1) >> 32);
        first = (int)((same & (uint32_t)j) | (~same & (uint32_t)first));
    }
    return first;
}

int ldprof_trace_verify(const struct ldprof_keyring *kr, const char *info, size_t info_len,
                        const char *hmac, size_t hmac_len, struct ldprof_trace_ids *out)
{
    struct ldprof_trace_ids scratch;
    enum ldprof_impl impl = impl_get();
    const uint8_t *h = (const uint8_t *)hmac, *in = (const uint8_t *)info;
    uint8_t want[20], mac[20], base_id[16], parent_id[16];
    uint8_t text[LDPROF_TRACE_INFO_MAX / 4 * 3];
    struct json_member base, parent;
    struct verify_pre pre;
    enum ldprof_trace_verdict v;
    int idx = -1, first, ntried = 0;
    long n;

    if (!out)
        out = &scratch;
    out->key_index = -1;
    if (!kr || kr->nkeys <= 0)
        return reject(out, LDPROF_TRACE_NO_KEYS);
    if (!h)
        return reject(out, LDPROF_TRACE_NO_HMAC);
    while (hmac_len && latin1_space(h[0]))
        h++, hmac_len--;
    while (hmac_len && latin1_space(h[hmac_len - 1]))
        hmac_len--;
    if (!hmac_len)
        return reject(out, LDPROF_TRACE_NO_HMAC);
    if (!in)
        return reject(out, LDPROF_TRACE_NO_INFO);
    /* Only 40 lower-case hex digits can equal a hexdigest(); parsing the
     * header (public data) lets the per-key check compare raw bytes. */
    if (hmac_len != LDPROF_TRACE_HMAC_LEN || hmac_hex_decode(impl, h, want) < 0)
        return reject(out, LDPROF_TRACE_BAD_HMAC);
    if (info_len > LDPROF_TRACE_INFO_MAX)
        return reject(out, LDPROF_TRACE_TOO_LONG);
    /* Python refuses a non-ASCII value in urlsafe_b64decode (and computes
     * the HMAC over its UTF-8 re-encoding): never accepted either way. */
    if (!info_ascii(impl, in, info_len))
        return reject(out, LDPROF_TRACE_BAD_BASE64);

    if (verify_cache_find(kr, impl, in, info_len, want, out)) {
        verify_hint_set(kr, out->key_index);
        return out->key_index;
    }
    first = verify_hint_get(kr);
    pre.impl = impl;
    pre.in = in;
    pre.len = info_len;
    pre.text = text;
    pre.done = 0;
#if LDPROF_X86
    if (impl == LDPROF_IMPL_X86) {
        idx = verify_keys_x86(kr, first, in, info_len, want, &pre, &ntried);
    } else
#endif
    {
        /* @first, then the others in key order (as verify_keys_x86) */
        for (int t = 0; t < kr->nkeys; t++) {
            int i = t == 0 ? first : verify_other(first, t - 1);

            hmac_run(impl, &kr->keys[i], in, info_len, mac);
            ntried = t + 1;
            if (mac_equal(mac, want)) {
                idx = i;
                break;
            }
        }
    }
    tls_hint.tried += (unsigned)ntried;
    if (idx < 0)
        return reject(out, LDPROF_TRACE_BAD_HMAC);
    if (idx == first && first > 0)
        idx = verify_first_same(kr, idx);
    verify_hint_set(kr, idx);
    out->key_index = idx;

    /* The first matching key decides: from here on, no other key is tried. */
    if (!pre.done)
        verify_predecode(&pre);
    if ((n = pre.n) < 0)
        return reject(out, LDPROF_TRACE_BAD_BASE64);
    if (pre.canon == 0) {
        memcpy(base_id, pre.base_id, 16);
        memcpy(parent_id, pre.parent_id, 16);
        goto accept;
    }
    if (!utf8_valid(text, (size_t)n))
        return reject(out, LDPROF_TRACE_BAD_UTF8);
    if ((v = trace_json(text, (size_t)n, &base, &parent)) != LDPROF_TRACE_OK)
        return reject(out, v);
    if (base.cls != JSON_STRING || base.str.len != LDPROF_UUID_LEN ||
        ldprof_uuid_parse(base.str.buf, base.str.len, base_id) < 0)
        return reject(out, LDPROF_TRACE_NOT_UUID);
    /* profiler.init(): parent_id or base_id */
    if (!parent.present || parent.cls == JSON_FALSY ||
        (parent.cls == JSON_STRING && parent.str.len == 0)) {
        memcpy(parent_id, base_id, 16);
    } else if (parent.cls != JSON_STRING || parent.str.len != LDPROF_UUID_LEN ||
               ldprof_uuid_parse(parent.str.buf, parent.str.len, parent_id) < 0) {
        return reject(out, LDPROF_TRACE_NOT_UUID);
    }
accept:
    memcpy(out->base_id, base_id, 16);
    memcpy(out->parent_id, parent_id, 16);
    out->verdict = LDPROF_TRACE_OK;
    verify_cache_add(kr, impl, in, info_len, want, out);
    return idx;
}

int ldprof_trace_sign(const struct ldprof_keyring *kr, int key_index, const uint8_t base_id[16],
                      const uint8_t parent_id[16], char *info_out, size_t info_cap,
                      char hmac_out[LDPROF_TRACE_HMAC_SIZE])
{
    /* json.dumps({"base_id": b, "parent_id": p}) with default separators. */
    _Static_assert((JSON_IDS_LEN + 2) / 3 * 4 == LDPROF_TRACE_INFO_LEN, "info length");
    /* + 16 zero bytes for b64url_encode */
    char json[JSON_IDS_LEN + 16] __attribute__((aligned(16))), *p = json;
    uint8_t mac[20];

    if (!kr || key_index < 0 || key_index >= kr->nkeys || !info_out ||
        info_cap < LDPROF_TRACE_INFO_SIZE || !hmac_out)
        return -1;
    memcpy(p, json_head, JSON_HEAD_LEN);
    p += JSON_HEAD_LEN;
    ldprof_uuid_format(base_id, p);
    p += LDPROF_UUID_LEN;
    memcpy(p, json_mid, JSON_MID_LEN);
    p += JSON_MID_LEN;
    ldprof_uuid_format(parent_id, p);
    p += LDPROF_UUID_LEN;
    memcpy(p, json_tail, JSON_TAIL_LEN);
    memset(json + JSON_IDS_LEN, 0, 16);

    size_t n = b64url_encode((const uint8_t *)json, JSON_IDS_LEN, info_out);
    info_out[n] = '\0';
#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86) {
        mac_state_hex_x86(
            hmac_x86_memo(&kr->keys[key_index], (const uint8_t *)info_out, n, NULL), hmac_out);
        hmac_out[LDPROF_TRACE_HMAC_LEN] = '\0';
        return (int)n;
    }
#endif
    hmac_run(impl_get(), &kr->keys[key_index], (const uint8_t *)info_out, n, mac);
    mac_hex(mac, hmac_out);
    hmac_out[LDPROF_TRACE_HMAC_LEN] = '\0';
    return (int)n;
}

const char *ldprof_trace_verdict_name(enum ldprof_trace_verdict verdict)
{
    switch (verdict) {
    case LDPROF_TRACE_OK:
        return "ok";
    case LDPROF_TRACE_NO_KEYS:
        return "no-keys";
    case LDPROF_TRACE_NO_HMAC:
        return "no-hmac";
    case LDPROF_TRACE_NO_INFO:
        return "no-info";
    case LDPROF_TRACE_BAD_HMAC:
        return "bad-hmac";
    case LDPROF_TRACE_TOO_LONG:
        return "too-long";
    case LDPROF_TRACE_BAD_BASE64:
        return "bad-base64";
    case LDPROF_TRACE_BAD_UTF8:
        return "bad-utf8";
    case LDPROF_TRACE_BAD_JSON:
        return "bad-json";
    case LDPROF_TRACE_BAD_MEMBERS:
        return "bad-members";
    case LDPROF_TRACE_NOT_UUID:
        return "not-uuid";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- 6. ids */

#if LDPROF_X86
X86_TARGET static void uuid_format_x86(const uint8_t id[16], char out[LDPROF_UUID_SIZE])
{
    __m128i a, b; /* the 32 digits: a = 0..15, b = 16..31 */

    hex16_x86(id, &a, &b);
    /* out[0..15]: digits 0-7 '-' 8-11 '-' 12-13 */
    __m128i o0 = _mm_shuffle_epi8(a, _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -1, 8, 9, 10, 11, -1,
                                                   12, 13));
    o0 = _mm_or_si128(o0, _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, '-', 0, 0, 0, 0, '-', 0, 0));
    /* out[16..31]: digits 14-15 '-' 16-19 '-' 20-27 */
    __m128i o1 = _mm_shuffle_epi8(_mm_alignr_epi8(b, a, 14), _mm_setr_epi8(0, 1, -1, 2, 3, 4, 5, -1,
                                                                           6, 7, 8, 9, 10, 11, 12,
                                                                           13));
    o1 = _mm_or_si128(o1, _mm_setr_epi8(0, 0, '-', 0, 0, 0, 0, '-', 0, 0, 0, 0, 0, 0, 0, 0));
    _mm_storeu_si128((__m128i *)out, o0);
    _mm_storeu_si128((__m128i *)(out + 16), o1);
    /* out[32..35]: digits 28-31 */
    uint32_t tail = (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(b, 12));
    memcpy(out + 32, &tail, 4);
    out[36] = '\0';
}

/* @p: 36 characters. */
X86_TARGET static int uuid_parse_x86(const uint8_t *p, uint8_t id[16])
{
    __m128i l0 = _mm_loadu_si128((const __m128i *)p);
    __m128i l1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i l2 = _mm_loadu_si128((const __m128i *)(p + 20));
    __m128i bad = _mm_setzero_si128();

    if ((p[8] ^ '-') | (p[13] ^ '-') | (p[18] ^ '-') | (p[23] ^ '-'))
        return -1;
    /* digits 0-15: characters 0-7, 9-12, 14-17 */
    __m128i d0 = _mm_or_si128(
        _mm_shuffle_epi8(l0, _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, -1, -1)),
        _mm_shuffle_epi8(l1, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                           0, 1)));
    /* digits 16-31: characters 19-22, 24-35 */
    __m128i d1 = _mm_or_si128(
        _mm_shuffle_epi8(l1, _mm_setr_epi8(3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, -1, -1, -1,
                                           -1)),
        _mm_shuffle_epi8(l2, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 12, 13,
                                           14, 15)));
    __m128i n0 = hex_nibbles_x86(d0, 0, &bad), n1 = hex_nibbles_x86(d1, 0, &bad);

    if (_mm_movemask_epi8(bad))
        return -1;
    _mm_storeu_si128((__m128i *)id, hex_pack_x86(n0, n1));
    return 0;
}
#endif

/* Where the 32 hex digits of a UUID text are (the rest: '-' at 8, 13, 18, 23). */
static const uint8_t uuid_digit_pos[32] = {
    0,  1,  2,  3,  4,  5,  6,  7,  9,  10, 11, 12, 14, 15, 16, 17,
    19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
};

void ldprof_uuid_format(const uint8_t id[16], char out[LDPROF_UUID_SIZE])
{
#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86) {
        uuid_format_x86(id, out);
        return;
    }
#endif
    for (int i = 0; i < 16; i++) {
        out[uuid_digit_pos[2 * i]] = hex_lower[id[i] >> 4];
        out[uuid_digit_pos[2 * i + 1]] = hex_lower[id[i] & 15];
    }
    out[8] = out[13] = out[18] = out[23] = '-';
    out[36] = '\0';
}

int ldprof_uuid_parse(const char *s, size_t n, uint8_t id[16])
{
    const uint8_t *p = (const uint8_t *)s;
    uint8_t tmp[16];
    unsigned ok = HEX_OK;

    if (!s || n != LDPROF_UUID_LEN)
        return -1;
#if LDPROF_X86
    if (impl_get() == LDPROF_IMPL_X86) {
        if (uuid_parse_x86(p, tmp) < 0)
            return -1;
        memcpy(id, tmp, 16);
        return 0;
    }
#endif
    if ((p[8] ^ '-') | (p[13] ^ '-') | (p[18] ^ '-') | (p[23] ^ '-'))
        return -1;
    for (int i = 0; i < 16; i++) {
        unsigned hi = hex_any[p[uuid_digit_pos[2 * i]]];
        unsigned lo = hex_any[p[uuid_digit_pos[2 * i + 1]]];

        ok &= hi & lo;
        tmp[i] = (uint8_t)(hi << 4 | (lo & 15));
    }
    if (!ok)
        return -1;
    memcpy(id, tmp, 16);
    return 0;
}

int ldprof_short_id(const uint8_t id[16], char out[LDPROF_SHORT_ID_SIZE])
{
    int i = 8, n = 0;

    /* Skip leading zero nibbles of bytes 8..15, keep at least one digit. */
    while (i < 15 && id[i] == 0)
        i++;
    if (id[i] >> 4)
        out[n++] = hex_lower[id[i] >> 4];
    out[n++] = hex_lower[id[i] & 15];
    for (i++; i < 16; i++) {
        out[n++] = hex_lower[id[i] >> 4];
        out[n++] = hex_lower[id[i] & 15];
    }
    out[n] = '\0';
    return n;
}

/*
 * Per-thread xoshiro256** (Blackman & Vigna).  Initial-exec TLS: the
 * preload is loaded at start-up, and the access must not call into the
 * dynamic linker (which may allocate) on the hot path.
 */
struct id_prng {
    uint64_t s[4];
    int seeded;
};

static __thread struct id_prng tls_prng __attribute__((tls_model("initial-exec")));

static inline uint64_t rol64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prng_seed(struct id_prng *g)
{
    int saved_errno = errno;
    uint64_t seed[4];
    ssize_t got = getrandom(seed, sizeof seed, GRND_NONBLOCK);

    if (got != (ssize_t)sizeof seed) {
        /* No kernel entropy (early boot, ENOSYS, seccomp): unique, not secret. */
        struct timespec rt = {0, 0}, mono = {0, 0};
        uint64_t x;

        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        x = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
        x ^= rol64((uint64_t)mono.tv_nsec, 32) ^ (uint64_t)mono.tv_sec;
        x ^= rol64((uint64_t)getpid(), 16) ^ rol64((uint64_t)gettid(), 40);
        x ^= (uint64_t)(uintptr_t)g; /* per-thread address, ASLR */
#if defined(__x86_64__) || defined(__i386__)
        x ^= rol64(__builtin_ia32_rdtsc(), 24);
#endif
        for (int i = 0; i < 4; i++)
            seed[i] = splitmix64(&x);
    }
    memcpy(g->s, seed, sizeof g->s);
    if (!(g->s[0] | g->s[1] | g->s[2] | g->s[3]))
        g->s[0] = 1; /* the one state xoshiro cannot leave */
    g->seeded = 1;
    errno = saved_errno;
}

static uint64_t prng_next(struct id_prng *g)
{
    uint64_t *s = g->s;
    uint64_t r = rol64(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rol64(s[3], 45);
    return r;
}

void ldprof_uuid_new(uint8_t id[16])
{
    struct id_prng *g = &tls_prng;
    uint64_t a, b;

    if (__builtin_expect(!g->seeded, 0))
        prng_seed(g);
    a = prng_next(g);
    b = prng_next(g);
    /* Big-endian a then b; the version nibble is byte 6 (bits 15..8 of a),
     * the variant bits byte 8 (the top of b). */
    a = (a & ~0xf000ull) | 0x4000ull;                                /* version 4 */
    b = (b & ~(0xc0ull << 56)) | (0x80ull << 56);                   /* RFC 4122 variant */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    a = __builtin_bswap64(a);
    b = __builtin_bswap64(b);
#endif
    memcpy(id, &a, 8);
    memcpy(id + 8, &b, 8);
}

void ldprof_uuid_fork_child(void)
{
    tls_prng.seeded = 0;
}
