/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's YAML configuration: libyaml loads the whole document (it is
 * small and bounded), then ConfigItem tables walk it. Every problem becomes one
 * "file:line:column: key: what is wrong" line and parsing goes on, so that one
 * --check-config run lists every mistake in a file. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "lib/parse-util.h"
#include "lib/secret-file.h"
#include "lib/sockaddr.h"

/* A mangled file must not make us build an unbounded list of errors either. */
#define CONFIG_MAX_ERRORS 100
#define CONFIG_NAME_MAX 64
/* The configuration nests 5 deep at most (probes, a probe, its units). */
#define CONFIG_MAX_DEPTH 32
#define CONFIG_MAX_ANCHORS 256
#define CONFIG_MAX_ALIASES 1024
/* Echoed user values are cut to this, so one error stays one readable line. */
#define QUOTE_MAX CONFIG_QUOTE_MAX

/* Used when a probe type leaves a default unset. */
#define FALLBACK_INTERVAL (10 * USEC_PER_SEC)
#define FALLBACK_TIMEOUT (5 * USEC_PER_SEC)

typedef struct TableRef {
        const ConfigItem *items;
        void *base;
} TableRef;

/* A printable, bounded copy of a user-supplied string for messages: control
 * characters are escaped so that an error can never span lines. */
const char *config_quote(char buf[static QUOTE_MAX], const char *s) {
        size_t n = 0;

        for (; *s && n < QUOTE_MAX - 8; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch < 0x20 || ch == 0x7f)
                        n += (size_t) snprintf(buf + n, QUOTE_MAX - n, "\\x%02x", ch);
                else
                        buf[n++] = (char) ch;
        }
        if (*s) {
                /* Do not leave half of a UTF-8 sequence before the ellipsis. */
                while (n > 0 && ((unsigned char) buf[n - 1] & 0xc0) == 0x80)
                        n--;
                if (n > 0 && ((unsigned char) buf[n - 1] & 0xc0) == 0xc0)
                        n--;
                memcpy(buf + n, "...", 3);
                n += 3;
        }
        buf[n] = '\0';
        return buf;
}

#define quote config_quote

static int escape_controls(char **s) {
        size_t n = 0;
        char *e, *o;

        for (const char *i = *s; *i; i++)
                n += ((unsigned char) *i < 0x20 || *i == 0x7f) ? 4 : 1;
        if (n == strlen(*s))
                return 0;

        e = o = malloc(n + 1);
        if (!e)
                return -ENOMEM;
        for (const char *i = *s; *i; i++) {
                unsigned char ch = (unsigned char) *i;
                if (ch < 0x20 || ch == 0x7f)
                        o += snprintf(o, 5, "\\x%02x", ch);
                else
                        *o++ = (char) ch;
        }
        *o = '\0';
        free(*s);
        *s = e;
        return 0;
}

_printf_(4, 0) static int context_add_errorv(ConfigContext *c, const yaml_mark_t *mark, const char *key, const char *fmt,
                              va_list ap) {
        _cleanup_free_ char *what = NULL, *line = NULL;
        int r;

        if (c->n_errors > CONFIG_MAX_ERRORS)
                return -EINVAL;

        if (vasprintf(&what, fmt, ap) < 0)
                return -ENOMEM;

        /* Probe types echo values in their messages too: whatever they
         * contain, an error stays on one line. */
        r = escape_controls(&what);
        if (r < 0)
                return r;

        if (c->n_errors == CONFIG_MAX_ERRORS)
                r = asprintf(&line, "%s: too many errors, only the first %d are listed", c->filename,
                             CONFIG_MAX_ERRORS);
        else if (mark)
                r = asprintf(&line, "%s:%zu:%zu: %s%s%s", c->filename, mark->line + 1, mark->column + 1,
                             key ?: "", key ? ": " : "", what);
        else
                r = asprintf(&line, "%s: %s%s%s", c->filename, key ?: "", key ? ": " : "", what);
        if (r < 0)
                return -ENOMEM;

        char **l = reallocarray(c->errors, c->n_errors + 2, sizeof(char *));
        if (!l)
                return -ENOMEM;
        c->errors = l;
        c->errors[c->n_errors++] = TAKE_PTR(line);
        c->errors[c->n_errors] = NULL;
        return -EINVAL;
}

_printf_(4, 5) static int context_add_error(ConfigContext *c, const yaml_mark_t *mark, const char *key,
                                            const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = context_add_errorv(c, mark, key, fmt, ap);
        va_end(ap);
        return r;
}

static yaml_node_t *node_get(ConfigContext *c, int id) {
        return yaml_document_get_node(c->document, id);
}

