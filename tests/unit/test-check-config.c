/* SPDX-License-Identifier: GPL-2.0-or-later */
/* --check-config against start-up: for every kind of file start-up refuses,
 * the check refuses it too, with the same lines (issue 11: a host name in
 * web.listen_address passed the check and was fatal at start, so the unit's
 * ExecStartPre could not prevent a failed boot). Each file is run both ways:
 * the check, and a real start, which must stop before binding anything. */

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include "cli-run.h"
#include "loopback.h"
#include "tests.h"

typedef struct Dir {
        char path[64];
} Dir;

static void dir_make(Dir *d) {
        snprintf(d->path, sizeof d->path, "/tmp/test-check-config-XXXXXX");
        ASSERT_TRUE(mkdtemp(d->path));
}

/* The directory holds only files of ours, no subdirectories. */
static void dir_remove(Dir *d) {
        DIR *dir = opendir(d->path);
        struct dirent *de;

        ASSERT_TRUE(dir);
        while ((de = readdir(dir)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        ASSERT_OK(unlinkat(dirfd(dir), de->d_name, 0) < 0 ? -errno : 0);
        closedir(dir);
        ASSERT_OK(rmdir(d->path) < 0 ? -errno : 0);
}

static char *dir_file(Dir *d, const char *name, const char *text) {
        char *path;
        FILE *f;

        ASSERT_TRUE(asprintf(&path, "%s/%s", d->path, name) > 0);
        if (!text)
                return path;
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_EQ(fclose(f), 0);
        return path;
}

/* Runs the check and a start on `yaml` (with extra arguments, up to 4) and
 * asserts that both fail, naming each of the expected texts. */
_sentinel_ static void assert_refused(const char *yaml, const char *const *extra, ...) {
        _cleanup_free_ char *config = NULL, *sock = NULL;
        const char *check_args[12] = {}, *start_args[12] = {};
        size_t n = 0, k = 0;
        Dir d;
        va_list ap;

        dir_make(&d);
        config = dir_file(&d, "agent.yaml", yaml);
        sock = dir_file(&d, "control.sock", NULL);
        check_args[n++] = "--check-config";
        check_args[n++] = "--config";
        check_args[n++] = config;
        start_args[k++] = "--config";
        start_args[k++] = config;
        /* A start that got this far would serve here, never on a shared path. */
        start_args[k++] = "--control-socket";
        start_args[k++] = sock;
        for (; extra && *extra; extra++) {
                ASSERT_TRUE(n + 1 < ELEMENTSOF(check_args) && k + 1 < ELEMENTSOF(start_args));
                check_args[n++] = *extra;
                start_args[k++] = *extra;
        }

        _cleanup_(run_done) Run check = run_program_as("rupost-agent", 0, check_args);
        _cleanup_(run_done) Run start = run_program_as("rupost-agent", 0, start_args);

        if (check.exit_code != 1 || start.exit_code != 1)
                ASSERT_FAIL("check exited %d, start %d:\n--- check:\n%s%s--- start:\n%s", check.exit_code,
                            start.exit_code, check.out, check.err, start.err);
        ASSERT_STREQ(check.out, "");
        va_start(ap, extra);
        for (const char *e; (e = va_arg(ap, const char *));) {
                ASSERT_CONTAINS(check.err, e);
                ASSERT_CONTAINS(start.err, e);
        }
        va_end(ap);
        ASSERT_CONTAINS(start.err, "Refusing to start");
        /* Refused before it bound anything. */
        ASSERT_TRUE(access(sock, F_OK) < 0 && errno == ENOENT);
        dir_remove(&d);
}

#define NO_ARGS ((const char *const[]) { NULL })

TEST(host_name_address) {
        assert_refused("web:\n  listen_address: \"localhost:9469\"\n", NO_ARGS,
                       "agent.yaml:2:19: web.listen_address: 'localhost:9469' is not IPv4:port, [IPv6]:port or :port: "
                       "host names are not resolved",
                       NULL);
}

TEST(every_error_of_a_probe) {
        assert_refused("probes:\n"
                       "  - name: units\n"
                       "    type: systemd-unit\n"
                       "    units: [\"bad name\", \"no-dot\", ssh.service]\n",
                       NO_ARGS, "probes[0].units: 'bad name' is not a unit name",
                       "probes[0].units: 'no-dot' is not a unit name", NULL);
}

TEST(command_line_overrides) {
        assert_refused("probes: []\n",
                       (const char *const[]) { "--web.listen-address", "localhost:1", NULL },
                       "--web.listen-address: 'localhost:1' is not IPv4:port, [IPv6]:port or :port", NULL);
        assert_refused("probes: []\n", (const char *const[]) { "--web.listen-address", "127.0.0.1:0", NULL },
                       "--web.listen-address: '127.0.0.1:0' is not IPv4:port, [IPv6]:port or :port: port must be",
                       NULL);
}

TEST(listeners_on_one_port) {
        assert_refused("web:\n  listen_address: \":9470\"\n"
                       "probes:\n  - name: smtp\n    type: tcp\n    address: \"127.0.0.1:25\"\n"
                       "healing:\n  units: [postfix.service]\n  member_probes: [smtp]\n",
                       NO_ARGS,
                       "web.listen_address ':9470' and healing.agent_check_address ':9470' ask for the same port",
                       NULL);
        assert_refused("web:\n  listen_address: \"127.0.0.1:9469\"\n"
                       "probes:\n  - name: smtp\n    type: tcp\n    address: \"127.0.0.1:25\"\n"
                       "healing:\n  units: [postfix.service]\n  member_probes: [smtp]\n",
                       (const char *const[]) { "--web.listen-address", "127.0.0.1:9470", NULL },
                       "--web.listen-address '127.0.0.1:9470' and healing.agent_check_address ':9470'", NULL);
}

TEST(broken_web_config) {
        Dir d;
        _cleanup_free_ char *web = NULL, *yaml = NULL;

        dir_make(&d);
        web = dir_file(&d, "web.yml", "tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n");
        ASSERT_TRUE(asprintf(&yaml, "web:\n  config_file: %s\n", web) > 0);
        assert_refused(yaml, NO_ARGS, "cannot read /nonexistent/cert.pem", NULL);
        /* The same file named on the command line. */
        assert_refused("probes: []\n", (const char *const[]) { "--web.config.file", web, NULL },
                       "cannot read /nonexistent/cert.pem", NULL);
        dir_remove(&d);
}

TEST(files_that_do_not_parse) {
        assert_refused("probes: [\n", NO_ARGS, "agent.yaml:", NULL);
        assert_refused("nodes: x\n", NO_ARGS, "nodes: unknown key", NULL);
        assert_refused("", NO_ARGS, "the configuration is empty", NULL);
        assert_refused("probes:\n  - name: t\n    type: tcp\n    address: \"127.0.0.1:25\"\n    interval: 2h\n",
                       NO_ARGS, "probes[0].interval: 2h is out of range", NULL);
}

TEST(missing_file) {
        _cleanup_(run_done) Run check = run_agent("--check-config", "--config", "/nonexistent/agent.yaml");

        ASSERT_EQ(check.exit_code, 1);
        ASSERT_CONTAINS(check.err, "/nonexistent/agent.yaml");
}

TEST(example_passes) {
        const char *root = getenv("TEST_SOURCE_ROOT");
        _cleanup_free_ char *path = NULL;

        ASSERT_TRUE(root);
        ASSERT_TRUE(asprintf(&path, "%s/docs/agent.example.yaml", root) > 0);
        _cleanup_(run_done) Run check = run_agent("--check-config", "--config", path);
        ASSERT_EQ(check.exit_code, 0);
        ASSERT_STREQ(check.err, "");
        ASSERT_CONTAINS(check.out, ": OK, ");
}

DEFINE_TEST_MAIN()
