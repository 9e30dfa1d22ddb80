/* SPDX-License-Identifier: GPL-2.0-or-later */
/* dns: the records a RuPost mail domain needs (product guide, 2.8) exist and
 * point where they should:
 *   <domain> MX -> <mail_host>
 *   <domain> TXT "v=spf1 ..." (exactly one SPF record; the configured text if given)
 *   autoconfig.<domain> and autodiscover.<domain> CNAME -> <mail_host>
 *   _caldavs._tcp.<domain> and _carddavs._tcp.<domain> SRV 0 1 443 <mail_host>
 *   <mail_host> A (and AAAA) listing every node address (round-robin)
 * Each missing or wrong record is named with the value expected, so the
 * reason reads like the line to add to the zone.
 *
 * The resolver library (res_nquery, ns_parserr from glibc's libresolv)
 * blocks, so the lookups run in a forked child (lib/child.h) under the
 * probe's deadline, one line per record on its pipe; the judging happens
 * back in the agent. `nameserver` points the child at one server (numeric,
 * IPv4), bypassing /etc/resolv.conf, so the probe can ask the authoritative
 * server and tests can ask a fake one. */

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* <arpa/nameser.h> brings sys/param.h's MIN and MAX; ours follow. */
#undef MIN
#undef MAX

#include "config.h"
#include "lib/buf.h"
#include "lib/child.h"
#include "lib/sockaddr.h"
#include "probes.h"

#define OUTPUT_MAX (64U * 1024U)
#define LINE_MAX_LEN 600

typedef struct DnsProbe {
        /* configuration */
        char *domain;
        char *mail_host;
        char **addresses;
        char *spf;
        char *nameserver;

        struct sockaddr_in ns;
        bool have_ns;
        char *description;

        /* one run */
        Child *child;
} DnsProbe;

static const MetricFamily family_records_ok = {
        .name = "rupost_dns_records_ok",
        .type = METRIC_GAUGE,
        .help = "Whether the domain's records of a kind (mx, spf, autoconfig, autodiscover, caldavs, carddavs, a) are as expected.",
};

static const ConfigItem dns_config_items[] = {
        { "domain",     config_parse_string, offsetof(DnsProbe, domain), .required = true    },
        { "mail_host",  config_parse_string, offsetof(DnsProbe, mail_host), .required = true },
        { "addresses",  config_parse_strv,   offsetof(DnsProbe, addresses), 0, 64, .required = true },
        { "spf",        config_parse_string, offsetof(DnsProbe, spf)                         },
        { "nameserver", config_parse_string, offsetof(DnsProbe, nameserver)                  },
        {}
};

static bool valid_name(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l > 253)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                      *c == '.' || *c == '_'))
                        return false;
        return true;
}

static void strip_dot(char *s) {
        size_t l = strlen(s);
        if (l > 1 && s[l - 1] == '.')
                s[l - 1] = 0;
}

static int dns_verify(Probe *p, ConfigContext *c) {
        DnsProbe *d = probe_get_userdata(p);
        int r = 0;

        strip_dot(d->domain);
        strip_dot(d->mail_host);
        if (!valid_name(d->domain))
                r = config_error(c, NULL, "domain", "'%s' is not a domain name", d->domain);
        if (!valid_name(d->mail_host))
                r = config_error(c, NULL, "mail_host", "'%s' is not a host name", d->mail_host);
        for (char **a = d->addresses; a && *a; a++) {
                unsigned char buf[sizeof(struct in6_addr)];
                if (inet_pton(AF_INET, *a, buf) != 1 && inet_pton(AF_INET6, *a, buf) != 1)
                        r = config_error(c, NULL, "addresses", "'%s' is not a numeric IPv4 or IPv6 address", *a);
        }
        if (d->spf && strncmp(d->spf, "v=spf1", 6) != 0)
                r = config_error(c, NULL, "spf", "'%s' does not start with v=spf1", d->spf);
        if (d->nameserver) {
                char buf[64];
                union sockaddr_union sa;
                socklen_t len;

                snprintf(buf, sizeof buf, strchr(d->nameserver, ':') ? "%s" : "%s:53", d->nameserver);
                if (sockaddr_parse(buf, &sa, &len) < 0 || sa.sa.sa_family != AF_INET ||
                    sa.in.sin_addr.s_addr == INADDR_ANY)
                        r = config_error(c, NULL, "nameserver",
                                         "'%s' is not a numeric IPv4 address with an optional port", d->nameserver);
                else {
                        d->ns = sa.in;
                        d->have_ns = true;
                }
        }
        if (asprintf(&d->description, "dns %s", d->domain) < 0)
                return -ENOMEM;
        return r;
}

