/*
 * preload/init.c - constructor, destructor and fork handlers of libldprof.so.
 *
 * The constructor is small and never blocks: resolve the libc table, read
 * the configuration once, build the keyrings, map the (lazily touched)
 * tables, register the fork handlers.  No thread and no socket: the flusher
 * and its socket appear with the first recorded span.
 *
 * The destructor is idempotent and safe after other libraries' destructors:
 * it switches every wrapper to pass-through, records still-open spans as
 * unfinished and makes one final flush bounded by LDPROF_FINAL_FLUSH_MS.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/auxv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "exec.h"
#include "http.h"
#include "init.h"
#include "log.h"
#include "propagation.h"
#include "real.h"
#include "span.h"
#include "tls.h"
#include "transport.h"

#define PR_FMT "init"

extern char **environ;

static int init_done;   /* atomic: ldprof_init ran */
static int fini_done;   /* atomic: ldprof_fini ran */
static int profile_own; /* this process started the profile trace */

/* The forking thread's signal mask between prepare and parent/child. */
static __thread sigset_t fork_saved_mask __attribute__((tls_model("initial-exec")));

/*
 * Fork handlers (style item 13).
 *
 * prepare: resolve every symbol (no dlsym in the child), block all signals
 *          (a handler calling a hooked function must not run while we hold
 *          our locks), then take every internal lock in the fixed order:
 *          buffer list_lock -> each buffer's lock -> xport_lock.
 * parent:  release in reverse order, note that followed connections are
 *          now shared with the child, restore the signal mask.
 * child:   re-initialise every lock, drop the parent's buffered records
 *          (the parent sends them) and its other threads' buffers, refresh
 *          the cached tid and pid, reseed the id generator, close the
 *          inherited collector socket (a new one is connected lazily, and
 *          the flusher is restarted lazily on the child's first span).
 */
static void fork_prepare(void)
{
    sigset_t all;

    ldprof_real_init();
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &fork_saved_mask);
    ldprof_buf_fork_prepare();
    ldprof_xport_fork_prepare();
}

static void fork_parent(void)
{
    ldprof_xport_fork_parent();
    ldprof_buf_fork_parent();
    ldprof_http_fork_parent();
    pthread_sigmask(SIG_SETMASK, &fork_saved_mask, NULL);
}

static void fork_child(void)
{
    ldprof_tls_reset_after_fork();
    ldprof_xport_fork_child();
    ldprof_buf_fork_child();
    ldprof_uuid_fork_child();
    ldprof_http_fork_child();
    profile_own = 0; /* the trace id is reported once, by the process that made it */
    pthread_sigmask(SIG_SETMASK, &fork_saved_mask, NULL);
}

static void find_self(void)
{
    Dl_info info;

    if (dladdr((void *)&ldprof_init, &info) != 0 && info.dli_fname != NULL)
        snprintf(ldprof_self_path, sizeof(ldprof_self_path), "%s", info.dli_fname);
}

static void start_profile(void)
{
    const char *inherited = secure_getenv("LDPROF_TRACE_BASE");
    char entry[64];
    char id[LDPROF_UUID_SIZE];

    if (ldprof_profile_start(ldprof_cfg.profile) != 0)
        return;
    /* A child exec'd by a profiled process continues the same trace. */
    if (inherited != NULL && ldprof_profile_inherit(inherited) == 0)
        return;
    profile_own = 1;
    ldprof_uuid_format(ldprof_profile_base(), id);
    snprintf(entry, sizeof(entry), "LDPROF_TRACE_BASE=%s", id);
    ldprof_exec_env_add(entry);
    setenv("LDPROF_TRACE_BASE", id, 1); /* system()/popen() children too */
}

void ldprof_init(void)
{
    const char *dump;

    if (__atomic_exchange_n(&init_done, 1, __ATOMIC_ACQ_REL))
        return;
    ldprof_tls.depth++;
    ldprof_real_init();
    ldprof_config_load(&ldprof_cfg, NULL, NULL);
    if (!getauxval(AT_SECURE)) /* setuid: the environment is not ours to read */
        ldprof_config_check_env(&ldprof_cfg, environ);
    ldprof_log_level = ldprof_cfg.log_level;
    dump = secure_getenv("LDPROF_DUMP_CONFIG");
    if (dump != NULL && ldprof_parse_bool(dump) == 1)
        ldprof_config_dump(STDERR_FILENO);
    if (!ldprof_cfg.enabled) {
        pr_info("disabled (enabled = false): every call passes through");
        ldprof_pass_setup(0, 0, 0, NULL);
        goto out;
    }
    find_self();
    ldprof_exec_snapshot(environ);
    if (ldprof_keyrings_init(ldprof_cfg.hmac_keys) == 0 && ldprof_cfg.profile[0] == '\0')
        pr_warn("hmac_keys is empty: no request can be traced");
    if (ldprof_span_pool_init() != 0 || ldprof_buf_init() != 0)
        goto out;
    if (ldprof_http_init() == 0)
        ldprof_pass_setup(1, ldprof_cfg.trace_socket, (unsigned)ldprof_http_nfds,
                          ldprof_http_kinds);
    ldprof_xport_init();
    if (ldprof_cfg.profile[0] != '\0')
        start_profile();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    __atomic_store_n(&ldprof_on, 1, __ATOMIC_RELEASE);
    pr_dbg("ready: service %s, collector %s", ldprof_cfg.service, ldprof_cfg.collector);
out:
    ldprof_tls.depth--;
}

void ldprof_fini(void)
{
    int was_on;

    if (__atomic_exchange_n(&fini_done, 1, __ATOMIC_ACQ_REL))
        return;
    was_on = __atomic_exchange_n(&ldprof_on, 0, __ATOMIC_ACQ_REL);
    if (!was_on)
        return;
    ldprof_tls.depth++;
    ldprof_span_emit_unfinished();
    ldprof_xport_fini();
    if (profile_own && ldprof_profile_base() != NULL) {
        char id[LDPROF_UUID_SIZE], line[200];
        int n;
        ldprof_uuid_format(ldprof_profile_base(), id);
        n = snprintf(line, sizeof(line), "Trace ID: %s\nShow it: ldprof trace show %s\n", id, id);
        ldprof_raw_write(STDERR_FILENO, line, (size_t)n);
    }
    ldprof_tls.depth--;
}

__attribute__((constructor)) static void ldprof_ctor(void)
{
    ldprof_init();
}

__attribute__((destructor)) static void ldprof_dtor(void)
{
    ldprof_fini();
}
