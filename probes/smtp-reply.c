/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp-reply.h"

void reply_done(Reply *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_lines; i++)
                free(r->lines[i]);
        free(r->lines);
        *r = (Reply) {};
}

const char *reply_last_line(const Reply *r) {
        return r->n_lines > 0 ? r->lines[r->n_lines - 1] : "";
}

void reply_parser_init(ReplyParser *p, ReplyMode mode, size_t max_bytes, size_t max_lines) {
        *p = (ReplyParser) {
                .mode = mode,
                .max_bytes = max_bytes ?: REPLY_MAX_BYTES,
                .max_lines = max_lines ?: REPLY_MAX_LINES,
                /* The line buffer holds at most one line; the reply bound is
                 * checked separately so either limit names itself. */
                .line = BUF_INIT(REPLY_MAX_LINE),
        };
}

void reply_parser_done(ReplyParser *p) {
        buf_done(&p->line);
        reply_done(&p->reply);
}

int reply_parser_set_tag(ReplyParser *p, const char *tag) {
        if (tag && strlen(tag) >= sizeof p->tag)
                return -EINVAL;
        snprintf(p->tag, sizeof p->tag, "%s", tag ?: "");
        buf_reset(&p->line);
        reply_done(&p->reply);
        p->bytes = 0;
        return 0;
}

/* What the peer said, made safe for a reason line: control bytes and
 * non-ASCII become '?', and long text is cut. */
static void quote_line(char *dst, size_t n, const char *s, size_t len) {
        size_t j = 0;

        for (size_t i = 0; i < len && j + 4 < n; i++) {
                unsigned char c = (unsigned char) s[i];
                dst[j++] = c < 0x20 || c >= 0x7f ? '?' : (char) c;
        }
        if (j + 4 >= n && len > j) {
                memcpy(dst + j, "...", 3);
                j += 3;
        }
        dst[j] = 0;
}

static int parser_fail(ReplyParser *p, int error, const char *what, const char *line, size_t len) {
        char q[64];

        quote_line(q, sizeof q, line ?: "", line ? len : 0);
        if (line)
                snprintf(p->error, sizeof p->error, "%s: '%s'", what, q);
        else
                snprintf(p->error, sizeof p->error, "%s", what);
        return error;
}

static int reply_add_line(Reply *r, const char *s, size_t len) {
        char **l = reallocarray(r->lines, r->n_lines + 2, sizeof(char *));
        if (!l)
                return -ENOMEM;
        r->lines = l;
        l[r->n_lines] = strndup(s, len);
        if (!l[r->n_lines])
                return -ENOMEM;
        l[++r->n_lines] = NULL;
        return 0;
}

static bool is_smtp_code(const char *s) {
        return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '5' && isdigit((unsigned char) s[2]);
}

static bool starts_with_word_ci(const char *s, size_t len, const char *word) {
        size_t l = strlen(word);

        if (len < l || strncasecmp(s, word, l) != 0)
                return false;
        return len == l || s[l] == ' ' || s[l] == '(' || s[l] == '\t';
}

