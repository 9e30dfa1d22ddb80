/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* A gzip body in two parts: a head deflated once and kept (the cached probe
 * part of the exposition), and a tail deflated on every scrape (the process
 * figures, which change every time). The head ends with a sync flush on a
 * byte boundary and is not final, so the tail's own deflate stream can follow
 * it: together they are one ordinary gzip member, and a scrape compresses
 * only its tail. */

#include <stdint.h>

#include "lib/buf.h"

typedef struct GzipHead {
        Buf deflated; /* raw deflate blocks, none final, ending byte-aligned */
        uint32_t crc; /* CRC-32 of the uncompressed head */
        uint64_t size;
} GzipHead;

typedef struct GzipWriter GzipWriter;

int gzip_writer_new(GzipWriter **ret);
GzipWriter *gzip_writer_free(GzipWriter *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(GzipWriter *, gzip_writer_free);

/* Deflates data into head, replacing what it held. -ENOMEM, or -ENOBUFS
 * past the limit of head->deflated. */
int gzip_head_set(GzipHead *head, const void *data, size_t size);
void gzip_head_done(GzipHead *head);

/* Appends to out the gzip member of head's data followed by tail. */
int gzip_writer_finish(GzipWriter *w, const GzipHead *head, const void *tail, size_t tail_size, Buf *out);
