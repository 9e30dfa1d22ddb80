/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <string.h>

#include "lib/macro.h"
#include "lib/parse-util.h"
#include "memcached-stats.h"

static const char *const stat_table[_MEMCACHED_STAT_MAX] = {
        [MEMCACHED_STAT_TIME] = "time",
        [MEMCACHED_STAT_UPTIME] = "uptime",
        [MEMCACHED_STAT_CURR_CONNECTIONS] = "curr_connections",
        [MEMCACHED_STAT_MAX_CONNECTIONS] = "max_connections",
        [MEMCACHED_STAT_ACCEPTING_CONNS] = "accepting_conns",
        [MEMCACHED_STAT_REJECTED_CONNECTIONS] = "rejected_connections",
        [MEMCACHED_STAT_LISTEN_DISABLED_NUM] = "listen_disabled_num",
        [MEMCACHED_STAT_EVICTIONS] = "evictions",
        [MEMCACHED_STAT_BYTES] = "bytes",
        [MEMCACHED_STAT_LIMIT_MAXBYTES] = "limit_maxbytes",
        [MEMCACHED_STAT_CMD_SET] = "cmd_set",
        [MEMCACHED_STAT_GET_HITS] = "get_hits",
        [MEMCACHED_STAT_GET_MISSES] = "get_misses",
};

const char *memcached_stat_to_string(MemcachedStat s) {
        if (s < 0 || s >= _MEMCACHED_STAT_MAX)
                return NULL;
        return stat_table[s];
}

/* Printable copy of a line for messages. */
static void quote_line(char *dst, size_t size, const char *line, size_t n) {
        size_t k = 0;

        for (size_t i = 0; i < n && k + 1 < size; i++)
                dst[k++] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
        dst[k] = 0;
}

static int bad(MemcachedReply *r, const char *what, const char *line, size_t n) {
        char q[96];

        quote_line(q, sizeof q, line, MIN(n, (size_t) 80));
        snprintf(r->error, sizeof r->error, "%s: '%s'", what, q);
        return -EBADMSG;
}

static bool starts_with(const char *line, size_t n, const char *prefix) {
        size_t l = strlen(prefix);
        return n >= l && memcmp(line, prefix, l) == 0;
}

/* One line ending in \r\n starting at *pos; returns its length without the
 * terminator, or -EAGAIN. */
static int next_line(const char *buf, size_t len, size_t *pos, const char **ret) {
        const char *start = buf + *pos;
        const char *nl = memchr(start, '\n', len - *pos);

        if (!nl)
                return -EAGAIN;
        size_t n = (size_t) (nl - start);
        *pos += n + 1;
        if (n > 0 && start[n - 1] == '\r')
                n--;
        *ret = start;
        return (int) MIN(n, (size_t) INT32_MAX);
}

static int parse_stat_line(MemcachedReply *r, const char *line, size_t n) {
        char name[64], value[64];
        const char *sp1, *sp2;

        /* STAT <name> <value> */
        sp1 = memchr(line + 5, ' ', n - 5);
        if (!sp1)
                return bad(r, "STAT line without a value", line, n);
        size_t nl = (size_t) (sp1 - (line + 5)), vl = n - 5 - nl - 1;
        sp2 = memchr(sp1 + 1, ' ', vl);
        if (sp2) /* values never hold spaces, but some builds add fields: ignore the rest */
                vl = (size_t) (sp2 - (sp1 + 1));
        if (nl == 0 || nl >= sizeof name || vl >= sizeof value)
                return 0; /* a stat we do not read anyway */
        memcpy(name, line + 5, nl);
        name[nl] = 0;
        memcpy(value, sp1 + 1, vl);
        value[vl] = 0;

        if (streq(name, "version")) {
                snprintf(r->version, sizeof r->version, "%s", value);
                return 0;
        }
        for (MemcachedStat s = 0; s < _MEMCACHED_STAT_MAX; s++)
                if (streq(name, stat_table[s])) {
                        uint64_t v;
                        if (safe_atou64(value, &v) < 0)
                                return bad(r, "STAT value is not a number", line, n);
                        r->stats[s] = v;
                        r->have[s] = true;
                }
        return 0;
}

