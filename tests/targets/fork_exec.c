/*
 * fork_exec - exec and fork in the ways that lose a preload's environment
 * or deadlock a preload's locks.  Knows nothing about ldprof.
 *
 *   fork_exec            run the children below, one after the other:
 *                          execve with an empty envp; execle with an empty
 *                          envp; execv after clearenv(); posix_spawn with an
 *                          envp of one unrelated variable; execve with a
 *                          NULL envp
 *                        each child prints one line (see --child) and the
 *                        parent exits 0 when every child exited 0
 *   fork_exec --child NAME
 *                        print "NAME preload=<LD_PRELOAD or -> ldprof_vars=<n>
 *                        mapped=<yes|no>" (mapped: a libldprof.so is in
 *                        /proc/self/maps)
 *   fork_exec --stress N every thread serves HTTP requests to itself (the
 *                        trace headers come from TRACE_INFO/TRACE_HMAC) while
 *                        the main thread forks N times, with a 1 ms timer
 *                        whose signal handler writes to a socket; each child
 *                        serves one request itself and exits.  Prints
 *                        "STRESS <children ok>" and exits 0 when all did.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int child_report(const char *name)
{
    const char *pre = getenv("LD_PRELOAD");
    int nvars = 0, mapped = 0;
    char line[4096];
    FILE *f;

    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "LDPROF_", 7) == 0)
            nvars++;
    f = fopen("/proc/self/maps", "r");
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "libldprof.so"))
            mapped = 1;
    if (f)
        fclose(f);
    printf("%s preload=%s ldprof_vars=%d mapped=%s\n", name, pre ? pre : "-", nvars,
           mapped ? "yes" : "no");
    return 0;
}

static int wait_ok(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int run_children(void)
{
    static char *const empty[] = {NULL};
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    int ok = 1;
    pid_t pid;

    if (n <= 0)
        return 1;
    self[n] = '\0';
    fflush(stdout);

    if ((pid = fork()) == 0) {
        char *argv[] = {self, (char *)"--child", (char *)"execve-empty", NULL};
        execve(self, argv, empty);
        _exit(127);
    }
    ok &= wait_ok(pid);
    if ((pid = fork()) == 0) {
        execle(self, self, "--child", "execle-empty", (char *)NULL, empty);
        _exit(127);
    }
    ok &= wait_ok(pid);
    if ((pid = fork()) == 0) {
        char *argv[] = {self, (char *)"--child", (char *)"execv-clearenv", NULL};
        clearenv();
        execv(self, argv);
        _exit(127);
    }
    ok &= wait_ok(pid);
    {
        char *argv[] = {self, (char *)"--child", (char *)"posix_spawn", NULL};
        char *envp[] = {(char *)"UNRELATED=1", NULL};
        ok &= posix_spawn(&pid, self, NULL, NULL, argv, envp) == 0 && wait_ok(pid);
    }
    if ((pid = fork()) == 0) {
        char *argv[] = {self, (char *)"--child", (char *)"execve-null", NULL};
        execve(self, argv, NULL);
        _exit(127);
    }
    ok &= wait_ok(pid);
    return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- stress */

static int serve_self(const char *path)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char req[1024], buf[2048];
    const char *info = getenv("TRACE_INFO"), *hmac = getenv("TRACE_HMAC");
    int ls, c, s, n, rc = -1;
    ssize_t r;

    ls = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&sa, &sl)) {
        close(ls);
        return -1;
    }
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out2;
    do
        s = accept(ls, NULL, NULL);
    while (s < 0 && errno == EINTR);
    if (s < 0)
        goto out2;
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: self\r\nX-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n\r\n",
                 path, info ? info : "-", hmac ? hmac : "-");
    if (write(c, req, (size_t)n) != n)
        goto out;
    do
        r = read(s, buf, sizeof(buf));
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        goto out;
    n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    if (write(s, buf, (size_t)n) != n)
        goto out;
    do
        r = read(c, buf, sizeof(buf));
    while (r < 0 && errno == EINTR);
    rc = r == n ? 0 : -1;
out:
    close(s);
out2:
    close(c);
    close(ls);
    return rc;
}

static volatile int stop_threads;
static int sig_fds[2];

static void on_alarm(int sig)
{
    int saved = errno;
    char c = 'x';
    (void)sig;
    /* a hooked call from a signal handler, possibly during fork() */
    if (send(sig_fds[0], &c, 1, MSG_DONTWAIT) < 0) {
        char drain[256];
        while (recv(sig_fds[1], drain, sizeof(drain), MSG_DONTWAIT) > 0)
            ;
    }
    errno = saved;
}

static void *traffic(void *arg)
{
    long *count = arg;
    while (!stop_threads)
        if (serve_self("/thread") == 0)
            (*count)++;
    return NULL;
}

static int stress(int nforks)
{
    pthread_t th[4];
    long counts[4] = {0};
    struct itimerval it = {{0, 1000}, {0, 1000}};
    int ok = 0;

    socketpair(AF_UNIX, SOCK_STREAM, 0, sig_fds);
    signal(SIGALRM, on_alarm);
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, traffic, &counts[i]);
    setitimer(ITIMER_REAL, &it, NULL);
    for (int i = 0; i < nforks; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct itimerval off = {{0, 0}, {0, 0}};
            setitimer(ITIMER_REAL, &off, NULL);
            exit(serve_self("/child") == 0 ? 0 : 1);
        }
        ok += wait_ok(pid);
    }
    memset(&it, 0, sizeof(it));
    setitimer(ITIMER_REAL, &it, NULL);
    stop_threads = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    printf("STRESS %d of %d, thread requests %ld\n", ok, nforks,
           counts[0] + counts[1] + counts[2] + counts[3]);
    return ok == nforks ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        return child_report(argv[2]);
    if (argc >= 3 && strcmp(argv[1], "--stress") == 0)
        return stress(atoi(argv[2]));
    return run_children();
}