/* YAML's null: an empty plain scalar, "~" or "null". */
static bool node_is_null(const yaml_node_t *n) {
        if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        const char *v = (const char *) n->data.scalar.value;
        return streq(v, "") || streq(v, "~") || streq(v, "null") || streq(v, "Null") || streq(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n) {
        switch (n->type) {
        case YAML_SCALAR_NODE:
                return node_is_null(n) ? "no value" : "a scalar";
        case YAML_SEQUENCE_NODE:
                return "a list";
        case YAML_MAPPING_NODE:
                return "a mapping";
        default:
                return "nothing";
        }
}

/* The text of a scalar node, or an error that says what was found instead of
 * `expected`. libyaml accepts "\0" escapes; C strings cannot hold them. */
static int node_scalar(ConfigContext *c, const char *key, yaml_node_t *node, const char *expected,
                       const char **ret) {
        if (node->type != YAML_SCALAR_NODE || node_is_null(node))
                return config_error(c, node, key, "expected %s, got %s", expected, node_kind(node));

        const char *v = (const char *) node->data.scalar.value;
        if (strlen(v) != node->data.scalar.length)
                return config_error(c, node, key, "contains a NUL character");

        *ret = v;
        return 0;
}

yaml_node_t *config_node(ConfigContext *c, int id) {
        return node_get(c, id);
}

int config_node_scalar(ConfigContext *c, const char *key, yaml_node_t *node, const char *expected,
                       const char **ret) {
        return node_scalar(c, key, node, expected, ret);
}

int config_node_lookup(ConfigContext *c, const char *key, yaml_node_t *node, const char *expected,
                       const char *const *names, size_t n, const char **ret_value) {
        const char *s;
        int r;

        r = node_scalar(c, key, node, expected, &s);
        if (r < 0)
                return r;
        *ret_value = s;
        for (size_t i = 0; i < n; i++)
                if (names[i] && streq(s, names[i]))
                        return (int) i;
        return -ENOENT;
}

int config_error_not_one_of(ConfigContext *c, const char *key, yaml_node_t *node, const char *value,
                            const char *const *names, size_t n) {
        char buf[QUOTE_MAX], list[256] = "";
        size_t len = 0;

        for (size_t i = 0; i < n && len < sizeof list; i++)
                if (names[i])
                        len += (size_t) snprintf(list + len, sizeof list - len, "%s%s", len > 0 ? ", " : "",
                                                 names[i]);
        return config_error(c, node, key, "'%s' is not one of %s", quote(buf, value), list);
}

/* The value node of `key` in a mapping (the first one, if repeated), or NULL. */
static yaml_node_t *mapping_find(ConfigContext *c, yaml_node_t *mapping, const char *key) {
        if (!mapping || mapping->type != YAML_MAPPING_NODE)
                return NULL;

        for (yaml_node_pair_t *p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node_get(c, p->key);
                if (k && k->type == YAML_SCALAR_NODE && streq((const char *) k->data.scalar.value, key))
                        return node_get(c, p->value);
        }
        return NULL;
}

static char *key_path(const char *prefix, const char *key) {
        char *s;

        if (!prefix || !*prefix)
                return strdup(key);
        if (asprintf(&s, "%s.%s", prefix, key) < 0)
                return NULL;
        return s;
}

int config_error(ConfigContext *c, yaml_node_t *node, const char *key, const char *fmt, ...) {
        _cleanup_free_ char *path = NULL;
        const yaml_mark_t *mark = NULL;
        va_list ap;
        int r;

        assert_return(c, -EINVAL);
        assert_return(fmt, -EINVAL);

        if (node)
                mark = &node->start_mark;
        else if (c->probe_mapping) {
                /* From a probe type's verify(): the key is relative to the probe. */
                if (key) {
                        node = mapping_find(c, c->probe_mapping, key);
                        path = key_path(c->probe_prefix, key);
                        if (!path)
                                return -ENOMEM;
                        key = path;
                }
                mark = &(node ?: c->probe_mapping)->start_mark;
        }

        va_start(ap, fmt);
        r = context_add_errorv(c, mark, key, fmt, ap);
        va_end(ap);
        return r;
}

/* Names a user picks for things that end up in metric labels and logs. */
static bool name_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > CONFIG_NAME_MAX)
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

int config_parse_string(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        char **s = data;
        const char *v;
        int r;

        r = node_scalar(c, key, node, "a string", &v);
        if (r < 0)
                return r;
        if (*v == '\0')
                return config_error(c, node, key, "is empty");

        char *copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        free(*s);
        *s = copy;
        return 0;
}

int config_parse_uint(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        char buf[QUOTE_MAX];
        uint64_t lo = item->min, hi = item->max, v;
        const char *s;
        int r;

        r = node_scalar(c, key, node, "a number", &s);
        if (r < 0)
                return r;

        if (lo == 0 && hi == 0)
                hi = UINT_MAX;
        hi = MIN(hi, (uint64_t) UINT_MAX);

        r = safe_atou64(s, &v);
        if (r == -EINVAL)
                return config_error(c, node, key, "'%s' is not a decimal number", quote(buf, s));
        if (r < 0 || v < lo || v > hi)
                return config_error(c, node, key, "%s is out of range %" PRIu64 "..%" PRIu64, quote(buf, s), lo,
                                    hi);

        *(unsigned *) data = (unsigned) v;
        return 0;
}

int config_parse_duration(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                          void *data) {
        char buf[QUOTE_MAX], lo_s[DURATION_MAX], hi_s[DURATION_MAX];
        usec_t lo = item->min, hi = item->max, v;
        const char *s;
        int r;

        r = node_scalar(c, key, node, "a duration", &s);
        if (r < 0)
                return r;

        if (lo == 0 && hi == 0)
                hi = USEC_INFINITY;

        r = parse_duration(s, &v);
        if (r == -EINVAL)
                return config_error(c, node, key, "'%s' is not a duration (like 250ms, 5s or 1m30s)",
                                    quote(buf, s));
        if (r < 0 || v < lo || v > hi)
                return config_error(c, node, key, "%s is out of range %s..%s", quote(buf, s),
                                    format_duration(lo_s, sizeof lo_s, lo),
                                    format_duration(hi_s, sizeof hi_s, hi));

        *(usec_t *) data = v;
        return 0;
}

int config_parse_bool(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        char buf[QUOTE_MAX];
        const char *s;
        int r;

        r = node_scalar(c, key, node, "a boolean", &s);
        if (r < 0)
                return r;

        if (streq(s, "true") || streq(s, "yes"))
                *(bool *) data = true;
        else if (streq(s, "false") || streq(s, "no"))
                *(bool *) data = false;
        else
                return config_error(c, node, key, "'%s' is not a boolean (true, false, yes or no)", quote(buf, s));
        return 0;
}

int config_parse_strv(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n, k = 0;
        int ret = 0, r;

        if (node->type != YAML_SEQUENCE_NODE)
                return config_error(c, node, key, "expected a list, got %s", node_kind(node));

        n = (size_t) (node->data.sequence.items.top - node->data.sequence.items.start);
        if (n == 0)
                return config_error(c, node, key, "is an empty list");
        if (item->max > 0 && n > item->max)
                return config_error(c, node, key, "has %zu entries, more than the limit of %" PRIu64, n,
                                    item->max);

        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                yaml_node_t *e = node_get(c, node->data.sequence.items.start[i]);
                const char *s;

                if (!e)
                        continue;
                if (asprintf(&path, "%s[%zu]", key, i) < 0)
                        return -ENOMEM;

                r = node_scalar(c, path, e, "a string", &s);
                if (r == 0 && *s == '\0')
                        r = config_error(c, e, path, "is empty");
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        ret = r;
                        continue;
                }

                l[k] = strdup(s);
                if (!l[k])
                        return -ENOMEM;
                k++;
        }
        if (ret < 0)
                return ret;

        strv_free(*(char ***) data);
        *(char ***) data = TAKE_PTR(l);
        return 0;
}

/* The grammar is sockaddr_parse()'s, so that what the check accepts is what
 * start-up binds or connects to. */
