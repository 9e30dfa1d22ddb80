/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mountinfo and mountstats as the kernel writes them: NFSv4 shares with
 * their super options, escaped paths, stacked mounts, optional fields, and
 * lines the parser must skip without losing the rest. */

#include "lib/macro.h"
#include "probes/mountinfo-parse.h"
#include "tests.h"

static const char mountinfo[] =
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
        "101 27 0:52 / /srv/nfs/MailQueues rw,relatime shared:80 - nfs4 10.99.0.10:/srv/nfs/MailQueues "
        "rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
        "clientaddr=10.99.0.1,local_lock=none,addr=10.99.0.10\n"
        "102 27 0:53 / /srv/nfs/MailStorage ro,relatime - nfs4 10.99.0.10:/srv/nfs/MailStorage "
        "ro,vers=4.1,soft,local_lock=all\n"
        /* a bind mount of a local tree, as in the node box */
        "103 27 8:1 /export/MailArchive /srv/nfs/MailArchive rw,relatime master:7 - ext4 /dev/sda1 rw\n"
        /* a path with a space and a backslash */
        "104 27 0:54 / /srv/nfs/Mail\\040Record\\134x rw - nfs4 srv:/rec rw,vers=4.2\n"
        /* garbage and a line with no separator are skipped */
        "complete nonsense\n"
        "105 27 0:55 / /broken rw no-dash-here at all in this line ok\n"
        "\n"
        /* stacked: the later mount hides the earlier */
        "106 27 0:56 / /stacked rw - tmpfs first rw\n"
        "107 106 0:57 / /stacked rw - nfs4 srv:/second rw,vers=4.2\n"
        /* no super options at all, no trailing newline */
        "108 27 0:58 / /bare rw - fuse hangfs";

TEST(mountinfo_find_table) {
        static const struct {
                const char *path;
                int r;
                const char *fstype, *source, *mount_options, *super_options, *root;
        } cases[] = {
                { "/srv/nfs/MailQueues", 0, "nfs4", "10.99.0.10:/srv/nfs/MailQueues", "rw,relatime",
                  "rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,"
                  "clientaddr=10.99.0.1,local_lock=none,addr=10.99.0.10", "/" },
                { "/srv/nfs/MailStorage", 0, "nfs4", "10.99.0.10:/srv/nfs/MailStorage", "ro,relatime",
                  "ro,vers=4.1,soft,local_lock=all", "/" },
                { "/srv/nfs/MailArchive", 0, "ext4", "/dev/sda1", "rw,relatime", "rw", "/export/MailArchive" },
                { "/srv/nfs/Mail Record\\x", 0, "nfs4", "srv:/rec", "rw", "rw,vers=4.2", "/" },
                { "/stacked", 0, "nfs4", "srv:/second", "rw", "rw,vers=4.2", "/" },
                { "/bare", 0, "fuse", "hangfs", "rw", "", "/" },
                { "/", 0, "ext4", "/dev/sda1", "rw,relatime", "rw,errors=remount-ro", "/" },
                { "/srv/nfs", -ENOENT },
                { "/srv/nfs/MailQueues/", -ENOENT }, /* callers strip the slash */
                { "/broken", -ENOENT },
                { "/srv/nfs/Mail\\040Record\\134x", -ENOENT }, /* compared after unescaping */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                MountInfo m = {};
                fprintf(stderr, "case: %s\n", cases[i].path);
                int r = mountinfo_find(mountinfo, strlen(mountinfo), cases[i].path, &m);
                ASSERT_EQ(r, cases[i].r);
                if (r < 0)
                        continue;
                ASSERT_STREQ(m.mount_point, cases[i].path);
                ASSERT_STREQ(m.fstype, cases[i].fstype);
                ASSERT_STREQ(m.source, cases[i].source);
                ASSERT_STREQ(m.mount_options, cases[i].mount_options);
                ASSERT_STREQ(m.super_options, cases[i].super_options);
                ASSERT_STREQ(m.root, cases[i].root);
                mount_info_done(&m);
        }
        MountInfo m = {};
        ASSERT_ERROR(mountinfo_find("", 0, "/", &m), ENOENT);
        /* An embedded NUL ends nothing: the size counts. */
        static const char nul[] = "1 1 0:1 / /a rw - tmpfs t rw\n\0002 1 0:2 / /b rw - tmpfs u rw\n";
        ASSERT_OK(mountinfo_find(nul, sizeof nul - 1, "/b", &m));
        ASSERT_STREQ(m.source, "u");
        mount_info_done(&m);
}

