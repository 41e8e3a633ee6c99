/*
 * collector/status.h - `ldprof status`: is ldprof-collectord running, and
 * its counters (the stats file, docs/formats.md), per sending pid too.
 */
#ifndef LDPROF_COLLECTOR_STATUS_H
#define LDPROF_COLLECTOR_STATUS_H

/* `ldprof status [--socket PATH] [--stats-file PATH] [--json]`, argv[0] being
 * "status".  Exit status: 0 running, 3 not running (the last counters are
 * still shown), 1 no readable stats file, 2 usage error. */
int coll_cmd_status(int argc, char **argv);

#endif
