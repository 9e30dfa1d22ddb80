/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* GET /metrics over HTTP, served from the results the probes already cached:
 * a scrape never starts a probe and never waits for one. */

#include <stdint.h>
#include <sys/socket.h>

#include "agent/lib/buf.h"
#include "agent/manager.h"

#define EXPORTER_MAX_BODY (16U * 1024U * 1024U)

typedef struct WebConfig WebConfig;

/* Binds listen_address (sockaddr_parse(); port 0 picks a free one) and serves on the
 * manager's event loop. web (TLS, users, headers; NULL for plain HTTP) is
 * borrowed and must outlive its use by the exporter. */
int exporter_new(Manager *m, const char *listen_address, const WebConfig *web, Exporter **ret);
/* Switches to another web config (borrowed likewise). When the TLS setup
 * changes a new server is started first: on failure the old one goes on with
 * the old config, which the caller must then keep. Logs. */
int exporter_set_web_config(Exporter *e, const WebConfig *web);
Exporter *exporter_free(Exporter *e);
/* The port actually bound, also when listen_address asked for port 0. */
uint16_t exporter_port(const Exporter *e);
/* Open client connections, for tests. */
unsigned exporter_n_connections(const Exporter *e);
/* How long a request may take, from the connection's start or its previous
 * answer (10s by default); for tests. */
void exporter_set_request_deadline(Exporter *e, usec_t limit);
/* Connections closed because a request outlived that deadline. */
uint64_t exporter_n_deadline_closes(const Exporter *e);
/* How often the cached probe part was deflated, for tests: once per state
 * and format, however many gzip scrapes it served. */
uint64_t exporter_n_compressions(const Exporter *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(Exporter *, exporter_free);

typedef enum MetricsFormat {
        METRICS_FORMAT_TEXT,        /* the text exposition format 0.0.4 */
        METRICS_FORMAT_OPENMETRICS, /* OpenMetrics 1.0.0 text, ending in "# EOF" */
        _METRICS_FORMAT_MAX,
} MetricsFormat;

/* Renders everything the manager knows in the given format.
 * Fails with -ENOBUFS when out's limit is reached (out then holds a truncated
 * body that must not be served) and -ENOTUNIQ when probe families clash.
 * Probes without a result yet report success 0 and status "unknown", and have
 * no duration and last-run samples. */
int metrics_render(const Manager *m, MetricsFormat fmt, Buf *out);
/* The two parts of metrics_render(): what the probes and the config say, which
 * only changes when a probe finishes, and the process_* figures, which
 * change on every call; the latter ends the exposition ("# EOF" in
 * OpenMetrics), so it comes last. */
int metrics_render_state(const Manager *m, MetricsFormat fmt, Buf *out);
int metrics_render_process(MetricsFormat fmt, Buf *out);
/* A hash of everything metrics_render_state() reads: while it is unchanged,
 * a body rendered earlier is still exact. */
uint64_t metrics_state_hash(const Manager *m);
/* A sample value as the text format spells it: integers without exponent,
 * other values in the shortest form that reads back exactly, NaN, +Inf, -Inf.
 * Returns the length, as snprintf(). */
int metrics_format_value(char *buf, size_t size, double v);
