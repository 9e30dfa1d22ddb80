/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ldap: one directory domain (FACTS: LDAP; several domains are several
 * probes) served by several controllers. Each controller is checked the way
 * the mail components use it: connect (ldap:// with optional StartTLS, or
 * ldaps://), simple bind as the service account, read the rootDSE
 * (namingContexts, supportedLDAPVersion), search the configured entry for
 * mail and proxyAddresses, and, for FreeIPA and ALD Pro, find the
 * ruPostMailAccount object class in the subschema. The domain is ok while
 * every controller serves, warning while at least one does (the failing ones
 * named with why), critical when none does.
 *
 * Why each controller is checked in a child process rather than with
 * libldap's asynchronous calls on the loop: LDAP_OPT_CONNECT_ASYNC makes the
 * TCP connect non-blocking, and ldap_result() with a zero timeout polls, but
 * every TLS handshake (ldaps://, and ldap_install_tls() after an
 * asynchronous StartTLS) runs inside ldap_int_tls_start(), which loops in
 * poll() until the handshake ends or LDAP_OPT_NETWORK_TIMEOUT passes: a
 * controller that stalls in the handshake would stall the agent. libldap
 * also reads a message with blocking reads once a part of it arrived. So
 * the synchronous API runs in a child (agent/lib/child.h) with its network
 * and operation timeouts set to the controller's budget, and writes a fixed
 * report to the parent. All controllers are checked at once.
 *
 * Failover needs a budget per controller (controller_timeout) shorter than
 * the probe's timeout: a black-holed controller must turn into "this one
 * failed" while the others' answers still count, not into a timeout of the
 * whole domain. Past the budget (plus a grace for the child to report
 * itself) the parent kills the child; a child that cannot even be killed
 * (stuck in the kernel) is never duplicated by later runs.
 *
 * In a child, a host name in a controller URL cannot block the agent, so
 * names are allowed (TLS certificates usually name the host). */

#include <ldap.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/time.h>

#include "config.h"
#include "lib/child.h"
#include "lib/secret-file.h"
#include "ldap-time.h"
#include "probes.h"

#define CONTROLLERS_MAX 16
#define REPORT_MAGIC 0x4c444150u /* "LDAP" */
#define CHILD_GRACE (250 * USEC_PER_MSEC)
#define RUPOST_CLASS "ruPostMailAccount"
#define RUPOST_CLASS_OID "1.3.6.1.4.1.57980.3.1.1.1"

typedef enum LdapFlavor {
        LDAP_FLAVOR_OPENLDAP,
        LDAP_FLAVOR_FREEIPA,
        LDAP_FLAVOR_ALDPRO,
        LDAP_FLAVOR_AD,
        _LDAP_FLAVOR_MAX,
        _LDAP_FLAVOR_INVALID = -EINVAL,
} LdapFlavor;

static const char *const flavor_table[_LDAP_FLAVOR_MAX] = {
        [LDAP_FLAVOR_OPENLDAP] = "openldap",
        [LDAP_FLAVOR_FREEIPA] = "freeipa",
        [LDAP_FLAVOR_ALDPRO] = "aldpro",
        [LDAP_FLAVOR_AD] = "ad",
};

/* How far a controller's check got. */
typedef enum LdapStage {
        STAGE_CONNECT,
        STAGE_STARTTLS,
        STAGE_BIND,
        STAGE_ROOTDSE,
        STAGE_SEARCH,
        STAGE_SCHEMA,
        STAGE_DONE,
        _STAGE_MAX,
} LdapStage;

static const char *const stage_table[_STAGE_MAX] = {
        [STAGE_CONNECT] = "connecting",
        [STAGE_STARTTLS] = "in StartTLS",
        [STAGE_BIND] = "binding",
        [STAGE_ROOTDSE] = "reading the rootDSE",
        [STAGE_SEARCH] = "searching",
        [STAGE_SCHEMA] = "reading the schema",
        [STAGE_DONE] = "done",
};

/* What a child writes to its parent: one fixed-size record of the same
 * binary (a fork), so there is nothing to parse but a size and a magic. */
typedef struct LdapReport {
        uint32_t magic;
        int stage;  /* LdapStage the check failed in, STAGE_DONE when all passed */
        int result; /* LDAP result code of the failure */
        bool timed_out;
        char error[384];
        uint64_t connect_usec;
        uint64_t bind_usec;
        uint64_t rootdse_usec;
        uint64_t search_usec;
        bool bound;
        bool rootdse_read;
        bool searched;
        bool v3;
        unsigned n_naming_contexts;
        char base[256]; /* where the entry was searched */
        unsigned n_entries;
        char entry_dn[256];
        unsigned n_proxy_addresses;
        bool has_mail;
        int schema; /* -1 not checked, 0 class missing, 1 present */
        /* The server's clock, where it publishes it (whole seconds): */
        bool have_time;
        int64_t server_time;  /* seconds since the epoch */
        uint64_t time_read_at; /* our CLOCK_REALTIME when the answer arrived */
        char time_source[48];  /* which attribute said it */
} LdapReport;

typedef struct LdapProbe LdapProbe;

typedef struct LdapController {
        Probe *probe;
        const char *url; /* in LdapProbe.controllers */
        char *description;
        Child *child;
        sd_event_source *timer;
        usec_t hung_since; /* CLOCK_REALTIME when a live child was last given up */

        /* one run */
        bool done;
        bool serving;
        bool schema_missing;
        bool have_report;
        LdapReport report;
        char *problem;
} LdapController;

struct LdapProbe {
        /* configuration */
        char *domain;
        char **controllers;
        bool starttls;
        char *bind_dn;
        char *password_file;
        char *base;
        char *search_filter;
        char *flavor_name;
        char *ca_file;
        int tls_verify; /* 0 unset (yes), 1 yes, -1 no */
        usec_t controller_timeout;
        usec_t skew_warning; /* a controller's clock this far off ours is a warning (whole seconds) */

        LdapFlavor flavor;
        char *password;

        LdapController *ctls;
        size_t n_ctls;
        size_t n_done;
};

static const MetricFamily family_controller_up = {
        .name = "rupost_ldap_controller_up",
        .type = METRIC_GAUGE,
        .help = "Whether the controller passed the last check: bind, rootDSE, search (and schema) (1) or not (0).",
};
static const MetricFamily family_bind_seconds = {
        .name = "rupost_ldap_bind_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Time the last simple bind as the service account took on the controller.",
};
static const MetricFamily family_search_seconds = {
        .name = "rupost_ldap_search_duration_seconds",
        .type = METRIC_GAUGE,
        .help = "Time the last search for the configured entry (or the rootDSE read) took on the controller.",
};
static const MetricFamily family_serving = {
        .name = "rupost_ldap_controllers_serving",
        .type = METRIC_GAUGE,
        .help = "How many controllers of the domain passed the last check.",
};

/* A boolean whose absence must be told from false: tls_verify defaults to true. */
static int config_parse_tristate(ConfigContext *c, const char *key, yaml_node_t *node, const ConfigItem *item,
                                 void *data) {
        bool b = false;
        int r;

        r = config_parse_bool(c, key, node, item, &b);
        if (r < 0)
                return r;
        *(int *) data = b ? 1 : -1;
        return 0;
}

static const ConfigItem ldap_config_items[] = {
        { "domain",             config_parse_string,    offsetof(LdapProbe, domain)                          },
        { "controllers",        config_parse_strv,      offsetof(LdapProbe, controllers), 0, CONTROLLERS_MAX,
          .required = true },
        { "starttls",           config_parse_bool,      offsetof(LdapProbe, starttls)                        },
        { "bind_dn",            config_parse_string,    offsetof(LdapProbe, bind_dn)                         },
        { "password_file",      config_parse_string,    offsetof(LdapProbe, password_file)                   },
        { "base",               config_parse_string,    offsetof(LdapProbe, base)                            },
        { "search_filter",      config_parse_string,    offsetof(LdapProbe, search_filter)                   },
        { "flavor",             config_parse_string,    offsetof(LdapProbe, flavor_name)                     },
        { "ca_file",            config_parse_string,    offsetof(LdapProbe, ca_file)                         },
        { "tls_verify",         config_parse_tristate,  offsetof(LdapProbe, tls_verify)                      },
        { "controller_timeout", config_parse_duration,  offsetof(LdapProbe, controller_timeout),
          100 * USEC_PER_MSEC, USEC_PER_HOUR },
        { "skew_warning",       config_parse_duration,  offsetof(LdapProbe, skew_warning),
          USEC_PER_SEC, USEC_PER_HOUR },
        {}
};

static int ldap_verify(Probe *p, ConfigContext *c) {
        LdapProbe *l = probe_get_userdata(p);
        int r = 0;

        if (!l->domain && !(l->domain = strdup(p->name)))
                return -ENOMEM;
        /* Whole seconds on the server's side: 1 s apart may be no skew at all. */
        l->skew_warning = l->skew_warning ?: 2 * USEC_PER_SEC;

        l->flavor = LDAP_FLAVOR_OPENLDAP;
        if (l->flavor_name) {
                l->flavor = _LDAP_FLAVOR_INVALID;
                for (LdapFlavor f = 0; f < _LDAP_FLAVOR_MAX; f++)
                        if (streq(l->flavor_name, flavor_table[f]))
                                l->flavor = f;
                if (l->flavor < 0)
                        r = config_error(c, NULL, "flavor", "'%s' is not one of openldap, freeipa, aldpro, ad",
                                         l->flavor_name);
        }

        if (strv_length(l->controllers) == 0)
                r = config_error(c, NULL, "controllers", "names no controller");
        for (char **i = l->controllers; i && *i; i++) {
                LDAPURLDesc *lud = NULL;

                for (char **j = l->controllers; j < i; j++)
                        if (streq(*i, *j))
                                r = config_error(c, NULL, "controllers", "'%s' is listed twice", *i);
                if (ldap_url_parse(*i, &lud) != LDAP_URL_SUCCESS) {
                        r = config_error(c, NULL, "controllers",
                                         "'%s' is not an LDAP URL such as ldap://192.0.2.1:389 or ldaps://dc1:636",
                                         *i);
                        continue;
                }
                if (!streq(lud->lud_scheme, "ldap") && !streq(lud->lud_scheme, "ldaps"))
                        r = config_error(c, NULL, "controllers", "'%s': only ldap:// and ldaps:// are supported", *i);
                else if (!lud->lud_host || !*lud->lud_host)
                        r = config_error(c, NULL, "controllers", "'%s' names no host", *i);
                else if ((lud->lud_dn && *lud->lud_dn) || lud->lud_attrs || lud->lud_filter || lud->lud_exts)
                        r = config_error(c, NULL, "controllers",
                                         "'%s': only scheme, host and port; put the search base into 'base'", *i);
                else if (l->starttls && streq(lud->lud_scheme, "ldaps"))
                        r = config_error(c, NULL, "starttls",
                                         "'%s' is ldaps:// (TLS from the start), StartTLS applies to ldap:// only",
                                         *i);
                ldap_free_urldesc(lud);
        }

        if (!!l->bind_dn != !!l->password_file)
                r = config_error(c, NULL, l->bind_dn ? "password_file" : "bind_dn",
                                 "bind_dn and password_file go together (neither: anonymous bind)");
        if (l->base && !l->search_filter)
                r = config_error(c, NULL, "base", "is only used with search_filter");
        if (l->search_filter) {
                /* Let the library tell a malformed filter now, not at 3 a.m.:
                 * encoding an assertion control parses the filter, offline. */
                LDAP *ld = NULL;
                struct berval bv = {};
                if (ldap_initialize(&ld, NULL) != LDAP_SUCCESS)
                        return -ENOMEM;
                if (ldap_create_assertion_control_value(ld, l->search_filter, &bv) != LDAP_SUCCESS)
                        r = config_error(c, NULL, "search_filter", "'%s' is not a valid LDAP filter",
                                         l->search_filter);
                ber_memfree(bv.bv_val);
                ldap_unbind_ext(ld, NULL, NULL);
        }
        if (l->ca_file && access(l->ca_file, R_OK) < 0)
                r = config_error(c, NULL, "ca_file", "cannot read '%s': %s", l->ca_file, strerror(errno));

        if (l->controller_timeout == 0)
                l->controller_timeout = p->timeout * 3 / 5;
        if (l->controller_timeout + 2 * CHILD_GRACE > p->timeout)
                r = config_error(c, NULL, "controller_timeout",
                                 "must leave at least 500ms of the probe's timeout for the other controllers' "
                                 "answers to count; raise timeout or lower controller_timeout");

        if (l->password_file) {
                const char *why = NULL;
                int k = read_secret_file(l->password_file, &l->password, &why);
                if (k == -ENOMEM)
                        return k;
                if (k < 0)
                        r = config_error(c, NULL, "password_file", "cannot use '%s': %s", l->password_file, why);
        }
        return r < 0 ? r : 0;
}

static int ldap_setup(Probe *p) {
        LdapProbe *l = probe_get_userdata(p);
        size_t n = strv_length(l->controllers);

        /* Called again after a failure: keep what the last attempt made. */
        if (!l->ctls) {
                l->ctls = calloc(n, sizeof *l->ctls);
                if (!l->ctls)
                        return -ENOMEM;
                l->n_ctls = n;
        }
        for (size_t i = 0; i < n; i++) {
                l->ctls[i].probe = p;
                l->ctls[i].url = l->controllers[i];
                if (!l->ctls[i].description &&
                    asprintf(&l->ctls[i].description, "ldap %s %s", p->name, l->controllers[i]) < 0) {
                        l->ctls[i].description = NULL;
                        return -ENOMEM;
                }
        }
        return 0;
}

static void controller_stop(LdapController *ctl) {
        if (ctl->child) {
                ctl->hung_since = now(CLOCK_REALTIME);
                ctl->child = child_abandon(ctl->child);
        }
        ctl->timer = sd_event_source_disable_unref(ctl->timer);
}

static void ldap_stop(Probe *p) {
        LdapProbe *l = probe_get_userdata(p);

        for (size_t i = 0; i < l->n_ctls; i++) {
                LdapController *ctl = &l->ctls[i];
                controller_stop(ctl);
                free(ctl->problem);
                ctl->problem = NULL;
        }
        l->n_done = 0;
}

static void ldap_done(Probe *p) {
        LdapProbe *l = probe_get_userdata(p);

        ldap_stop(p);
        for (size_t i = 0; i < l->n_ctls; i++)
                free(l->ctls[i].description);
        free(l->ctls);
        if (l->password) {
                explicit_bzero(l->password, strlen(l->password));
                free(l->password);
        }
        free(l->domain);
        strv_free(l->controllers);
        free(l->bind_dn);
        free(l->password_file);
        free(l->base);
        free(l->search_filter);
        free(l->flavor_name);
        free(l->ca_file);
}

/* ---- in the child ---- */

typedef struct ChildState {
        const LdapProbe *l;
        const char *url;
        usec_t started;
        LDAP *ld;
        LdapReport *rep;
} ChildState;

static usec_t remaining(ChildState *s) {
        usec_t spent = now(CLOCK_MONOTONIC) - s->started;
        return spent >= s->l->controller_timeout ? 1 : s->l->controller_timeout - spent;
}

static struct timeval remaining_tv(ChildState *s) {
        usec_t u = remaining(s);
        return (struct timeval) { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_usec = (suseconds_t) (u % USEC_PER_SEC) };
}

/* Records why a step failed; returns a code other than LDAP_SUCCESS. */
_printf_(3, 4) static int fail(ChildState *s, int rc, const char *fmt, ...) {
        char what[192] = "";
        char *diag = NULL;
        va_list ap;

        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(what, sizeof what, fmt, ap);
                va_end(ap);
        }
        if (s->ld)
                (void) ldap_get_option(s->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
        s->rep->result = rc;
        /* libldap's own network timeout is the rest of the budget, and poll()
         * counts in whole milliseconds: it may give up a little before the
         * budget ends. "Can't contact" at the end of the budget is that
         * timeout; a refused connection comes back at once. */
        s->rep->timed_out = rc == LDAP_TIMEOUT || (rc == LDAP_SERVER_DOWN && remaining(s) <= 50 * USEC_PER_MSEC);
        const char *err = rc != LDAP_SUCCESS ? ldap_err2string(rc) : "";
        /* libldap built with GnuTLS says only this; no news to anyone. */
        if (diag && streq(diag, "(unknown error code)"))
                *diag = 0;
        snprintf(s->rep->error, sizeof s->rep->error, "%s%s%s%s%s%s", what, *what && *err ? ": " : "", err,
                 diag && *diag ? " (" : "", diag && *diag ? diag : "", diag && *diag ? ")" : "");
        ldap_memfree(diag);
        /* A check that failed by our judgement (no entry, no class) keeps
         * result LDAP_SUCCESS in the report but must stop the sequence. */
        return rc != LDAP_SUCCESS ? rc : LDAP_OTHER;
}

static int child_set_timeouts(ChildState *s) {
        struct timeval tv = remaining_tv(s);
        if (ldap_set_option(s->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) != LDAP_OPT_SUCCESS ||
            ldap_set_option(s->ld, LDAP_OPT_TIMEOUT, &tv) != LDAP_OPT_SUCCESS)
                return fail(s, LDAP_OTHER, "cannot set the timeouts");
        return LDAP_SUCCESS;
}

static int child_setup(ChildState *s) {
        const LdapProbe *l = s->l;
        int version = LDAP_VERSION3, rc;

        rc = ldap_initialize(&s->ld, s->url);
        if (rc != LDAP_SUCCESS)
                return fail(s, rc, "cannot use the URL");
        if (ldap_set_option(s->ld, LDAP_OPT_PROTOCOL_VERSION, &version) != LDAP_OPT_SUCCESS ||
            ldap_set_option(s->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS)
                return fail(s, LDAP_OTHER, "cannot set the protocol options");

        /* Per-handle TLS settings, then a new context so they take effect. */
        int require = l->tls_verify >= 0 ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
        if (ldap_set_option(s->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require) != LDAP_OPT_SUCCESS)
                return fail(s, LDAP_OTHER, "cannot set the certificate check");
        if (l->ca_file && ldap_set_option(s->ld, LDAP_OPT_X_TLS_CACERTFILE, l->ca_file) != LDAP_OPT_SUCCESS)
                return fail(s, LDAP_OTHER, "cannot use ca_file '%s'", l->ca_file);
        int server = 0;
        if (ldap_set_option(s->ld, LDAP_OPT_X_TLS_NEWCTX, &server) != LDAP_OPT_SUCCESS)
                return fail(s, LDAP_OTHER, "cannot set up TLS");
        return child_set_timeouts(s);
}

static int child_connect(ChildState *s) {
        usec_t t = now(CLOCK_MONOTONIC);
        int rc;

        s->rep->stage = STAGE_CONNECT;
        rc = ldap_connect(s->ld);
        if (rc != LDAP_SUCCESS)
                return fail(s, rc, NULL);
        if (s->l->starttls) {
                s->rep->stage = STAGE_STARTTLS;
                rc = child_set_timeouts(s);
                if (rc != LDAP_SUCCESS)
                        return rc;
                rc = ldap_start_tls_s(s->ld, NULL, NULL);
                if (rc != LDAP_SUCCESS)
                        return fail(s, rc, NULL);
        }
        s->rep->connect_usec = now(CLOCK_MONOTONIC) - t;
        return LDAP_SUCCESS;
}

static int child_bind(ChildState *s) {
        const LdapProbe *l = s->l;
        struct berval cred = {};
        usec_t t;
        int rc;

        s->rep->stage = STAGE_BIND;
        rc = child_set_timeouts(s);
        if (rc != LDAP_SUCCESS)
                return rc;
        if (l->password) {
                cred.bv_val = l->password;
                cred.bv_len = strlen(l->password);
        }
        t = now(CLOCK_MONOTONIC);
        rc = ldap_sasl_bind_s(s->ld, l->bind_dn ?: "", LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
        if (rc != LDAP_SUCCESS)
                return fail(s, rc, NULL);
        s->rep->bind_usec = now(CLOCK_MONOTONIC) - t;
        s->rep->bound = true;
        return LDAP_SUCCESS;
}

static int child_search(ChildState *s, const char *base, int scope, const char *filter, char **attrs, int limit,
                        LDAPMessage **ret) {
        struct timeval tv = remaining_tv(s);
        int rc;

        rc = ldap_search_ext_s(s->ld, base, scope, filter, attrs, 0, NULL, NULL, &tv, limit, ret);
        if (rc == LDAP_SIZELIMIT_EXCEEDED && *ret)
                return LDAP_SUCCESS; /* more than asked for: enough to judge */
        return rc;
}

/* Takes the server's time from attribute attr of entry e, if it is there. */
static bool child_take_time(ChildState *s, LDAPMessage *e, const char *attr, const char *source) {
        struct berval **v = e ? ldap_get_values_len(s->ld, e, attr) : NULL;
        int64_t t;
        bool ok = v && v[0] && ldap_generalized_time_parse(v[0]->bv_val, v[0]->bv_len, &t) >= 0;

        if (ok) {
                s->rep->have_time = true;
                s->rep->server_time = t;
                snprintf(s->rep->time_source, sizeof s->rep->time_source, "%s", source);
        }
        ldap_value_free_len(v);
        return ok;
}

/* Where the rootDSE does not say the time (Active Directory's does), the
 * monitor entries of 389 Directory Server (FreeIPA, ALD Pro) and OpenLDAP
 * may, when the account may read them. Optional: nothing here fails the
 * check, and each read costs one round trip within the deadline. */
static void child_read_time(ChildState *s) {
        static const struct {
                const char *base;
                const char *attr;
                const char *source;
        } places[] = {
                { "cn=monitor", "currentTime", "cn=monitor currentTime" },
                { "cn=Current,cn=Time,cn=Monitor", "monitorTimestamp", "cn=Monitor monitorTimestamp" },
        };

        for (size_t i = 0; i < ELEMENTSOF(places) && !s->rep->have_time; i++) {
                char *attrs[] = { (char *) places[i].attr, NULL };
                LDAPMessage *res = NULL;
                uint64_t sent = now(CLOCK_REALTIME);

                if (child_search(s, places[i].base, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, &res) ==
                    LDAP_SUCCESS && child_take_time(s, ldap_first_entry(s->ld, res), places[i].attr, places[i].source))
                        s->rep->time_read_at = (sent + now(CLOCK_REALTIME)) / 2;
                ldap_msgfree(res);
        }
}

static int child_rootdse(ChildState *s, char *subschema, size_t len) {
        char *attrs[] = { (char *) "namingContexts", (char *) "supportedLDAPVersion",
                          (char *) "subschemaSubentry", (char *) "currentTime", NULL };
        uint64_t sent = now(CLOCK_REALTIME);
        LDAPMessage *res = NULL;
        usec_t t = now(CLOCK_MONOTONIC);
        int rc;

        s->rep->stage = STAGE_ROOTDSE;
        rc = child_search(s, "", LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, &res);
        if (rc != LDAP_SUCCESS) {
                ldap_msgfree(res);
                return fail(s, rc, NULL);
        }
        s->rep->rootdse_usec = now(CLOCK_MONOTONIC) - t;
        s->rep->rootdse_read = true;

        LDAPMessage *e = ldap_first_entry(s->ld, res);
        struct berval **v;
        if (child_take_time(s, e, "currentTime", "rootDSE currentTime"))
                s->rep->time_read_at = (sent + now(CLOCK_REALTIME)) / 2;
        if (e && (v = ldap_get_values_len(s->ld, e, "namingContexts"))) {
                s->rep->n_naming_contexts = (unsigned) ldap_count_values_len(v);
                if (v[0])
                        snprintf(s->rep->base, sizeof s->rep->base, "%.*s", (int) v[0]->bv_len, v[0]->bv_val);
                ldap_value_free_len(v);
        }
        bool listed_versions = false;
        if (e && (v = ldap_get_values_len(s->ld, e, "supportedLDAPVersion"))) {
                listed_versions = true;
                for (struct berval **i = v; *i; i++)
                        if ((*i)->bv_len == 1 && (*i)->bv_val[0] == '3')
                                s->rep->v3 = true;
                ldap_value_free_len(v);
        }
        if (e && (v = ldap_get_values_len(s->ld, e, "subschemaSubentry"))) {
                if (v[0])
                        snprintf(subschema, len, "%.*s", (int) v[0]->bv_len, v[0]->bv_val);
                ldap_value_free_len(v);
        }
        ldap_msgfree(res);
        /* Some directories hide parts of the rootDSE from some accounts: a
         * missing list is no failure, a list without version 3 is. */
        if (listed_versions && !s->rep->v3)
                return fail(s, LDAP_PROTOCOL_ERROR, "the server does not list LDAPv3 as supported");
        return LDAP_SUCCESS;
}

static int child_find_entry(ChildState *s) {
        const LdapProbe *l = s->l;
        char *attrs[] = { (char *) "mail", (char *) "proxyAddresses", NULL };
        LDAPMessage *res = NULL;
        usec_t t;
        int rc;

        s->rep->stage = STAGE_SEARCH;
        if (l->base)
                snprintf(s->rep->base, sizeof s->rep->base, "%s", l->base);
        if (!s->rep->base[0])
                return fail(s, LDAP_SUCCESS, "the rootDSE names no namingContexts to search: set 'base'");

        t = now(CLOCK_MONOTONIC);
        rc = child_search(s, s->rep->base, LDAP_SCOPE_SUBTREE, l->search_filter, attrs, 2, &res);
        if (rc != LDAP_SUCCESS) {
                ldap_msgfree(res);
                return fail(s, rc, NULL);
        }
        s->rep->search_usec = now(CLOCK_MONOTONIC) - t;
        s->rep->searched = true;

        int n = ldap_count_entries(s->ld, res);
        s->rep->n_entries = n > 0 ? (unsigned) n : 0;
        LDAPMessage *e = ldap_first_entry(s->ld, res);
        if (e) {
                char *dn = ldap_get_dn(s->ld, e);
                snprintf(s->rep->entry_dn, sizeof s->rep->entry_dn, "%s", dn ?: "");
                ldap_memfree(dn);
                struct berval **v = ldap_get_values_len(s->ld, e, "mail");
                s->rep->has_mail = v && v[0];
                ldap_value_free_len(v);
                v = ldap_get_values_len(s->ld, e, "proxyAddresses");
                s->rep->n_proxy_addresses = v ? (unsigned) ldap_count_values_len(v) : 0;
                ldap_value_free_len(v);
        }
        ldap_msgfree(res);
        if (s->rep->n_entries == 0)
                return fail(s, LDAP_SUCCESS, "no entry matches %s under %s", l->search_filter, s->rep->base);
        return LDAP_SUCCESS;
}

static bool objectclass_is_rupost(const struct berval *v) {
        /* "( 1.3.6.1.4.1.57980.3.1.1.1 NAME 'ruPostMailAccount' ... )" */
        char b[512];
        snprintf(b, sizeof b, "%.*s", (int) MIN(v->bv_len, sizeof b - 1), v->bv_val);
        return strcasestr(b, "'" RUPOST_CLASS "'") || strstr(b, "( " RUPOST_CLASS_OID " ");
}

static int child_schema(ChildState *s, const char *subschema) {
        char *attrs[] = { (char *) "objectClasses", NULL };
        LDAPMessage *res = NULL;
        int rc;

        s->rep->stage = STAGE_SCHEMA;
        rc = child_search(s, *subschema ? subschema : "cn=schema", LDAP_SCOPE_BASE, "(objectClass=subschema)", attrs,
                          0, &res);
        if (rc != LDAP_SUCCESS) {
                ldap_msgfree(res);
                return fail(s, rc, "%s", *subschema ? subschema : "cn=schema");
        }
        s->rep->schema = 0;
        LDAPMessage *e = ldap_first_entry(s->ld, res);
        struct berval **v = e ? ldap_get_values_len(s->ld, e, "objectClasses") : NULL;
        for (struct berval **i = v; i && *i; i++)
                if (objectclass_is_rupost(*i)) {
                        s->rep->schema = 1;
                        break;
                }
        ldap_value_free_len(v);
        ldap_msgfree(res);
        if (s->rep->schema == 0)
                return fail(s, LDAP_SUCCESS, "no objectClass " RUPOST_CLASS " in %s",
                            *subschema ? subschema : "cn=schema");
        return LDAP_SUCCESS;
}

static int ldap_child(int fd, void *arg) {
        LdapController *ctl = arg;
        LdapReport rep = { .magic = REPORT_MAGIC, .schema = -1 };
        ChildState s = {
                .l = probe_get_userdata(ctl->probe),
                .url = ctl->url,
                .started = now(CLOCK_MONOTONIC),
                .rep = &rep,
        };
        char subschema[256] = "";

        if (child_setup(&s) == LDAP_SUCCESS && child_connect(&s) == LDAP_SUCCESS &&
            child_bind(&s) == LDAP_SUCCESS && child_rootdse(&s, subschema, sizeof subschema) == LDAP_SUCCESS &&
            (!s.l->search_filter || child_find_entry(&s) == LDAP_SUCCESS) &&
            ((s.l->flavor != LDAP_FLAVOR_FREEIPA && s.l->flavor != LDAP_FLAVOR_ALDPRO) ||
             child_schema(&s, subschema) == LDAP_SUCCESS)) {
                rep.stage = STAGE_DONE;
                child_read_time(&s);
        }

        /* The report first: a server that hangs in the unbind must not lose it. */
        const char *b = (const char *) &rep;
        for (size_t n = 0; n < sizeof rep;) {
                ssize_t k = write(fd, b + n, sizeof rep - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return 1;
                n += (size_t) k;
        }
        return 0;
}

/* ---- in the agent ---- */

static void controller_describe(LdapProbe *l, LdapController *ctl) {
        const LdapReport *rep = &ctl->report;
        char t[DURATION_MAX];
        int k;

        if (rep->stage == STAGE_DONE) {
                ctl->serving = true;
                return;
        }
        if (rep->stage == STAGE_SCHEMA && rep->schema == 0) {
                ctl->schema_missing = true;
                return;
        }
        if (rep->timed_out)
                k = asprintf(&ctl->problem, "no answer within %s while %s",
                             format_duration(t, sizeof t, l->controller_timeout), stage_table[rep->stage]);
        else if (rep->stage == STAGE_BIND && rep->result == LDAP_INVALID_CREDENTIALS)
                k = asprintf(&ctl->problem, "bind as '%s' rejected: %s: check the account and the password in %s",
                             l->bind_dn ?: "(anonymous)", rep->error, l->password_file ?: "password_file");
        else if (rep->stage == STAGE_BIND)
                k = asprintf(&ctl->problem, "bind as '%s' failed: %s", l->bind_dn ?: "(anonymous)", rep->error);
        else if (rep->stage == STAGE_SEARCH && rep->result == LDAP_SUCCESS)
                k = asprintf(&ctl->problem, "%s", rep->error);
        else if (rep->stage == STAGE_SEARCH)
                k = asprintf(&ctl->problem, "search for %s under %s failed: %s", l->search_filter, rep->base,
                             rep->error);
        else if (rep->stage == STAGE_STARTTLS || (rep->stage == STAGE_CONNECT && strncmp(ctl->url, "ldaps:", 6) == 0))
                /* libldap does not tell a refused port from a refused
                 * certificate here; the operator can, given the hint. */
                k = asprintf(&ctl->problem, "%s failed: %s%s", rep->stage == STAGE_CONNECT ? "connect" : "StartTLS",
                             rep->error,
                             l->tls_verify >= 0 ? " (if the port answers, check that the certificate verifies "
                                                  "against ca_file and names the host)"
                                                : "");
        else
                k = asprintf(&ctl->problem, "%s failed: %s",
                             rep->stage == STAGE_CONNECT   ? "connect"
                             : rep->stage == STAGE_ROOTDSE ? "reading the rootDSE"
                                                           : "reading the schema",
                             rep->error);
        if (k < 0)
                ctl->problem = NULL;
}

/* Appends "; " + text; on allocation failure the reason is shorter, not lost. */
static void append(char **s, const char *fmt, ...) _printf_(2, 3);
static void append(char **s, const char *fmt, ...) {
        _cleanup_free_ char *t = NULL;
        char *joined = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&t, fmt, ap) < 0)
                t = NULL;
        va_end(ap);
        if (!t)
                return;
        if (!*s) {
                *s = TAKE_PTR(t);
                return;
        }
        if (asprintf(&joined, "%s; %s", *s, t) >= 0) {
                free(*s);
                *s = joined;
        }
}

/* The controller's clock against ours, where it publishes it: a sample of
 * rupost_time_offset_seconds, and a line for the reason when it is off. */
static void controller_time(Probe *p, LdapController *ctl, char **skews) {
        LdapProbe *l = probe_get_userdata(p);
        const LdapReport *rep = &ctl->report;

        if (!ctl->have_report || !rep->have_time)
                return;
        /* Whole seconds: compare with ours truncated the same way. */
        double skew = (double) rep->server_time - (double) (rep->time_read_at / USEC_PER_SEC);
        (void) probe_add_sample(p, &family_time_offset_seconds, skew, "source", ctl->url, NULL);
        if (fabs(skew) >= usec_to_seconds(l->skew_warning))
                append(skews, "%s's clock is %.0f s %s of ours (%s): the cluster tolerates 1 s; check the time sync "
                       "of that controller", ctl->url, fabs(skew), skew > 0 ? "ahead" : "behind", rep->time_source);
}

static int ldap_finish(Probe *p) {
        LdapProbe *l = probe_get_userdata(p);
        _cleanup_free_ char *failures = NULL, *schema = NULL, *skews = NULL;
        unsigned n_serving = 0;
        usec_t bind_max = 0, search_max = 0;
        const LdapReport *found = NULL;
        char t1[DURATION_MAX], t2[DURATION_MAX];

        for (size_t i = 0; i < l->n_ctls; i++) {
                LdapController *ctl = &l->ctls[i];
                const LdapReport *rep = &ctl->report;

                (void) probe_add_sample(p, &family_controller_up, ctl->serving, "domain", l->domain, "controller",
                                        ctl->url, NULL);
                if (ctl->have_report && rep->bound) {
                        (void) probe_add_sample(p, &family_bind_seconds, usec_to_seconds(rep->bind_usec), "domain",
                                                l->domain, "controller", ctl->url, NULL);
                        bind_max = MAX(bind_max, rep->bind_usec);
                }
                /* The entry search, or the rootDSE read when no entry is configured. */
                if (ctl->have_report && (l->search_filter ? rep->searched : rep->rootdse_read)) {
                        usec_t u = l->search_filter ? rep->search_usec : rep->rootdse_usec;
                        (void) probe_add_sample(p, &family_search_seconds, usec_to_seconds(u), "domain", l->domain,
                                                "controller", ctl->url, NULL);
                        search_max = MAX(search_max, u);
                }

                controller_time(p, ctl, &skews);
                if (ctl->serving) {
                        n_serving++;
                        if (!found)
                                found = rep;
                } else if (ctl->schema_missing)
                        append(&schema, "%s", ctl->url);
                else
                        append(&failures, "%s: %s", ctl->url, ctl->problem ?: "failed");
        }
        (void) probe_add_sample(p, &family_serving, n_serving, "domain", l->domain, NULL);

        if (schema)
                return probe_finish(p, PROBE_CRITICAL,
                                    "domain %s: objectClass " RUPOST_CLASS " (" RUPOST_CLASS_OID ") is missing from "
                                    "the schema of %s: load the RuPost schema extension (" RUPOST_CLASS
                                    ", proxyAddresses) into the directory%s%s",
                                    l->domain, schema, failures ? "; also: " : "", failures ?: "");
        if (n_serving == 0)
                return probe_finish(p, PROBE_CRITICAL, "domain %s: no controller serves: %s", l->domain,
                                    failures ?: "no controller checked");
        if (failures)
                return probe_finish(p, PROBE_WARNING, "domain %s: %u of %zu controllers serve; failing: %s%s%s",
                                    l->domain, n_serving, l->n_ctls, failures, skews ? "; " : "", skews ?: "");
        if (skews)
                return probe_finish(p, PROBE_WARNING, "domain %s: all %zu controllers serve; %s", l->domain,
                                    l->n_ctls, skews);

        _cleanup_free_ char *entry = NULL;
        if (l->search_filter && found &&
            asprintf(&entry, "; %s found as %s", l->search_filter, found->entry_dn) < 0)
                entry = NULL;
        return probe_finish(p, PROBE_OK, "domain %s: all %zu controllers serve%s; slowest bind %s, search %s",
                            l->domain, l->n_ctls, entry ?: "", format_duration(t1, sizeof t1, bind_max),
                            format_duration(t2, sizeof t2, search_max));
}

static int controller_done(LdapController *ctl) {
        Probe *p = ctl->probe;
        LdapProbe *l = probe_get_userdata(p);

        ctl->done = true;
        l->n_done++;
        if (l->n_done == l->n_ctls)
                return ldap_finish(p);
        return 0;
}

static void on_child_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        LdapController *ctl = userdata;
        LdapProbe *l = probe_get_userdata(ctl->probe);

        ctl->timer = sd_event_source_disable_unref(ctl->timer);

        if (status == 0 && size == sizeof(LdapReport)) {
                memcpy(&ctl->report, output, sizeof ctl->report);
                if (ctl->report.magic == REPORT_MAGIC && ctl->report.stage >= 0 && ctl->report.stage < _STAGE_MAX) {
                        ctl->report.error[sizeof ctl->report.error - 1] = 0;
                        ctl->report.base[sizeof ctl->report.base - 1] = 0;
                        ctl->report.entry_dn[sizeof ctl->report.entry_dn - 1] = 0;
                        ctl->have_report = true;
                        controller_describe(l, ctl);
                }
        }
        if (!ctl->have_report &&
            asprintf(&ctl->problem, "the check process failed (%s %d, report of %zu bytes)",
                     status == -EINTR ? "killed by a signal" : "exit status", status, size) < 0)
                ctl->problem = NULL;
        /* The output belongs to the child handle: free it only now. */
        ctl->child = child_abandon(c);
        (void) controller_done(ctl);
}

static int on_controller_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        LdapController *ctl = userdata;
        LdapProbe *l = probe_get_userdata(ctl->probe);
        char t[DURATION_MAX];

        /* The child did not even report its own timeout: kill it. */
        controller_stop(ctl);
        if (asprintf(&ctl->problem, "no answer within %s", format_duration(t, sizeof t, l->controller_timeout)) < 0)
                ctl->problem = NULL;
        return controller_done(ctl);
}

