/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* What HAProxy's runtime API answers to
 *
 *   show info;show stat;show peers;show table
 *
 * HAProxy ends the output of each command with an empty line and makes sure
 * no command prints one itself, so the answer splits into one section per
 * command. Pure parsers, for the probe, the unit tests and the fuzzer. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/macro.h"

/* Bounds on what is kept from one answer; HAProxy's configuration is
 * finite, but a parser of outside input must not grow without limit. */
#define HAPROXY_ROWS_MAX 4096
#define HAPROXY_PEERS_MAX 256
#define HAPROXY_TABLES_MAX 256
#define HAPROXY_FIELD_MAX 256

typedef enum HaproxyState {
        HAPROXY_STATE_UP,
        HAPROXY_STATE_DOWN,
        HAPROXY_STATE_MAINT,
        HAPROXY_STATE_DRAIN,
        HAPROXY_STATE_NOLB,
        _HAPROXY_STATE_MAX,
        _HAPROXY_STATE_INVALID = -EINVAL,
} HaproxyState;

const char *haproxy_state_to_string(HaproxyState s) _pure_;
/* A server's status column: "UP", "UP 1/3" (going down), "DOWN 1/2" (going
 * up), "MAINT (via b/s)", "DRAIN (agent)", "NOLB", "no check" (counts as UP). */
HaproxyState haproxy_state_from_status(const char *status) _pure_;

typedef struct HaproxyInfo {
        char *name;    /* "HAProxy" */
        char *version;
        char *node;
        uint64_t pid;
        uint64_t curr_conns;
        bool have_curr_conns;
        uint64_t maxconn;
} HaproxyInfo;

void haproxy_info_done(HaproxyInfo *i);
/* "Key: value" lines; requires Name and Version. */
int haproxy_info_parse(const char *text, size_t len, HaproxyInfo *ret, const char **ret_error);

typedef enum HaproxyRowType {
        HAPROXY_FRONTEND,
        HAPROXY_BACKEND,
        HAPROXY_SERVER,
        HAPROXY_LISTENER,
} HaproxyRowType;

typedef struct HaproxyStatRow {
        char *proxy;
        char *server;  /* svname: FRONTEND, BACKEND or the server's name */
        char *status;  /* as printed */
        HaproxyRowType type;
        uint64_t act;  /* backends: active servers up; servers: 1 if active */
        bool backup;   /* servers: a backup server */
} HaproxyStatRow;

typedef struct HaproxyStat {
        HaproxyStatRow *rows;
        size_t n_rows;
} HaproxyStat;

void haproxy_stat_done(HaproxyStat *s);
/* The CSV of "show stat": a header "# pxname,svname,..." naming the
 * columns, then one row per frontend, backend, server and listener. Columns
 * are found by name, not position. */
int haproxy_stat_parse(const char *text, size_t len, HaproxyStat *ret, const char **ret_error);

typedef struct HaproxyPeer {
        char *section; /* the peers section: "id=" of its header line */
        char *name;
        char *addr;    /* "10.0.0.2:10000" */
        char *status;  /* ESTA, CONN, HSHK, RETR, PROT, VERS, NAME, UNKN, NONE */
        bool local;
} HaproxyPeer;

typedef struct HaproxyPeers {
        HaproxyPeer *peers;
        size_t n_peers;
} HaproxyPeers;

void haproxy_peers_done(HaproxyPeers *p);
/* "show peers": a header line per peers section ("0x...: [date] id=NAME
 * ...") and an indented "0x...: id=NAME(local|remote,...) addr=A:P
 * last_status=S" line per peer (older versions: "status=S"); the lines in
 * between (flags, shared tables) are skipped. */
int haproxy_peers_parse(const char *text, size_t len, HaproxyPeers *ret, const char **ret_error);

typedef struct HaproxyTable {
        char *name;
        char *type;
        uint64_t size;
        uint64_t used;
} HaproxyTable;

typedef struct HaproxyTables {
        HaproxyTable *tables;
        size_t n_tables;
} HaproxyTables;

void haproxy_tables_done(HaproxyTables *t);
/* "show table": "# table: NAME, type: ip, size:N, used:N" per table. */
int haproxy_tables_parse(const char *text, size_t len, HaproxyTables *ret, const char **ret_error);

/* Splits the answer to the four commands at the empty lines that end each
 * command's output. The pieces point into text. Returns -EBADMSG when fewer
 * than four sections arrived (HAProxy stopped answering midway). */
typedef struct HaproxySection {
        const char *text;
        size_t len;
} HaproxySection;
int haproxy_split_sections(const char *text, size_t len, HaproxySection *sections, size_t n_sections);
