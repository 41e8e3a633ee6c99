/*
 * test_collector_json.c - collector/json.c reproduces Python's json.dumps
 * byte for byte.  Expected strings were produced with /usr/bin/python3
 * (json.dumps, default options unless said otherwise).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collector/json.h"

TestSuite(collector_json);

static char *dump(json_t *v, int indent)
{
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, v, indent), 0);
    json_decref(v);
    return b.p; /* caller frees */
}

static char *str_bytes(const char *s, size_t n)
{
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_string(&b, s, n), 0);
    return b.p;
}

Test(collector_json, string_escapes)
{
    static const char in[] = "a\x01\x7f\n\t\r\b\f\"\\/\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\0z";
    char *o = str_bytes(in, sizeof in - 1);
    cr_assert_str_eq(o, "\"a\\u0001\\u007f\\n\\t\\r\\b\\f\\\"\\\\/\\u00e9\\ud83d\\ude00"
                        "\\u2028\\u0000z\"");
    free(o);
}

Test(collector_json, invalid_utf8_is_replaced_like_python)
{
    /* b'...'.decode('utf-8', 'replace') then json.dumps */
    static const char a[] = "ab\xff\xc3(\xe2\x82\xf0\x9f\x98";
    char *o = str_bytes(a, sizeof a - 1);
    cr_assert_str_eq(o, "\"ab\\ufffd\\ufffd(\\ufffd\\ufffd\"");
    free(o);
    static const char b[] = "\xed\xa0\x80x\xc0\xafy\xf4\x90\x80\x80z";
    o = str_bytes(b, sizeof b - 1);
    cr_assert_str_eq(o, "\"\\ufffd\\ufffd\\ufffdx\\ufffd\\ufffdy\\ufffd\\ufffd\\ufffd\\ufffdz\"");
    free(o);

    struct coll_buf s;
    coll_buf_init(&s);
    cr_assert_eq(coll_utf8_sanitize(&s, a, sizeof a - 1), 0);
    cr_assert_eq(s.len, 2 + 3 + 3 + 1 + 3 + 3);
    cr_assert(memcmp(s.p, "ab\xef\xbf\xbd\xef\xbf\xbd(", 9) == 0);
    coll_buf_free(&s);
}

Test(collector_json, reals_like_python_repr)
{
    static const struct {
        double d;
        const char *want;
    } v[] = {
        {1.0, "1.0"},        {0.1, "0.1"},       {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},            {1e-5, "1e-05"},
        {0.0001, "0.0001"},  {-0.0, "-0.0"},     {1.5e300, "1.5e+300"},
        {123456789.123, "123456789.123"},        {2.5e-7, "2.5e-07"},
        {1e22, "1e+22"},     {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
        {100.0, "100.0"},    {0.30000000000000004, "0.30000000000000004"},
        {-12.5, "-12.5"},    {0.0, "0.0"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        coll_json_real(out, v[i].d);
        cr_assert_str_eq(out, v[i].want, "%.17g", v[i].d);
    }
    char out[32];
    coll_json_real(out, NAN);
    cr_assert_str_eq(out, "NaN");
    coll_json_real(out, -INFINITY);
    cr_assert_str_eq(out, "-Infinity");
}

Test(collector_json, layouts)
{
    json_error_t je;
    const char *src = "{\"a\": [], \"b\": {}, \"c\": [1, {}], \"d\": {\"x\": null, \"y\": [true,"
                      " false]}, \"e\": \"s\"}";
    char *o = dump(json_loads(src, 0, &je), 2);
    cr_assert_str_eq(o, "{\n  \"a\": [],\n  \"b\": {},\n  \"c\": [\n    1,\n    {}\n  ],\n"
                        "  \"d\": {\n    \"x\": null,\n    \"y\": [\n      true,\n      false\n"
                        "    ]\n  },\n  \"e\": \"s\"\n}");
    free(o);
    o = dump(json_loads(src, 0, &je), COLL_JSON_COMPACT);
    cr_assert_str_eq(o, src);
    free(o);
    o = dump(json_integer(-9223372036854775807LL - 1), 2);
    cr_assert_str_eq(o, "-9223372036854775808");
    free(o);
    o = dump(json_string(""), COLL_JSON_COMPACT);
    cr_assert_str_eq(o, "\"\"");
    free(o);
}

Test(collector_json, key_order_is_insertion_order)
{
    json_t *o = json_object();
    json_object_set_new(o, "z", json_integer(1));
    json_object_set_new(o, "a", json_integer(2));
    json_object_set_new(o, "m", json_integer(3));
    json_object_set_new(o, "z", json_integer(4)); /* replaced in place, like a dict */
    char *s = dump(o, COLL_JSON_COMPACT);
    cr_assert_str_eq(s, "{\"z\": 4, \"a\": 2, \"m\": 3}");
    free(s);
}

Test(collector_json, keys_are_escaped)
{
    json_t *o = json_object();
    json_object_set_new(o, "k\xc3\xa9\n", json_true());
    char *s = dump(o, COLL_JSON_COMPACT);
    cr_assert_str_eq(s, "{\"k\\u00e9\\n\": true}");
    free(s);
}

Test(collector_json, too_deep_fails_cleanly)
{
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < COLL_JSON_MAX_DEPTH + 10; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, root, COLL_JSON_COMPACT), -1);
    coll_buf_free(&b);
    json_decref(root);
}

Test(collector_json, buffer_printf_and_growth)
{
    struct coll_buf b;
    coll_buf_init(&b);
    for (int i = 0; i < 1000; i++)
        coll_buf_printf(&b, "%04d", i);
    cr_assert_eq(b.len, 4000);
    cr_assert_eq(strncmp(b.p + 3996, "0999", 4), 0);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    coll_buf_printf(&b, "[%s]", big);
    cr_assert_eq(b.len, 4000 + 1001);
    cr_assert_eq(b.p[b.len], '\0');
    coll_buf_reset(&b);
    cr_assert_eq(b.len, 0);
    coll_buf_free(&b);
}
