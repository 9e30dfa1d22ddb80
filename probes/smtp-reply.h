/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Incremental parser of the replies mail servers send to a probe.
 *
 * Bytes are fed as they arrive, in pieces of any size; the parser yields
 * one complete reply at a time. Three framings share the line handling (CRLF
 * or a bare LF, bounded lines and replies):
 *
 *  - SMTP and LMTP (RFC 5321 4.2): "250-first", "250-more", "250 last". The
 *    reply ends with the line whose code is followed by a space (or nothing).
 *    Every line must carry the same code.
 *  - IMAP (RFC 9051): untagged "* ..." lines until the line that starts with
 *    the command's tag; with no tag set, the greeting: exactly one line.
 *  - ManageSieve (RFC 5804): quoted capability strings until a line that
 *    starts with OK, NO or BYE.
 *
 * Pure: no I/O, no clock. Everything a peer sends is bounded: a line, the
 * lines of a reply and its bytes. */

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"
#include "lib/macro.h"

#define REPLY_MAX_BYTES (64U * 1024U)
#define REPLY_MAX_LINES 512U
#define REPLY_MAX_LINE 8192U

typedef enum ReplyMode {
        REPLY_SMTP,
        REPLY_IMAP,
        REPLY_SIEVE,
        _REPLY_MODE_MAX,
        _REPLY_MODE_INVALID = -EINVAL,
} ReplyMode;

typedef struct Reply {
        unsigned code; /* SMTP: 200..599; 0 otherwise */
        /* Without line ends. SMTP: the text after "250-" or "250 ".
         * IMAP and ManageSieve: the whole lines; the last one is the status. */
        char **lines;
        size_t n_lines;
} Reply;

void reply_done(Reply *r);
/* The last line: for IMAP and ManageSieve the status line. */
const char *reply_last_line(const Reply *r);

typedef struct ReplyParser {
        ReplyMode mode;
        char tag[16]; /* IMAP: the tag that ends the reply; empty: the greeting */
        size_t max_bytes;
        size_t max_lines;

        Buf line;     /* the line being received */
        Reply reply;  /* the reply being collected */
        size_t bytes; /* of the reply so far */
        char error[160];
} ReplyParser;

/* max_bytes and max_lines of 0 mean REPLY_MAX_BYTES and REPLY_MAX_LINES. */
void reply_parser_init(ReplyParser *p, ReplyMode mode, size_t max_bytes, size_t max_lines);
void reply_parser_done(ReplyParser *p);
/* The IMAP tag of the next reply (NULL or "" for the greeting). Drops any
 * partial reply. */
int reply_parser_set_tag(ReplyParser *p, const char *tag);

/* Consumes bytes up to the end of the next complete reply. Returns 1 when
 * a reply is complete (moved to *ret; the caller owns it, see reply_done()),
 * 0 when all bytes were consumed and the reply goes on, and on errors
 * -EBADMSG (not a reply of this protocol: garbage, a continuation line with
 * another code, a NUL byte) or -E2BIG (a line, the line count or the byte
 * count over its bound), with p->error describing what was received. After
 * an error the parser stays failed. *ret_consumed is set in every case. */
int reply_parser_feed(ReplyParser *p, const char *data, size_t size, size_t *ret_consumed, Reply *ret);

/* Whether a line of an SMTP EHLO/LHLO reply names a capability keyword
 * ("STARTTLS", "SIZE 10240000" for "SIZE"), case-insensitively. */
bool smtp_reply_has_keyword(const Reply *r, const char *keyword);
/* Whether an IMAP "* CAPABILITY ..." line or a ManageSieve capability line
 * lists the word ("STARTTLS"), case-insensitively. */
bool reply_lists_capability(const Reply *r, ReplyMode mode, const char *word);
