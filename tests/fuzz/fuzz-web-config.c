/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The web config parser on arbitrary bytes (files it names are not read).
 * It returns a config or errors; every error is one line naming the file, and
 * no error quotes a password hash. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exporter/web-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(web_config_freep) WebConfig *w = NULL;
        int r;

        if (size > 64 * 1024)
                return 0;

        r = web_config_load_string("/fuzz/fuzz.yml", (const char *) data, size, &w, &errors);
        if (r == -ENOMEM)
                return 0;
        if (r == 0) {
                if (!w || errors)
                        abort();
                if (w->tls && (!w->cert_file || !w->key_file || w->cert_file[0] != '/' || w->key_file[0] != '/'))
                        abort();
                for (size_t i = 0; i < w->n_users; i++)
                        if (strlen(w->users[i].hash) != 60 || strchr(w->users[i].name, ':'))
                                abort();
                for (size_t i = 0; i < w->n_headers; i++)
                        if (strpbrk(w->headers[i].value, "\r\n"))
                                abort();
                return 0;
        }
        if (r != -EINVAL || w || !errors || !errors[0])
                abort();
        for (char **e = errors; *e; e++)
                if (strncmp(*e, "/fuzz/fuzz.yml", 14) != 0 || strpbrk(*e, "\n\r"))
                        abort();
        return 0;
}
