/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The memcached text protocol (doc/protocol.txt in memcached), pure: the
 * reply to the pipelined `stats`, `set <key>` and `get <key>` the probe sends
 * in one write. No I/O here, so it is tested on bytes and fuzzed. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMCACHED_REPLY_MAX (64U * 1024U)
#define MEMCACHED_VALUE_MAX 64

typedef enum MemcachedStat {
        MEMCACHED_STAT_TIME,
        MEMCACHED_STAT_UPTIME,
        MEMCACHED_STAT_CURR_CONNECTIONS,
        MEMCACHED_STAT_MAX_CONNECTIONS,
        MEMCACHED_STAT_ACCEPTING_CONNS,
        MEMCACHED_STAT_REJECTED_CONNECTIONS,
        MEMCACHED_STAT_LISTEN_DISABLED_NUM,
        MEMCACHED_STAT_EVICTIONS,
        MEMCACHED_STAT_BYTES,
        MEMCACHED_STAT_LIMIT_MAXBYTES,
        MEMCACHED_STAT_CMD_SET,
        MEMCACHED_STAT_GET_HITS,
        MEMCACHED_STAT_GET_MISSES,
        _MEMCACHED_STAT_MAX,
        _MEMCACHED_STAT_INVALID = -EINVAL,
} MemcachedStat;

/* The name in the `stats` reply: "curr_connections". */
const char *memcached_stat_to_string(MemcachedStat s);

typedef struct MemcachedReply {
        char version[64];                  /* "" when the server did not say */
        uint64_t stats[_MEMCACHED_STAT_MAX];
        bool have[_MEMCACHED_STAT_MAX];
        char set_result[128];              /* "STORED", or the error line the server sent */
        bool got_value;                    /* get returned the key */
        char value[MEMCACHED_VALUE_MAX + 1];
        size_t value_len;
        char error[160];                   /* what was wrong, for -EBADMSG */
} MemcachedReply;

/* Parses the whole reply: STAT lines up to END, one line for the set, then
 * VALUE <key> <flags> <bytes> + data + END, or END alone for a miss. Returns
 * 0 when the reply is complete, -EAGAIN when more bytes are needed, -EBADMSG
 * when it is not what memcached sends (ret->error says how), -E2BIG past
 * MEMCACHED_REPLY_MAX. */
int memcached_reply_parse(const char *buf, size_t len, const char *key, MemcachedReply *ret);

/* Compares dotted versions numerically ("1.4.9" < "1.4.33"); a missing
 * component counts as 0. Returns <0, 0, >0; -2 sorts unparsable text first. */
int memcached_version_compare(const char *a, const char *b);