static void dns_stop(Probe *p) {
        DnsProbe *d = probe_get_userdata(p);

        d->child = child_abandon(d->child);
}

static void dns_done(Probe *p) {
        DnsProbe *d = probe_get_userdata(p);

        dns_stop(p);
        free(d->domain);
        free(d->mail_host);
        strv_free(d->addresses);
        free(d->spf);
        free(d->nameserver);
        free(d->description);
}

/* ---- in the child ---- */

typedef struct Query {
        const char *kind; /* what the line is about, for the judge */
        char name[300];
        int type;
} Query;

/* Writes "kind<TAB>status<TAB>data" lines: status is "rr" (one per record),
 * "none" (the name exists, no such records), "nxdomain", or "error". */
static void emit(FILE *f, const char *kind, const char *status, const char *fmt, ...) _printf_(4, 5);
static void emit(FILE *f, const char *kind, const char *status, const char *fmt, ...) {
        char data[LINE_MAX_LEN];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(data, sizeof data, fmt, ap);
        va_end(ap);
        /* Our own separators may not appear in what the server sent. */
        for (char *c = data; *c; c++)
                if (*c == '\t' || *c == '\n' || (unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                        *c = '?';
        fprintf(f, "%s\t%s\t%s\n", kind, status, data);
}

/* Returns false when the name server did not answer at all: asking it the
 * other questions would only wait out the same silence (and ICMP rate
 * limits turn a refusal into silence after a few packets). */
static bool run_query(FILE *f, res_state rs, const Query *q) {
        unsigned char answer[8192];
        ns_msg msg;
        int n;

        errno = 0;
        n = res_nquery(rs, q->name, ns_c_in, q->type, answer, sizeof answer);
        if (n < 0) {
                /* res_nquery reports the rcode through h_errno. TRY_AGAIN
                 * covers both a SERVFAIL and no answer at all; for the
                 * latter glibc's res_send leaves ECONNREFUSED (no server
                 * reachable: port unreachable) or ETIMEDOUT in errno. */
                if (rs->res_h_errno == HOST_NOT_FOUND)
                        emit(f, q->kind, "nxdomain", "%s", q->name);
                else if (rs->res_h_errno == NO_DATA)
                        emit(f, q->kind, "none", "%s", q->name);
                else if (rs->res_h_errno == TRY_AGAIN && errno == ECONNREFUSED) {
                        emit(f, q->kind, "error", "%s: nothing listens on the name server's DNS port "
                             "(ICMP port unreachable)", q->name);
                        return false;
                } else if (rs->res_h_errno == TRY_AGAIN && errno == ETIMEDOUT) {
                        emit(f, q->kind, "error", "%s: the name server does not answer", q->name);
                        return false;
                } else
                        emit(f, q->kind, "error", "%s: %s", q->name,
                             rs->res_h_errno == TRY_AGAIN ? "SERVFAIL" : hstrerror(rs->res_h_errno));
                return true;
        }
        if (ns_initparse(answer, n, &msg) < 0) {
                emit(f, q->kind, "error", "%s: malformed answer", q->name);
                return true;
        }
        unsigned found = 0;
        for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
                ns_rr rr;
                char name[NS_MAXDNAME];
                const unsigned char *rd;

                if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
                        break;
                if ((int) ns_rr_type(rr) != q->type)
                        continue; /* e.g. the CNAME chain before an A record */
                rd = ns_rr_rdata(rr);
                int len = ns_rr_rdlen(rr);
                switch (q->type) {
                case ns_t_a:
                case ns_t_aaaa: {
                        char a[INET6_ADDRSTRLEN];
                        if ((q->type == ns_t_a && len != 4) || (q->type == ns_t_aaaa && len != 16))
                                continue;
                        inet_ntop(q->type == ns_t_a ? AF_INET : AF_INET6, rd, a, sizeof a);
                        emit(f, q->kind, "rr", "%s", a);
                        break;
                }
                case ns_t_mx:
                        if (len < 3 || ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd + 2, name, sizeof name) < 0)
                                continue;
                        emit(f, q->kind, "rr", "%u %s", ns_get16(rd), name);
                        break;
                case ns_t_cname:
                        if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd, name, sizeof name) < 0)
                                continue;
                        emit(f, q->kind, "rr", "%s", name);
                        break;
                case ns_t_srv:
                        if (len < 7 ||
                            ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd + 6, name, sizeof name) < 0)
                                continue;
                        emit(f, q->kind, "rr", "%u %u %u %s", ns_get16(rd), ns_get16(rd + 2), ns_get16(rd + 4), name);
                        break;
                case ns_t_txt: {
                        /* One record is several <length><bytes> strings, joined. */
                        char text[LINE_MAX_LEN - 16];
                        size_t k = 0;
                        for (int o = 0; o < len;) {
                                int l = rd[o++];
                                for (int j = 0; j < l && o < len; j++, o++)
                                        if (k + 1 < sizeof text)
                                                text[k++] = (char) rd[o];
                        }
                        text[k] = 0;
                        emit(f, q->kind, "rr", "%s", text);
                        break;
                }
                default:
                        continue;
                }
                found++;
        }
        if (found == 0)
                emit(f, q->kind, "none", "%s", q->name);
        return true;
}

