/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stddef.h>

/* The socket sd_bus_open_system() connects to. */
#define BUS_SYSTEM_SOCKET "/run/dbus/system_bus_socket"
#define BUS_SYSTEM_ERROR_MAX 256

/* Why connecting to the system bus failed with error r, naming what is
 * missing ("no system D-Bus socket at /run/dbus/system_bus_socket: ...")
 * rather than the bare errno, which says nothing of which file is absent.
 * Honours $DBUS_SYSTEM_BUS_ADDRESS as sd-bus does. Returns buf. */
const char *bus_system_error(int r, char *buf, size_t len);
