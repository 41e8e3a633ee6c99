/*
 * collector/store.c - dumps and journal on disk (see store.h).
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_fd(int fd, struct coll_buf *out)
{
    char tmp[65536];
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 0;
        if (coll_buf_add(out, tmp, (size_t)r) < 0) {
            errno = ENOMEM;
            return -1;
        }
    }
}

int coll_read_file(const char *path, struct coll_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = read_fd(fd, out);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Between the name and the writer's pid (the one definition of the
 * temporary names: coll_store_tmp_name() writes them, coll_store_tmp_pid()
 * reads them). */
#define TMP_MARK ".tmp."

int coll_store_tmp_name(char *out, size_t size, const char *name, long pid)
{
    if (snprintf(out, size, ".%s" TMP_MARK "%ld", name, pid) >= (int)size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

long coll_store_tmp_pid(const char *name)
{
    const char *t = strstr(name, TMP_MARK);
    if (name[0] != '.' || !t || t == name)
        return 0;
    size_t stem = (size_t)(t - name);
    int dump = stem > 6 && memcmp(t - 5, ".json", 5) == 0;
    int journal = stem == 1 + strlen(COLL_JOURNAL_NAME) &&
                  memcmp(name + 1, COLL_JOURNAL_NAME, stem - 1) == 0;
    if (!dump && !journal)
        return 0;
    const char *d = t + sizeof TMP_MARK - 1;
    long pid = 0;
    if (!*d || strlen(d) > 9)
        return 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9')
            return 0;
        pid = pid * 10 + (*d - '0');
    }
    return pid;
}

/* Atomic write of `name` relative to dirfd; `pid` names the temporary
 * file. */
static int write_atomic_at(int dirfd, const char *name, const char *data, size_t len,
                           int do_fsync, long pid)
{
    char tmp[NAME_MAX + 64];
    if (coll_store_tmp_name(tmp, sizeof tmp, name, pid) < 0)
        return -1;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, len) < 0 || (do_fsync && fsync(fd) < 0)) {
        int e = errno;
        close(fd);
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    if (close(fd) < 0 || renameat(dirfd, tmp, dirfd, name) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    return 0;
}

int coll_write_file_atomic(const char *path, const char *data, size_t len, int do_fsync)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) {
        size_t n = (size_t)(slash - path);
        if (n == 0)
            n = 1; /* "/file" */
        if (n >= sizeof dir) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    } else {
        strcpy(dir, ".");
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = write_atomic_at(dfd, base, data, len, do_fsync, (long)getpid());
    int e = errno;
    close(dfd);
    errno = e;
    return rc;
}

static int open_journal(struct coll_store *s)
{
    s->jfd = openat(s->dirfd, COLL_JOURNAL_NAME,
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->jfd < 0)
        return -1;
    struct stat st;
    if (fstat(s->jfd, &st) < 0)
        return -1;
    s->jsize = st.st_size;
    s->jdirty = 0;
    return 0;
}

int coll_store_open(struct coll_store *s, const char *dir, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->jfd = -1;
    s->sync_each = 1;
    s->pid = (long)getpid();
    if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir) {
        snprintf(err, errlen, "directory path too long");
        return -1;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    if (open_journal(s) < 0) {
        snprintf(err, errlen, "cannot open %s/%s: %s", dir, COLL_JOURNAL_NAME,
                 strerror(errno));
        close(s->dirfd);
        s->dirfd = -1;
        return -1;
    }
    return 0;
}