static int dns_child(int out_fd, void *arg) {
        DnsProbe *d = arg;
        struct __res_state rs = {};
        FILE *f = fdopen(out_fd, "w");
        bool v6 = false;

        if (!f || res_ninit(&rs) < 0)
                return 2;
        if (d->have_ns) {
                rs.nscount = 1;
                rs.nsaddr_list[0] = d->ns;
        }
        /* Bounded work: one retry, one second each. The deadline is the real bound. */
        rs.retrans = 1;
        rs.retry = 1;
        rs.options &= ~(RES_DNSRCH | RES_DEFNAMES);

        for (char **a = d->addresses; a && *a; a++)
                if (strchr(*a, ':'))
                        v6 = true;

        Query queries[] = {
                { "mx", "", ns_t_mx },
                { "spf", "", ns_t_txt },
                { "autoconfig", "", ns_t_cname },
                { "autodiscover", "", ns_t_cname },
                { "caldavs", "", ns_t_srv },
                { "carddavs", "", ns_t_srv },
                { "a", "", ns_t_a },
                { "aaaa", "", ns_t_aaaa },
        };
        snprintf(queries[0].name, sizeof queries[0].name, "%s", d->domain);
        snprintf(queries[1].name, sizeof queries[1].name, "%s", d->domain);
        snprintf(queries[2].name, sizeof queries[2].name, "autoconfig.%s", d->domain);
        snprintf(queries[3].name, sizeof queries[3].name, "autodiscover.%s", d->domain);
        snprintf(queries[4].name, sizeof queries[4].name, "_caldavs._tcp.%s", d->domain);
        snprintf(queries[5].name, sizeof queries[5].name, "_carddavs._tcp.%s", d->domain);
        snprintf(queries[6].name, sizeof queries[6].name, "%s", d->mail_host);
        snprintf(queries[7].name, sizeof queries[7].name, "%s", d->mail_host);

        for (size_t i = 0; i < ELEMENTSOF(queries); i++)
                if ((i < 7 || v6) && !run_query(f, &rs, &queries[i]))
                        break;
        res_nclose(&rs);
        return fclose(f) == 0 ? 0 : 1;
}

/* ---- back in the agent: judging ---- */

typedef struct Answers {
        const char *kind;
        char *status; /* "rr" when records came, else the child's status */
        char **records;
        size_t n;
} Answers;

