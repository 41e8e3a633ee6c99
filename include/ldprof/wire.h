/*
 * ldprof/wire.h - the record format between libldprof.so and ldprof-collectord.
 *
 * This header is the only thing the preload and the collector share.  The
 * preload batches span records per thread and its flusher thread sends each
 * batch as ONE datagram on a SOCK_DGRAM unix socket.  The collector trusts
 * nothing: it checks the magic, the version, every length against the
 * datagram's real size, and drops (and counts) anything that does not fit.
 * (Every check, and the reason a rejected datagram is counted under, is
 * listed in docs/formats.md §1.5; among them: reserved fields must be 0, no
 * id may be all-zero, keys are dotted paths of printable ASCII without
 * spaces or empty segments, INT values are exactly 8 bytes, JSON values must
 * parse.  STR values need not be valid UTF-8: bad sequences become U+FFFD.)
 *
 * All integers are little-endian (the host order of every platform ldprof
 * supports; the collector rejects a big-endian magic).  Structures are packed
 * by construction (explicit sizes, no implicit padding) and checked with
 * static asserts below.
 *
 * Datagram layout (version 1):
 *
 *   struct ldprof_wire_hdr       (32 bytes)
 *   process block                (hdr.proc_len bytes: TLV entries, see below)
 *   record 0 .. record nrec-1    (each: struct ldprof_wire_span + info bytes)
 *
 * The process block carries per-process strings (host, service, project,
 * exe) as TLV entries so that each datagram is self-describing.
 *
 * A record is a fixed struct ldprof_wire_span followed by `info_len` bytes of
 * TLV entries.  Each TLV entry:
 *
 *   uint8_t  type   (LDPROF_TLV_STR / _INT / _JSON, OR-ed with LDPROF_TLV_STOP
 *                    when the field belongs to the span's stop event)
 *   uint8_t  klen   key length (1..255), a dotted path such as "request.path"
 *                   or "db.statement": the collector nests it into objects
 *   uint16_t vlen   value length
 *   key bytes, value bytes   (STR: UTF-8 text, not NUL-terminated;
 *                             INT: 8 bytes, int64; JSON: a JSON text)
 *
 * Ids are 16 raw bytes (a UUID4); they are written outside as lower-case
 * 8-4-4-4-12 hex.  Times are CLOCK_REALTIME nanoseconds since the epoch.
 */
#ifndef LDPROF_WIRE_H
#define LDPROF_WIRE_H

#include <stdint.h>

#define LDPROF_WIRE_MAGIC 0x4650444cu /* "LDPF" read as little-endian bytes */
#define LDPROF_WIRE_VERSION 1

/* Largest datagram the preload sends and the collector accepts. */
#define LDPROF_WIRE_MAX_DGRAM 65536
/* Largest info block of one span record. */
#define LDPROF_WIRE_MAX_INFO 2048

enum ldprof_wire_type {
    LDPROF_MSG_SPANS = 1, /* nrec span records */
    LDPROF_MSG_STATS = 2, /* no records; the header's counters only */
};

struct ldprof_wire_hdr {
    uint32_t magic;    /* LDPROF_WIRE_MAGIC */
    uint16_t version;  /* LDPROF_WIRE_VERSION */
    uint16_t type;     /* enum ldprof_wire_type */
    uint32_t len;      /* total datagram length in bytes, header included */
    uint32_t pid;      /* sending process */
    uint32_t nrec;     /* number of span records that follow */
    uint16_t proc_len; /* bytes of the process block after the header */
    uint16_t reserved; /* 0 */
    uint64_t dropped;  /* spans this process dropped so far (cumulative) */
};

/* Span categories: the OSProfiler point names. */
enum ldprof_span_kind {
    LDPROF_KIND_WSGI = 1,    /* inbound HTTP request */
    LDPROF_KIND_HTTP = 2,    /* outbound HTTP request */
    LDPROF_KIND_DB = 3,      /* SQL through libpq */
    LDPROF_KIND_MONGODB = 4, /* libmongoc */
    LDPROF_KIND_REDIS = 5,   /* hiredis */
    LDPROF_KIND_POOLING = 6, /* connection-pool checkout/return */
    LDPROF_KIND_NET = 7,     /* raw socket span */
    LDPROF_KIND_MAX = 7,
};

/* Span flags. */
#define LDPROF_SPAN_ERROR 0x01     /* the stop event carries etype/message */
#define LDPROF_SPAN_TRUNCATED 0x02 /* some info fields did not fit */
#define LDPROF_SPAN_UNFINISHED 0x04 /* no stop: the process ended mid-span */

struct ldprof_wire_span {
    uint16_t rec_len;    /* sizeof(struct ldprof_wire_span) + info_len */
    uint8_t kind;        /* enum ldprof_span_kind */
    uint8_t flags;       /* LDPROF_SPAN_* */
    uint32_t tid;        /* thread that recorded it */
    uint8_t base_id[16];
    uint8_t trace_id[16];
    uint8_t parent_id[16];
    uint64_t start_ns;   /* CLOCK_REALTIME */
    uint64_t end_ns;     /* CLOCK_REALTIME; == start_ns when unfinished */
    uint16_t info_len;   /* TLV bytes after this struct */
    uint16_t reserved;   /* 0 */
    uint32_t reserved2;  /* 0 */
};

#define LDPROF_TLV_STR 1
#define LDPROF_TLV_INT 2
#define LDPROF_TLV_JSON 3
#define LDPROF_TLV_STOP 0x80 /* field goes into the stop event's info */

struct ldprof_wire_tlv {
    uint8_t type;
    uint8_t klen;
    uint16_t vlen;
    /* key bytes, then value bytes */
};

/* Process block keys (LDPROF_TLV_STR entries). */
#define LDPROF_PROC_HOST "host"
#define LDPROF_PROC_SERVICE "service"
#define LDPROF_PROC_PROJECT "project"
#define LDPROF_PROC_EXE "exe"

_Static_assert(sizeof(struct ldprof_wire_hdr) == 32, "wire header is 32 bytes");
_Static_assert(sizeof(struct ldprof_wire_span) == 80, "span record head is 80 bytes");
_Static_assert(sizeof(struct ldprof_wire_tlv) == 4, "tlv head is 4 bytes");

#endif
