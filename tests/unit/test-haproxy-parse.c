/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The runtime API parsers on a real answer of HAProxy 2.6 (captured from a
 * node with two peers and three backends), on the forms older and newer
 * versions print, and on broken input. */

#include <sys/stat.h>

#include "probes/haproxy-parse.h"
#include "tests.h"

static char *read_sample(const char *name, size_t *ret_len) {
        const char *root = getenv("TEST_SOURCE_ROOT");
        char path[1024];
        struct stat st;

        ASSERT_TRUE(root);
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz-haproxy/%s", root, name);
        FILE *f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_OK(fstat(fileno(f), &st));
        char *data = malloc((size_t) st.st_size + 1);
        ASSERT_TRUE(data);
        *ret_len = fread(data, 1, (size_t) st.st_size, f);
        data[*ret_len] = 0;
        fclose(f);
        return data;
}

TEST(real_answer_of_haproxy_2_6) {
        size_t len;
        _cleanup_free_ char *text = read_sample("node1-2.6.12.txt", &len);
        HaproxySection s[4];
        _cleanup_(haproxy_info_done) HaproxyInfo info = {};
        _cleanup_(haproxy_stat_done) HaproxyStat stat = {};
        _cleanup_(haproxy_peers_done) HaproxyPeers peers = {};
        _cleanup_(haproxy_tables_done) HaproxyTables tables = {};
        const char *error = NULL;

        ASSERT_OK(haproxy_split_sections(text, len, s, 4));
        ASSERT_TRUE(strncmp(s[0].text, "Name: HAProxy\n", 14) == 0);
        ASSERT_TRUE(strncmp(s[1].text, "# pxname,svname,", 16) == 0);
        ASSERT_TRUE(strncmp(s[2].text, "0x", 2) == 0);
        ASSERT_TRUE(strncmp(s[3].text, "# table: https", 14) == 0);

        ASSERT_OK(haproxy_info_parse(s[0].text, s[0].len, &info, &error));
        ASSERT_STREQ(info.name, "HAProxy");
        ASSERT_STREQ(info.version, "2.6.12-1+deb12u4");
        ASSERT_STREQ(info.node, "node1");
        ASSERT_EQ(info.pid, 124);
        ASSERT_TRUE(info.have_curr_conns);
        ASSERT_EQ(info.curr_conns, 0);
        ASSERT_EQ(info.maxconn, 9972);

        ASSERT_OK(haproxy_stat_parse(s[1].text, s[1].len, &stat, &error));
        ASSERT_EQ(stat.n_rows, 12); /* 3 frontends, 3 backends, 6 servers */
        ASSERT_STREQ(stat.rows[0].proxy, "smtp");
        ASSERT_STREQ(stat.rows[0].server, "FRONTEND");
        ASSERT_EQ(stat.rows[0].type, HAPROXY_FRONTEND);
        ASSERT_STREQ(stat.rows[0].status, "OPEN");
        ASSERT_STREQ(stat.rows[3].server, "node1");
        ASSERT_EQ(stat.rows[3].type, HAPROXY_SERVER);
        ASSERT_STREQ(stat.rows[3].status, "UP");
        ASSERT_FALSE(stat.rows[3].backup);
        ASSERT_STREQ(stat.rows[4].server, "node2");
        ASSERT_TRUE(stat.rows[4].backup);
        ASSERT_EQ(stat.rows[5].type, HAPROXY_BACKEND);
        ASSERT_EQ(stat.rows[5].act, 1);

        ASSERT_OK(haproxy_peers_parse(s[2].text, s[2].len, &peers, &error));
        ASSERT_EQ(peers.n_peers, 2);
        ASSERT_STREQ(peers.peers[0].section, "rupost");
        ASSERT_STREQ(peers.peers[0].name, "node2");
        ASSERT_STREQ(peers.peers[0].addr, "10.231.0.12:10000");
        ASSERT_STREQ(peers.peers[0].status, "ESTA");
        ASSERT_FALSE(peers.peers[0].local);
        ASSERT_STREQ(peers.peers[1].name, "node1");
        ASSERT_TRUE(peers.peers[1].local);
        ASSERT_STREQ(peers.peers[1].status, "NONE");

        ASSERT_OK(haproxy_tables_parse(s[3].text, s[3].len, &tables, &error));
        ASSERT_EQ(tables.n_tables, 3);
        ASSERT_STREQ(tables.tables[0].name, "https");
        ASSERT_STREQ(tables.tables[0].type, "ip");
        ASSERT_EQ(tables.tables[0].size, 102400);
        ASSERT_EQ(tables.tables[0].used, 0);
}

