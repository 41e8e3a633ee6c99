/*
 * propagation.h - OSProfiler trace propagation headers (X-Trace-Info and
 * X-Trace-HMAC): verify the headers of an inbound request, sign the headers
 * of an outbound one, and the id helpers both sides need.
 *
 * Reference: /work/shared/reference/osprofiler-compat.md §1, §2.  The wire
 * format is OSProfiler 3.4.3's, byte for byte:
 *
 *   X-Trace-Info: urlsafe_b64encode('{"base_id": "<uuid>", "parent_id": "<uuid>"}')
 *                 (RFC 4648 §5 alphabet, with '=' padding; 140 characters)
 *   X-Trace-HMAC: hex(HMAC-SHA1(key, <the X-Trace-Info text>)), lower case
 *
 * Hot-path contract (ldprof_trace_verify, ldprof_trace_sign, the uuid and
 * short-id helpers): no heap allocation, no locks, no stdio, no getenv(), no
 * syscall (ldprof_uuid_new makes one getrandom() per thread, the first time
 * only); stack buffers only (verify uses about 4 KiB of stack); errno is
 * left untouched.  All of them are thread-safe: a keyring is read-only
 * after ldprof_keyring_init().  None of them is async-signal-safe
 * (ldprof_uuid_new and the HMAC memo below touch per-thread state a signal
 * handler could interrupt).
 *
 * HMAC memo: each thread keeps the keyed inner SHA-1 state after the last
 * message's first 64 bytes (with the key state and the bytes it is valid
 * for).  X-Trace-Info's first 64 characters depend only on the base id,
 * so the later HMACs of one trace on a thread (the verify of its next
 * requests, the sign of its outbound calls) run 3 SHA-1 blocks instead of
 * 4.  Results are identical to computing from scratch.
 *
 * Verify cache: each thread also keeps its last 4 accepted header pairs
 * (exact X-Trace-Info bytes, X-Trace-HMAC value, keyring generation and
 * the result); the same pair verified again with the same keyring gets
 * the same result without an HMAC.  Only accepted pairs are kept, and a
 * pair differing in any byte is checked in full, so no answer changes.
 *
 * Key hint: each thread also remembers which key matched last (with the
 * keyring generation); verify tries that key first, alone, then the
 * others in key order.  A thread without a hint for the keyring (its
 * first request) uses the process's: the key some thread learned last,
 * so only the process's first verify with a keyring starts at key 0.
 * With several keys configured (a key rotation), where nearly all
 * requests are signed with one of them, verify then costs one key's
 * HMAC whatever that key's place in the list.  The answer is the one of
 * trying the keys in order (see ldprof_trace_verify).  Together about
 * 1.3 KiB of initial-exec TLS per thread, and one shared 64-byte line
 * that is written only when the process's hint changes.
 *
 * The preload represents ids as 16 raw bytes (include/ldprof/wire.h), so an
 * id must be a UUID text to be traceable; see ldprof_trace_verify() for what
 * that means compared with OSProfiler, which never looks at the ids.
 *
 * The implementation has its own SHA-1 (portable C, plus the x86 SHA
 * extensions when the CPU has them), so libldprof.so does not depend on
 * libcrypto: a preloaded libcrypto.so.3 would be interposed on every host,
 * including hosts linked against another OpenSSL.  The unit tests check it
 * against OpenSSL.  On x86 CPUs with SHA-NI, SSSE3 and SSE4.1 the base64,
 * hex and UUID conversions use vector code too; the portable C gives the
 * same results (tested both ways).
 */
#ifndef LDPROF_PROPAGATION_H
#define LDPROF_PROPAGATION_H

#include <stddef.h>
#include <stdint.h>

/* Canonical header names (HTTP header names are case-insensitive). */
#define LDPROF_HDR_TRACE_INFO "X-Trace-Info"
#define LDPROF_HDR_TRACE_HMAC "X-Trace-HMAC"

/* Most keys a keyring holds; further keys in the configured list are
 * ignored and counted (ldprof_keyring_init's return value). */
#define LDPROF_MAX_KEYS 8

/* Length of the X-Trace-Info value ldprof_trace_sign() writes (two UUIDs),
 * and the buffer it needs (value + NUL). */
#define LDPROF_TRACE_INFO_LEN 140
#define LDPROF_TRACE_INFO_SIZE (LDPROF_TRACE_INFO_LEN + 1)

/* Length of the X-Trace-HMAC value (hex SHA-1), and its buffer (+ NUL). */
#define LDPROF_TRACE_HMAC_LEN 40
#define LDPROF_TRACE_HMAC_SIZE (LDPROF_TRACE_HMAC_LEN + 1)

