/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* A throwaway PostgreSQL server for tests: initdb into a temporary
 * directory, listening on 127.0.0.1 on a free port, with a superuser
 * "rupost" whose password is PG_SERVER_PASSWORD over TCP. PostgreSQL refuses
 * to run as root, so when the tests run as root the server's programs run as
 * the "postgres" account. The postmaster is a child of the test program and
 * dies with it. pg_server_start() returns -ENOENT when PostgreSQL
 * is not installed, so the caller can skip (exit 77). */

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "loopback.h"
#include "tests.h"

#define PG_SERVER_PASSWORD "s3cret-Pg-pass"

typedef struct PgServer {
        char bindir[256];
        char dir[64];
        char data[128];
        uint16_t port;
        bool running;
        pid_t pid;
        uid_t uid;
        gid_t gid;
} PgServer;

/* Runs argv as the server's account, output to <dir>/cmd.log; returns the
 * exit status. */
static inline int pg_server_run(PgServer *s, char *const *argv) {
        pid_t pid = fork();
        int status;

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                char log[160];
                snprintf(log, sizeof log, "%s/cmd.log", s->dir);
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        (void) dup2(fd, STDOUT_FILENO);
                        (void) dup2(fd, STDERR_FILENO);
                }
                if (geteuid() == 0 &&
                    (setgroups(0, NULL) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0))
                        _exit(126);
                execv(argv[0], argv);
                _exit(127);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static inline void pg_server_dump_log(PgServer *s) {
        static const char *const names[] = { "cmd.log", "server.log" };
        for (size_t i = 0; i < 2; i++) {
                char path[160], b[4096];
                snprintf(path, sizeof path, "%s/%s", s->dir, names[i]);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                size_t n = fread(b, 1, sizeof b - 1, f);
                b[n] = 0;
                fprintf(stderr, "--- %s:\n%s\n", path, b);
                fclose(f);
        }
}

static inline int pg_server_sql(PgServer *s, const char *db, const char *sql) {
        char psql[300], port[8];
        snprintf(psql, sizeof psql, "%s/psql", s->bindir);
        snprintf(port, sizeof port, "%u", s->port);
        /* Over the Unix socket, where initdb set up trust authentication. */
        return pg_server_run(s, (char *[]) { psql, (char *) "-X", (char *) "-q", (char *) "-h", s->dir,
                                             (char *) "-p", port, (char *) "-U", (char *) "rupost", (char *) "-d",
                                             (char *) db, (char *) "-v", (char *) "ON_ERROR_STOP=1",
                                             (char *) "-c", (char *) sql, NULL });
}

/* The postmaster runs as our child (not daemonized by pg_ctl) and dies with
 * the test program, even when an assertion aborts it: its backends notice
 * and exit, so no server outlives a failed test. */
static inline void pg_server_spawn(PgServer *s) {
        char postgres[300], log[160];
        snprintf(postgres, sizeof postgres, "%s/postgres", s->bindir);
        snprintf(log, sizeof log, "%s/server.log", s->dir);

        s->pid = fork();
        ASSERT_TRUE(s->pid >= 0);
        if (s->pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        (void) dup2(fd, STDOUT_FILENO);
                        (void) dup2(fd, STDERR_FILENO);
                }
                if (geteuid() == 0 &&
                    (setgroups(0, NULL) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0))
                        _exit(126);
                /* After setuid(), which clears it. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                execl(postgres, postgres, "-D", s->data, (char *) NULL);
                _exit(127);
        }
}

/* Blocks the test (not an agent) until the server takes connections. */
static inline void pg_server_wait_ready(PgServer *s) {
        char port[8];
        snprintf(port, sizeof port, "%u", s->port);
        const char *const k[] = { "hostaddr", "port", "dbname", "connect_timeout", NULL };
        const char *const v[] = { "127.0.0.1", port, "postgres", "2", NULL };

        for (int i = 0; i < 300; i++) {
                if (PQpingParams(k, v, 0) == PQPING_OK)
                        return;
                if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                        s->running = false;
                        pg_server_dump_log(s);
                        ASSERT_TRUE(!"the server exited while starting");
                }
                usleep(100 * 1000);
        }
        pg_server_dump_log(s);
        ASSERT_TRUE(!"the server did not start within 30s");
}

