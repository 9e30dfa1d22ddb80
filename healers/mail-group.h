/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The mail group: nginx, postfix, dovecot and sogo (names configurable) start
 * together in order and stop together in reverse, through systemd over D-Bus
 * with job tracking. A unit that does not stop within its timeout is killed
 * with SIGKILL. A stop always goes through every unit, whatever fails on the
 * way; a start gives up at the first unit that fails to start. */

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"
#include "lib/time-util.h"

typedef struct MailGroup MailGroup;

/* r is 0 on success or a negative errno; `error` names the unit and what
 * went wrong ("dovecot.service: start job failed"). */
typedef void (*MailGroupDone)(MailGroup *g, int r, const char *error, void *userdata);

int mail_group_new(sd_bus *bus, sd_event *event, char *const *units, usec_t stop_timeout, usec_t start_timeout,
                   MailGroup **ret);
MailGroup *mail_group_free(MailGroup *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(MailGroup *, mail_group_free);

/* Either operation cancels the other if it is in flight (its callback is not
 * called). */
int mail_group_stop(MailGroup *g, MailGroupDone done, void *userdata);
int mail_group_start(MailGroup *g, MailGroupDone done, void *userdata);
/* A stop for fencing, bounded by D-Bus round trips instead of the units'
 * stop times: every unit gets SIGKILL before its stop job. Queued mail is
 * safe (Postfix acknowledges only fsynced queue files); an index Dovecot
 * was writing is rebuilt at its next start. */
int mail_group_kill(MailGroup *g, MailGroupDone done, void *userdata);
bool mail_group_busy(const MailGroup *g);
/* Units, in start order. */
char *const *mail_group_units(const MailGroup *g);