/* Longest X-Trace-Info value ldprof_trace_verify() accepts.  Python has no
 * limit, but a real header is 140 characters; this bounds the stack buffer
 * the value is decoded into (3/4 of it). */
#define LDPROF_TRACE_INFO_MAX 4096

/* UUID text (8-4-4-4-12) length and buffer size; short id buffer size. */
#define LDPROF_UUID_LEN 36
#define LDPROF_UUID_SIZE (LDPROF_UUID_LEN + 1)
#define LDPROF_SHORT_ID_SIZE 17

/* Which code the codec runs (the same results either way). */
enum ldprof_impl {
    LDPROF_IMPL_PORTABLE = 0, /* plain C */
    LDPROF_IMPL_X86 = 1,      /* x86 SHA-NI + SSSE3 + SSE4.1 */
};

/* One hmac key, kept only as its precomputed HMAC-SHA1 states: the SHA-1
 * chaining values after the (key XOR ipad) and (key XOR opad) blocks.  These
 * are as secret as the key; the key text itself is not kept. */
struct ldprof_hmac_key {
    uint32_t inner[5];
    uint32_t outer[5];
    size_t key_len; /* bytes of the key text, for diagnostics */
};

/* The receiver's list of keys, in configured order.  Fill it once with
 * ldprof_keyring_init(); afterwards it is read-only and may be shared by
 * all threads.  Plain data: no destructor, may be copied with memcpy. */
struct ldprof_keyring {
    int nkeys;   /* usable keys, 0..LDPROF_MAX_KEYS */
    int ignored; /* keys beyond LDPROF_MAX_KEYS */
    uint64_t generation; /* new for every ldprof_keyring_init() call (never
                          * 0): identifies the keys in verify's cache */
    struct ldprof_hmac_key keys[LDPROF_MAX_KEYS];
};

/* Why ldprof_trace_verify() accepted or rejected a header pair.  For logs and
 * tests only: OSProfiler makes no visible difference between them (a
 * rejected request simply runs untraced). */
enum ldprof_trace_verdict {
    LDPROF_TRACE_OK = 0,
    LDPROF_TRACE_NO_KEYS,     /* the keyring is empty */
    LDPROF_TRACE_NO_HMAC,     /* X-Trace-HMAC missing or blank */
    LDPROF_TRACE_NO_INFO,     /* X-Trace-Info missing */
    LDPROF_TRACE_BAD_HMAC,    /* no key produced this HMAC */
    LDPROF_TRACE_TOO_LONG,    /* X-Trace-Info longer than LDPROF_TRACE_INFO_MAX */
    LDPROF_TRACE_BAD_BASE64,  /* signed, but not base64 (or not ASCII) */
    LDPROF_TRACE_BAD_UTF8,    /* signed, decoded, but not UTF-8 */
    LDPROF_TRACE_BAD_JSON,    /* signed, decoded, but not JSON */
    LDPROF_TRACE_BAD_MEMBERS, /* JSON, but not an object with base_id and
                               * at most parent_id/hmac_key besides */
    LDPROF_TRACE_NOT_UUID,    /* OSProfiler would trace it, but an id is not
                               * a UUID text, so the preload cannot */
};

/* What ldprof_trace_verify() learned from a header pair. */
struct ldprof_trace_ids {
    uint8_t base_id[16];
    uint8_t parent_id[16];         /* == base_id when the header has none */
    int key_index;                 /* key whose HMAC matched, else -1 */
    enum ldprof_trace_verdict verdict;
};

/*
 * ldprof_keyring_init - build a keyring from the configured hmac_keys text.
 *
 * @spec is split on ',' and every piece is trimmed of whitespace exactly as
 * Python's str.strip() does (ASCII and Unicode white space, spec taken as
 * UTF-8); empty pieces are dropped and the order is kept, so
 * "key-A, key-B ,key-C" gives key-A, key-B, key-C (osprofiler._utils.split).
 * A key is used as its UTF-8 bytes, of any length (a key longer than 64
 * bytes is hashed first, as HMAC specifies; only the precomputed states are
 * stored).  @spec may be NULL (empty keyring: every header is rejected).
 *
 * Returns the number of keys ignored because the list had more than
 * LDPROF_MAX_KEYS (0 normally; the config layer should warn when > 0), or
 * -1 if @kr is NULL.  Called once at start-up; does not allocate; not
 * async-signal-safe.
 */