void coll_store_close(struct coll_store *s)
{
    if (s->jfd >= 0) {
        coll_store_journal_sync(s);
        close(s->jfd);
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->jfd = s->dirfd = -1;
}

int coll_store_journal_append(struct coll_store *s, const char *data, size_t len)
{
    if (write_all(s->jfd, data, len) < 0) {
        /* Cut a partial write off (ENOSPC...): the next append must start
         * on a line of its own. */
        int e = errno;
        int best_effort = ftruncate(s->jfd, s->jsize);
        (void)best_effort;
        errno = e;
        return -1;
    }
    s->jsize += (off_t)len;
    s->jdirty = 1;
    return 0;
}

int coll_store_journal_append_dgram(struct coll_store *s, const void *dgram, size_t len)
{
    static char nl[] = "\n";
    unsigned char head[8];
    memcpy(head, COLL_JOURNAL_DGRAM_MAGIC, 4);
    for (int i = 0; i < 4; i++)
        head[4 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    struct iovec iov[3] = {
        {.iov_base = head, .iov_len = sizeof head},
        {.iov_base = (void *)dgram, .iov_len = len},
        {.iov_base = nl, .iov_len = 1},
    };
    size_t total = sizeof head + len + 1, done = 0;
    if (len > UINT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    while (done < total) {
        ssize_t w;
        if (done == 0) {
            w = writev(s->jfd, iov, 3);
        } else {
            /* finish a short write from where it stopped */
            struct iovec rest[3];
            int n = 0;
            size_t skip = done;
            for (int i = 0; i < 3; i++) {
                if (skip >= iov[i].iov_len) {
                    skip -= iov[i].iov_len;
                    continue;
                }
                rest[n].iov_base = (char *)iov[i].iov_base + skip;
                rest[n].iov_len = iov[i].iov_len - skip;
                skip = 0;
                n++;
            }
            w = writev(s->jfd, rest, n);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            int best_effort = ftruncate(s->jfd, s->jsize);
            (void)best_effort;
            errno = e;
            return -1;
        }
        done += (size_t)w;
    }
    s->jsize += (off_t)total;
    s->jdirty = 1;
    return 0;
}

long coll_store_journal_scan(struct coll_store *s,
                             void (*cb)(void *arg, int kind, const char *p, size_t len),
                             void *arg)
{
    struct coll_buf b;
    coll_buf_init(&b);
    int fd = openat(s->dirfd, COLL_JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    int rc = read_fd(fd, &b);
    int e = errno;
    close(fd);
    if (rc < 0) {
        coll_buf_free(&b);
        errno = e;
        return -1;
    }
    long count = 0;
    size_t off = 0;
    const char *p = b.p;
    while (off < b.len) {
        const char *q = p + off;
        size_t left = b.len - off;
        count++;
        if (left >= 4 && memcmp(q, COLL_JOURNAL_DGRAM_MAGIC, 4) == 0) {
            size_t n = 0;
            if (left >= 8)
                for (int i = 0; i < 4; i++)
                    n |= (size_t)(unsigned char)q[4 + i] << (8 * i);
            if (left >= 9 && n <= left - 9 && q[8 + n] == '\n') {
                cb(arg, COLL_JENT_DGRAM, q + 8, n);
                off += 9 + n;
                continue;
            }
            /* Damaged or cut short: skip to the next line. */
            const char *nl = memchr(q + 1, '\n', left - 1);
            size_t skip = nl ? (size_t)(nl - q) + 1 : left;
            cb(arg, COLL_JENT_TORN, q, skip);
            off += skip;
            continue;
        }
        const char *nl = memchr(q, '\n', left);
        size_t n = nl ? (size_t)(nl - q) : left;
        cb(arg, COLL_JENT_LINE, q, n);
        off += n + (nl ? 1 : 0);
    }
    coll_buf_free(&b);
    return count;
}

struct lines_only {
    void (*cb)(void *arg, const char *line, size_t len);
    void *arg;
    long n;
};

static void line_cb(void *arg, int kind, const char *p, size_t len)
{
    struct lines_only *l = arg;
    if (kind == COLL_JENT_LINE) {
        l->cb(l->arg, p, len);
        l->n++;
    }
}

int coll_store_journal_sync(struct coll_store *s)
{
    if (!s->jdirty)
        return 0;
    if (fdatasync(s->jfd) < 0)
        return -1;
    s->jdirty = 0;
    return 0;
}

long coll_store_journal_read(struct coll_store *s,
                             void (*cb)(void *arg, const char *line, size_t len), void *arg)
{
    struct lines_only l = {cb, arg, 0};
    if (coll_store_journal_scan(s, line_cb, &l) < 0)
        return -1;
    return l.n;
}

int coll_store_journal_truncate(struct coll_store *s)
{
    if (ftruncate(s->jfd, 0) < 0 || fdatasync(s->jfd) < 0)
        return -1;
    s->jsize = 0;
    s->jdirty = 0;
    return 0;
}

int coll_store_journal_replace(struct coll_store *s, const char *data, size_t len)
{
    int rc, e;

    coll_store_journal_sync(s);
    if (write_atomic_at(s->dirfd, COLL_JOURNAL_NAME, data, len, 1, s->pid) < 0)
        return -1;
    /* Renamed: the name is the new journal now, so reopen it whatever the
     * directory's fsync says (appends to the old, unlinked file would be
     * lost); -1 with its errno when that fsync failed. */
    rc = fsync(s->dirfd), e = errno;
    close(s->jfd);
    if (open_journal(s) < 0)
        return -1;
    errno = e;
    return rc;
}

void coll_store_compact_begin(struct coll_store *s, struct coll_store_compact *c)
{
    c->dirfd = s->dirfd;
    c->fd = c->oldfd = -1;
    c->from = s->jsize;
    coll_store_tmp_name(c->tmp, sizeof c->tmp, COLL_JOURNAL_NAME, s->pid); /* fits */
}

int coll_store_compact_write(struct coll_store_compact *c, const char *data, size_t len)
{
    c->fd = openat(c->dirfd, c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                   0600);
    if (c->fd < 0)
        return -1;
    if (write_all(c->fd, data, len) < 0 || fsync(c->fd) < 0)
        return -1;
    return 0;
}

void coll_store_compact_abort(struct coll_store_compact *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        unlinkat(c->dirfd, c->tmp, 0);
    }
    c->fd = -1;
}

/* Append the journal's bytes [c->from, s->jsize) to c->fd. */
static int copy_tail(struct coll_store *s, struct coll_store_compact *c)
{
    if (s->jsize == c->from)
        return 0;
    int rfd = openat(s->dirfd, COLL_JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (rfd < 0)
        return -1;
    char buf[65536];
    off_t off = c->from;
    int rc = 0;
    while (rc == 0 && off < s->jsize) {
        size_t want = (size_t)(s->jsize - off) < sizeof buf ? (size_t)(s->jsize - off)
                                                               : sizeof buf;
        ssize_t r = pread(rfd, buf, want, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO; /* shorter than we wrote */
            rc = -1;
            break;
        }
        rc = write_all(c->fd, buf, (size_t)r);
        off += r;
    }
    if (rc == 0)
        rc = fdatasync(c->fd);
    int e = errno;
    close(rfd);
    errno = e;
    return rc;
}

int coll_store_compact_commit(struct coll_store *s, struct coll_store_compact *c)
{
    int rc = copy_tail(s, c), e = errno;
    if (close(c->fd) < 0 && rc == 0)
        rc = -1, e = errno;
    c->fd = -1;
    if (rc < 0) {
        unlinkat(c->dirfd, c->tmp, 0);
        errno = e;
        return -1;
    }
    if (renameat(s->dirfd, c->tmp, s->dirfd, COLL_JOURNAL_NAME) < 0) {
        e = errno;
        unlinkat(c->dirfd, c->tmp, 0);
        errno = e;
        return -1;
    }
    /* From here the journal is the new file: append to it whatever the
     * directory's fsync says. */
    rc = fsync(s->dirfd), e = errno;
    c->oldfd = s->jfd;
    if (open_journal(s) < 0)
        return -1;
    errno = e;
    return rc;
}

int coll_store_read_dump(struct coll_store *s, const char *base_id, struct coll_buf *out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.json", base_id);
    int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    int rc = read_fd(fd, out);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int coll_store_write_dump(struct coll_store *s, const char *base_id, const char *data,
                          size_t len, int rewrite)
{
    char name[128];
    snprintf(name, sizeof name, "%s.json", base_id);
    return write_atomic_at(s->dirfd, name, data, len, s->sync_each || rewrite, s->pid);
}

/* Link the unnamed file `fd` as `name` in the store's directory, the way
 * link_mode says (0: find out).  0, or -1 with errno set. */
static int link_tmpfile(struct coll_store *s, int fd, const char *name)
{
    if (s->link_mode <= 1) {
        if (linkat(fd, "", s->dirfd, name, AT_EMPTY_PATH) == 0) {
            s->link_mode = 1;
            return 0;
        }
        /* Older kernels refuse it (ENOENT) without CAP_DAC_READ_SEARCH. */
        if (errno != ENOENT || s->link_mode == 1)
            return -1;
    }
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, s->dirfd, name, AT_SYMLINK_FOLLOW) == 0) {
        s->link_mode = 2;
        return 0;
    }
    if (s->link_mode == 0 && errno != EEXIST) {
        int e = errno;
        if (e == ENOENT || e == EPERM || e == EACCES || e == EXDEV || e == ELOOP ||
            e == ENOTDIR)
            s->link_mode = -1; /* neither form works here */
        errno = e;
    }
    return -1;
}

int coll_store_create_dump(struct coll_store *s, const char *base_id, const char *data,
                           size_t len)
{
    char name[128];
    if (s->link_mode < 0) {
        errno = EOPNOTSUPP;
        return -1;
    }
    snprintf(name, sizeof name, "%s.json", base_id);
    int fd = openat(s->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        /* Kernels and file systems without O_TMPFILE. */
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            s->link_mode = -1;
        return -1;
    }
    int rc = -1;
    if (write_all(fd, data, len) == 0 && (!s->sync_each || fsync(fd) == 0)) {
        if (link_tmpfile(s, fd, name) == 0)
            rc = 0;
        else if (errno == EEXIST)
            rc = 1;
    }
    int e = errno;
    close(fd); /* unlinked, the file is freed */
    errno = e;
    return rc;
}

int coll_store_sync_dir(struct coll_store *s)
{
    return s->sync_each ? fsync(s->dirfd) : syncfs(s->dirfd);
}
