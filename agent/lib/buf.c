/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static int buf_reserve(Buf *b, size_t extra) {
        size_t need;

        if (b->out_of_memory || b->overflow)
                return buf_status(b);
        /* One byte more for the terminating NUL, kept at all times. */
        if (__builtin_add_overflow(b->len, extra + 1, &need) || (b->limit > 0 && need > b->limit + 1)) {
                b->overflow = true;
                return -ENOBUFS;
        }
        if (need <= b->allocated)
                return 0;

        size_t a = MAX(need, MAX(b->allocated * 2, (size_t) 256));
        char *p = realloc(b->data, a);
        if (!p) {
                b->out_of_memory = true;
                return -ENOMEM;
        }
        b->data = p;
        b->allocated = a;
        return 0;
}

int buf_append(Buf *b, const void *p, size_t n) {
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_puts(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_vprintf(Buf *b, const char *fmt, va_list ap) {
        va_list aq;
        int n, r;

        va_copy(aq, ap);
        n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;

        r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        (void) vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        b->len += (size_t) n;
        return 0;
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = buf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

void buf_reset(Buf *b) {
        b->len = 0;
        b->overflow = false;
        b->out_of_memory = false;
        if (b->data)
                b->data[0] = 0;
}

void buf_done(Buf *b) {
        free(b->data);
        *b = BUF_INIT(b->limit);
}

char *buf_steal(Buf *b) {
        char *p = b->data ? b->data : strdup("");
        *b = BUF_INIT(b->limit);
        return p;
}