int ldprof_keyring_init(struct ldprof_keyring *kr, const char *spec);

/*
 * ldprof_codec_impl - the code in use: LDPROF_IMPL_X86 when the CPU has
 * SHA-NI, SSSE3 and SSE4.1 (detected on first use), else portable C.
 * ldprof_codec_set_impl - force it, for tests and benchmarks only (all
 * threads; harmless while others run, since both give the same results).
 * Returns 0, or -1 if this CPU cannot run @impl.
 */
enum ldprof_impl ldprof_codec_impl(void);
int ldprof_codec_set_impl(enum ldprof_impl impl);

/*
 * ldprof_trace_verify - check an inbound X-Trace-Info / X-Trace-HMAC pair
 * the way osprofiler._utils.signed_unpack() and WsgiMiddleware do (§2.2).
 *
 * @info/@info_len: the raw X-Trace-Info value; NULL when the header is
 * absent.  @hmac/@hmac_len: the raw X-Trace-HMAC value; NULL when absent.
 * Neither needs a NUL terminator.
 *
 *  1. Empty keyring, or HMAC missing/empty, or blank after trimming the
 *     white space Python's str.strip() removes from a latin-1 header value
 *     → reject.  Missing X-Trace-Info → reject.
 *  2. Keys in order: HMAC-SHA1(key, info text) is compared in constant time
 *     with the header as an exact string (40 lower-case hex digits;
 *     upper-case or truncated values never match).  The first key that
 *     matches decides; no other key is tried after it.  (The thread's
 *     hint, the key that matched last with this keyring, or without one
 *     the process's hint, is tried first and alone; when it does not
 *     match, the others are tried in key order, and the x86 code
 *     computes them in interleaved groups of up to four and takes the
 *     first match in key order: the same answer.
 *     When the hinted key matches, an earlier key with the same HMAC
 *     states (the same key listed twice, or an equivalent key text) is
 *     reported instead, as the search in order would; an earlier key
 *     with other states matching too would take an HMAC-SHA1 collision
 *     between the two keys.)
 *  3. The info text is decoded like Python's base64.urlsafe_b64decode
 *     (lenient: both alphabets, characters outside them skipped, decoding
 *     stops at the first complete padding; missing padding is an error),
 *     checked to be UTF-8, and parsed as JSON (Python json.loads rules,
 *     including NaN/Infinity and duplicate members, the last one winning).
 *  4. The JSON must be an object with base_id, optionally parent_id and
 *     hmac_key (any value; OSProfiler overwrites it), and nothing else.
 *  5. ldprof only: base_id must be a string holding a UUID in 8-4-4-4-12
 *     form, hex digits of either case (stored as raw bytes; emitted in lower
 *     case).  parent_id likewise; a parent_id that Python treats as false
 *     (null, "", false, 0, [], {}) or no parent_id means parent = base_id,
 *     as in profiler.init().  Anything else (e.g. "b>>?" in vector V8, a
 *     braced or hyphen-less UUID, a number, an empty base_id) is
 *     "not traceable": rejected with LDPROF_TRACE_NOT_UUID although
 *     OSProfiler would have traced it.
 *
 * Deliberate differences from Python.  None of them accepts a header that
 * OSProfiler refuses; the only one that changes an accepted header's ids
 * is the case of the UUID text:
 *  - Step 5 above: ids that are not UUID texts are refused.
 *  - An upper-case UUID is accepted and carried on in lower case (the ids
 *    are bytes), where OSProfiler would keep the text as sent; its storage
 *    keys and `trace show` are case-sensitive (§8.2), so a trace started
 *    with an upper-case id would be split between Python services and
 *    ldprof ones.  OSProfiler clients always send lower case.
 *  - X-Trace-Info longer than LDPROF_TRACE_INFO_MAX: refused unchecked.
 *  - X-Trace-Info with a non-ASCII byte: refused before any HMAC (Python
 *    can never decode such a value either: same verdict, other reason).
 *  - Containers nested more than 64 deep inside an hmac_key value are
 *    refused (Python: up to its recursion limit).
 *  - A parent_id number that is non-zero as written but underflows to 0.0
 *    as a double (1e-400) counts as true, so it is refused (Python: false,
 *    parent = base_id).
 *
 * Returns the matched key index (>= 0) with @out filled, or -1.  If @out is
 * not NULL, out->verdict and out->key_index are always set (key_index is
 * the matched key even when a later step rejects); the ids only on success.
 */
