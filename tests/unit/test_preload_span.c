/*
 * tests/unit/test_preload_span.c - the field writers' one fast path
 * (span.h ldprof_span_put) as the library's own calls reach it: literal
 * keys with constant value lengths (written in place at the call site),
 * literal keys with a value of variable length (span.c's writer, told the
 * key's length), and keys of unknown length (measured with strlen), all
 * writing the same bytes, flags and lengths, at every amount of room left
 * in the span's info, including none (a string cut to what fits, the span
 * marked truncated).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "ldprof/wire.h"
#include "preload/span.h"

extern void tp_setup(void);

static void setup(void)
{
    tp_setup();
}

TestSuite(preload_span, .init = setup);

/* A span whose info has exactly @room bytes left (a 1-byte-key filler
 * field, written by the out-of-line writer), or all of them. */
static struct ldprof_span *span_with_room(size_t room)
{
    static const uint8_t id[16] = {9};
    static char fill[LDPROF_WIRE_MAX_INFO];
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_WSGI, id, id, 0);

    cr_assert_not_null(s);
    memset(fill, 'f', sizeof fill);
    if (room < LDPROF_WIRE_MAX_INFO) {
        cr_assert_geq(LDPROF_WIRE_MAX_INFO - room, 5);
        cr_assert_eq(ldprof_span_add_k(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "f", 1, fill,
                                       LDPROF_WIRE_MAX_INFO - room - 5),
                     0);
    }
    cr_assert_eq(s->info_len, LDPROF_WIRE_MAX_INFO - room);
    return s;
}

/* The fields of preload/http.c's wsgi span and hooks/libpq.c, with the
 * keys as literals (the form the call sites use) ... */
static void fields_literal(struct ldprof_span *s, int *ret, const char *path, size_t plen,
                           const int64_t *port)
{
    ret[0] = ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.scheme", "http", 4);
    ret[1] = ldprof_span_add(s, LDPROF_FIELD_STOP, LDPROF_TLV_INT, "request.port", port,
                             sizeof(*port));
    ret[2] = ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "request.path", path, plen);
    ret[3] = ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_JSON, "db.params", "[]", 2);
    ret[4] = ldprof_span_add(s, LDPROF_FIELD_STOP, LDPROF_TLV_STR, "x", path, plen);
}

/* ... and with keys whose length the compiler cannot know. */
static void fields_measured(struct ldprof_span *s, int *ret, const char *path, size_t plen,
                            const int64_t *port)
{
    static const char *volatile keys[] = {"request.scheme", "request.port", "request.path",
                                          "db.params", "x"};

    ret[0] = ldprof_span_add_k(s, LDPROF_FIELD_START, LDPROF_TLV_STR, keys[0], -1, "http", 4);
    ret[1] = ldprof_span_add_k(s, LDPROF_FIELD_STOP, LDPROF_TLV_INT, keys[1], -1, port,
                               sizeof(*port));
    ret[2] = ldprof_span_add_k(s, LDPROF_FIELD_START, LDPROF_TLV_STR, keys[2], -1, path, plen);
    ret[3] = ldprof_span_add_k(s, LDPROF_FIELD_START, LDPROF_TLV_JSON, keys[3], -1, "[]", 2);
    ret[4] = ldprof_span_add_k(s, LDPROF_FIELD_STOP, LDPROF_TLV_STR, keys[4], -1, path, plen);
}