int config_parse_address(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                         void *data) {
        union sockaddr_union sa;
        char buf[QUOTE_MAX];
        const char *s, *why;
        socklen_t len;
        int r;

        r = node_scalar(c, key, node, "an address", &s);
        if (r < 0)
                return r;

        if (sockaddr_parse_full(s, 0, &sa, &len, &why) < 0)
                return config_error(c, node, key, "'%s' is not " SOCKADDR_GRAMMAR ": %s", quote(buf, s), why);

        return config_parse_string(c, key, node, item, data);
}

/* The names of all keys of the tables, for "unknown key" messages. */
static char *tables_keys(const TableRef *tables, size_t n_tables) {
        size_t len = 1;
        char *s;

        for (size_t t = 0; t < n_tables; t++)
                for (const ConfigItem *i = tables[t].items; i && i->key; i++)
                        len += strlen(i->key) + 2;

        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (size_t t = 0; t < n_tables; t++)
                for (const ConfigItem *i = tables[t].items; i && i->key; i++) {
                        if (s[0])
                                strcat(s, ", ");
                        strcat(s, i->key);
                }
        return s;
}

/* Parses one mapping whose keys may come from several tables (a probe's
 * common keys and its type's own keys). Unknown, repeated and missing
 * required keys are errors. Returns -ENOMEM only if memory ran out, -EINVAL
 * if any error was recorded, 0 otherwise. */
static int parse_tables(ConfigContext *c, const char *prefix, yaml_node_t *mapping, const TableRef *tables,
                        size_t n_tables) {
        _cleanup_free_ yaml_node_t **seen = NULL;
        size_t n_items = 0;
        int ret = 0, r;

        if (mapping->type != YAML_MAPPING_NODE)
                return config_error(c, mapping, prefix && *prefix ? prefix : NULL, "expected a mapping, got %s",
                                    node_kind(mapping));

        for (size_t t = 0; t < n_tables; t++)
                for (const ConfigItem *i = tables[t].items; i && i->key; i++)
                        n_items++;

        /* Where each known key was first seen; the work stays linear in the
         * number of keys however long a mapping is. */
        seen = calloc(n_items + 1, sizeof(yaml_node_t *));
        if (!seen)
                return -ENOMEM;

        for (yaml_node_pair_t *p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
                _cleanup_free_ char *path = NULL;
                yaml_node_t *k = node_get(c, p->key), *v = node_get(c, p->value);
                const ConfigItem *item = NULL;
                void *base = NULL;
                size_t idx = 0;
                const char *name;

                if (!k || !v)
                        continue;

                if (k->type != YAML_SCALAR_NODE || node_is_null(k)) {
                        r = config_error(c, k, prefix && *prefix ? prefix : NULL,
                                         "expected a key name, got %s", node_kind(k));
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                        continue;
                }
                name = (const char *) k->data.scalar.value;

                for (size_t t = 0; t < n_tables && !item; t++)
                        for (const ConfigItem *i = tables[t].items; i && i->key; i++, idx++)
                                if (strlen(name) == k->data.scalar.length && streq(i->key, name)) {
                                        item = i;
                                        base = tables[t].base;
                                        break;
                                }

                if (!item) {
                        _cleanup_free_ char *known = tables_keys(tables, n_tables);
                        char buf[QUOTE_MAX];

                        path = key_path(prefix, quote(buf, name));
                        if (!path || !known)
                                return -ENOMEM;
                        if (*known)
                                r = config_error(c, k, path, "unknown key; expected one of: %s", known);
                        else
                                r = config_error(c, k, path, "unknown key; this section takes no keys");
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                        continue;
                }

                path = key_path(prefix, item->key);
                if (!path)
                        return -ENOMEM;

                if (seen[idx]) {
                        r = config_error(c, k, path, "duplicate key (first at line %zu, column %zu)",
                                         seen[idx]->start_mark.line + 1, seen[idx]->start_mark.column + 1);
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                        continue;
                }
                seen[idx] = k;

                r = item->parse(c, path, v, item, (uint8_t *) base + item->offset);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = r;
        }

        size_t idx = 0;
        for (size_t t = 0; t < n_tables; t++)
                for (const ConfigItem *i = tables[t].items; i && i->key; i++, idx++) {
                        _cleanup_free_ char *path = NULL;

                        if (!i->required || seen[idx])
                                continue;
                        path = key_path(prefix, i->key);
                        if (!path)
                                return -ENOMEM;
                        r = config_error(c, mapping, path, "required key is missing");
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                }

        return ret;
}

int config_parse_table(ConfigContext *c, const char *prefix, yaml_node_t *mapping, const ConfigItem *table,
                       void *base) {
        assert_return(c, -EINVAL);
        assert_return(mapping, -EINVAL);

        return parse_tables(c, prefix, mapping, &(TableRef) { table, base }, 1);
}

/* For keys that are read before the table is walked ("name", "type"). */
static int parse_handled(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                         void *data) {
        return 0;
}

static int parse_node_name(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                           void *data) {
        char buf[QUOTE_MAX];
        const char *s;
        int r;

        r = node_scalar(c, key, node, "a string", &s);
        if (r < 0)
                return r;
        if (!name_is_valid(s))
                return config_error(c, node, key, "'%s' is not a valid node name: use 1 to %d of A-Z a-z 0-9 _ . -",
                                    quote(buf, s), CONFIG_NAME_MAX);
        return config_parse_string(c, key, node, item, data);
}

/* Relative paths would depend on the directory the agent was started in. */
static int parse_absolute_path(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                               void *data) {
        char buf[QUOTE_MAX];
        const char *s;
        int r;

        r = node_scalar(c, key, node, "a path", &s);
        if (r < 0)
                return r;
        if (s[0] != '/')
                return config_error(c, node, key, "'%s' is not an absolute path", quote(buf, s));
        return config_parse_string(c, key, node, item, data);
}

