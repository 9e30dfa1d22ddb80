/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tests.h"

/* Reads a type's own key back through its ConfigItem table, so the test does
 * not depend on the layout of the type's private object. */
static void *probe_field(Probe *p, const char *key, ConfigParser parser) {
        for (const ConfigItem *i = p->type->config_items; i && i->key; i++)
                if (streq(i->key, key)) {
                        ASSERT_TRUE(i->parse == parser);
                        return (uint8_t *) probe_get_userdata(p) + i->offset;
                }
        ASSERT_FAIL("type %s has no key %s", p->type->name, key);
}

static Config *load_ok(const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *c = NULL;
        int r;

        r = config_load_string("test.yaml", yaml, strlen(yaml), &c, &errors);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "unexpected: %s\n", *e);
        ASSERT_OK(r);
        ASSERT_TRUE(c);
        ASSERT_TRUE(!errors);
        return c;
}

/* Loads `yaml` as test.yaml and asserts that exactly the given errors (each
 * the start of a line: "file:line:column: key: what") came out, in order. */
_sentinel_ static void assert_errors(const char *yaml, ...) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        const char *expected;
        size_t n = 0;
        va_list ap;
        int r;

        r = config_load_string("test.yaml", yaml, strlen(yaml), &c, &errors);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "  got: %s\n", *e);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_TRUE(!c);
        ASSERT_TRUE(errors);

        va_start(ap, yaml);
        while ((expected = va_arg(ap, const char *))) {
                if (!errors[n])
                        ASSERT_FAIL("missing error \"%s\"", expected);
                if (strncmp(errors[n], expected, strlen(expected)) != 0)
                        ASSERT_FAIL("error %zu is \"%s\", expected it to start with \"%s\"", n, errors[n],
                                    expected);
                n++;
        }
        va_end(ap);
        if (errors[n])
                ASSERT_FAIL("unexpected extra error \"%s\"", errors[n]);
}

TEST(full_round_trip) {
        _cleanup_(config_freep) Config *c = load_ok(
                "node: mail1.example\n"
                "web:\n"
                "  listen_address: \"[::1]:9470\"\n"
                "control_socket: /run/test/control.sock\n"
                "probes:\n"
                "  - name: mail-units\n"
                "    type: systemd-unit\n"
                "    units: [postfix.service, dovecot.service]\n"
                "    interval: 1m30s\n"
                "    timeout: 250ms\n"
                "    rise: 4\n"
                "    fall: 100\n"
                "  - type: tcp        # type before name must work too\n"
                "    name: imaps_1.0\n"
                "    address: 127.0.0.1:993\n"
                "    tls: yes\n"
                "    expect: \"* OK\"\n"
                "    server_name: mail.example.org\n"
                "    interval: 100ms\n"
                "    timeout: 100ms\n"
                "    rise: 1\n"
                "    fall: 1\n");

        ASSERT_STREQ(c->path, "test.yaml");
        ASSERT_STREQ(c->node, "mail1.example");
        ASSERT_STREQ(c->web_listen_address, "[::1]:9470");
        ASSERT_STREQ(c->control_socket, "/run/test/control.sock");
        ASSERT_EQ(c->n_probes, 2);

        Probe *u = c->probes[0];
        ASSERT_STREQ(u->name, "mail-units");
        ASSERT_STREQ(u->type->name, "systemd-unit");
        ASSERT_EQ(u->interval, 90 * USEC_PER_SEC);
        ASSERT_EQ(u->timeout, 250 * USEC_PER_MSEC);
        ASSERT_EQ(u->rise, 4);
        ASSERT_EQ(u->fall, 100);
        char **units = *(char ***) probe_field(u, "units", config_parse_strv);
        ASSERT_EQ(strv_length(units), 2);
        ASSERT_STREQ(units[0], "postfix.service");
        ASSERT_STREQ(units[1], "dovecot.service");

        Probe *t = c->probes[1];
        ASSERT_STREQ(t->name, "imaps_1.0");
        ASSERT_STREQ(t->type->name, "tcp");
        ASSERT_EQ(t->interval, 100 * USEC_PER_MSEC);
        ASSERT_EQ(t->timeout, 100 * USEC_PER_MSEC);
        ASSERT_EQ(t->rise, 1);
        ASSERT_EQ(t->fall, 1);
        ASSERT_STREQ(*(char **) probe_field(t, "address", config_parse_address), "127.0.0.1:993");
        ASSERT_TRUE(*(bool *) probe_field(t, "tls", config_parse_bool));
        ASSERT_STREQ(*(char **) probe_field(t, "expect", config_parse_string), "* OK");
        ASSERT_STREQ(*(char **) probe_field(t, "server_name", config_parse_string), "mail.example.org");
}

