/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Whatever a mail server sends, in whatever pieces, the reply parser frames
 * it without crashing, within its bounds, and the same way whole or split.
 * The first byte picks the framing (SMTP, IMAP with a tag, ManageSieve) and
 * the size of the pieces. */
#include <stdint.h>
#include <string.h>

#include "probes/smtp-reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Outcome {
        int result;
        size_t n_replies;
        size_t n_lines;
        unsigned last_code;
} Outcome;

static Outcome run(ReplyMode mode, const char *d, size_t size, size_t chunk) {
        ReplyParser p;
        Outcome o = {};
        size_t off = 0;

        reply_parser_init(&p, mode, 4096, 64);
        (void) reply_parser_set_tag(&p, mode == REPLY_IMAP ? "a" : NULL);
        while (off < size) {
                size_t n = chunk ? MIN(chunk, size - off) : size - off, consumed = 0;
                Reply r = {};
                int k = reply_parser_feed(&p, d + off, n, &consumed, &r);

                if (consumed > n)
                        __builtin_trap();
                off += consumed;
                if (k < 0) {
                        o.result = k;
                        break;
                }
                if (k > 0) {
                        if (r.n_lines == 0 || r.n_lines > 64 || r.lines[r.n_lines] != NULL)
                                __builtin_trap();
                        if (mode == REPLY_SMTP && (r.code < 200 || r.code > 559))
                                __builtin_trap();
                        o.n_replies++;
                        o.n_lines += r.n_lines;
                        o.last_code = r.code;
                        (void) smtp_reply_has_keyword(&r, "STARTTLS");
                        (void) reply_lists_capability(&r, mode, "STARTTLS");
                        reply_done(&r);
                }
        }
        reply_parser_done(&p);
        return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;

        ReplyMode mode = (ReplyMode) (data[0] % _REPLY_MODE_MAX);
        size_t chunk = (size_t) (data[0] >> 2) % 17 + 1;
        const char *d = (const char *) data + 1;
        size_t n = size - 1;

        Outcome whole = run(mode, d, n, 0);
        Outcome split = run(mode, d, n, chunk);
        /* Split reads must not change what was framed. */
        if (whole.result != split.result || whole.n_replies != split.n_replies || whole.n_lines != split.n_lines ||
            whole.last_code != split.last_code)
                __builtin_trap();
        return 0;
}
