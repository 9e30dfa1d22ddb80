/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"

const char *bus_system_error(int r, char *buf, size_t len) {
        const char *address = secure_getenv("DBUS_SYSTEM_BUS_ADDRESS");

        if (address && *address) {
                snprintf(buf, len, "cannot connect to the system bus at '%s' ($DBUS_SYSTEM_BUS_ADDRESS): %s", address,
                         strerror(r < 0 ? -r : r));
                return buf;
        }
        switch (r) {
        case -ENOENT:
                snprintf(buf, len,
                         "no system D-Bus socket at " BUS_SYSTEM_SOCKET
                         ": is the dbus package installed and dbus.service running?");
                break;
        case -ECONNREFUSED:
                snprintf(buf, len, "nothing answers on the system D-Bus socket " BUS_SYSTEM_SOCKET
                                   ": is dbus.service running?");
                break;
        case -EACCES:
        case -EPERM:
                snprintf(buf, len, "not allowed to connect to the system D-Bus socket " BUS_SYSTEM_SOCKET);
                break;
        default:
                snprintf(buf, len, "cannot connect to the system D-Bus socket " BUS_SYSTEM_SOCKET ": %s",
                         strerror(r < 0 ? -r : r));
        }
        return buf;
}
