/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The runtime API parsers on arbitrary bytes, split as the probe splits an
 * answer: no crash, no leak, every refusal described, and what is accepted
 * is within the parser's bounds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probes/haproxy-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int r, const char *error) {
        if (r == -ENOMEM)
                return;
        if (r < 0 && (r != -EBADMSG || !error || strchr(error, '\n')))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        HaproxySection s[4];
        const char *error;

        if (size > 256 * 1024)
                return 0;
        /* Each parser on the whole input, and on the sections when it splits. */
        if (haproxy_split_sections(text, size, s, 4) < 0)
                for (size_t i = 0; i < 4; i++)
                        s[i] = (HaproxySection) { text, size };

        HaproxyInfo info = {};
        error = NULL;
        int r = haproxy_info_parse(s[0].text, s[0].len, &info, &error);
        check(r, error);
        haproxy_info_done(&info);

        HaproxyStat stat = {};
        error = NULL;
        r = haproxy_stat_parse(s[1].text, s[1].len, &stat, &error);
        check(r, error);
        if (r == 0) {
                if (stat.n_rows > HAPROXY_ROWS_MAX)
                        abort();
                for (size_t i = 0; i < stat.n_rows; i++)
                        if (!stat.rows[i].proxy || !stat.rows[i].server || !stat.rows[i].status ||
                            strlen(stat.rows[i].proxy) > HAPROXY_FIELD_MAX)
                                abort();
                        else
                                (void) haproxy_state_from_status(stat.rows[i].status);
        }
        haproxy_stat_done(&stat);

        HaproxyPeers peers = {};
        error = NULL;
        r = haproxy_peers_parse(s[2].text, s[2].len, &peers, &error);
        check(r, error);
        if (r == 0 && peers.n_peers > HAPROXY_PEERS_MAX)
                abort();
        haproxy_peers_done(&peers);

        HaproxyTables tables = {};
        error = NULL;
        r = haproxy_tables_parse(s[3].text, s[3].len, &tables, &error);
        check(r, error);
        if (r == 0 && tables.n_tables > HAPROXY_TABLES_MAX)
                abort();
        haproxy_tables_done(&tables);
        return 0;
}