static bool name_eq(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        if (la > 0 && a[la - 1] == '.')
                la--;
        if (lb > 0 && b[lb - 1] == '.')
                lb--;
        return la == lb && strncasecmp(a, b, la) == 0;
}

static const char *const kinds[] = { "mx", "spf", "autoconfig", "autodiscover", "caldavs", "carddavs", "a", "aaaa" };
#define N_KINDS ELEMENTSOF(kinds)

static void answers_free(Answers *a) {
        for (size_t i = 0; i < N_KINDS; i++) {
                free(a[i].status);
                strv_free(a[i].records);
        }
}

static int answers_parse(const char *output, size_t size, Answers *a) {
        for (size_t i = 0; i < N_KINDS; i++)
                a[i] = (Answers) { .kind = kinds[i] };

        for (size_t off = 0; off < size;) {
                const char *line = output + off, *nl = memchr(line, '\n', size - off);
                size_t len = nl ? (size_t) (nl - line) : size - off;
                char buf[LINE_MAX_LEN + 64], *kind, *status, *data;

                off += len + 1;
                if (len == 0 || len >= sizeof buf)
                        continue;
                memcpy(buf, line, len);
                buf[len] = 0;
                kind = buf;
                status = strchr(kind, '\t');
                if (!status)
                        continue;
                *status++ = 0;
                data = strchr(status, '\t');
                if (!data)
                        continue;
                *data++ = 0;

                for (size_t i = 0; i < N_KINDS; i++) {
                        if (!streq(kind, kinds[i]))
                                continue;
                        if (!a[i].status && !(a[i].status = strdup(status)))
                                return -ENOMEM;
                        if (!streq(status, "rr")) {
                                /* For errors, keep what the child said about it. */
                                free(a[i].records);
                                a[i].records = calloc(2, sizeof(char *));
                                if (!a[i].records || !(a[i].records[0] = strdup(data)))
                                        return -ENOMEM;
                                a[i].n = 1;
                                continue;
                        }
                        char **l = reallocarray(a[i].records, a[i].n + 2, sizeof(char *));
                        if (!l)
                                return -ENOMEM;
                        a[i].records = l;
                        if (!(l[a[i].n] = strdup(data)))
                                return -ENOMEM;
                        l[++a[i].n] = NULL;
                }
        }
        return 0;
}

static const Answers *answers_get(const Answers *a, const char *kind) {
        for (size_t i = 0; i < N_KINDS; i++)
                if (streq(a[i].kind, kind))
                        return &a[i];
        return NULL;
}

static bool has_records(const Answers *x) {
        return x->status && streq(x->status, "rr");
}

/* "missing" with the reason the server gave, when it was not a plain absence. */
static const char *why_missing(const Answers *x) {
        if (!x->status)
                return "missing (not looked up)";
        if (streq(x->status, "nxdomain"))
                return "missing (NXDOMAIN)";
        if (streq(x->status, "error"))
                return "not resolvable";
        return "missing";
}

static void judge_one(Probe *p, bool ok, const char *kind) {
        (void) probe_add_sample(p, &family_records_ok, ok, "record", kind, NULL);
}

