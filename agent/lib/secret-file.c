/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "secret-file.h"

const char *secret_mode_problem(mode_t mode) {
        if (mode & S_IROTH)
                return "every user can read it";
        if (mode & S_IRGRP)
                return "its group can read it";
        if (mode & (S_IWGRP | S_IWOTH))
                return "others than its owner can change it";
        if (mode & (S_IXGRP | S_IXOTH))
                return "others than its owner have access to it";
        return NULL;
}

/* The one place in this module that logs: a warning is no reason to fail the
 * caller, and the callers (config checks) collect errors, not warnings. */
void secret_file_warn_mode(const char *path, mode_t mode) {
        const char *why = secret_mode_problem(mode);

        if (why)
                log_warning("Permissions %04o for '%s' are too open: %s; it is used all the same, "
                            "but a secret should be readable only by the agent (chmod 600 '%s').",
                            (unsigned) (mode & 07777), path, why, path);
}

int read_secret_file(const char *path, char **ret, const char **ret_why) {
        _cleanup_close_ int fd = -EBADF;
        char b[SECRET_MAX + 2];
        struct stat st;
        size_t n = 0;
        int r = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0) {
                *ret_why = strerror(errno);
                return -errno;
        }
        while (n < sizeof b - 1) {
                ssize_t k = read(fd, b + n, sizeof b - 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        *ret_why = strerror(errno);
                        /* What was read so far is a part of the secret all the same. */
                        explicit_bzero(b, sizeof b);
                        return r;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        b[n] = 0;
        if (n > 0 && b[n - 1] == '\n')
                b[--n] = 0;
        if (n > 0 && b[n - 1] == '\r')
                b[--n] = 0;

        if (n > SECRET_MAX)
                *ret_why = "longer than 1024 bytes", r = -E2BIG;
        else if (n == 0)
                *ret_why = "the file is empty", r = -EINVAL;
        else if (strlen(b) != n || strchr(b, '\n'))
                *ret_why = "the password must be a single line of text", r = -EINVAL;
        else if (!(*ret = strdup(b)))
                r = -ENOMEM;
        explicit_bzero(b, sizeof b);
        if (r >= 0)
                secret_file_warn_mode(path, st.st_mode);
        return r;
}
