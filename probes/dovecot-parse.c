/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dovecot-parse.h"
#include "lib/macro.h"

#define MAX_COLUMNS 32

static const char *const service_names[_DOVECOT_SERVICE_MAX] = {
        [DOVECOT_SERVICE_IMAP] = "imap",
        [DOVECOT_SERVICE_POP3] = "pop3",
        [DOVECOT_SERVICE_LMTP] = "lmtp",
        [DOVECOT_SERVICE_MANAGESIEVE] = "managesieve",
        [DOVECOT_SERVICE_OTHER] = "other",
};

const char *dovecot_service_to_string(DovecotService s) {
        if (s < 0 || s >= _DOVECOT_SERVICE_MAX)
                return NULL;
        return service_names[s];
}

static bool slice_eq(const char *s, size_t len, const char *word) {
        return strlen(word) == len && memcmp(s, word, len) == 0;
}

DovecotService dovecot_service_from_proto(const char *proto, size_t len) {
        if (slice_eq(proto, len, "imap"))
                return DOVECOT_SERVICE_IMAP;
        if (slice_eq(proto, len, "pop3"))
                return DOVECOT_SERVICE_POP3;
        if (slice_eq(proto, len, "lmtp"))
                return DOVECOT_SERVICE_LMTP;
        /* managesieve-login registers its users as "sieve". */
        if (slice_eq(proto, len, "sieve") || slice_eq(proto, len, "managesieve"))
                return DOVECOT_SERVICE_MANAGESIEVE;
        return DOVECOT_SERVICE_OTHER;
}

static int fail(char *error, size_t error_size, unsigned line, const char *fmt, ...) _printf_(4, 5);
static int fail(char *error, size_t error_size, unsigned line, const char *fmt, ...) {
        va_list ap;
        int n = 0;

        if (error && error_size > 0) {
                if (line > 0)
                        n = snprintf(error, error_size, "line %u: ", line);
                if (n >= 0 && (size_t) n < error_size) {
                        va_start(ap, fmt);
                        (void) vsnprintf(error + n, error_size - (size_t) n, fmt, ap);
                        va_end(ap);
                }
        }
        return -EBADMSG;
}

typedef struct Slice {
        const char *p;
        size_t len;
} Slice;

/* Splits a line at tabs; returns the number of fields, or MAX_COLUMNS + 1
 * when there are more than fit. */
static size_t split_tabs(const char *s, size_t len, Slice fields[static MAX_COLUMNS]) {
        size_t n = 0;

        for (;;) {
                const char *tab = memchr(s, '\t', len);
                size_t l = tab ? (size_t) (tab - s) : len;

                if (n == MAX_COLUMNS)
                        return MAX_COLUMNS + 1;
                fields[n++] = (Slice) { s, l };
                if (!tab)
                        return n;
                s = tab + 1;
                len -= l + 1;
        }
}

static bool all_digits(const Slice *s) {
        if (s->len == 0 || s->len > 10)
                return false;
        for (size_t i = 0; i < s->len; i++)
                if (s->p[i] < '0' || s->p[i] > '9')
                        return false;
        return true;
}

static int slice_compare(const void *a, const void *b) {
        const Slice *x = a, *y = b;
        int c = memcmp(x->p, y->p, MIN(x->len, y->len));

        if (c != 0)
                return c;
        return x->len < y->len ? -1 : x->len > y->len;
}

