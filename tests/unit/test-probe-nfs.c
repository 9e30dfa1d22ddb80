/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The nfs probe against real mounts in a private mount namespace: tmpfs
 * stands in for a healthy share (owner, options, space), and a FUSE
 * filesystem served by a forked process that reads every request and never
 * answers stands in for an NFS server that went away. Such a mount leaves a
 * stat() in uninterruptible sleep, immune to SIGKILL, exactly like a hard NFS
 * mount. The test proves the deadline ends the run, the event loop stays on
 * time meanwhile, no second child is spawned while the first is stuck, and
 * the stuck child is reaped once the server is gone.
 *
 * Needs root (mounts) and /dev/fuse; skipped (exit 77) without them. */

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fuse-hang.h"
#include "lib/child.h"
#include "probe-run.h"

static void setup_namespace(void) {
        static bool done = false;
        sigset_t mask;

        if (done)
                return;
        if (geteuid() != 0) {
                fprintf(stderr, "skipped: needs root to mount test filesystems\n");
                exit(77);
        }
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                fprintf(stderr, "skipped: cannot make a private mount namespace: %m\n");
                exit(77);
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        ASSERT_OK(sigprocmask(SIG_BLOCK, &mask, NULL));
        done = true;
}

static char *make_dir(void) {
        char *d = strdup("/tmp/rupost-test-nfs-XXXXXX");
        ASSERT_TRUE(d && mkdtemp(d));
        return d;
}

static char *mount_tmpfs(const char *options, unsigned long flags) {
        char *d = make_dir();
        ASSERT_OK(mount("tmpfs", d, "tmpfs", flags, options));
        return d;
}

static void unmount_dir(char *d) {
        (void) umount2(d, MNT_DETACH);
        (void) rmdir(d);
        free(d);
}

static void run_load_timeout(ProbeRun *run, const char *path, const char *timeout, const char *keys) {
        char yaml[2048];

        snprintf(yaml, sizeof yaml,
                 "node: test\n"
                 "probes:\n"
                 "  - name: queues\n"
                 "    type: nfs\n"
                 "    interval: 1h\n"
                 "    timeout: %s\n"
                 "    path: \"%s\"\n"
                 "%s",
                 timeout, path, keys);
        probe_run_load(run, yaml);
}

static void run_load(ProbeRun *run, const char *path, const char *keys) {
        run_load_timeout(run, path, "2s", keys);
}

TEST(nfs_healthy_share) {
        setup_namespace();
        char *d = mount_tmpfs("size=64m,mode=0755", 0);
        char canary[256];
        ProbeRun run = {};

        ASSERT_OK(chown(d, 420, 420));
        run_load(&run, d, "    fstype: tmpfs\n");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_OK);
        ASSERT_CONTAINS(run.probe->last.reason, ": tmpfs, owner 420:420, write+fsync+read+unlink in ");
        ASSERT_CONTAINS(run.probe->last.reason, "100% space free (64.0 MiB of 64.0 MiB)");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_mount_present", NULL) == 1);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_mount_responsive", NULL) == 1);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_owner_ok", NULL) == 1);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_filesystem_size_bytes", NULL) == 64.0 * 1024 * 1024);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_filesystem_avail_bytes", NULL) > 0);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_filesystem_files_free", NULL) > 0);
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_check_duration_seconds", NULL) < 2);
        /* The canary's mtime is our own clock here. */
        ASSERT_TRUE(fabs(probe_sample_value(run.probe, "rupost_time_offset_seconds", NULL)) < 0.5);
        /* The canary is named after the node and does not stay behind. */
        snprintf(canary, sizeof canary, "%s/.rupost-agent-test", d);
        ASSERT_TRUE(access(canary, F_OK) < 0 && errno == ENOENT);
        probe_run_done(&run);
        unmount_dir(d);
}

