/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Inflating what the exporter sent with zlib, for the tests of its gzip
 * bodies. */

#include <zlib.h>

#include "lib/buf.h"
#include "tests.h"

/* Inflates one gzip member that must take up all of data; its size in
 * *ret_size when not NULL. The result is NUL-terminated. */
static inline char *test_gunzip(const void *data, size_t size, size_t *ret_size) {
        z_stream z = {};
        Buf out = BUF_INIT(0);
        unsigned char chunk[4096];
        int r;

        ASSERT_EQ(inflateInit2(&z, 16 + MAX_WBITS), Z_OK); /* gzip only */
        z.next_in = (Bytef *) data;
        z.avail_in = (uInt) size;
        do {
                z.next_out = chunk;
                z.avail_out = sizeof chunk;
                r = inflate(&z, Z_NO_FLUSH);
                ASSERT_TRUE(r == Z_OK || r == Z_STREAM_END);
                ASSERT_OK(buf_append(&out, chunk, sizeof chunk - z.avail_out));
        } while (r != Z_STREAM_END);
        /* One member, nothing after it: the CRC and size were right, or
         * inflate would have said Z_DATA_ERROR. */
        ASSERT_EQ(z.avail_in, 0);
        (void) inflateEnd(&z);
        if (ret_size)
                *ret_size = out.len;
        return buf_steal(&out);
}
