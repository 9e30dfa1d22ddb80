/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <string.h>

#include "lib/macro.h"
#include "ntp-packet.h"

#define FRACTION_SCALE 4294967296.0 /* 2^32 */

NtpTimestamp ntp_timestamp_from_realtime(usec_t realtime) {
        uint64_t seconds = realtime / USEC_PER_SEC + NTP_UNIX_EPOCH_OFFSET;
        uint64_t fraction = ((realtime % USEC_PER_SEC) << 32) / USEC_PER_SEC;

        /* Era 1 starts in 2036: the seconds field simply wraps. */
        return ((seconds & 0xffffffffULL) << 32) | fraction;
}

usec_t ntp_timestamp_to_realtime(NtpTimestamp t) {
        uint64_t seconds = t >> 32, fraction = t & 0xffffffffULL;

        /* Seconds below the Unix epoch's value can only be era 1 for a clock
         * this code will ever read (RFC 4330 section 3 does the same with bit 0). */
        if (seconds < NTP_UNIX_EPOCH_OFFSET)
                seconds += 1ULL << 32;
        return (seconds - NTP_UNIX_EPOCH_OFFSET) * USEC_PER_SEC + ((fraction * USEC_PER_SEC + (1ULL << 31)) >> 32);
}

static void put_u64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) (v & 0xff);
}

static uint64_t get_u64(const uint8_t *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = (v << 8) | p[i];
        return v;
}

static uint32_t get_u32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

void ntp_request_build(uint8_t buf[static NTP_PACKET_SIZE], NtpTimestamp t1) {
        memset(buf, 0, NTP_PACKET_SIZE);
        buf[0] = 0 << 6 | 4 << 3 | 3; /* LI 0, VN 4, mode 3 (client) */
        put_u64(buf + 40, t1);
}

static const char *const verdict_table[_NTP_VERDICT_MAX] = {
        [NTP_REPLY_OK] = "ok",
        [NTP_REPLY_TOO_SHORT] = "is shorter than an NTP packet",
        [NTP_REPLY_BAD_VERSION] = "has an unknown NTP version",
        [NTP_REPLY_BAD_MODE] = "is not a server reply (mode 4)",
        [NTP_REPLY_BOGUS_ORIGIN] = "does not echo our request's timestamp (stray or spoofed)",
        [NTP_REPLY_KISS_OF_DEATH] = "is a kiss-o'-death (stratum 0)",
        [NTP_REPLY_UNSYNCHRONIZED] = "says the server itself is not synchronized (leap indicator 3)",
        [NTP_REPLY_NO_TIMESTAMPS] = "carries no receive or transmit timestamp",
};

const char *ntp_verdict_to_string(NtpVerdict v) {
        if (v < 0 || v >= _NTP_VERDICT_MAX)
                return NULL;
        return verdict_table[v];
}

NtpVerdict ntp_reply_parse(const uint8_t *data, size_t size, NtpTimestamp t1, NtpReply *ret) {
        NtpReply r = {};

        if (size < NTP_PACKET_SIZE) {
                *ret = r;
                return NTP_REPLY_TOO_SHORT;
        }

        r.leap = data[0] >> 6;
        r.version = (data[0] >> 3) & 7;
        r.mode = data[0] & 7;
        r.stratum = data[1];
        /* 16.16 fixed point seconds. */
        r.root_delay = get_u32(data + 4) / 65536.0;
        r.root_dispersion = get_u32(data + 8) / 65536.0;
        for (size_t i = 0; i < 4; i++) {
                uint8_t c = data[12 + i];
                r.refid[i] = c >= 0x20 && c < 0x7f ? (char) c : c == 0 ? 0 : '?';
        }
        r.refid[4] = 0;
        r.origin = get_u64(data + 24);
        r.receive = get_u64(data + 32);
        r.transmit = get_u64(data + 40);
        *ret = r;

        if (r.version < 1 || r.version > 4)
                return NTP_REPLY_BAD_VERSION;
        if (r.mode != 4)
                return NTP_REPLY_BAD_MODE;
        /* Checked before the rest: anything else in a reply we did not ask
         * for (or one an attacker guessed) means nothing. */
        if (r.origin != t1)
                return NTP_REPLY_BOGUS_ORIGIN;
        if (r.stratum == 0)
                return NTP_REPLY_KISS_OF_DEATH;
        if (r.leap == 3)
                return NTP_REPLY_UNSYNCHRONIZED;
        if (r.receive == 0 || r.transmit == 0)
                return NTP_REPLY_NO_TIMESTAMPS;
        return NTP_REPLY_OK;
}

static double diff_seconds(NtpTimestamp a, NtpTimestamp b) {
        return (double) (int64_t) (a - b) / FRACTION_SCALE;
}

void ntp_offset_delay(NtpTimestamp t1, NtpTimestamp t2, NtpTimestamp t3, NtpTimestamp t4, double *ret_offset,
                      double *ret_delay) {
        double delay = diff_seconds(t4, t1) - diff_seconds(t3, t2);

        *ret_offset = (diff_seconds(t2, t1) + diff_seconds(t3, t4)) / 2;
        *ret_delay = delay > 0 ? delay : 0;
}
