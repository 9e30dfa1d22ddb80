/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "haproxy-parse.h"
#include "lib/parse-util.h"

static const char *const state_table[_HAPROXY_STATE_MAX] = {
        [HAPROXY_STATE_UP] = "UP",
        [HAPROXY_STATE_DOWN] = "DOWN",
        [HAPROXY_STATE_MAINT] = "MAINT",
        [HAPROXY_STATE_DRAIN] = "DRAIN",
        [HAPROXY_STATE_NOLB] = "NOLB",
};

const char *haproxy_state_to_string(HaproxyState s) {
        return s >= 0 && s < _HAPROXY_STATE_MAX ? state_table[s] : NULL;
}

static bool word_prefix(const char *s, const char *word) {
        size_t n = strlen(word);
        return strncmp(s, word, n) == 0 && (s[n] == 0 || s[n] == ' ');
}

HaproxyState haproxy_state_from_status(const char *status) {
        if (!status)
                return _HAPROXY_STATE_INVALID;
        /* "no check": no health check configured, traffic goes to it. */
        if (word_prefix(status, "UP") || streq(status, "no check"))
                return HAPROXY_STATE_UP;
        if (word_prefix(status, "DOWN"))
                return HAPROXY_STATE_DOWN;
        if (word_prefix(status, "MAINT"))
                return HAPROXY_STATE_MAINT;
        if (word_prefix(status, "DRAIN"))
                return HAPROXY_STATE_DRAIN;
        if (word_prefix(status, "NOLB"))
                return HAPROXY_STATE_NOLB;
        return _HAPROXY_STATE_INVALID;
}

/* Lines of a section, one at a time, copied so they can be cut up; "\r\n"
 * and "\n" both end a line, and an embedded NUL ends it early. */
typedef struct Lines {
        const char *p, *end;
        unsigned number;
} Lines;

static char *next_line(Lines *l) {
        if (l->p >= l->end)
                return NULL;
        const char *nl = memchr(l->p, '\n', (size_t) (l->end - l->p));
        const char *e = nl ?: l->end;
        size_t n = (size_t) (e - l->p);
        if (n > 0 && l->p[n - 1] == '\r')
                n--;
        char *line = strndup(l->p, n);
        l->p = nl ? nl + 1 : l->end;
        l->number++;
        return line;
}

static char *strdup_bounded(const char *s) {
        return strndup(s, HAPROXY_FIELD_MAX);
}

/* show info */

void haproxy_info_done(HaproxyInfo *i) {
        free(i->name);
        free(i->version);
        free(i->node);
        *i = (HaproxyInfo) {};
}

int haproxy_info_parse(const char *text, size_t len, HaproxyInfo *ret, const char **ret_error) {
        _cleanup_(haproxy_info_done) HaproxyInfo info = {};
        Lines l = { text, text + len };
        char *line;

        for (; (line = next_line(&l)); free(line)) {
                char *colon = strstr(line, ": ");
                if (!colon) {
                        if (line[0] == 0)
                                continue;
                        if (ret_error)
                                *ret_error = info.name ? "show info: a line is not 'Key: value'"
                                                       : "show info: the answer is not 'Key: value' lines";
                        free(line);
                        return -EBADMSG;
                }
                *colon = 0;
                const char *v = colon + 2;
                char **field = NULL;
                uint64_t *number = NULL;

                if (streq(line, "Name"))
                        field = &info.name;
                else if (streq(line, "Version"))
                        field = &info.version;
                else if (streq(line, "node"))
                        field = &info.node;
                else if (streq(line, "Pid"))
                        number = &info.pid;
                else if (streq(line, "Maxconn"))
                        number = &info.maxconn;
                else if (streq(line, "CurrConns")) {
                        number = &info.curr_conns;
                        info.have_curr_conns = true;
                }
                if (field && !*field && !(*field = strdup_bounded(v))) {
                        free(line);
                        return -ENOMEM;
                }
                if (number && safe_atou64(v, number) < 0) {
                        if (ret_error)
                                *ret_error = "show info: Pid, Maxconn or CurrConns is not a number";
                        free(line);
                        return -EBADMSG;
                }
        }
        if (!info.name || !info.version) {
                if (ret_error)
                        *ret_error = "show info: no Name and Version lines";
                return -EBADMSG;
        }
        *ret = info;
        info = (HaproxyInfo) {};
        return 0;
}

