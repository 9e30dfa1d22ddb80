/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <time.h>

/* All durations and timestamps are microseconds, as in sd-event. */
typedef uint64_t usec_t;

#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MINUTE (60ULL * USEC_PER_SEC)
#define USEC_PER_HOUR (60ULL * USEC_PER_MINUTE)
#define USEC_PER_DAY (24ULL * USEC_PER_HOUR)

usec_t now(clockid_t clock);

/* "250ms", "5s", "1m30s", "2h" -> usec. Returns -EINVAL on a malformed string,
 * -ERANGE on overflow. */
int parse_duration(const char *s, usec_t *ret);

/* Shortest exact rendering: 1500000 -> "1.5s", 250000 -> "250ms".
 * Writes at most len bytes including the NUL and returns buf. */
char *format_duration(char *buf, size_t len, usec_t u);
#define DURATION_MAX 32

static inline double usec_to_seconds(usec_t u) {
        return (double) u / (double) USEC_PER_SEC;
}