int doveadm_who_parse(const char *text, size_t size, DoveadmWho *ret, char *error, size_t error_size) {
        _cleanup_free_ Slice *users = NULL;
        size_t n_users = 0, allocated = 0;
        DoveadmWho w = {};
        Slice fields[MAX_COLUMNS];
        size_t n_columns = 0, col_user = SIZE_MAX, col_proto = SIZE_MAX, col_pid = SIZE_MAX;
        const char *p = text, *end = text + size;
        unsigned line = 0;

        if (error && error_size > 0)
                error[0] = 0;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *e = nl ?: end;
                size_t len = (size_t) (e - p);
                const char *s = p;

                p = nl ? nl + 1 : end;
                line++;
                if (len > 0 && s[len - 1] == '\r')
                        len--;
                if (memchr(s, 0, len))
                        return fail(error, error_size, line, "NUL byte");
                if (len == 0)
                        continue;
                if (!memchr(s, '\t', len)) {
                        /* doveadm's own message on the shared pipe: not data. */
                        w.n_messages++;
                        continue;
                }

                size_t n = split_tabs(s, len, fields);
                if (n > MAX_COLUMNS)
                        return fail(error, error_size, line, "more than %d fields", MAX_COLUMNS);

                if (n_columns == 0) {
                        for (size_t i = 0; i < n; i++) {
                                if (slice_eq(fields[i].p, fields[i].len, "username"))
                                        col_user = i;
                                else if (slice_eq(fields[i].p, fields[i].len, "proto") ||
                                         slice_eq(fields[i].p, fields[i].len, "service"))
                                        col_proto = i;
                                else if (slice_eq(fields[i].p, fields[i].len, "pid"))
                                        col_pid = i;
                                else if (slice_eq(fields[i].p, fields[i].len, "#"))
                                        return fail(error, error_size, line,
                                                    "a '#' column: this is doveadm who without -1, one line "
                                                    "per user rather than per connection");
                        }
                        if (col_user == SIZE_MAX || col_proto == SIZE_MAX)
                                return fail(error, error_size, line,
                                            "not the header of doveadm who (no 'username' and 'proto' columns)");
                        n_columns = n;
                        continue;
                }

                if (n != n_columns)
                        return fail(error, error_size, line, "%zu fields, the header has %zu", n, n_columns);
                if (col_pid != SIZE_MAX && !all_digits(&fields[col_pid]))
                        return fail(error, error_size, line, "the pid is not a number");

                DovecotService svc = dovecot_service_from_proto(fields[col_proto].p, fields[col_proto].len);
                w.connections[svc]++;
                w.total++;

                if (fields[col_user].len == 0)
                        continue;
                if (n_users == allocated) {
                        size_t a = allocated ? allocated * 2 : 64;
                        Slice *u = reallocarray(users, a, sizeof *u);
                        if (!u)
                                return -ENOMEM;
                        users = u;
                        allocated = a;
                }
                users[n_users++] = fields[col_user];
        }

        if (n_columns == 0)
                return fail(error, error_size, 0, "no header line (%" PRIu64 " lines of messages): not doveadm who output",
                            w.n_messages);

        if (n_users > 0) {
                qsort(users, n_users, sizeof *users, slice_compare);
                w.users = 1;
                for (size_t i = 1; i < n_users; i++)
                        if (slice_compare(&users[i - 1], &users[i]) != 0)
                                w.users++;
        }

        *ret = w;
        return 0;
}

const char *doveadm_first_line(const char *text, size_t size, char *buf, size_t buf_size) {
        const char *p = text, *end = text + size;
        size_t n = 0;

        if (buf_size == 0)
                return buf;
        buf[0] = 0;
        /* Skip blank lines, then copy one line. */
        while (p < end && (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t'))
                p++;
        for (; p < end && *p != '\n' && n + 1 < buf_size; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '\r')
                        continue;
                buf[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char) c;
        }
        /* Cut inside a UTF-8 sequence: drop its partial tail. */
        if (p < end && *p != '\n' && n > 0) {
                size_t k = n;
                while (k > 0 && ((unsigned char) buf[k - 1] & 0xc0) == 0x80)
                        k--;
                if (k > 0 && ((unsigned char) buf[k - 1] & 0xc0) == 0xc0)
                        n = k - 1;
        }
        while (n > 0 && buf[n - 1] == ' ')
                n--;
        buf[n] = 0;
        return buf;
}

const char *dovecot_limit_format(char *buf, size_t size, uint64_t soft, uint64_t hard) {
        char s[24], h[24];

        if (soft == UINT64_MAX)
                snprintf(s, sizeof s, "infinity");
        else
                snprintf(s, sizeof s, "%" PRIu64, soft);
        if (hard == UINT64_MAX)
                snprintf(h, sizeof h, "infinity");
        else
                snprintf(h, sizeof h, "%" PRIu64, hard);
        if (soft == hard)
                snprintf(buf, size, "%s", h);
        else
                snprintf(buf, size, "%s:%s", s, h);
        return buf;
}
