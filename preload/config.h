/*
 * preload/config.h - the configuration, filled once at start.
 *
 * Order (later wins): built-in defaults, then profiler.ini section
 * [profiler] (path from LDPROF_CONFIG, else /etc/ldprof/profiler.ini when it
 * exists), then LDPROF_* environment variables.  Environment variables are
 * read with secure_getenv(), so a setuid/setgid process ignores them.
 * Bad values and unknown keys produce one warning each and never fail.
 *
 * The options themselves are declared once in config.def.
 */
#ifndef LDPROF_CONFIG_H
#define LDPROF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define LDPROF_CFG_STR_MAX 512  /* STR / SECRET values, NUL included */
#define LDPROF_CFG_PATH_MAX 108 /* sizeof(sun_path) */
#define LDPROF_CFG_FILE_MAX 65536

#define LDPROF_CT_BOOL int
#define LDPROF_CT_LEVEL int
#define LDPROF_CT_STR char
#define LDPROF_CT_SECRET char
#define LDPROF_CT_PATH char
#define LDPROF_CD_BOOL
#define LDPROF_CD_LEVEL
#define LDPROF_CD_STR [LDPROF_CFG_STR_MAX]
#define LDPROF_CD_SECRET [LDPROF_CFG_STR_MAX]
#define LDPROF_CD_PATH [LDPROF_CFG_PATH_MAX]

enum ldprof_opt_id {
#define LDPROF_OPT(name, type, def, env, help) LDPROF_OPT_##name,
#include "config.def"
#undef LDPROF_OPT
    LDPROF_OPT_COUNT
};

/* Where an option's value came from. */
enum ldprof_cfg_src {
    LDPROF_SRC_DEFAULT = 0,
    LDPROF_SRC_COMPUTED, /* default computed at start (collector, service) */
    LDPROF_SRC_FILE,
    LDPROF_SRC_ENV,
};

struct ldprof_config {
#define LDPROF_OPT(name, type, def, env, help) LDPROF_CT_##type name LDPROF_CD_##type;
#include "config.def"
#undef LDPROF_OPT
    uint8_t src[LDPROF_OPT_COUNT];
    char file[4096];  /* the profiler.ini that was read, "" if none */
    int warnings;     /* warnings issued while loading (tests) */
};

extern struct ldprof_config ldprof_cfg __attribute__((visibility("hidden")));

/* A getenv-like function (secure_getenv in the preload, a table in tests). */
typedef const char *(*ldprof_getenv_fn)(const char *name);

/*
 * ldprof_config_load - fill *cfg: defaults, file, environment.
 * @path: the ini file to read, or NULL for the default lookup
 *        (LDPROF_CONFIG from @get_env, else /etc/ldprof/profiler.ini if present).
 * @get_env: environment lookup; NULL means secure_getenv.
 *
 * Uses raw open/read into a static buffer (not thread-safe: call once, in
 * the constructor, or from a single test thread).  Never fails: problems
 * are warnings and the defaults stay.
 */
void ldprof_config_load(struct ldprof_config *cfg, const char *path, ldprof_getenv_fn get_env);

/*
 * ldprof_config_apply_ini - apply an ini text (section [profiler]) on top
 * of *cfg, as the file step does.  @origin names the text in warnings.
 */
void ldprof_config_apply_ini(struct ldprof_config *cfg, const char *text, const char *origin);

/*
 * ldprof_config_dump - write every option of ldprof_cfg (the _cfg variant:
 * of *cfg), its value and where it came from
 * to @fd, one line each (secrets are summarised, never printed).  Uses raw
 * write.  Enabled at start by LDPROF_DUMP_CONFIG=1.
 */
void ldprof_config_dump(int fd);
void ldprof_config_dump_cfg(const struct ldprof_config *cfg, int fd);

/* ldprof_config_check_env - note (log_level=info) LDPROF_* variables in
 * @env that are no option: a misspelt name is otherwise silently ignored.
 * Counted in cfg->warnings. */
void ldprof_config_check_env(struct ldprof_config *cfg, char **env);

/* ldprof_parse_bool - 1/0 for a valid boolean text, -1 otherwise. */
int ldprof_parse_bool(const char *s);

#endif
