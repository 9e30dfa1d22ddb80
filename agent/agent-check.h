/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* HAProxy's agent-check port: every connection gets one line and is closed.
 * HAProxy keeps the last verdict it read for as long as the port does not
 * answer, so the port is answered whenever the agent runs: with the node's
 * state when the agent heals (node_state_agent_check_reply()), and with
 * "up ready" when it does not, which vetoes nothing. Otherwise a node
 * withdrawn when healing was switched off would stay out of every HAProxy. */

#include <stddef.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"

typedef struct AgentCheck AgentCheck;

/* Writes the line to send (ending in a newline) into buf; returns buf. */
typedef const char *(*AgentCheckReply)(void *userdata, char *buf, size_t len);

/* Listens on address (sockaddr_parse() syntax). Errors are logged. */
int agent_check_new(sd_event *e, const char *address, AgentCheckReply reply, void *userdata, AgentCheck **ret);
AgentCheck *agent_check_free(AgentCheck *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(AgentCheck *, agent_check_free);

const char *agent_check_address(const AgentCheck *a);
