/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Arbitrary bytes as what a control client sends the agent: collected by the
 * frame reader in pieces of varying size, as a socket would hand them over,
 * then decoded as a Request exactly as the server does. The same bytes are
 * also decoded whole, as a Request and as the Response rupost-health reads. */

#include <stdint.h>
#include <string.h>

#include "control.h"
#include "control.pb-c.h"
#include "lib/control-proto.h"

static void decode_whole(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size) {
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        _cleanup_free_ uint8_t *again = NULL;
        size_t n;

        if (control_frame_unpack(desc, data, size, CONTROL_MAX_MESSAGE, &m) < 0)
                return;
        /* Whatever decodes must encode again. */
        if (control_frame_pack(m, CONTROL_MAX_MESSAGE, &again, &n) < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(control_reader_done) ControlReader r = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
        _cleanup_(control_message_freep) ProtobufCMessage *m = NULL;
        size_t step, off = 0;
        int k = 0;

        if (size > 1024 * 1024)
                return 0;

        /* The first byte picks how the stream is cut, the rest is the stream. */
        step = size > 0 ? (size_t) (data[0] % 32) + 1 : 1;
        if (size > 0)
                data++, size--;

        while (off < size) {
                size_t n = MIN(step, size - off), used;

                k = control_reader_push(&r, data + off, n, &used);
                if (used > n)
                        abort();
                off += used;
                if (k != 0)
                        break;
        }
        if (k == 1) {
                if (!control_reader_complete(&r))
                        abort();
                if (control_reader_unpack(&r, &rupost__control__request__descriptor, &m) >= 0)
                        (void) ((const Rupost__Control__Request *) m)->kind;
        }

        decode_whole(&rupost__control__request__descriptor, data, size);
        decode_whole(&rupost__control__response__descriptor, data, size);
        return 0;
}
