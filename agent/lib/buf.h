/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* A growable byte buffer with a hard limit. Appending past the limit fails
 * with -ENOBUFS and leaves the buffer marked as overflowed; running out of
 * memory fails with -ENOMEM and marks it too. Either way later appends fail
 * as well (no hole in the middle), so callers can append freely and check
 * once at the end. */
typedef struct Buf {
        char *data;
        size_t len;
        size_t allocated;
        size_t limit;
        bool overflow;
        bool out_of_memory;
} Buf;

#define BUF_INIT(max) ((Buf) { .limit = (max) })

int buf_append(Buf *b, const void *p, size_t n);
int buf_puts(Buf *b, const char *s);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(Buf *b, const char *fmt, va_list ap) _printf_(2, 0);
void buf_reset(Buf *b);
void buf_done(Buf *b);
/* Hands out the NUL-terminated contents and leaves the buffer empty. */
char *buf_steal(Buf *b);

static inline int buf_status(const Buf *b) {
        return b->out_of_memory ? -ENOMEM : b->overflow ? -ENOBUFS : 0;
}
