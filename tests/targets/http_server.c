/*
 * http_server - a tiny HTTP/1.1 server for preload tests.  Knows nothing
 * about ldprof.
 *
 *   http_server [--epoll] [--max N] [--port P]
 *
 * Listens on 127.0.0.1 (port P, default: any), prints "PORT <n>" on stdout,
 * and serves until it has handled N connections (default: forever) or gets
 * a request for /quit.  Modes: a thread per connection (default) or one
 * epoll thread serving every connection (--epoll, like libmicrohttpd's
 * internal thread).  Keep-alive and pipelining are supported.
 *
 * Paths: /chunked  (chunked body, written with several writev calls)
 *        /close    (HTTP/1.0-style: no Content-Length, body ends at close)
 *        /slow     (the response is written one byte every 2 ms)
 *        /quit     (answers, then the server exits)
 *        /fwd/PORT/REST  (first makes its own request GET /REST to
 *                  127.0.0.1:PORT - with writes split inside the request
 *                  line - reads that response, then answers)
 *        anything else: 200 with a small Content-Length body; HEAD too.
 * Request bodies (Content-Length) are read and ignored.
 *
 * The syscalls vary on purpose so that each wrapper is exercised: reads use
 * read/recv/readv in turn, responses use write/send/sendmsg/writev.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUFSZ 65536

struct conn {
    int fd;
    size_t len;
    int nread; /* rotates the read syscall */
    int closing;
    char buf[BUFSZ];
};

static int quit_flag;
static int max_conns = -1;
static int served;
static pthread_mutex_t served_lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t write_all(int fd, const char *p, size_t n, int how)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r;
        if (how == 0) {
            r = write(fd, p + off, n - off);
        } else if (how == 1) {
            r = send(fd, p + off, n - off, MSG_NOSIGNAL);
        } else {
            struct iovec iov = {(void *)(p + off), n - off};
            struct msghdr m;
            memset(&m, 0, sizeof(m));
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            r = sendmsg(fd, &m, MSG_NOSIGNAL);
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            usleep(1000);
            continue;
        }
        if (r <= 0)
            return -1;
        off += (size_t)r;
    }
    return (ssize_t)n;
}

/* An outbound request from inside a request: GET /rest on 127.0.0.1:port. */
static int forward(int port, const char *rest)
{
    struct sockaddr_in sa;
    char req[1200], resp[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n;
    size_t got = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    n = snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n", rest);
    /* the request line in two writes, the rest in a third */
    if (write_all(fd, req, 6, 0) < 0 || write_all(fd, req + 6, 10, 1) < 0 ||
        write_all(fd, req + 16, (size_t)n - 16, 2) < 0) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    return strstr(resp, " 200 ") ? 0 : -1;
}

/* Answer one request.  Returns 0 to keep the connection, 1 to close. */
static int respond(struct conn *c, const char *method, const char *path, int keep)
{
    char head[512], body[256];
    int head_only = strcmp(method, "HEAD") == 0;
    int n, bn, how = c->nread % 3;

    if (strncmp(path, "/chunked", 8) == 0) {
        struct iovec iov[4];
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n%s\r\n",
                     keep ? "" : "Connection: close\r\n");
        if (write_all(c->fd, head, (size_t)n, how) < 0)
            return 1;
        if (head_only)
            return !keep;
        iov[0].iov_base = (void *)"5\r\nhello\r\n";
        iov[0].iov_len = 10;
        iov[1].iov_base = (void *)"1\r\n \r\n";
        iov[1].iov_len = 6;
        if (writev(c->fd, iov, 2) < 0)
            return 1;
        iov[0].iov_base = (void *)"5\r\nworld\r\n";
        iov[0].iov_len = 10;
        iov[1].iov_base = (void *)"0\r\n\r\n";
        iov[1].iov_len = 5;
        if (writev(c->fd, iov, 2) < 0)
            return 1;
        return !keep;
    }
    if (strncmp(path, "/fwd/", 5) == 0) {
        int port = atoi(path + 5);
        const char *rest = strchr(path + 5, '/');
        if (forward(port, rest ? rest + 1 : "") != 0) {
            n = snprintf(head, sizeof(head), "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return write_all(c->fd, head, (size_t)n, how) < 0 || !keep;
        }
    }
    if (strncmp(path, "/close", 6) == 0) {
        n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye %s\n", path);
        write_all(c->fd, head, (size_t)n, how);
        return 1;
    }
    bn = snprintf(body, sizeof(body), "{\"path\": \"%s\", \"method\": \"%s\"}\n", path, method);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n",
                 bn, keep ? "" : "Connection: close\r\n");
    if (strncmp(path, "/slow", 5) == 0) {
        for (int i = 0; i < n; i++) {
            if (write_all(c->fd, head + i, 1, how) < 0)
                return 1;
            usleep(2000);
        }
        for (int i = 0; i < bn && !head_only; i++)
            if (write_all(c->fd, body + i, 1, how) < 0)
                return 1;
    } else {
        /* head and body in one go half of the time, separately otherwise */
        if (how == 0 && !head_only) {
            struct iovec iov[2] = {{head, (size_t)n}, {body, (size_t)bn}};
            if (writev(c->fd, iov, 2) < 0)
                return 1;
        } else {
            if (write_all(c->fd, head, (size_t)n, how) < 0)
                return 1;
            if (!head_only && write_all(c->fd, body, (size_t)bn, how) < 0)
                return 1;
        }
    }
    if (strcmp(path, "/quit") == 0)
        quit_flag = 1;
    return !keep;
}