/* An absolute path that fits in sun_path. */
static int parse_socket_path(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                             void *data) {
        int r;

        r = parse_absolute_path(c, key, node, item, data);
        if (r < 0)
                return r;
        if (strlen(*(char **) data) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return config_error(c, node, key, "is longer than %zu bytes, the limit for a socket path",
                                    sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1);
        return 0;
}

static const ConfigItem web_items[] = {
        { "listen_address", config_parse_address, offsetof(Config, web_listen_address) },
        { "config_file",    parse_absolute_path,  offsetof(Config, web_config_file)    },
        {}
};

static int parse_web(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        return config_parse_table(c, key, node, web_items, data);
}

static const ConfigItem probe_items[] = {
        { "name",     parse_handled,         0 },
        { "type",     parse_handled,         0 },
        { "interval", config_parse_duration, offsetof(Probe, interval), 100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "timeout",  config_parse_duration, offsetof(Probe, timeout),  10 * USEC_PER_MSEC,  USEC_PER_HOUR },
        { "rise",     config_parse_uint,     offsetof(Probe, rise),     1,                   100           },
        { "fall",     config_parse_uint,     offsetof(Probe, fall),     1,                   100           },
        {}
};

static char *probe_type_names(void) {
        size_t len = 1;
        char *s;

        for (const ProbeType *const *t = probe_types; *t; t++)
                len += strlen((*t)->name) + 2;
        s = malloc(len);
        if (!s)
                return NULL;
        s[0] = '\0';
        for (const ProbeType *const *t = probe_types; *t; t++) {
                if (s[0])
                        strcat(s, ", ");
                strcat(s, (*t)->name);
        }
        return s;
}

/* Reads and checks "name" of probes[index]; *ret_name is NULL if it is not
 * usable. names[] holds the name nodes of the probes before it (NULL where
 * invalid); this one's is added. */
static int probe_read_name(ConfigContext *c, const char *prefix, yaml_node_t **names, size_t index,
                           yaml_node_t *mapping, const char **ret_name) {
        _cleanup_free_ char *path = key_path(prefix, "name");
        char buf[QUOTE_MAX];
        yaml_node_t *node;
        const char *name;
        int r;

        *ret_name = NULL;
        if (!path)
                return -ENOMEM;

        node = mapping_find(c, mapping, "name");
        if (!node)
                return config_error(c, mapping, path, "required key is missing");

        r = node_scalar(c, path, node, "a string", &name);
        if (r < 0)
                return r;
        if (!name_is_valid(name))
                return config_error(c, node, path, "'%s' is not a valid probe name: use 1 to %d of A-Z a-z 0-9 _ . -",
                                    quote(buf, name), CONFIG_NAME_MAX);

        /* Names are metric label values and control socket handles: they must be unique. */
        for (size_t i = 0; i < index; i++)
                if (names[i] && streq((const char *) names[i]->data.scalar.value, name))
                        return config_error(c, node, path, "duplicate probe name '%s' (first at line %zu, column %zu)",
                                            name, names[i]->start_mark.line + 1, names[i]->start_mark.column + 1);

        names[index] = node;
        *ret_name = name;
        return 0;
}

static int probe_read_type(ConfigContext *c, const char *prefix, yaml_node_t *mapping, const ProbeType **ret_type) {
        _cleanup_free_ char *path = key_path(prefix, "type");
        char buf[QUOTE_MAX];
        const ProbeType *type;
        yaml_node_t *node;
        const char *s;
        int r;

        *ret_type = NULL;
        if (!path)
                return -ENOMEM;

        node = mapping_find(c, mapping, "type");
        if (!node)
                return config_error(c, mapping, path, "required key is missing");

        r = node_scalar(c, path, node, "a probe type", &s);
        if (r < 0)
                return r;

        type = probe_type_find(s);
        if (!type) {
                _cleanup_free_ char *known = probe_type_names();
                if (!known)
                        return -ENOMEM;
                return config_error(c, node, path, "unknown probe type '%s'; known types: %s", quote(buf, s), known);
        }

        *ret_type = type;
        return 0;
}

/* Runs must never overlap: a timeout longer than the interval is an error,
 * and a type's default timeout is cut to a shorter configured interval. */
static int probe_check_timing(ConfigContext *c, const char *prefix, yaml_node_t *mapping, Probe *p) {
        _cleanup_free_ char *path = NULL;
        char t[DURATION_MAX], i[DURATION_MAX];
        yaml_node_t *timeout_node = mapping_find(c, mapping, "timeout");
        yaml_node_t *interval_node = mapping_find(c, mapping, "interval");

        if (p->timeout <= p->interval)
                return 0;

        if (!timeout_node) {
                p->timeout = p->interval;
                return 0;
        }

        path = key_path(prefix, "timeout");
        if (!path)
                return -ENOMEM;
        return config_error(c, timeout_node, path,
                            "%s is longer than the interval %s%s; runs of a probe must never overlap",
                            format_duration(t, sizeof t, p->timeout), format_duration(i, sizeof i, p->interval),
                            interval_node ? "" : " (the default)");
}

/* Parses probes[index]. Returns 0 and the probe, -EINVAL with *ret NULL after
 * recording errors, or -ENOMEM. */
static int parse_probe(ConfigContext *c, yaml_node_t **names, size_t index, yaml_node_t *mapping, Probe **ret) {
        _cleanup_(probe_freep) Probe *p = NULL;
        _cleanup_free_ char *prefix = NULL;
        const ProbeType *type;
        const char *name;
        int ret_r = 0, r;

        *ret = NULL;

        if (asprintf(&prefix, "probes[%zu]", index) < 0)
                return -ENOMEM;

        if (mapping->type != YAML_MAPPING_NODE)
                return config_error(c, mapping, prefix, "expected a mapping, got %s", node_kind(mapping));

        r = probe_read_name(c, prefix, names, index, mapping, &name);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                ret_r = r;

        r = probe_read_type(c, prefix, mapping, &type);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                ret_r = r;

        /* Without its type, none of the probe's own keys can be judged. */
        if (!type)
                return ret_r;

        /* A stand-in name so that a bad name does not hide the other errors of this probe. */
        r = probe_new(type, name ?: "invalid", &p);
        if (r < 0)
                return r;

        p->interval = type->default_interval ?: FALLBACK_INTERVAL;
        p->timeout = type->default_timeout ?: MIN(FALLBACK_TIMEOUT, p->interval);
        p->rise = type->default_rise ?: 1;
        p->fall = type->default_fall ?: 1;

        c->probe_mapping = mapping;
        c->probe_prefix = prefix;

        r = parse_tables(c, prefix, mapping,
                         (const TableRef[]) {
                                 { probe_items, p },
                                 { type->config_items, probe_get_userdata(p) },
                         },
                         2);
        if (r == -ENOMEM)
                goto finish;
        if (r < 0)
                ret_r = r;

        if (ret_r == 0) {
                r = probe_check_timing(c, prefix, mapping, p);
                if (r == -ENOMEM)
                        goto finish;
                if (r < 0)
                        ret_r = r;
        }

        /* verify() may rely on required keys being set, so only a probe whose
         * keys all parsed gets to it. */
        if (ret_r == 0 && type->verify) {
                size_t n_errors = c->n_errors;

                r = type->verify(p, c);
                if (r == -ENOMEM)
                        goto finish;
                if (r < 0) {
                        if (c->n_errors == n_errors)
                                r = config_error(c, mapping, prefix, "invalid %s probe", type->name);
                        if (r == -ENOMEM)
                                goto finish;
                        ret_r = r;
                }
        }
        r = ret_r;

finish:
        c->probe_mapping = NULL;
        c->probe_prefix = NULL;
        if (r < 0)
                return r;

        *ret = TAKE_PTR(p);
        return 0;
}

static int parse_probes(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                        void *data) {
        _cleanup_free_ yaml_node_t **names = NULL;
        Config *config = data;
        size_t n;
        int ret = 0, r;

        if (node->type != YAML_SEQUENCE_NODE)
                return config_error(c, node, key, "expected a list of probes, got %s", node_kind(node));

        n = (size_t) (node->data.sequence.items.top - node->data.sequence.items.start);
        if (n > CONFIG_MAX_PROBES)
                return config_error(c, node, key, "has %zu probes, more than the limit of %d", n, CONFIG_MAX_PROBES);
        if (n == 0)
                return 0;

        config->probes = calloc(n, sizeof(Probe *));
        names = calloc(n, sizeof(yaml_node_t *));
        if (!config->probes || !names)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                yaml_node_t *m = node_get(c, node->data.sequence.items.start[i]);
                Probe *p;

                if (!m)
                        continue;
                r = parse_probe(c, names, i, m, &p);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = r;
                if (p)
                        config->probes[config->n_probes++] = p;
        }

        return ret;
}