/* show stat */

void haproxy_stat_done(HaproxyStat *s) {
        for (size_t i = 0; i < s->n_rows; i++) {
                free(s->rows[i].proxy);
                free(s->rows[i].server);
                free(s->rows[i].status);
        }
        free(s->rows);
        *s = (HaproxyStat) {};
}

/* Splits one CSV line in place. HAProxy quotes a field that holds a comma
 * or a quote, doubling quotes inside it. Returns the number of fields, or
 * -EBADMSG for an unterminated quote. */
static int csv_split(char *line, char **fields, size_t max) {
        size_t n = 0;
        char *r = line;

        for (;;) {
                char *w = r, *start = r;
                if (*r == '"') {
                        r++;
                        for (;;) {
                                if (*r == 0)
                                        return -EBADMSG;
                                if (*r == '"') {
                                        if (r[1] != '"')
                                                break;
                                        r++;
                                }
                                *w++ = *r++;
                        }
                        r++; /* closing quote */
                        if (*r != ',' && *r != 0)
                                return -EBADMSG;
                } else {
                        while (*r && *r != ',')
                                r++;
                        w = r;
                }
                bool last = *r == 0;
                *w = 0;
                if (n < max)
                        fields[n] = start;
                n++;
                if (last)
                        break;
                r++;
        }
        return (int) MIN(n, (size_t) INT32_MAX);
}

#define CSV_FIELDS_MAX 256

int haproxy_stat_parse(const char *text, size_t len, HaproxyStat *ret, const char **ret_error) {
        _cleanup_(haproxy_stat_done) HaproxyStat stat = {};
        Lines l = { text, text + len };
        _cleanup_free_ char *header = NULL;
        char *names[CSV_FIELDS_MAX];
        int c_pxname = -1, c_svname = -1, c_status = -1, c_type = -1, c_act = -1, c_bck = -1, n_names;
        char *line;

#define FAIL(msg)                               \
        do {                                    \
                if (ret_error)                  \
                        *ret_error = (msg);     \
                return -EBADMSG;                \
        } while (0)

        while ((header = next_line(&l)) && header[0] == 0)
                free(header);
        if (!header)
                FAIL("show stat: the answer is empty");
        if (strncmp(header, "# ", 2) != 0)
                FAIL("show stat: the answer does not start with the header '# pxname,svname,...'");
        n_names = csv_split(header + 2, names, CSV_FIELDS_MAX);
        if (n_names < 0)
                FAIL("show stat: the header has an unterminated quote");
        for (int i = 0; i < MIN(n_names, CSV_FIELDS_MAX); i++) {
                if (streq(names[i], "pxname"))
                        c_pxname = i;
                else if (streq(names[i], "svname"))
                        c_svname = i;
                else if (streq(names[i], "status"))
                        c_status = i;
                else if (streq(names[i], "type"))
                        c_type = i;
                else if (streq(names[i], "act"))
                        c_act = i;
                else if (streq(names[i], "bck"))
                        c_bck = i;
        }
        if (c_pxname < 0 || c_svname < 0 || c_status < 0)
                FAIL("show stat: the header lacks pxname, svname or status");

        for (; (line = next_line(&l)); free(line)) {
                char *f[CSV_FIELDS_MAX];
                int n;

                if (line[0] == 0)
                        continue;
                n = csv_split(line, f, CSV_FIELDS_MAX);
                if (n < 0 || n < n_names) {
                        free(line);
                        FAIL("show stat: a row has fewer columns than the header");
                }
                if (stat.n_rows >= HAPROXY_ROWS_MAX) {
                        free(line);
                        FAIL("show stat: more rows than the parser keeps");
                }

                HaproxyStatRow row = {};
                const char *sv = f[c_svname];
                if (c_type >= 0 && f[c_type][0]) {
                        uint64_t t;
                        if (safe_atou64(f[c_type], &t) < 0 || t > HAPROXY_LISTENER) {
                                free(line);
                                FAIL("show stat: a row's type is not 0, 1, 2 or 3");
                        }
                        row.type = (HaproxyRowType) t;
                } else
                        row.type = streq(sv, "FRONTEND") ? HAPROXY_FRONTEND
                                 : streq(sv, "BACKEND")  ? HAPROXY_BACKEND
                                                         : HAPROXY_SERVER;
                if (c_act >= 0 && f[c_act][0] && safe_atou64(f[c_act], &row.act) < 0) {
                        free(line);
                        FAIL("show stat: a row's act is not a number");
                }
                if (c_bck >= 0 && row.type == HAPROXY_SERVER)
                        row.backup = streq(f[c_bck], "1");

                row.proxy = strdup_bounded(f[c_pxname]);
                row.server = strdup_bounded(sv);
                row.status = strdup_bounded(f[c_status]);
                HaproxyStatRow *a = row.proxy && row.server && row.status
                                            ? reallocarray(stat.rows, stat.n_rows + 1, sizeof *a)
                                            : NULL;
                if (!a) {
                        free(row.proxy);
                        free(row.server);
                        free(row.status);
                        free(line);
                        return -ENOMEM;
                }
                stat.rows = a;
                stat.rows[stat.n_rows++] = row;
        }
#undef FAIL
        *ret = stat;
        stat = (HaproxyStat) {};
        return 0;
}

