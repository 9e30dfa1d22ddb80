/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The postgres probe against real PostgreSQL servers started by the test:
 * a healthy primary with the three RuPost databases, a wrong password, a
 * missing database, a stopped server, one that never answers, connection
 * headroom, a standby in recovery, a server shutting down, and the
 * configuration errors. Skipped (77) when PostgreSQL is not installed. */

#include "pg-server.h"
#include "probe-run.h"

static PgServer primary;
static char workdir[64], password_file[128], wrong_password_file[128];

static void write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs(content, f);
        ASSERT_TRUE(fclose(f) == 0);
}

static void start_server(PgServer *s, bool standby) {
        int r = pg_server_start(s, NULL, standby);
        if (r == -ENOENT) {
                fprintf(stderr, "PostgreSQL is not installed, skipping\n");
                exit(77);
        }
        ASSERT_OK(r);
}

static void setup(void) {
        if (primary.running)
                return;
        snprintf(workdir, sizeof workdir, "/tmp/rupost-test-pgprobe-XXXXXX");
        ASSERT_TRUE(mkdtemp(workdir));
        snprintf(password_file, sizeof password_file, "%s/password", workdir);
        write_file(password_file, PG_SERVER_PASSWORD "\n");
        snprintf(wrong_password_file, sizeof wrong_password_file, "%s/wrong", workdir);
        write_file(wrong_password_file, "wrong-Pg-77\n");

        start_server(&primary, false);
        ASSERT_EQ(pg_server_sql(&primary, "postgres", "CREATE DATABASE rupost"), 0);
        ASSERT_EQ(pg_server_sql(&primary, "postgres", "CREATE DATABASE rupost_data"), 0);
        ASSERT_EQ(pg_server_sql(&primary, "postgres", "CREATE DATABASE rupost_logs"), 0);
}

static Probe *run_probe(ProbeRun *run, uint16_t port, const char *extra) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: db\n"
                 "    type: postgres\n"
                 "    interval: 1h\n"
                 "    host: 127.0.0.1\n"
                 "    port: %u\n"
                 "    user: rupost\n"
                 "    sslmode: disable\n"
                 "%s",
                 port, extra);
        probe_run_load(run, yaml);
        Probe *p = probe_run_once(run, 10 * USEC_PER_SEC);
        /* Whatever happened, the password is not in the reason. */
        ASSERT_NOT_CONTAINS(p->last.reason, PG_SERVER_PASSWORD);
        ASSERT_NOT_CONTAINS(p->last.reason, "wrong-Pg-77");
        return p;
}

static char *password_key(const char *file, const char *more) {
        char *s = NULL;
        ASSERT_TRUE(asprintf(&s, "    password_file: %s\n%s", file, more ?: "") >= 0);
        return s;
}

TEST(healthy_primary) {
        _cleanup_free_ char *k = NULL;
        ProbeRun run = {};

        setup();
        k = password_key(password_file, NULL);
        Probe *p = run_probe(&run, primary.port, k);
        ASSERT_EQ(p->last.status, PROBE_OK);
        ASSERT_CONTAINS(p->last.reason, "primary; rupost, rupost_data, rupost_logs answer");
        ASSERT_CONTAINS(p->last.reason, "/20 connections");
        for (const char *const *d = (const char *const[]) { "rupost", "rupost_data", "rupost_logs", NULL }; *d; d++) {
                char label[64];
                snprintf(label, sizeof label, "database=\"%s\"", *d);
                ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_up", label) == 1);
                double c = probe_sample_value(p, "rupost_postgres_connect_duration_seconds", label);
                double q = probe_sample_value(p, "rupost_postgres_query_duration_seconds", label);
                ASSERT_TRUE(c > 0 && c < 2);
                ASSERT_TRUE(q > 0 && q < 2);
        }
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_server_version_num", NULL) >= 90600);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_in_recovery", NULL) == 0);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_max_connections", NULL) == 20);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_connections", NULL) >= 1);
        /* The same clock on both ends: the estimate is within the round trip. */
        double offset = probe_sample_value(p, "rupost_time_offset_seconds", "source=\"postgres\"");
        fprintf(stderr, "offset %.6fs\n", offset);
        ASSERT_TRUE(fabs(offset) < 0.05);
        probe_run_done(&run);
}

