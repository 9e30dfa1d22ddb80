/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The control socket: a Unix stream socket (mode 0660) on which rupost-health
 * and other local tools ask the agent for its state. Each message is a
 * protobuf-c message (proto/control.proto) preceded by its length as a 4-byte
 * big-endian integer; one request and one response per connection. */

#include "manager.h"

#define CONTROL_MAX_MESSAGE (4U * 1024U * 1024U)
/* A client gets this long for its whole exchange, then it is dropped. */
#define CONTROL_CONNECTION_TIMEOUT_USEC (5U * USEC_PER_SEC)
/* Clients served at once; one more is told to come back later. */
#define CONTROL_MAX_CONNECTIONS 16U
/* An operator's maintenance reason: one line that fits HAProxy's and the
 * node state's reason fields. */
#define CONTROL_MAINTENANCE_REASON_MAX 200U
/* The probes' samples in a STATUS response, bounded so that a probe with
 * many series never pushes the answer past CONTROL_MAX_MESSAGE: per probe,
 * and per response in bytes of family names and labels plus
 * CONTROL_SAMPLE_OVERHEAD for each sample's encoding. */
#define CONTROL_SAMPLES_PER_PROBE 256U
#define CONTROL_SAMPLES_MAX_BYTES (1024U * 1024U)
#define CONTROL_SAMPLE_OVERHEAD 32U
/* The group that may use the socket, if it exists. */
#define CONTROL_SOCKET_GROUP "rupost-agent"

/* Looks CONTROL_SOCKET_GROUP up (NSS): 1 and *ret when it exists, 0 when it
 * does not or cannot be looked up (logged). Called once at start-up, never
 * on the event loop: with LDAP or sssd behind NSS, getgrnam() can block. */
int control_socket_group_lookup(gid_t *ret);

int control_server_new(Manager *m, const char *path, ControlServer **ret);
ControlServer *control_server_free(ControlServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ControlServer *, control_server_free);