int memcached_reply_parse(const char *buf, size_t len, const char *key, MemcachedReply *ret) {
        MemcachedReply r = {};
        size_t pos = 0;
        const char *line;
        int n;

        if (len > MEMCACHED_REPLY_MAX)
                return -E2BIG;

        /* stats */
        for (;;) {
                n = next_line(buf, len, &pos, &line);
                if (n < 0)
                        goto incomplete;
                if ((size_t) n == 3 && memcmp(line, "END", 3) == 0)
                        break;
                if (!starts_with(line, (size_t) n, "STAT ")) {
                        *ret = r;
                        return bad(ret, "the stats reply has a line that is not STAT or END", line, (size_t) n);
                }
                if (parse_stat_line(&r, line, (size_t) n) < 0) {
                        *ret = r;
                        return -EBADMSG;
                }
        }

        /* set: one line, STORED or an error */
        n = next_line(buf, len, &pos, &line);
        if (n < 0)
                goto incomplete;
        quote_line(r.set_result, sizeof r.set_result, line, (size_t) n);

        /* get: VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n, or END */
        n = next_line(buf, len, &pos, &line);
        if (n < 0)
                goto incomplete;
        if ((size_t) n == 3 && memcmp(line, "END", 3) == 0) {
                *ret = r;
                return 0;
        }
        char prefix[300];
        snprintf(prefix, sizeof prefix, "VALUE %s ", key);
        if (!starts_with(line, (size_t) n, prefix)) {
                *ret = r;
                return bad(ret, "the get reply is not VALUE or END", line, (size_t) n);
        }
        /* <flags> <bytes> [<cas>] */
        char rest[64];
        size_t rl = (size_t) n - strlen(prefix);
        if (rl >= sizeof rest) {
                *ret = r;
                return bad(ret, "the VALUE line is too long", line, (size_t) n);
        }
        memcpy(rest, line + strlen(prefix), rl);
        rest[rl] = 0;
        char *sp = strchr(rest, ' ');
        uint64_t bytes;
        if (!sp) {
                *ret = r;
                return bad(ret, "the VALUE line has no length", line, (size_t) n);
        }
        char *end = strchr(sp + 1, ' ');
        if (end)
                *end = 0;
        if (safe_atou64(sp + 1, &bytes) < 0) {
                *ret = r;
                return bad(ret, "the VALUE line has no length", line, (size_t) n);
        }
        if (bytes > MEMCACHED_VALUE_MAX) {
                *ret = r;
                return bad(ret, "the value is longer than the probe ever stores", line, (size_t) n);
        }
        if (len - pos < bytes + 2)
                goto incomplete;
        if (memcmp(buf + pos + bytes, "\r\n", 2) != 0) {
                *ret = r;
                return bad(ret, "the value is not followed by CRLF", buf + pos, (size_t) bytes + 2);
        }
        memcpy(r.value, buf + pos, bytes);
        r.value[bytes] = 0;
        r.value_len = bytes;
        r.got_value = true;
        pos += bytes + 2;
        n = next_line(buf, len, &pos, &line);
        if (n < 0)
                goto incomplete;
        if ((size_t) n != 3 || memcmp(line, "END", 3) != 0) {
                *ret = r;
                return bad(ret, "the get reply does not end with END", line, (size_t) n);
        }
        *ret = r;
        return 0;

incomplete:
        return -EAGAIN;
}

static bool parse_component(const char **p, unsigned long *ret) {
        unsigned long v = 0;
        const char *s = *p;

        if (*s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++) {
                if (v > 100000000UL)
                        return false;
                v = v * 10 + (unsigned long) (*s - '0');
        }
        *ret = v;
        *p = s;
        return true;
}

int memcached_version_compare(const char *a, const char *b) {
        for (;;) {
                unsigned long x = 0, y = 0;
                bool ha = *a != 0, hb = *b != 0;

                if (!ha && !hb)
                        return 0;
                if (ha && !parse_component(&a, &x))
                        return -2;
                if (hb && !parse_component(&b, &y))
                        return 2;
                if (x != y)
                        return x < y ? -1 : 1;
                /* "1.6.21-rc1": whatever follows the numbers does not count */
                if (*a == '.')
                        a++;
                else
                        a += strlen(a);
                if (*b == '.')
                        b++;
                else
                        b += strlen(b);
        }
}
