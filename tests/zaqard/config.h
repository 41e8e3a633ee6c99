/*
 * config.h - zaqard's configuration: an INI file (--config) plus command-line
 * flags, flags overriding the file.  See the end of API.md for the format.
 *
 * Everything is validated here (names, numbers, the listen address is
 * resolved), so the rest of the server can trust a zq_config it is handed.
 */
#ifndef ZAQARD_CONFIG_H
#define ZAQARD_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#include "util.h"

#define ZQ_NAME_MAX 64      /* pool, group, queue and flavor names */
#define ZQ_MAX_POOLS 64
#define ZQ_MAX_THREADS 1024
#define ZQ_MAX_WEIGHT 1000000
#define ZQ_DEFAULT_THREADS 4
#define ZQ_DEFAULT_WEIGHT 100

typedef struct {
    char name[ZQ_NAME_MAX + 1];
    char *uri;                   /* owned */
    int weight;                  /* 0..ZQ_MAX_WEIGHT; 0 = never chosen by hash */
    char group[ZQ_NAME_MAX + 1]; /* "" = no group */
} zq_pool_cfg;

typedef struct {
    char *listen;                  /* as given, "HOST:PORT" (owned) */
    struct sockaddr_storage addr;  /* resolved listen address */
    socklen_t addrlen;
    char *catalog;                 /* libpq conninfo (owned) */
    zq_pool_cfg pools[ZQ_MAX_POOLS];
    size_t npools;
    int threads;                   /* worker threads when !thread_per_connection */
    int thread_per_connection;
    zq_log_level log_level;
    char *port_file;               /* NULL when not wanted (owned) */
} zq_config;

enum {
    ZQ_CFG_OK = 0,
    ZQ_CFG_HELP = 1,     /* --help was given: usage printed, exit 0 */
    ZQ_CFG_ERROR = -1,   /* err holds a one-line reason: exit 2 */
};

/* Parses argv (and the --config file it names) into cfg.  On error, err
 * receives a message and cfg is left freed (zq_config_free is still safe). */
int zq_config_load(zq_config *cfg, int argc, char **argv, char *err, size_t errlen);

void zq_config_free(zq_config *cfg);

void zq_config_usage(FILE *out, const char *prog);

/* Shared validators (also used by the HTTP layer). */
int zq_valid_name(const char *s);     /* ^[A-Za-z0-9_-]{1,64}$ */

/* strtol with full consumption and a range check; 0 on success. */
int zq_parse_long(const char *s, long min, long max, long *out);

#endif
