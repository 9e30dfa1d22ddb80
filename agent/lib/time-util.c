/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "time-util.h"

usec_t now(clockid_t clock) {
        struct timespec ts;

        /* clock_gettime() only fails on an invalid clock id, a programming error. */
        if (clock_gettime(clock, &ts) < 0)
                abort();
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000U;
}

static const struct {
        const char *suffix;
        usec_t usec;
} duration_units[] = {
        /* Longest suffix first, so that "ms" is not read as "m" followed by "s". */
        { "ms",  USEC_PER_MSEC   },
        { "us",  1               },
        { "h",   USEC_PER_HOUR   },
        { "m",   USEC_PER_MINUTE },
        { "s",   USEC_PER_SEC    },
        { "d",   USEC_PER_DAY    },
};

int parse_duration(const char *s, usec_t *ret) {
        usec_t total = 0;

        if (!s || !*s)
                return -EINVAL;

        while (*s) {
                usec_t whole = 0, frac = 0, frac_scale = 1, unit = 0;
                size_t n_digits = 0;

                for (; isdigit((unsigned char) *s); s++, n_digits++) {
                        if (whole > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        whole = whole * 10 + (usec_t) (*s - '0');
                }
                if (*s == '.') {
                        s++;
                        for (; isdigit((unsigned char) *s); s++, n_digits++)
                                if (frac_scale < 1000000000ULL) {
                                        frac = frac * 10 + (usec_t) (*s - '0');
                                        frac_scale *= 10;
                                }
                }
                if (n_digits == 0)
                        return -EINVAL;

                for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
                        size_t l = strlen(duration_units[i].suffix);
                        if (strncmp(s, duration_units[i].suffix, l) == 0) {
                                unit = duration_units[i].usec;
                                s += l;
                                break;
                        }
                }
                /* A bare number is ambiguous in a config file; demand a unit. */
                if (unit == 0)
                        return -EINVAL;

                if (whole > UINT64_MAX / unit)
                        return -ERANGE;
                usec_t part = whole * unit + frac * unit / frac_scale;
                if (total > UINT64_MAX - part)
                        return -ERANGE;
                total += part;
        }

        *ret = total;
        return 0;
}

char *format_duration(char *buf, size_t len, usec_t u) {
        if (u == USEC_INFINITY)
                snprintf(buf, len, "infinity");
        else if (u % USEC_PER_SEC == 0)
                snprintf(buf, len, "%llus", (unsigned long long) (u / USEC_PER_SEC));
        else if (u >= USEC_PER_SEC)
                snprintf(buf, len, "%.3gs", usec_to_seconds(u));
        else if (u % USEC_PER_MSEC == 0)
                snprintf(buf, len, "%llums", (unsigned long long) (u / USEC_PER_MSEC));
        else
                snprintf(buf, len, "%lluus", (unsigned long long) u);
        return buf;
}