static int ldap_start(Probe *p) {
        LdapProbe *l = probe_get_userdata(p);
        sd_event *e = probe_get_event(p);
        int r;

        l->n_done = 0;
        probe_set_phase(p, "waiting for the controllers");
        for (size_t i = 0; i < l->n_ctls; i++) {
                LdapController *ctl = &l->ctls[i];

                ctl->done = ctl->serving = ctl->schema_missing = ctl->have_report = false;
                ctl->report = (LdapReport) {};
                ctl->problem = NULL;
        }

        for (size_t i = 0; i < l->n_ctls; i++) {
                LdapController *ctl = &l->ctls[i];

                if (child_abandoned_alive(ctl->description) > 0) {
                        /* Never pile up children stuck on one controller. */
                        char when[64] = "an earlier run";
                        struct tm tm;
                        time_t sec = (time_t) (ctl->hung_since / USEC_PER_SEC);
                        if (ctl->hung_since > 0 && localtime_r(&sec, &tm))
                                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
                        if (asprintf(&ctl->problem, "the check started at %s still hangs and could not be killed",
                                     when) < 0)
                                ctl->problem = NULL;
                        (void) controller_done(ctl);
                        if (!p->running)
                                return 0;
                        continue;
                }

                r = child_spawn(e, ctl->description, ldap_child, ctl, sizeof(LdapReport), on_child_done, ctl,
                                &ctl->child);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot start the check process");
                r = sd_event_add_time_relative(e, &ctl->timer, CLOCK_MONOTONIC, l->controller_timeout + CHILD_GRACE,
                                               1 * USEC_PER_MSEC, on_controller_timeout, ctl);
                if (r < 0)
                        return probe_finish_errno(p, r, "cannot arm the controller's timer");
        }
        return 0;
}

const ProbeType probe_type_ldap = {
        .name = "ldap",
        .object_size = sizeof(LdapProbe),
        .config_items = ldap_config_items,
        .default_interval = 30 * USEC_PER_SEC,
        .default_timeout = 5 * USEC_PER_SEC,
        .default_rise = 2,
        .default_fall = 2,
        .verify = ldap_verify,
        .setup = ldap_setup,
        .start = ldap_start,
        .stop = ldap_stop,
        .done = ldap_done,
};
