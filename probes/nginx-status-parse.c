/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "lib/macro.h"
#include "nginx-status-parse.h"

#define LINE_MAX_LEN 256

typedef struct Cursor {
        const char *p, *end;
} Cursor;

/* The next line without its "\r\n" or "\n", trailing blanks stripped (nginx
 * writes "Active connections: 1 " with a space before the newline). */
static bool next_line(Cursor *c, char *buf, size_t size) {
        if (c->p >= c->end)
                return false;
        const char *nl = memchr(c->p, '\n', (size_t) (c->end - c->p));
        const char *e = nl ?: c->end;
        size_t n = (size_t) (e - c->p);

        while (n > 0 && (c->p[n - 1] == '\r' || c->p[n - 1] == ' ' || c->p[n - 1] == '\t'))
                n--;
        if (n >= size || memchr(c->p, 0, n))
                n = 0, buf[0] = '\1', buf[1] = 0; /* too long or binary: matches nothing */
        else {
                memcpy(buf, c->p, n);
                buf[n] = 0;
        }
        c->p = nl ? nl + 1 : c->end;
        return true;
}

/* A decimal number at *s, skipping leading blanks; no sign, no overflow. */
static bool take_number(const char **s, uint64_t *ret) {
        const char *p = *s;
        uint64_t v = 0;

        while (*p == ' ' || *p == '\t')
                p++;
        if (*p < '0' || *p > '9')
                return false;
        for (; *p >= '0' && *p <= '9'; p++) {
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                        return false;
        }
        *s = p;
        *ret = v;
        return true;
}

static bool take_word(const char **s, const char *word) {
        const char *p = *s;
        size_t n = strlen(word);

        while (*p == ' ' || *p == '\t')
                p++;
        if (strncmp(p, word, n) != 0)
                return false;
        *s = p + n;
        return true;
}

static bool at_end(const char *s) {
        return *s == 0;
}

int nginx_status_parse(const char *text, size_t len, NginxStatus *ret, const char **ret_error) {
        Cursor c = { text, text + len };
        char line[LINE_MAX_LEN];
        NginxStatus s = {};
        const char *p;

#define FAIL(msg)                               \
        do {                                    \
                if (ret_error)                  \
                        *ret_error = (msg);     \
                return -EBADMSG;                \
        } while (0)

        if (!next_line(&c, line, sizeof line))
                FAIL("the body is empty");
        p = line;
        if (!take_word(&p, "Active connections:") || !take_number(&p, &s.active) || !at_end(p))
                FAIL("line 1: expected 'Active connections: N'");

        if (!next_line(&c, line, sizeof line))
                FAIL("line 2: missing, expected 'server accepts handled requests'");
        p = line;
        /* Some builds append more column names (request_time); the three we
         * read come first. */
        if (!take_word(&p, "server") || !take_word(&p, "accepts") || !take_word(&p, "handled") ||
            !take_word(&p, "requests"))
                FAIL("line 2: expected 'server accepts handled requests'");

        if (!next_line(&c, line, sizeof line))
                FAIL("line 3: missing, expected three numbers: accepts handled requests");
        p = line;
        if (!take_number(&p, &s.accepts) || !take_number(&p, &s.handled) || !take_number(&p, &s.requests) ||
            p[strspn(p, "0123456789. \t")] != 0)
                FAIL("line 3: expected three numbers: accepts handled requests");

        if (!next_line(&c, line, sizeof line))
                FAIL("line 4: missing, expected 'Reading: N Writing: N Waiting: N'");
        p = line;
        if (!take_word(&p, "Reading:") || !take_number(&p, &s.reading) || !take_word(&p, "Writing:") ||
            !take_number(&p, &s.writing) || !take_word(&p, "Waiting:") || !take_number(&p, &s.waiting) ||
            !at_end(p))
                FAIL("line 4: expected 'Reading: N Writing: N Waiting: N'");

        /* handled can never exceed accepts: a body claiming so is not stub_status. */
        if (s.handled > s.accepts)
                FAIL("line 3: handled is larger than accepts");

        while (next_line(&c, line, sizeof line))
                if (line[0])
                        FAIL("unexpected text after line 4");
#undef FAIL
        *ret = s;
        return 0;
}