int ldprof_trace_verify(const struct ldprof_keyring *kr, const char *info, size_t info_len,
                        const char *hmac, size_t hmac_len, struct ldprof_trace_ids *out);

/*
 * ldprof_trace_hint_forget - forget the calling thread's key hint, so that
 * its next verify starts as a thread's first request does: with the
 * process's hint, or key 0 without one.
 * ldprof_trace_hint_forget_process - forget the process's key hint (not
 * the threads' own): with ldprof_trace_hint_forget too, the thread's next
 * verify tries the keys from the first, as the process's first request
 * does.
 * ldprof_trace_keys_tried - how many keys' HMACs ldprof_trace_verify has
 * computed on the calling thread (a verify its cache answers computes
 * none; the x86 code counts every key of a group it ran).
 * For tests and benchmarks; verify's answers never depend on the hints.
 */
void ldprof_trace_hint_forget(void);
void ldprof_trace_hint_forget_process(void);
unsigned long ldprof_trace_keys_tried(void);

/*
 * ldprof_trace_sign - build the headers of an outbound request.
 *
 * Writes into @info_out the X-Trace-Info value for
 *   {"base_id": "<base_id>", "parent_id": "<parent_id>"}
 * (Python json.dumps text, lower-case UUIDs) as URL-safe base64 with
 * padding, NUL-terminated, and into @hmac_out its HMAC-SHA1 under key
 * @key_index of @kr as 40 lower-case hex digits, NUL-terminated.
 *
 * Returns LDPROF_TRACE_INFO_LEN, or -1 (nothing written) when @info_cap <
 * LDPROF_TRACE_INFO_SIZE or @key_index is not a key of @kr.
 */
int ldprof_trace_sign(const struct ldprof_keyring *kr, int key_index, const uint8_t base_id[16],
                      const uint8_t parent_id[16], char *info_out, size_t info_cap,
                      char hmac_out[LDPROF_TRACE_HMAC_SIZE]);

/*
 * ldprof_hmac_sha1 - HMAC-SHA1 of @len bytes at @msg under key @key_index.
 * Returns 0, or -1 if @key_index is not a key of @kr.  (Exposed for tests.)
 */
int ldprof_hmac_sha1(const struct ldprof_keyring *kr, int key_index, const void *msg, size_t len,
                     uint8_t mac[20]);

/* ldprof_trace_verdict_name - a short constant name for logs. */
const char *ldprof_trace_verdict_name(enum ldprof_trace_verdict verdict);

/* ldprof_uuid_format - @id as lower-case 8-4-4-4-12 text plus NUL. */
void ldprof_uuid_format(const uint8_t id[16], char out[LDPROF_UUID_SIZE]);

/*
 * ldprof_uuid_parse - parse exactly @n bytes at @s as 8-4-4-4-12 hex text
 * (either case; no braces, "urn:uuid:" or hyphen-less forms).  Returns 0
 * and fills @id, or -1 (@id untouched).
 */
int ldprof_uuid_parse(const char *s, size_t n, uint8_t id[16]);

/*
 * ldprof_uuid_new - a random UUID4 (version 4, RFC 4122 variant).
 *
 * Drawn from a per-thread xoshiro256** generator seeded from getrandom()
 * the first time a thread asks (no syscall afterwards).  Trade-off: the ids
 * are statistically uniform and collision-safe (122 random bits per id,
 * independent 256-bit seed per thread), but they are not cryptographically
 * unpredictable: someone who sees a few consecutive ids of one thread could
 * compute the next ones.  OSProfiler uses os.urandom.  Trace ids are sent
 * in clear text and authorise nothing (the HMAC key does), so speed wins.
 * If getrandom() fails (very early boot, seccomp), the seed falls back to
 * clocks, ids and addresses: unique but guessable.
 *
 * After fork() the child's forking thread would continue the parent's
 * sequence: the preload's atfork child handler must call
 * ldprof_uuid_fork_child().
 */
void ldprof_uuid_new(uint8_t id[16]);

/* ldprof_uuid_fork_child - forget the calling thread's generator state so
 * that it reseeds; call from the pthread_atfork child handler. */
void ldprof_uuid_fork_child(void);

/*
 * ldprof_short_id - the OpenTracing-style short id of §1
 * (osprofiler._utils.shorten_id): the low 64 bits of the UUID's 128-bit
 * integer (bytes 8..15, big-endian) as lower-case hex without leading
 * zeros ("0" for zero).  Returns the length written (1..16), plus a NUL.
 */
int ldprof_short_id(const uint8_t id[16], char out[LDPROF_SHORT_ID_SIZE]);

#endif