/* show peers */

void haproxy_peers_done(HaproxyPeers *p) {
        for (size_t i = 0; i < p->n_peers; i++) {
                free(p->peers[i].section);
                free(p->peers[i].name);
                free(p->peers[i].addr);
                free(p->peers[i].status);
        }
        free(p->peers);
        *p = (HaproxyPeers) {};
}

/* The value of " key=" in a line of space-separated key=value words, up to
 * the next blank, copied; NULL if absent. */
static char *word_value(const char *line, const char *key) {
        size_t n = strlen(key);

        for (const char *p = line; (p = strstr(p, key)); p += n) {
                if (p != line && p[-1] != ' ')
                        continue;
                const char *v = p + n;
                return strndup(v, MIN(strcspn(v, " \t"), (size_t) HAPROXY_FIELD_MAX));
        }
        return NULL;
}

int haproxy_peers_parse(const char *text, size_t len, HaproxyPeers *ret, const char **ret_error) {
        _cleanup_(haproxy_peers_done) HaproxyPeers peers = {};
        _cleanup_free_ char *section = NULL;
        Lines l = { text, text + len };
        char *line;

        for (; (line = next_line(&l)); free(line)) {
                const char *s = line + strspn(line, " \t");

                if (line[0] == 0)
                        continue;
                /* Every entry line starts with an object address: "0x...: ". */
                if (strncmp(s, "0x", 2) != 0 || !strstr(s, ": "))
                        continue;
                const char *body = strstr(s, ": ") + 2;

                if (s == line) {
                        /* A peers section: "0x...: [date] id=mypeers ..." */
                        free(section);
                        section = word_value(body, "id=");
                        if (!section) {
                                free(line);
                                if (ret_error)
                                        *ret_error = "show peers: a section line has no id=";
                                return -EBADMSG;
                        }
                        continue;
                }
                if (strncmp(body, "id=", 3) != 0)
                        continue; /* shared tables and the like */

                HaproxyPeer peer = {};
                _cleanup_free_ char *id = word_value(body, "id=");
                peer.addr = word_value(body, "addr=");
                peer.status = word_value(body, "last_status=") ?: word_value(body, "status=");
                if (!id || !peer.addr || !peer.status || !section) {
                        free(peer.addr);
                        free(peer.status);
                        free(line);
                        if (ret_error)
                                *ret_error = section ? "show peers: a peer line lacks id=, addr= or status="
                                                     : "show peers: a peer line before any section line";
                        return -EBADMSG;
                }
                /* id=node2(remote,active) in 2.x, id=hostA(local) or a bare name before. */
                char *paren = strchr(id, '(');
                if (paren) {
                        peer.local = strncmp(paren + 1, "local", 5) == 0;
                        *paren = 0;
                }
                peer.name = strdup(id);
                peer.section = strdup(section);
                HaproxyPeer *a = peers.n_peers < HAPROXY_PEERS_MAX
                                         ? reallocarray(peers.peers, peers.n_peers + 1, sizeof *a)
                                         : NULL;
                if (!a || !peer.name || !peer.section) {
                        bool full = peers.n_peers >= HAPROXY_PEERS_MAX;
                        free(peer.name);
                        free(peer.section);
                        free(peer.addr);
                        free(peer.status);
                        free(line);
                        if (!full)
                                return -ENOMEM;
                        if (ret_error)
                                *ret_error = "show peers: more peers than the parser keeps";
                        return -EBADMSG;
                }
                peers.peers = a;
                peers.peers[peers.n_peers++] = peer;
        }
        *ret = peers;
        peers = (HaproxyPeers) {};
        return 0;
}

