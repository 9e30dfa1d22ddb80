/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Any datagram a peer sends is judged without crashing; when the input's
 * origin field is used as our T1, the deeper checks and the offset
 * arithmetic run too. */
#include <stdint.h>
#include <string.h>

#include "probes/ntp-packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        NtpReply r;
        NtpTimestamp t1 = 0;

        (void) ntp_reply_parse(data, size, 0, &r);
        if (size >= 32)
                for (int i = 24; i < 32; i++)
                        t1 = t1 << 8 | data[i];
        if (ntp_reply_parse(data, size, t1, &r) == NTP_REPLY_OK) {
                double o, d;
                ntp_offset_delay(t1, r.receive, r.transmit, t1 + (r.transmit - r.receive), &o, &d);
                (void) ntp_timestamp_to_realtime(r.transmit);
        }
        (void) ntp_verdict_to_string(ntp_reply_parse(data, size, t1, &r));
        return 0;
}
