/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* A tiny test framework: TEST(name) registers a function in a linker
 * section, DEFINE_TEST_MAIN runs them all (or those named in $TESTFUNCS, comma
 * separated), and the ASSERT_* macros print the failing expression with its
 * values before aborting the test program. */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestFunc {
        const char *name;
        void (*func)(void);
} TestFunc;

#define TEST(n)                                                                         \
        static void test_##n(void);                                                     \
        static const TestFunc test_func_##n                                             \
                __attribute__((used, section("rupost_tests"), aligned(8))) = {          \
                .name = #n,                                                             \
                .func = test_##n,                                                       \
        };                                                                              \
        static void test_##n(void)

extern const TestFunc __start_rupost_tests[];
extern const TestFunc __stop_rupost_tests[];

#define ASSERT_FAIL(fmt, ...)                                                           \
        do {                                                                            \
                fprintf(stderr, "%s:%d: %s: assertion failed: " fmt "\n", __FILE__,     \
                        __LINE__, __func__, __VA_ARGS__);                               \
                abort();                                                                \
        } while (0)

#define ASSERT_TRUE(expr)                                                               \
        do {                                                                            \
                if (!(expr))                                                            \
                        ASSERT_FAIL("%s", #expr);                                       \
        } while (0)
#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_OK(expr)                                                                 \
        do {                                                                            \
                intmax_t _r = (intmax_t) (expr);                                        \
                if (_r < 0)                                                             \
                        ASSERT_FAIL("%s failed: %s", #expr, strerror((int) -_r));       \
        } while (0)

#define ASSERT_ERROR(expr, err)                                                         \
        do {                                                                            \
                intmax_t _r = (intmax_t) (expr);                                        \
                if (_r != -(intmax_t) (err))                                            \
                        ASSERT_FAIL("%s returned %jd, expected -%s", #expr, _r, #err);  \
        } while (0)

#define ASSERT_EQ(a, b)                                                                 \
        do {                                                                            \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                      \
                if (_a != _b)                                                           \
                        ASSERT_FAIL("%s == %s (%jd != %jd)", #a, #b, _a, _b);           \
        } while (0)

#define ASSERT_STREQ(a, b)                                                              \
        do {                                                                            \
                const char *_a = (a), *_b = (b);                                        \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                  \
                        ASSERT_FAIL("%s == %s (\"%s\" != \"%s\")", #a, #b,              \
                                    _a ?: "(null)", _b ?: "(null)");                    \
        } while (0)

#define ASSERT_CONTAINS(haystack, needle)                                               \
        do {                                                                            \
                const char *_h = (haystack), *_n = (needle);                            \
                if (!_h || !strstr(_h, _n))                                             \
                        ASSERT_FAIL("\"%s\" contains \"%s\"", _h ?: "(null)", _n);      \
        } while (0)

#define ASSERT_NOT_CONTAINS(haystack, needle)                                           \
        do {                                                                            \
                const char *_h = (haystack), *_n = (needle);                            \
                if (_h && strstr(_h, _n))                                               \
                        ASSERT_FAIL("\"%s\" does not contain \"%s\"", _h, _n);          \
        } while (0)

static inline bool test_selected(const char *name) {
        const char *sel = getenv("TESTFUNCS");
        if (!sel || !*sel)
                return true;
        size_t l = strlen(name);
        for (const char *p = sel; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);
                if (n == l && strncmp(p, name, l) == 0)
                        return true;
                p = comma ? comma + 1 : NULL;
        }
        return false;
}

/* Runs the selected tests; returns main()'s exit status. For a main() that
 * sets something up first. */
static inline int tests_run(void) {
        unsigned n = 0;

        for (const TestFunc *t = __start_rupost_tests; t < __stop_rupost_tests; t++) {
                if (!test_selected(t->name))
                        continue;
                fprintf(stderr, "/* %s */\n", t->name);
                t->func();
                n++;
        }
        fprintf(stderr, "%u tests passed\n", n);
        return n > 0 ? 0 : 77; /* 77: meson's "skipped" */
}

#define DEFINE_TEST_MAIN()                                                              \
        int main(void) {                                                                \
                return tests_run();                                                     \
        }