static int dns_judge(Probe *p, const Answers *a) {
        DnsProbe *d = probe_get_userdata(p);
        ProbeStatus status = PROBE_OK;
        Buf reason = BUF_INIT(2048);
        int r;

        /* Nothing resolvable at all: the server, not the zone, is the problem. */
        bool any = false;
        for (size_t i = 0; i < N_KINDS; i++)
                if (a[i].status && !streq(a[i].status, "error"))
                        any = true;
        if (!any) {
                const Answers *mx = answers_get(a, "mx");
                r = probe_finish(p, PROBE_CRITICAL, "DNS lookups for %s fail: %s (%s%s)", d->domain,
                                 mx->records && mx->records[0] ? mx->records[0] : "no answer",
                                 d->nameserver ? "name server " : "check /etc/resolv.conf",
                                 d->nameserver ?: "");
                buf_done(&reason);
                return r;
        }

        /* MX: mail from outside needs it. */
        const Answers *mx = answers_get(a, "mx");
        bool mx_ok = false;
        for (size_t i = 0; i < mx->n && has_records(mx); i++) {
                const char *sp = strchr(mx->records[i], ' ');
                if (sp && name_eq(sp + 1, d->mail_host))
                        mx_ok = true;
        }
        judge_one(p, mx_ok, "mx");
        if (!mx_ok) {
                if (has_records(mx))
                        probe_reason_add(&reason, &status, PROBE_CRITICAL, "MX of %s points to %s, expected %s", d->domain,
                               strchr(mx->records[0], ' ') ? strchr(mx->records[0], ' ') + 1 : mx->records[0],
                               d->mail_host);
                else
                        probe_reason_add(&reason, &status, PROBE_CRITICAL, "MX of %s is %s: add '%s. MX 10 %s.'", d->domain,
                               why_missing(mx), d->domain, d->mail_host);
        }

        /* SPF: exactly one TXT record starting with v=spf1. */
        const Answers *txt = answers_get(a, "spf");
        const char *spf = NULL;
        size_t n_spf = 0;
        for (size_t i = 0; i < txt->n && has_records(txt); i++)
                if (strncmp(txt->records[i], "v=spf1", 6) == 0 &&
                    (txt->records[i][6] == ' ' || txt->records[i][6] == 0)) {
                        spf = txt->records[i];
                        n_spf++;
                }
        bool spf_ok = n_spf == 1 && (!d->spf || streq(spf, d->spf));
        judge_one(p, spf_ok, "spf");
        if (!spf_ok) {
                if (n_spf == 0)
                        probe_reason_add(&reason, &status, PROBE_WARNING, "SPF record of %s is missing: add '%s. TXT \"%s\"'",
                               d->domain, d->domain, d->spf ?: "v=spf1 mx ~all");
                else if (n_spf > 1)
                        probe_reason_add(&reason, &status, PROBE_WARNING,
                               "%s has %zu SPF records, receivers reject them all (RFC 7208): keep one", d->domain,
                               n_spf);
                else
                        probe_reason_add(&reason, &status, PROBE_WARNING, "SPF of %s is '%s', expected '%s'", d->domain, spf,
                               d->spf);
        }

        /* Client autoconfiguration. */
        static const char *const cnames[] = { "autoconfig", "autodiscover" };
        for (size_t k = 0; k < ELEMENTSOF(cnames); k++) {
                const Answers *x = answers_get(a, cnames[k]);
                bool ok = has_records(x) && x->n == 1 && name_eq(x->records[0], d->mail_host);
                judge_one(p, ok, cnames[k]);
                if (ok)
                        continue;
                if (has_records(x))
                        probe_reason_add(&reason, &status, PROBE_WARNING, "%s.%s CNAME points to %s, expected %s", cnames[k],
                               d->domain, x->records[0], d->mail_host);
                else
                        probe_reason_add(&reason, &status, PROBE_WARNING, "%s.%s CNAME is %s: add '%s.%s. CNAME %s.'", cnames[k],
                               d->domain, why_missing(x), cnames[k], d->domain, d->mail_host);
        }

        /* CalDAV/CardDAV discovery: SRV 0 1 443 <mail_host>. */
        static const char *const srvs[] = { "caldavs", "carddavs" };
        for (size_t k = 0; k < ELEMENTSOF(srvs); k++) {
                const Answers *x = answers_get(a, srvs[k]);
                char want[300];
                bool ok = false;

                snprintf(want, sizeof want, "0 1 443 %s", d->mail_host);
                for (size_t i = 0; i < x->n && has_records(x); i++) {
                        unsigned pr, w, port;
                        char target[256];
                        if (sscanf(x->records[i], "%u %u %u %255s", &pr, &w, &port, target) == 4 && pr == 0 &&
                            w == 1 && port == 443 && name_eq(target, d->mail_host))
                                ok = true;
                }
                judge_one(p, ok, srvs[k]);
                if (ok)
                        continue;
                if (has_records(x))
                        probe_reason_add(&reason, &status, PROBE_WARNING, "_%s._tcp.%s SRV is '%s', expected '%s'", srvs[k],
                               d->domain, x->records[0], want);
                else
                        probe_reason_add(&reason, &status, PROBE_WARNING, "_%s._tcp.%s SRV is %s: add '_%s._tcp.%s. SRV %s.'",
                               srvs[k], d->domain, why_missing(x), srvs[k], d->domain, want);
        }

        /* Round-robin: every node's address under the mail host's name. */
        Buf lacking = BUF_INIT(1024);
        for (char **addr = d->addresses; addr && *addr; addr++) {
                const Answers *x = answers_get(a, strchr(*addr, ':') ? "aaaa" : "a");
                bool found = false;
                unsigned char want[16], have[16];
                int family = strchr(*addr, ':') ? AF_INET6 : AF_INET;

                (void) inet_pton(family, *addr, want);
                for (size_t i = 0; i < x->n && has_records(x); i++)
                        if (inet_pton(family, x->records[i], have) == 1 &&
                            memcmp(want, have, family == AF_INET ? 4 : 16) == 0)
                                found = true;
                if (!found)
                        (void) buf_printf(&lacking, "%s%s", lacking.len ? ", " : "", *addr);
        }
        judge_one(p, lacking.len == 0, "a");
        if (lacking.len > 0) {
                const Answers *x = answers_get(a, "a");
                Buf have = BUF_INIT(512);
                for (size_t i = 0; i < x->n && has_records(x); i++)
                        (void) buf_printf(&have, "%s%s", i ? ", " : "", x->records[i]);
                probe_reason_add(&reason, &status, PROBE_WARNING,
                       "%s does not list %s (it has: %s): add an A record for every node", d->mail_host,
                       lacking.data, has_records(x) ? have.data : why_missing(x));
                buf_done(&have);
        }
        buf_done(&lacking);

        if (status == PROBE_OK)
                (void) buf_printf(&reason,
                                  "%s: MX, SPF, autoconfig, autodiscover, CalDAV/CardDAV SRV and %zu node address%s "
                                  "of %s as expected",
                                  d->domain, strv_length(d->addresses), strv_length(d->addresses) == 1 ? "" : "es",
                                  d->mail_host);
        r = probe_finish(p, status, "%s%s", reason.data ?: "", reason.overflow ? "..." : "");
        buf_done(&reason);
        return r;
}