TEST(states) {
        static const struct {
                const char *status;
                HaproxyState state;
        } cases[] = {
                { "UP", HAPROXY_STATE_UP },
                { "UP 1/3", HAPROXY_STATE_UP },
                { "no check", HAPROXY_STATE_UP },
                { "DOWN", HAPROXY_STATE_DOWN },
                { "DOWN 1/2", HAPROXY_STATE_DOWN },
                { "MAINT", HAPROXY_STATE_MAINT },
                { "MAINT (via smtp/node1)", HAPROXY_STATE_MAINT },
                { "MAINT (resolution)", HAPROXY_STATE_MAINT },
                { "DRAIN", HAPROXY_STATE_DRAIN },
                { "DRAIN (agent)", HAPROXY_STATE_DRAIN },
                { "NOLB", HAPROXY_STATE_NOLB },
                { "OPEN", _HAPROXY_STATE_INVALID },
                { "UPPER", _HAPROXY_STATE_INVALID },
                { "", _HAPROXY_STATE_INVALID },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                fprintf(stderr, "'%s'\n", cases[i].status);
                ASSERT_EQ(haproxy_state_from_status(cases[i].status), cases[i].state);
        }
        ASSERT_STREQ(haproxy_state_to_string(HAPROXY_STATE_NOLB), "NOLB");
}

TEST(stat_columns_by_name) {
        /* Columns in another order, without type (1.x), a quoted field with a
         * comma and a doubled quote: status is found by its header name. */
        static const char csv[] =
                "# svname,status,pxname,act,bck,last_chk\n"
                "FRONTEND,OPEN,web,,,\n"
                "a,UP,web,1,0,\"Layer7 check passed: \"\"OK\"\", 200\"\n"
                "b,DOWN 1/2,web,1,0,\"Layer4 connection problem, info: \"\"Connection refused\"\"\"\n"
                "c,MAINT,web,0,1,\n"
                "BACKEND,UP,web,1,1,\n";
        _cleanup_(haproxy_stat_done) HaproxyStat stat = {};
        const char *error = NULL;

        ASSERT_OK(haproxy_stat_parse(csv, strlen(csv), &stat, &error));
        ASSERT_EQ(stat.n_rows, 5);
        ASSERT_EQ(stat.rows[0].type, HAPROXY_FRONTEND);
        ASSERT_STREQ(stat.rows[1].proxy, "web");
        ASSERT_STREQ(stat.rows[1].server, "a");
        ASSERT_EQ(stat.rows[1].type, HAPROXY_SERVER);
        ASSERT_STREQ(stat.rows[2].status, "DOWN 1/2");
        ASSERT_TRUE(stat.rows[3].backup);
        ASSERT_EQ(stat.rows[4].type, HAPROXY_BACKEND);
}

TEST(older_peers_format) {
        /* HAProxy 2.0-2.2: "status=" instead of "last_status=", no
         * remote/active annotation on remote peers. */
        static const char text[] =
                "0x55deb0224320: [15/Apr/2019:11:28:01] id=sharedlb state=0 flags=0x3 resync_timeout=<PAST> task_calls=23\n"
                "  0x55deb022b540: id=hostA(local) addr=127.0.0.10:10000 status=NONE reconnect=<NEVER> confirm=0\n"
                "    flags=0x0\n"
                "    shared tables:\n"
                "      0x55deb022b540 local_id=1 remote_id=1 flags=0x0 remote_data=0x65\n"
                "  0x55deb022b541: id=hostB addr=127.0.0.11:10000 status=CONN reconnect=2s confirm=0\n"
                "    flags=0x20000200 appctx:0x55deb028fba0 st0=7 st1=0 task_calls=14 state=EST\n";
        _cleanup_(haproxy_peers_done) HaproxyPeers peers = {};
        const char *error = NULL;

        ASSERT_OK(haproxy_peers_parse(text, strlen(text), &peers, &error));
        ASSERT_EQ(peers.n_peers, 2);
        ASSERT_STREQ(peers.peers[0].section, "sharedlb");
        ASSERT_TRUE(peers.peers[0].local);
        ASSERT_STREQ(peers.peers[1].name, "hostB");
        ASSERT_FALSE(peers.peers[1].local);
        ASSERT_STREQ(peers.peers[1].status, "CONN");
        ASSERT_STREQ(peers.peers[1].addr, "127.0.0.11:10000");
}

