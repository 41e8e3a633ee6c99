/*
 * main.c - zaqard, a small Zaqar-like (OpenStack Zaqar v2) messaging server.
 *
 * Start-up: configuration (exit 2 when it is wrong), the message stores of
 * every pool, the PostgreSQL catalog (tables + pool registration), then the
 * HTTP daemon.  The main thread then waits for SIGTERM/SIGINT with sigwait
 * (both are blocked in every thread, which inherit the mask), stops the
 * daemon (in-flight requests finish), releases everything and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "catalog.h"
#include "config.h"
#include "http.h"
#include "store.h"
#include "util.h"

/* Catalog connections in thread-per-connection mode, where the number of
 * worker threads is not bounded (requests beyond it wait for a connection). */
#define TPC_CATALOG_CONNS 16

/* Copies an error message into a key="value" log field. */
static const char *log_safe(const char *src, char *dst, size_t dstlen)
{
    size_t i = 0;
    for (; src[i] && i + 1 < dstlen; i++)
        dst[i] = (src[i] == '"' || (unsigned char)src[i] < 0x20) ? '\'' : src[i];
    dst[i] = '\0';
    return dst;
}

static int pool_cmp(const void *a, const void *b)
{
    return strcmp(((const zq_pool *)a)->name, ((const zq_pool *)b)->name);
}

static void close_pools(zq_app *app)
{
    for (size_t i = 0; i < app->npools; i++)
        if (app->pools[i].store)
            app->pools[i].store->ops->destroy(app->pools[i].store);
    free(app->pools);
    app->pools = NULL;
    app->npools = 0;
}

/* Creates one store per configured pool, sorted by name. */
static int open_pools(const zq_config *cfg, zq_app *app)
{
    app->pools = calloc(cfg->npools, sizeof *app->pools);
    if (!app->pools)
        return -1;
    for (size_t i = 0; i < cfg->npools; i++) {
        const zq_pool_cfg *pc = &cfg->pools[i];
        zq_pool *p = &app->pools[app->npools];
        zq_err err = {0};
        p->store = zq_store_new(pc->name, pc->uri, &err);
        if (!p->store) {
            char safe[sizeof err.msg];
            zq_log(ZQ_LOG_ERROR, "cannot create the pool's store", "pool=%s error=\"%s\"",
                   pc->name, log_safe(err.msg, safe, sizeof safe));
            return -1;
        }
        snprintf(p->name, sizeof p->name, "%s", pc->name);
        snprintf(p->group, sizeof p->group, "%s", pc->group);
        p->weight = pc->weight;
        app->npools++;
    }
    qsort(app->pools, app->npools, sizeof *app->pools, pool_cmp);
    return 0;
}

/* Writes the port to path atomically (temporary file + rename). */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fprintf(f, "%u\n", port) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void format_addr(const zq_config *cfg, unsigned port, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (cfg->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&cfg->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&cfg->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, port);
    }
}

/* Everything after the configuration; returns the exit status. */
static int serve(const zq_config *cfg, const sigset_t *stop_signals)
{
    zq_app app = {0};
    zq_http *http = NULL;
    int status = 1;
    if (open_pools(cfg, &app) != 0) {
        status = 2; /* a pool URI the store rejects is a configuration error */
        goto out;
    }
    size_t nconns = (size_t)(cfg->thread_per_connection ? TPC_CATALOG_CONNS : cfg->threads) + 2;
    zq_err err = {0};
    app.catalog = zq_catalog_open(cfg->catalog, nconns, &err);
    if (!app.catalog || zq_catalog_register_pools(app.catalog, cfg->pools, cfg->npools, &err) != 0) {
        zq_log(ZQ_LOG_ERROR, "catalog unavailable", "error=\"%s\"", err.msg);
        goto out;
    }
    char herr[256];
    http = zq_http_start(cfg, &app, herr, sizeof herr);
    if (!http) {
        char safe[sizeof herr];
        zq_log(ZQ_LOG_ERROR, "cannot listen", "error=\"%s\"", log_safe(herr, safe, sizeof safe));
        goto out;
    }
    char addr[INET6_ADDRSTRLEN + 16];
    format_addr(cfg, zq_http_port(http), addr, sizeof addr);
    zq_log(ZQ_LOG_INFO, "listening", "addr=%s mode=%s threads=%d pools=%zu", addr,
           cfg->thread_per_connection ? "thread-per-connection" : "thread-pool",
           cfg->thread_per_connection ? 0 : cfg->threads, app.npools);
    if (cfg->port_file && write_port_file(cfg->port_file, zq_http_port(http)) != 0) {
        char safe[512];
        zq_log(ZQ_LOG_ERROR, "cannot write the port file", "path=\"%s\" error=\"%s\"",
               log_safe(cfg->port_file, safe, sizeof safe), strerror(errno));
        goto out;
    }
    int sig = 0;
    while (sigwait(stop_signals, &sig) != 0)
        ;
    zq_log(ZQ_LOG_INFO, "stopping", "signal=%d", sig);
    status = 0;
out:
    zq_http_stop(http);
    zq_catalog_close(app.catalog);
    close_pools(&app);
    if (status == 0)
        zq_log(ZQ_LOG_INFO, "stopped", NULL);
    return status;
}

int main(int argc, char **argv)
{
    zq_config cfg;
    char err[512];
    int rc = zq_config_load(&cfg, argc, argv, err, sizeof err);
    if (rc == ZQ_CFG_HELP)
        return 0;
    if (rc != ZQ_CFG_OK) {
        fprintf(stderr, "zaqard: %s\n", err);
        return 2;
    }
    zq_log_min = cfg.log_level; /* set before any thread exists */

    /* Block the stop signals before any thread is created so that only
     * sigwait() below sees them; writes to closed sockets must not kill. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    int status = serve(&cfg, &stop_signals);
    zq_config_free(&cfg);
    return status;
}
