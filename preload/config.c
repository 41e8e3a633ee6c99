/*
 * preload/config.c - load the configuration once (see config.h, config.def).
 */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "real.h"

#define PR_FMT "config"

struct ldprof_config ldprof_cfg;

#define LDPROF_DEFAULT_INI "/etc/ldprof/profiler.ini"

enum opt_type { T_BOOL, T_STR, T_SECRET, T_PATH, T_LEVEL };

struct opt_desc {
    const char *name;
    enum opt_type type;
    const char *def;
    const char *env;
    const char *help;
    size_t offset;
    size_t size;
};

#define LDPROF_OPT(name_, type_, def_, env_, help_)                                      \
    {#name_, T_##type_, def_, env_, help_, offsetof(struct ldprof_config, name_),        \
     sizeof(((struct ldprof_config *)0)->name_)},
static const struct opt_desc opts[LDPROF_OPT_COUNT] = {
#include "config.def"
};
#undef LDPROF_OPT

/* OSProfiler [profiler] keys that ldprof knows but does not use: reading an
 * existing OpenStack [profiler] section must not look like a mistake. */
static const char *const osprofiler_keys[] = {
    "connection_string", "es_doc_type", "es_scroll_time", "es_scroll_size",
    "socket_timeout", "sentinel_service_name", "filter_error_trace",
};

static const char *const level_names[] = {"off", "error", "warn", "info", "debug"};
static const char *const src_names[] = {"default", "computed", "file", "env"};

int ldprof_parse_bool(const char *s)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int parse_level(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LDPROF_LOG_WARN;
    if (strcasecmp(s, "none") == 0)
        return LDPROF_LOG_OFF;
    return -1;
}

/* The current value of an option as text, for warnings and the dump. */
static const char *opt_text(const struct ldprof_config *cfg, const struct opt_desc *o)
{
    const char *p = (const char *)cfg + o->offset;
    switch (o->type) {
    case T_BOOL:
        return *(const int *)(const void *)p ? "true" : "false";
    case T_LEVEL: {
        int l = *(const int *)(const void *)p;
        return l >= 0 && l < 5 ? level_names[l] : "?";
    }
    default:
        return p;
    }
}

/*
 * set_opt - parse @val into option @i.  Returns 0, or -1 when the value is
 * bad (a warning has been logged and the option is unchanged).
 */
static int set_opt(struct ldprof_config *cfg, int i, const char *val, const char *origin,
                   enum ldprof_cfg_src src)
{
    const struct opt_desc *o = &opts[i];
    char *p = (char *)cfg + o->offset;
    const char *why = NULL;
    int v;
    size_t len;

    switch (o->type) {
    case T_BOOL:
        v = ldprof_parse_bool(val);
        if (v < 0) {
            why = "expected true/false, yes/no, on/off or 1/0";
            break;
        }
        *(int *)(void *)p = v;
        break;
    case T_LEVEL:
        v = parse_level(val);
        if (v < 0) {
            why = "expected off, error, warn, info or debug";
            break;
        }
        *(int *)(void *)p = v;
        break;
    case T_PATH:
        len = strlen(val);
        if (len >= o->size) {
            why = "a unix socket path must be shorter than 108 bytes";
            break;
        }
        if (len > 0 && val[0] != '/') {
            why = "expected an absolute path";
            break;
        }
        memcpy(p, val, len + 1);
        break;
    case T_STR:
    case T_SECRET:
        len = strlen(val);
        if (len >= o->size) {
            why = "too long";
            break;
        }
        memcpy(p, val, len + 1);
        break;
    }
    if (why != NULL) {
        cfg->warnings++;
        /* Never echo a secret, even a malformed one. */
        pr_warn("bad value \"%s\" for %s (%s: %s), using %s%s%s (%s)",
                o->type == T_SECRET ? "***" : val, o->name, origin, why,
                o->type == T_SECRET ? "" : "\"",
                o->type == T_SECRET ? "the previous value" : opt_text(cfg, o),
                o->type == T_SECRET ? "" : "\"", src_names[cfg->src[i]]);
        return -1;
    }
    cfg->src[i] = (uint8_t)src;
    return 0;
}