TEST(defaults) {
        _cleanup_(config_freep) Config *c = load_ok(
                "probes:\n"
                "  - name: smtp\n"
                "    type: tcp\n"
                "    address: :25\n"
                "  - name: units\n"
                "    type: systemd-unit\n"
                "    units: [cron.service]\n"
                "    interval: 1s\n");
        char host[256] = {};

        ASSERT_OK(gethostname(host, sizeof host - 1));
        ASSERT_STREQ(c->node, host);
        ASSERT_STREQ(c->web_listen_address, CONFIG_DEFAULT_WEB_LISTEN_ADDRESS);
        ASSERT_STREQ(c->control_socket, CONFIG_DEFAULT_CONTROL_SOCKET);
        ASSERT_EQ(c->n_probes, 2);

        Probe *t = c->probes[0];
        ASSERT_EQ(t->interval, t->type->default_interval);
        ASSERT_EQ(t->timeout, t->type->default_timeout);
        ASSERT_EQ(t->rise, t->type->default_rise);
        ASSERT_EQ(t->fall, t->type->default_fall);
        ASSERT_FALSE(*(bool *) probe_field(t, "tls", config_parse_bool));
        ASSERT_TRUE(!*(char **) probe_field(t, "expect", config_parse_string));
        ASSERT_TRUE(!*(char **) probe_field(t, "server_name", config_parse_string));

        /* A type's default timeout longer than a configured interval is cut to it. */
        Probe *u = c->probes[1];
        ASSERT_TRUE(u->type->default_timeout > USEC_PER_SEC);
        ASSERT_EQ(u->interval, USEC_PER_SEC);
        ASSERT_EQ(u->timeout, USEC_PER_SEC);

        /* No probes at all is a valid (if quiet) configuration. */
        _cleanup_(config_freep) Config *d = load_ok("node: n1\n");
        ASSERT_EQ(d->n_probes, 0);
        ASSERT_STREQ(d->node, "n1");
}

TEST(yaml_syntax_error) {
        assert_errors("node: n1\nprobes: [a, b\n",
                      "test.yaml:3:1: did not find expected ',' or ']' (while parsing a flow sequence at line 2, column 9)",
                      NULL);
        assert_errors("web:\n  listen_address: :1\n bad: 1\n",
                      "test.yaml:3:2: did not find expected key (while parsing a block mapping at line 1, column 1)",
                      NULL);
        /* Reader errors have no mark of their own; the position is computed. */
        assert_errors("node: n1\nweb: \xff\n", "test.yaml:2:6: invalid leading UTF-8 octet (byte 0xff)", NULL);
        assert_errors("node: a\n---\nnode: b\n",
                      "test.yaml:3:1: a second YAML document; the configuration must be a single document", NULL);
}

