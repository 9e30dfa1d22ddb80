/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Whatever a peer on the memcached port sends parses without crashing, and
 * every prefix of it too (replies arrive in pieces). */
#include <stdint.h>
#include <string.h>

#include "probes/memcached-stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MemcachedReply r;

        if (size > MEMCACHED_REPLY_MAX + 16)
                return 0;
        (void) memcached_reply_parse((const char *) data, size, "rupost-agent:node1", &r);
        for (size_t n = 0; n < size && n < 512; n++)
                (void) memcached_reply_parse((const char *) data, n, "k", &r);
        if (size < 64) {
                char a[64];
                memcpy(a, data, size);
                a[size] = 0;
                (void) memcached_version_compare(a, "1.4.33");
                (void) memcached_version_compare("1.4.33", a);
        }
        return 0;
}