static void set_defaults(struct ldprof_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (int i = 0; i < LDPROF_OPT_COUNT; i++) {
        /* The defaults are valid by construction (a unit test checks it). */
        set_opt(cfg, i, opts[i].def, "built-in default", LDPROF_SRC_DEFAULT);
    }
}

struct ini_ctx {
    struct ldprof_config *cfg;
    const char *origin;
};

static int cfg_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ic = user;

    if (strcasecmp(section, "profiler") != 0)
        return 1; /* other sections (a whole service .conf) are not ours */
    for (int i = 0; i < LDPROF_OPT_COUNT; i++) {
        if (strcasecmp(name, opts[i].name) == 0) {
            set_opt(ic->cfg, i, value, ic->origin, LDPROF_SRC_FILE);
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof(osprofiler_keys) / sizeof(osprofiler_keys[0]); i++) {
        if (strcasecmp(name, osprofiler_keys[i]) == 0) {
            pr_info("%s: [profiler] %s is an OSProfiler option ldprof does not use, ignored",
                    ic->origin, name);
            return 1;
        }
    }
    ic->cfg->warnings++;
    pr_warn("%s: unknown key \"%s\" in [profiler], ignored", ic->origin, name);
    return 1;
}

void ldprof_config_apply_ini(struct ldprof_config *cfg, const char *text, const char *origin)
{
    struct ini_ctx ic = {cfg, origin};
    int r = ini_parse_string(text, cfg_ini_handler, &ic);

    if (r > 0) {
        cfg->warnings++;
        pr_warn("%s: syntax error on line %d (the other lines were used)", origin, r);
    } else if (r < 0) {
        cfg->warnings++;
        pr_warn("%s: could not be parsed (out of memory), ignored", origin);
    }
}

/* Read the ini file with raw open/read (no stdio in the preload). */
static void load_file(struct ldprof_config *cfg, const char *path, int must_exist)
{
    static char text[LDPROF_CFG_FILE_MAX + 1];
    size_t n = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (must_exist || errno != ENOENT) {
            cfg->warnings++;
            pr_warn("cannot open config file %s: %s; using defaults and environment", path,
                    strerror(errno));
        }
        return;
    }
    for (;;) {
        ssize_t r = ldprof_raw_read(fd, text + n, LDPROF_CFG_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cfg->warnings++;
            pr_warn("cannot read config file %s: %s; ignored", path, strerror(errno));
            ldprof_raw_close(fd);
            return;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > LDPROF_CFG_FILE_MAX) {
            cfg->warnings++;
            pr_warn("config file %s is larger than %d bytes; ignored", path, LDPROF_CFG_FILE_MAX);
            ldprof_raw_close(fd);
            return;
        }
    }
    ldprof_raw_close(fd);
    text[n] = '\0';
    snprintf(cfg->file, sizeof(cfg->file), "%s", path);
    ldprof_config_apply_ini(cfg, text, path);
}

static const char *default_getenv(const char *name)
{
    return secure_getenv(name);
}

/* Computed defaults, applied last so that they see the final values. */
static void compute_defaults(struct ldprof_config *cfg, ldprof_getenv_fn get_env)
{
    if (cfg->collector[0] == '\0') {
        const char *xdg = get_env("XDG_RUNTIME_DIR");
        int n;
        if (xdg != NULL && xdg[0] == '/')
            n = snprintf(cfg->collector, sizeof(cfg->collector), "%s/ldprof/collector.sock", xdg);
        else
            n = -1;
        if (n < 0 || (size_t)n >= sizeof(cfg->collector))
            snprintf(cfg->collector, sizeof(cfg->collector), "/tmp/ldprof-%u/collector.sock",
                     (unsigned)getuid());
        cfg->src[LDPROF_OPT_collector] = LDPROF_SRC_COMPUTED;
    }
    if (cfg->service[0] == '\0') {
        const char *name = program_invocation_short_name;
        snprintf(cfg->service, sizeof(cfg->service), "%s", name && name[0] ? name : "unknown");
        cfg->src[LDPROF_OPT_service] = LDPROF_SRC_COMPUTED;
    }
}

