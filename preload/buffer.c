/*
 * preload/buffer.c - per-thread span buffers (see buffer.h for the locks).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "buffer.h"
#include "log.h"
#include "span.h"
#include "tls.h"
#include "transport.h"

#define PR_FMT "buffer"

/* list_lock: guards `buffers` (the list links).  Lock order: first. */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ldprof_buf *buffers;
static pthread_key_t buf_key;
static int buf_key_ok;
static uint64_t dropped; /* atomic */
static int napping;      /* the flusher sleeps long: kick on the next record (atomic) */

static void buf_key_dtor(void *p)
{
    struct ldprof_buf *b = p;

    /* Thread exit: the flusher sends what is left and frees it; the
     * thread's spare span slot goes back to the pool. */
    if (ldprof_tls.buf == b)
        ldprof_tls.buf = NULL;
    ldprof_span_spare_release();
    __atomic_store_n(&b->orphan, 1, __ATOMIC_RELEASE);
    ldprof_xport_kick();
}

int ldprof_buf_init(void)
{
    if (buf_key_ok)
        return 0;
    if (pthread_key_create(&buf_key, buf_key_dtor) != 0) {
        pr_err("pthread_key_create failed: thread-exit flushing disabled");
        return -1;
    }
    buf_key_ok = 1;
    return 0;
}

void ldprof_buf_count_drop(uint64_t n)
{
    __atomic_add_fetch(&dropped, n, __ATOMIC_RELAXED);
}

uint64_t ldprof_buf_dropped(void)
{
    return __atomic_load_n(&dropped, __ATOMIC_RELAXED);
}

static struct ldprof_buf *buf_create(void)
{
    struct ldprof_buf *b;

    b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return NULL;
    b->tid = (uint32_t)ldprof_tls_tid();
    pthread_mutex_lock(&list_lock);
    b->next = buffers;
    buffers = b;
    pthread_mutex_unlock(&list_lock);
    if (buf_key_ok)
        pthread_setspecific(buf_key, b);
    else
        ldprof_tls.spare = LDPROF_SPARE_OFF; /* no exit hook: no spare slot */
    ldprof_tls.buf = b;
    return b;
}

/* The record copy: the fixed record head inline (no call for a span
 * without info fields), then the info bytes. */
static inline void copy_rec(uint8_t *dst, const uint8_t *src, size_t len)
{
    if (__builtin_expect(len < sizeof(struct ldprof_wire_span), 0)) {
        memcpy(dst, src, len);
        return;
    }
    __builtin_memcpy(dst, src, sizeof(struct ldprof_wire_span));
    if (len > sizeof(struct ldprof_wire_span))
        memcpy(dst + sizeof(struct ldprof_wire_span), src + sizeof(struct ldprof_wire_span),
               len - sizeof(struct ldprof_wire_span));
}

/* ldprof_buf_record's rare paths, out of line (their code lines stay off
 * the per-span path): the thread's first record creates its buffer (NULL
 * when that fails: the record is dropped); a full buffer drops it. */
static __attribute__((noinline, cold)) struct ldprof_buf *buf_first(void)
{
    int saved = errno;
    struct ldprof_buf *b = buf_create();

    errno = saved;
    if (b == NULL) {
        ldprof_buf_count_drop(1);
        pr_warn_once("cannot map a span buffer: spans dropped");
    }
    return b;
}

static __attribute__((noinline, cold)) int buf_full(struct ldprof_buf *b)
{
    ldprof_spin_unlock(&b->lock);
    ldprof_buf_count_drop(1);
    ldprof_xport_kick();
    return -1;
}

int ldprof_buf_record(const void *rec, size_t len)
{
    struct ldprof_buf *b = ldprof_tls.buf;
    int kick = 0;

    /* One atomic load once started; starts the flusher on the process's
     * first record, and again in a fork child (whose forking thread keeps
     * its buffer, so the creation below is not a reliable trigger). */
    ldprof_xport_ensure_started();
    if (__builtin_expect(b == NULL, 0) && (b = buf_first()) == NULL)
        return -1;
    ldprof_spin_lock(&b->lock);
    if (__builtin_expect(b->used + len > LDPROF_BUF_SIZE, 0))
        return buf_full(b);
    copy_rec(b->data + b->used, rec, len);
    b->used += (uint32_t)len;
    b->nrec++;
    if (__builtin_expect(b->used >= LDPROF_BUF_CAP, 0) && !b->kicked) {
        b->kicked = 1;
        kick = 1;
    }
    /* Read under the lock: a drain that did not see this record held it
     * before us, after the flusher set the flag (ldprof_buf_nap_begin). */
    if (__builtin_expect(__atomic_load_n(&napping, __ATOMIC_RELAXED), 0))
        kick |= __atomic_exchange_n(&napping, 0, __ATOMIC_RELAXED);
    ldprof_spin_unlock(&b->lock);
    if (__builtin_expect(kick, 0))
        ldprof_xport_kick();
    return 0;
}