TEST(wrong_password) {
        _cleanup_free_ char *k = NULL;
        ProbeRun run = {};

        setup();
        k = password_key(wrong_password_file, NULL);
        Probe *p = run_probe(&run, primary.port, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "all 3 databases failed: password authentication failed for user \"rupost\": "
                                        "check the password in ");
        ASSERT_CONTAINS(p->last.reason, wrong_password_file);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_up", "database=\"rupost\"") == 0);
        probe_run_done(&run);
}

TEST(missing_database) {
        _cleanup_free_ char *k = NULL;
        ProbeRun run = {};

        setup();
        k = password_key(password_file, "    databases: [rupost, rupost_data, rupost_archive]\n");
        Probe *p = run_probe(&run, primary.port, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_STREQ(p->last.reason, "rupost_archive: database \"rupost_archive\" does not exist: create it or remove "
                                     "it from 'databases'");
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_up", "database=\"rupost_archive\"") == 0);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_up", "database=\"rupost\"") == 1);
        probe_run_done(&run);
}

TEST(stopped_server) {
        _cleanup_free_ char *k = NULL;
        ProbeRun run = {};
        char expect[128];

        setup();
        uint16_t port = test_free_port();
        k = password_key(password_file, NULL);
        Probe *p = run_probe(&run, port, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        snprintf(expect, sizeof expect, "PostgreSQL at 127.0.0.1:%u does not answer: Connection refused", port);
        ASSERT_STREQ(p->last.reason, expect);
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_up", "database=\"rupost_logs\"") == 0);
        probe_run_done(&run);
}

TEST(black_hole_costs_the_deadline) {
        _cleanup_free_ char *k = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        ProbeRun run = {};

        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 16));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &len));

        k = password_key(password_file, "    timeout: 500ms\n");
        setup();
        Probe *p = run_probe(&run, ntohs(sa.sin_port), k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_STREQ(p->last.reason, "no answer within 500ms while connecting to PostgreSQL");
        ASSERT_TRUE(p->last.duration >= 500 * USEC_PER_MSEC && p->last.duration < 700 * USEC_PER_MSEC);
        probe_run_done(&run);
        close(fd);
}

TEST(connection_headroom) {
        _cleanup_free_ char *k = NULL;
        ProbeRun run = {};

        setup();
        /* The server's own processes and ours fill a few of its 20 slots. */
        k = password_key(password_file, "    connections_warning: 10\n    connections_critical: 99\n");
        Probe *p = run_probe(&run, primary.port, k);
        ASSERT_EQ(p->last.status, PROBE_WARNING);
        ASSERT_CONTAINS(p->last.reason, "of max_connections 20 in use");
        ASSERT_CONTAINS(p->last.reason, "warning at 10%): find who holds them");
        probe_run_done(&run);
}

TEST(standby_in_recovery) {
        _cleanup_free_ char *critical = NULL, *warning = NULL;
        PgServer standby;
        ProbeRun run = {};

        setup();
        start_server(&standby, true);
        critical = password_key(password_file, "    databases: [postgres]\n");
        Probe *p = run_probe(&run, standby.port, critical);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "is a standby in recovery, read-only: the agent needs the read-write primary");
        ASSERT_TRUE(probe_sample_value(p, "rupost_postgres_in_recovery", NULL) == 1);
        probe_run_done(&run);

        warning = password_key(password_file, "    databases: [postgres]\n    in_recovery: warning\n");
        p = run_probe(&run, standby.port, warning);
        ASSERT_EQ(p->last.status, PROBE_WARNING);
        probe_run_done(&run);
        pg_server_remove(&standby);
}