TEST(unknown_keys) {
        assert_errors("nodes: n1\n",
                      "test.yaml:1:1: nodes: unknown key; expected one of: node, web, control_socket, probes", NULL);
        assert_errors("web:\n  listen: :1\n",
                      "test.yaml:2:3: web.listen: unknown key; expected one of: listen_address", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    address: 127.0.0.1:25\n"
                      "    intervall: 5s\n",
                      "test.yaml:5:5: probes[0].intervall: unknown key; expected one of: name, type, interval, "
                      "timeout, rise, fall, address, tls, expect, server_name",
                      NULL);
        /* Another type's key. */
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: systemd-unit\n"
                      "    units: [a.service]\n"
                      "    address: 127.0.0.1:25\n",
                      "test.yaml:5:5: probes[0].address: unknown key; expected one of: name, type, interval, "
                      "timeout, rise, fall, units",
                      NULL);
        /* A key that is not a name. */
        assert_errors("[a]: 1\n", "test.yaml:1:1: expected a key name, got a list", NULL);
}

TEST(wrong_node_kinds) {
        assert_errors("web: :9469\n", "test.yaml:1:6: web: expected a mapping, got a scalar", NULL);
        assert_errors("node: [a]\n", "test.yaml:1:7: node: expected a string, got a list", NULL);
        assert_errors("node:\n", "test.yaml:1:6: node: expected a string, got no value", NULL);
        assert_errors("probes: {a: 1}\n", "test.yaml:1:9: probes: expected a list of probes, got a mapping", NULL);
        assert_errors("probes: [x]\n", "test.yaml:1:10: probes[0]: expected a mapping, got a scalar", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: systemd-unit\n"
                      "    units: cron.service\n"
                      "    rise: {a: 1}\n"
                      "    interval: [1s]\n",
                      "test.yaml:4:12: probes[0].units: expected a list, got a scalar",
                      "test.yaml:5:11: probes[0].rise: expected a number, got a mapping",
                      "test.yaml:6:15: probes[0].interval: expected a duration, got a list",
                      NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: systemd-unit\n"
                      "    units: [a.service, [b], \"\"]\n",
                      "test.yaml:4:24: probes[0].units[1]: expected a string, got a list",
                      "test.yaml:4:29: probes[0].units[2]: is empty",
                      NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    address: 127.0.0.1:25\n"
                      "    tls: maybe\n",
                      "test.yaml:5:10: probes[0].tls: 'maybe' is not a boolean (true, false, yes or no)", NULL);
}

static const char *probe_with(const char *line) {
        static char buf[512];

        snprintf(buf, sizeof buf,
                 "probes:\n"
                 "  - name: x\n"
                 "    type: tcp\n"
                 "    address: 127.0.0.1:25\n"
                 "    %s\n",
                 line);
        return buf;
}

TEST(numbers) {
        assert_errors(probe_with("rise: 101"), "test.yaml:5:11: probes[0].rise: 101 is out of range 1..100", NULL);
        assert_errors(probe_with("rise: 0"), "test.yaml:5:11: probes[0].rise: 0 is out of range 1..100", NULL);
        assert_errors(probe_with("fall: 99999999999999999999999"),
                      "test.yaml:5:11: probes[0].fall: 99999999999999999999999 is out of range 1..100", NULL);
        static const char *const not_numbers[] = { "-1", "+5", "0x10", "010", "1e2", "\" 5\"", "\"5 \"", "1.0", "five" };
        for (size_t i = 0; i < ELEMENTSOF(not_numbers); i++) {
                char line[64];
                snprintf(line, sizeof line, "fall: %s", not_numbers[i]);
                assert_errors(probe_with(line), "test.yaml:5:11: probes[0].fall: '", NULL);
        }
        assert_errors(probe_with("fall: 0x10"), "test.yaml:5:11: probes[0].fall: '0x10' is not a decimal number", NULL);
}

TEST(durations) {
        assert_errors(probe_with("interval: 2h"),
                      "test.yaml:5:15: probes[0].interval: 2h is out of range 100ms..3600s", NULL);
        assert_errors(probe_with("interval: 99ms"),
                      "test.yaml:5:15: probes[0].interval: 99ms is out of range 100ms..3600s", NULL);
        assert_errors(probe_with("timeout: 9ms"), "test.yaml:5:14: probes[0].timeout: 9ms is out of range 10ms..3600s",
                      NULL);
        assert_errors(probe_with("interval: 10"),
                      "test.yaml:5:15: probes[0].interval: '10' is not a duration (like 250ms, 5s or 1m30s)", NULL);
        assert_errors(probe_with("interval: 5 s"), "test.yaml:5:15: probes[0].interval: '5 s' is not a duration", NULL);
        assert_errors(probe_with("interval: 99999999999999999999h"),
                      "test.yaml:5:15: probes[0].interval: 99999999999999999999h is out of range", NULL);
}

