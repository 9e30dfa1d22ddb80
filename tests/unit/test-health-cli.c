/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The rupost-health binary as an operator and a monitoring system use it:
 * against a control server run in a child process, checking the exit code,
 * the table and the JSON. */

#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "tests.h"

#include "build-config.h"
#include "cli-run.h"
#include "cluster-fixture.h"
#include "config.h"
#include "control.h"
#include "control.pb-c.h"
#include "lib/buf.h"
#include "lib/control-proto.h"
#include "manager.h"
#include "node.h"
#include "probe.h"

typedef struct ProbeSpec {
        const char *name;
        ProbeStatus status;
        ProbeStatus last_status;
        const char *reason;
        bool have_result;
} ProbeSpec;

typedef struct TestServer {
        pid_t pid;
        char dir[64];
        char path[128];
} TestServer;

/* The healing state the next server starts with, since an absolute time;
 * NULL: no healing section. The child inherits them. */
static const NodeState *server_node_state = NULL;
static usec_t server_node_since = 0;
/* The cluster section the next server starts with; NULL: none. */
static const ClusterConfig *server_cluster = NULL;

_Noreturn static void server_child(const char *path, const ProbeSpec *specs, size_t n, int ready_fd) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        Probe **probes = calloc(n + 1, sizeof *probes);
        Config config = { .node = (char *) "mail7" };
        char state_file[160];
        sd_event *e = NULL;
        Manager m = {};
        sigset_t ss;

        /* A failed assertion in the test must not leave a server behind. */
        ASSERT_OK(prctl(PR_SET_PDEATHSIG, SIGKILL));
        if (getppid() == 1)
                _exit(EXIT_FAILURE);

        ASSERT_TRUE(probes);
        for (size_t i = 0; i < n; i++) {
                Probe *p;

                ASSERT_OK(probe_new(probe_type_find("tcp"), specs[i].name, &p));
                p->status = specs[i].status;
                p->have_result = specs[i].have_result;
                if (specs[i].have_result) {
                        p->last.status = specs[i].last_status;
                        p->last.reason = specs[i].reason ? strdup(specs[i].reason) : NULL;
                        /* Hours ago, so that the AGE column reads the same however
                         * slowly the test runs. */
                        p->last.started_realtime = now(CLOCK_REALTIME) - 3 * USEC_PER_HOUR;
                        p->last.duration = 12 * USEC_PER_MSEC;
                }
                p->changed_realtime = now(CLOCK_REALTIME) - 60 * USEC_PER_SEC;
                p->n_runs = 5;
                p->n_timeouts = 1;
                probes[i] = p;
        }
        config.probes = probes;
        config.n_probes = n;

        ASSERT_OK(sigemptyset(&ss));
        ASSERT_OK(sigaddset(&ss, SIGTERM));
        ASSERT_OK(sigprocmask(SIG_BLOCK, &ss, NULL));
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL));
        m.event = e;
        m.config = &config;
        m.start_realtime = now(CLOCK_REALTIME) - 2 * USEC_PER_HOUR - 3 * USEC_PER_MINUTE;
        if (server_node_state) {
                snprintf(state_file, sizeof state_file, "%.*s/state", (int) (strrchr(path, '/') - path), path);
                config.healing = (HealingConfig) { .enabled = true, .max_attempts = 5, .state_file = state_file };
                ASSERT_OK(node_new_for_test(&m, &config.healing, server_node_state, server_node_since, &m.node));
        }

        if (server_cluster) {
                config.cluster = *server_cluster;
                ASSERT_OK(cluster_new(e, &config.cluster, config.node, &m.cluster));
        }

        if (control_server_new(&m, path, &s) < 0)
                _exit(10);
        ASSERT_EQ(write(ready_fd, "R", 1), 1);
        safe_close(ready_fd);

        ASSERT_OK(sd_event_loop(e));

        s = control_server_free(s);
        cluster_free(m.cluster);
        node_free(m.node);
        for (size_t i = 0; i < n; i++)
                probe_free(probes[i]);
        free(probes);
        sd_event_unref(e);
        exit(EXIT_SUCCESS);
}

static void test_dir_make(TestServer *t) {
        snprintf(t->dir, sizeof t->dir, "/tmp/test-health-XXXXXX");
        ASSERT_TRUE(mkdtemp(t->dir));
        snprintf(t->path, sizeof t->path, "%s/control.sock", t->dir);
}

static void server_start(TestServer *t, const ProbeSpec *specs, size_t n) {
        int pipefd[2];
        char c;

        test_dir_make(t);
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        t->pid = fork();
        ASSERT_TRUE(t->pid >= 0);
        if (t->pid == 0) {
                safe_close(pipefd[0]);
                server_child(t->path, specs, n, pipefd[1]);
        }
        safe_close(pipefd[1]);
        ASSERT_EQ(read(pipefd[0], &c, 1), 1); /* EOF here: the server failed to start */
        safe_close(pipefd[0]);
}

static void server_stop(TestServer *t) {
        char state[160];
        int status;

        ASSERT_OK(kill(t->pid, SIGTERM));
        ASSERT_EQ(waitpid(t->pid, &status, 0), t->pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        snprintf(state, sizeof state, "%s/state", t->dir);
        (void) unlink(state);
        ASSERT_OK(rmdir(t->dir));
}

static Run run_against(const ProbeSpec *specs, size_t n, const char *extra) {
        TestServer t;
        Run r;

        server_start(&t, specs, n);
        r = run_cli("--control-socket", t.path, extra ?: "--timeout=10s");
        server_stop(&t);
        return r;
}

#define OK(name) { name, PROBE_OK, PROBE_OK, "fine", true }
#define WARN(name) { name, PROBE_WARNING, PROBE_WARNING, "slow: 900ms", true }
#define CRIT(name) { name, PROBE_CRITICAL, PROBE_CRITICAL, "connection refused", true }
#define UNKN(name) { name, PROBE_UNKNOWN, PROBE_UNKNOWN, "could not run", true }

TEST(exit_ok) {
        static const ProbeSpec specs[] = { OK("smtp"), OK("imap") };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 0);
        ASSERT_STREQ(r.err, "");
        /* Header: node, agent version, uptime, overall status. */
        ASSERT_CONTAINS(r.out, "node mail7, rupost-agent " PROJECT_VERSION ", up 2h3m: ok\n");
        ASSERT_CONTAINS(r.out, "PROBE  TYPE  STATUS  AGE   DURATION  REASON\n");
        ASSERT_CONTAINS(r.out, "smtp   tcp   ok      3h0m  12ms      fine\n");
        ASSERT_CONTAINS(r.out, "imap   tcp   ok      3h0m  12ms      fine\n");
        /* Not a terminal: no color codes. */
        ASSERT_NOT_CONTAINS(r.out, "\033[");
}

