/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The mail group: nginx, postfix, dovecot and sogo (names configurable) start
 * together in order and stop together in reverse, through systemd over D-Bus
 * with job tracking. A unit that does not stop within its timeout is killed
 * with SIGKILL. A stop always goes through every unit, whatever fails on the
 * way; a start gives up at the first unit that fails to start.
 *
 * The group keeps its D-Bus connection working: when it breaks (systemd or
 * dbus-daemon restarted), the group opens a new one and sends again what was
 * in flight. */

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"
#include "lib/time-util.h"

typedef struct MailGroup MailGroup;

/* r is 0 on success or a negative errno; `error` names the unit and what
 * went wrong ("dovecot.service: start job failed"). */
typedef void (*MailGroupDone)(MailGroup *g, int r, const char *error, void *userdata);

/* Opens a new connection to systemd, attached to `event` and started. The
 * group calls Manager.Subscribe on it itself. */
typedef int (*MailGroupOpenBus)(sd_event *event, sd_bus **ret, void *userdata);

/* Starts with `bus` (shared: the group never closes it) and, when that
 * breaks, opens the system bus of its own. */
int mail_group_new(sd_bus *bus, sd_event *event, char *const *units, usec_t stop_timeout, usec_t start_timeout,
                   MailGroup **ret);
/* Every connection comes from `open_bus` (NULL: sd_bus_open_system()),
 * opened when first needed, so a group can be made while D-Bus is down. */
int mail_group_new_full(sd_event *event, MailGroupOpenBus open_bus, void *open_bus_userdata, char *const *units,
                        usec_t stop_timeout, usec_t start_timeout, MailGroup **ret);
MailGroup *mail_group_free(MailGroup *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(MailGroup *, mail_group_free);

/* Stop, start and fence (mail_group_kill(), mail_group_fence()) each cancel
 * the one in flight, if any (its callback is not called): calling any of
 * them again, in any state, is how a caller retries. */
int mail_group_stop(MailGroup *g, MailGroupDone done, void *userdata);
int mail_group_start(MailGroup *g, MailGroupDone done, void *userdata);

/* A stop for fencing, bounded by `timeout` instead of the units' stop times.
 * KillUnit(SIGKILL, "all") goes to every unit at once, then StopUnit to every
 * unit at once; then each unit's ActiveState and Job are read until it is
 * confirmed down (inactive or failed, no job queued). A unit not yet down is
 * sent SIGKILL again at each check (which also ends a slow ExecStop=), a
 * refused stop is sent again, and a broken connection is reopened and
 * everything sent again, until the deadline.
 *
 * `done` gets r = 0 only when every unit was confirmed down. Otherwise, at
 * the deadline, r = -ETIMEDOUT and `error` names each unit not confirmed
 * stopped with its last known state or the call that failed
 * ("postfix@-.service not confirmed stopped: deactivating (stop-post);
 * dovecot.service not confirmed stopped: KillUnit failed: Access denied").
 *
 * Queued mail is safe (Postfix acknowledges only fsynced queue files); an
 * index Dovecot was writing is rebuilt at its next start. */
int mail_group_fence(MailGroup *g, usec_t timeout, MailGroupDone done, void *userdata);
/* mail_group_fence() with the group's stop_timeout as the deadline. */
int mail_group_kill(MailGroup *g, MailGroupDone done, void *userdata);

bool mail_group_busy(const MailGroup *g);
/* Units, in start order. */
char *const *mail_group_units(const MailGroup *g);
/* How many times the group opened a new D-Bus connection after one broke. */
unsigned mail_group_reconnects(const MailGroup *g);

/* Whether the group is in a state to be judged: `settled` is true only when
 * the boot transaction is not running (Manager.SystemState is neither
 * "initializing" nor "starting", nor "stopping"), no unit of the group is
 * activating, deactivating or reloading or has a job queued, and every
 * active unit has been active for at least `start_grace`
 * (ActiveEnterTimestampMonotonic). Otherwise `reason` is one line naming the
 * first unit, in start order, that is not settled: "postfix@-.service is
 * activating (start-pre)", "the boot transaction is still running (system
 * state starting)", "dovecot.service started 3s ago".
 *
 * In the callback, r < 0 when systemd refused a read or did not answer
 * within MAIL_GROUP_QUERY_TIMEOUT (settled is then false and reason says
 * why): treat it as "not known to be settled". Asynchronous: on success
 * `done` is called exactly once, later, unless the query is cancelled by
 * another query, mail_group_query_cancel() or mail_group_free(). Returns < 0,
 * and `done` is never called, when the query could not be sent (no
 * connection to systemd). Independent of stop, start and fence: it runs
 * beside them. */
#define MAIL_GROUP_QUERY_TIMEOUT (5 * USEC_PER_SEC)
typedef void (*MailGroupSettled)(MailGroup *g, int r, bool settled, const char *reason, void *userdata);
int mail_group_query_settled(MailGroup *g, usec_t start_grace, MailGroupSettled done, void *userdata);
void mail_group_query_cancel(MailGroup *g);
