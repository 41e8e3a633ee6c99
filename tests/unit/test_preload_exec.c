/*
 * tests/unit/test_preload_exec.c - preload/exec.c: the environment an exec'd
 * child gets keeps LD_PRELOAD and LDPROF_* (uftrace's mcount_env_check).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "preload/exec.h"
#include "preload/init.h"

/* -Wwrite-strings: environment arrays are char *[] */
#define S(x) ((char *)(x))

static const char *find(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return *env + n + 1;
    return NULL;
}

static int count(char *const *env)
{
    int n = 0;
    while (env && env[n])
        n++;
    return n;
}

static void init(void)
{
    static char *start_env[] = {
        S("PATH=/usr/bin"),
        S("LD_PRELOAD=/opt/asan/libasan.so /usr/lib/ldprof/libldprof.so"),
        S("LDPROF_COLLECTOR=/run/c.sock"),
        S("LDPROF_HMAC_KEYS=k1"),
        NULL,
    };
    snprintf(ldprof_self_path, sizeof(ldprof_self_path), "/usr/lib/ldprof/libldprof.so");
    ldprof_exec_snapshot(start_env);
}

TestSuite(preload_exec, .init = init);

Test(preload_exec, empty_envp_gets_everything_back)
{
    char *empty[] = {NULL};
    struct ldprof_env_mem mem;
    char *const *env = ldprof_exec_env(empty, &mem);

    cr_assert_not_null(mem.map);
    cr_assert_eq(count(env), 3);
    cr_assert_str_eq(find(env, "LD_PRELOAD"), "/opt/asan/libasan.so /usr/lib/ldprof/libldprof.so");
    cr_assert_str_eq(find(env, "LDPROF_COLLECTOR"), "/run/c.sock");
    cr_assert_str_eq(find(env, "LDPROF_HMAC_KEYS"), "k1");
    ldprof_exec_env_free(&mem);
    cr_assert_null(mem.map);
}

Test(preload_exec, null_envp_is_an_empty_environment)
{
    struct ldprof_env_mem mem;
    char *const *env = ldprof_exec_env(NULL, &mem);

    cr_assert_eq(count(env), 3);
    ldprof_exec_env_free(&mem);
}

Test(preload_exec, complete_environment_is_passed_as_is)
{
    char *full[] = {S("A=1"), S("LD_PRELOAD=libldprof.so"), S("LDPROF_COLLECTOR=/other.sock"),
                    S("LDPROF_HMAC_KEYS=k2"), NULL};
    struct ldprof_env_mem mem;

    cr_assert_eq(ldprof_exec_env(full, &mem), full, "no copy when nothing is missing");
    cr_assert_null(mem.map);
}

Test(preload_exec, foreign_ld_preload_gets_ours_appended)
{
    char *envp[] = {S("LD_PRELOAD=/lib/libother.so"), S("B=2"), NULL};
    struct ldprof_env_mem mem;
    char *const *env = ldprof_exec_env(envp, &mem);

    cr_assert_str_eq(find(env, "LD_PRELOAD"), "/lib/libother.so:/usr/lib/ldprof/libldprof.so");
    cr_assert_str_eq(find(env, "B"), "2");
    cr_assert_str_eq(find(env, "LDPROF_HMAC_KEYS"), "k1");
    cr_assert_eq(count(env), 4);
    ldprof_exec_env_free(&mem);
}

Test(preload_exec, the_childs_own_ldprof_values_win)
{
    char *envp[] = {S("LDPROF_HMAC_KEYS=child-key"), NULL};
    struct ldprof_env_mem mem;
    char *const *env = ldprof_exec_env(envp, &mem);

    cr_assert_str_eq(find(env, "LDPROF_HMAC_KEYS"), "child-key");
    cr_assert_str_eq(find(env, "LDPROF_COLLECTOR"), "/run/c.sock");
    cr_assert_eq(count(env), 3);
    ldprof_exec_env_free(&mem);
}