Test(preload_span, literal_keys_write_the_bytes_of_measured_keys)
{
    static char path[200];
    const int64_t port = 8888;

    for (size_t i = 0; i < sizeof path; i++)
        path[i] = (char)('a' + i % 26);
    for (size_t plen = 0; plen <= 40; plen += 20) {
        for (size_t room = 0; room <= LDPROF_WIRE_MAX_INFO; room++) {
            struct ldprof_span *a, *b;
            int ra[5], rb[5];
            volatile size_t vplen = plen; /* a length the compiler cannot know */

            if (room > 160 && room < LDPROF_WIRE_MAX_INFO - 5)
                continue; /* all fit: once is enough (room 160 and all of it) */
            if (room > LDPROF_WIRE_MAX_INFO - 5 && room < LDPROF_WIRE_MAX_INFO)
                continue; /* a filler field takes 5 bytes at least */
            a = span_with_room(room);
            b = span_with_room(room);
            fields_literal(a, ra, path, vplen, &port);
            fields_measured(b, rb, path, vplen, &port);
            cr_assert_eq(memcmp(ra, rb, sizeof ra), 0, "room %zu path %zu: return values", room,
                         plen);
            cr_assert_eq(a->info_len, b->info_len, "room %zu path %zu: info length", room, plen);
            cr_assert_eq(memcmp(a->info, b->info, a->info_len), 0, "room %zu path %zu: bytes",
                         room, plen);
            cr_assert_eq(a->w.flags, b->w.flags, "room %zu path %zu: flags", room, plen);
            /* never past the info's end: a field that does not fit is
             * cut or dropped, and the span marked (all five take
             * 82 bytes and twice the path's length) */
            cr_assert_leq(a->info_len, LDPROF_WIRE_MAX_INFO, "room %zu path %zu", room, plen);
            cr_assert_eq(ra[0] == 0, room >= 4 + 14 + 4, "room %zu: the first field", room);
            cr_assert_eq(!!(a->w.flags & LDPROF_SPAN_TRUNCATED),
                         a->info_len - (LDPROF_WIRE_MAX_INFO - room) < 82 + 2 * plen,
                         "room %zu path %zu: truncated flag", room, plen);
            ldprof_span_discard(a);
            ldprof_span_discard(b);
        }
    }
}

/* With room for all of them, the reference encoder's bytes, START/STOP
 * types included. */
Test(preload_span, literal_keys_write_the_reference_encoding)
{
    static const char path[] = "/v2/queues/q1/messages";
    struct ldprof_span *s = span_with_room(LDPROF_WIRE_MAX_INFO);
    const int64_t port = -5;
    uint8_t want[512];
    size_t used = 0;
    int r[5], n;

    fields_literal(s, r, path, strlen(path), &port);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(r[i], 0);
#define REF(type, key, val, vlen)                                                               \
    do {                                                                                        \
        n = ldprof_tlv_put(want + used, sizeof want - used, (type), (key), strlen(key), (val), \
                           (vlen));                                                             \
        cr_assert_gt(n, 0);                                                                     \
        used += (size_t)n;                                                                      \
    } while (0)
    REF(LDPROF_TLV_STR, "request.scheme", "http", 4);
    REF(LDPROF_TLV_INT | LDPROF_TLV_STOP, "request.port", &port, sizeof port);
    REF(LDPROF_TLV_STR, "request.path", path, strlen(path));
    REF(LDPROF_TLV_JSON, "db.params", "[]", 2);
    REF(LDPROF_TLV_STR | LDPROF_TLV_STOP, "x", path, strlen(path));
#undef REF
    cr_assert_eq(s->info_len, used);
    cr_assert_eq(memcmp(s->info, want, used), 0);
    cr_assert_eq(s->w.flags & LDPROF_SPAN_TRUNCATED, 0);
    ldprof_span_discard(s);
}

/* Out-of-range arguments are refused as before: no span, no key. */
Test(preload_span, null_span_or_key_refused)
{
    struct ldprof_span *s = span_with_room(LDPROF_WIRE_MAX_INFO);
    const char *volatile nokey = NULL;

    cr_assert_eq(ldprof_span_add(NULL, LDPROF_FIELD_START, LDPROF_TLV_STR, "k", "v", 1), -1);
    cr_assert_eq(ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, nokey, "v", 1), -1);
    cr_assert_eq(s->info_len, 0);
    ldprof_span_discard(s);
}
