/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The client side of an NTP exchange (RFC 5905, client mode 3 to a server
 * in mode 4), pure: building the 48-byte request and judging the reply. No
 * I/O here, so every rule is tested on bytes and fuzzed. */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/time-util.h"

#define NTP_PACKET_SIZE 48
#define NTP_PORT 123
/* Seconds from 1900-01-01 (the NTP era 0 epoch) to 1970-01-01. */
#define NTP_UNIX_EPOCH_OFFSET 2208988800ULL

/* 32.32 fixed point: seconds since 1900 (modulo the era) and a fraction. */
typedef uint64_t NtpTimestamp;

NtpTimestamp ntp_timestamp_from_realtime(usec_t realtime);
/* The Unix time in microseconds of a timestamp in era 0 (1900-2036) or, for
 * values below 1968, era 1 (2036-2104). */
usec_t ntp_timestamp_to_realtime(NtpTimestamp t);

/* Writes a client request (LI 0, version 4, mode 3) carrying `t1` as its
 * transmit timestamp, which the server echoes as the reply's origin. */
void ntp_request_build(uint8_t buf[static NTP_PACKET_SIZE], NtpTimestamp t1);

typedef enum NtpVerdict {
        NTP_REPLY_OK,
        NTP_REPLY_TOO_SHORT,      /* fewer than 48 bytes */
        NTP_REPLY_BAD_VERSION,    /* not 1..4 */
        NTP_REPLY_BAD_MODE,       /* not a server reply (mode 4) */
        NTP_REPLY_BOGUS_ORIGIN,   /* does not echo our transmit timestamp: stray, replayed or spoofed */
        NTP_REPLY_KISS_OF_DEATH,  /* stratum 0: refid holds the code (RATE, DENY, RSTR, ...) */
        NTP_REPLY_UNSYNCHRONIZED, /* leap indicator 3: the server's own clock is not synchronized */
        NTP_REPLY_NO_TIMESTAMPS,  /* receive or transmit timestamp is zero */
        _NTP_VERDICT_MAX,
        _NTP_VERDICT_INVALID = -EINVAL,
} NtpVerdict;

/* What an operator reads: "is not a server reply (mode 4)". */
const char *ntp_verdict_to_string(NtpVerdict v);

typedef struct NtpReply {
        unsigned leap;
        unsigned version;
        unsigned mode;
        unsigned stratum;
        double root_delay;      /* seconds */
        double root_dispersion; /* seconds */
        char refid[5];          /* ASCII when stratum is 0 or 1 (printable, NUL-terminated), else '?' */
        NtpTimestamp origin;    /* T1, as echoed */
        NtpTimestamp receive;   /* T2 */
        NtpTimestamp transmit;  /* T3 */
} NtpReply;

/* Parses a reply to the request that carried `t1`. `ret` is filled as far as
 * the packet allows whatever the verdict, so a kiss-o'-death code can be
 * reported. */
NtpVerdict ntp_reply_parse(const uint8_t *data, size_t size, NtpTimestamp t1, NtpReply *ret);

/* RFC 5905 on-wire calculation from the four timestamps (t4: when the reply
 * arrived): offset θ = ((T2 − T1) + (T3 − T4)) / 2, positive when the server
 * is ahead of us; delay δ = (T4 − T1) − (T3 − T2), not below zero. Differences
 * are taken modulo 2^64, so an era rollover between them does no harm. */
void ntp_offset_delay(NtpTimestamp t1, NtpTimestamp t2, NtpTimestamp t3, NtpTimestamp t4, double *ret_offset,
                      double *ret_delay);