#define H(field) offsetof(Config, healing.field)
static const ConfigItem healing_items[] = {
        { "units",               config_parse_strv,     H(units), .required = true                           },
        { "member_probes",       config_parse_strv,     H(member_probes), .required = true                   },
        { "stop_timeout",        config_parse_duration, H(stop_timeout),    100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "start_timeout",       config_parse_duration, H(start_timeout),   100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "backoff_initial",     config_parse_duration, H(backoff_initial), 100 * USEC_PER_MSEC, USEC_PER_DAY  },
        { "backoff_max",         config_parse_duration, H(backoff_max),     100 * USEC_PER_MSEC, USEC_PER_DAY  },
        { "stable_period",       config_parse_duration, H(stable_period),   USEC_PER_SEC,        USEC_PER_DAY  },
        { "round_interval",      config_parse_duration, H(round_interval),  100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "healthy_rounds",      config_parse_uint,     H(healthy_rounds),  1,                   1000          },
        { "max_attempts",        config_parse_uint,     H(max_attempts),    0,                   1000          },
        { "agent_check_address", config_parse_address, H(agent_check_address)                               },
        { "state_file",          config_parse_string,   H(state_file)                                        },
        {}
};
#undef H

static int parse_healing(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        Config *config = data;

        config->healing.enabled = true;
        return config_parse_table(c, key, node, healing_items, data);
}

/* A share of the cluster's nodes: "50%" or a ratio "0.5". */
static int parse_share(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        char buf[QUOTE_MAX], *end;
        const char *s;
        double v;
        int r;

        r = node_scalar(c, key, node, "a share like 50% or 0.5", &s);
        if (r < 0)
                return r;
        errno = 0;
        v = strtod(s, &end);
        if (end != s && streq(end, "%"))
                v /= 100;
        else if (end == s || *end)
                return config_error(c, node, key, "'%s' is not a share: write 50%% or 0.5", quote(buf, s));
        if (errno != 0 || !(v >= 0 && v <= 1))
                return config_error(c, node, key, "'%s' is out of range: 0%% to 100%% (0 to 1)", quote(buf, s));
        *(double *) data = v;
        return 0;
}

#define K(field) offsetof(Config, cluster.field)
static const ConfigItem cluster_items[] = {
        { "conninfo",              config_parse_string,   K(conninfo), .required = true                          },
        { "password_file",         config_parse_string,   K(password_file)                                       },
        { "lease_ttl",             config_parse_duration, K(lease_ttl),             100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "renew_interval",        config_parse_duration, K(renew_interval),        10 * USEC_PER_MSEC,  USEC_PER_HOUR },
        { "self_fence_after",      config_parse_duration, K(self_fence_after),      50 * USEC_PER_MSEC,  USEC_PER_HOUR },
        { "max_withdrawn_share",   parse_share,           K(max_withdrawn_share)                                 },
        { "shared_failure_share",  parse_share,           K(shared_failure_share)                                },
        { "shared_failure_window", config_parse_duration, K(shared_failure_window), USEC_PER_SEC,        USEC_PER_DAY  },
        { "peer_address",          config_parse_address,  K(peer_address)                                        },
        {}
};
#undef K

static int parse_cluster(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item, void *data) {
        Config *config = data;

        config->cluster.enabled = true;
        /* Unset shares are told apart from an explicit 0 by being negative. */
        config->cluster.max_withdrawn_share = config->cluster.shared_failure_share = -1;
        return config_parse_table(c, key, node, cluster_items, data);
}

static const ConfigItem config_items[] = {
        { "node",           parse_node_name,   offsetof(Config, node)           },
        { "web",            parse_web,         0                                },
        { "control_socket", parse_socket_path, offsetof(Config, control_socket) },
        { "probes",         parse_probes,      0                                },
        { "healing",        parse_healing,     0                                },
        { "cluster",        parse_cluster,     0                                },
        {}
};

/* What the healing section says must fit the rest of the file: members are
 * probes that exist, and the backoff can grow. */
static int check_healing(ConfigContext *c, yaml_node_t *root, Config *config) {
        HealingConfig *h = &config->healing;
        yaml_node_t *node;
        int ret = 0, r;

        if (!h->enabled)
                return 0;
        node = mapping_find(c, root, "healing");

        for (char **m = h->member_probes; m && *m; m++) {
                bool found = false;
                for (size_t i = 0; i < config->n_probes; i++)
                        if (streq(config->probes[i]->name, *m))
                                found = true;
                if (!found) {
                        r = config_error(c, node, "healing.member_probes", "no probe is named '%s'", *m);
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                }
        }
        if (h->backoff_initial > h->backoff_max) {
                r = config_error(c, node, "healing.backoff_initial", "is longer than backoff_max");
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }
        return ret;
}