TEST(split_sections) {
        HaproxySection s[4];
        static const char ok[] = "Name: HAProxy\nVersion: 2.6\n\n# pxname,svname,status\n\n\n# table: t, type: ip, size:1, used:0\n\n";
        ASSERT_OK(haproxy_split_sections(ok, strlen(ok), s, 4));
        ASSERT_EQ(s[2].len, 1); /* show peers without peers: just the empty line */
        ASSERT_TRUE(strncmp(s[3].text, "# table: t", 10) == 0);

        /* HAProxy stopped after two commands. */
        static const char cut[] = "Name: HAProxy\nVersion: 2.6\n\n# pxname,svname,status\nx,y,UP\n";
        ASSERT_ERROR(haproxy_split_sections(cut, strlen(cut), s, 4), EBADMSG);
}

typedef struct Bad {
        const char *name;
        int (*parse)(const char *, size_t, const char **);
        const char *text;
        const char *error;
} Bad;

static int info(const char *t, size_t l, const char **e) {
        HaproxyInfo i = {};
        int r = haproxy_info_parse(t, l, &i, e);
        haproxy_info_done(&i);
        return r;
}
static int stat_(const char *t, size_t l, const char **e) {
        HaproxyStat s = {};
        int r = haproxy_stat_parse(t, l, &s, e);
        haproxy_stat_done(&s);
        return r;
}
static int peers_(const char *t, size_t l, const char **e) {
        HaproxyPeers p = {};
        int r = haproxy_peers_parse(t, l, &p, e);
        haproxy_peers_done(&p);
        return r;
}
static int tables_(const char *t, size_t l, const char **e) {
        HaproxyTables x = {};
        int r = haproxy_tables_parse(t, l, &x, e);
        haproxy_tables_done(&x);
        return r;
}

TEST(malformed) {
        static const Bad cases[] = {
                { "info refused", info, "Permission denied.\n", "show info: the answer is not 'Key: value' lines" },
                { "info without version", info, "Name: HAProxy\nPid: 1\n", "no Name and Version" },
                { "info bad pid", info, "Name: HAProxy\nVersion: 2.6\nPid: x\n", "not a number" },
                { "stat empty", stat_, "", "the answer is empty" },
                { "stat without header", stat_, "smtp,FRONTEND,OPEN\n", "does not start with the header" },
                { "stat header without status", stat_, "# pxname,svname,scur\nx,y,1\n", "lacks pxname, svname or status" },
                { "stat short row", stat_, "# pxname,svname,status\nx,y\n", "fewer columns than the header" },
                { "stat open quote", stat_, "# pxname,svname,status\nx,\"y,UP\n", "fewer columns" },
                { "stat bad type", stat_, "# pxname,svname,status,type\nx,y,UP,7\n", "type is not 0, 1, 2 or 3" },
                { "peers line without status", peers_, "0x1: [x] id=p\n  0x2: id=a(remote) addr=1.2.3.4:10000\n", "lacks id=, addr= or status=" },
                { "peer before section", peers_, "  0x2: id=a(remote) addr=1.2.3.4:10000 last_status=ESTA\n", "before any section line" },
                { "table without size", tables_, "# table: t, type: ip, used:0\n", "lacks table, type, size or used" },
                { "table bad number", tables_, "# table: t, type: ip, size:10k, used:0\n", "not a number" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *error = NULL;
                fprintf(stderr, "case: %s\n", cases[i].name);
                ASSERT_ERROR(cases[i].parse(cases[i].text, strlen(cases[i].text), &error), EBADMSG);
                ASSERT_CONTAINS(error, cases[i].error);
        }
}

DEFINE_TEST_MAIN()
