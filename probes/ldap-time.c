/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdbool.h>

#include "ldap-time.h"

static bool digits(const char *s, size_t n, int *ret) {
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
 * civil-date algorithm): no timegm(), which would depend on the TZ
 * environment of the process it runs in. */
static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static bool leap(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int ldap_generalized_time_parse(const char *s, size_t len, int64_t *ret) {
        static const int month_days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int y, mo, d, h, mi, sec, zh = 0, zm = 0, sign = 0;
        size_t i = 14;

        if (!s || len < 15 || !digits(s, 4, &y) || !digits(s + 4, 2, &mo) || !digits(s + 6, 2, &d) ||
            !digits(s + 8, 2, &h) || !digits(s + 10, 2, &mi) || !digits(s + 12, 2, &sec))
                return -EINVAL;
        /* A leap second (60) is allowed by the syntax; it counts as :59. */
        if (mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] + (mo == 2 && leap(y)) || h > 23 || mi > 59 ||
            sec > 60)
                return -EINVAL;

        if (s[i] == '.' || s[i] == ',') {
                size_t start = ++i;
                while (i < len && s[i] >= '0' && s[i] <= '9')
                        i++;
                if (i == start)
                        return -EINVAL;
        }
        if (i >= len)
                return -EINVAL;
        if (s[i] == 'Z')
                i++;
        else if (s[i] == '+' || s[i] == '-') {
                sign = s[i] == '+' ? 1 : -1;
                if (len - i < 5 || !digits(s + i + 1, 2, &zh) || !digits(s + i + 3, 2, &zm) || zh > 23 || zm > 59)
                        return -EINVAL;
                i += 5;
        } else
                return -EINVAL;
        if (i != len)
                return -EINVAL;

        int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec);
        *ret = t - sign * (zh * 3600 + zm * 60);
        return 0;
}
