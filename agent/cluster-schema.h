/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The agent's own schema, rupost_agent, in the shared database: versioned
 * migrations that every agent applies itself when it connects. Several
 * agents starting at once are serialised by a transaction-scoped advisory
 * lock; a migration already recorded in schema_version is skipped, so the
 * script is safe to run any number of times. Migrations are append-only:
 * a released one is never edited, a change is a new one. */

#include <stddef.h>

#define CLUSTER_SCHEMA "rupost_agent"
/* Every change to the node registry is announced on this channel. */
#define CLUSTER_NOTIFY_CHANNEL "rupost_agent_nodes"

/* The newest version this agent knows. */
unsigned cluster_schema_version(void);

/* The whole migration script as one string (caller frees): lock, create
 * what is missing, record versions, and end with one row holding the
 * schema's version after the script, as "version". */
char *cluster_schema_script(void);
