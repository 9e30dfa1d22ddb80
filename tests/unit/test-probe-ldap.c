/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The ldap probe against real slapd servers started by the test on
 * loopback: two controllers (one with the RuPost schema and TLS, one
 * without), a wrong password, a stopped controller, a black-holed one (a
 * listener that never accepts) beside a healthy one, the schema check of
 * the FreeIPA flavour, StartTLS and LDAPS with and without certificate
 * verification, and the configuration errors. Skipped (77) when slapd is
 * not installed. */

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "loopback.h"
#include "probe-run.h"

#define SVC_DN "cn=svc,dc=rupost,dc=test"
#define SVC_PASSWORD "svc-Secret-1"
#define SLAPD "/usr/sbin/slapd"
#define SLAPADD "/usr/sbin/slapadd"

typedef struct Slapd {
        char dir[128];
        uint16_t port;
        uint16_t tls_port;
        pid_t pid;
} Slapd;

static Slapd with_schema, without_schema;
static char workdir[64];
static char password_file[128], wrong_password_file[128], cert_file[256];

static void write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs(content, f);
        ASSERT_TRUE(fclose(f) == 0);
}

/* A self-signed certificate for 127.0.0.1, so that verification can pass
 * with it as the CA file and fail without. */
static void write_certificate(const char *cert_path, const char *key_path) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = X509_new();
        X509V3_CTX ctx;

        ASSERT_TRUE(key && cert);
        /* Version 3, or GnuTLS (slapd's TLS library) refuses the extensions. */
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(cert), 86400L);
        X509_set_pubkey(cert, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                   (const unsigned char *) "127.0.0.1", -1, -1, 0);
        X509_set_issuer_name(cert, X509_get_subject_name(cert));
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
        X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        ASSERT_TRUE(san && bc);
        X509_add_ext(cert, san, -1);
        X509_add_ext(cert, bc, -1);
        X509_EXTENSION_free(san);
        X509_EXTENSION_free(bc);
        ASSERT_TRUE(X509_sign(cert, key, EVP_sha256()) > 0);

        FILE *f = fopen(cert_path, "we");
        ASSERT_TRUE(f && PEM_write_X509(f, cert) == 1);
        fclose(f);
        f = fopen(key_path, "we");
        ASSERT_TRUE(f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
        fclose(f);
        X509_free(cert);
        EVP_PKEY_free(key);
}