TEST(timeout_longer_than_interval) {
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    address: 127.0.0.1:25\n"
                      "    timeout: 2s\n"
                      "    interval: 1s\n",
                      "test.yaml:5:14: probes[0].timeout: 2s is longer than the interval 1s; runs of a probe must "
                      "never overlap",
                      NULL);
        /* Against the type's default interval (tcp: 10s). */
        assert_errors(probe_with("timeout: 11s"),
                      "test.yaml:5:14: probes[0].timeout: 11s is longer than the interval 10s (the default)", NULL);
}

TEST(missing_required_keys) {
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    tls: true\n",
                      "test.yaml:2:5: probes[0].address: required key is missing", NULL);
        assert_errors("probes:\n"
                      "  - type: tcp\n"
                      "    address: 127.0.0.1:25\n",
                      "test.yaml:2:5: probes[0].name: required key is missing", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    address: 127.0.0.1:25\n",
                      "test.yaml:2:5: probes[0].type: required key is missing", NULL);
}

TEST(probe_types_and_names) {
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: no-such-type\n",
                      "test.yaml:3:11: probes[0].type: unknown probe type 'no-such-type'; known types: systemd-unit, tcp, ", NULL);
        assert_errors("probes:\n"
                      "  - {name: a, type: tcp, address: 127.0.0.1:25}\n"
                      "  - {name: b, type: tcp, address: 127.0.0.1:25}\n"
                      "  - {name: a, type: tcp, address: 127.0.0.1:26}\n",
                      "test.yaml:4:12: probes[2].name: duplicate probe name 'a' (first at line 2, column 12)", NULL);
        assert_errors("probes:\n"
                      "  - {name: \"a b\", type: tcp, address: 127.0.0.1:25}\n"
                      "  - {name: \"\", type: tcp, address: 127.0.0.1:25}\n"
                      "  - {name: x012345678901234567890123456789012345678901234567890123456789abcd, type: tcp, "
                      "address: 127.0.0.1:25}\n",
                      "test.yaml:2:12: probes[0].name: 'a b' is not a valid probe name",
                      "test.yaml:3:12: probes[1].name: '' is not a valid probe name",
                      "test.yaml:4:12: probes[2].name: 'x012345678901234567890123456789012345678901234567890123456789abc...' "
                      "is not a valid probe name",
                      NULL);
}

TEST(duplicate_keys) {
        assert_errors("node: a\nnode: b\n", "test.yaml:2:1: node: duplicate key (first at line 1, column 1)", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    address: 127.0.0.1:25\n"
                      "    rise: 2\n"
                      "    rise: 3\n",
                      "test.yaml:6:5: probes[0].rise: duplicate key (first at line 5, column 5)", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    type: systemd-unit\n"
                      "    address: 127.0.0.1:25\n",
                      "test.yaml:4:5: probes[0].type: duplicate key (first at line 3, column 5)", NULL);
}

TEST(document_shape) {
        assert_errors("", "test.yaml:1:1: the configuration is empty", NULL);
        assert_errors("# only a comment\n\n", "test.yaml:1:1: the configuration is empty", NULL);
        assert_errors("---\n...\n", "test.yaml:1:1: the configuration is empty", NULL);
        assert_errors("- a\n- b\n", "test.yaml:1:1: the configuration must be a mapping of keys, got a list", NULL);
        assert_errors("\nhello\n", "test.yaml:2:1: the configuration must be a mapping of keys, got a scalar", NULL);
}

