/*
 * config.c - the INI reader and the command-line parser of zaqard.
 *
 * Order of precedence: built-in defaults < --config FILE < flags.  The flags
 * are collected first (so --config may appear anywhere), then the file is
 * read, then the flags are applied on top.  A pool given with --pool replaces
 * a file pool of the same name, other pools are added.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_FILE (1024 * 1024)

/* ------------------------------------------------------------ helpers */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return ZQ_CFG_ERROR;
}

int zq_valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!(isalnum(c) || c == '_' || c == '-') || c > 127)
            return 0;
        if (n >= ZQ_NAME_MAX)
            return 0;
    }
    return n > 0;
}

int zq_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_log_level(const char *s, zq_log_level *out)
{
    if (strcmp(s, "debug") == 0)
        *out = ZQ_LOG_DEBUG;
    else if (strcmp(s, "info") == 0)
        *out = ZQ_LOG_INFO;
    else if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0)
        *out = ZQ_LOG_WARN;
    else if (strcmp(s, "error") == 0)
        *out = ZQ_LOG_ERROR;
    else
        return -1;
    return 0;
}

static int set_str(char **dst, const char *v)
{
    char *c = strdup(v);
    if (!c)
        return -1;
    free(*dst);
    *dst = c;
    return 0;
}

/* Splits "HOST:PORT" or "[V6]:PORT" and resolves it (numeric port, no DNS
 * for numeric hosts; names such as "localhost" go through getaddrinfo). */
static int resolve_listen(zq_config *cfg, char *err, size_t errlen)
{
    const char *s = cfg->listen;
    char host[256];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return fail(err, errlen, "listen: '%s' is not [IPV6]:PORT", s);
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host || strchr(s, ':') != colon)
            return fail(err, errlen, "listen: '%s' is not HOST:PORT", s);
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    long p;
    if (zq_parse_long(port, 0, 65535, &p) != 0)
        return fail(err, errlen, "listen: bad port '%s' (0..65535)", port);
    if (!host[0])
        return fail(err, errlen, "listen: '%s' has no host", s);

    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%ld", p);
    int rc = getaddrinfo(host, portbuf, &hints, &res);
    if (rc != 0 || !res)
        return fail(err, errlen, "listen: cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&cfg->addr, res->ai_addr, res->ai_addrlen);
    cfg->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return ZQ_CFG_OK;
}