/* Judges one complete line. Returns 1 when it ends the reply. */
static int parser_line(ReplyParser *p, const char *s, size_t len) {
        bool last = false;
        int r;

        if (memchr(s, 0, len))
                return parser_fail(p, -EBADMSG, "NUL byte in a reply line", s, len);
        if (p->reply.n_lines >= p->max_lines) {
                snprintf(p->error, sizeof p->error, "reply has more than %zu lines", p->max_lines);
                return -E2BIG;
        }

        switch (p->mode) {
        case REPLY_SMTP: {
                if (len < 3 || !is_smtp_code(s) || (len > 3 && s[3] != '-' && s[3] != ' '))
                        return parser_fail(p, -EBADMSG, "not an SMTP reply line", s, len);
                unsigned code = (unsigned) ((s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0'));
                if (p->reply.n_lines > 0 && code != p->reply.code) {
                        char what[64];
                        snprintf(what, sizeof what, "line with code %u inside a %u reply", code, p->reply.code);
                        return parser_fail(p, -EBADMSG, what, s, len);
                }
                p->reply.code = code;
                last = len == 3 || s[3] == ' ';
                r = reply_add_line(&p->reply, s + MIN(len, (size_t) 4), len - MIN(len, (size_t) 4));
                if (r < 0)
                        return r;
                return last;
        }

        case REPLY_IMAP:
                if (p->tag[0] == 0)
                        last = true; /* the greeting is one line */
                else {
                        size_t t = strlen(p->tag);
                        last = len > t && strncmp(s, p->tag, t) == 0 && s[t] == ' ';
                        if (!last && !(len >= 2 && (s[0] == '*' || s[0] == '+') && s[1] == ' '))
                                return parser_fail(p, -EBADMSG, "not an IMAP response line", s, len);
                }
                break;

        case REPLY_SIEVE:
                last = starts_with_word_ci(s, len, "OK") || starts_with_word_ci(s, len, "NO") ||
                       starts_with_word_ci(s, len, "BYE");
                /* Capability lines are a quoted string or a literal, then maybe a value. */
                if (!last && !(len > 0 && (s[0] == '"' || s[0] == '{')))
                        return parser_fail(p, -EBADMSG, "not a ManageSieve response line", s, len);
                break;

        default:
                return -EINVAL;
        }

        r = reply_add_line(&p->reply, s, len);
        if (r < 0)
                return r;
        return last;
}

int reply_parser_feed(ReplyParser *p, const char *data, size_t size, size_t *ret_consumed, Reply *ret) {
        size_t i = 0;
        int r = 0;

        assert_return(p && (data || size == 0) && ret_consumed && ret, -EINVAL);

        if (p->error[0]) {
                *ret_consumed = 0;
                return -EBADMSG;
        }

        while (i < size) {
                const char *nl = memchr(data + i, '\n', size - i);
                size_t n = nl ? (size_t) (nl - (data + i)) + 1 : size - i;

                if (p->bytes + n > p->max_bytes) {
                        *ret_consumed = i;
                        snprintf(p->error, sizeof p->error, "reply longer than %zu bytes", p->max_bytes);
                        return -E2BIG;
                }
                r = buf_append(&p->line, data + i, n);
                if (r == -ENOBUFS) {
                        *ret_consumed = i;
                        char what[64];
                        snprintf(what, sizeof what, "reply line longer than %u bytes", REPLY_MAX_LINE);
                        return parser_fail(p, -E2BIG, what, p->line.data, p->line.len);
                }
                if (r < 0) {
                        *ret_consumed = i;
                        return r;
                }
                p->bytes += n;
                i += n;
                if (!nl)
                        break;

                size_t len = p->line.len - 1;
                if (len > 0 && p->line.data[len - 1] == '\r')
                        len--;
                r = parser_line(p, p->line.data, len);
                buf_reset(&p->line);
                if (r < 0) {
                        *ret_consumed = i;
                        return r;
                }
                if (r > 0) {
                        *ret_consumed = i;
                        *ret = p->reply;
                        p->reply = (Reply) {};
                        p->bytes = 0;
                        return 1;
                }
        }

        *ret_consumed = i;
        return 0;
}

bool smtp_reply_has_keyword(const Reply *r, const char *keyword) {
        /* The first line is the greeting text ("mx.example.org"), not a keyword. */
        for (size_t i = 1; i < r->n_lines; i++)
                if (starts_with_word_ci(r->lines[i], strlen(r->lines[i]), keyword))
                        return true;
        return false;
}

bool reply_lists_capability(const Reply *r, ReplyMode mode, const char *word) {
        size_t wl = strlen(word);

        for (size_t i = 0; i < r->n_lines; i++) {
                const char *s = r->lines[i];

                if (mode == REPLY_SIEVE) {
                        /* "STARTTLS" or "SASL" "PLAIN": the first quoted string. */
                        if (s[0] == '"' && strncasecmp(s + 1, word, wl) == 0 && s[1 + wl] == '"')
                                return true;
                        continue;
                }
                /* "* CAPABILITY IMAP4rev1 STARTTLS ..." or the greeting's "[CAPABILITY ...]". */
                const char *c = strcasestr(s, "CAPABILITY ");
                if (!c)
                        continue;
                for (const char *w = c + strlen("CAPABILITY "); *w;) {
                        size_t n = strcspn(w, " ]");
                        if (n == wl && strncasecmp(w, word, wl) == 0)
                                return true;
                        if (w[n] != ' ')
                                break;
                        w += n + 1;
                }
        }
        return false;
}
