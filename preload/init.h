/*
 * preload/init.h - process-wide switches set by the constructor.
 */
#ifndef LDPROF_INIT_H
#define LDPROF_INIT_H

/*
 * ldprof_on: 1 between the end of a successful constructor (enabled=true)
 * and the start of the destructor.  Every wrapper tests it first: when 0
 * the wrapper is a pure pass-through (one branch).  Before our constructor
 * has run (another library's constructor calling us) it is 0 too.
 */
extern int ldprof_on __attribute__((visibility("hidden")));

static inline int ldprof_recording(void)
{
    return __builtin_expect(__atomic_load_n(&ldprof_on, __ATOMIC_RELAXED), 1);
}

/* ldprof_init - the constructor's work (idempotent). */
void ldprof_init(void);

/* ldprof_fini - the destructor's work (idempotent). */
void ldprof_fini(void);

/* Path of libldprof.so itself (dladdr), "" if unknown: exec keeps it in
 * LD_PRELOAD. */
extern char ldprof_self_path[4096];

#endif
