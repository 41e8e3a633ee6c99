/*
 * preload/transport.h - the flusher thread and the collector socket.
 *
 * One flusher thread per process, started lazily by the first recorded span
 * (never in the constructor: a process that records nothing gets no thread
 * and no socket).  Every LDPROF_FLUSH_MS, or when woken (a datagram's
 * worth of records in a buffer, a thread exiting), it drains every thread
 * buffer and sends the records as datagrams of up to LDPROF_BUF_CAP bytes
 * of records (struct ldprof_wire_hdr + process block + records, wire.h),
 * one sendmsg() each, on a non-blocking SOCK_DGRAM|SOCK_CLOEXEC unix socket
 * connected to the collector path.  When two passes in a row found nothing
 * to send it sleeps LDPROF_NAP_MS instead, until the next record (buffer.h).
 *
 * Nothing blocks the host: no collector, a full collector queue (after a
 * short bounded wait in the flusher, never in a host thread), or any send
 * error drops the batch and adds its records to the dropped counter carried in every header
 * (and in a LDPROF_MSG_STATS datagram when there is nothing else to send).
 * (Re)connection is attempted at most once a second.
 *
 * The collector fd is protected from the host: see ldprof_xport_owns_fd()
 * and ldprof_xport_evacuate() (used by the close/dup2/dup3/close_range
 * wrappers).
 */
#ifndef LDPROF_TRANSPORT_H
#define LDPROF_TRANSPORT_H

#include <stdint.h>

#define LDPROF_FLUSH_MS 100
#define LDPROF_NAP_MS 1000 /* idle: no spans for a whole LDPROF_FLUSH_MS */
#define LDPROF_RECONNECT_MS 1000
#define LDPROF_FINAL_FLUSH_MS 200
#define LDPROF_SEND_RETRIES 3  /* EAGAIN: wait for room this many times ... */
#define LDPROF_SEND_WAIT_MS 20 /* ... this long each (flusher only) */

/* ldprof_xport_init - build the process block (constructor). */
void ldprof_xport_init(void);

/* ldprof_xport_ensure_started - start the flusher if it is not running.
 * Cheap after the first call (one atomic load). */
void ldprof_xport_ensure_started(void);

/* ldprof_xport_kick - wake the flusher now (futex wake; async-signal-safe). */
void ldprof_xport_kick(void);

/* ldprof_xport_fd - the collector socket's number, or -1. */
int ldprof_xport_fd(void);

/* ldprof_xport_owns_fd - 1 when @fd is the collector socket (one load). */
int ldprof_xport_owns_fd(int fd);

/*
 * ldprof_xport_evacuate - the host wants fd number @fd (dup2/dup3 target),
 * which is our collector socket: move our socket to another number first.
 * Returns 0 (the number is free for the host to take), or -1 with errno.
 */
int ldprof_xport_evacuate(int fd);

/* ldprof_xport_note_close_attempt - the host tried to close our fd (the
 * close wrapper returns 0 without closing it); counted and logged once. */
void ldprof_xport_note_close_attempt(void);

/* ldprof_xport_fini - destructor: stop the flusher and make a final flush,
 * waiting at most LDPROF_FINAL_FLUSH_MS. */
void ldprof_xport_fini(void);

/* ldprof_xport_flush_before_exec - send what is buffered before the
 * process image is replaced (bounded by LDPROF_EXEC_FLUSH_MS; skipped in a
 * vfork child, which shares the parent's memory and locks). */
#define LDPROF_EXEC_FLUSH_MS 100
void ldprof_xport_flush_before_exec(void);

/* Fork handlers: xport_lock is the last lock in the order (buffer.h). */
void ldprof_xport_fork_prepare(void);
void ldprof_xport_fork_parent(void);
void ldprof_xport_fork_child(void);

#endif
