/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Everything start-up refuses that can be decided without binding a port,
 * connecting anywhere or asking the bus: the configuration file, the web
 * configuration file in force, the command-line values that override them,
 * and listeners that would collide. --check-config and start-up both call
 * this one function, so that the unit's ExecStartPre cannot pass a file the
 * start then refuses. Reload reads the same two files with the same loaders. */

#include "config.h"
#include "manager.h"

typedef struct WebConfig WebConfig;

/* Collects every error, one line each, into *ret_errors (NULL when none);
 * never logs. Returns 0 with the loaded config (and the web config, NULL
 * without one) when there was none, -EINVAL when there were, -ENOMEM. */
int startup_check(const ManagerOptions *o, Config **ret_config, WebConfig **ret_web, char ***ret_errors);