/* A probe that could not run may hide a failure: it outranks a warning. */
TEST(exit_unknown_beats_warning) {
        static const ProbeSpec specs[] = { OK("smtp"), UNKN("ldap"), WARN("imap") };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.out, "up 2h3m: unknown\n");
        ASSERT_CONTAINS(r.out, "slow: 900ms");
}

TEST(exit_critical_beats_all) {
        static const ProbeSpec specs[] = { WARN("imap"), CRIT("smtp"), UNKN("ldap"), OK("pop3") };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 2);
        ASSERT_CONTAINS(r.out, ": critical\n");
        ASSERT_CONTAINS(r.out, "smtp   tcp   critical  3h0m  12ms      connection refused\n");
}

TEST(exit_unknown) {
        static const ProbeSpec specs[] = { OK("smtp"), UNKN("ldap") };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.out, ": unknown\n");
}

TEST(exit_no_probes) {
        _cleanup_(run_done) Run r = run_against(NULL, 0, NULL);

        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.out, "no probes configured");
}

TEST(hysteresis_and_first_run_shown) {
        static const ProbeSpec specs[] = {
                { "smtp", PROBE_OK, PROBE_CRITICAL, "connection refused", true },
                { "ldap", PROBE_UNKNOWN, 0, NULL, false },
        };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        /* Still ok for the node: the fall threshold has not been reached. */
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.out, "smtp   tcp   ok (last run: critical)  3h0m  12ms      connection refused\n");
        ASSERT_CONTAINS(r.out, "ldap   tcp   unknown                  -     -         no result yet\n");
}

TEST(reason_cannot_drive_the_terminal) {
        static const ProbeSpec specs[] = { { "smtp", PROBE_CRITICAL, PROBE_CRITICAL,
                                             "banner \033[2J\033]0;owned\007 here", true } };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 2);
        ASSERT_NOT_CONTAINS(r.out, "\033");
        ASSERT_NOT_CONTAINS(r.out, "\007");
        ASSERT_CONTAINS(r.out, "banner ?[2J?]0;owned? here");
}

static struct json_object *get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v))
                ASSERT_FAIL("JSON has no key \"%s\"", key);
        return v;
}

TEST(json_output) {
        static const ProbeSpec specs[] = {
                CRIT("smtp"),
                { "ldap", PROBE_UNKNOWN, 0, NULL, false },
        };
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), "--json");
        struct json_object *root, *probes, *p;
        double now_s = usec_to_seconds(now(CLOCK_REALTIME));

        ASSERT_EQ(r.exit_code, 2);
        root = json_tokener_parse(r.out);
        ASSERT_TRUE(root);

        ASSERT_STREQ(json_object_get_string(get(root, "source")), "agent");
        ASSERT_TRUE(get(root, "agent_error") == NULL);
        ASSERT_STREQ(json_object_get_string(get(root, "node")), "mail7");
        ASSERT_STREQ(json_object_get_string(get(root, "version")), PROJECT_VERSION);
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "critical");
        ASSERT_TRUE(fabs(now_s - 7380 - json_object_get_double(get(root, "start_time"))) < 10);

        probes = get(root, "probes");
        ASSERT_TRUE(json_object_is_type(probes, json_type_array));
        ASSERT_EQ(json_object_array_length(probes), 2);

        p = json_object_array_get_idx(probes, 0);
        ASSERT_STREQ(json_object_get_string(get(p, "name")), "smtp");
        ASSERT_STREQ(json_object_get_string(get(p, "type")), "tcp");
        ASSERT_STREQ(json_object_get_string(get(p, "status")), "critical");
        ASSERT_STREQ(json_object_get_string(get(p, "last_status")), "critical");
        ASSERT_STREQ(json_object_get_string(get(p, "reason")), "connection refused");
        ASSERT_TRUE(fabs(now_s - 10800 - json_object_get_double(get(p, "last_run_at"))) < 10);
        ASSERT_TRUE(fabs(now_s - 60 - json_object_get_double(get(p, "changed_at"))) < 10);
        ASSERT_TRUE(fabs(json_object_get_double(get(p, "duration_seconds")) - 0.012) < 1e-9);
        ASSERT_EQ(json_object_get_uint64(get(p, "runs")), 5);
        ASSERT_EQ(json_object_get_uint64(get(p, "timeouts")), 1);
        ASSERT_TRUE(json_object_is_type(get(p, "running"), json_type_boolean));
        ASSERT_FALSE(json_object_get_boolean(get(p, "running")));

        /* Never ran: what does not exist yet is null, not a fake zero. */
        p = json_object_array_get_idx(probes, 1);
        ASSERT_STREQ(json_object_get_string(get(p, "status")), "unknown");
        ASSERT_TRUE(get(p, "last_status") == NULL);
        ASSERT_TRUE(get(p, "reason") == NULL);
        ASSERT_TRUE(get(p, "last_run_at") == NULL);
        ASSERT_TRUE(get(p, "duration_seconds") == NULL);

        json_object_put(root);
}

TEST(agent_not_running) {
        TestServer t;
        _cleanup_(run_done) Run r = {}, j = {};

        /* The old behaviour, for scripts that want the agent's view only;
         * the fallback has tests of its own (test-health-fallback.c). */
        test_dir_make(&t);
        r = run_cli("--control-socket", t.path, "--no-fallback");
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "the agent is not running (no control socket at ");
        ASSERT_CONTAINS(r.err, t.path);

        /* With --json, monitoring that parses stdout learns it too. */
        j = run_cli("--control-socket", t.path, "--json", "--no-fallback");
        ASSERT_EQ(j.exit_code, 3);
        struct json_object *root = json_tokener_parse(j.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "unknown");
        ASSERT_CONTAINS(json_object_get_string(get(root, "error")), "the agent is not running");
        json_object_put(root);
        ASSERT_OK(rmdir(t.dir));
}

static int listen_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 8));
        return fd;
}

TEST(agent_socket_left_behind) {
        TestServer t;
        _cleanup_(run_done) Run r = {};

        /* A socket file nobody listens on: an agent that died. */
        test_dir_make(&t);
        safe_close(listen_unix(t.path));
        r = run_cli("--control-socket", t.path, "--no-fallback");
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.err, "the agent is not running (nothing listens on ");
        ASSERT_OK(unlink(t.path));
        ASSERT_OK(rmdir(t.dir));
}

