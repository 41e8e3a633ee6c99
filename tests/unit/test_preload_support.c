/*
 * tests/unit/test_preload_support.c - what the preload unit suites share.
 *
 * The unit binary links the preload modules (config, log, span, buffer,
 * http, exec, propagation) but never the constructor, the wrappers or the
 * flusher thread: the test runner is not preloaded.  This file stands in
 * for transport.c (the two functions buffer.c calls) and offers helpers to
 * read back the span records the code under test produced.
 *
 * Helpers (declared `extern` by each suite, to keep to one file per suite):
 *   tp_setup()           config defaults, keyring "SECRET_KEY", pool, tables
 *   tp_collect(out, max) drain every buffer into decoded spans
 *   tp_sign(...)         X-Trace-Info / X-Trace-HMAC for ids, key SECRET_KEY
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ldprof/wire.h"
#include "preload/buffer.h"
#include "preload/config.h"
#include "preload/http.h"
#include "preload/init.h"
#include "preload/log.h"
#include "preload/propagation.h"
#include "preload/span.h"

/* --- transport.c stand-ins -------------------------------------------- */
int tp_kicks;
void ldprof_xport_kick(void)
{
    tp_kicks++;
}
void ldprof_xport_ensure_started(void)
{
}

/* --- helpers ------------------------------------------------------------ */

struct tp_span {
    int kind, flags;
    uint8_t base[16], trace[16], parent[16];
    uint64_t start, end;
    int nfields;
    char key[16][64];
    char val[16][2100];
    int stop[16];
};

static const char *tp_env_none(const char *name)
{
    (void)name;
    return NULL;
}

void tp_setup(void)
{
    ldprof_log_level = LDPROF_LOG_OFF; /* the suites provoke warnings on purpose */
    ldprof_config_load(&ldprof_cfg, NULL, tp_env_none);
    ldprof_cfg.warnings = 0;
    ldprof_keyrings_init("SECRET_KEY");
    cr_assert_eq(ldprof_span_pool_init(), 0);
    cr_assert_eq(ldprof_buf_init(), 0);
    cr_assert_eq(ldprof_http_init(), 0);
    ldprof_on = 1;
}

static struct tp_span *tp_out;
static int tp_max, tp_n;

static void tp_send(const uint8_t *recs, size_t len, uint32_t nrec, void *arg)
{
    size_t off = 0;
    (void)arg;
    for (uint32_t i = 0; i < nrec; i++) {
        struct ldprof_wire_span w;
        cr_assert_leq(off + sizeof(w), len);
        memcpy(&w, recs + off, sizeof(w));
        cr_assert_eq(w.rec_len, sizeof(w) + w.info_len);
        if (tp_n < tp_max) {
            struct tp_span *s = &tp_out[tp_n];
            size_t p = off + sizeof(w), end = off + w.rec_len;
            memset(s, 0, sizeof(*s));
            s->kind = w.kind;
            s->flags = w.flags;
            memcpy(s->base, w.base_id, 16);
            memcpy(s->trace, w.trace_id, 16);
            memcpy(s->parent, w.parent_id, 16);
            s->start = w.start_ns;
            s->end = w.end_ns;
            while (p < end && s->nfields < 16) {
                struct ldprof_wire_tlv t;
                memcpy(&t, recs + p, sizeof(t));
                p += sizeof(t);
                cr_assert_leq(p + t.klen + t.vlen, end, "TLV overruns its record");
                snprintf(s->key[s->nfields], 64, "%.*s", t.klen, (const char *)recs + p);
                p += t.klen;
                if ((t.type & 0x7f) == LDPROF_TLV_INT) {
                    int64_t v;
                    memcpy(&v, recs + p, 8);
                    snprintf(s->val[s->nfields], sizeof(s->val[0]), "%lld", (long long)v);
                } else {
                    snprintf(s->val[s->nfields], sizeof(s->val[0]), "%.*s", t.vlen, (const char *)recs + p);
                }
                s->stop[s->nfields] = !!(t.type & LDPROF_TLV_STOP);
                p += t.vlen;
                s->nfields++;
            }
        }
        tp_n++;
        off += w.rec_len;
    }
    cr_assert_eq(off, len);
}

int tp_collect(struct tp_span *out, int max)
{
    tp_out = out;
    tp_max = max;
    tp_n = 0;
    ldprof_buf_drain_all(tp_send, NULL, -1);
    return tp_n;
}

/* The value of field @key (start fields unless @stop), or NULL. */
const char *tp_field(const struct tp_span *s, const char *key, int stop)
{
    for (int i = 0; i < s->nfields; i++)
        if (s->stop[i] == stop && strcmp(s->key[i], key) == 0)
            return s->val[i];
    return NULL;
}

void tp_sign(const uint8_t base[16], const uint8_t parent[16], char info[LDPROF_TRACE_INFO_SIZE],
             char hmac[LDPROF_TRACE_HMAC_SIZE])
{
    cr_assert_eq(ldprof_trace_sign(ldprof_keyring(), 0, base, parent, info,
                                   LDPROF_TRACE_INFO_SIZE, hmac),
                 LDPROF_TRACE_INFO_LEN);
}