/* Handle every complete request in c->buf.  Returns 1 to close. */
static int process(struct conn *c)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        char method[16], path[1024], version[16];
        size_t head_len, clen = 0;
        int keep;
        char *p;

        if (end == NULL)
            return c->len >= BUFSZ; /* head too large: give up */
        head_len = (size_t)(end - c->buf) + 4;
        if (sscanf(c->buf, "%15s %1023s %15s", method, path, version) != 3)
            return 1;
        keep = strcmp(version, "HTTP/1.1") == 0;
        for (p = c->buf; p < end; p++) {
            if (p[0] == '\n' && strncasecmp(p + 1, "content-length:", 15) == 0)
                clen = strtoul(p + 16, NULL, 10);
            if (p[0] == '\n' && strncasecmp(p + 1, "connection: close", 17) == 0)
                keep = 0;
        }
        if (c->len < head_len + clen)
            return 0; /* body not all here yet */
        if (respond(c, method, path, keep))
            return 1;
        memmove(c->buf, c->buf + head_len + clen, c->len - head_len - clen);
        c->len -= head_len + clen;
    }
}

static ssize_t do_read(struct conn *c)
{
    char *p = c->buf + c->len;
    size_t room = BUFSZ - c->len;
    switch (c->nread++ % 3) {
    case 0:
        return read(c->fd, p, room);
    case 1:
        return recv(c->fd, p, room, 0);
    default: {
        struct iovec iov[2] = {{p, room / 2}, {p + room / 2, room - room / 2}};
        return readv(c->fd, iov, 2);
    }
    }
}

static void count_served(void)
{
    pthread_mutex_lock(&served_lock);
    served++;
    if (max_conns > 0 && served >= max_conns)
        quit_flag = 1;
    pthread_mutex_unlock(&served_lock);
}

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    for (;;) {
        ssize_t r = do_read(c);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        c->len += (size_t)r;
        if (process(c))
            break;
    }
    close(c->fd);
    free(c);
    count_served();
    return NULL;
}

static void serve_threads(int ls)
{
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                if (quit_flag)
                    return;
                usleep(1000);
                continue;
            }
            perror("accept");
            return;
        }
        struct conn *c = calloc(1, sizeof(*c));
        pthread_t th;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* no Nagle delays */
        c->fd = fd;
        pthread_create(&th, NULL, conn_thread, c);
        pthread_detach(th);
        if (quit_flag)
            return;
    }
}

static void serve_epoll(int ls)
{
    static struct conn *open_conns[1024]; /* to free what is still open at quit */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    while (!quit_flag) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (fd >= 1024) {
                    close(fd);
                    continue;
                }
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                open_conns[fd] = c;
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                continue;
            }
            ssize_t r = do_read(c);
            int done = 0;
            if (r > 0) {
                c->len += (size_t)r;
                done = process(c);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                done = 1;
            }
            if (done) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                open_conns[c->fd] = NULL;
                close(c->fd);
                free(c);
                count_served();
            }
        }
    }
    for (int fd = 0; fd < 1024; fd++) {
        if (open_conns[fd]) {
            close(fd);
            free(open_conns[fd]);
        }
    }
    close(ep);
}

int main(int argc, char **argv)
{
    int use_epoll = 0, port = 0, ls, one = 1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epoll") == 0)
            use_epoll = 1;
        else if (strcmp(argv[i], "--max") == 0 && i + 1 < argc)
            max_conns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
    }
    signal(SIGPIPE, SIG_IGN);
    ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (use_epoll ? SOCK_NONBLOCK : 0), 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 128) != 0) {
        perror("bind/listen");
        return 1;
    }
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    if (!use_epoll) {
        /* accept() must notice quit: poll with a timeout via SO_RCVTIMEO */
        struct timeval tv = {0, 100000};
        setsockopt(ls, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        serve_threads(ls);
        usleep(100000); /* let connection threads finish their writes */
    } else {
        serve_epoll(ls);
    }
    close(ls);
    return 0;
}
