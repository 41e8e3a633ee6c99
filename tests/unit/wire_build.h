/*
 * tests/unit/wire_build.h - build ldprof wire datagrams (include/ldprof/wire.h)
 * in tests, byte by byte in little-endian, independent of the preload's own
 * encoder and of the collector's decoder (so a test of one is not a copy of
 * the other).  Header-only; every function is static and may go unused.
 *
 *     struct wb b;
 *     wb_begin(&b, LDPROF_MSG_SPANS, 4242, 0);
 *     wb_proc(&b, "host", "host-a");
 *     wb_proc(&b, "service", "demo-api");
 *     wb_span_begin(&b, LDPROF_KIND_WSGI, 0, base, trace, parent, t0, t1);
 *     wb_str(&b, 0, "request.path", "/v2/queues");
 *     wb_str(&b, LDPROF_TLV_STOP, "etype", "OSError");
 *     wb_span_end(&b);
 *     size_t len = wb_finish(&b);      // b.buf[0..len) is the datagram
 *
 * The buffer is larger than LDPROF_WIRE_MAX_DGRAM so tests can build
 * oversize datagrams; nothing here checks what the collector must check.
 * Overflowing the buffer aborts the test.
 */
#ifndef LDPROF_TESTS_WIRE_BUILD_H
#define LDPROF_TESTS_WIRE_BUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ldprof/wire.h"

#define WB_CAP (LDPROF_WIRE_MAX_DGRAM + 8192)
#define WB_UNUSED __attribute__((unused))

struct wb {
    uint8_t buf[WB_CAP];
    size_t len;
    uint32_t nrec;
    size_t rec_off; /* offset of the open record head, 0 when none */
    int have_records;
};

static WB_UNUSED void wb_put(struct wb *b, const void *p, size_t n)
{
    if (b->len + n > WB_CAP)
        abort();
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static WB_UNUSED void wb_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static WB_UNUSED void wb_put_le(struct wb *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    wb_le(t, v, bytes);
    wb_put(b, t, (size_t)bytes);
}

/* Start a datagram: header with magic/version/type/pid/dropped; len, nrec
 * and proc_len are filled in by wb_finish(). */
static WB_UNUSED void wb_begin(struct wb *b, uint16_t type, uint32_t pid, uint64_t dropped)
{
    memset(b, 0, sizeof *b);
    wb_put_le(b, LDPROF_WIRE_MAGIC, 4);
    wb_put_le(b, LDPROF_WIRE_VERSION, 2);
    wb_put_le(b, type, 2);
    wb_put_le(b, 0, 4); /* len */
    wb_put_le(b, pid, 4);
    wb_put_le(b, 0, 4); /* nrec */
    wb_put_le(b, 0, 2); /* proc_len */
    wb_put_le(b, 0, 2); /* reserved */
    wb_put_le(b, dropped, 8);
}

/* Any TLV (type may include LDPROF_TLV_STOP). */
static WB_UNUSED void wb_tlv(struct wb *b, uint8_t type, const char *key, const void *val,
                             size_t vlen)
{
    size_t klen = strlen(key);
    uint8_t h[4] = {type, (uint8_t)klen, 0, 0};
    wb_le(h + 2, vlen, 2);
    wb_put(b, h, 4);
    wb_put(b, key, klen);
    wb_put(b, val, vlen);
    if (b->rec_off) {
        /* keep the open record's info_len/rec_len current */
        size_t info = b->len - b->rec_off - sizeof(struct ldprof_wire_span);
        wb_le(b->buf + b->rec_off + 0, sizeof(struct ldprof_wire_span) + info, 2);
        wb_le(b->buf + b->rec_off + 72, info, 2);
    }
}

/* A process block entry (STR); call before the first record. */
static WB_UNUSED void wb_proc(struct wb *b, const char *key, const char *val)
{
    wb_tlv(b, LDPROF_TLV_STR, key, val, strlen(val));
}

static WB_UNUSED void wb_span_begin(struct wb *b, uint8_t kind, uint8_t flags,
                                    const uint8_t base[16], const uint8_t trace[16],
                                    const uint8_t parent[16], uint64_t start_ns,
                                    uint64_t end_ns)
{
    if (!b->have_records) {
        /* the process block ends here */
        wb_le(b->buf + 20, b->len - sizeof(struct ldprof_wire_hdr), 2);
        b->have_records = 1;
    }
    b->rec_off = b->len;
    wb_put_le(b, sizeof(struct ldprof_wire_span), 2); /* rec_len */
    uint8_t kf[2] = {kind, flags};
    wb_put(b, kf, 2);
    wb_put_le(b, 777, 4); /* tid */
    wb_put(b, base, 16);
    wb_put(b, trace, 16);
    wb_put(b, parent, 16);
    wb_put_le(b, start_ns, 8);
    wb_put_le(b, end_ns, 8);
    wb_put_le(b, 0, 2); /* info_len */
    wb_put_le(b, 0, 2);
    wb_put_le(b, 0, 4);
}

static WB_UNUSED void wb_str(struct wb *b, uint8_t stop, const char *key, const char *val)
{
    wb_tlv(b, (uint8_t)(LDPROF_TLV_STR | stop), key, val, strlen(val));
}

static WB_UNUSED void wb_json(struct wb *b, uint8_t stop, const char *key, const char *json)
{
    wb_tlv(b, (uint8_t)(LDPROF_TLV_JSON | stop), key, json, strlen(json));
}

static WB_UNUSED void wb_int(struct wb *b, uint8_t stop, const char *key, int64_t v)
{
    uint8_t t[8];
    wb_le(t, (uint64_t)v, 8);
    wb_tlv(b, (uint8_t)(LDPROF_TLV_INT | stop), key, t, 8);
}

static WB_UNUSED void wb_span_end(struct wb *b)
{
    b->rec_off = 0;
    b->nrec++;
}

/* Fill len, nrec and proc_len; returns the datagram length. */
static WB_UNUSED size_t wb_finish(struct wb *b)
{
    if (!b->have_records)
        wb_le(b->buf + 20, b->len - sizeof(struct ldprof_wire_hdr), 2);
    wb_le(b->buf + 8, b->len, 4);
    wb_le(b->buf + 16, b->nrec, 4);
    return b->len;
}

/* A deterministic UUID4-shaped id: "5ca1ab1e-0000-4000-8000-<n as 12 hex>"
 * with `hi` in the first four bytes. */
static WB_UNUSED void wb_id(uint8_t out[16], uint32_t hi, uint64_t n)
{
    memset(out, 0, 16);
    out[0] = (uint8_t)(hi >> 24);
    out[1] = (uint8_t)(hi >> 16);
    out[2] = (uint8_t)(hi >> 8);
    out[3] = (uint8_t)hi;
    out[6] = 0x40;
    out[8] = 0x80;
    for (int i = 0; i < 6; i++)
        out[15 - i] = (uint8_t)(n >> (8 * i));
}

#endif
