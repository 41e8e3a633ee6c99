/*
 * collector/headers.h - the sending side of OSProfiler's trace headers
 * (compat §2.1), for `ldprof headers`.  The preload has its own copy in
 * preload/propagation.c; the two only share the specification (and the
 * vectors in tests), not code, by the dependency rule (collector/ ->
 * include/ only).
 */
#ifndef LDPROF_COLLECTOR_HEADERS_H
#define LDPROF_COLLECTOR_HEADERS_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* X-Trace-Info and X-Trace-HMAC for (key, base_id, parent_id):
 *   info = base64url-with-padding( {"base_id": "<b>", "parent_id": "<p>"} )
 *          (Python json.dumps defaults: ", " and ": ", ensure_ascii)
 *   hmac = lower-case hex HMAC-SHA1(key bytes, info text)
 * `info` receives the header value (appended); hmac_hex 41 bytes.
 * Returns 0 or -1 (allocation or OpenSSL failure). */
int coll_headers_sign(const char *key, size_t keylen, const char *base_id,
                      const char *parent_id, struct coll_buf *info, char hmac_hex[41]);

/* A random UUID4 (getrandom). 0 or -1. */
int coll_uuid4(uint8_t out[16]);

#endif
