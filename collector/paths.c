/*
 * collector/paths.c - default locations and directory checks (see paths.h).
 */
#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char *abs_env(const char *name)
{
    const char *v = getenv(name);
    return (v && v[0] == '/') ? v : NULL;
}

static int fits(int r, size_t n)
{
    return r >= 0 && (size_t)r < n ? 0 : -1;
}

void coll_tmp_base(char *out, size_t n)
{
    snprintf(out, n, "/tmp/ldprof-%lu", (unsigned long)getuid());
}

int coll_default_socket(char *out, size_t n)
{
    const char *v = getenv("LDPROF_COLLECTOR");
    if (v && *v)
        return fits(snprintf(out, n, "%s", v), n);
    if ((v = abs_env("XDG_RUNTIME_DIR")))
        return fits(snprintf(out, n, "%s/ldprof/collector.sock", v), n);
    char base[64];
    coll_tmp_base(base, sizeof base);
    return fits(snprintf(out, n, "%s/collector.sock", base), n);
}

int coll_default_dir(char *out, size_t n)
{
    const char *v = getenv("LDPROF_TRACE_DIR");
    if (v && *v)
        return fits(snprintf(out, n, "%s", v), n);
    if ((v = abs_env("XDG_STATE_HOME")))
        return fits(snprintf(out, n, "%s/ldprof/traces", v), n);
    if ((v = abs_env("HOME")))
        return fits(snprintf(out, n, "%s/.local/state/ldprof/traces", v), n);
    char base[64];
    coll_tmp_base(base, sizeof base);
    return fits(snprintf(out, n, "%s/traces", base), n);
}

int coll_stats_path(const char *sock, char *out, size_t n)
{
    size_t len = strlen(sock);
    if (len >= 5 && strcmp(sock + len - 5, ".sock") == 0)
        len -= 5;
    return fits(snprintf(out, n, "%.*s.stats.json", (int)len, sock), n);
}

void coll_dirname(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == path)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(slash - path), path);
}

int coll_mkdirs(const char *path, mode_t mode)
{
    char tmp[4096];
    if (fits(snprintf(tmp, sizeof tmp, "%s", path), sizeof tmp) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int check_dir(const char *path, int strict, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", path);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen, "%s: owned by uid %lu, not by us (uid %lu); refusing to use it",
                 path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        return -1;
    }
    if ((st.st_mode & (strict ? 022 : 002)) != 0) {
        snprintf(err, errlen, "%s: mode %04o is %s-writable; refusing to use it (chmod 700 %s)",
                 path, (unsigned)(st.st_mode & 07777),
                 (st.st_mode & 002) ? "world" : "group", path);
        return -1;
    }
    return 0;
}

int coll_prepare_dir(const char *path, int strict, char *err, size_t errlen)
{
    char base[64];
    coll_tmp_base(base, sizeof base);
    size_t bl = strlen(base);
    if (strncmp(path, base, bl) == 0 && (path[bl] == '/' || path[bl] == '\0')) {
        if (mkdir(base, 0700) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", base, strerror(errno));
            return -1;
        }
        if (check_dir(base, 1, err, errlen) < 0)
            return -1;
    }
    if (coll_mkdirs(path, 0700) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return check_dir(path, strict, err, errlen);
}

int coll_socket_probe(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 1;
    if (e == ENOENT || e == ECONNREFUSED)
        return 0;
    errno = e;
    return -1;
}
