/*
 * preload/exec.h - keep ldprof in the environment of exec'd children.
 *
 * At start the constructor takes a snapshot of LD_PRELOAD and of every
 * LDPROF_* variable.  When the program execs with an environment that lost
 * them (execve with a fresh or empty envp, clearenv(), env -i...), the exec
 * wrappers pass a copy of that environment with the missing entries added:
 *
 *   - LD_PRELOAD: when the program's value does not name libldprof.so, ours
 *     is appended ("theirs:/path/libldprof.so"); when the variable is
 *     absent, the start-up value is added (only when it named us: a library
 *     loaded through /etc/ld.so.preload needs nothing).
 *   - LDPROF_*: every start-up variable the new environment does not define
 *     is added with its start-up value; one it defines is left as it is.
 *
 * The copy is mmap'd (safe in a vfork child, no malloc) and unmapped when
 * the exec fails.
 */
#ifndef LDPROF_EXEC_H
#define LDPROF_EXEC_H

#include <stddef.h>

struct ldprof_env_mem {
    void *map;
    size_t len;
};

/* ldprof_exec_snapshot - take the start-up snapshot (constructor). */
void ldprof_exec_snapshot(char **environ_at_start);

/* ldprof_exec_env_add - add NAME=value to the snapshot (e.g. the profile
 * trace's base id for children).  @entry is copied. */
void ldprof_exec_env_add(const char *entry);

/*
 * ldprof_exec_env - the environment to pass on: @envp itself when nothing
 * is missing (mem->map stays NULL), else a new array.  @envp may be NULL
 * (an empty environment).  Never fails: on an allocation failure @envp is
 * returned as it is.  Async-signal-safe (vfork children).
 */
char *const *ldprof_exec_env(char *const envp[], struct ldprof_env_mem *mem);

/* ldprof_exec_env_free - release what ldprof_exec_env() mapped. */
void ldprof_exec_env_free(struct ldprof_env_mem *mem);

#endif