TEST(agent_does_not_answer) {
        TestServer t;
        _cleanup_(run_done) Run r = {};
        int fd;

        /* The kernel accepts the connection; nobody ever answers. */
        test_dir_make(&t);
        fd = listen_unix(t.path);
        r = run_cli("--control-socket", t.path, "--timeout", "300ms");
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.err, "did not answer");
        ASSERT_CONTAINS(r.err, "within 300ms");
        ASSERT_TRUE(r.took >= 300 * USEC_PER_MSEC);
        ASSERT_TRUE(r.took < 5 * USEC_PER_SEC);
        safe_close(fd);
        ASSERT_OK(unlink(t.path));
        ASSERT_OK(rmdir(t.dir));
}

TEST(permission_denied) {
        static const ProbeSpec specs[] = { OK("smtp") };
        const struct passwd *pw = getpwnam("nobody");
        TestServer t;
        _cleanup_(run_done) Run r = {};

        if (geteuid() != 0 || !pw) {
                fprintf(stderr, "skipped: needs root and a 'nobody' user\n");
                return;
        }
        server_start(&t, specs, ELEMENTSOF(specs));
        /* The directory is reachable; the 0660 socket is what says no. */
        ASSERT_OK(chmod(t.dir, 0755));
        r = run_cli_as(pw->pw_uid, (const char *const[]) { "--control-socket", t.path, NULL });
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_CONTAINS(r.err, "permission denied");
        ASSERT_CONTAINS(r.err, "join the group '" CONTROL_SOCKET_GROUP "'");
        server_stop(&t);
}

/* ---- the node's healing state ------------------------------------------- */

#define ALL_OK { OK("smtp"), OK("imap") }

/* A whole second, so that the test can print the same local time. */
static usec_t seconds_ago(unsigned s) {
        return (now(CLOCK_REALTIME) / USEC_PER_SEC - s) * USEC_PER_SEC;
}

static char *expected_time(usec_t t) {
        time_t tt = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        char *buf = malloc(32);

        ASSERT_TRUE(buf);
        ASSERT_TRUE(localtime_r(&tt, &tm));
        ASSERT_TRUE(strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm) > 0);
        return buf;
}

static void server_start_with_node(TestServer *t, const ProbeSpec *specs, size_t n, const NodeState *st, usec_t since) {
        server_node_state = st;
        server_node_since = since;
        server_start(t, specs, n);
        server_node_state = NULL;
}

static Run run_against_node(const NodeState *st, usec_t since, const char *extra) {
        static const ProbeSpec specs[] = ALL_OK;
        TestServer t;
        Run r;

        server_start_with_node(&t, specs, ELEMENTSOF(specs), st, since);
        r = run_cli("--control-socket", t.path, extra ?: "--timeout=10s");
        server_stop(&t);
        return r;
}

TEST(node_in_service_heads_the_table) {
        NodeState st = { .id = NODE_IN_SERVICE };
        usec_t since = seconds_ago(12 * 60);
        _cleanup_free_ char *when = expected_time(since), *line = NULL;
        _cleanup_(run_done) Run r = run_against_node(&st, since, NULL);

        ASSERT_EQ(r.exit_code, 0);
        ASSERT_TRUE(asprintf(&line, "mail7: in_service since %s (12m", when) > 0);
        /* The first line, before the agent's own. */
        ASSERT_TRUE(strncmp(r.out, line, strlen(line)) == 0);
        ASSERT_CONTAINS(r.out, "s)\nnode mail7, rupost-agent " PROJECT_VERSION ", up 2h3m: ok\n");
}

TEST(node_withdrawn_is_critical) {
        NodeState st = {
                .id = NODE_WITHDRAWN,
                .reason = "dovecot: connection refused",
                .attempts = 1,
                .backoff = 45 * USEC_PER_SEC,
        };
        usec_t since = seconds_ago(5);
        _cleanup_free_ char *when = expected_time(since), *line = NULL;
        _cleanup_(run_done) Run r = run_against_node(&st, since, NULL);
        const char *p;
        unsigned next;

        /* Every probe ok, and yet the node serves no mail. */
        ASSERT_EQ(r.exit_code, 2);
        ASSERT_CONTAINS(r.out, ", up 2h3m: critical\n");
        ASSERT_TRUE(asprintf(&line, "mail7: WITHDRAWN since %s (", when) > 0);
        ASSERT_TRUE(strncmp(r.out, line, strlen(line)) == 0);
        p = strstr(r.out, "s): dovecot: connection refused; recovery attempt 2 of 5, next in ");
        ASSERT_TRUE(p);
        ASSERT_EQ(sscanf(p, "s): dovecot: connection refused; recovery attempt 2 of 5, next in %us\n", &next), 1);
        ASSERT_TRUE(next >= 30 && next <= 40);
}

