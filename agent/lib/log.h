/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdlib.h>
#include <syslog.h>

#include "macro.h"

/* Logging to the journal with structured fields when running under systemd,
 * to stderr otherwise. Every log function returns -abs(error) so that an error
 * can be logged and returned in one statement:
 *         return log_error_errno(r, "Failed to bind '%s': %m", address);
 * "%m" expands to the text of `error`. */

typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
} LogTarget;

void log_setup(LogTarget target);
void log_set_max_level(int level);
int log_get_max_level(void);

/* Fields are optional (NULL): PROBE=, COMPONENT=, MESSAGE_ID=. */
typedef struct LogFields {
        const char *probe;
        const char *component;
        const char *message_id;
} LogFields;

int log_internal(int level, int error, const LogFields *fields, const char *fmt, ...) _printf_(4, 5);

#define log_full_errno(level, error, ...) log_internal((level), (error), NULL, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, (error), __VA_ARGS__)
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, (error), __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_oom() log_error_errno(-ENOMEM, "Out of memory.")

/* Message IDs of events an operator may want to find in the journal. */
#define MESSAGE_ID_PROBE_STATUS_CHANGED "4f6a1c2e8b3d4b0f9a7c5e2d1b0a9c8d"
#define MESSAGE_ID_CONFIG_RELOADED      "9d2c7b4e1a0f4e6b8c3d5a7f2e1b0c9a"
#define MESSAGE_ID_CONFIG_REJECTED      "c1e8a5d2b7f04a3e9b6c2d8f1a4e7b0c"
