/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The doveadm who parser on arbitrary bytes: beyond not crashing, what it
 * accepts adds up (the services sum to the total, never more users than
 * connections), what it refuses comes with a one-line description, and the
 * first-line helper always gives a printable line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probes/dovecot-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        DoveadmWho w;
        char error[160], line[64];
        uint64_t sum = 0;

        if (size > 256 * 1024)
                return 0;
        int r = doveadm_who_parse((const char *) data, size, &w, error, sizeof error);
        if (r == 0) {
                for (size_t i = 0; i < _DOVECOT_SERVICE_MAX; i++)
                        sum += w.connections[i];
                if (sum != w.total || w.users > w.total)
                        abort();
        } else if (r != -EBADMSG || !error[0] || strchr(error, '\n'))
                abort();

        doveadm_first_line((const char *) data, size, line, sizeof line);
        if (strlen(line) >= sizeof line)
                abort();
        for (const char *c = line; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        abort();
        return 0;
}
