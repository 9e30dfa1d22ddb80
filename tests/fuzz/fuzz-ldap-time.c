/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The GeneralizedTime parser on arbitrary bytes (a directory server's
 * answer, not NUL-terminated): beyond not reading past the end, an accepted
 * time is within the years the syntax can write, and the same input always
 * gives the same answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probes/ldap-time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* An exact-size copy, so a read past the end is caught by ASan. */
        char *s = malloc(size ?: 1);
        int64_t t, again;

        if (!s)
                return 0;
        memcpy(s, data, size);
        if (ldap_generalized_time_parse(s, size, &t) >= 0) {
                /* Years 0000-9999, shifted by at most a day of zone offset. */
                if (t < -62167219200LL - 86400 || t > 253402300799LL + 86400)
                        abort();
                if (ldap_generalized_time_parse(s, size, &again) < 0 || again != t)
                        abort();
        }
        free(s);
        return 0;
}