TEST(addresses) {
        static const char *const good[] = { ":9469", "127.0.0.1:9469", "[::]:1", "[2001:db8::1]:65535" };
        /* The grammar itself is test-sockaddr's; here the message. */
        static const struct {
                const char *address;
                const char *why;
        } bad[] = {
                { "9469", "missing ':port'" },
                { "::1:9469", "IPv6 addresses need brackets" },
                { "127.0.0.1:0", "port must be a number 1..65535" },
                { "ho st:1", "invalid character in the address" },
                { "localhost:9469", "host names are not resolved" },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                char yaml[128];
                snprintf(yaml, sizeof yaml, "web:\n  listen_address: \"%s\"\n", good[i]);
                _cleanup_(config_freep) Config *c = load_ok(yaml);
                ASSERT_STREQ(c->web_listen_address, good[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char yaml[128], expected[256];
                snprintf(yaml, sizeof yaml, "web:\n  listen_address: \"%s\"\n", bad[i].address);
                snprintf(expected, sizeof expected,
                         "test.yaml:2:19: web.listen_address: '%s' is not IPv4:port, [IPv6]:port or :port: %s",
                         bad[i].address, bad[i].why);
                assert_errors(yaml, expected, NULL);
        }
}

/* Every address key speaks the one grammar, and a name is refused in all of
 * them: start-up never resolves one (issue 11: "localhost:9469" passed the
 * check and was fatal at start). */
TEST(every_address_key_refuses_names) {
        assert_errors("probes:\n"
                      "  - name: smtp\n"
                      "    type: tcp\n"
                      "    address: \"localhost:25\"\n"
                      "  - name: imap\n"
                      "    type: imap\n"
                      "    address: \"localhost:143\"\n"
                      "  - name: cache\n"
                      "    type: memcached\n"
                      "    address: \"localhost:11211\"\n"
                      "healing:\n"
                      "  units: [postfix.service]\n"
                      "  member_probes: [smtp]\n"
                      "  agent_check_address: \"localhost:9470\"\n"
                      "cluster:\n"
                      "  conninfo: \"hostaddr=127.0.0.1 dbname=rupost\"\n"
                      "  peer_address: \"localhost:9471\"\n"
                      "web:\n"
                      "  listen_address: \"localhost:9469\"\n",
                      "test.yaml:4:14: probes[0].address: 'localhost:25' is not IPv4:port",
                      "test.yaml:7:14: probes[1].address: 'localhost:143' is not IPv4:port",
                      "test.yaml:10:14: probes[2].address: 'localhost:11211' is not IPv4:port",
                      "test.yaml:14:24: healing.agent_check_address: 'localhost:9470' is not IPv4:port",
                      "test.yaml:17:17: cluster.peer_address: 'localhost:9471' is not IPv4:port",
                      "test.yaml:19:19: web.listen_address: 'localhost:9469' is not IPv4:port",
                      /* smtp was refused, so it is not there to be a member. */
                      "test.yaml:12:3: healing.member_probes: no probe is named 'smtp'", NULL);
}

TEST(strings_and_paths) {
        assert_errors("control_socket: run/x.sock\n",
                      "test.yaml:1:17: control_socket: 'run/x.sock' is not an absolute path", NULL);
        assert_errors("control_socket: /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n",
                      "test.yaml:1:17: control_socket: is longer than 107 bytes", NULL);
        assert_errors("node: \"a\\0b\"\n", "test.yaml:1:7: node: contains a NUL character", NULL);
        assert_errors("node: \"bad\\nname\"\n", "test.yaml:1:7: node: 'bad\\x0aname' is not a valid node name", NULL);
        assert_errors(probe_with("expect: \"\""), "test.yaml:5:13: probes[0].expect: is empty", NULL);
}

/* Errors a probe type reports from verify() point at the probe's own key. */
TEST(type_verify_errors) {
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: tcp\n"
                      "    address: localhost:25\n",
                      "test.yaml:4:14: probes[0].address: ", NULL);
        assert_errors("probes:\n"
                      "  - name: x\n"
                      "    type: systemd-unit\n"
                      "    units: [cron]\n",
                      "test.yaml:4:12: probes[0].units: ", NULL);
}

TEST(aliases) {
        /* A scalar may be reused... */
        _cleanup_(config_freep) Config *c = load_ok("probes:\n"
                                                    "  - {name: &n a, type: tcp, address: &a 127.0.0.1:25}\n"
                                                    "  - {name: b, type: tcp, address: *a}\n");
        ASSERT_STREQ(*(char **) probe_field(c->probes[1], "address", config_parse_address), "127.0.0.1:25");

        /* ...a list or mapping may not: that is how small files blow up, or loop. */
        assert_errors("probes:\n"
                      "  - name: a\n"
                      "    type: systemd-unit\n"
                      "    units: &u [a.service]\n"
                      "  - name: b\n"
                      "    type: systemd-unit\n"
                      "    units: *u\n",
                      "test.yaml:4:12: this list is used again through a YAML alias; only scalars may be reused",
                      NULL);
        assert_errors("&r {web: *r}\n",
                      "test.yaml:1:1: this mapping is used again through a YAML alias", NULL);
}

TEST(errors_are_all_listed) {
        /* One run lists every mistake, in file order. */
        assert_errors("nodes: x\n"
                      "web:\n"
                      "  listen_address: nowhere\n"
                      "probes:\n"
                      "  - name: a\n"
                      "    type: tcp\n"
                      "    address: 127.0.0.1:25\n"
                      "    rise: 0\n"
                      "    fall: 0\n"
                      "  - name: b\n"
                      "    type: nope\n"
                      "  - name: a\n"
                      "    type: systemd-unit\n",
                      "test.yaml:1:1: nodes: unknown key",
                      "test.yaml:3:19: web.listen_address: 'nowhere' is not IPv4:port",
                      "test.yaml:8:11: probes[0].rise: 0 is out of range 1..100",
                      "test.yaml:9:11: probes[0].fall: 0 is out of range 1..100",
                      "test.yaml:11:11: probes[1].type: unknown probe type 'nope'",
                      "test.yaml:12:11: probes[2].name: duplicate probe name 'a' (first at line 5, column 11)",
                      "test.yaml:12:5: probes[2].units: required key is missing",
                      NULL);
}

_printf_(4, 5) static size_t appendf(char *buf, size_t size, size_t pos, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf + pos, size - pos, fmt, ap);
        va_end(ap);
        ASSERT_TRUE(n >= 0 && (size_t) n < size - pos);
        return pos + (size_t) n;
}

