/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Feeds the input as the byte stream of one HTTP connection to a real
 * exporter (libmicrohttpd with our request handler) on loopback, then ends
 * the connection and runs the event loop until the server closed it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exporter/exporter.h"
#include "lib/log.h"

#define FUZZ_MAX_INPUT (256U * 1024U)

static const MetricFamily fuzz_family = {
        .name = "rupost_fuzz_value", .type = METRIC_GAUGE, .help = "A sample for the fuzzer."
};

typedef struct FuzzServer {
        sd_event *event;
        Config config;
        Manager manager;
        Probe *probes[1];
        Exporter *exporter;
} FuzzServer;

static FuzzServer *server_get(void) {
        static FuzzServer s;
        static bool initialized = false;
        Probe *p;

        if (initialized)
                return &s;

        log_set_max_level(LOG_CRIT);
        if (sd_event_new(&s.event) < 0 || probe_new(probe_type_find("tcp"), "smtp", &p) < 0)
                abort();
        p->have_result = true;
        p->status = PROBE_OK;
        p->last.samples = calloc(1, sizeof(Sample));
        if (!p->last.samples)
                abort();
        p->last.samples[0] = (Sample) { .family = &fuzz_family, .labels = strdup("k=\"v\""), .value = 1.5 };
        p->last.n_samples = 1;
        s.probes[0] = p;
        s.config = (Config) { .node = (char *) "fuzz", .probes = s.probes, .n_probes = 1 };
        s.manager = (Manager) { .event = s.event, .config = &s.config };
        if (exporter_new(&s.manager, "127.0.0.1:0", NULL, &s.exporter) < 0)
                abort();
        initialized = true;
        return &s;
}

static int connect_client(uint16_t port) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons(port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                abort();
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
                abort();
        return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzServer *s = server_get();
        struct linger no_linger = { .l_onoff = 1, .l_linger = 0 };
        size_t written = 0;
        bool closed = false, shut = false;
        unsigned idle = 0;
        int fd;

        if (size > FUZZ_MAX_INPUT)
                return 0;

        fd = connect_client(exporter_port(s->exporter));
        for (unsigned i = 0; i < 5000 && !closed; i++) {
                char buf[65536];
                ssize_t n;

                if (written < size) {
                        n = send(fd, data + written, size - written, MSG_NOSIGNAL);
                        if (n > 0)
                                written += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                written = size;
                }
                if (written == size && !shut) {
                        /* The end of the input is the end of what the client says. */
                        (void) shutdown(fd, SHUT_WR);
                        shut = true;
                }

                int r = sd_event_run(s->event, 1000);
                if (r < 0)
                        abort();
                /* MHD keeps a half-closed connection until its timeout; once
                 * all input is in and the server has nothing left to do,
                 * the run is over. */
                idle = r == 0 && shut ? idle + 1 : 0;
                if (idle >= 3)
                        break;

                n = recv(fd, buf, sizeof buf, 0);
                if (n == 0 || (n < 0 && errno != EAGAIN))
                        closed = true;
        }

        /* Reset instead of TIME_WAIT, so that millions of runs do not exhaust
         * the ephemeral ports, then let the server notice. */
        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
        safe_close(fd);
        /* Whatever the client sent, its connection must be released. */
        for (unsigned i = 0; exporter_n_connections(s->exporter) > 0; i++) {
                if (i >= 1000) {
                        fprintf(stderr, "The server did not release the connection.\n");
                        abort();
                }
                if (sd_event_run(s->event, 1000) < 0)
                        abort();
        }
        return 0;
}