static bool host_is_numeric(const char *h, size_t n) {
        char b[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        struct in_addr a4;

        if (n == 0 || h[0] == '/') /* empty: the default socket; '/': a socket directory */
                return true;
        if (n >= sizeof b)
                return false;
        memcpy(b, h, n);
        b[n] = 0;
        return inet_pton(AF_INET, b, &a4) == 1 || inet_pton(AF_INET6, b, &a6) == 1;
}

/* The connection string must parse, and libpq must never resolve a name on
 * our event loop: every host is numeric (or a socket directory) unless
 * hostaddr gives the addresses. */
static int check_conninfo(ConfigContext *c, yaml_node_t *node, const char *conninfo) {
        char *err = NULL, buf[QUOTE_MAX];
        const char *host = NULL, *hostaddr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
        int r = 0;

        if (!opts) {
                if (!err)
                        return -ENOMEM;
                err[strcspn(err, "\n")] = 0;
                r = config_error(c, node, "cluster.conninfo", "is not a valid libpq connection string: %s", err);
                PQfreemem(err);
                return r;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val)
                        continue;
                if (streq(o->keyword, "host"))
                        host = o->val;
                else if (streq(o->keyword, "hostaddr"))
                        hostaddr = o->val;
        }
        if (host && !(hostaddr && *hostaddr))
                for (const char *h = host; h;) {
                        const char *comma = strchr(h, ',');
                        size_t n = comma ? (size_t) (comma - h) : strlen(h);
                        if (!host_is_numeric(h, n)) {
                                snprintf(buf, sizeof buf, "%.*s", (int) MIN(n, (size_t) 60), h);
                                r = config_error(c, node, "cluster.conninfo",
                                                 "host '%s' is a name: the agent never resolves names on its event "
                                                 "loop; give numeric addresses in host= or hostaddr=", buf);
                                break;
                        }
                        h = comma ? comma + 1 : NULL;
                }
        PQconninfoFree(opts);
        return r;
}

/* Defaults, the timing rule that makes an expired lease trustworthy, the
 * connection string and the password. */
static int check_cluster(ConfigContext *c, yaml_node_t *root, Config *config) {
        ClusterConfig *k = &config->cluster;
        char a[DURATION_MAX], b[DURATION_MAX];
        yaml_node_t *node;
        int ret = 0, r;

        if (!k->enabled)
                return 0;
        node = mapping_find(c, root, "cluster");

        if (k->lease_ttl == 0)
                k->lease_ttl = 15 * USEC_PER_SEC;
        if (k->renew_interval == 0)
                k->renew_interval = 3 * USEC_PER_SEC;
        if (k->self_fence_after == 0)
                k->self_fence_after = 10 * USEC_PER_SEC;
        if (k->max_withdrawn_share < 0)
                k->max_withdrawn_share = 0.5;
        if (k->shared_failure_share < 0)
                k->shared_failure_share = 0.5;
        if (k->shared_failure_window == 0)
                k->shared_failure_window = 60 * USEC_PER_SEC;
        /* Peers must reach the node where it says. The address the DB sees
         * a node connect from is a pooler's or a proxy's as often as not
         * (pgbouncer, HAProxy in front of Patroni): never guessed. */
        /* A value that did not parse has its error already. */
        if ((!k->peer_address && !(node && mapping_find(c, node, "peer_address"))) ||
            (k->peer_address && k->peer_address[0] == ':')) {
                r = config_error(c, node, "cluster.peer_address",
                                 "%s: give the address this node's peers reach it on, with its port "
                                 "(e.g. \"192.0.2.11:9471\"); the one the database sees may be a "
                                 "connection pooler's",
                                 k->peer_address ? "needs a host, not only a port" : "is required");
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }

        if (k->renew_interval * 2 >= k->self_fence_after) {
                r = config_error(c, node, "cluster.self_fence_after",
                                 "must be longer than twice renew_interval (%s), so that one late renewal does "
                                 "not fence the node; got %s",
                                 format_duration(a, sizeof a, k->renew_interval),
                                 format_duration(b, sizeof b, k->self_fence_after));
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }
        if (k->self_fence_after + CLUSTER_FENCE_MARGIN > k->lease_ttl) {
                r = config_error(c, node, "cluster.self_fence_after",
                                 "must be at least 2s shorter than lease_ttl (%s): a fenced node kills its mail "
                                 "group in that margin, before its lease expires; got %s",
                                 format_duration(a, sizeof a, k->lease_ttl),
                                 format_duration(b, sizeof b, k->self_fence_after));
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }
        if (k->conninfo) {
                r = check_conninfo(c, node, k->conninfo);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = r;
        }
        if (k->password_file) {
                const char *why = NULL;
                r = read_secret_file(k->password_file, &k->password, &why);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        char q[QUOTE_MAX];
                        r = config_error(c, node, "cluster.password_file", "cannot use '%s': %s",
                                         quote(q, k->password_file), why);
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                }
        }
        return ret;
}

/* Anchors and aliases let a collection be reused, which would let a small
 * file expand into a huge one (and an alias inside its own anchor into a
 * cycle). Scalars may be reused; lists and mappings may be used only once. */
static int check_aliases(ConfigContext *c, yaml_node_t *root) {
        yaml_document_t *d = c->document;
        size_t n = (size_t) (d->nodes.top - d->nodes.start);
        _cleanup_free_ unsigned *refs = calloc(n + 1, sizeof(unsigned));
        int ret = 0, r;

        if (!refs)
                return -ENOMEM;

        refs[root - d->nodes.start + 1]++;
        for (yaml_node_t *node = d->nodes.start; node < d->nodes.top; node++) {
                if (node->type == YAML_SEQUENCE_NODE)
                        for (yaml_node_item_t *i = node->data.sequence.items.start; i < node->data.sequence.items.top; i++) {
                                if (*i >= 1 && (size_t) *i <= n)
                                        refs[*i]++;
                        }
                else if (node->type == YAML_MAPPING_NODE)
                        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
                                if (p->key >= 1 && (size_t) p->key <= n)
                                        refs[p->key]++;
                                if (p->value >= 1 && (size_t) p->value <= n)
                                        refs[p->value]++;
                        }
        }

        for (size_t id = 1; id <= n; id++) {
                yaml_node_t *node = d->nodes.start + id - 1;

                if (refs[id] <= 1 || node->type == YAML_SCALAR_NODE)
                        continue;
                r = config_error(c, node, NULL, "this %s is used again through a YAML alias; only scalars may be reused",
                                 node->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }
        return ret;
}