TEST(limits) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_free_ char *big = NULL;
        Config *c = NULL;
        size_t n = 0;
        size_t pos;

        /* Over the size limit: rejected before parsing. */
        big = malloc(CONFIG_MAX_FILE_SIZE + 1);
        ASSERT_TRUE(big);
        memset(big, '#', CONFIG_MAX_FILE_SIZE + 1);
        ASSERT_ERROR(config_load_string("test.yaml", big, CONFIG_MAX_FILE_SIZE + 1, &c, &errors), EINVAL);
        ASSERT_STREQ(errors[0], "test.yaml: larger than the limit of 1048576 bytes");
        ASSERT_TRUE(!errors[1]);
        errors = strv_free(errors);

        /* A file far over it: read only up to the limit, and no size claimed
         * that the file does not have (50 MB, sparse). */
        char path[] = "/tmp/test-config-big-XXXXXX";
        int fd = mkostemp(path, O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, 50 * 1024 * 1024));
        close(fd);
        ASSERT_ERROR(config_load_file(path, &c, &errors), EINVAL);
        ASSERT_CONTAINS(errors[0], ": larger than the limit of 1048576 bytes");
        ASSERT_NOT_CONTAINS(errors[0], "1048577");
        ASSERT_OK(unlink(path));
        errors = strv_free(errors);

        /* More probes than allowed; exactly the limit is fine. */
        for (int n_probes = CONFIG_MAX_PROBES; n_probes <= CONFIG_MAX_PROBES + 1; n_probes++) {
                pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, 0, "probes:\n");
                for (int i = 0; i < n_probes; i++)
                        pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, pos,
                                      "  - {name: p%d, type: tcp, address: 127.0.0.1:25}\n", i);
                if (n_probes > CONFIG_MAX_PROBES)
                        assert_errors(big, "test.yaml:2:3: probes: has 1025 probes, more than the limit of 1024", NULL);
                else {
                        _cleanup_(config_freep) Config *ok = load_ok(big);
                        ASSERT_EQ(ok->n_probes, CONFIG_MAX_PROBES);
                }
        }

        /* Deep nesting and many anchors make libyaml slow (quadratic): both are
         * stopped early. This file would keep it busy for minutes. */
        memset(big, '[', CONFIG_MAX_FILE_SIZE);
        memcpy(big, "node: ", 6);
        big[CONFIG_MAX_FILE_SIZE] = '\0';
        assert_errors(big, "test.yaml:1:38: nested deeper than 32 levels", NULL);

        pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, 0, "node: [");
        for (int i = 0; i < 300; i++)
                pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, pos, "&a%d x, ", i);
        assert_errors(big, "test.yaml:1:2202: more than 256 anchors", NULL);

        pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, 0, "node: [&a x");
        for (int i = 0; i < 1100; i++)
                pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, pos, ", *a");
        appendf(big, CONFIG_MAX_FILE_SIZE + 1, pos, "]\n");
        assert_errors(big, "test.yaml:1:4110: more than 1024 aliases", NULL);

        /* The error list is bounded too. */
        pos = 0;
        for (int i = 0; i < 500; i++)
                pos = appendf(big, CONFIG_MAX_FILE_SIZE + 1, pos, "k%d: 1\n", i);
        ASSERT_ERROR(config_load_string("test.yaml", big, strlen(big), &c, &errors), EINVAL);
        n = strv_length(errors);
        ASSERT_EQ(n, 101);
        ASSERT_STREQ(errors[100], "test.yaml: too many errors, only the first 100 are listed");
}

