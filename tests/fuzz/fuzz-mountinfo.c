/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mountinfo and mountstats text, whatever bytes it holds, parses without
 * crashing or leaking; paths to look for come from the input's first line. */
#include <stdint.h>
#include <string.h>

#include "probes/mountinfo-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        const char *nl = memchr(text, '\n', size);
        char path[256] = "/srv/nfs/MailQueues";
        MountInfo m;
        MountStats s;

        if (nl && (size_t) (nl - text) < sizeof path) {
                memcpy(path, text, (size_t) (nl - text));
                path[nl - text] = 0;
        }
        if (mountinfo_find(text, size, path, &m) >= 0) {
                (void) mount_options_have(m.super_options, "local_lock=none");
                (void) mount_options_have(m.mount_options, "rw");
                mount_info_done(&m);
        }
        if (mountinfo_find(text, size, "/", &m) >= 0)
                mount_info_done(&m);
        (void) mountstats_find(text, size, path, &s);
        return 0;
}
