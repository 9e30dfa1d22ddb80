/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Password files: what is read, and which modes draw a warning (a secret
 * that others than its owner may open, as ssh judges private keys). */

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/macro.h"
#include "lib/secret-file.h"
#include "tests.h"

TEST(secret_mode_table) {
        static const struct {
                mode_t mode;
                const char *problem; /* NULL: no warning */
        } table[] = {
                { 0600, NULL },
                { 0400, NULL },
                { 0700, NULL },
                { 0100600, NULL }, /* the file type bits do not count */
                { 0640, "its group can read it" },
                { 0644, "every user can read it" },
                { 0604, "every user can read it" },
                { 0620, "others than its owner can change it" },
                { 0602, "others than its owner can change it" },
                { 0610, "others than its owner have access to it" },
                { 0777, "every user can read it" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const char *p = secret_mode_problem(table[i].mode);
                if (!table[i].problem)
                        ASSERT_TRUE(p == NULL);
                else
                        ASSERT_STREQ(p, table[i].problem);
        }
}

static void write_secret(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        ASSERT_OK(chmod(path, mode));
}

/* A too open file is still used (a warning, not an error); errors unchanged. */
TEST(secret_read_whatever_the_mode) {
        char dir[] = "/tmp/test-secret-file-XXXXXX", path[64];
        const char *why = NULL;
        char *secret = NULL;

        ASSERT_TRUE(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/pw", dir);

        write_secret(path, "s3cret\r\n", 0600);
        ASSERT_OK(read_secret_file(path, &secret, &why));
        ASSERT_STREQ(secret, "s3cret");
        free(secret);
        secret = NULL;

        write_secret(path, "s3cret\n", 0644);
        ASSERT_OK(read_secret_file(path, &secret, &why));
        ASSERT_STREQ(secret, "s3cret");
        free(secret);
        secret = NULL;

        write_secret(path, "", 0600);
        ASSERT_ERROR(read_secret_file(path, &secret, &why), EINVAL);
        ASSERT_STREQ(why, "the file is empty");
        ASSERT_TRUE(secret == NULL);

        ASSERT_OK(unlink(path));
        ASSERT_OK(rmdir(dir));
}

DEFINE_TEST_MAIN()