static zq_pool_cfg *find_pool(zq_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* Returns the pool called name, adding an empty one (weight default) when
 * absent; NULL when the table is full. */
static zq_pool_cfg *get_pool(zq_config *cfg, const char *name)
{
    zq_pool_cfg *p = find_pool(cfg, name);
    if (p)
        return p;
    if (cfg->npools == ZQ_MAX_POOLS)
        return NULL;
    p = &cfg->pools[cfg->npools++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->weight = ZQ_DEFAULT_WEIGHT;
    return p;
}

static int set_pool_key(zq_pool_cfg *p, const char *key, const char *val,
                        char *err, size_t errlen)
{
    long v;
    if (strcmp(key, "uri") == 0) {
        if (!*val)
            return fail(err, errlen, "pool %s: empty uri", p->name);
        if (set_str(&p->uri, val) != 0)
            return fail(err, errlen, "out of memory");
    } else if (strcmp(key, "weight") == 0) {
        if (zq_parse_long(val, 0, ZQ_MAX_WEIGHT, &v) != 0)
            return fail(err, errlen, "pool %s: bad weight '%s' (0..%d)", p->name, val, ZQ_MAX_WEIGHT);
        p->weight = (int)v;
    } else if (strcmp(key, "group") == 0) {
        if (*val && !zq_valid_name(val))
            return fail(err, errlen, "pool %s: bad group '%s' (want [A-Za-z0-9_-]{1,64})", p->name, val);
        snprintf(p->group, sizeof p->group, "%s", val);
    } else {
        return fail(err, errlen, "pool %s: unknown key '%s' (uri, weight, group)", p->name, key);
    }
    return ZQ_CFG_OK;
}

/* ------------------------------------------------------------ INI file */

/* Per-source "threads vs thread_per_connection" bookkeeping: giving both in
 * the same source (file or flags) is an error. */
typedef struct {
    int threads_set;
    int threads;
    int tpc_set;
    int tpc;
} mode_src;

static int set_main_key(zq_config *cfg, mode_src *mode, const char *key,
                        const char *val, char *err, size_t errlen)
{
    long v;
    if (strcmp(key, "listen") == 0) {
        if (set_str(&cfg->listen, val) != 0)
            return fail(err, errlen, "out of memory");
    } else if (strcmp(key, "catalog") == 0) {
        if (set_str(&cfg->catalog, val) != 0)
            return fail(err, errlen, "out of memory");
    } else if (strcmp(key, "threads") == 0) {
        if (zq_parse_long(val, 1, ZQ_MAX_THREADS, &v) != 0)
            return fail(err, errlen, "bad threads '%s' (1..%d)", val, ZQ_MAX_THREADS);
        mode->threads_set = 1;
        mode->threads = (int)v;
    } else if (strcmp(key, "thread_per_connection") == 0) {
        if (parse_bool(val, &mode->tpc) != 0)
            return fail(err, errlen, "bad thread_per_connection '%s' (true|false)", val);
        mode->tpc_set = 1;
    } else if (strcmp(key, "log_level") == 0) {
        if (parse_log_level(val, &cfg->log_level) != 0)
            return fail(err, errlen, "bad log_level '%s' (debug|info|warn|error)", val);
    } else if (strcmp(key, "port_file") == 0) {
        if (set_str(&cfg->port_file, val) != 0)
            return fail(err, errlen, "out of memory");
    } else {
        return fail(err, errlen, "unknown key '%s' in [zaqard]", key);
    }
    return ZQ_CFG_OK;
}

/* Applies one source's concurrency settings on top of the current ones. */
static int apply_mode(zq_config *cfg, const mode_src *m, const char *where,
                      char *err, size_t errlen)
{
    if (m->threads_set && m->tpc_set && m->tpc)
        return fail(err, errlen, "%s: threads and thread-per-connection are exclusive", where);
    if (m->threads_set) {
        cfg->threads = m->threads;
        cfg->thread_per_connection = 0;
    }
    if (m->tpc_set)
        cfg->thread_per_connection = m->tpc;
    return ZQ_CFG_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Removes an inline comment: ';' or '#' at the start or after whitespace. */
static void strip_comment(char *s)
{
    for (char *p = s; *p; p++)
        if ((*p == ';' || *p == '#') && (p == s || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
}

static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        return v + 1;
    }
    return v;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(err, errlen, "config %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_CONFIG_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_FILE + 1, f) : 0;
    int bad = !buf || ferror(f) || n > MAX_CONFIG_FILE;
    fclose(f);
    if (bad) {
        fail(err, errlen, "config %s: unreadable or larger than %d bytes", path, MAX_CONFIG_FILE);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        fail(err, errlen, "config %s: contains a NUL byte", path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Handles "[section]"; *pool is set for [pool:NAME], NULL for [zaqard]. */
static int ini_section(zq_config *cfg, char *line, int *in_main, zq_pool_cfg **pool,
                       char *err, size_t errlen)
{
    size_t n = strlen(line);
    if (line[n - 1] != ']')
        return fail(err, errlen, "bad section header '%s'", line);
    line[n - 1] = '\0';
    char *name = trim(line + 1);
    *in_main = 0;
    *pool = NULL;
    if (strcmp(name, "zaqard") == 0) {
        *in_main = 1;
        return ZQ_CFG_OK;
    }
    if (strncmp(name, "pool:", 5) == 0) {
        const char *pname = name + 5;
        if (!zq_valid_name(pname))
            return fail(err, errlen, "bad pool name '%s' (want [A-Za-z0-9_-]{1,64})", pname);
        if (find_pool(cfg, pname))
            return fail(err, errlen, "pool '%s' defined twice", pname);
        *pool = get_pool(cfg, pname);
        if (!*pool)
            return fail(err, errlen, "too many pools (max %d)", ZQ_MAX_POOLS);
        return ZQ_CFG_OK;
    }
    return fail(err, errlen, "unknown section [%s] (want [zaqard] or [pool:NAME])", name);
}

static int ini_parse(zq_config *cfg, char *text, mode_src *mode, char *err, size_t errlen)
{
    int in_main = 0;
    zq_pool_cfg *pool = NULL;
    int lineno = 0;
    for (char *line = text; line; ) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        char *l = trim(line);
        line = nl ? nl + 1 : NULL;
        if (!*l || *l == ';' || *l == '#')
            continue;
        int rc;
        if (*l == '[') {
            strip_comment(l);
            rc = ini_section(cfg, trim(l), &in_main, &pool, err, errlen);
        } else {
            char *eq = strchr(l, '=');
            if (!eq) {
                rc = fail(err, errlen, "expected 'key = value', got '%s'", l);
            } else {
                *eq = '\0';
                char *key = trim(l), *val = eq + 1;
                strip_comment(val);
                val = unquote(trim(val));
                for (char *k = key; *k; k++)
                    if (*k == '-')
                        *k = '_';
                if (pool)
                    rc = set_pool_key(pool, key, val, err, errlen);
                else if (in_main)
                    rc = set_main_key(cfg, mode, key, val, err, errlen);
                else
                    rc = fail(err, errlen, "key '%s' outside a section", key);
            }
        }
        if (rc != ZQ_CFG_OK) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s", err);
            return fail(err, errlen, "line %d: %s", lineno, tmp);
        }
    }
    return ZQ_CFG_OK;
}

static int load_file(zq_config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = read_file(path, err, errlen);
    if (!text)
        return ZQ_CFG_ERROR;
    mode_src mode = {0};
    int rc = ini_parse(cfg, text, &mode, err, errlen);
    free(text);
    if (rc == ZQ_CFG_OK)
        rc = apply_mode(cfg, &mode, "[zaqard]", err, errlen);
    if (rc != ZQ_CFG_OK) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        return fail(err, errlen, "config %s: %s", path, tmp);
    }
    return ZQ_CFG_OK;
}

/* ------------------------------------------------------------ flags */

enum {
    OPT_CONFIG = 256, OPT_LISTEN, OPT_CATALOG, OPT_POOL, OPT_THREADS, OPT_TPC,
    OPT_LOG_LEVEL, OPT_PORT_FILE, OPT_HELP,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"catalog", required_argument, NULL, OPT_CATALOG},
    {"pool", required_argument, NULL, OPT_POOL},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"thread-per-connection", no_argument, NULL, OPT_TPC},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

void zq_config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--config FILE] [--listen HOST:PORT] [--catalog CONNINFO]\n"
            "          [--pool NAME=URI[,weight=W][,group=G]]...\n"
            "          [--threads N | --thread-per-connection]\n"
            "          [--log-level debug|info|warn|error] [--port-file PATH] [--help]\n"
            "\n"
            "  --config FILE            INI file ([zaqard] and [pool:NAME] sections)\n"
            "  --listen HOST:PORT       listen address (default 127.0.0.1:8888; port 0 = any)\n"
            "  --catalog CONNINFO       PostgreSQL conninfo of the catalog (required)\n"
            "  --pool NAME=URI,...      a message store: redis://... or mongodb://...\n"
            "                           (weight 0..%d, default %d; group name)\n"
            "  --threads N              thread pool of N epoll loops (default %d)\n"
            "  --thread-per-connection  one thread per connection (poll)\n"
            "  --log-level LEVEL        minimum log level (default info)\n"
            "  --port-file PATH         write the listening port to PATH\n"
            "Flags override the file.\n",
            prog, ZQ_MAX_WEIGHT, ZQ_DEFAULT_WEIGHT, ZQ_DEFAULT_THREADS);
}

