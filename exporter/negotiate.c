/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Accept and Accept-Encoding as HTTP has them: comma-separated ranges with
 * parameters, each weighed by an optional q (thousandths here). An element
 * that does not parse is skipped, not the whole header: a client that sends
 * one odd range still means the others. One pass, no allocation, so a
 * header as long as MHD lets in costs a few microseconds at most. */

#include <string.h>
#include <strings.h>

#include "negotiate.h"

#define Q_MAX 1000U

typedef struct Element {
        const char *type, *subtype; /* subtype NULL for a content coding */
        size_t type_len, subtype_len;
        const char *version; /* the media type's version parameter; NULL for none */
        size_t version_len;
        unsigned q;
} Element;

static const char *const content_types[_EXPOSITION_MAX] = {
        [EXPOSITION_TEXT_0_0_4] = "text/plain; version=0.0.4; charset=utf-8",
        [EXPOSITION_OPENMETRICS_1_0_0] = "application/openmetrics-text; version=1.0.0; charset=utf-8",
        [EXPOSITION_OPENMETRICS_0_0_1] = "application/openmetrics-text; version=0.0.1; charset=utf-8",
};

const char *exposition_content_type(Exposition x) {
        return x >= 0 && x < _EXPOSITION_MAX ? content_types[x] : content_types[EXPOSITION_TEXT_0_0_4];
}

