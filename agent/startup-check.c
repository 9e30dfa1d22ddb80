/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "exporter/web-config.h"
#include "lib/sockaddr.h"
#include "startup-check.h"

typedef struct Errors {
        char **list;
        size_t n;
} Errors;

_printf_(2, 3) static int add_error(Errors *e, const char *fmt, ...) {
        char **l, *s;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        l = reallocarray(e->list, e->n + 2, sizeof *l);
        if (!l) {
                free(s);
                return -ENOMEM;
        }
        l[e->n++] = s;
        l[e->n] = NULL;
        e->list = l;
        return -EINVAL;
}

/* Takes the lines over. */
static int add_errors(Errors *e, char **lines) {
        int r = 0;

        for (char **l = lines; l && *l; l++) {
                r = add_error(e, "%s", *l);
                if (r == -ENOMEM)
                        break;
        }
        strv_free(lines);
        return r;
}

/* The command-line values are checked as the config's own keys are. */
static int check_options(Errors *e, const ManagerOptions *o) {
        union sockaddr_union sa;
        const char *why;
        socklen_t len;
        int ret = 0, r;

        if (o->web_listen_address && sockaddr_parse_full(o->web_listen_address, 0, &sa, &len, &why) < 0) {
                r = add_error(e, "--web.listen-address: '%s' is not " SOCKADDR_GRAMMAR ": %s", o->web_listen_address,
                              why);
                if (r == -ENOMEM)
                        return r;
                ret = r;
        }
        if (o->control_socket) {
                if (o->control_socket[0] != '/')
                        r = add_error(e, "--control-socket: '%s' is not an absolute path", o->control_socket);
                else if (strlen(o->control_socket) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                        r = add_error(e, "--control-socket: is longer than %zu bytes, the limit for a socket path",
                                      sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1);
                else
                        r = 0;
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        ret = r;
        }
        return ret;
}

typedef struct Listener {
        const char *key;
        const char *address;
        union sockaddr_union sa;
} Listener;

static bool same_port(const Listener *a, const Listener *b) {
        bool any_a, any_b;

        if (a->sa.sa.sa_family == AF_INET6 && b->sa.sa.sa_family == AF_INET6) {
                if (a->sa.in6.sin6_port != b->sa.in6.sin6_port)
                        return false;
        } else if (a->sa.sa.sa_family == AF_INET && b->sa.sa.sa_family == AF_INET) {
                if (a->sa.in.sin_port != b->sa.in.sin_port)
                        return false;
        } else {
                uint16_t pa = a->sa.sa.sa_family == AF_INET ? a->sa.in.sin_port : a->sa.in6.sin6_port;
                uint16_t pb = b->sa.sa.sa_family == AF_INET ? b->sa.in.sin_port : b->sa.in6.sin6_port;
                if (pa != pb)
                        return false;
        }
        /* ":port" is bound dual-stack, so it takes the port on every address
         * of both families; otherwise only the same address collides. */
        any_a = a->sa.sa.sa_family == AF_INET6 ? IN6_IS_ADDR_UNSPECIFIED(&a->sa.in6.sin6_addr)
                                               : a->sa.in.sin_addr.s_addr == htonl(INADDR_ANY);
        any_b = b->sa.sa.sa_family == AF_INET6 ? IN6_IS_ADDR_UNSPECIFIED(&b->sa.in6.sin6_addr)
                                               : b->sa.in.sin_addr.s_addr == htonl(INADDR_ANY);
        if (any_a || any_b)
                return true;
        if (a->sa.sa.sa_family != b->sa.sa.sa_family)
                return false;
        return a->sa.sa.sa_family == AF_INET6
                       ? memcmp(&a->sa.in6.sin6_addr, &b->sa.in6.sin6_addr, sizeof a->sa.in6.sin6_addr) == 0
                       : a->sa.in.sin_addr.s_addr == b->sa.in.sin_addr.s_addr;
}

/* The agent's own TCP listeners: two on one port fail the second bind. Only
 * the ones whose failure stops the agent (without healing the agent-check
 * port is a courtesy, see manager_setup_agent_check()). */
static int check_listeners(Errors *e, const ManagerOptions *o, const Config *c) {
        Listener l[3];
        size_t n = 0;
        socklen_t len;
        int ret = 0, r;

        l[n++] = (Listener) {
                .key = o->web_listen_address ? "--web.listen-address" : "web.listen_address",
                .address = o->web_listen_address ?: c->web_listen_address,
        };
        if (c->healing.enabled)
                l[n++] = (Listener) { .key = "healing.agent_check_address", .address = c->healing.agent_check_address };
        if (c->cluster.enabled)
                l[n++] = (Listener) { .key = "cluster.peer_address", .address = c->cluster.peer_address };

        for (size_t i = 0; i < n; i++)
                if (!l[i].address || sockaddr_parse(l[i].address, &l[i].sa, &len) < 0)
                        return 0; /* reported on its own */

        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++) {
                        if (!same_port(&l[i], &l[j]))
                                continue;
                        r = add_error(e, "%s: %s '%s' and %s '%s' ask for the same port: the agent could bind only one",
                                      o->config_path, l[i].key, l[i].address, l[j].key, l[j].address);
                        if (r == -ENOMEM)
                                return r;
                        ret = r;
                }
        return ret;
}

int startup_check(const ManagerOptions *o, Config **ret_config, WebConfig **ret_web, char ***ret_errors) {
        _cleanup_(web_config_freep) WebConfig *web = NULL;
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(strv_freep) char **config_errors = NULL, **web_errors = NULL;
        Errors e = {};
        const char *web_path;
        int r;

        r = check_options(&e, o);
        if (r == -ENOMEM)
                goto fail;

        r = config_load_file(o->config_path, &config, &config_errors);
        if (r == -ENOMEM)
                goto fail;
        r = add_errors(&e, TAKE_PTR(config_errors));
        if (r == -ENOMEM)
                goto fail;

        /* The web config the server would use: the flag's, else the one the
         * config names (only known when the config loaded). */
        web_path = o->web_config_file ?: config ? config->web_config_file : NULL;
        if (web_path) {
                r = web_config_load_file(web_path, &web, &web_errors);
                if (r == -ENOMEM)
                        goto fail;
                r = add_errors(&e, TAKE_PTR(web_errors));
                if (r == -ENOMEM)
                        goto fail;
        }

        if (config) {
                r = check_listeners(&e, o, config);
                if (r == -ENOMEM)
                        goto fail;
        }

        *ret_errors = e.list;
        if (e.list || !config)
                return -EINVAL;
        *ret_config = TAKE_PTR(config);
        if (ret_web)
                *ret_web = TAKE_PTR(web);
        return 0;

fail:
        strv_free(e.list);
        return -ENOMEM;
}