/* --pool NAME=URI[,weight=W][,group=G]: the options are peeled off the end so
 * URIs containing commas (mongodb://h1,h2/) survive. */
static int flag_pool(zq_config *cfg, const char *arg, char *err, size_t errlen)
{
    char *s = strdup(arg);
    if (!s)
        return fail(err, errlen, "out of memory");
    int rc = ZQ_CFG_OK;
    char *eq = strchr(s, '=');
    if (!eq) {
        rc = fail(err, errlen, "--pool '%s': want NAME=URI[,weight=W][,group=G]", arg);
        goto out;
    }
    *eq = '\0';
    if (!zq_valid_name(s)) {
        rc = fail(err, errlen, "--pool: bad pool name '%s' (want [A-Za-z0-9_-]{1,64})", s);
        goto out;
    }
    char *uri = eq + 1;
    const char *weight = NULL, *group = NULL;
    for (char *comma; (comma = strrchr(uri, ',')) != NULL; ) {
        if (strncmp(comma + 1, "weight=", 7) == 0 && !weight)
            weight = comma + 8;
        else if (strncmp(comma + 1, "group=", 6) == 0 && !group)
            group = comma + 7;
        else
            break;
        *comma = '\0';
    }
    /* A flag pool replaces a file pool of the same name entirely. */
    zq_pool_cfg *p = find_pool(cfg, s);
    if (p) {
        free(p->uri);
        p->uri = NULL;
        p->weight = ZQ_DEFAULT_WEIGHT;
        p->group[0] = '\0';
    } else if (!(p = get_pool(cfg, s))) {
        rc = fail(err, errlen, "too many pools (max %d)", ZQ_MAX_POOLS);
        goto out;
    }
    rc = set_pool_key(p, "uri", uri, err, errlen);
    if (rc == ZQ_CFG_OK && weight)
        rc = set_pool_key(p, "weight", weight, err, errlen);
    if (rc == ZQ_CFG_OK && group)
        rc = set_pool_key(p, "group", group, err, errlen);
out:
    free(s);
    return rc;
}

typedef struct {
    int id;
    const char *arg;
} flag;