TEST(node_states_and_exit_codes) {
        static const struct {
                NodeState st;
                int exit_code;
                const char *text;
        } cases[] = {
                { { .id = NODE_STARTING }, 0, "mail7: starting since " },
                { { .id = NODE_IN_SERVICE }, 0, "mail7: in_service since " },
                { { .id = NODE_MAINTENANCE, .reason = "kernel update" }, 1, "s): kernel update\n" },
                { { .id = NODE_RECOVERING, .reason = "imap: timeout", .attempts = 2 }, 1,
                  "mail7: RECOVERING since " },
                { { .id = NODE_FAILED, .reason = "postfix: not running", .attempts = 5 }, 2,
                  "s): postfix: not running; gave up after 5 recovery attempts; switch maintenance on and off "
                  "to try again\n" },
                /* Backoff over, the group still stopping. */
                { { .id = NODE_WITHDRAWN, .reason = "sogo: 502", .attempts = 3 }, 2,
                  "s): sogo: 502; recovery attempt 4 of 5 once the mail group has stopped\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(run_done) Run r = run_against_node(&cases[i].st, seconds_ago(60), NULL);

                if (r.exit_code != cases[i].exit_code)
                        fprintf(stderr, "case %zu:\n%s", i, r.out);
                ASSERT_EQ(r.exit_code, cases[i].exit_code);
                ASSERT_CONTAINS(r.out, cases[i].text);
        }
        {
                /* The recovering line says which attempt is under way. */
                _cleanup_(run_done) Run r = run_against_node(&cases[3].st, seconds_ago(60), NULL);
                /* 1m0s, or 1m1s when a sanitizer build under load takes a second. */
                ASSERT_CONTAINS(r.out, " (1m");
                ASSERT_CONTAINS(r.out, "s): imap: timeout; recovery attempt 2 of 5 in progress\n");
        }
        {
                /* A node probe critical in maintenance: the worst still wins. */
                static const ProbeSpec specs[] = { OK("smtp"), CRIT("imap") };
                TestServer t;
                server_start_with_node(&t, specs, ELEMENTSOF(specs), &cases[2].st, seconds_ago(60));
                _cleanup_(run_done) Run r = run_cli("--control-socket", t.path);
                server_stop(&t);
                ASSERT_EQ(r.exit_code, 2);
        }
}

TEST(node_without_healing) {
        static const ProbeSpec specs[] = ALL_OK;
        _cleanup_(run_done) Run r = run_against(specs, ELEMENTSOF(specs), NULL);

        ASSERT_EQ(r.exit_code, 0);
        ASSERT_TRUE(strncmp(r.out, "mail7: healing is not configured, the agent only watches\n", 57) == 0);
}

TEST(node_json) {
        NodeState st = {
                .id = NODE_WITHDRAWN,
                .reason = "dovecot: connection refused",
                .attempts = 1,
                .backoff = 45 * USEC_PER_SEC,
        };
        usec_t since = seconds_ago(5);
        _cleanup_(run_done) Run r = run_against_node(&st, since, "--json");
        static const ProbeSpec specs[] = ALL_OK;
        _cleanup_(run_done) Run off = run_against(specs, ELEMENTSOF(specs), "--json");
        struct json_object *root, *ns;

        ASSERT_EQ(r.exit_code, 2);
        root = json_tokener_parse(r.out);
        ASSERT_TRUE(root);
        /* "node" stays the name, as it always was. */
        ASSERT_STREQ(json_object_get_string(get(root, "node")), "mail7");
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "critical");
        ns = get(root, "node_state");
        ASSERT_TRUE(json_object_get_boolean(get(ns, "healing")));
        ASSERT_STREQ(json_object_get_string(get(ns, "state")), "withdrawn");
        ASSERT_STREQ(json_object_get_string(get(ns, "reason")), "dovecot: connection refused");
        ASSERT_TRUE(json_object_get_double(get(ns, "since")) == usec_to_seconds(since));
        ASSERT_EQ(json_object_get_uint64(get(ns, "attempts")), 1);
        ASSERT_EQ(json_object_get_uint64(get(ns, "max_attempts")), 5);
        ASSERT_TRUE(json_object_get_double(get(ns, "next_attempt_at")) == usec_to_seconds(since) + 45);
        ASSERT_FALSE(json_object_get_boolean(get(ns, "maintenance")));
        json_object_put(root);

        ASSERT_EQ(off.exit_code, 0);
        root = json_tokener_parse(off.out);
        ASSERT_TRUE(root);
        ns = get(root, "node_state");
        ASSERT_FALSE(json_object_get_boolean(get(ns, "healing")));
        ASSERT_TRUE(get(ns, "state") == NULL);
        ASSERT_TRUE(get(ns, "since") == NULL);
        json_object_put(root);
}

TEST(maintenance_on_and_off) {
        static const ProbeSpec specs[] = ALL_OK;
        NodeState st = { .id = NODE_IN_SERVICE };
        _cleanup_(run_done) Run on = {}, status = {}, again = {}, off = {}, json = {};
        TestServer t;

        server_start_with_node(&t, specs, ELEMENTSOF(specs), &st, seconds_ago(3600));

        on = run_cli("--control-socket", t.path, "maintenance", "on", "--reason", "kernel update");
        ASSERT_EQ(on.exit_code, 0);
        ASSERT_STREQ(on.err, "");
        ASSERT_TRUE(strncmp(on.out, "mail7: MAINTENANCE since ", 25) == 0);
        ASSERT_CONTAINS(on.out, "s): kernel update\n");
        ASSERT_NOT_CONTAINS(on.out, "PROBE"); /* just the new state */

        status = run_cli("--control-socket", t.path);
        ASSERT_EQ(status.exit_code, 1);
        ASSERT_CONTAINS(status.out, "mail7: MAINTENANCE since ");
        ASSERT_CONTAINS(status.out, ": warning\n");

        json = run_cli("--control-socket", t.path, "--json", "maintenance", "on", "--reason", "again");
        ASSERT_EQ(json.exit_code, 0);
        struct json_object *root = json_tokener_parse(json.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(get(root, "node_state"), "state")), "maintenance");
        /* Already on: the first reason stays. */
        ASSERT_STREQ(json_object_get_string(get(get(root, "node_state"), "reason")), "kernel update");
        json_object_put(root);

        off = run_cli("--control-socket", t.path, "maintenance", "off");
        ASSERT_EQ(off.exit_code, 0);
        ASSERT_TRUE(strncmp(off.out, "mail7: starting since ", 22) == 0);

        /* The agent's refusal is a plain message and exit 3. */
        again = run_cli("--control-socket", t.path, "maintenance", "on", "--reason", "two\tcolumns");
        ASSERT_EQ(again.exit_code, 3);
        ASSERT_STREQ(again.out, "");
        ASSERT_CONTAINS(again.err, "the agent refused the request: the maintenance reason has a control "
                                   "character (0x09) at byte 3\n");

        server_stop(&t);
}

TEST(maintenance_refusals) {
        static const ProbeSpec specs[] = ALL_OK;
        NodeState st = { .id = NODE_IN_SERVICE };
        const struct passwd *pw = getpwnam("nobody");
        _cleanup_(run_done) Run a = {}, b = {}, c = {}, d = {}, e = {}, f = {}, g = {};
        TestServer t;

        a = run_cli("maintenance", "on");
        ASSERT_EQ(a.exit_code, 3);
        ASSERT_CONTAINS(a.err, "maintenance on needs --reason TEXT");
        b = run_cli("maintenance");
        ASSERT_EQ(b.exit_code, 3);
        ASSERT_CONTAINS(b.err, "maintenance needs 'on' or 'off'\n");
        c = run_cli("maintenance", "of");
        ASSERT_CONTAINS(c.err, "maintenance needs 'on' or 'off', not 'of'");
        d = run_cli("maintenance", "off", "--reason", "x");
        ASSERT_EQ(d.exit_code, 3);
        ASSERT_CONTAINS(d.err, "--reason only goes with 'maintenance on'");
        e = run_cli("reboot");
        ASSERT_EQ(e.exit_code, 3);
        ASSERT_CONTAINS(e.err, "unknown command 'reboot'");

        /* Healing off: switching maintenance would change nothing. */
        server_start(&t, specs, ELEMENTSOF(specs));
        f = run_cli("--control-socket", t.path, "maintenance", "on", "--reason", "x");
        server_stop(&t);
        ASSERT_EQ(f.exit_code, 3);
        ASSERT_CONTAINS(f.err, "healing is not configured on this node: maintenance has no effect\n");

        if (geteuid() != 0 || !pw) {
                fprintf(stderr, "skipped: needs root and a 'nobody' user\n");
                return;
        }
        /* Reaching the socket is not enough to change the node. */
        server_start_with_node(&t, specs, ELEMENTSOF(specs), &st, seconds_ago(10));
        ASSERT_OK(chmod(t.dir, 0755));
        ASSERT_OK(chmod(t.path, 0666));
        g = run_cli_as(pw->pw_uid, (const char *const[]) { "--control-socket", t.path, "maintenance", "on",
                                                            "--reason", "x", NULL });
        ASSERT_EQ(g.exit_code, 3);
        ASSERT_CONTAINS(g.err, "permission denied: switching maintenance needs root or membership in the group "
                               "of the control socket ('" CONTROL_SOCKET_GROUP "')");
        server_stop(&t);
}

