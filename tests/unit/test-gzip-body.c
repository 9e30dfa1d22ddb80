/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The two-part gzip body against zlib's inflate and against gzip(1), which
 * has an inflater of its own. */
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "exporter/gzip-body.h"
#include "gunzip.h"
#include "tests.h"

/* Some text that compresses like an exposition does. */
static char *make_text(size_t size, unsigned seed) {
        char *s = malloc(size + 1);
        size_t i = 0;

        ASSERT_TRUE(s);
        while (i < size) {
                char line[96];
                int n = snprintf(line, sizeof line, "rupost_test_series{probe=\"p%u\",type=\"tcp\"} %u\n", seed % 97,
                                 seed * 2654435761U % 100000);
                seed++;
                for (int j = 0; j < n && i < size; j++)
                        s[i++] = line[j];
        }
        s[size] = 0;
        return s;
}

static void round_trip(GzipWriter *w, size_t head_size, size_t tail_size) {
        _cleanup_free_ char *head = make_text(head_size, 1), *tail = make_text(tail_size, 7), *plain = NULL;
        GzipHead h = { .deflated = BUF_INIT(0) };
        Buf out = BUF_INIT(0);
        size_t n;

        ASSERT_OK(gzip_head_set(&h, head, head_size));
        ASSERT_OK(gzip_writer_finish(w, &h, tail, tail_size, &out));
        plain = test_gunzip(out.data, out.len, &n);
        ASSERT_EQ(n, head_size + tail_size);
        ASSERT_TRUE(memcmp(plain, head, head_size) == 0);
        ASSERT_TRUE(memcmp(plain + head_size, tail, tail_size) == 0);
        if (head_size + tail_size > 4096)
                ASSERT_TRUE(out.len < (head_size + tail_size) / 3);
        buf_done(&out);
        gzip_head_done(&h);
}

TEST(round_trips) {
        _cleanup_(gzip_writer_freep) GzipWriter *w = NULL;
        static const size_t sizes[] = { 0, 1, 700, 16383, 16384, 16385, 40000, 1 << 20 };

        ASSERT_OK(gzip_writer_new(&w));
        /* The same writer again and again, as scrape after scrape. */
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (size_t j = 0; j < ELEMENTSOF(sizes); j++)
                        if (sizes[i] + sizes[j] <= (2U << 20))
                                round_trip(w, sizes[i], sizes[j]);
}

TEST(head_reused) {
        _cleanup_(gzip_writer_freep) GzipWriter *w = NULL;
        _cleanup_free_ char *head = make_text(50000, 3);
        GzipHead h = { .deflated = BUF_INIT(0) };
        Buf a = BUF_INIT(0), b = BUF_INIT(0);

        ASSERT_OK(gzip_writer_new(&w));
        ASSERT_OK(gzip_head_set(&h, head, strlen(head)));
        ASSERT_OK(gzip_writer_finish(w, &h, "x 1\n", 4, &a));
        ASSERT_OK(gzip_writer_finish(w, &h, "x 2\n", 4, &b));
        /* The kept blocks go out as they are, after the 10-byte header. */
        ASSERT_TRUE(a.len > 10 + h.deflated.len && b.len > 10 + h.deflated.len);
        ASSERT_TRUE(memcmp(a.data + 10, h.deflated.data, h.deflated.len) == 0);
        ASSERT_TRUE(memcmp(b.data + 10, h.deflated.data, h.deflated.len) == 0);
        ASSERT_TRUE(a.len != b.len || memcmp(a.data, b.data, a.len) != 0);

        /* Setting the head again replaces it. */
        ASSERT_OK(gzip_head_set(&h, "y 1\n", 4));
        buf_reset(&a);
        ASSERT_OK(gzip_writer_finish(w, &h, "x 3\n", 4, &a));
        size_t n;
        _cleanup_free_ char *plain = test_gunzip(a.data, a.len, &n);
        ASSERT_STREQ(plain, "y 1\nx 3\n");

        buf_done(&a);
        buf_done(&b);
        gzip_head_done(&h);
}

TEST(gzip_tool_reads_it) {
        _cleanup_(gzip_writer_freep) GzipWriter *w = NULL;
        _cleanup_free_ char *head = make_text(100000, 5), *tail = make_text(900, 11);
        char in_path[] = "/tmp/test-gzip-body.XXXXXX";
        GzipHead h = { .deflated = BUF_INIT(0) };
        Buf out = BUF_INIT(0);
        _cleanup_close_ int fd = -EBADF;
        int status;

        if (access("/bin/gzip", X_OK) < 0) {
                fprintf(stderr, "gzip not found, skipping\n");
                exit(77);
        }
        ASSERT_OK(gzip_writer_new(&w));
        ASSERT_OK(gzip_head_set(&h, head, strlen(head)));
        ASSERT_OK(gzip_writer_finish(w, &h, tail, strlen(tail), &out));
        fd = mkstemp(in_path);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, out.data, out.len), (ssize_t) out.len);

        /* gzip -t checks the CRC and the length against its own inflate. */
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, STDIN_FILENO) < 0)
                        _exit(127);
                execl("/bin/gzip", "gzip", "-t", (char *) NULL);
                _exit(127);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        (void) unlink(in_path);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        buf_done(&out);
        gzip_head_done(&h);
}

DEFINE_TEST_MAIN();
