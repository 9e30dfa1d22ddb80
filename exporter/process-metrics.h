/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The standard process_* metrics every Prometheus client library exports,
 * read from /proc/self and getrlimit(). */

#include <stdint.h>

#include "agent/lib/time-util.h"

typedef struct ProcessMetrics {
        usec_t cpu_usec;          /* user + system time */
        uint64_t resident_bytes;
        uint64_t virtual_bytes;
        uint64_t open_fds;
        uint64_t max_fds;         /* soft RLIMIT_NOFILE; UINT64_MAX when unlimited */
        usec_t start_time_usec;   /* CLOCK_REALTIME: boot time + start ticks, as client libraries do */
} ProcessMetrics;

/* Reads the calling process's figures. Does not log. */
int process_metrics_read(ProcessMetrics *ret);

/* Parses the contents of /proc/<pid>/stat; pure, for tests. ticks is
 * sysconf(_SC_CLK_TCK), page_size sysconf(_SC_PAGESIZE). Fills cpu_usec,
 * resident_bytes, virtual_bytes and the start time relative to boot in
 * ret_start_ticks. */
int process_stat_parse(const char *stat, long ticks, long page_size, ProcessMetrics *ret,
                       uint64_t *ret_start_ticks);