TEST(mount_options_have_table) {
        static const char opts[] = "rw,vers=4.2,hard,local_lock=none,sec=sys";
        ASSERT_TRUE(mount_options_have(opts, "rw"));
        ASSERT_TRUE(mount_options_have(opts, "hard"));
        ASSERT_TRUE(mount_options_have(opts, "local_lock=none"));
        ASSERT_TRUE(mount_options_have(opts, "sec=sys"));
        ASSERT_FALSE(mount_options_have(opts, "local_lock=all"));
        ASSERT_FALSE(mount_options_have(opts, "local_lock"));
        ASSERT_FALSE(mount_options_have(opts, "vers=4"));
        ASSERT_FALSE(mount_options_have(opts, "ro"));
        ASSERT_FALSE(mount_options_have("", "rw"));
        ASSERT_FALSE(mount_options_have(NULL, "rw"));
}

static const char mountstats[] =
        "device proc mounted on /proc with fstype proc\n"
        "device 10.99.0.10:/srv/nfs/MailQueues mounted on /srv/nfs/MailQueues with fstype nfs4 statvers=1.1\n"
        "\topts:\trw,vers=4.2,rsize=1048576,wsize=1048576,hard,proto=tcp,timeo=600,retrans=2,sec=sys\n"
        "\tage:\t1234\n"
        "\tevents:\t1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27\n"
        "\tbytes:\t1 2 3 4 5 6 7 8\n"
        "\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)\n"
        "\txprt:\ttcp 815 1 2 0 3 4000 3990 0 12 0 2 0 0\n"
        "\tper-op statistics\n"
        "\t        NULL: 1 1 0 44 24 0 0 0 0\n"
        "\t        READ: 100 103 1 12000 900000 5 300 310 0\n"
        "\t       WRITE: 50 55 2 700000 6000 10 200 215 1\n"
        "\t     GETATTR: 900 900 0 100000 200000 1 90 95 0\n"
        "\t  BROKENLINE: x y z\n"
        "\n"
        "device 10.99.0.10:/srv/nfs/MailStorage mounted on /srv/nfs/MailStorage with fstype nfs4 statvers=1.1\n"
        "\txprt:\tudp 700 1 10 9 0 0 0 0\n"
        "\tper-op statistics\n"
        "\t        READ: 1 1 0 1 1 0 0 0\n"
        "device tmpfs mounted on /tmpshare with fstype tmpfs\n";

TEST(mountstats_find_table) {
        MountStats s;

        ASSERT_OK(mountstats_find(mountstats, strlen(mountstats), "/srv/nfs/MailQueues", &s));
        ASSERT_EQ(s.ops, 1051);
        ASSERT_EQ(s.transmissions, 1059);
        ASSERT_EQ(s.major_timeouts, 3);
        ASSERT_TRUE(s.have_xprt);
        ASSERT_EQ(s.xprt_sends, 4000);
        ASSERT_EQ(s.xprt_recvs, 3990);

        ASSERT_OK(mountstats_find(mountstats, strlen(mountstats), "/srv/nfs/MailStorage", &s));
        ASSERT_EQ(s.ops, 1);
        ASSERT_EQ(s.xprt_sends, 10);
        ASSERT_EQ(s.xprt_recvs, 9);

        /* Not NFS, not mounted. */
        ASSERT_ERROR(mountstats_find(mountstats, strlen(mountstats), "/tmpshare", &s), ENOENT);
        ASSERT_ERROR(mountstats_find(mountstats, strlen(mountstats), "/nowhere", &s), ENOENT);

        /* Counters that would overflow saturate instead of wrapping. */
        static const char huge[] = "device s:/ mounted on /h with fstype nfs4\n\tper-op statistics\n"
                                   "\tREAD: 18446744073709551615 1 0 0 0 0 0 0\n\tWRITE: 5 1 0 0 0 0 0 0\n"
                                   "\tCOMMIT: 184467440737095516150 1 0 0 0 0 0 0\n";
        ASSERT_OK(mountstats_find(huge, strlen(huge), "/h", &s));
        ASSERT_EQ(s.ops, UINT64_MAX);
        ASSERT_EQ(s.transmissions, 2);
}

TEST(mountinfo_reads_this_machine) {
        /* The real file of this process has / in it, whatever else it has. */
        FILE *f = fopen("/proc/self/mountinfo", "re");
        char *data = NULL;
        size_t n = 0;
        MountInfo m = {};

        ASSERT_TRUE(f);
        char b[4096];
        size_t k;
        while ((k = fread(b, 1, sizeof b, f)) > 0) {
                data = realloc(data, n + k);
                ASSERT_TRUE(data);
                memcpy(data + n, b, k);
                n += k;
        }
        fclose(f);
        ASSERT_OK(mountinfo_find(data, n, "/proc", &m));
        ASSERT_STREQ(m.fstype, "proc");
        mount_info_done(&m);
        free(data);
}

DEFINE_TEST_MAIN()
