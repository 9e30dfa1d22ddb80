/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-schema.h"
#include "lib/macro.h"

/* "rupost" and 1 in the key's bytes: one lock for every agent's migrations,
 * unlikely to clash with another application's advisory locks. */
#define MIGRATION_LOCK "8247621916579594241"

/* Append-only. Each runs once, inside the migration transaction. */
static const char *const migrations[] = {
        /* 1: the node registry with leases on the server's clock, the member
         * probes each node sees failing (for the shared-failure guard), and
         * a NOTIFY on every change that matters, whoever writes it. A lease
         * renewal alone changes nothing the others need to hear about. */
        "CREATE TABLE " CLUSTER_SCHEMA ".nodes ("
        " name text PRIMARY KEY,"
        " state text NOT NULL,"
        " reason text NOT NULL DEFAULT '',"
        " lease_expires timestamptz NOT NULL,"
        " updated_at timestamptz NOT NULL DEFAULT now(),"
        " agent_version text NOT NULL DEFAULT '',"
        " instance text NOT NULL DEFAULT '',"
        " peer_address text,"
        " registered_at timestamptz NOT NULL DEFAULT now());"
        "CREATE TABLE " CLUSTER_SCHEMA ".probe_failures ("
        " node text NOT NULL REFERENCES " CLUSTER_SCHEMA ".nodes (name) ON DELETE CASCADE,"
        " probe text NOT NULL,"
        " reason text NOT NULL DEFAULT '',"
        " since timestamptz NOT NULL DEFAULT now(),"
        " cleared_at timestamptz,"
        " PRIMARY KEY (node, probe));"
        "CREATE FUNCTION " CLUSTER_SCHEMA ".notify_change() RETURNS trigger LANGUAGE plpgsql AS $f$"
        " BEGIN PERFORM pg_notify('" CLUSTER_NOTIFY_CHANNEL "', TG_TABLE_NAME); RETURN NULL; END $f$;"
        "CREATE TRIGGER nodes_added_or_removed AFTER INSERT OR DELETE ON " CLUSTER_SCHEMA ".nodes"
        " FOR EACH ROW EXECUTE FUNCTION " CLUSTER_SCHEMA ".notify_change();"
        "CREATE TRIGGER nodes_changed AFTER UPDATE ON " CLUSTER_SCHEMA ".nodes FOR EACH ROW"
        " WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.reason IS DISTINCT FROM NEW.reason)"
        " EXECUTE FUNCTION " CLUSTER_SCHEMA ".notify_change();"
        "CREATE TRIGGER probe_failures_changed AFTER INSERT OR UPDATE OR DELETE ON " CLUSTER_SCHEMA
        ".probe_failures FOR EACH ROW EXECUTE FUNCTION " CLUSTER_SCHEMA ".notify_change();",

        /* 2: when each lease was last renewed, on the server's clock, so a
         * lease's age needs no guess at the lease_ttl of the node that took
         * it. Set by a trigger, so that agents of schema 1 keep it too. */
        "ALTER TABLE " CLUSTER_SCHEMA ".nodes ADD COLUMN renewed_at timestamptz NOT NULL DEFAULT now();"
        "CREATE FUNCTION " CLUSTER_SCHEMA ".note_renewal() RETURNS trigger LANGUAGE plpgsql AS $f$"
        " BEGIN IF NEW.lease_expires IS DISTINCT FROM OLD.lease_expires THEN NEW.renewed_at := now(); END IF;"
        " RETURN NEW; END $f$;"
        "CREATE TRIGGER nodes_renewed BEFORE UPDATE ON " CLUSTER_SCHEMA ".nodes FOR EACH ROW"
        " EXECUTE FUNCTION " CLUSTER_SCHEMA ".note_renewal();",

        /* 3: how long after its last renewal each node counts as live for
         * whoever counts (the withdrawal transaction, every view): until it
         * may have fenced itself (self_fence_after - renew_interval after the
         * commit of its renewal, whose send came at most a renew interval
         * earlier). Agents of schema 2 do not write it and keep the default. */
        "ALTER TABLE " CLUSTER_SCHEMA ".nodes ADD COLUMN live_for interval NOT NULL DEFAULT interval '7 seconds';",
};

unsigned cluster_schema_version(void) {
        return ELEMENTSOF(migrations);
}

char *cluster_schema_script(void) {
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);

        if (!f)
                return NULL;
        /* The lock is taken before anything is created: two agents racing on
         * CREATE SCHEMA IF NOT EXISTS could otherwise both try to create it. */
        fputs("BEGIN;"
              "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ");"
              "CREATE SCHEMA IF NOT EXISTS " CLUSTER_SCHEMA ";"
              "CREATE TABLE IF NOT EXISTS " CLUSTER_SCHEMA ".schema_version ("
              " version integer PRIMARY KEY,"
              " applied_at timestamptz NOT NULL DEFAULT now());",
              f);
        for (size_t i = 0; i < ELEMENTSOF(migrations); i++)
                fprintf(f,
                        "DO $do$ BEGIN"
                        " IF NOT EXISTS (SELECT 1 FROM " CLUSTER_SCHEMA ".schema_version WHERE version = %zu) THEN"
                        " EXECUTE $mig$%s$mig$;"
                        " INSERT INTO " CLUSTER_SCHEMA ".schema_version (version) VALUES (%zu);"
                        " END IF; END $do$;",
                        i + 1, migrations[i], i + 1);
        fputs("COMMIT;"
              "SELECT coalesce(max(version), 0) AS version FROM " CLUSTER_SCHEMA ".schema_version;",
              f);
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(s);
}
