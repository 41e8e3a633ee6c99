/*
 * fd_closer - a program that closes every file descriptor, the way daemons
 * do, between two HTTP requests it serves to itself.  Knows nothing about
 * ldprof; the trace headers to send come from the environment
 * (TRACE_INFO, TRACE_HMAC; none: untraced requests).
 *
 * One exchange (serve_self): listen on loopback, connect to it, accept, send
 * a request from the client end, read it on the accepted end, answer, read
 * the answer, close everything - all in one thread.
 *
 * Between the two exchanges: close(fd) and dup2(0, fd)+close(fd) for every
 * fd from 3 to the fd limit (at most 4096), then close_range(3, ~0U, 0) and
 * closefrom(3).  Prints "OK" and exits 0 when both exchanges worked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve_self(const char *path)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char req[1024], buf[2048];
    const char *info = getenv("TRACE_INFO"), *hmac = getenv("TRACE_HMAC");
    int ls, c, s, n, one = 1;
    ssize_t r;

    ls = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
        getsockname(ls, (struct sockaddr *)&sa, &sl))
        return -1;
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return -1;
    s = accept(ls, NULL, NULL);
    if (s < 0)
        return -1;
    if (info && hmac)
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: self\r\nX-Trace-Info: %s\r\nX-Trace-HMAC: %s\r\n\r\n",
                     path, info, hmac);
    else
        n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: self\r\n\r\n", path);
    if (write(c, req, (size_t)n) != n)
        return -1;
    r = read(s, buf, sizeof(buf));
    if (r <= 0 || memmem(buf, (size_t)r, "\r\n\r\n", 4) == NULL)
        return -1;
    n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    if (send(s, buf, (size_t)n, 0) != n)
        return -1;
    r = recv(c, buf, sizeof(buf), 0);
    if (r != n)
        return -1;
    close(s);
    close(c);
    close(ls);
    return 0;
}

int main(void)
{
    struct rlimit rl;
    int max = 1024;

    if (serve_self("/before") != 0) {
        perror("first exchange");
        return 1;
    }
    usleep(300 * 1000); /* a flush happens: the profiler (if any) has its socket now */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096)
        max = (int)rl.rlim_cur;
    else
        max = 4096;
    for (int fd = 3; fd < max; fd++) {
        if (fd % 2 && dup2(0, fd) < 0 && errno != EBADF)
            perror("dup2");
        close(fd);
    }
    close_range(3, ~0u, 0);
    closefrom(3);
    if (serve_self("/after") != 0) {
        perror("second exchange");
        return 1;
    }
    puts("OK");
    return 0;
}