static int run(char *const *argv, const char *log) {
        int status;
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        (void) dup2(fd, STDOUT_FILENO);
                        (void) dup2(fd, STDERR_FILENO);
                }
                execv(argv[0], argv);
                _exit(127);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void slapd_start(Slapd *s, bool rupost_schema, bool tls) {
        char path[256], conf[2048], ldif[1536], log[256], urls[128];

        snprintf(s->dir, sizeof s->dir, "%s/slapd-XXXXXX", workdir);
        ASSERT_TRUE(mkdtemp(s->dir));
        snprintf(path, sizeof path, "%s/db", s->dir);
        ASSERT_OK(mkdir(path, 0700));
        snprintf(log, sizeof log, "%s/log", s->dir);

        if (rupost_schema) {
                snprintf(path, sizeof path, "%s/rupost.schema", s->dir);
                write_file(path,
                           "attributetype ( 1.3.6.1.4.1.57980.3.1.2.1 NAME 'proxyAddresses'\n"
                           "  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch\n"
                           "  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n"
                           "objectclass ( 1.3.6.1.4.1.57980.3.1.1.1 NAME 'ruPostMailAccount'\n"
                           "  SUP top AUXILIARY MAY ( mail $ proxyAddresses ) )\n");
        }
        if (tls) {
                char key[256];
                snprintf(cert_file, sizeof cert_file, "%s/cert.pem", s->dir);
                snprintf(key, sizeof key, "%s/key.pem", s->dir);
                write_certificate(cert_file, key);
        }

        snprintf(conf, sizeof conf,
                 "include /etc/ldap/schema/core.schema\n"
                 "include /etc/ldap/schema/cosine.schema\n"
                 "include /etc/ldap/schema/inetorgperson.schema\n"
                 "%s%s%s"
                 "pidfile %s/slapd.pid\n"
                 "modulepath /usr/lib/ldap\n"
                 "moduleload back_mdb\n"
                 "%s%s%s%s%s"
                 "database mdb\n"
                 "maxsize 10485760\n"
                 "suffix \"dc=rupost,dc=test\"\n"
                 "rootdn \"cn=admin,dc=rupost,dc=test\"\n"
                 "rootpw admin-pw\n"
                 "directory %s/db\n"
                 "%s",
                 rupost_schema ? "include " : "", rupost_schema ? s->dir : "", rupost_schema ? "/rupost.schema\n" : "",
                 s->dir, tls ? "TLSCertificateFile " : "", tls ? cert_file : "", tls ? "\nTLSCertificateKeyFile " : "",
                 tls ? s->dir : "", tls ? "/key.pem\n" : "", s->dir,
                 /* The first server publishes its time to the service
                  * account (cn=Monitor), the second does not. */
                 rupost_schema ? "database monitor\n"
                                 "access to dn.subtree=\"cn=Monitor\" by dn.exact=\"" SVC_DN "\" read by * none\n"
                               : "");
        snprintf(path, sizeof path, "%s/slapd.conf", s->dir);
        write_file(path, conf);

        snprintf(ldif, sizeof ldif,
                 "dn: dc=rupost,dc=test\n"
                 "objectClass: dcObject\nobjectClass: organization\ndc: rupost\no: RuPost test\n\n"
                 "dn: ou=people,dc=rupost,dc=test\n"
                 "objectClass: organizationalUnit\nou: people\n\n"
                 "dn: " SVC_DN "\n"
                 "objectClass: person\ncn: svc\nsn: service\nuserPassword: " SVC_PASSWORD "\n\n"
                 "dn: uid=alice,ou=people,dc=rupost,dc=test\n"
                 "objectClass: inetOrgPerson\n%s"
                 "uid: alice\ncn: Alice\nsn: A\nmail: alice@rupost.test\n%s",
                 rupost_schema ? "objectClass: ruPostMailAccount\n" : "",
                 rupost_schema ? "proxyAddresses: smtp:a@rupost.test\nproxyAddresses: smtp:al@rupost.test\n" : "");
        char data[256];
        snprintf(data, sizeof data, "%s/data.ldif", s->dir);
        write_file(data, ldif);
        if (run((char *[]) { (char *) SLAPADD, (char *) "-q", (char *) "-f", path, (char *) "-l", data, NULL }, log) != 0) {
                fprintf(stderr, "slapadd failed, see %s\n", log);
                abort();
        }

        s->port = test_free_port();
        s->tls_port = tls ? test_free_port() : 0;
        if (tls)
                snprintf(urls, sizeof urls, "ldap://127.0.0.1:%u/ ldaps://127.0.0.1:%u/", s->port, s->tls_port);
        else
                snprintf(urls, sizeof urls, "ldap://127.0.0.1:%u/", s->port);

        s->pid = fork();
        ASSERT_TRUE(s->pid >= 0);
        if (s->pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        (void) dup2(fd, STDOUT_FILENO);
                        (void) dup2(fd, STDERR_FILENO);
                }
                /* Dies with the test, even when an assertion aborts it. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* -d keeps it in the foreground, as our child. */
                execl(SLAPD, SLAPD, "-d", "0", "-f", path, "-h", urls, (char *) NULL);
                _exit(127);
        }

        /* Ready once it listens. */
        for (int i = 0; i < 100; i++) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                          .sin_port = htons(s->port) };
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
                close(fd);
                if (r == 0)
                        return;
                ASSERT_TRUE(waitpid(s->pid, NULL, WNOHANG) == 0);
                usleep(50 * 1000);
        }
        fprintf(stderr, "slapd did not start, see %s\n", log);
        abort();
}

static void slapd_stop(Slapd *s) {
        if (s->pid <= 0)
                return;
        (void) kill(s->pid, SIGKILL);
        (void) waitpid(s->pid, NULL, 0);
        s->pid = 0;
}

static void cleanup(void) {
        slapd_stop(&with_schema);
        slapd_stop(&without_schema);
        if (workdir[0]) {
                pid_t pid = fork();
                if (pid == 0) {
                        execl("/bin/rm", "rm", "-rf", workdir, (char *) NULL);
                        _exit(127);
                }
                if (pid > 0)
                        (void) waitpid(pid, NULL, 0);
        }
}

