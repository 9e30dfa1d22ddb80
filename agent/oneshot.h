/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* One run of every configured probe, without the agent: what rupost-health
 * falls back to when the agent is not running. The probes run concurrently
 * on a private event loop, each bounded by its own deadline, attached to a
 * bare manager that only observes (Manager.observe_only): no healing, no
 * cluster, no metrics endpoint, no control socket. Hysteresis does not
 * apply to a single run: each probe reports its run's own status.
 *
 * The whole run is bounded by the longest probe timeout plus
 * ONESHOT_MARGIN, whatever the probes do. Children of probes that hit their
 * deadline are killed and reaped within that bound; a child the kernel
 * holds in uninterruptible sleep (a stat() on a hung NFS mount) cannot be
 * reaped by anyone until the kernel lets it go, and is counted instead. */

#include "config.h"
#include "control.pb-c.h"
#include "lib/macro.h"

/* Past the longest probe timeout: for the deadlines to fire and the killed
 * children to be reaped. */
#define ONESHOT_MARGIN (2U * USEC_PER_SEC)

typedef struct OneShot OneShot;

/* Takes ownership of config, also on failure. Blocks SIGCHLD in the
 * calling thread (child sources need it). Fails only when the run could not
 * be set up at all; a probe that could not start reports unknown. */
int oneshot_run(Config *config, OneShot **ret);
OneShot *oneshot_free(OneShot *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(OneShot *, oneshot_free);

/* The results in the shape of the agent's STATUS answer, without a node
 * state: the strings are the run's and live as long as it. */
const Rupost__Control__Response *oneshot_response(const OneShot *o);

/* How long the run took, and how many children of probes were still not
 * reaped at its end. */
usec_t oneshot_duration(const OneShot *o);
unsigned oneshot_children_left(const OneShot *o);
