/* SPDX-License-Identifier: GPL-2.0-or-later */
/* gzip (RFC 1952) around raw deflate (RFC 1951) streams from zlib. The
 * member's trailer needs the CRC and size of all the data: the head's are
 * kept with it, the tail's are computed per scrape and joined with
 * crc32_combine(). */

#include <errno.h>
#include <limits.h>
#include <zlib.h>

#include "gzip-body.h"

/* zlib's default level, which Go's gzip writer (and so node_exporter) uses
 * too; 9 buys a few percent for several times the CPU. */
#define GZIP_LEVEL 6
/* Raw deflate (no zlib wrapper) with the largest window. */
#define RAW_WINDOW_BITS (-15)
#define MEM_LEVEL 8

struct GzipWriter {
        z_stream z;
};

static int deflate_init_raw(z_stream *z) {
        *z = (z_stream) {};
        switch (deflateInit2(z, GZIP_LEVEL, Z_DEFLATED, RAW_WINDOW_BITS, MEM_LEVEL, Z_DEFAULT_STRATEGY)) {
        case Z_OK:
                return 0;
        case Z_MEM_ERROR:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/* Deflates all of data with the given flush mode, appending to out. */
static int deflate_into(z_stream *z, const void *data, size_t size, int flush, Buf *out) {
        unsigned char chunk[16384];

        if (size > UINT_MAX)
                return -EFBIG;
        z->next_in = (Bytef *) data;
        z->avail_in = (uInt) size;
        do {
                int r;

                z->next_out = chunk;
                z->avail_out = sizeof chunk;
                /* Z_BUF_ERROR only says that a call made no progress, which
                 * happens when the last output exactly filled the chunk. */
                r = deflate(z, flush);
                if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
                        return -EIO;
                r = buf_append(out, chunk, sizeof chunk - z->avail_out);
                if (r < 0)
                        return r;
        } while (z->avail_out == 0);
        return z->avail_in == 0 ? 0 : -EIO;
}

int gzip_writer_new(GzipWriter **ret) {
        GzipWriter *w;
        int r;

        assert_return(ret, -EINVAL);

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        r = deflate_init_raw(&w->z);
        if (r < 0) {
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

GzipWriter *gzip_writer_free(GzipWriter *w) {
        if (!w)
                return NULL;
        (void) deflateEnd(&w->z);
        free(w);
        return NULL;
}

int gzip_head_set(GzipHead *head, const void *data, size_t size) {
        z_stream z;
        int r;

        assert_return(head, -EINVAL);
        assert_return(data || size == 0, -EINVAL);

        buf_reset(&head->deflated);
        head->crc = 0;
        head->size = 0;
        r = deflate_init_raw(&z);
        if (r < 0)
                return r;
        /* A sync flush ends the blocks on a byte boundary without marking
         * the last one final: another stream's blocks may follow. */
        r = deflate_into(&z, data, size, Z_SYNC_FLUSH, &head->deflated);
        (void) deflateEnd(&z);
        if (r < 0) {
                buf_reset(&head->deflated);
                return r;
        }
        head->crc = (uint32_t) crc32(crc32(0, Z_NULL, 0), data, (uInt) size);
        head->size = size;
        return 0;
}

void gzip_head_done(GzipHead *head) {
        if (!head)
                return;
        buf_done(&head->deflated);
        head->crc = 0;
        head->size = 0;
}

static int put_le32(Buf *out, uint32_t v) {
        unsigned char b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff };
        return buf_append(out, b, sizeof b);
}

int gzip_writer_finish(GzipWriter *w, const GzipHead *head, const void *tail, size_t tail_size, Buf *out) {
        /* No name, no time stamp (the body is not a file), OS "Unix". */
        static const unsigned char header[10] = { 0x1f, 0x8b, Z_DEFLATED, 0, 0, 0, 0, 0, 0, 3 };
        uint32_t crc;
        int r;

        assert_return(w, -EINVAL);
        assert_return(head, -EINVAL);
        assert_return(tail || tail_size == 0, -EINVAL);
        assert_return(out, -EINVAL);

        if (tail_size > UINT_MAX)
                return -EFBIG;
        if (deflateReset(&w->z) != Z_OK)
                return -EIO;

        r = buf_append(out, header, sizeof header);
        if (r < 0)
                return r;
        r = buf_append(out, head->deflated.data ?: "", head->deflated.len);
        if (r < 0)
                return r;
        r = deflate_into(&w->z, tail, tail_size, Z_FINISH, out);
        if (r < 0)
                return r;

        crc = (uint32_t) crc32(crc32(0, Z_NULL, 0), tail, (uInt) tail_size);
        crc = (uint32_t) crc32_combine(head->crc, crc, (z_off_t) tail_size);
        r = put_le32(out, crc);
        if (r < 0)
                return r;
        /* ISIZE: the size modulo 2^32, as RFC 1952 has it. */
        return put_le32(out, (uint32_t) ((head->size + tail_size) & UINT32_MAX));
}
