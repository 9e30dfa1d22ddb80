/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* A structural check of OpenMetrics 1.0.0 text, for what the agent renders:
 * stricter than Prometheus' own parser where the spec is (a double quote in
 * HELP must be escaped, nothing but HELP/TYPE/UNIT/EOF may start with '#', a
 * counter's samples are named <family>_total), and stricter than the spec
 * where our conventions are (every family has a TYPE and a non-empty HELP).
 * Returns NULL for a valid exposition, else a message naming the line. */

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct OmFamily {
        char *name;
        char type[16];
        bool help, typed, unit, samples;
} OmFamily;

_printf_(3, 4) static inline char *om_error(unsigned line_no, const char *line, const char *fmt, ...) {
        char *msg = NULL, *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        va_end(ap);
        if (asprintf(&s, "line %u: %s: \"%s\"", line_no, msg, line) < 0)
                abort();
        free(msg);
        return s;
}

static inline bool om_is_name(const char *s, size_t n, bool colon) {
        if (n == 0 || !(isalpha((unsigned char) s[0]) || s[0] == '_' || (colon && s[0] == ':')))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!(isalnum((unsigned char) s[i]) || s[i] == '_' || (colon && s[i] == ':')))
                        return false;
        return true;
}

/* The escaped-string of HELP and label values: only \\, \" and \n, no raw
 * double quote. Returns the end (a raw '"' for label values), NULL if bad. */
static inline const char *om_escaped_string(const char *p, bool stop_at_quote) {
        for (; *p; p++) {
                if (*p == '"')
                        return stop_at_quote ? p : NULL;
                if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                                return NULL;
                        p++;
                }
        }
        return stop_at_quote ? NULL : p;
}

static inline bool om_is_number(const char *s, bool *ret_negative, bool *ret_nan) {
        const char *p = s;
        bool digits = false;

        *ret_negative = s[0] == '-';
        *ret_nan = strcmp(s, "NaN") == 0;
        if (*ret_nan || strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0)
                return true;
        if (*p == '+' || *p == '-')
                p++;
        for (; isdigit((unsigned char) *p); p++)
                digits = true;
        if (*p == '.')
                for (p++; isdigit((unsigned char) *p); p++)
                        digits = true;
        if (!digits)
                return false;
        if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-')
                        p++;
                if (!isdigit((unsigned char) *p))
                        return false;
                while (isdigit((unsigned char) *p))
                        p++;
        }
        return *p == 0;
}

static inline bool om_has_suffix(const char *s, size_t n, const char *suffix) {
        size_t l = strlen(suffix);
        return n > l && memcmp(s + n - l, suffix, l) == 0;
}

/* Whether sample name (n bytes) belongs to family f. */
static inline bool om_sample_in_family(const OmFamily *f, const char *name, size_t n) {
        size_t l = strlen(f->name);
        const char *suffix = streq(f->type, "counter") ? "_total" : streq(f->type, "info") ? "_info" : "";

        return n == l + strlen(suffix) && memcmp(name, f->name, l) == 0 && memcmp(name + l, suffix, n - l) == 0;
}