static void on_child_done(Child *c, int status, const char *output, size_t size, void *userdata) {
        Probe *p = userdata;
        DnsProbe *d = probe_get_userdata(p);
        Answers a[N_KINDS];
        int r;

        /* Parse before freeing the handle: `output` belongs to it. */
        r = status == 0 ? answers_parse(output, size, a) : 0;
        d->child = child_abandon(c);
        if (status != 0) {
                (void) probe_finish(p, PROBE_UNKNOWN, "the DNS lookups for %s could not run (%s %d)", d->domain,
                                    status < 0 ? "error" : "exit status", status);
                return;
        }
        if (r < 0)
                (void) probe_finish_errno(p, r, "cannot read the DNS answers");
        else
                (void) dns_judge(p, a);
        answers_free(a);
}

static int dns_start(Probe *p) {
        DnsProbe *d = probe_get_userdata(p);
        int r;

        /* A resolver child can always be killed, but never start a second one
         * for the same domain while the first is still around. */
        if (child_abandoned_alive(d->description) > 0)
                return probe_finish(p, PROBE_CRITICAL, "previous DNS lookups for %s still running", d->domain);

        probe_set_phase(p, "resolving the domain's records");
        r = child_spawn(probe_get_event(p), d->description, dns_child, d, OUTPUT_MAX, on_child_done, p, &d->child);
        if (r < 0)
                return probe_finish_errno(p, r, "cannot fork the DNS lookups");
        return 0;
}

const ProbeType probe_type_dns = {
        .name = "dns",
        .object_size = sizeof(DnsProbe),
        .config_items = dns_config_items,
        .default_interval = 5 * USEC_PER_MINUTE,
        .default_timeout = 10 * USEC_PER_SEC,
        .default_rise = 1,
        .default_fall = 1,
        .verify = dns_verify,
        .start = dns_start,
        .stop = dns_stop,
        .done = dns_done,
};
