/*
 * tests/unit/test_preload_config.c - preload/config.c: defaults, profiler.ini,
 * LDPROF_* environment, precedence, bad values, unknown keys, the dump.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload/config.h"
#include "preload/log.h"

/* A fake environment: NAME=value entries, NULL-terminated. */
static const char *fake_env[16];

static const char *env_get(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; fake_env[i]; i++)
        if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=')
            return fake_env[i] + n + 1;
    return NULL;
}

static void set_env(const char *const *vars)
{
    int i = 0;
    for (; vars && vars[i]; i++)
        fake_env[i] = vars[i];
    fake_env[i] = NULL;
}

static char ini_path[64];

static const char *write_ini(const char *text)
{
    snprintf(ini_path, sizeof(ini_path), "/tmp/ldprof-test-ini.XXXXXX");
    int fd = mkstemp(ini_path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return ini_path;
}

static void cleanup(void)
{
    if (ini_path[0])
        unlink(ini_path);
}

static void init(void)
{
    /* warnings are part of what is tested: keep stderr quiet */
    ldprof_log_level = LDPROF_LOG_OFF;
    set_env(NULL);
}

TestSuite(preload_config, .init = init, .fini = cleanup);

Test(preload_config, defaults_are_valid_and_documented_values)
{
    struct ldprof_config c;
    extern char *program_invocation_short_name;
    char want[128];

    ldprof_config_load(&c, NULL, env_get);
    cr_assert_eq(c.warnings, 0, "every built-in default must parse");
    cr_assert_eq(c.enabled, 1);
    cr_assert_str_eq(c.hmac_keys, "SECRET_KEY");
    cr_assert_eq(c.trace_wsgi, 1);
    cr_assert_eq(c.trace_socket, 0);
    cr_assert_eq(c.trace_mongodb, 1);
    cr_assert_eq(c.trace_redis, 1);
    cr_assert_eq(c.trace_sqlalchemy, 1);
    cr_assert_eq(c.trace_pooling, 1);
    cr_assert_eq(c.record_values, 0);
    cr_assert_str_eq(c.project, "");
    cr_assert_str_eq(c.profile, "");
    cr_assert_eq(c.log_level, LDPROF_LOG_WARN);
    cr_assert_str_eq(c.service, program_invocation_short_name);
    cr_assert_eq(c.src[LDPROF_OPT_service], LDPROF_SRC_COMPUTED);
    snprintf(want, sizeof(want), "/tmp/ldprof-%u/collector.sock", (unsigned)getuid());
    cr_assert_str_eq(c.collector, want);
    cr_assert_eq(c.src[LDPROF_OPT_enabled], LDPROF_SRC_DEFAULT);
}

Test(preload_config, collector_default_follows_xdg_runtime_dir)
{
    struct ldprof_config c;
    static const char *const env[] = {"XDG_RUNTIME_DIR=/run/user/1000", NULL};

    set_env(env);
    ldprof_config_load(&c, NULL, env_get);
    cr_assert_str_eq(c.collector, "/run/user/1000/ldprof/collector.sock");
}

Test(preload_config, file_then_environment_env_wins)
{
    struct ldprof_config c;
    const char *p = write_ini("; comment\n"
                              "[DEFAULT]\nfoo = bar\n"
                              "[profiler]\n"
                              "enabled = false\n"
                              "hmac_keys = key-A, key-B ,key-C\n"
                              "trace_redis = no\n"
                              "service = from-file\n"
                              "project = demo\n"
                              "collector = /run/ldprof/c.sock\n"
                              "log_level = debug\n"
                              "[database]\nconnection = x\n");
    static const char *env[] = {"LDPROF_ENABLED=1", "LDPROF_SERVICE=from-env", NULL, NULL};
    char cfgvar[128];

    snprintf(cfgvar, sizeof(cfgvar), "LDPROF_CONFIG=%s", p);
    env[2] = cfgvar;
    set_env(env);
    ldprof_config_load(&c, NULL, env_get);
    cr_assert_eq(c.warnings, 0);
    cr_assert_str_eq(c.file, p);
    cr_assert_eq(c.enabled, 1, "env beats file");
    cr_assert_eq(c.src[LDPROF_OPT_enabled], LDPROF_SRC_ENV);
    cr_assert_str_eq(c.service, "from-env");
    cr_assert_str_eq(c.hmac_keys, "key-A, key-B ,key-C");
    cr_assert_eq(c.src[LDPROF_OPT_hmac_keys], LDPROF_SRC_FILE);
    cr_assert_eq(c.trace_redis, 0);
    cr_assert_str_eq(c.project, "demo");
    cr_assert_str_eq(c.collector, "/run/ldprof/c.sock");
    cr_assert_eq(c.src[LDPROF_OPT_collector], LDPROF_SRC_FILE);
    cr_assert_eq(c.log_level, LDPROF_LOG_DEBUG);
    cr_assert_eq(c.trace_wsgi, 1, "untouched options keep their default");
}

Test(preload_config, explicit_path_argument_and_missing_file)
{
    struct ldprof_config c;

    ldprof_config_load(&c, "/nonexistent/dir/profiler.ini", env_get);
    cr_assert_eq(c.warnings, 1, "a named file that cannot be read is worth a warning");
    cr_assert_eq(c.enabled, 1);
    cr_assert_str_eq(c.file, "");
}

Test(preload_config, bad_values_warn_and_keep_the_previous_value)
{
    struct ldprof_config c;
    const char *p = write_ini("[profiler]\n"
                              "trace_wsgi = maybe\n"
                              "log_level = loud\n"
                              "collector = relative/path.sock\n"
                              "trace_redis = off\n");
    static const char *const env[] = {"LDPROF_TRACE_REDIS=perhaps", "LDPROF_ENABLED=", NULL};

    set_env(env);
    ldprof_config_load(&c, p, env_get);
    cr_assert_eq(c.warnings, 5);
    cr_assert_eq(c.trace_wsgi, 1);
    cr_assert_eq(c.src[LDPROF_OPT_trace_wsgi], LDPROF_SRC_DEFAULT);
    cr_assert_eq(c.log_level, LDPROF_LOG_WARN);
    cr_assert_eq(c.trace_redis, 0, "a bad env value keeps the file's value");
    cr_assert_eq(c.src[LDPROF_OPT_trace_redis], LDPROF_SRC_FILE);
    cr_assert_eq(c.enabled, 1, "an empty boolean is bad, not false");
    cr_assert_eq(c.src[LDPROF_OPT_collector], LDPROF_SRC_COMPUTED);
}

Test(preload_config, too_long_values_are_refused)
{
    struct ldprof_config c;
    char path[300], svc[LDPROF_CFG_STR_MAX + 10], e1[400], e2[600];
    const char *env[3] = {e1, e2, NULL};

    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    memset(svc, 's', sizeof(svc));
    svc[sizeof(svc) - 1] = '\0';
    snprintf(e1, sizeof(e1), "LDPROF_COLLECTOR=%s", path);
    snprintf(e2, sizeof(e2), "LDPROF_SERVICE=%s", svc);
    set_env(env);
    ldprof_config_load(&c, NULL, env_get);
    cr_assert_eq(c.warnings, 2);
    cr_assert_lt(strlen(c.collector), 108);
}

Test(preload_config, unknown_keys_warn_osprofiler_keys_do_not)
{
    struct ldprof_config c;
    const char *p = write_ini("[profiler]\n"
                              "connection_string = redis://localhost:6379\n"
                              "filter_error_trace = true\n"
                              "tracee_wsgi = true\n"
                              "HMAC_KEYS = upper\n");

    ldprof_config_load(&c, p, env_get);
    cr_assert_eq(c.warnings, 1, "only the misspelt key");
    cr_assert_str_eq(c.hmac_keys, "upper", "keys are matched case-insensitively");
}

Test(preload_config, syntax_error_keeps_the_other_lines)
{
    struct ldprof_config c;
    const char *p = write_ini("[profiler]\nthis line has no equals sign\nproject = p1\n");

    ldprof_config_load(&c, p, env_get);
    cr_assert_eq(c.warnings, 1);
    cr_assert_str_eq(c.project, "p1");
}

Test(preload_config, dump_lists_every_option_and_hides_secrets)
{
    struct ldprof_config c;
    static const char *const env[] = {"LDPROF_HMAC_KEYS=topsecret,other", "LDPROF_PROFILE=pk",
                                      NULL};
    int fds[2];
    char out[8192];
    ssize_t n, total = 0;

    set_env(env);
    ldprof_config_load(&c, NULL, env_get);
    cr_assert_eq(pipe(fds), 0);
    ldprof_config_dump_cfg(&c, fds[1]);
    close(fds[1]);
    while ((n = read(fds[0], out + total, sizeof(out) - 1 - (size_t)total)) > 0)
        total += n;
    out[total] = '\0';
    cr_assert_null(strstr(out, "topsecret"), "%s", out);
    cr_assert_not_null(strstr(out, "<2 keys, hidden>"), "%s", out);
    cr_assert_not_null(strstr(out, "(env; env LDPROF_HMAC_KEYS)"), "%s", out);
#define LDPROF_OPT(name, type, def, envname, help)                                       \
    cr_assert_not_null(strstr(out, "  " #name " "), "dump lacks " #name);                \
    cr_assert_not_null(strstr(out, envname), "dump lacks " envname);
#include "preload/config.def"
#undef LDPROF_OPT
}

/* must_parse / must_not_parse for booleans */
struct bool_case {
    char text[16]; /* arrays, not pointers: Criterion copies the parameters */
    int want;
};

ParameterizedTestParameters(preload_config, booleans)
{
    static struct bool_case cases[] = {
        {"1", 1},    {"true", 1},  {"TRUE", 1},  {"yes", 1}, {"On", 1},    {"0", 0},
        {"false", 0}, {"No", 0},   {"off", 0},   {"", -1},   {"2", -1},    {"truee", -1},
        {" true", -1}, {"enabled", -1},
    };
    return cr_make_param_array(struct bool_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bool_case *bc, preload_config, booleans)
{
    cr_assert_eq(ldprof_parse_bool(bc->text), bc->want, "\"%s\"", bc->text);
}

Test(preload_config, the_shipped_profiler_ini_is_clean)
{
    struct ldprof_config c, d;
    const char *top = getenv("LDPROF_TOP");
    char path[4096];

    snprintf(path, sizeof(path), "%s/profiler.ini", top && top[0] ? top : ".");
    if (access(path, R_OK) != 0)
        cr_skip_test("%s not found", path);
    ldprof_config_load(&c, path, env_get);
    cr_assert_eq(c.warnings, 0, "profiler.ini must parse without a warning");
    ldprof_config_load(&d, NULL, env_get);
    /* and it states the built-in defaults */
#define LDPROF_OPT(name, type, def, envname, help)                                       \
    cr_assert_eq(memcmp(&c.name, &d.name, sizeof(c.name)), 0, #name " differs from the default");
#include "preload/config.def"
#undef LDPROF_OPT
}

Test(preload_config, misspelt_environment_variables_warn)
{
    struct ldprof_config c;
    char *env[] = {(char *)"LDPROF_TRACE_WSG=1", (char *)"LDPROF_ENABLED=1",
                   (char *)"LDPROF_CONFIG=/x", (char *)"LDPROF_DUMP_CONFIG=1",
                   (char *)"LDPROF_TRACE_BASE=x", (char *)"OTHER_VAR=1", NULL};

    ldprof_config_load(&c, NULL, env_get);
    ldprof_config_check_env(&c, env);
    cr_assert_eq(c.warnings, 1);
}