TEST(nfs_findings) {
        static const struct {
                const char *name;
                const char *tmpfs_options;
                unsigned long flags;
                unsigned uid;
                const char *keys;
                ProbeStatus status;
                const char *reason;
                const char *reason2;
        } cases[] = {
                { "wrong owner", "size=8m", 0, 0, "    fstype: tmpfs\n", PROBE_CRITICAL,
                  "owner is 0:0, expected 420:420: run chown -R 420:420 /tmp/rupost-test-nfs-", " on the NFS server" },
                { "configured owner", "size=8m", 0, 0, "    fstype: tmpfs\n    owner: \"0:0\"\n", PROBE_OK,
                  "owner 0:0" },
                { "not NFS", "size=8m", 0, 420, "", PROBE_CRITICAL, " is mounted as tmpfs from tmpfs, expected nfs4" },
                { "option missing", "size=8m", 0, 420,
                  "    fstype: tmpfs\n    required_options: [\"local_lock=none\", \"rw\"]\n", PROBE_CRITICAL,
                  " is mounted without local_lock=none (options: rw,", ": add it to the mount options" },
                { "read-only", "size=8m", MS_RDONLY, 420, "    fstype: tmpfs\n", PROBE_CRITICAL,
                  " is mounted read-only: remount it rw", ": create as 420:420 failed: Read-only file system" },
                /* Root could write there; Postfix and Dovecot, as 420, cannot. */
                { "owner cannot write", "size=8m,mode=0555", 0, 420, "    fstype: tmpfs\n", PROBE_CRITICAL,
                  "canary /tmp/rupost-test-nfs-", "/.rupost-agent-test: create as 420:420 failed: Permission denied" },
                { "space low", "size=1m", 0, 420, "    fstype: tmpfs\n    space_critical: 5\n", PROBE_CRITICAL,
                  "% space free on /tmp/rupost-test-nfs-", ": free space or grow the export" },
                { "space warning", "size=1m", 0, 420, "    fstype: tmpfs\n    space_warning: 50\n    space_critical: 1\n",
                  PROBE_WARNING, "% space free on " },
        };
        setup_namespace();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                fprintf(stderr, "case: %s\n", cases[i].name);
                char *d = mount_tmpfs(cases[i].tmpfs_options, 0);
                ProbeRun run = {};

                ASSERT_OK(chown(d, cases[i].uid, cases[i].uid));
                if (strstr(cases[i].name, "space")) {
                        /* Fill the 1 MiB filesystem up to its last few blocks. */
                        char f[256];
                        snprintf(f, sizeof f, "%s/filler", d);
                        int fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        char block[4096] = {};
                        ASSERT_TRUE(fd >= 0);
                        for (int k = 0; k < (strstr(cases[i].name, "warning") ? 180 : 250); k++)
                                ASSERT_TRUE(write(fd, block, sizeof block) == sizeof block);
                        close(fd);
                }
                if (cases[i].flags)
                        ASSERT_OK(mount(NULL, d, NULL, MS_REMOUNT | cases[i].flags, cases[i].tmpfs_options));
                run_load(&run, d, cases[i].keys);
                probe_run_once(&run, 5 * USEC_PER_SEC);
                ASSERT_EQ(run.probe->last.status, cases[i].status);
                ASSERT_CONTAINS(run.probe->last.reason, cases[i].reason);
                if (cases[i].reason2)
                        ASSERT_CONTAINS(run.probe->last.reason, cases[i].reason2);
                probe_run_done(&run);
                unmount_dir(d);
        }
}

TEST(nfs_not_mounted) {
        setup_namespace();
        char *d = make_dir();
        ProbeRun run = {};

        run_load(&run, d, "");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, " is not mounted (not in /proc/self/mountinfo): mount the share");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_mount_present", NULL) == 0);
        probe_run_done(&run);
        (void) rmdir(d);
        free(d);
}

/* The hanging server (fuse-hang.h) in a child that dies with the test. */
static pid_t fuse_hang_start(const char *dir) {
        int fd = fuse_hang_mount(dir);

        if (fd < 0) {
                fprintf(stderr, "skipped: cannot mount FUSE on %s: %s\n", dir, strerror(-fd));
                exit(77);
        }
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid > 0) {
                close(fd);
                return pid;
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        fuse_hang_serve(fd);
}

typedef struct Ticks {
        usec_t period;
        usec_t next;
        usec_t max_late;
        unsigned n;
} Ticks;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticks *t = userdata;
        usec_t n = now(CLOCK_MONOTONIC);

        if (n > t->next && n - t->next > t->max_late)
                t->max_late = n - t->next;
        t->n++;
        t->next = n + t->period;
        return sd_event_source_set_time_relative(s, t->period);
}