/* First pass: collect the flags (getopt_long with our own messages). */
static int collect_flags(int argc, char **argv, flag *flags, int *nflags,
                         const char **config, char *err, size_t errlen)
{
    opterr = 0;
    optind = 1;
    *nflags = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, ":", long_opts, NULL);
        if (c == -1)
            break;
        if (c == '?')
            return fail(err, errlen, "unknown option '%s' (see --help)", argv[prev]);
        if (c == ':')
            return fail(err, errlen, "option '%s' needs a value", argv[prev]);
        if (c == OPT_CONFIG)
            *config = optarg;
        else
            flags[(*nflags)++] = (flag){c, optarg};
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
    return ZQ_CFG_OK;
}

static int apply_flag(zq_config *cfg, mode_src *mode, const flag *f, char *err, size_t errlen)
{
    switch (f->id) {
    case OPT_LISTEN:
        return set_main_key(cfg, mode, "listen", f->arg, err, errlen);
    case OPT_CATALOG:
        return set_main_key(cfg, mode, "catalog", f->arg, err, errlen);
    case OPT_THREADS:
        return set_main_key(cfg, mode, "threads", f->arg, err, errlen);
    case OPT_TPC:
        mode->tpc_set = mode->tpc = 1;
        return ZQ_CFG_OK;
    case OPT_LOG_LEVEL:
        return set_main_key(cfg, mode, "log_level", f->arg, err, errlen);
    case OPT_PORT_FILE:
        return set_main_key(cfg, mode, "port_file", f->arg, err, errlen);
    case OPT_POOL:
        return flag_pool(cfg, f->arg, err, errlen);
    }
    return fail(err, errlen, "internal: unhandled option %d", f->id);
}

/* Checks the merged configuration. */
static int validate(zq_config *cfg, char *err, size_t errlen)
{
    if (!cfg->catalog || !*cfg->catalog)
        return fail(err, errlen, "no catalog: give --catalog CONNINFO or catalog= in [zaqard]");
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->catalog, &why);
    if (!opts) {
        size_t n = why ? strlen(why) : 0;
        while (n && why[n - 1] == '\n')
            why[--n] = '\0';
        fail(err, errlen, "catalog: bad conninfo: %s", why ? why : "out of memory");
        PQfreemem(why);
        return ZQ_CFG_ERROR;
    }
    PQconninfoFree(opts);
    if (cfg->npools == 0)
        return fail(err, errlen, "no pool: give --pool NAME=URI or a [pool:NAME] section");
    int hashable = 0;
    for (size_t i = 0; i < cfg->npools; i++) {
        const zq_pool_cfg *p = &cfg->pools[i];
        if (!p->uri)
            return fail(err, errlen, "pool %s has no uri", p->name);
        if (strncmp(p->uri, "redis://", 8) != 0 && strncmp(p->uri, "mongodb://", 10) != 0)
            return fail(err, errlen, "pool %s: uri '%s' is not redis://... or mongodb://...",
                        p->name, p->uri);
        hashable |= p->weight > 0;
    }
    if (!hashable)
        return fail(err, errlen, "every pool has weight 0: no pool can take new queues");
    if (cfg->port_file && !*cfg->port_file)
        return fail(err, errlen, "empty port file path");
    return resolve_listen(cfg, err, errlen);
}

int zq_config_load(zq_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = ZQ_DEFAULT_THREADS;
    cfg->log_level = ZQ_LOG_INFO;
    int rc = ZQ_CFG_ERROR;
    flag *flags = calloc((size_t)argc + 1, sizeof *flags);
    const char *config = NULL;
    int nflags = 0;
    if (!flags) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    if (set_str(&cfg->listen, "127.0.0.1:8888") != 0) {
        fail(err, errlen, "out of memory");
        goto out;
    }
    rc = collect_flags(argc, argv, flags, &nflags, &config, err, errlen);
    if (rc != ZQ_CFG_OK)
        goto out;
    for (int i = 0; i < nflags; i++)
        if (flags[i].id == OPT_HELP) {
            zq_config_usage(stdout, argv[0]);
            rc = ZQ_CFG_HELP;
            goto out;
        }
    if (config && (rc = load_file(cfg, config, err, errlen)) != ZQ_CFG_OK)
        goto out;
    mode_src mode = {0};
    for (int i = 0; i < nflags && rc == ZQ_CFG_OK; i++)
        rc = apply_flag(cfg, &mode, &flags[i], err, errlen);
    if (rc == ZQ_CFG_OK)
        rc = apply_mode(cfg, &mode, "flags", err, errlen);
    if (rc == ZQ_CFG_OK)
        rc = validate(cfg, err, errlen);
out:
    free(flags);
    if (rc != ZQ_CFG_OK)
        zq_config_free(cfg);
    return rc;
}

void zq_config_free(zq_config *cfg)
{
    free(cfg->listen);
    free(cfg->catalog);
    free(cfg->port_file);
    for (size_t i = 0; i < cfg->npools; i++)
        free(cfg->pools[i].uri);
    memset(cfg, 0, sizeof *cfg);
}
