/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static LogTarget log_target = LOG_TARGET_STDERR;
static int log_max_level = LOG_INFO;

/* stderr is connected to the journal when JOURNAL_STREAM names its device and
 * inode (systemd.exec(5)); that is the case to switch to native journal
 * messages, which carry our structured fields. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(LogTarget target) {
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        log_target = target;
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_internal(int level, int error, const LogFields *fields, const char *fmt, ...) {
        char message[2048];
        va_list ap;

        if (error < 0)
                error = -error;
        if (level > log_max_level)
                return -error;

        /* Make "%m" print the error we were given, not whatever errno holds. */
        errno = error;
        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);

        if (log_target == LOG_TARGET_JOURNAL) {
                char f_message[sizeof message + 8], f_priority[16], f_errno[24], f_ident[128];
                char f_probe[256], f_component[256], f_message_id[64];
                struct iovec iov[7];
                size_t n = 0;

#define ADD_FIELD(buf, ...)                                                      \
                do {                                                             \
                        int _l = snprintf(buf, sizeof buf, __VA_ARGS__);         \
                        iov[n++] = (struct iovec) {                              \
                                .iov_base = buf,                                 \
                                .iov_len = MIN((size_t) _l, sizeof buf - 1),     \
                        };                                                       \
                } while (0)

                ADD_FIELD(f_message, "MESSAGE=%s", message);
                ADD_FIELD(f_priority, "PRIORITY=%i", level);
                ADD_FIELD(f_ident, "SYSLOG_IDENTIFIER=%s", program_invocation_short_name);
                if (error > 0)
                        ADD_FIELD(f_errno, "ERRNO=%i", error);
                if (fields && fields->probe)
                        ADD_FIELD(f_probe, "PROBE=%s", fields->probe);
                if (fields && fields->component)
                        ADD_FIELD(f_component, "COMPONENT=%s", fields->component);
                if (fields && fields->message_id)
                        ADD_FIELD(f_message_id, "MESSAGE_ID=%s", fields->message_id);
#undef ADD_FIELD
                (void) sd_journal_sendv(iov, (int) n);
        } else {
                static const char *const prefix[] = {
                        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
                        [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                        [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
                };
                fprintf(stderr, "%s: %s%s%s%s\n", prefix[level & 7],
                        fields && fields->probe ? "[" : "", fields && fields->probe ? fields->probe : "",
                        fields && fields->probe ? "] " : "", message);
        }

        return -error;
}
