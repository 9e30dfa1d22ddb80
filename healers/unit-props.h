/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* What the mail group reads about a systemd unit, and the pure judgement of
 * whether the group has settled: no parsing or deciding in the D-Bus code. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "lib/time-util.h"

#define SYSTEMD_DESTINATION "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define SYSTEMD_UNIT "org.freedesktop.systemd1.Unit"
#define SYSTEMD_UNIT_PREFIX "/org/freedesktop/systemd1/unit"

typedef struct UnitProps {
        char active_state[32];         /* "" when the reply did not carry it */
        char sub_state[64];
        uint32_t job_id;               /* 0: no job queued for the unit */
        usec_t active_enter_monotonic; /* CLOCK_MONOTONIC, 0 if never active */
} UnitProps;

/* Reads the reply of Properties.GetAll("org.freedesktop.systemd1.Unit"),
 * "a{sv}", keeping the fields above and skipping the rest. */
int unit_props_read(sd_bus_message *m, UnitProps *ret);

/* Down for a fence: inactive or failed, with no job queued that could
 * start it again. */
bool unit_props_down(const UnitProps *p);

/* Whether systemd's Manager.SystemState says the boot transaction runs. */
bool system_state_starting(const char *system_state);

/* The group has settled when the system is neither booting nor shutting
 * down, no unit is activating, deactivating or reloading or has a job, and
 * every active unit has been active for at least `grace`. Otherwise writes a
 * one-line reason naming the first unit (in the given order) that is not
 * settled, and returns false. `now_monotonic` is CLOCK_MONOTONIC, the clock
 * of ActiveEnterTimestampMonotonic. */
bool units_settled(const char *system_state, char *const *units, const UnitProps *props, usec_t now_monotonic,
                   usec_t grace, char *reason, size_t size);

/* A call failed because the connection is gone, not because systemd
 * refused: the bus must be reopened and the call sent again. */
bool bus_error_is_disconnect(sd_bus *bus, const sd_bus_error *e);