static void setup_servers(void) {
        if (with_schema.pid > 0)
                return;
        if (access(SLAPD, X_OK) < 0 || access(SLAPADD, X_OK) < 0) {
                fprintf(stderr, "slapd is not installed, skipping\n");
                exit(77);
        }
        snprintf(workdir, sizeof workdir, "/tmp/rupost-test-ldap-XXXXXX");
        ASSERT_TRUE(mkdtemp(workdir));
        atexit(cleanup);

        snprintf(password_file, sizeof password_file, "%s/password", workdir);
        write_file(password_file, SVC_PASSWORD "\n");
        snprintf(wrong_password_file, sizeof wrong_password_file, "%s/wrong-password", workdir);
        write_file(wrong_password_file, "wrong-Pass-9\n");

        slapd_start(&with_schema, true, true);
        slapd_start(&without_schema, false, false);
}

/* A port where the kernel completes the handshake and nobody ever answers. */
static uint16_t black_hole(int *ret_fd) {
        uint16_t port;

        *ret_fd = test_loopback_socket(SOCK_STREAM, &port);
        return port;
}

/* Loads a one-probe config and runs it once. */
static Probe *run_probe(ProbeRun *run, const char *keys) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: dir\n"
                 "    type: ldap\n"
                 "    interval: 1h\n"
                 "    domain: rupost.test\n"
                 "%s",
                 keys);
        probe_run_load(run, yaml);
        return probe_run_once(run, 10 * USEC_PER_SEC);
}

static void run_done(ProbeRun *run) {
        run->config = config_free(run->config);
        /* Let killed children be reaped. */
        for (int i = 0; i < 5; i++)
                (void) sd_event_run(run->event, 10 * USEC_PER_MSEC);
        probe_run_done(run);
}

static char *keys(const char *controllers, const char *password, const char *extra) {
        char *s = NULL;
        ASSERT_TRUE(asprintf(&s,
                             "    controllers: [%s]\n"
                             "    bind_dn: \"" SVC_DN "\"\n"
                             "    password_file: %s\n"
                             "    search_filter: \"(mail=alice@rupost.test)\"\n"
                             "%s",
                             controllers, password, extra ?: "") >= 0);
        return s;
}

static char *url(const char *scheme, uint16_t port) {
        char *s = NULL;
        ASSERT_TRUE(asprintf(&s, "\"%s://127.0.0.1:%u\"", scheme, port) >= 0);
        return s;
}

TEST(healthy_controllers) {
        _cleanup_free_ char *a = NULL, *b = NULL, *list = NULL, *k = NULL;
        ProbeRun run = {};

        setup_servers();
        a = url("ldap", with_schema.port);
        b = url("ldap", without_schema.port);
        ASSERT_TRUE(asprintf(&list, "%s, %s", a, b) >= 0);
        k = keys(list, password_file, NULL);
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_OK);
        ASSERT_CONTAINS(p->last.reason, "domain rupost.test: all 2 controllers serve");
        ASSERT_CONTAINS(p->last.reason, "(mail=alice@rupost.test) found as uid=alice,ou=people,dc=rupost,dc=test");
        ASSERT_TRUE(probe_sample_value(p, "rupost_ldap_controllers_serving", "domain=\"rupost.test\"") == 2);
        char label[128];
        snprintf(label, sizeof label, "controller=\"ldap://127.0.0.1:%u\"", with_schema.port);
        ASSERT_TRUE(probe_sample_value(p, "rupost_ldap_controller_up", label) == 1);
        double bind = probe_sample_value(p, "rupost_ldap_bind_duration_seconds", label);
        double search = probe_sample_value(p, "rupost_ldap_search_duration_seconds", label);
        ASSERT_TRUE(bind > 0 && bind < 1);
        ASSERT_TRUE(search > 0 && search < 1);

        /* The clock of the controller that publishes it (OpenLDAP's monitor
         * backend), within the second it resolves; none for the other. */
        snprintf(label, sizeof label, "source=\"ldap://127.0.0.1:%u\"", with_schema.port);
        double offset = probe_sample_value(p, "rupost_time_offset_seconds", label);
        ASSERT_TRUE(offset >= -1 && offset <= 1);
        snprintf(label, sizeof label, "source=\"ldap://127.0.0.1:%u\"", without_schema.port);
        ASSERT_TRUE(probe_sample(p, "rupost_time_offset_seconds", label) == NULL);
        run_done(&run);
}

