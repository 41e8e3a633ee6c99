/*
 * collector/decode.h - the datagram decoder (include/ldprof/wire.h).
 *
 * Pure: no sockets, no files, no global state.  One call validates a whole
 * datagram; only a datagram that passed is iterated, so the iterators below
 * cannot fail and never read outside [buf, buf + len).  A datagram is either
 * accepted whole or rejected whole (no half batches in the journal).
 *
 *     struct coll_dec d;
 *     if (coll_decode(&d, buf, len) < 0) {
 *         log("reason=%s detail=%s", coll_dec_reason(d.err), d.errstr);
 *         return;
 *     }
 *     struct coll_span sp;
 *     while (coll_decode_next(&d, &sp)) {
 *         struct coll_tlv_iter it;
 *         struct coll_tlv t;
 *         coll_tlv_begin(&it, sp.info, sp.info_len);
 *         while (coll_tlv_next(&it, &t)) ...
 *     }
 *
 * All pointers handed out point into the caller's buffer, which must stay
 * alive and unchanged while they are used.  Thread-compatible (one context
 * per thread), not async-signal-safe (JSON values are checked with jansson).
 */
#ifndef LDPROF_COLLECTOR_DECODE_H
#define LDPROF_COLLECTOR_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "ldprof/wire.h"

/* Store @v as @n little-endian bytes at @p (the wire's byte order). */
static inline void coll_put_le(void *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        ((unsigned char *)p)[i] = (unsigned char)(v >> (8 * i));
}

/* Error codes, in the order the checks run.  coll_dec_reason() gives the
 * stable snake_case name used in logs and in the stats file. */
enum coll_dec_err {
    COLL_DEC_OK = 0,
    COLL_DEC_ESHORT,     /* shorter than the 32-byte header */
    COLL_DEC_EENDIAN,    /* magic in big-endian byte order */
    COLL_DEC_EMAGIC,     /* not LDPROF_WIRE_MAGIC */
    COLL_DEC_EVERSION,   /* unsupported version */
    COLL_DEC_ETYPE,      /* unknown message type */
    COLL_DEC_ETOOBIG,    /* more than LDPROF_WIRE_MAX_DGRAM bytes */
    COLL_DEC_ELEN,       /* hdr.len differs from the real size */
    COLL_DEC_ERESERVED,  /* a reserved field is not 0 */
    COLL_DEC_EPROC,      /* process block overruns or holds a bad entry */
    COLL_DEC_ERECLEN,    /* record head/rec_len/info_len inconsistent or overrun */
    COLL_DEC_EKIND,      /* kind outside 1..LDPROF_KIND_MAX */
    COLL_DEC_EFLAGS,     /* unknown flag bits */
    COLL_DEC_EIDS,       /* an all-zero id */
    COLL_DEC_ETIME,      /* unfinished span with end != start */
    COLL_DEC_ETLV,       /* info TLV overruns, bad type, bad key or value */
    COLL_DEC_ENREC,      /* nrec does not match the bytes that follow */
    COLL_DEC__COUNT
};

/* A (pointer, length) view into the datagram; p == NULL when absent. */
struct coll_str {
    const char *p;
    size_t len;
};

/* The process block's known keys (LDPROF_PROC_*); unknown keys are skipped. */
struct coll_proc {
    struct coll_str host, service, project, exe;
};

/* One span record.  `hdr` is a host-order copy of the record head (so it is
 * aligned and byte-swapped as needed); `info` points at its TLV bytes. */
struct coll_span {
    struct ldprof_wire_span hdr;
    const uint8_t *info;
    size_t info_len;
};

/* One TLV entry.  `type` is the base type (LDPROF_TLV_STR/_INT/_JSON), `stop`
 * tells whether LDPROF_TLV_STOP was set.  `ival` holds the value of INT
 * entries. */
struct coll_tlv {
    uint8_t type;
    int stop;
    struct coll_str key;
    const uint8_t *val;
    size_t vlen;
    int64_t ival;
};

struct coll_tlv_iter {
    const uint8_t *p, *end;
};

#define COLL_DEC_KEYCACHE 64 /* a power of 2 */

/* Decoder context.  After coll_decode(): err/errstr, the host-order header,
 * the process fields.  Iteration state is private. */
struct coll_dec {
    int err;                    /* enum coll_dec_err */
    char errstr[128];           /* fixed text, e.g. "record 2: kind 9 out of range" */
    struct ldprof_wire_hdr hdr; /* host-order copy */
    struct coll_proc proc;
    /* private */
    const uint8_t *buf;
    size_t len;
    size_t next_off;
    uint32_t next_idx;
    /* Keys of at most 16 bytes already found valid in this datagram (they
     * repeat in every record; see decode.c): key_n[i] == 0 when slot i is
     * empty. */
    uint8_t key_n[COLL_DEC_KEYCACHE];
    uint64_t key_a[COLL_DEC_KEYCACHE], key_b[COLL_DEC_KEYCACHE];
};

/* Validate one whole datagram of `len` bytes.  Returns 0 (accepted; hdr and
 * proc filled, iteration ready) or -1 (err/errstr set; nothing else valid).
 * Never reads outside [buf, buf + len). */
int coll_decode(struct coll_dec *d, const void *buf, size_t len);

/* Next span record of an accepted datagram: 1 and *out filled, or 0 at the
 * end (and always 0 for a rejected datagram). */
int coll_decode_next(struct coll_dec *d, struct coll_span *out);

/* A second iteration over the records of an accepted datagram that leaves
 * d (and its own iteration) alone, without a copy of the decoder (over a
 * KiB): coll_decode_first() sets *pos to the first record, then
 * coll_decode_next_at() gives the records as coll_decode_next() does. */
struct coll_dec_pos {
    size_t off;
    uint32_t idx;
};
void coll_decode_first(const struct coll_dec *d, struct coll_dec_pos *pos);
int coll_decode_next_at(const struct coll_dec *d, struct coll_dec_pos *pos,
                        struct coll_span *out);

/* TLV iteration over bytes that coll_decode() validated (the info block of a
 * coll_span).  coll_tlv_next() returns 1 and fills *t, or 0 at the end. */
void coll_tlv_begin(struct coll_tlv_iter *it, const uint8_t *p, size_t len);
int coll_tlv_next(struct coll_tlv_iter *it, struct coll_tlv *t);

/* Re-read one span record that coll_decode() accepted, copied elsewhere
 * (`rec` holds its rec_len bytes): fills *out as coll_decode_next() did. */
void coll_decode_record(const uint8_t *rec, struct coll_span *out);

/* Re-read a process block that coll_decode() accepted (`len` bytes, copied
 * elsewhere) into *out, as coll_decode() filled d->proc. */
void coll_decode_proc(const uint8_t *p, size_t len, struct coll_proc *out);

/* "ok", "short", "big_endian", "bad_magic", ... (static strings). */
const char *coll_dec_reason(int err);

#endif