/* ---- the cluster view ----------------------------------------------------- */

/* The request kind the canned server expects. */
static Rupost__Control__Request__Kind canned_kind = RUPOST__CONTROL__REQUEST__KIND__CLUSTER;

/* Answers every request with the same canned response, as an agent with a
 * cluster registry would answer CLUSTER (or canned_kind). Refuses any other
 * kind. */
_Noreturn static void canned_child(const char *path, const uint8_t *data, size_t size, int ready_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        ASSERT_OK(prctl(PR_SET_PDEATHSIG, SIGKILL));
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, 8));
        ASSERT_EQ(write(ready_fd, "R", 1), 1);
        for (;;) {
                ControlReader rd = CONTROL_READER_INIT(CONTROL_MAX_MESSAGE);
                ProtobufCMessage *m = NULL;
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                uint8_t buf[512];
                ssize_t l;
                int k = 0;

                ASSERT_TRUE(c >= 0);
                while (k == 0 && (l = read(c, buf, sizeof buf)) > 0)
                        k = control_reader_push(&rd, buf, (size_t) l, NULL);
                ASSERT_EQ(k, 1);
                ASSERT_OK(control_reader_unpack(&rd, &rupost__control__request__descriptor, &m));
                ASSERT_EQ(((Rupost__Control__Request *) m)->kind, canned_kind);
                ASSERT_EQ(write(c, data, size), (ssize_t) size);
                protobuf_c_message_free_unpacked(m, NULL);
                control_reader_done(&rd);
                safe_close(c);
        }
}

static void canned_start(TestServer *t, const Rupost__Control__Response *resp) {
        _cleanup_free_ uint8_t *data = NULL;
        int pipefd[2];
        size_t size;
        char c;

        ASSERT_OK(control_frame_pack(&resp->base, CONTROL_MAX_MESSAGE, &data, &size));
        test_dir_make(t);
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        t->pid = fork();
        ASSERT_TRUE(t->pid >= 0);
        if (t->pid == 0)
                canned_child(t->path, data, size, pipefd[1]);
        safe_close(pipefd[1]);
        ASSERT_EQ(read(pipefd[0], &c, 1), 1);
        safe_close(pipefd[0]);
}

static void canned_stop(TestServer *t) {
        int status;

        ASSERT_OK(kill(t->pid, SIGKILL));
        ASSERT_EQ(waitpid(t->pid, &status, 0), t->pid);
        ASSERT_OK(unlink(t->path));
        ASSERT_OK(rmdir(t->dir));
}

TEST(cluster_view) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        Rupost__Control__ClusterNode a = RUPOST__CONTROL__CLUSTER_NODE__INIT, b = a, c = a;
        Rupost__Control__ClusterNode *nodes[] = { &a, &b, &c };
        _cleanup_(run_done) Run table = {}, json = {}, empty = {};
        struct json_object *root, *n;
        TestServer t;

        a.name = (char *) "mail1";
        a.state = (char *) "in_service";
        a.lease_age_seconds = 2.5;
        a.updated_at = 1764319212;
        b.name = (char *) "mail2";
        b.state = (char *) "withdrawn";
        b.reason = (char *) "dovecot: connection refused\033[2J";
        b.lease_age_seconds = 4;
        c.name = (char *) "mail3-long-name";
        c.state = (char *) "failed";
        c.reason = (char *) "postfix: not running";
        c.lease_age_seconds = 3725;
        resp.node = (char *) "mail1";
        resp.n_cluster = ELEMENTSOF(nodes);
        resp.cluster = nodes;

        canned_start(&t, &resp);
        table = run_cli("--control-socket", t.path, "cluster");
        json = run_cli("--control-socket", t.path, "cluster", "--json");
        canned_stop(&t);

        ASSERT_EQ(table.exit_code, 0);
        ASSERT_STREQ(table.out, "NODE             STATE       LEASE AGE  REASON\n"
                                "mail1            in_service  2s         -\n"
                                "mail2            withdrawn   4s         dovecot: connection refused?[2J\n"
                                "mail3-long-name  failed      1h2m       postfix: not running\n");

        ASSERT_EQ(json.exit_code, 0);
        root = json_tokener_parse(json.out);
        ASSERT_TRUE(root);
        ASSERT_EQ(json_object_array_length(get(root, "nodes")), 3);
        n = json_object_array_get_idx(get(root, "nodes"), 0);
        ASSERT_STREQ(json_object_get_string(get(n, "name")), "mail1");
        ASSERT_STREQ(json_object_get_string(get(n, "state")), "in_service");
        ASSERT_STREQ(json_object_get_string(get(n, "reason")), "");
        ASSERT_TRUE(json_object_get_double(get(n, "lease_age_seconds")) == 2.5);
        ASSERT_TRUE(json_object_get_double(get(n, "updated_at")) == 1764319212);
        n = json_object_array_get_idx(get(root, "nodes"), 1);
        ASSERT_STREQ(json_object_get_string(get(n, "reason")), "dovecot: connection refused\033[2J");
        json_object_put(root);

        resp.n_cluster = 0;
        canned_start(&t, &resp);
        empty = run_cli("--control-socket", t.path, "cluster");
        canned_stop(&t);
        ASSERT_EQ(empty.exit_code, 0);
        ASSERT_STREQ(empty.out, "no nodes registered\n");
}

TEST(cluster_not_configured) {
        static const ProbeSpec specs[] = ALL_OK;
        _cleanup_(run_done) Run r = {};
        TestServer t;

        server_start(&t, specs, ELEMENTSOF(specs));
        r = run_cli("--control-socket", t.path, "cluster");
        server_stop(&t);
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "the agent refused the request: the cluster state is not configured on this node");
}

