/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The Accept and Accept-Encoding parsers on arbitrary bytes (up to the first
 * NUL, as MHD hands a header value over): beyond not crashing or reading
 * past the end, a header that never names the OpenMetrics type must not get
 * it, and one that names neither gzip nor a wildcard must not get gzip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exporter/negotiate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s;

        if (size > 64 * 1024)
                return 0;
        s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        Exposition x = negotiate_exposition(s);
        if (x < 0 || x >= _EXPOSITION_MAX || !exposition_content_type(x))
                abort();
        if (exposition_is_openmetrics(x) && !strcasestr(s, "application/openmetrics-text"))
                abort();
        if (negotiate_exposition(s) != x)
                abort();

        bool gzip = negotiate_gzip(s);
        if (gzip && !strcasestr(s, "gzip") && !strchr(s, '*'))
                abort();

        free(s);
        return 0;
}
