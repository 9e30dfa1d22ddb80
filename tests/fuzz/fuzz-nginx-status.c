/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The stub_status parser on arbitrary bytes: beyond not crashing, what it
 * accepts is consistent (handled never above accepts) and what it refuses
 * comes with a one-line description. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probes/nginx-status-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        NginxStatus s;
        const char *error = NULL;

        if (size > 16 * 1024)
                return 0;
        int r = nginx_status_parse((const char *) data, size, &s, &error);
        if (r == 0 && s.handled > s.accepts)
                abort();
        if (r < 0 && (r != -EBADMSG || !error || strchr(error, '\n')))
                abort();
        return 0;
}
