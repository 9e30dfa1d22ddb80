/* SPDX-License-Identifier: GPL-2.0-or-later */
/* rupost-agent: probes the mail node's components and dependencies, exports
 * the results for Prometheus and answers rupost-health. */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "build-config.h"
#include "config.h"
#include "exporter/web-config.h"
#include "lib/log.h"
#include "manager.h"
#include "startup-check.h"

static const char *arg_config = CONFIG_DEFAULT_PATH;
static const char *arg_web_listen_address = NULL;
static const char *arg_control_socket = NULL;
static const char *arg_web_config_file = NULL;
static bool arg_check_config = false;

static void help(void) {
        printf("Usage: %s [OPTIONS]\n\n"
               "Monitoring and self-healing agent of a RuPost mail node.\n\n"
               "  -c --config PATH               Configuration file (default %s)\n"
               "     --check-config              Validate the configuration and exit\n"
               "     --web.listen-address ADDR   Serve /metrics on HOST:PORT (overrides the config)\n"
               "     --web.config.file FILE      TLS and basic auth of /metrics (overrides the config)\n"
               "     --control-socket PATH       Control socket path (overrides the config)\n"
               "     --log-level LEVEL           debug, info, notice, warning, err\n"
               "  -h --help                      Show this help\n"
               "     --version                   Show the version\n",
               program_invocation_short_name, CONFIG_DEFAULT_PATH);
}

static int parse_log_level(const char *s) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "err", LOG_ERR }, { "error", LOG_ERR },
        };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (streq(levels[i].name, s))
                        return levels[i].level;
        return -EINVAL;
}

/* Returns 1 to go on, 0 to exit successfully, negative on a usage error. */
static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_CHECK_CONFIG = 0x100,
                ARG_WEB_LISTEN_ADDRESS,
                ARG_WEB_CONFIG_FILE,
                ARG_CONTROL_SOCKET,
                ARG_LOG_LEVEL,
                ARG_VERSION,
        };
        static const struct option options[] = {
                { "config",             required_argument, NULL, 'c'                    },
                { "check-config",       no_argument,       NULL, ARG_CHECK_CONFIG       },
                { "web.listen-address", required_argument, NULL, ARG_WEB_LISTEN_ADDRESS },
                { "web.config.file",    required_argument, NULL, ARG_WEB_CONFIG_FILE    },
                { "control-socket",     required_argument, NULL, ARG_CONTROL_SOCKET     },
                { "log-level",          required_argument, NULL, ARG_LOG_LEVEL          },
                { "help",               no_argument,       NULL, 'h'                    },
                { "version",            no_argument,       NULL, ARG_VERSION            },
                {}
        };
        int c, level;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg_config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        arg_check_config = true;
                        break;
                case ARG_WEB_LISTEN_ADDRESS:
                        arg_web_listen_address = optarg;
                        break;
                case ARG_WEB_CONFIG_FILE:
                        arg_web_config_file = optarg;
                        break;
                case ARG_CONTROL_SOCKET:
                        arg_control_socket = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        level = parse_log_level(optarg);
                        if (level < 0)
                                return log_error_errno(level, "Unknown log level '%s'.", optarg);
                        log_set_max_level(level);
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("rupost-agent %s (%s)\n", PROJECT_VERSION, PROJECT_REVISION);
                        return 0;
                default:
                        return -EINVAL;
                }

        if (optind < argc)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "Unexpected argument '%s'.", argv[optind]);
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_(web_config_freep) WebConfig *web = NULL;
        _cleanup_strv_free_ char **errors = NULL;
        ManagerOptions options;
        int r;

        log_setup(LOG_TARGET_AUTO);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        options = (ManagerOptions) {
                .config_path = arg_config,
                .web_listen_address = arg_web_listen_address,
                .control_socket = arg_control_socket,
                .web_config_file = arg_web_config_file,
        };

        /* The same checks for both: what the check passes, start-up takes. */
        r = startup_check(&options, &config, &web, &errors);
        if (r == -ENOMEM) {
                log_oom();
                return EXIT_FAILURE;
        }
        if (arg_check_config) {
                const char *web_path = arg_web_config_file ?: config ? config->web_config_file : NULL;

                /* Plain lines on stderr, one per error, for editors and CI to parse. */
                for (char **e = errors; e && *e; e++)
                        fprintf(stderr, "%s\n", *e);
                if (r < 0)
                        return EXIT_FAILURE;
                printf("%s: OK, %zu probe%s\n", arg_config, config->n_probes, config->n_probes == 1 ? "" : "s");
                if (web_path)
                        printf("%s: OK, %s, %zu basic auth user%s\n", web_path, web->tls ? "TLS" : "no TLS",
                               web->n_users, web->n_users == 1 ? "" : "s");
                return EXIT_SUCCESS;
        }
        if (r < 0) {
                for (char **e = errors; e && *e; e++)
                        log_error("%s", *e);
                log_error_errno(r, "Refusing to start with an invalid configuration %s (%zu errors).", arg_config,
                                strv_length(errors));
                return EXIT_FAILURE;
        }
        /* The manager reads the web config again, as a reload does. */
        web = web_config_free(web);

        r = manager_new(&options, &m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_start(m, TAKE_PTR(config));
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_run(m);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