static int yaml_error(ConfigContext *c, yaml_parser_t *parser, const char *data, size_t size) {
        yaml_mark_t mark = parser->problem_mark;
        const char *problem = parser->problem ?: "invalid YAML";

        switch (parser->error) {
        case YAML_MEMORY_ERROR:
                return -ENOMEM;

        case YAML_READER_ERROR: {
                /* Reader errors (bad encoding, control characters) carry a byte offset, not a mark. */
                size_t end = MIN(parser->problem_offset, size);

                mark = (yaml_mark_t) {};
                for (size_t i = 0; i < end; i++)
                        if (data[i] == '\n') {
                                mark.line++;
                                mark.column = 0;
                        } else
                                mark.column++;
                if (parser->problem_value >= 0)
                        return context_add_error(c, &mark, NULL, "%s (byte 0x%02x)", problem,
                                                 (unsigned) parser->problem_value & 0xffu);
                return context_add_error(c, &mark, NULL, "%s", problem);
        }

        default:
                if (parser->context)
                        return context_add_error(c, &mark, NULL, "%s (%s at line %zu, column %zu)", problem,
                                                 parser->context, parser->context_mark.line + 1,
                                                 parser->context_mark.column + 1);
                return context_add_error(c, &mark, NULL, "%s", problem);
        }
}

static void parser_done(yaml_parser_t *p) {
        yaml_parser_delete(p);
}

static void document_done(yaml_document_t *d) {
        yaml_document_delete(d);
}

static void context_done(ConfigContext *c) {
        c->errors = strv_free(c->errors);
}

/* libyaml's scanner does work proportional to the nesting depth for every
 * token, and its loader compares every anchor and alias with all anchors
 * before it: a 1 MiB file of "[[[[..." keeps it busy for many minutes. This
 * first pass over the events stops such input while it is still cheap.
 * Syntax errors are left to the real load, which meets them at the same place. */
static int check_structure(ConfigContext *c, const char *data, size_t size) {
        _cleanup_(parser_done) yaml_parser_t parser = {};
        unsigned depth = 0, n_anchors = 0, n_aliases = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) data, size);

        for (;;) {
                yaml_event_t e;
                bool anchor;

                if (!yaml_parser_parse(&parser, &e))
                        return parser.error == YAML_MEMORY_ERROR ? -ENOMEM : 0;

                yaml_event_type_t type = e.type;
                yaml_mark_t mark = e.start_mark;
                anchor = (type == YAML_SCALAR_EVENT && e.data.scalar.anchor) ||
                         (type == YAML_SEQUENCE_START_EVENT && e.data.sequence_start.anchor) ||
                         (type == YAML_MAPPING_START_EVENT && e.data.mapping_start.anchor);
                yaml_event_delete(&e);

                switch (type) {
                case YAML_STREAM_END_EVENT:
                        return 0;
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT:
                        if (++depth > CONFIG_MAX_DEPTH)
                                return context_add_error(c, &mark, NULL, "nested deeper than %d levels",
                                                         CONFIG_MAX_DEPTH);
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        depth--;
                        break;
                case YAML_ALIAS_EVENT:
                        if (++n_aliases > CONFIG_MAX_ALIASES)
                                return context_add_error(c, &mark, NULL, "more than %d aliases", CONFIG_MAX_ALIASES);
                        break;
                default:
                        break;
                }

                if (anchor && ++n_anchors > CONFIG_MAX_ANCHORS)
                        return context_add_error(c, &mark, NULL, "more than %d anchors", CONFIG_MAX_ANCHORS);
        }
}

/* Fills what the file left out. The node name defaults to the host name. */
static int config_fill_defaults(ConfigContext *c, Config *config) {
        if (!config->node) {
                char h[HOST_NAME_MAX + 1] = {};

                if (gethostname(h, sizeof h - 1) < 0)
                        return context_add_error(c, NULL, "node", "not set, and the host name is unavailable: %s",
                                                 strerror(errno));
                config->node = strdup(h);
                if (!config->node)
                        return -ENOMEM;
        }
        if (!config->web_listen_address) {
                config->web_listen_address = strdup(CONFIG_DEFAULT_WEB_LISTEN_ADDRESS);
                if (!config->web_listen_address)
                        return -ENOMEM;
        }
        if (!config->control_socket) {
                config->control_socket = strdup(CONFIG_DEFAULT_CONTROL_SOCKET);
                if (!config->control_socket)
                        return -ENOMEM;
        }

        HealingConfig *h = &config->healing;
        if (!h->enabled)
                return 0;
        if (h->stop_timeout == 0)
                h->stop_timeout = 10 * USEC_PER_SEC;
        if (h->start_timeout == 0)
                h->start_timeout = 60 * USEC_PER_SEC;
        if (h->backoff_initial == 0)
                h->backoff_initial = 5 * USEC_PER_SEC;
        if (h->backoff_max == 0)
                h->backoff_max = 5 * USEC_PER_MINUTE;
        if (h->stable_period == 0)
                h->stable_period = 10 * USEC_PER_MINUTE;
        if (h->round_interval == 0)
                h->round_interval = 1 * USEC_PER_SEC;
        if (h->healthy_rounds == 0)
                h->healthy_rounds = 3;
        if (!h->agent_check_address) {
                h->agent_check_address = strdup(HEALING_DEFAULT_AGENT_CHECK_ADDRESS);
                if (!h->agent_check_address)
                        return -ENOMEM;
        }
        if (!h->state_file) {
                h->state_file = strdup(HEALING_DEFAULT_STATE_FILE);
                if (!h->state_file)
                        return -ENOMEM;
        }
        return 0;
}

/* Loads the single YAML document in data with the limits every file we read
 * gets (size, nesting, anchors, aliases) and hands its root to `parse`: NULL
 * for an empty document, else a mapping. */