void ldprof_buf_nap_begin(void)
{
    __atomic_store_n(&napping, 1, __ATOMIC_SEQ_CST);
}

void ldprof_buf_nap_end(void)
{
    __atomic_store_n(&napping, 0, __ATOMIC_RELAXED);
}

/*
 * Staging area of the drain: up to LDPROF_STAGE_SLOTS datagrams' worth of
 * records, filled under list_lock, sent after it is released (so that a
 * slow collector never holds up a thread creating its buffer).  Records of
 * several threads share a datagram (each record carries its tid), which
 * keeps the datagram count low: the kernel queues only a few datagrams per
 * receiving socket (net.unix.max_dgram_qlen, 10 by default).
 */
#define LDPROF_STAGE_SLOTS 4
static struct {
    uint32_t len, nrec;
    uint8_t data[LDPROF_BUF_CAP];
} stage[LDPROF_STAGE_SLOTS];

static int lock_list(int timeout_ms)
{
    struct timespec ts;

    if (timeout_ms < 0)
        return pthread_mutex_lock(&list_lock);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_mutex_timedlock(&list_lock, &ts);
}

/*
 * The longest prefix of whole records of @p (@n bytes) that fits in @room
 * bytes; its record count in *@nrec.  A record whose length is impossible
 * (never written by ldprof_buf_record) ends the walk there.
 */
static uint32_t records_fitting(const uint8_t *p, uint32_t n, uint32_t room, uint32_t *nrec)
{
    uint32_t off = 0, k = 0;

    while (n - off >= sizeof(uint16_t)) {
        uint16_t rl;

        memcpy(&rl, p + off, sizeof(rl)); /* struct ldprof_wire_span.rec_len */
        if (rl < sizeof(uint16_t) || rl > n - off || rl > room - off)
            break;
        off += rl;
        k++;
    }
    *nrec = k;
    return off;
}

/*
 * Under list_lock and b->lock: move b's records into the stage, from
 * *@slot on, whole records only, as many as the stage holds.  Records left
 * over (every slot full) are moved to the front of the buffer.  Returns 1
 * when records were left over.
 */
static int stage_buffer(struct ldprof_buf *b, int *slot)
{
    uint32_t off = 0;

    while (off < b->used) {
        uint32_t left = b->used - off, room = LDPROF_BUF_CAP - stage[*slot].len, n, k;

        if (left <= room) {
            /* the common case: all of it fits, no walk */
            n = left;
            k = b->nrec;
        } else {
            n = records_fitting(b->data + off, left, room, &k);
            if (n == 0 && stage[*slot].len == 0) {
                /* not even an empty datagram holds the next record: a
                 * length that cannot be; lose the rest, counted */
                ldprof_buf_count_drop(b->nrec);
                break;
            }
        }
        if (n) {
            memcpy(stage[*slot].data + stage[*slot].len, b->data + off, n);
            stage[*slot].len += n;
            stage[*slot].nrec += k;
            b->nrec -= k;
            off += n;
        }
        if (off == b->used)
            break;
        if (*slot + 1 == LDPROF_STAGE_SLOTS) {
            memmove(b->data, b->data + off, b->used - off);
            b->used -= off;
            return 1;
        }
        (*slot)++;
        stage[*slot].len = stage[*slot].nrec = 0;
    }
    b->used = 0;
    b->nrec = 0;
    return 0;
}

