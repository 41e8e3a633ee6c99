/*
 * preload/buffer.h - per-thread span buffers and their hand-off to the flusher.
 *
 * Each thread that records a span gets one buffer (LDPROF_BUF_SIZE bytes of
 * records), created on its first span (mmap, no malloc) and linked into a
 * global list.  The owner appends finished span records; the flusher thread
 * (transport.c) periodically moves the contents out and sends them as one
 * datagram.  A record that does not fit is dropped and counted: the app is
 * never blocked.
 *
 * Locks, in the only order they are ever nested:
 *   1. list_lock (pthread mutex): the list of buffers.  Taken by a thread
 *      creating its buffer, by the flusher while it walks the list, by the
 *      fork handlers.  Never taken on the recording path.
 *   2. b->lock (spinlock, one per buffer): the buffer's contents.  Taken by
 *      the owner for one append (a memcpy of at most ~2 KiB) and by the
 *      flusher for one drain (a memcpy of at most LDPROF_BUF_SIZE); nothing
 *      else happens under it, so a waiter spins for microseconds at most.
 *   3. transport's xport_lock (never held together with a buffer lock).
 * A signal handler that records while its thread holds its own buffer lock
 * cannot deadlock: the reentrancy guard (tls.h) makes a handler that
 * interrupts ldprof code pass straight through.
 *
 * The pthread_key destructor of a buffer (thread exit) marks it orphaned;
 * the flusher sends what is left and frees it.
 *
 * Wake-ups: a thread buffer holds LDPROF_BUF_DGRAMS datagrams' worth of
 * records and wakes the flusher once one datagram's worth (LDPROF_BUF_CAP)
 * is waiting, so that each wake-up (tens of microseconds of CPU on a VM,
 * whatever it sends) carries a full datagram and the buffer still has a
 * datagram's worth of room while the flusher gets scheduled.  A flusher
 * that found nothing to send sleeps longer (transport.c) after
 * ldprof_buf_nap_begin(); the next record of any thread wakes it.
 */
#ifndef LDPROF_BUFFER_H
#define LDPROF_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#include "ldprof/wire.h"

/* Largest process block; the records of a datagram fill the rest of it. */
#define LDPROF_PROC_MAX 1024
#define LDPROF_BUF_CAP (LDPROF_WIRE_MAX_DGRAM - sizeof(struct ldprof_wire_hdr) - LDPROF_PROC_MAX)
/* A thread buffer: this many datagrams' worth of records (the flusher is
 * woken at one). */
#define LDPROF_BUF_DGRAMS 2
#define LDPROF_BUF_SIZE (LDPROF_BUF_DGRAMS * LDPROF_BUF_CAP)

struct ldprof_buf {
    int lock;      /* spinlock (atomic) */
    uint32_t tid;  /* owner */
    int orphan;    /* owner thread has exited (atomic) */
    int kicked;    /* flusher already woken for this fill (owner, under lock) */
    uint32_t used; /* bytes of records in data[] */
    uint32_t nrec; /* records in data[] */
    struct ldprof_buf *next; /* list, under list_lock */
    uint8_t data[LDPROF_BUF_SIZE];
};

/* ldprof_buf_init - create the pthread key (constructor).  0 or -1. */
int ldprof_buf_init(void);

/*
 * ldprof_buf_record - append one finished record (struct ldprof_wire_span +
 * info) to the calling thread's buffer, creating the buffer on the thread's
 * first record and starting the flusher on the process's first record.
 * Returns 0, or -1 when the record was dropped (counted).
 */
int ldprof_buf_record(const void *rec, size_t len);

/* ldprof_buf_count_drop - count @n spans lost elsewhere (pool full, send
 * failed). */
void ldprof_buf_count_drop(uint64_t n);

/* ldprof_buf_dropped - spans dropped so far by this process (cumulative). */
uint64_t ldprof_buf_dropped(void);

/*
 * ldprof_buf_drain_all - for each buffer: move its records out and call
 * @send(records, len, nrec, arg) once per datagram's worth (at most
 * LDPROF_BUF_CAP bytes of whole records, several threads' records sharing
 * one); free orphaned empty buffers.  Called by the flusher and the
 * destructor only (takes list_lock, waiting at most @timeout_ms, or without
 * limit when < 0).  Returns the number of records handed to @send, or
 * (uint32_t)-1 when list_lock could not be taken in time.
 */
typedef void (*ldprof_buf_send_fn)(const uint8_t *recs, size_t len, uint32_t nrec, void *arg);
uint32_t ldprof_buf_drain_all(ldprof_buf_send_fn send, void *arg, int timeout_ms);

/*
 * ldprof_buf_nap_begin - the flusher is about to sleep long (it found
 * nothing to send): from now on the next record of any thread calls
 * ldprof_xport_kick() once.  Call it BEFORE the drain that confirms the
 * buffers are empty: a record that the drain does not see is appended after
 * the drain held its buffer's lock, and sees the flag.
 * ldprof_buf_nap_end - the flusher is awake (it found records): no kick.
 */
void ldprof_buf_nap_begin(void);
void ldprof_buf_nap_end(void);

/* Fork handlers (init.c calls them in the documented order). */
void ldprof_buf_fork_prepare(void);
void ldprof_buf_fork_parent(void);
void ldprof_buf_fork_child(void);

/*
 * Datagram building (pure functions, unit-tested):
 *
 * ldprof_proc_block - encode the process block TLVs (host, service,
 * project when non-empty, exe) into @out.  Values that do not fit are cut.
 * Returns the length (<= LDPROF_PROC_MAX).
 *
 * ldprof_hdr_fill - fill a datagram header.
 */
size_t ldprof_proc_block(uint8_t *out, size_t cap, const char *host, const char *service,
                         const char *project, const char *exe);
void ldprof_hdr_fill(struct ldprof_wire_hdr *h, uint16_t type, uint32_t pid, uint32_t nrec,
                     size_t proc_len, size_t payload_len, uint64_t dropped);

/* Spin lock helpers shared with http.c. */
static inline void ldprof_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void ldprof_spin_lock(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(l, __ATOMIC_RELAXED))
            ldprof_cpu_relax();
}

static inline int ldprof_spin_trylock(int *l)
{
    return !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE);
}

static inline void ldprof_spin_unlock(int *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

#endif