TEST(nfs_hung_server) {
        setup_namespace();
        char *d = make_dir();
        char description[256];
        sd_event_source *tick = NULL;
        Ticks ticks = { .period = 50 * USEC_PER_MSEC };
        ProbeRun run = {};

        pid_t server = fuse_hang_start(d);
        run_load_timeout(&run, d, "300ms", "    fstype: fuse\n");
        snprintf(description, sizeof description, "nfs %s", d);

        /* Another timer on the same loop, as the other probes and the
         * watchdog would have. */
        ticks.next = now(CLOCK_MONOTONIC) + ticks.period;
        ASSERT_OK(sd_event_add_time_relative(run.event, &tick, CLOCK_MONOTONIC, ticks.period, 1, on_tick, &ticks));
        ASSERT_OK(sd_event_source_set_enabled(tick, SD_EVENT_ON));

        /* 1: the check hangs in stat(); the deadline ends the run. */
        usec_t t0 = now(CLOCK_MONOTONIC);
        probe_run_once(&run, 5 * USEC_PER_SEC);
        usec_t took = now(CLOCK_MONOTONIC) - t0;
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_STREQ(run.probe->last.reason, "no answer within 300ms while waiting for stat, write and fsync on the share");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_mount_responsive", NULL) == 0);
        ASSERT_TRUE(took < 600 * USEC_PER_MSEC);
        ASSERT_EQ(child_abandoned_alive(description), 1);
        fprintf(stderr, "  run took %.0f ms; %u ticks of 50 ms, at most %.1f ms late\n", took / 1e3, ticks.n,
                ticks.max_late / 1e3);
        ASSERT_TRUE(ticks.n >= 4);
        ASSERT_TRUE(ticks.max_late < 40 * USEC_PER_MSEC);

        /* The child is stuck for good: SIGKILL did not end it. */
        test_run_for(run.event, 300 * USEC_PER_MSEC);
        ASSERT_EQ(child_abandoned_alive(description), 1);

        /* 2: no second child while the first is stuck. */
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, "previous check of ");
        ASSERT_CONTAINS(run.probe->last.reason, " still hung (since 20");
        ASSERT_CONTAINS(run.probe->last.reason, "): the NFS server does not answer");
        ASSERT_TRUE(probe_sample_value(run.probe, "rupost_nfs_mount_responsive", NULL) == 0);
        ASSERT_EQ(child_abandoned_alive(description), 1);
        ASSERT_TRUE(run.probe->last.duration < 100 * USEC_PER_MSEC);

        /* Release: the server goes away, the connection is aborted, the stuck
         * child returns and is reaped. */
        ASSERT_OK(kill(server, SIGTERM));
        ASSERT_EQ(waitpid(server, NULL, 0), server);
        (void) RUN_UNTIL(run.event, child_abandoned_alive(description) <= 0, 5 * USEC_PER_SEC);
        ASSERT_EQ(child_abandoned_alive(description), 0);

        /* 3: a fresh check runs again and reports the dead mount. */
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, "cannot stat ");

        tick = sd_event_source_disable_unref(tick);
        probe_run_done(&run);
        unmount_dir(d);
}

TEST(nfs_share_below_the_mount_point) {
        setup_namespace();
        char *d = mount_tmpfs("size=8m", 0);
        char sub[256], keys[512];
        ProbeRun run = {};

        /* As in a tree of shares mounted once at its top (/srv/nfs). */
        snprintf(sub, sizeof sub, "%s/MailQueues", d);
        ASSERT_OK(mkdir(sub, 0755));
        ASSERT_OK(chown(sub, 420, 420));
        snprintf(keys, sizeof keys, "    fstype: tmpfs\n    mount_point: \"%s\"\n", d);
        run_load(&run, sub, keys);
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_OK);
        ASSERT_CONTAINS(run.probe->last.reason, "/MailQueues: tmpfs, owner 420:420");
        probe_run_done(&run);

        /* Without it, the subdirectory is not a mount point. */
        run_load(&run, sub, "    fstype: tmpfs\n");
        probe_run_once(&run, 5 * USEC_PER_SEC);
        ASSERT_EQ(run.probe->last.status, PROBE_CRITICAL);
        ASSERT_CONTAINS(run.probe->last.reason, "/MailQueues is not mounted");
        probe_run_done(&run);

        /* A mount point that is not above the path is a config error. */
        static const char yaml[] = "probes:\n  - name: q\n    type: nfs\n    path: /srv/nfs/MailQueues\n"
                                   "    mount_point: /srv/nf\n";
        test_config_load_fails(yaml, "mount_point: '/srv/nf' is not '/srv/nfs/MailQueues' or a parent directory of it");
        unmount_dir(d);
}

DEFINE_TEST_MAIN()
