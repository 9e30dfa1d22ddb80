/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The body nginx's stub_status module answers with:
 *
 *   Active connections: 291
 *   server accepts handled requests
 *    16630948 16630948 31070465
 *   Reading: 6 Writing: 179 Waiting: 106
 *
 * Pure: no I/O, for the probe, the unit test and the fuzzer. */

#include <stddef.h>
#include <stdint.h>

typedef struct NginxStatus {
        uint64_t active;
        uint64_t accepts;
        uint64_t handled;
        uint64_t requests;
        uint64_t reading;
        uint64_t writing;
        uint64_t waiting;
} NginxStatus;

/* Returns 0, or -EBADMSG with *ret_error set to a static description of
 * what is wrong and where ("line 3: expected three numbers: accepts handled
 * requests"). The text need not be NUL-terminated. */
int nginx_status_parse(const char *text, size_t len, NginxStatus *ret, const char **ret_error);