TEST(shutting_down_rejects) {
        _cleanup_free_ char *k = NULL;
        PgServer s;
        ProbeRun run = {};
        char conninfo[256], expect[160];

        setup();
        start_server(&s, false);
        /* A smart shutdown waits for this session; meanwhile new ones are refused. */
        snprintf(conninfo, sizeof conninfo, "hostaddr=127.0.0.1 port=%u dbname=postgres user=rupost password=%s",
                 s.port, PG_SERVER_PASSWORD);
        PGconn *held = PQconnectdb(conninfo);
        ASSERT_EQ(PQstatus(held), CONNECTION_OK);
        pg_server_signal(&s, SIGTERM, false);
        usleep(300 * 1000);

        k = password_key(password_file, "    databases: [postgres]\n");
        Probe *p = run_probe(&run, s.port, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        snprintf(expect, sizeof expect, "PostgreSQL at 127.0.0.1:%u is rejecting connections: the database system is "
                                        "shutting down", s.port);
        ASSERT_STREQ(p->last.reason, expect);
        probe_run_done(&run);

        PQfinish(held);
        ASSERT_TRUE(waitpid(s.pid, NULL, 0) == s.pid);
        s.running = false;
        pg_server_remove(&s);
}

TEST(config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } cases[] = {
                { "    host: db.example.org\n    user: u\n", "host: 'db.example.org' is not a numeric IPv4 or IPv6" },
                { "    host: 10.0.0.1\n    user: u\n    sslmode: always\n", "sslmode: 'always' is not one of" },
                { "    host: 10.0.0.1\n    user: u\n    in_recovery: ignore\n",
                  "in_recovery: 'ignore' is neither warning nor critical" },
                { "    host: 10.0.0.1\n    user: u\n    databases: [a, a]\n", "databases: 'a' is listed twice" },
                { "    host: 10.0.0.1\n    user: u\n    connections_warning: 90\n    connections_critical: 80\n",
                  "connections_warning: 90% is above connections_critical (80%)" },
                { "    host: 10.0.0.1\n    user: u\n    connections_critical: 101\n", "connections_critical" },
                { "    host: 10.0.0.1\n    user: u\n    password_file: /nonexistent/pw\n",
                  "password_file: cannot use '/nonexistent/pw': No such file or directory" },
                { "    host: 10.0.0.1\n    user: u\n    port: 0\n", "port" },
                { "    host: 10.0.0.1\n", "user" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char yaml[1024];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: db\n    type: postgres\n%s", cases[i].keys);
                test_config_load_fails(yaml, cases[i].error);
        }
}

TEST(password_file_rules) {
        static const struct {
                const char *content;
                const char *error;
        } cases[] = {
                { "", "the file is empty" },
                { "\n", "the file is empty" },
                { "two\nlines\n", "the password must be a single line of text" },
        };
        char path[160];

        snprintf(path, sizeof path, "/tmp/rupost-test-pw-%d", (int) getpid());
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strv_free_ char **errors = NULL;
                Config *config = NULL;
                char yaml[1024];

                write_file(path, cases[i].content);
                snprintf(yaml, sizeof yaml,
                         "probes:\n  - name: db\n    type: postgres\n    host: 10.0.0.1\n    user: u\n"
                         "    password_file: %s\n",
                         path);
                ASSERT_ERROR(config_load_string("t.yaml", yaml, strlen(yaml), &config, &errors), EINVAL);
                ASSERT_CONTAINS(errors[0], cases[i].error);
                /* The content is never echoed. */
                ASSERT_NOT_CONTAINS(errors[0], "lines");
        }
        unlink(path);
}

static void cleanup(void) {
        pg_server_remove(&primary);
        if (workdir[0]) {
                unlink(password_file);
                unlink(wrong_password_file);
                rmdir(workdir);
        }
}

int main(void) {
        (void) signal(SIGPIPE, SIG_IGN);
        atexit(cleanup);
        return tests_run();
}
