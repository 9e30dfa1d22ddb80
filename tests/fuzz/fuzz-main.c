/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A plain main() for the fuzzers: replays every file given on the command
 * line, and every file in directories given on it, through
 * LLVMFuzzerTestOneInput(). Used to run the saved corpora as regression tests
 * without libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/lib/macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ uint8_t *data = NULL;
        struct stat st;

        if (!f || fstat(fileno(f), &st) < 0)
                return fprintf(stderr, "%s: %m\n", path), -errno;
        data = malloc((size_t) st.st_size + 1);
        if (!data)
                return -ENOMEM;
        size_t n = fread(data, 1, (size_t) st.st_size, f);
        (void) LLVMFuzzerTestOneInput(data, n);
        return 1;
}

static int replay(const char *path) {
        struct stat st;
        int total = 0;

        if (stat(path, &st) < 0)
                return fprintf(stderr, "%s: %m\n", path), -errno;
        if (!S_ISDIR(st.st_mode))
                return replay_file(path);

        struct dirent **names;
        int n = scandir(path, &names, NULL, alphasort);
        if (n < 0)
                return fprintf(stderr, "%s: %m\n", path), -errno;
        for (int i = 0; i < n; i++) {
                if (names[i]->d_name[0] != '.') {
                        char child[4096];
                        snprintf(child, sizeof child, "%s/%s", path, names[i]->d_name);
                        int r = replay(child);
                        if (r < 0)
                                total = r;
                        else if (total >= 0)
                                total += r;
                }
                free(names[i]);
        }
        free(names);
        return total;
}

int main(int argc, char *argv[]) {
        int total = 0;

        for (int i = 1; i < argc; i++) {
                int r = replay(argv[i]);
                if (r < 0)
                        return EXIT_FAILURE;
                total += r;
        }
        fprintf(stderr, "%d inputs replayed\n", total);
        return total > 0 ? EXIT_SUCCESS : 77;
}
