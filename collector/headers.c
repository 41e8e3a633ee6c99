/*
 * collector/headers.c - X-Trace-Info / X-Trace-HMAC signing (see headers.h).
 */
#include "headers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

int coll_headers_sign(const char *key, size_t keylen, const char *base_id,
                      const char *parent_id, struct coll_buf *info, char hmac_hex[41])
{
    struct coll_buf js, b64;
    int rc = -1;
    coll_buf_init(&js);
    coll_buf_init(&b64);
    coll_buf_adds(&js, "{\"base_id\": ");
    coll_json_string(&js, base_id, strlen(base_id));
    coll_buf_adds(&js, ", \"parent_id\": ");
    coll_json_string(&js, parent_id, strlen(parent_id));
    coll_buf_addc(&js, '}');
    if (js.oom || js.len > (size_t)INT32_MAX / 2)
        goto out;

    /* EVP_EncodeBlock: standard alphabet with '=' padding, NUL-terminated;
     * then the RFC 4648 §5 URL-safe alphabet. */
    size_t cap = 4 * ((js.len + 2) / 3) + 1;
    char *enc = malloc(cap);
    if (!enc)
        goto out;
    int n = EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)js.p, (int)js.len);
    for (int i = 0; i < n; i++) {
        if (enc[i] == '+')
            enc[i] = '-';
        else if (enc[i] == '/')
            enc[i] = '_';
    }
    coll_buf_add(&b64, enc, (size_t)n);
    free(enc);
    if (b64.oom)
        goto out;

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha1(), key, (int)keylen, (const unsigned char *)b64.p, b64.len, md,
              &mdlen) ||
        mdlen != 20)
        goto out;
    static const char hx[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen; i++) {
        hmac_hex[2 * i] = hx[md[i] >> 4];
        hmac_hex[2 * i + 1] = hx[md[i] & 15];
    }
    hmac_hex[40] = '\0';
    rc = coll_buf_add(info, b64.p, b64.len);
out:
    coll_buf_free(&js);
    coll_buf_free(&b64);
    return rc;
}

int coll_uuid4(uint8_t out[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(out + got, 16 - got, 0);
        if (r < 0)
            return -1;
        got += (size_t)r;
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
    return 0;
}