TEST(wrong_password_names_the_dn_never_the_password) {
        _cleanup_free_ char *a = NULL, *k = NULL;
        ProbeRun run = {};

        setup_servers();
        a = url("ldap", with_schema.port);
        k = keys(a, wrong_password_file, NULL);
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "no controller serves");
        ASSERT_CONTAINS(p->last.reason, "bind as '" SVC_DN "' rejected: Invalid credentials");
        ASSERT_CONTAINS(p->last.reason, wrong_password_file);
        ASSERT_NOT_CONTAINS(p->last.reason, "wrong-Pass-9");
        ASSERT_TRUE(probe_sample_value(p, "rupost_ldap_controllers_serving", NULL) == 0);
        run_done(&run);
}

TEST(stopped_controller_beside_a_healthy_one) {
        _cleanup_free_ char *a = NULL, *dead = NULL, *list = NULL, *k = NULL;
        ProbeRun run = {};

        setup_servers();
        uint16_t port = test_free_port();
        a = url("ldap", with_schema.port);
        dead = url("ldap", port);
        ASSERT_TRUE(asprintf(&list, "%s, %s", dead, a) >= 0);
        k = keys(list, password_file, NULL);
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_WARNING);
        char expect[160];
        snprintf(expect, sizeof expect, "1 of 2 controllers serve; failing: ldap://127.0.0.1:%u: connect failed: "
                                        "Can't contact LDAP server", port);
        ASSERT_CONTAINS(p->last.reason, expect);
        ASSERT_TRUE(probe_sample_value(p, "rupost_ldap_controllers_serving", NULL) == 1);
        run_done(&run);
}

TEST(black_holed_controller_costs_its_budget_only) {
        _cleanup_free_ char *a = NULL, *hole = NULL, *list = NULL, *k = NULL;
        ProbeRun run = {};
        int fd;

        setup_servers();
        uint16_t port = black_hole(&fd);
        a = url("ldap", with_schema.port);
        hole = url("ldap", port);
        ASSERT_TRUE(asprintf(&list, "%s, %s", hole, a) >= 0);
        k = keys(list, password_file, "    timeout: 3s\n    controller_timeout: 500ms\n");
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_WARNING);
        char expect[160];
        snprintf(expect, sizeof expect, "ldap://127.0.0.1:%u: no answer within 500ms while binding", port);
        ASSERT_CONTAINS(p->last.reason, expect);
        /* The budget and a little, never the probe's timeout. */
        ASSERT_TRUE(run.probe->last.duration >= 500 * USEC_PER_MSEC && run.probe->last.duration < 1000 * USEC_PER_MSEC);
        run_done(&run);
        close(fd);
}

TEST(no_controller_serves) {
        _cleanup_free_ char *dead = NULL, *hole = NULL, *list = NULL, *k = NULL;
        ProbeRun run = {};
        int fd;

        setup_servers();
        dead = url("ldap", test_free_port());
        hole = url("ldap", black_hole(&fd));
        ASSERT_TRUE(asprintf(&list, "%s, %s", dead, hole) >= 0);
        k = keys(list, password_file, "    timeout: 2s\n    controller_timeout: 300ms\n");
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "domain rupost.test: no controller serves: ");
        ASSERT_CONTAINS(p->last.reason, "connect failed");
        ASSERT_CONTAINS(p->last.reason, "no answer within 300ms while binding");
        ASSERT_TRUE(run.probe->last.duration < 800 * USEC_PER_MSEC);
        run_done(&run);
        close(fd);
}

TEST(entry_missing) {
        _cleanup_free_ char *a = NULL, *k = NULL;
        ProbeRun run = {};

        setup_servers();
        a = url("ldap", with_schema.port);
        ASSERT_TRUE(asprintf(&k,
                             "    controllers: [%s]\n"
                             "    bind_dn: \"" SVC_DN "\"\n"
                             "    password_file: %s\n"
                             "    search_filter: \"(mail=nobody@rupost.test)\"\n",
                             a, password_file) >= 0);
        Probe *p = run_probe(&run, k);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "no entry matches (mail=nobody@rupost.test) under dc=rupost,dc=test");
        run_done(&run);
}