void ldprof_config_load(struct ldprof_config *cfg, const char *path, ldprof_getenv_fn get_env)
{
    struct stat st;

    if (get_env == NULL)
        get_env = default_getenv;
    set_defaults(cfg);
    {
        /* The log level decides whether the warnings below are printed:
         * take it from the environment first (the file's value, if any,
         * applies from the end of loading). */
        const char *ll = get_env("LDPROF_LOG_LEVEL");
        int lvl = ll ? parse_level(ll) : -1;
        if (lvl >= 0)
            ldprof_log_level = lvl;
    }

    if (path != NULL) {
        load_file(cfg, path, 1);
    } else {
        const char *p = get_env("LDPROF_CONFIG");
        if (p != NULL && p[0] != '\0')
            load_file(cfg, p, 1);
        else if (stat(LDPROF_DEFAULT_INI, &st) == 0)
            load_file(cfg, LDPROF_DEFAULT_INI, 0);
    }

    for (int i = 0; i < LDPROF_OPT_COUNT; i++) {
        const char *v = get_env(opts[i].env);
        if (v != NULL)
            set_opt(cfg, i, v, opts[i].env, LDPROF_SRC_ENV);
    }
    compute_defaults(cfg, get_env);
}

void ldprof_config_check_env(struct ldprof_config *cfg, char **env)
{
    static const char *const others[] = {"LDPROF_CONFIG", "LDPROF_DUMP_CONFIG",
                                         "LDPROF_TRACE_BASE"};

    for (; env && *env; env++) {
        const char *e = *env, *eq = strchr(e, '=');
        size_t n = eq ? (size_t)(eq - e) : strlen(e);
        int known = 0;

        if (strncmp(e, "LDPROF_", 7) != 0)
            continue;
        for (int i = 0; i < LDPROF_OPT_COUNT && !known; i++)
            known = strlen(opts[i].env) == n && strncmp(e, opts[i].env, n) == 0;
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]) && !known; i++)
            known = strlen(others[i]) == n && strncmp(e, others[i], n) == 0;
        if (!known) {
            /* info, not warn: the project's tools use the LDPROF_ prefix
             * for their own variables (LDPROF_TRACE_DIR, LDPROF_BUILD...) */
            cfg->warnings++;
            pr_info("%.*s is not an ldprof option (misspelt?), ignored", (int)n, e);
        }
    }
}

static size_t count_keys(const char *s)
{
    /* Same rule as OSProfiler: split on ',', trim, drop empty pieces. */
    size_t n = 0;
    int in = 0;
    for (; *s; s++) {
        if (*s == ',') {
            in = 0;
        } else if (*s != ' ' && *s != '\t' && !in) {
            in = 1;
            n++;
        }
    }
    return n;
}

void ldprof_config_dump_cfg(const struct ldprof_config *cfg, int fd)
{
    char line[LDPROF_CFG_STR_MAX + 256];
    int n;

    n = snprintf(line, sizeof(line), "ldprof: configuration (file: %s)\n",
                 cfg->file[0] ? cfg->file : "none");
    ldprof_raw_write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    for (int i = 0; i < LDPROF_OPT_COUNT; i++) {
        const struct opt_desc *o = &opts[i];
        char val[LDPROF_CFG_STR_MAX + 32];
        const char *text = opt_text(cfg, o);

        if (o->type == T_SECRET)
            snprintf(val, sizeof(val), text[0] ? "<%zu key%s, hidden>" : "<not set>",
                     count_keys(text), count_keys(text) == 1 ? "" : "s");
        else
            snprintf(val, sizeof(val), "%s", text);
        n = snprintf(line, sizeof(line), "ldprof:   %-16s = %-40s (%s; env %s)\n", o->name, val,
                     src_names[cfg->src[i]], o->env);
        if (n > 0)
            ldprof_raw_write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
}

void ldprof_config_dump(int fd)
{
    ldprof_config_dump_cfg(&ldprof_cfg, fd);
}