/* The whole way: the agent's Cluster reads the registry in a real
 * PostgreSQL, the control server answers from its view, the CLI prints it. */
TEST(cluster_view_from_the_registry) {
        static const ProbeSpec specs[] = ALL_OK;
        _cleanup_(run_done) Run table = {}, json = {};
        struct json_object *root, *nodes, *n;
        ClusterFixture f;
        TestServer t;

        if (!cluster_fixture_start(&f))
                return;
        server_cluster = &f.config;
        server_start(&t, specs, ELEMENTSOF(specs));
        server_cluster = NULL;

        /* The agent registered itself (and created the schema), then mail8
         * appears: renewed 1 h 2 min 5 s ago by a lease of 10 s, as an
         * agent that died that long ago left it. */
        for (int step = 0; step < 2; step++) {
                if (step == 1)
                        cluster_fixture_sql(&f, "INSERT INTO rupost_agent.nodes (name, state, reason, lease_expires, "
                                                "renewed_at) VALUES ('mail8', 'withdrawn', "
                                                "'dovecot: connection refused', now() - interval '3715 seconds', "
                                                "now() - interval '3725 seconds')");
                for (int i = 0; i < 200; i++) {
                        run_done(&table);
                        table = run_cli("--control-socket", t.path, "cluster");
                        if (table.exit_code == 0 && strstr(table.out, step == 0 ? "mail7" : "mail8"))
                                break;
                        usleep(50 * 1000);
                }
        }
        json = run_cli("--control-socket", t.path, "cluster", "--json");
        server_stop(&t);
        cluster_fixture_stop(&f);

        ASSERT_EQ(table.exit_code, 0);
        /* Our own row is renewed twice a second: its age reads 0s or 1s. */
        if (!streq(table.out, "NODE   STATE      LEASE AGE  REASON\n"
                              "mail7  starting   0s         -\n"
                              "mail8  withdrawn  1h2m       dovecot: connection refused\n"))
                ASSERT_STREQ(table.out, "NODE   STATE      LEASE AGE  REASON\n"
                                        "mail7  starting   1s         -\n"
                                        "mail8  withdrawn  1h2m       dovecot: connection refused\n");

        ASSERT_EQ(json.exit_code, 0);
        root = json_tokener_parse(json.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "node")), "mail7");
        nodes = get(root, "nodes");
        ASSERT_EQ(json_object_array_length(nodes), 2);
        n = json_object_array_get_idx(nodes, 1);
        ASSERT_STREQ(json_object_get_string(get(n, "name")), "mail8");
        ASSERT_STREQ(json_object_get_string(get(n, "state")), "withdrawn");
        ASSERT_TRUE(fabs(json_object_get_double(get(n, "lease_age_seconds")) - 3725) < 5);
        ASSERT_TRUE(fabs(json_object_get_double(get(n, "updated_at")) - usec_to_seconds(now(CLOCK_REALTIME))) < 30);
        json_object_put(root);
}

/* The agent has a cluster section but has not read the registry yet. */
TEST(cluster_view_before_the_first_read) {
        static const ProbeSpec specs[] = ALL_OK;
        _cleanup_(run_done) Run r = {};
        ClusterFixture f;
        TestServer t;

        cluster_fixture_unreachable(&f);
        server_cluster = &f.config;
        server_start(&t, specs, ELEMENTSOF(specs));
        server_cluster = NULL;
        r = run_cli("--control-socket", t.path, "cluster");
        server_stop(&t);
        ASSERT_EQ(r.exit_code, 3);
        ASSERT_STREQ(r.out, "");
        ASSERT_CONTAINS(r.err, "the agent refused the request: the cluster database has not been read yet: ");
}

/* ---- samples, clock skew and failure scope ---------------------------------- */

typedef Rupost__Control__ProbeState ProbeStateMsg;
typedef Rupost__Control__Sample SampleMsg;

#define SAMPLE(f, l, v) { PROTOBUF_C_MESSAGE_INIT(&rupost__control__sample__descriptor), (char *) (f), (char *) (l), (v) }

static void probe_msg(ProbeStateMsg *p, const char *name, const char *type, const char *status, SampleMsg **samples,
                      size_t n) {
        rupost__control__probe_state__init(p);
        p->name = (char *) name;
        p->type = (char *) type;
        p->status = (char *) status;
        p->last_status = (char *) status;
        p->reason = (char *) "fine";
        p->have_result = true;
        p->samples = samples;
        p->n_samples = n;
}

/* What the time, postgres, memcached and nfs probes of a node report. */
static SampleMsg s_kernel = SAMPLE("rupost_time_offset_seconds", "source=\"kernel\"", 0.000012),
                 s_ntp = SAMPLE("rupost_time_offset_seconds", "source=\"10.0.0.1\"", -0.62),
                 s_maxskew = SAMPLE("rupost_time_max_skew_seconds", "", 5.0),
                 s_pg = SAMPLE("rupost_time_offset_seconds", "source=\"postgres\"", 1.25),
                 s_pgconn = SAMPLE("rupost_postgres_connections", "", 12),
                 s_mc = SAMPLE("rupost_time_offset_seconds", "other=\"x\",source=\"10.0.0.5:11211\"", 0),
                 s_nfs = SAMPLE("rupost_time_offset_seconds", "source=\"nfs:/srv/\\\"mail\\\"\\\\x\"", -0.0031);

static Run run_canned_status(const Rupost__Control__Response *resp, const char *a, const char *b) {
        TestServer t;
        Run r;

        canned_kind = RUPOST__CONTROL__REQUEST__KIND__STATUS;
        canned_start(&t, resp);
        if (b)
                r = run_cli("--control-socket", t.path, a, b);
        else if (a)
                r = run_cli("--control-socket", t.path, a);
        else
                r = run_cli("--control-socket", t.path);
        canned_stop(&t);
        canned_kind = RUPOST__CONTROL__REQUEST__KIND__CLUSTER;
        return r;
}