TEST(load_file) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        char path[] = "/tmp/test-config-XXXXXX";
        int fd;

        ASSERT_ERROR(config_load_file("/nonexistent/agent.yaml", &c, &errors), ENOENT);
        ASSERT_STREQ(errors[0], "/nonexistent/agent.yaml: cannot open: No such file or directory");
        ASSERT_TRUE(!errors[1]);
        errors = strv_free(errors);

        ASSERT_ERROR(config_load_file("/", &c, &errors), EISDIR);
        ASSERT_STREQ(errors[0], "/: not a regular file: Is a directory");
        errors = strv_free(errors);

        fd = mkstemp(path);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, "node: f1\nrise: 1\n", 17), 17);
        close(fd);
        ASSERT_ERROR(config_load_file(path, &c, &errors), EINVAL);
        ASSERT_TRUE(!c);
        ASSERT_EQ(strv_length(errors), 1);
        ASSERT_TRUE(strncmp(errors[0], path, strlen(path)) == 0);
        ASSERT_CONTAINS(errors[0], ":2:1: rise: unknown key");
        errors = strv_free(errors);

        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, "node: f1\n", 9), 9);
        close(fd);
        ASSERT_OK(config_load_file(path, &c, &errors));
        ASSERT_TRUE(!errors);
        ASSERT_STREQ(c->path, path);
        ASSERT_STREQ(c->node, "f1");
        ASSERT_OK(unlink(path));
}

TEST(example_file_loads) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *path = NULL;
        const char *root = getenv("TEST_SOURCE_ROOT");
        int r;

        ASSERT_TRUE(root);
        ASSERT_TRUE(asprintf(&path, "%s/docs/agent.example.yaml", root) > 0);
        r = config_load_file(path, &c, &errors);
        for (char **e = errors; e && *e; e++)
                fprintf(stderr, "%s\n", *e);
        ASSERT_OK(r);
        ASSERT_TRUE(c->n_probes >= 2);
}

DEFINE_TEST_MAIN();