TEST(freeipa_schema_check) {
        _cleanup_free_ char *a = NULL, *b = NULL, *ka = NULL, *kb = NULL;
        ProbeRun run = {};

        setup_servers();
        a = url("ldap", with_schema.port);
        ka = keys(a, password_file, "    flavor: freeipa\n");
        Probe *p = run_probe(&run, ka);
        ASSERT_EQ(p->last.status, PROBE_OK);
        run_done(&run);

        b = url("ldap", without_schema.port);
        kb = keys(b, password_file, "    flavor: aldpro\n");
        p = run_probe(&run, kb);
        ASSERT_EQ(p->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(p->last.reason, "objectClass ruPostMailAccount (1.3.6.1.4.1.57980.3.1.1.1) is missing from the "
                                        "schema of ldap://127.0.0.1:");
        ASSERT_CONTAINS(p->last.reason, "load the RuPost schema extension");
        run_done(&run);
}

TEST(tls) {
        _cleanup_free_ char *plain = NULL, *tls = NULL;
        char extra[512];
        ProbeRun run = {};

        setup_servers();
        plain = url("ldap", with_schema.port);
        tls = url("ldaps", with_schema.tls_port);
        static const struct {
                bool ldaps;
                const char *extra;
                bool ca_file;
                ProbeStatus status;
                const char *reason;
        } cases[] = {
                { false, "    starttls: true\n    tls_verify: false\n", false, PROBE_OK, "all 1 controllers serve" },
                { false, "    starttls: true\n", true, PROBE_OK, "all 1 controllers serve" },
                { true, "", true, PROBE_OK, "all 1 controllers serve" },
                { true, "    tls_verify: false\n", false, PROBE_OK, "all 1 controllers serve" },
                { true, "", false, PROBE_CRITICAL, "connect failed: Can't contact LDAP server" },
                { false, "    starttls: true\n", false, PROBE_CRITICAL, "StartTLS failed: Connect error" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *k = NULL;
                snprintf(extra, sizeof extra, "%s%s%s%s", cases[i].extra, cases[i].ca_file ? "    ca_file: " : "",
                         cases[i].ca_file ? cert_file : "", cases[i].ca_file ? "\n" : "");
                k = keys(cases[i].ldaps ? tls : plain, password_file, extra);
                Probe *p = run_probe(&run, k);
                ASSERT_EQ(p->last.status, cases[i].status);
                ASSERT_CONTAINS(p->last.reason, cases[i].reason);
                if (cases[i].status != PROBE_OK)
                        ASSERT_CONTAINS(p->last.reason, "check that the certificate verifies against ca_file");
                run_done(&run);
        }
}

TEST(config_errors) {
        static const struct {
                const char *keys;
                const char *error;
        } cases[] = {
                { "    controllers: [\"http://127.0.0.1:80\"]\n", "is not an LDAP URL" },
                { "    controllers: [\"ldapi://%2Frun%2Fslapd\"]\n", "only ldap:// and ldaps:// are supported" },
                { "    controllers: [\"not a url\"]\n", "is not an LDAP URL" },
                { "    controllers: [\"ldap://127.0.0.1:389/dc=x\"]\n", "put the search base into 'base'" },
                { "    controllers: [\"ldaps://127.0.0.1:636\"]\n    starttls: true\n",
                  "probes[0].starttls: 'ldaps://127.0.0.1:636' is ldaps://" },
                { "    controllers: [\"ldap://127.0.0.1\", \"ldap://127.0.0.1\"]\n", "listed twice" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    bind_dn: cn=x\n",
                  "bind_dn and password_file go together" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    flavor: novell\n",
                  "'novell' is not one of openldap, freeipa, aldpro, ad" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    search_filter: \"(mail=x\"\n",
                  "'(mail=x' is not a valid LDAP filter" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    base: dc=x\n", "is only used with search_filter" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    timeout: 2s\n    controller_timeout: 1800ms\n",
                  "controller_timeout: must leave at least 500ms" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    bind_dn: cn=x\n"
                  "    password_file: /nonexistent/secret\n",
                  "password_file: cannot use '/nonexistent/secret': No such file or directory" },
                { "    controllers: [\"ldap://127.0.0.1\"]\n    ca_file: /nonexistent/ca.pem\n",
                  "ca_file: cannot read '/nonexistent/ca.pem'" },
                { "    bind_dn: cn=x\n", "controllers" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char yaml[1024];

                snprintf(yaml, sizeof yaml, "probes:\n  - name: dir\n    type: ldap\n%s", cases[i].keys);
                test_config_load_fails(yaml, cases[i].error);
        }
}

int main(void) {
        /* Children are collected through sd-event, as in the agent. */
        test_block_sigchld();
        (void) signal(SIGPIPE, SIG_IGN);
        return tests_run();
}