TEST(skew_table_largest_first) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        SampleMsg *ts[] = { &s_kernel, &s_maxskew, &s_ntp }, *ps[] = { &s_pgconn, &s_pg }, *ms[] = { &s_mc },
                  *ns[] = { &s_nfs };
        ProbeStateMsg time, pg, mc, nfs, smtp;
        ProbeStateMsg *probes[] = { &smtp, &time, &pg, &mc, &nfs };
        _cleanup_(run_done) Run table = {}, json = {};
        struct json_object *root, *src, *o;

        probe_msg(&smtp, "smtp", "smtp", "critical", NULL, 0);
        probe_msg(&time, "clock", "time", "warning", ts, ELEMENTSOF(ts));
        probe_msg(&pg, "db", "postgres", "ok", ps, ELEMENTSOF(ps));
        probe_msg(&mc, "sessions", "memcached", "ok", ms, ELEMENTSOF(ms));
        probe_msg(&nfs, "mailstore", "nfs", "ok", ns, ELEMENTSOF(ns));
        resp.node = (char *) "mail7";
        resp.n_probes = ELEMENTSOF(probes);
        resp.probes = probes;

        table = run_canned_status(&resp, "skew", NULL);
        /* The worst skew decides, not the probes' statuses (smtp is critical
         * for reasons that have nothing to do with clocks): postgres 1.25 s. */
        ASSERT_EQ(table.exit_code, 2);
        ASSERT_STREQ(table.err, "");
        ASSERT_CONTAINS(table.out, "SOURCE             PROBE       OFFSET  VERDICT\n"
                                   "postgres           db         +1.250s  critical\n"
                                   "10.0.0.1           clock      -0.620s  warning\n"
                                   "nfs:/srv/\"mail\"\\x  mailstore  -0.003s  ok\n"
                                   "kernel             clock      +0.000s  ok\n"
                                   "10.0.0.5:11211     sessions       +0s  ok (whole seconds)\n");
        ASSERT_CONTAINS(table.out, "the cluster tolerates 1 s of skew");
        /* Other families are not offsets. */
        ASSERT_NOT_CONTAINS(table.out, "5.000");

        json = run_canned_status(&resp, "skew", "--json");
        ASSERT_EQ(json.exit_code, 2);
        root = json_tokener_parse(json.out);
        ASSERT_TRUE(root);
        ASSERT_STREQ(json_object_get_string(get(root, "status")), "critical");
        ASSERT_TRUE(json_object_get_double(get(root, "critical_seconds")) == 1.0);
        src = get(root, "sources");
        ASSERT_EQ(json_object_array_length(src), 5);
        o = json_object_array_get_idx(src, 0);
        ASSERT_STREQ(json_object_get_string(get(o, "source")), "postgres");
        ASSERT_STREQ(json_object_get_string(get(o, "probe")), "db");
        ASSERT_STREQ(json_object_get_string(get(o, "type")), "postgres");
        ASSERT_TRUE(json_object_get_double(get(o, "offset_seconds")) == 1.25);
        ASSERT_STREQ(json_object_get_string(get(o, "status")), "critical");
        o = json_object_array_get_idx(src, 1);
        ASSERT_TRUE(json_object_get_double(get(o, "offset_seconds")) == -0.62);
        ASSERT_STREQ(json_object_get_string(get(o, "status")), "warning");
        ASSERT_TRUE(get(o, "resolution_seconds") == NULL);
        o = json_object_array_get_idx(src, 2);
        ASSERT_STREQ(json_object_get_string(get(o, "source")), "nfs:/srv/\"mail\"\\x");
        o = json_object_array_get_idx(src, 4);
        ASSERT_TRUE(json_object_get_double(get(o, "resolution_seconds")) == 1.0);
        json_object_put(root);
}

TEST(skew_exit_codes) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        SampleMsg w = SAMPLE("rupost_time_offset_seconds", "source=\"a\"", -0.5),
                  ok = SAMPLE("rupost_time_offset_seconds", "source=\"b\"", 0.499),
                  c = SAMPLE("rupost_time_offset_seconds", "source=\"c\"", -1.0);
        SampleMsg *two[] = { &ok, &w }, *one[] = { &ok }, *crit[] = { &c };
        ProbeStateMsg p;
        ProbeStateMsg *probes[] = { &p };
        _cleanup_(run_done) Run a = {}, b = {}, d = {}, e = {};

        resp.node = (char *) "mail7";
        resp.n_probes = 1;
        resp.probes = probes;

        /* Exactly 0.5 s is a warning, 1 s behind is critical: the limit is |offset|. */
        probe_msg(&p, "clock", "time", "ok", two, 2);
        a = run_canned_status(&resp, "skew", NULL);
        ASSERT_EQ(a.exit_code, 1);
        ASSERT_CONTAINS(a.out, "a       clock  -0.500s  warning\n");
        probe_msg(&p, "clock", "time", "ok", one, 1);
        b = run_canned_status(&resp, "skew", NULL);
        ASSERT_EQ(b.exit_code, 0);
        ASSERT_NOT_CONTAINS(b.out, "tolerates");
        probe_msg(&p, "clock", "time", "ok", crit, 1);
        d = run_canned_status(&resp, "skew", NULL);
        ASSERT_EQ(d.exit_code, 2);
        /* No offset at all proves nothing. */
        /* Memcached's whole seconds: -1 s is what a healthy one shows, -2 s
         * is 1 s beyond its resolution. */
        {
                SampleMsg m1 = SAMPLE("rupost_time_offset_seconds", "source=\"mc\"", -1),
                          m2 = SAMPLE("rupost_time_offset_seconds", "source=\"mc\"", -2);
                SampleMsg *l1[] = { &m1 }, *l2[] = { &m2 };
                _cleanup_(run_done) Run x = {}, y = {};

                probe_msg(&p, "sessions", "memcached", "ok", l1, 1);
                x = run_canned_status(&resp, "skew", NULL);
                ASSERT_EQ(x.exit_code, 0);
                ASSERT_CONTAINS(x.out, "mc      sessions     -1s  ok (whole seconds)\n");
                probe_msg(&p, "sessions", "memcached", "ok", l2, 1);
                y = run_canned_status(&resp, "skew", NULL);
                ASSERT_EQ(y.exit_code, 2);
                ASSERT_CONTAINS(y.out, "-2s  critical (whole seconds)\n");
        }
        probe_msg(&p, "clock", "time", "unknown", NULL, 0);
        e = run_canned_status(&resp, "skew", NULL);
        ASSERT_EQ(e.exit_code, 3);
        ASSERT_CONTAINS(e.out, "no clock offsets reported");
}

