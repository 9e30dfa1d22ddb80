/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Whatever the queue check child writes (or a queue file holds), the
 * parsers judge it without crashing, and what they accept is consistent. */
#include <stdint.h>
#include <string.h>

#include "probes/postfix-report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        PostfixReport r;
        char error[128];
        int64_t t;

        if (postfix_report_parse((const char *) data, size, &r, error, sizeof error) >= 0) {
                if (r.master < 0 || r.master >= _POSTFIX_MASTER_MAX)
                        __builtin_trap();
                for (PostfixQueue q = 0; q < _POSTFIX_QUEUE_MAX; q++)
                        if (r.queues[q].error == 0 && (r.queues[q].messages == 0) != (r.queues[q].oldest == 0))
                                __builtin_trap();
        } else if (!memchr(error, 0, sizeof error))
                __builtin_trap();

        if (postfix_queue_file_arrival(data, size, &t) >= 0 && t < 0)
                __builtin_trap();
        return 0;
}