uint32_t ldprof_buf_drain_all(ldprof_buf_send_fn send, void *arg, int timeout_ms)
{
    uint32_t total = 0;

    /* Bounded: each pass moves up to LDPROF_STAGE_SLOTS full datagrams. */
    for (int pass = 0; pass < 64; pass++) {
        struct ldprof_buf **pp, *b;
        int slot = 0, more = 0;

        if (lock_list(timeout_ms) != 0)
            return total ? total : (uint32_t)-1;
        stage[0].len = stage[0].nrec = 0;
        pp = &buffers;
        while ((b = *pp) != NULL) {
            int orphan = __atomic_load_n(&b->orphan, __ATOMIC_ACQUIRE);

            ldprof_spin_lock(&b->lock);
            if (b->used && stage_buffer(b, &slot)) {
                ldprof_spin_unlock(&b->lock);
                more = 1;
                break;
            }
            b->kicked = 0;
            ldprof_spin_unlock(&b->lock);
            if (orphan) {
                /* Its thread is gone, so nothing can refill it. */
                *pp = b->next;
                munmap(b, sizeof(*b));
                continue;
            }
            pp = &b->next;
        }
        pthread_mutex_unlock(&list_lock);
        for (int i = 0; i <= slot; i++) {
            if (stage[i].nrec) {
                send(stage[i].data, stage[i].len, stage[i].nrec, arg);
                total += stage[i].nrec;
            }
        }
        if (!more)
            break;
    }
    return total;
}

/*
 * Fork.  prepare: list_lock, then every buffer lock (list order) - no thread
 * can be half-way through an append or a drain when the address space is
 * copied.  parent: release in reverse.  child: the only thread left is the
 * forking one; its buffer is kept but emptied (the parent sends those
 * records), every other buffer is freed, the counter restarts at 0 for the
 * new pid, the locks are re-initialised, and the span slots the other
 * threads kept as spares go back to the pool (span.c).
 */
void ldprof_buf_fork_prepare(void)
{
    pthread_mutex_lock(&list_lock);
    for (struct ldprof_buf *b = buffers; b; b = b->next)
        ldprof_spin_lock(&b->lock);
}

void ldprof_buf_fork_parent(void)
{
    for (struct ldprof_buf *b = buffers; b; b = b->next)
        ldprof_spin_unlock(&b->lock);
    pthread_mutex_unlock(&list_lock);
}

void ldprof_buf_fork_child(void)
{
    struct ldprof_buf *keep = ldprof_tls.buf, *b, *next;

    for (b = buffers; b; b = next) {
        next = b->next;
        if (b == keep)
            continue;
        munmap(b, sizeof(*b));
    }
    buffers = NULL;
    if (keep) {
        keep->lock = 0;
        keep->used = 0;
        keep->nrec = 0;
        keep->kicked = 0;
        keep->orphan = 0;
        keep->tid = 0; /* set on next use */
        keep->next = NULL;
        buffers = keep;
    }
    __atomic_store_n(&dropped, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&napping, 0, __ATOMIC_RELAXED); /* no flusher yet: it starts awake */
    pthread_mutex_init(&list_lock, NULL);
    ldprof_span_fork_child();
}

/* ------------------------------------------------------------ datagrams */

static size_t put_str(uint8_t *out, size_t cap, size_t off, const char *key, const char *val)
{
    size_t klen = strlen(key), vlen = strlen(val);
    size_t room;
    int n;

    if (off + sizeof(struct ldprof_wire_tlv) + klen >= cap)
        return off;
    room = cap - off - sizeof(struct ldprof_wire_tlv) - klen;
    if (vlen > room)
        vlen = room;
    if (vlen > 255 * 4)
        vlen = 255 * 4;
    n = ldprof_tlv_put(out + off, cap - off, LDPROF_TLV_STR, key, klen, val, vlen);
    return n > 0 ? off + (size_t)n : off;
}

size_t ldprof_proc_block(uint8_t *out, size_t cap, const char *host, const char *service,
                         const char *project, const char *exe)
{
    size_t off = 0;

    if (cap > LDPROF_PROC_MAX)
        cap = LDPROF_PROC_MAX;
    off = put_str(out, cap, off, LDPROF_PROC_HOST, host);
    off = put_str(out, cap, off, LDPROF_PROC_SERVICE, service);
    /* An empty project is left out: the collector writes "project": null,
     * as OSProfiler's drivers do when none is configured. */
    if (project && project[0])
        off = put_str(out, cap, off, LDPROF_PROC_PROJECT, project);
    off = put_str(out, cap, off, LDPROF_PROC_EXE, exe);
    return off;
}

void ldprof_hdr_fill(struct ldprof_wire_hdr *h, uint16_t type, uint32_t pid, uint32_t nrec,
                     size_t proc_len, size_t payload_len, uint64_t dropped_total)
{
    memset(h, 0, sizeof(*h));
    h->magic = LDPROF_WIRE_MAGIC;
    h->version = LDPROF_WIRE_VERSION;
    h->type = type;
    h->len = (uint32_t)(sizeof(*h) + proc_len + payload_len);
    h->pid = pid;
    h->nrec = nrec;
    h->proc_len = (uint16_t)proc_len;
    h->dropped = dropped_total;
}
