/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* What the dovecot probe reads from its peers, parsed without I/O (for the
 * probe, the unit test and the fuzzer).
 *
 * `doveadm -f tab who -1` lists one connection per line, after a header
 * that names the columns:
 *
 *     username	proto	pid	ip
 *     alice@rupost.test	imap	4711	10.231.0.11
 *     bob@rupost.test	sieve	4712	10.231.0.12
 *
 * The probe runs doveadm with stdout and stderr on one pipe, so lines
 * without a tab (doveadm's own warnings, wherever they land) are messages,
 * counted and skipped. The protocol column ("proto"; "service" in newer
 * releases) is folded into a closed set so the metric's labels stay bounded;
 * ManageSieve logins register as "sieve". */

#include <stddef.h>
#include <stdint.h>

#include "lib/macro.h"

typedef enum DovecotService {
        DOVECOT_SERVICE_IMAP,
        DOVECOT_SERVICE_POP3,
        DOVECOT_SERVICE_LMTP,
        DOVECOT_SERVICE_MANAGESIEVE,
        DOVECOT_SERVICE_OTHER,
        _DOVECOT_SERVICE_MAX,
        _DOVECOT_SERVICE_INVALID = -EINVAL,
} DovecotService;

const char *dovecot_service_to_string(DovecotService s) _pure_;
/* Any protocol name maps to a service; unknown ones to "other". */
DovecotService dovecot_service_from_proto(const char *proto, size_t len) _pure_;

typedef struct DoveadmWho {
        uint64_t connections[_DOVECOT_SERVICE_MAX];
        uint64_t total;
        uint64_t users;      /* distinct non-empty user names */
        uint64_t n_messages; /* lines without a tab, skipped */
} DoveadmWho;

/* The largest output the probe accepts (about 100000 connections). */
#define DOVEADM_WHO_MAX (8U * 1024U * 1024U)

/* Parses the whole output. Returns 0; -EBADMSG with the first problem and
 * its line number in `error` ("line 3: 2 fields, the header has 4");
 * -ENOMEM. The text need not be NUL-terminated. */
int doveadm_who_parse(const char *text, size_t size, DoveadmWho *ret, char *error, size_t error_size);

/* The first non-empty line of TEXT, with control characters replaced and
 * cut to fit: what a failing doveadm said, for the probe's reason. Returns
 * BUF; empty when there was nothing. */
const char *doveadm_first_line(const char *text, size_t size, char *buf, size_t buf_size);

/* A resource limit as systemd writes it: "1024", "1024:524288" (soft:hard)
 * or "infinity". */
const char *dovecot_limit_format(char *buf, size_t size, uint64_t soft, uint64_t hard);