TEST(verbose_shows_samples) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        SampleMsg evil = SAMPLE("rupost_x", "v=\"\033[2J\"", 1);
        SampleMsg *ts[] = { &s_kernel, &s_maxskew }, *es[] = { &evil };
        ProbeStateMsg time, other;
        ProbeStateMsg *probes[] = { &time, &other };
        _cleanup_(run_done) Run plain = {}, v = {}, j = {}, jv = {};
        struct json_object *root, *p, *x;

        probe_msg(&time, "clock", "time", "ok", ts, ELEMENTSOF(ts));
        time.samples_omitted = 7;
        probe_msg(&other, "odd", "tcp", "ok", es, 1);
        resp.node = (char *) "mail7";
        resp.version = (char *) "1";
        resp.n_probes = ELEMENTSOF(probes);
        resp.probes = probes;

        plain = run_canned_status(&resp, NULL, NULL);
        ASSERT_EQ(plain.exit_code, 0);
        ASSERT_NOT_CONTAINS(plain.out, "rupost_time_offset_seconds");

        v = run_canned_status(&resp, "-v", NULL);
        ASSERT_EQ(v.exit_code, 0);
        /* Each probe's samples under its row. */
        ASSERT_CONTAINS(v.out, "fine\n"
                               "    rupost_time_offset_seconds{source=\"kernel\"} 1.2e-05\n"
                               "    rupost_time_max_skew_seconds 5\n"
                               "    (7 more samples not sent: the answer's limit)\n"
                               "odd ");
        ASSERT_CONTAINS(v.out, "    rupost_x{v=\"?[2J\"} 1\n");
        ASSERT_NOT_CONTAINS(v.out, "\033");

        j = run_canned_status(&resp, "--json", NULL);
        root = json_tokener_parse(j.out);
        ASSERT_TRUE(root);
        p = json_object_array_get_idx(get(root, "probes"), 0);
        ASSERT_FALSE(json_object_object_get_ex(p, "samples", NULL));
        json_object_put(root);

        jv = run_canned_status(&resp, "--json", "--verbose");
        root = json_tokener_parse(jv.out);
        ASSERT_TRUE(root);
        p = json_object_array_get_idx(get(root, "probes"), 0);
        ASSERT_EQ(json_object_array_length(get(p, "samples")), 2);
        ASSERT_EQ(json_object_get_uint64(get(p, "samples_omitted")), 7);
        x = json_object_array_get_idx(get(p, "samples"), 0);
        ASSERT_STREQ(json_object_get_string(get(x, "family")), "rupost_time_offset_seconds");
        ASSERT_STREQ(json_object_get_string(get(x, "labels")), "source=\"kernel\"");
        ASSERT_TRUE(json_object_get_double(get(x, "value")) == 0.000012);
        json_object_put(root);
}

TEST(scope_in_table_and_json) {
        Rupost__Control__Response resp = RUPOST__CONTROL__RESPONSE__INIT;
        ProbeStateMsg shared, local, held, none;
        ProbeStateMsg *probes[] = { &shared, &local, &held, &none };
        _cleanup_(run_done) Run t = {}, j = {};
        struct json_object *root, *p;

        probe_msg(&shared, "memcached", "memcached", "critical", NULL, 0);
        shared.scope = (char *) "shared 2/3";
        shared.peers_failing = 2;
        shared.live_peers = 3;
        probe_msg(&local, "nfs", "nfs", "critical", NULL, 0);
        local.scope = (char *) "local";
        local.live_peers = 3;
        probe_msg(&held, "ldap", "ldap", "critical", NULL, 0);
        held.last_status = (char *) "ok";
        held.scope = (char *) "unknown";
        probe_msg(&none, "smtp", "smtp", "ok", NULL, 0);
        resp.node = (char *) "mail7";
        resp.version = (char *) "1";
        resp.n_probes = ELEMENTSOF(probes);
        resp.probes = probes;

        t = run_canned_status(&resp, NULL, NULL);
        ASSERT_EQ(t.exit_code, 2);
        ASSERT_CONTAINS(t.out, "memcached  memcached  critical (shared 2/3)  ");
        ASSERT_CONTAINS(t.out, "nfs        nfs        critical (local)       ");
        ASSERT_CONTAINS(t.out, "ldap       ldap       critical (unknown, last run: ok)  ");
        ASSERT_CONTAINS(t.out, "smtp       smtp       ok  ");

        j = run_canned_status(&resp, "--json", NULL);
        root = json_tokener_parse(j.out);
        ASSERT_TRUE(root);
        p = json_object_array_get_idx(get(root, "probes"), 0);
        ASSERT_STREQ(json_object_get_string(get(p, "scope")), "shared 2/3");
        ASSERT_EQ(json_object_get_uint64(get(p, "peers_failing")), 2);
        ASSERT_EQ(json_object_get_uint64(get(p, "live_peers")), 3);
        p = json_object_array_get_idx(get(root, "probes"), 1);
        ASSERT_STREQ(json_object_get_string(get(p, "scope")), "local");
        ASSERT_EQ(json_object_get_uint64(get(p, "peers_failing")), 0);
        ASSERT_EQ(json_object_get_uint64(get(p, "live_peers")), 3);
        p = json_object_array_get_idx(get(root, "probes"), 2);
        ASSERT_STREQ(json_object_get_string(get(p, "scope")), "unknown");
        ASSERT_TRUE(get(p, "peers_failing") == NULL);
        p = json_object_array_get_idx(get(root, "probes"), 3);
        ASSERT_TRUE(get(p, "scope") == NULL);
        ASSERT_TRUE(get(p, "live_peers") == NULL);
        json_object_put(root);
}

TEST(usage_errors) {
        _cleanup_(run_done) Run a = {}, b = {}, c = {}, h = {}, v = {};

        a = run_cli("--timeout", "0");
        ASSERT_EQ(a.exit_code, 3);
        ASSERT_CONTAINS(a.err, "invalid --timeout '0'");
        b = run_cli("--timeout", "soon");
        ASSERT_EQ(b.exit_code, 3);
        ASSERT_CONTAINS(b.err, "invalid --timeout 'soon'");
        c = run_cli("--bogus");
        ASSERT_EQ(c.exit_code, 3);

        h = run_cli("--help");
        ASSERT_EQ(h.exit_code, 0);
        ASSERT_CONTAINS(h.out, "--control-socket");
        ASSERT_CONTAINS(h.out, CONFIG_DEFAULT_CONTROL_SOCKET);
        v = run_cli("--version");
        ASSERT_EQ(v.exit_code, 0);
        ASSERT_CONTAINS(v.out, "rupost-health " PROJECT_VERSION);
        ASSERT_CONTAINS(h.out, "skew");

        {
                _cleanup_(run_done) Run s = run_cli("skew", "now"), w = run_cli("--verbose", "cluster");

                ASSERT_EQ(s.exit_code, 3);
                ASSERT_CONTAINS(s.err, "unexpected argument 'now' after 'skew'");
                ASSERT_EQ(w.exit_code, 3);
                ASSERT_CONTAINS(w.err, "--verbose only goes with the status");
        }
}

DEFINE_TEST_MAIN();
