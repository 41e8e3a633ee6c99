/*
 * preload/exec.c - exec'd children keep LD_PRELOAD and LDPROF_* (see exec.h).
 */
#include <string.h>
#include <sys/mman.h>

#include "exec.h"
#include "init.h"
#include "log.h"

#define PR_FMT "exec"

char ldprof_self_path[4096];

#define SNAP_MAX_VARS 64
#define SNAP_BYTES 16384

static char snap_buf[SNAP_BYTES];
static size_t snap_used;
static const char *snap_vars[SNAP_MAX_VARS]; /* "LDPROF_X=value" */
static int snap_n;
static const char *snap_preload; /* "LD_PRELOAD=..." naming us, or NULL */

static const char *snap_copy(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p;

    if (snap_used + n > sizeof(snap_buf))
        return NULL;
    p = snap_buf + snap_used;
    memcpy(p, s, n);
    snap_used += n;
    return p;
}

static const char *self_base(void)
{
    const char *b = strrchr(ldprof_self_path, '/');
    return b ? b + 1 : ldprof_self_path;
}

/* Does the LD_PRELOAD value @v (after "LD_PRELOAD=") name our library?
 * Entries are separated by ':' or spaces; compared by file name. */
static int preload_names_us(const char *v)
{
    const char *base = self_base();
    size_t blen = strlen(base);

    if (blen == 0)
        return 0;
    while (*v) {
        size_t n = strcspn(v, ": \t");
        const char *e = v + n, *slash = v;
        for (const char *q = v; q < e; q++)
            if (*q == '/')
                slash = q + 1;
        if ((size_t)(e - slash) == blen && memcmp(slash, base, blen) == 0)
            return 1;
        v = *e ? e + 1 : e;
    }
    return 0;
}

void ldprof_exec_snapshot(char **env)
{
    if (env == NULL)
        return;
    for (char **e = env; *e; e++) {
        if (strncmp(*e, "LD_PRELOAD=", 11) == 0) {
            if (preload_names_us(*e + 11))
                snap_preload = snap_copy(*e);
        } else if (strncmp(*e, "LDPROF_", 7) == 0 && strchr(*e, '=') != NULL) {
            ldprof_exec_env_add(*e);
        }
    }
}

void ldprof_exec_env_add(const char *entry)
{
    const char *c;

    if (snap_n >= SNAP_MAX_VARS) {
        pr_warn_once("more than %d LDPROF_* variables: the rest are not passed to children",
                     SNAP_MAX_VARS);
        return;
    }
    c = snap_copy(entry);
    if (c != NULL)
        snap_vars[snap_n++] = c;
}

/* Length of the name part of "NAME=value" (including '='). */
static size_t name_len(const char *e)
{
    const char *eq = strchr(e, '=');
    return eq ? (size_t)(eq - e) + 1 : strlen(e);
}

static int env_has(char *const envp[], const char *entry)
{
    size_t n = name_len(entry);

    if (envp == NULL)
        return 0;
    for (char *const *e = envp; *e; e++)
        if (strncmp(*e, entry, n) == 0)
            return 1;
    return 0;
}

char *const *ldprof_exec_env(char *const envp[], struct ldprof_env_mem *mem)
{
    const char *their_preload = NULL;
    int need_preload = 0, nmissing = 0, nenv = 0;
    size_t bytes, extra = 0;
    char **out, *strs;
    int k = 0;

    mem->map = NULL;
    mem->len = 0;
    if (envp != NULL) {
        for (char *const *e = envp; *e; e++, nenv++)
            if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
                their_preload = *e;
    }
    if (snap_preload != NULL) {
        if (their_preload == NULL)
            need_preload = 1; /* add the start-up value */
        else if (!preload_names_us(their_preload + 11))
            need_preload = 2; /* append ours to theirs */
    }
    for (int i = 0; i < snap_n; i++)
        if (!env_has(envp, snap_vars[i]))
            nmissing++;
    if (!need_preload && !nmissing)
        return envp;

    if (need_preload == 2)
        extra = strlen(their_preload) + 1 + strlen(ldprof_self_path) + 1;
    bytes = (size_t)(nenv + nmissing + 2) * sizeof(char *) + extra;
    out = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (out == MAP_FAILED)
        return envp;
    mem->map = out;
    mem->len = bytes;
    strs = (char *)(out + nenv + nmissing + 2);

    for (int i = 0; i < nenv; i++) {
        if (envp[i] == their_preload && need_preload == 2) {
            size_t a = strlen(their_preload), b = strlen(ldprof_self_path);
            memcpy(strs, their_preload, a);
            strs[a] = ':';
            memcpy(strs + a + 1, ldprof_self_path, b + 1);
            out[k++] = strs;
        } else {
            out[k++] = envp[i];
        }
    }
    if (need_preload == 1)
        out[k++] = (char *)snap_preload;
    for (int i = 0; i < snap_n; i++)
        if (!env_has(envp, snap_vars[i]))
            out[k++] = (char *)snap_vars[i];
    out[k] = NULL;
    return out;
}

void ldprof_exec_env_free(struct ldprof_env_mem *mem)
{
    if (mem->map != NULL)
        munmap(mem->map, mem->len);
    mem->map = NULL;
}