static inline char *om_check(const char *text) {
        static const char *const types[] = { "counter", "gauge", "unknown", "info", "stateset",
                                             "histogram", "gaugehistogram", "summary" };
        OmFamily families[4096];
        size_t n_families = 0;
        OmFamily *cur = NULL;
        bool eof = false;
        char *error = NULL;
        unsigned line_no = 0;

        if (!*text)
                return strdup("empty exposition");

        for (const char *p = text; *p && !error;) {
                const char *nl = strchr(p, '\n');
                char *line;

                line_no++;
                if (!nl) {
                        error = om_error(line_no, p, "no newline at the end");
                        break;
                }
                line = strndup(p, (size_t) (nl - p));
                if (!line)
                        abort();
                p = nl + 1;

                if (eof)
                        error = om_error(line_no, line, "data after # EOF");
                else if (streq(line, "# EOF"))
                        eof = true;
                else if (line[0] == '#') {
                        char *kind = line + 2, *name, *rest;
                        size_t name_len;

                        if (strncmp(line, "# ", 2) != 0 ||
                            !(strncmp(kind, "HELP ", 5) == 0 || strncmp(kind, "TYPE ", 5) == 0 ||
                              strncmp(kind, "UNIT ", 5) == 0)) {
                                error = om_error(line_no, line, "a comment other than HELP, TYPE, UNIT or EOF");
                                goto next;
                        }
                        name = kind + 5;
                        name_len = strcspn(name, " ");
                        if (!om_is_name(name, name_len, true) || name[name_len] != ' ') {
                                error = om_error(line_no, line, "bad metric name or no value");
                                goto next;
                        }
                        rest = name + name_len + 1;
                        name[name_len] = 0;

                        if (!cur || !streq(cur->name, name)) {
                                for (size_t i = 0; i < n_families; i++)
                                        if (streq(families[i].name, name)) {
                                                error = om_error(line_no, line, "family %s appears twice", name);
                                                goto next;
                                        }
                                if (n_families == ELEMENTSOF(families))
                                        abort();
                                cur = &families[n_families++];
                                *cur = (OmFamily) { .name = strdup(name) };
                        }
                        if (cur->samples) {
                                error = om_error(line_no, line, "metadata after samples");
                                goto next;
                        }
                        if (kind[0] == 'H') {
                                if (cur->help || !*rest || !om_escaped_string(rest, false))
                                        error = om_error(line_no, line, "repeated, empty or badly escaped HELP");
                                cur->help = true;
                        } else if (kind[0] == 'T') {
                                bool known = false;
                                for (size_t i = 0; i < ELEMENTSOF(types); i++)
                                        known = known || streq(rest, types[i]);
                                if (cur->typed || !known)
                                        error = om_error(line_no, line, "repeated or unknown TYPE");
                                cur->typed = true;
                                snprintf(cur->type, sizeof cur->type, "%s", rest);
                        } else {
                                char suffix[256];
                                snprintf(suffix, sizeof suffix, "_%s", rest);
                                if (cur->unit || !om_is_name(rest, strlen(rest), false) ||
                                    !om_has_suffix(name, name_len, suffix))
                                        error = om_error(line_no, line, "repeated UNIT, or not the name's suffix");
                                cur->unit = true;
                        }
                } else {
                        size_t n = strcspn(line, "{ ");
                        const char *q = line + n;
                        bool negative, nan;

                        if (!om_is_name(line, n, true)) {
                                error = om_error(line_no, line, "bad metric name");
                                goto next;
                        }
                        if (!cur || !cur->typed || !cur->help) {
                                error = om_error(line_no, line, "sample without HELP and TYPE");
                                goto next;
                        }
                        if (!om_sample_in_family(cur, line, n)) {
                                error = om_error(line_no, line, "sample not named for family %s of type %s",
                                                 cur->name, cur->type);
                                goto next;
                        }
                        cur->samples = true;
                        if (*q == '{') {
                                q++;
                                while (*q != '}') {
                                        size_t l = strcspn(q, "=");
                                        if (!om_is_name(q, l, false) || q[l] != '=' || q[l + 1] != '"') {
                                                error = om_error(line_no, line, "bad label");
                                                goto next;
                                        }
                                        q = om_escaped_string(q + l + 2, true);
                                        if (!q) {
                                                error = om_error(line_no, line, "badly escaped label value");
                                                goto next;
                                        }
                                        q++;
                                        if (*q == ',' && q[1] != '}')
                                                q++;
                                        else if (*q != '}') {
                                                error = om_error(line_no, line, "bad label list");
                                                goto next;
                                        }
                                }
                                q++;
                        }
                        if (*q != ' ' || strchr(q + 1, ' ') || !om_is_number(q + 1, &negative, &nan)) {
                                error = om_error(line_no, line, "bad value (or a timestamp)");
                                goto next;
                        }
                        if (streq(cur->type, "counter") && (negative || nan))
                                error = om_error(line_no, line, "negative or NaN counter");
                }
        next:
                free(line);
        }

        for (size_t i = 0; i < n_families; i++)
                free(families[i].name);
        if (!error && !eof)
                error = strdup("no # EOF at the end");
        return error;
}
