/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The config loader on arbitrary bytes. Beyond not crashing, it checks the
 * promise the loader makes to operators: it either returns a configuration
 * or at least one error, and every error is one line naming the file. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_strv_free_ char **errors = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        /* Real files may be up to 1 MiB, but nothing new is reached beyond
         * this, and smaller inputs keep the fuzzer fast. */
        if (size > 64 * 1024)
                return 0;

        r = config_load_string("fuzz.yaml", (const char *) data, size, &c, &errors);
        if (r == -ENOMEM)
                return 0;
        if (r == 0) {
                if (!c || errors || !c->node || !c->web_listen_address || !c->control_socket)
                        abort();
                for (size_t i = 0; i < c->n_probes; i++)
                        if (!c->probes[i] || !c->probes[i]->name || c->probes[i]->timeout > c->probes[i]->interval)
                                abort();
                return 0;
        }
        if (r != -EINVAL || c || !errors || !errors[0])
                abort();
        for (char **e = errors; *e; e++)
                if (strncmp(*e, "fuzz.yaml", 9) != 0 || strpbrk(*e, "\n\r"))
                        abort();
        return 0;
}