/* show table */

void haproxy_tables_done(HaproxyTables *t) {
        for (size_t i = 0; i < t->n_tables; i++) {
                free(t->tables[i].name);
                free(t->tables[i].type);
        }
        free(t->tables);
        *t = (HaproxyTables) {};
}

/* "key: value" or "key:value" among the comma-separated parts. */
static const char *table_field(char **parts, size_t n, const char *key) {
        size_t k = strlen(key);
        for (size_t i = 0; i < n; i++) {
                const char *s = parts[i] + strspn(parts[i], " ");
                if (strncmp(s, key, k) == 0 && s[k] == ':')
                        return s + k + 1 + strspn(s + k + 1, " ");
        }
        return NULL;
}

int haproxy_tables_parse(const char *text, size_t len, HaproxyTables *ret, const char **ret_error) {
        _cleanup_(haproxy_tables_done) HaproxyTables tables = {};
        Lines l = { text, text + len };
        char *line;

        for (; (line = next_line(&l)); free(line)) {
                char *parts[8];
                size_t n = 0;
                const char *err = NULL;

                /* Only headers: with a table name, "show table NAME" would
                 * list entries below them, which we never ask for. */
                if (strncmp(line, "# table:", 8) != 0)
                        continue;
                for (char *p = line + 2, *save = NULL, *tok; n < ELEMENTSOF(parts) && (tok = strtok_r(p, ",", &save));
                     p = NULL)
                        parts[n++] = tok;

                const char *name = table_field(parts, n, "table");
                const char *type = table_field(parts, n, "type");
                const char *size = table_field(parts, n, "size");
                const char *used = table_field(parts, n, "used");
                HaproxyTable t = {};
                if (!name || !*name || !type || !size || !used)
                        err = "show table: a header lacks table, type, size or used";
                else if (safe_atou64(size, &t.size) < 0 || safe_atou64(used, &t.used) < 0)
                        err = "show table: size or used is not a number";
                else if (tables.n_tables >= HAPROXY_TABLES_MAX)
                        err = "show table: more tables than the parser keeps";
                if (err) {
                        free(line);
                        if (ret_error)
                                *ret_error = err;
                        return -EBADMSG;
                }
                t.name = strdup_bounded(name);
                t.type = strdup_bounded(type);
                HaproxyTable *a = reallocarray(tables.tables, tables.n_tables + 1, sizeof *a);
                if (!a || !t.name || !t.type) {
                        free(t.name);
                        free(t.type);
                        free(line);
                        return -ENOMEM;
                }
                tables.tables = a;
                tables.tables[tables.n_tables++] = t;
        }
        *ret = tables;
        tables = (HaproxyTables) {};
        return 0;
}

int haproxy_split_sections(const char *text, size_t len, HaproxySection *sections, size_t n_sections) {
        const char *p = text, *end = text + len;

        for (size_t i = 0; i < n_sections; i++) {
                const char *start = p;
                /* The section ends at the first empty line: "\n\n" (or the
                 * answer starts with "\n": an empty section). */
                for (;;) {
                        const char *nl = memchr(p, '\n', (size_t) (end - p));
                        if (!nl)
                                return -EBADMSG;
                        bool empty = nl == p || (nl == p + 1 && *p == '\r');
                        p = nl + 1;
                        if (empty)
                                break;
                }
                sections[i] = (HaproxySection) { start, (size_t) (p - start) };
        }
        return 0;
}
