/*
 * echo - byte integrity and errno exactness through every hooked socket
 * call, over a socketpair and over loopback TCP (an accepted socket, which
 * the preload follows).  Knows nothing about ldprof.  Prints "OK" and exits
 * 0 when everything matched; prints what differed and exits 1 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                         \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

static void *echo_thread(void *arg)
{
    int fd = *(int *)arg;
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w <= 0)
                return NULL;
            off += w;
        }
    }
    close(fd);
    return NULL;
}

static void read_exact(int fd, char *buf, size_t n, int how)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r;
        switch (how % 5) {
        case 0:
            r = read(fd, buf + got, n - got);
            break;
        case 1:
            r = recv(fd, buf + got, n - got, 0);
            break;
        case 2:
            r = recvfrom(fd, buf + got, n - got, 0, NULL, NULL);
            break;
        case 3: {
            struct iovec iov[2] = {{buf + got, (n - got) / 2}, {buf + got + (n - got) / 2, n - got - (n - got) / 2}};
            r = readv(fd, iov, (n - got) > 1 ? 2 : 1);
            if ((n - got) <= 1)
                r = read(fd, buf + got, n - got);
            break;
        }
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
        CHECK(r > 0, "read %zd errno %d", r, errno);
        if (r <= 0)
            return;
        got += (size_t)r;
    }
}

static void write_with(int fd, const char *buf, size_t n, int how)
{
    ssize_t r;
    switch (how % 5) {
    case 0:
        r = write(fd, buf, n);
        break;
    case 1:
        r = send(fd, buf, n, MSG_NOSIGNAL);
        break;
    case 2:
        r = sendto(fd, buf, n, MSG_NOSIGNAL, NULL, 0);
        break;
    case 3: {
        struct iovec iov[2] = {{(void *)buf, n / 2}, {(void *)(buf + n / 2), n - n / 2}};
        r = writev(fd, iov, 2);
        break;
    }
    default: {
        struct iovec iov = {(void *)buf, n};
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        r = sendmsg(fd, &m, MSG_NOSIGNAL);
        break;
    }
    }
    CHECK(r == (ssize_t)n, "write returned %zd for %zu (errno %d)", r, n, errno);
}

static void exchange(int fd, const char *what)
{
    char out[3000], in[3000];
    for (int round = 0; round < 25; round++) {
        size_t n = 1 + (size_t)(round * 113) % sizeof(out);
        for (size_t i = 0; i < n; i++)
            out[i] = (char)(i * 7 + (size_t)round);
        if (round == 3) { /* something that looks like HTTP, too */
            n = (size_t)snprintf(out, sizeof(out), "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        }
        write_with(fd, out, n, round);
        memset(in, 0, n);
        read_exact(fd, in, n, round + 1);
        CHECK(memcmp(in, out, n) == 0, "%s: round %d: bytes differ", what, round);
    }
}

static void errno_checks(void)
{
    char b[4];
    int sv[2];

    errno = 0;
    CHECK(read(-1, b, 1) == -1 && errno == EBADF, "read(-1): errno %d", errno);
    errno = 0;
    CHECK(write(-1, b, 1) == -1 && errno == EBADF, "write(-1): errno %d", errno);
    errno = 0;
    CHECK(recv(0 + 1000, b, 1, 0) == -1 && errno == EBADF, "recv(bad): errno %d", errno);
    errno = 0;
    CHECK(close(-1) == -1 && errno == EBADF, "close(-1): errno %d", errno);
    errno = 0;
    CHECK(dup2(-1, 50) == -1 && errno == EBADF, "dup2(-1): errno %d", errno);
    errno = 0;
    CHECK(connect(-1, NULL, 0) == -1 && errno == EBADF, "connect(-1): errno %d", errno);
    int devnull = open("/dev/null", O_RDONLY);
    errno = 0;
    CHECK(recv(devnull, b, 1, 0) == -1 && errno == ENOTSOCK, "recv(file): errno %d", errno);
    close(devnull);

    /* a successful call leaves errno alone */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    errno = 4242;
    CHECK(write(sv[0], "ab", 2) == 2 && errno == 4242, "errno changed by a good write: %d", errno);
    CHECK(read(sv[1], b, 2) == 2 && errno == 4242, "errno changed by a good read: %d", errno);
    {
        /* sizes unknown at compile time, buffers known: with
         * -D_FORTIFY_SOURCE these become __read_chk/__recv_chk/__recvfrom_chk */
        char fb[16];
        volatile size_t two = 2;
        CHECK(write(sv[0], "cdefgh", 6) == 6, "write 6");
        CHECK(read(sv[1], fb, two) == 2 && memcmp(fb, "cd", 2) == 0, "fortified read");
        CHECK(recv(sv[1], fb, two, 0) == 2 && memcmp(fb, "ef", 2) == 0, "fortified recv");
        CHECK(recvfrom(sv[1], fb, two, 0, NULL, NULL) == 2 && memcmp(fb, "gh", 2) == 0,
              "fortified recvfrom");
    }
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    errno = 0;
    CHECK(read(sv[1], b, 2) == -1 && errno == EAGAIN, "EAGAIN expected: %d", errno);
    CHECK(read(sv[1], b, 0) == 0, "0-byte read");
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    int sv[2], ls, cfd, sfd, one = 1;
    pthread_t th;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);

    errno_checks();

    /* socketpair */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pthread_create(&th, NULL, echo_thread, &sv[1]);
    exchange(sv[0], "socketpair");
    shutdown(sv[0], SHUT_WR);
    pthread_join(th, NULL);
    close(sv[0]);

    /* loopback TCP: the echo side is an accepted socket */
    ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(ls, (struct sockaddr *)&sa, sizeof(sa));
    listen(ls, 4);
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    cfd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %d", errno);
    sfd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CHECK(sfd >= 0, "accept4: %d", errno);
    pthread_create(&th, NULL, echo_thread, &sfd);
    exchange(cfd, "tcp");
    close(cfd);
    pthread_join(th, NULL);
    close(ls);

    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    puts("OK");
    return 0;
}
