/*
 * net_client - a fixed sequence of socket calls, for the `net` spans test
 * (tests/e2e/34-net-spans.sh).  Knows nothing about ldprof.
 *
 *   net_client serve PORTFILE   a loopback TCP echo server (one connection
 *                               at a time, forever); writes its port to
 *                               PORTFILE once listening
 *   net_client PORT             the client:
 *     1. I/O that is not on a socket: write/read on a pipe, write on
 *        /dev/null (no net span expected)
 *     2. connect to 127.0.0.1:PORT
 *     3. send 5 bytes, recv them back; write 6 / read 6; writev 5 /
 *        readv 5; sendto 6 / recvfrom 6; sendmsg 3 / recvmsg 3 (each echo
 *        read until complete: a read may return fewer bytes)
 *     4. a non-blocking recv with nothing to read (EAGAIN: no span)
 *     5. recv on a socket that is not connected (ENOTCONN: an error span)
 *   and prints every result and errno name on stdout ("failures: N" last).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        failures++;
        printf("FAIL %s\n", what);
    }
}

static int serve(const char *portfile)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    FILE *f;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 8) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        perror("net_client serve");
        return 1;
    }
    f = fopen(portfile, "w");
    if (f == NULL) {
        perror(portfile);
        return 1;
    }
    fprintf(f, "%d\n", ntohs(a.sin_port));
    fclose(f);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        char buf[4096];
        ssize_t r;

        if (c < 0)
            continue;
        while ((r = read(c, buf, sizeof(buf))) > 0) {
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(c, buf + off, (size_t)(r - off));
                if (w <= 0)
                    break;
                off += w;
            }
        }
        close(c);
    }
}

/* Read exactly @n bytes with method @how; returns the bytes read. */
static size_t read_back(int fd, char *buf, size_t n, int how)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r;
        switch (how) {
        case 0:
            r = recv(fd, buf + got, n - got, 0);
            break;
        case 1:
            r = read(fd, buf + got, n - got);
            break;
        case 2: {
            struct iovec iov = {buf + got, n - got};
            r = readv(fd, &iov, 1);
            break;
        }
        case 3:
            r = recvfrom(fd, buf + got, n - got, 0, NULL, NULL);
            break;
        default: {
            struct iovec iov = {buf + got, n - got};
            struct msghdr m;
            memset(&m, 0, sizeof(m));
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            r = recvmsg(fd, &m, 0);
            break;
        }
        }
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

static void echo_step(int fd, const char *name, ssize_t sent, const char *want, int how)
{
    char buf[64];
    size_t n = strlen(want);
    size_t got;

    printf("%s: sent %zd\n", name, sent);
    check(sent == (ssize_t)n, name);
    got = read_back(fd, buf, n, how);
    printf("%s: read back %zu '%.*s'\n", name, got, (int)got, buf);
    check(got == n && memcmp(buf, want, n) == 0, name);
}

int main(int argc, char **argv)
{
    struct sockaddr_in a;
    int p[2], dn, fd, fd2, fl;
    char buf[64];
    ssize_t r;

    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: net_client PORT | net_client serve PORTFILE\n");
        return 2;
    }

    /* 1. not sockets */
    check(pipe(p) == 0, "pipe");
    r = write(p[1], "pipe", 4);
    printf("pipe write: %zd\n", r);
    r = read(p[0], buf, sizeof(buf));
    printf("pipe read: %zd\n", r);
    dn = open("/dev/null", O_WRONLY);
    r = write(dn, "null", 4);
    printf("devnull write: %zd\n", r);

    /* 2. connect */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)atoi(argv[1]));
    r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    printf("connect: %zd\n", r);
    check(r == 0, "connect");

    /* 3. echoes */
    echo_step(fd, "send", send(fd, "hello", 5, 0), "hello", 0);
    echo_step(fd, "write", write(fd, "world!", 6), "world!", 1);
    {
        struct iovec iov[2] = {{(void *)"ab", 2}, {(void *)"cde", 3}};
        echo_step(fd, "writev", writev(fd, iov, 2), "abcde", 2);
    }
    echo_step(fd, "sendto", sendto(fd, "sendto", 6, 0, NULL, 0), "sendto", 3);
    {
        struct iovec iov = {(void *)"msg", 3};
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        echo_step(fd, "sendmsg", sendmsg(fd, &m, 0), "msg", 4);
    }

    /* 4. would block */
    fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    errno = 0;
    r = recv(fd, buf, sizeof(buf), 0);
    printf("nonblocking recv: %zd %s\n", r, r < 0 && errno == EAGAIN ? "EAGAIN" : "?");
    check(r == -1 && errno == EAGAIN, "nonblocking recv");
    fcntl(fd, F_SETFL, fl);

    /* 5. an error */
    fd2 = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    r = recv(fd2, buf, sizeof(buf), 0);
    printf("unconnected recv: %zd %s\n", r, r < 0 && errno == ENOTCONN ? "ENOTCONN" : "?");
    check(r == -1 && errno == ENOTCONN, "unconnected recv");

    close(fd2);
    close(fd);
    close(dn);
    close(p[0]);
    close(p[1]);
    printf("failures: %d\n", failures);
    return failures != 0;
}
