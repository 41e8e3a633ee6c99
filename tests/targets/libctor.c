/*
 * libctor.so - a library whose constructor calls hooked functions before
 * libldprof.so's constructor has run (LD_PRELOAD="libldprof.so libctor.so":
 * the later preload is initialised first).  The wrappers must resolve their
 * real functions lazily and pass through.  Prints one line on stderr:
 * "libctor: ok" or "libctor: FAIL ...".  Knows nothing about ldprof.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void libctor_early(void)
{
    int sv[2], e;
    char b[8];
    ssize_t w, r;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        dprintf(2, "libctor: FAIL socketpair\n");
        return;
    }
    w = write(sv[0], "early", 5);
    r = read(sv[1], b, sizeof(b));
    close(sv[0]);
    close(sv[1]);
    errno = 0;
    e = close(-1) == -1 ? errno : 0;
    if (w == 5 && r == 5 && memcmp(b, "early", 5) == 0 && e == EBADF)
        dprintf(2, "libctor: ok\n");
    else
        dprintf(2, "libctor: FAIL write=%zd read=%zd errno=%d\n", w, r, e);
}
