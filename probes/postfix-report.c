/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <string.h>

#include "lib/parse-util.h"
#include "postfix-report.h"

static const char *const queue_table[_POSTFIX_QUEUE_MAX] = {
        [POSTFIX_QUEUE_MAILDROP] = "maildrop",
        [POSTFIX_QUEUE_INCOMING] = "incoming",
        [POSTFIX_QUEUE_ACTIVE] = "active",
        [POSTFIX_QUEUE_DEFERRED] = "deferred",
        [POSTFIX_QUEUE_HOLD] = "hold",
};

static const char *const master_table[_POSTFIX_MASTER_MAX] = {
        [POSTFIX_MASTER_RUNNING] = "running",
        [POSTFIX_MASTER_NOT_LOCKED] = "not-locked",
        [POSTFIX_MASTER_NO_PID_FILE] = "no-pid-file",
        [POSTFIX_MASTER_LOCKED_DEAD] = "locked-dead",
        [POSTFIX_MASTER_ERROR] = "error",
};

const char *postfix_queue_to_string(PostfixQueue q) {
        return q >= 0 && q < _POSTFIX_QUEUE_MAX ? queue_table[q] : NULL;
}

PostfixQueue postfix_queue_from_string(const char *s) {
        for (PostfixQueue q = 0; q < _POSTFIX_QUEUE_MAX; q++)
                if (s && streq(s, queue_table[q]))
                        return q;
        return _POSTFIX_QUEUE_INVALID;
}

const char *postfix_master_to_string(PostfixMaster m) {
        return m >= 0 && m < _POSTFIX_MASTER_MAX ? master_table[m] : NULL;
}

PostfixMaster postfix_master_from_string(const char *s) {
        for (PostfixMaster m = 0; m < _POSTFIX_MASTER_MAX; m++)
                if (s && streq(s, master_table[m]))
                        return m;
        return _POSTFIX_MASTER_INVALID;
}

static int fail(char *error, size_t size, unsigned line, const char *what) {
        if (error && size > 0)
                snprintf(error, size, "line %u: %s", line, what);
        return -EBADMSG;
}

/* Splits a line into at most `max` space-separated words, in place. */
static size_t split_words(char *s, char **words, size_t max) {
        size_t n = 0;
        char *save = NULL;

        for (char *w = strtok_r(s, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                if (n == max)
                        return max + 1;
                words[n++] = w;
        }
        return n;
}

static int number(const char *s, uint64_t max, uint64_t *ret) {
        uint64_t v;
        int r = safe_atou64(s, &v);
        if (r < 0 || v > max)
                return -EBADMSG;
        *ret = v;
        return 0;
}

int postfix_report_parse(const char *text, size_t size, PostfixReport *ret, char *error, size_t error_size) {
        PostfixReport report = { .master = _POSTFIX_MASTER_INVALID };
        char line[256];
        unsigned lineno = 0;
        bool ended = false;
        size_t off = 0;

        assert_return(text || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (size > POSTFIX_REPORT_MAX)
                return fail(error, error_size, 0, "report too long");

        while (off < size) {
                const char *nl = memchr(text + off, '\n', size - off);
                size_t len = nl ? (size_t) (nl - (text + off)) : size - off;
                char *w[5];
                uint64_t a, b;

                lineno++;
                if (!nl)
                        return fail(error, error_size, lineno, "line not terminated (report cut short?)");
                if (ended)
                        return fail(error, error_size, lineno, "text after 'end'");
                if (len >= sizeof line)
                        return fail(error, error_size, lineno, "line too long");
                if (memchr(text + off, 0, len))
                        return fail(error, error_size, lineno, "NUL byte");
                memcpy(line, text + off, len);
                line[len] = 0;
                off += len + 1;

                size_t n = split_words(line, w, 4);
                if (n == 1 && streq(w[0], "end")) {
                        ended = true;
                        continue;
                }
                if (n == 3 && streq(w[0], "master")) {
                        PostfixMaster m = postfix_master_from_string(w[1]);
                        if (m < 0)
                                return fail(error, error_size, lineno, "unknown master state");
                        if (report.master >= 0)
                                return fail(error, error_size, lineno, "master reported twice");
                        if (number(w[2], m == POSTFIX_MASTER_ERROR ? 4095 : INT32_MAX, &a) < 0)
                                return fail(error, error_size, lineno, "bad number");
                        report.master = m;
                        if (m == POSTFIX_MASTER_ERROR)
                                report.master_error = (int) a;
                        else
                                report.master_pid = (pid_t) a;
                        continue;
                }
                if (n == 4 && streq(w[0], "queue")) {
                        PostfixQueue q = postfix_queue_from_string(w[1]);
                        if (q < 0)
                                return fail(error, error_size, lineno, "unknown queue");
                        PostfixQueueReport *qr = &report.queues[q];
                        if (qr->present)
                                return fail(error, error_size, lineno, "queue reported twice");
                        if (streq(w[2], "error")) {
                                if (number(w[3], 4095, &a) < 0 || a == 0)
                                        return fail(error, error_size, lineno, "bad error number");
                                qr->error = (int) a;
                        } else {
                                if (number(w[2], UINT32_MAX, &a) < 0 || number(w[3], INT64_MAX / 2, &b) < 0)
                                        return fail(error, error_size, lineno, "bad number");
                                if ((a == 0) != (b == 0))
                                        return fail(error, error_size, lineno,
                                                    "oldest time given for an empty queue, or missing");
                                qr->messages = a;
                                qr->oldest = (int64_t) b;
                        }
                        qr->present = true;
                        continue;
                }
                return fail(error, error_size, lineno, "not a report line");
        }

        if (!ended)
                return fail(error, error_size, lineno, "no 'end' (report cut short?)");
        if (report.master < 0)
                return fail(error, error_size, lineno, "no master line");

        *ret = report;
        return 0;
}

int postfix_queue_file_arrival(const void *data, size_t size, int64_t *ret) {
        const uint8_t *p = data;
        size_t off = 0;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        /* The envelope records come first; 'T' is among the first few. */
        for (unsigned records = 0; records < 64 && off < size; records++) {
                uint8_t type = p[off++];
                uint64_t len = 0;
                unsigned shift = 0;

                for (;;) {
                        if (off >= size)
                                return -ENOENT; /* cut off by our read size */
                        uint8_t b = p[off++];
                        len |= (uint64_t) (b & 0x7f) << shift;
                        if (!(b & 0x80))
                                break;
                        shift += 7;
                        if (shift > 28)
                                return -EBADMSG;
                }

                if (type == 'M' || type == 'E')
                        return -ENOENT; /* the content starts: no arrival time */
                if (len > size - off)
                        return -ENOENT;

                if (type == 'T') {
                        char buf[64];
                        uint64_t sec;

                        if (len == 0 || len >= sizeof buf)
                                return -EBADMSG;
                        memcpy(buf, p + off, len);
                        buf[len] = 0;
                        /* "seconds microseconds" (Postfix >= 2.3) or just "seconds". */
                        buf[strcspn(buf, " ")] = 0;
                        if (safe_atou64(buf, &sec) < 0 || sec > INT64_MAX / 2)
                                return -EBADMSG;
                        *ret = (int64_t) sec;
                        return 0;
                }
                off += len;
        }
        return -ENOENT;
}