bool exposition_is_openmetrics(Exposition x) {
        return x == EXPOSITION_OPENMETRICS_1_0_0 || x == EXPOSITION_OPENMETRICS_0_0_1;
}

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ows(const char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

static const char *skip_token(const char *p) {
        while (is_tchar(*p))
                p++;
        return p;
}

/* Past the quoted string that starts at p; NULL when it never ends. */
static const char *skip_quoted(const char *p) {
        for (p++; *p; p++) {
                if (*p == '\\') {
                        if (!p[1])
                                return NULL;
                        p++;
                } else if (*p == '"')
                        return p + 1;
        }
        return NULL;
}

/* To the comma that ends the element at p, or the end of the header. */
static const char *skip_element(const char *p) {
        while (*p && *p != ',') {
                if (*p != '"') {
                        p++;
                        continue;
                }
                const char *e = skip_quoted(p);
                if (!e)
                        return p + strlen(p);
                p = e;
        }
        return p;
}

static bool token_eq(const char *p, size_t n, const char *literal) {
        return p && strlen(literal) == n && strncasecmp(p, literal, n) == 0;
}

/* "0", "0.25", "1", "1.000": at most three decimals, never above 1. */
static bool parse_q(const char *p, size_t n, unsigned *ret) {
        unsigned v, scale = 100;

        if (n == 0 || (p[0] != '0' && p[0] != '1'))
                return false;
        v = (unsigned) (p[0] - '0') * Q_MAX;
        if (n > 1) {
                if (p[1] != '.' || n > 5)
                        return false;
                for (size_t i = 2; i < n; i++, scale /= 10) {
                        if (p[i] < '0' || p[i] > '9')
                                return false;
                        v += (unsigned) (p[i] - '0') * scale;
                }
        }
        if (v > Q_MAX)
                return false;
        *ret = v;
        return true;
}

/* Parses the element at p: "type/subtype;a=b;q=0.5" for a media range,
 * "coding;q=0.5" otherwise. Returns where the element ends (at its comma or
 * the end of the header); *ret_ok is false for an element to skip. */
static const char *parse_element(const char *p, bool media, Element *ret, bool *ret_ok) {
        Element el = { .q = Q_MAX };
        bool have_q = false;
        const char *s;

        *ret_ok = false;
        p = skip_ows(p);
        s = skip_token(p);
        if (s == p)
                return skip_element(p);
        el.type = p;
        el.type_len = (size_t) (s - p);
        p = s;
        if (media) {
                if (*p != '/')
                        return skip_element(p);
                p++;
                s = skip_token(p);
                if (s == p)
                        return skip_element(p);
                el.subtype = p;
                el.subtype_len = (size_t) (s - p);
                p = s;
        }

        for (;;) {
                const char *name, *value;
                size_t name_len, value_len;

                p = skip_ows(p);
                if (*p == ',' || *p == 0)
                        break;
                if (*p != ';')
                        return skip_element(p);
                p = skip_ows(p + 1);
                name = p;
                p = skip_token(p);
                name_len = (size_t) (p - name);
                p = skip_ows(p); /* "q = 0.5" is wrong, but clear enough */
                if (name_len == 0 || *p != '=')
                        return skip_element(p);
                p = skip_ows(p + 1);
                if (*p == '"') {
                        s = skip_quoted(p);
                        if (!s)
                                return skip_element(p);
                        value = p + 1;
                        value_len = (size_t) (s - p - 2);
                } else {
                        s = skip_token(p);
                        if (s == p)
                                return skip_element(p);
                        value = p;
                        value_len = (size_t) (s - p);
                }
                p = s;

                /* Parameters after the weight are extensions of the
                 * Accept element, not of the media type. */
                if (have_q)
                        continue;
                if (token_eq(name, name_len, "q")) {
                        if (!parse_q(value, value_len, &el.q))
                                return skip_element(p);
                        have_q = true;
                } else if (media && token_eq(name, name_len, "version")) {
                        el.version = value;
                        el.version_len = value_len;
                }
        }

        *ret = el;
        *ret_ok = true;
        return p;
}

typedef struct Offer {
        const char *type, *subtype, *version;
        bool wildcards; /* whether type/ * and * / * select it */
} Offer;

static const Offer offers[_EXPOSITION_MAX] = {
        [EXPOSITION_TEXT_0_0_4] = { "text", "plain", "0.0.4", true },
        [EXPOSITION_OPENMETRICS_1_0_0] = { "application", "openmetrics-text", "1.0.0", false },
        [EXPOSITION_OPENMETRICS_0_0_1] = { "application", "openmetrics-text", "0.0.1", false },
};

/* How specifically an element names an offer: 3 with its version, 2 with no
 * version, 1 as type/ *, 0 as * / *; -1 when it does not name it. */
static int offer_match(const Offer *o, const Element *el) {
        if (token_eq(el->type, el->type_len, "*"))
                return o->wildcards && token_eq(el->subtype, el->subtype_len, "*") ? 0 : -1;
        if (!token_eq(el->type, el->type_len, o->type))
                return -1;
        if (token_eq(el->subtype, el->subtype_len, "*"))
                return o->wildcards ? 1 : -1;
        if (!token_eq(el->subtype, el->subtype_len, o->subtype))
                return -1;
        if (!el->version)
                return 2;
        return token_eq(el->version, el->version_len, o->version) ? 3 : -1;
}

Exposition negotiate_exposition(const char *accept) {
        int specificity[_EXPOSITION_MAX];
        unsigned q[_EXPOSITION_MAX] = {};
        size_t position[_EXPOSITION_MAX] = {}, n = 0;
        Exposition best = EXPOSITION_TEXT_0_0_4;
        bool found = false;

        for (Exposition x = 0; x < _EXPOSITION_MAX; x++)
                specificity[x] = -1;

        /* Each offer takes its q from the most specific element that names
         * it, as HTTP wants; among equally specific ones, the highest. */
        for (const char *p = accept; p && *p; n++) {
                Element el;
                bool ok;

                p = parse_element(p, /* media= */ true, &el, &ok);
                if (*p == ',')
                        p++;
                if (!ok)
                        continue;
                for (Exposition x = 0; x < _EXPOSITION_MAX; x++) {
                        int s = offer_match(&offers[x], &el);

                        if (s > specificity[x] || (s >= 0 && s == specificity[x] && el.q > q[x])) {
                                specificity[x] = s;
                                q[x] = el.q;
                                position[x] = n;
                        }
                }
        }

        /* The highest q wins; on equal q a type named beats one matched
         * by a wildcard, then what the header lists first. */
        for (Exposition x = 0; x < _EXPOSITION_MAX; x++) {
                if (specificity[x] < 0 || q[x] == 0)
                        continue;
                if (!found || q[x] > q[best] ||
                    (q[x] == q[best] && (MIN(specificity[x], 2) > MIN(specificity[best], 2) ||
                                         (MIN(specificity[x], 2) == MIN(specificity[best], 2) &&
                                          position[x] < position[best])))) {
                        best = x;
                        found = true;
                }
        }
        return best;
}

bool negotiate_gzip(const char *accept_encoding) {
        int gzip = -1, any = -1, identity = -1;

        for (const char *p = accept_encoding; p && *p;) {
                Element el;
                bool ok;

                p = parse_element(p, /* media= */ false, &el, &ok);
                if (*p == ',')
                        p++;
                if (!ok)
                        continue;
                if (token_eq(el.type, el.type_len, "gzip") || token_eq(el.type, el.type_len, "x-gzip"))
                        gzip = MAX(gzip, (int) el.q);
                else if (token_eq(el.type, el.type_len, "*"))
                        any = MAX(any, (int) el.q);
                else if (token_eq(el.type, el.type_len, "identity"))
                        identity = MAX(identity, (int) el.q);
        }
        if (gzip < 0)
                gzip = any;
        return gzip > 0 && gzip >= identity;
}
