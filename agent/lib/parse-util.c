/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>

#include "parse-util.h"

int safe_atou64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || *s == '\0')
                return -EINVAL;
        if (s[0] == '0' && s[1] != '\0')
                return -EINVAL;

        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                unsigned d = (unsigned) (*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }

        *ret = v;
        return 0;
}