/* extra_conf: lines appended to postgresql.conf; standby: start in recovery. */
static inline int pg_server_start(PgServer *s, const char *extra_conf, bool standby) {
        glob_t g = {};
        char initdb[300], pwfile[160], conf[160];
        FILE *f;

        *s = (PgServer) {};
        if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
                globfree(&g);
                return -ENOENT;
        }
        /* The newest version sorts last. */
        snprintf(s->bindir, sizeof s->bindir, "%.*s", (int) (strlen(g.gl_pathv[g.gl_pathc - 1]) - 7),
                 g.gl_pathv[g.gl_pathc - 1]);
        globfree(&g);

        s->uid = geteuid();
        s->gid = getegid();
        if (s->uid == 0) {
                struct passwd *pw = getpwnam("postgres");
                if (!pw)
                        return -ENOENT;
                s->uid = pw->pw_uid;
                s->gid = pw->pw_gid;
        }

        snprintf(s->dir, sizeof s->dir, "/tmp/rupost-test-pg-XXXXXX");
        ASSERT_TRUE(mkdtemp(s->dir));
        ASSERT_OK(chown(s->dir, s->uid, s->gid));
        snprintf(s->data, sizeof s->data, "%s/data", s->dir);
        snprintf(pwfile, sizeof pwfile, "%s/pw", s->dir);
        f = fopen(pwfile, "we");
        ASSERT_TRUE(f);
        fputs(PG_SERVER_PASSWORD "\n", f);
        fclose(f);
        ASSERT_OK(chown(pwfile, s->uid, s->gid));

        snprintf(initdb, sizeof initdb, "%s/initdb", s->bindir);
        char pwopt[200];
        snprintf(pwopt, sizeof pwopt, "--pwfile=%s", pwfile);
        if (pg_server_run(s, (char *[]) { initdb, (char *) "-D", s->data, (char *) "-U", (char *) "rupost", pwopt,
                                          (char *) "--auth-local=trust", (char *) "--auth-host=scram-sha-256",
                                          (char *) "-E", (char *) "UTF8", (char *) "--locale=C",
                                          (char *) "--no-sync", NULL }) != 0) {
                pg_server_dump_log(s);
                ASSERT_TRUE(!"initdb failed");
        }

        s->port = test_free_port();
        snprintf(conf, sizeof conf, "%s/postgresql.conf", s->data);
        f = fopen(conf, "ae");
        ASSERT_TRUE(f);
        fprintf(f,
                "listen_addresses = '127.0.0.1'\n"
                "port = %u\n"
                "unix_socket_directories = '%s'\n"
                "fsync = off\n"
                /* A standby needs at least the primary's value, which initdb
                 * recorded as its default. */
                "%s\n"
                "%s\n",
                s->port, s->dir, standby ? "" : "max_connections = 20", extra_conf ?: "");
        fclose(f);

        if (standby) {
                char signal_file[160];
                snprintf(signal_file, sizeof signal_file, "%s/standby.signal", s->data);
                f = fopen(signal_file, "we");
                ASSERT_TRUE(f);
                fclose(f);
                ASSERT_OK(chown(signal_file, s->uid, s->gid));
        }

        pg_server_spawn(s);
        s->running = true;
        pg_server_wait_ready(s);
        return 0;
}

/* Asks the postmaster to stop (SIGTERM: smart, SIGINT: fast, SIGQUIT:
 * immediate); with wait, until it is gone. */
static inline void pg_server_signal(PgServer *s, int sig, bool wait) {
        if (!s->running)
                return;
        ASSERT_OK(kill(s->pid, sig));
        if (!wait)
                return;
        ASSERT_TRUE(waitpid(s->pid, NULL, 0) == s->pid);
        s->running = false;
}

static inline void pg_server_stop(PgServer *s) {
        pg_server_signal(s, SIGINT, true);
}

static inline void pg_server_remove(PgServer *s) {
        pg_server_signal(s, SIGQUIT, true);
        if (s->dir[0]) {
                pid_t pid = fork();
                ASSERT_TRUE(pid >= 0);
                if (pid == 0) {
                        execl("/bin/rm", "rm", "-rf", s->dir, (char *) NULL);
                        _exit(127);
                }
                (void) waitpid(pid, NULL, 0);
                s->dir[0] = 0;
        }
}