static int document_parse(ConfigContext *c, const char *data, size_t size, ConfigDocumentParser parse,
                          void *userdata) {
        _cleanup_(parser_done) yaml_parser_t parser = {};
        _cleanup_(document_done) yaml_document_t document = {}, extra = {};
        yaml_node_t *root, *next;
        int r;

        /* Not the size: config_read_file() stops one byte past the limit, so
         * a 50 MB file would read as 1048577 bytes. */
        if (size > CONFIG_MAX_FILE_SIZE)
                return context_add_error(c, NULL, NULL, "larger than the limit of %d bytes", CONFIG_MAX_FILE_SIZE);

        r = check_structure(c, data, size);
        if (r < 0)
                return r;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) data, size);

        if (!yaml_parser_load(&parser, &document))
                return yaml_error(c, &parser, data, size);
        c->document = &document;

        root = yaml_document_get_root_node(&document);
        if (!root || node_is_null(root)) {
                r = parse(c, NULL, userdata);
                c->document = NULL;
                return r;
        }

        /* A second document would be silently ignored; say so instead. */
        if (!yaml_parser_load(&parser, &extra))
                r = yaml_error(c, &parser, data, size);
        else if ((next = yaml_document_get_root_node(&extra)))
                r = context_add_error(c, &next->start_mark, NULL,
                                      "a second YAML document; the configuration must be a single document");
        else if (root->type != YAML_MAPPING_NODE)
                r = context_add_error(c, &root->start_mark, NULL, "the configuration must be a mapping of keys, got %s",
                                      node_kind(root));
        else {
                r = check_aliases(c, root);
                if (r >= 0)
                        r = parse(c, root, userdata);
        }
        c->document = NULL;
        return r;
}

static int config_parse_root(ConfigContext *c, yaml_node_t *root, void *userdata) {
        Config *config = userdata;
        int r;

        if (!root)
                return context_add_error(c, &(yaml_mark_t) {}, NULL, "the configuration is empty");

        r = config_parse_table(c, NULL, root, config_items, config);
        if (r == -ENOMEM)
                return r;
        int k = check_healing(c, root, config);
        if (k == -ENOMEM)
                return k;
        int l = check_cluster(c, root, config);
        return l < 0 ? l : k < 0 ? k : r;
}

int config_parse_yaml(const char *filename, const char *data, size_t size, ConfigDocumentParser parse,
                      void *userdata, char ***ret_errors) {
        _cleanup_(context_done) ConfigContext c = { .filename = filename };
        int r;

        assert_return(filename, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        assert_return(parse, -EINVAL);

        r = document_parse(&c, data ?: "", size, parse, userdata);
        if (r == -ENOMEM)
                return r;
        if (c.n_errors > 0) {
                if (ret_errors)
                        *ret_errors = TAKE_PTR(c.errors);
                return -EINVAL;
        }
        if (ret_errors)
                *ret_errors = NULL;
        return 0;
}

int config_add_error(ConfigContext *c, const char *key, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = context_add_errorv(c, NULL, key, fmt, ap);
        va_end(ap);
        return r;
}

int config_load_string(const char *filename, const char *data, size_t size, Config **ret, char ***ret_errors) {
        _cleanup_(context_done) ConfigContext c = {};
        _cleanup_(config_freep) Config *config = NULL;
        int r;

        assert_return(filename, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        c.filename = filename;

        config = calloc(1, sizeof(Config));
        if (!config)
                return -ENOMEM;
        config->path = strdup(filename);
        if (!config->path)
                return -ENOMEM;

        r = document_parse(&c, data ?: "", size, config_parse_root, config);
        if (r == -ENOMEM)
                return r;

        if (c.n_errors == 0) {
                r = config_fill_defaults(&c, config);
                if (r == -ENOMEM)
                        return r;
        }

        if (c.n_errors > 0) {
                if (ret_errors)
                        *ret_errors = TAKE_PTR(c.errors);
                return -EINVAL;
        }

        if (ret_errors)
                *ret_errors = NULL;
        *ret = TAKE_PTR(config);
        return 0;
}

static int file_error(const char *path, int error, const char *what, char ***ret_errors) {
        char **l;

        if (ret_errors) {
                l = calloc(2, sizeof(char *));
                if (!l)
                        return -ENOMEM;
                if (asprintf(&l[0], "%s: %s: %s", path, what, strerror(error)) < 0) {
                        free(l);
                        return -ENOMEM;
                }
                *ret_errors = l;
        }
        return -error;
}

int config_read_file(const char *path, char **ret_data, size_t *ret_size, char ***ret_errors) {
        _cleanup_free_ char *data = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        size_t size = 0;

        assert_return(path, -EINVAL);
        assert_return(ret_data, -EINVAL);
        assert_return(ret_size, -EINVAL);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return file_error(path, errno, "cannot open", ret_errors);
        if (fstat(fd, &st) < 0)
                return file_error(path, errno, "cannot stat", ret_errors);
        if (!S_ISREG(st.st_mode))
                return file_error(path, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "not a regular file", ret_errors);

        /* One byte more than the limit, so that an oversized file is noticed
         * even if it grew since fstat(); the parser reports it. */
        data = malloc(CONFIG_MAX_FILE_SIZE + 1);
        if (!data)
                return -ENOMEM;
        while (size < CONFIG_MAX_FILE_SIZE + 1) {
                ssize_t n = read(fd, data + size, CONFIG_MAX_FILE_SIZE + 1 - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return file_error(path, errno, "cannot read", ret_errors);
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }

        *ret_data = TAKE_PTR(data);
        *ret_size = size;
        return 0;
}

int config_load_file(const char *path, Config **ret, char ***ret_errors) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        assert_return(path, -EINVAL);
        assert_return(ret, -EINVAL);

        r = config_read_file(path, &data, &size, ret_errors);
        if (r < 0)
                return r;
        return config_load_string(path, data, size, ret, ret_errors);
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;

        for (size_t i = 0; i < c->n_probes; i++)
                probe_free(c->probes[i]);
        free(c->probes);
        free(c->path);
        free(c->node);
        free(c->web_listen_address);
        free(c->web_config_file);
        free(c->control_socket);
        strv_free(c->healing.units);
        strv_free(c->healing.member_probes);
        free(c->healing.agent_check_address);
        free(c->healing.state_file);
        free(c->cluster.conninfo);
        free(c->cluster.password_file);
        if (c->cluster.password) {
                explicit_bzero(c->cluster.password, strlen(c->cluster.password));
                free(c->cluster.password);
        }
        free(c->cluster.peer_address);
        free(c);
        return NULL;
}
