/*
 * tests/unit/tmpdir.h - a scratch directory for the tests of a suite:
 * made in the suite's .init, removed with everything in it in its .fini.
 */
#ifndef LDPROF_TESTS_TMPDIR_H
#define LDPROF_TESTS_TMPDIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

/* Make /tmp/ldprof-NAME.XXXXXX into @dir (@cap bytes). */
static inline void unit_tmpdir_make(char *dir, size_t cap, const char *name)
{
    cr_assert_lt((size_t)snprintf(dir, cap, "/tmp/ldprof-%s.XXXXXX", name), cap);
    cr_assert_not_null(mkdtemp(dir));
}

/* Remove @dir and what is in it (a warning if that fails). */
static inline void unit_tmpdir_remove(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("cleanup failed");
}

#endif
