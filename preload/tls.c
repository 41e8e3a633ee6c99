/*
 * preload/tls.c - per-thread state (see tls.h).
 */
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"
#include "tls.h"

__thread struct ldprof_tls ldprof_tls __attribute__((tls_model("initial-exec")));

pid_t ldprof_tls_tid_slow(void)
{
    ldprof_tls.tid = (pid_t)syscall(SYS_gettid);
    return ldprof_tls.tid;
}

void ldprof_tls_reset_after_fork(void)
{
    /* The buffer pointer stays: buffer.c keeps the forking thread's buffer
     * (emptied) and frees the others. */
    ldprof_tls.tid = 0;
}

/* Defined here (not in init.c) so that the unit tests, which link the
 * preload modules without the constructor, can switch recording on. */
int ldprof_on;
