/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* One probe run without the agent: a config loaded from a YAML string, its
 * first probe attached to a bare Manager that has nothing but an event loop
 * and the config (for the node name), triggered, and the loop run until the
 * probe reports. */

#include "config.h"
#include "lib/curl-glue.h"
#include "manager.h"
#include "probe.h"
#include "run-until.h"
#include "tests.h"

/* The loader's errors are printed, so that a failing case shows them. */
static inline Config *test_config_load(const char *yaml) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;
        int r = config_load_string("test.yaml", yaml, strlen(yaml), &config, &errors);

        for (char **i = errors; i && *i; i++)
                fprintf(stderr, "%s\n", *i);
        ASSERT_OK(r);
        return config;
}

typedef struct ProbeRun {
        sd_event *event;
        Manager manager;
        Config *config;
        Probe *probe;
} ProbeRun;

static inline void probe_run_load(ProbeRun *run, const char *yaml) {
        *run = (ProbeRun) { .config = test_config_load(yaml) };
        ASSERT_OK(sd_event_new(&run->event));
        run->manager = (Manager) { .event = run->event, .config = run->config };
        run->probe = run->config->probes[0];
        ASSERT_OK(probe_attach(run->probe, &run->manager));
}

/* Makes the config's i-th probe the one that runs. */
static inline void probe_run_select(ProbeRun *run, size_t i) {
        ASSERT_TRUE(i < run->config->n_probes);
        run->probe = run->config->probes[i];
        ASSERT_OK(probe_attach(run->probe, &run->manager));
}

/* Triggers the probe and waits for its report, up to `limit`. */
static inline Probe *probe_run_once(ProbeRun *run, usec_t limit) {
        Probe *p = run->probe;
        uint64_t before = p->n_runs;

        ASSERT_OK(probe_trigger(p));
        ASSERT_TRUE(RUN_UNTIL(run->event, p->n_runs != before, limit));
        ASSERT_EQ(p->n_runs, before + 1);
        ASSERT_FALSE(p->running);
        fprintf(stderr, "  -> %s in %.3fs: %s\n", probe_status_to_string(p->last.status),
                usec_to_seconds(p->last.duration), p->last.reason);
        return p;
}

static inline void probe_run_done(ProbeRun *run) {
        run->manager.config = NULL;
        run->config = config_free(run->config);
        /* What the real manager would free: the HTTP probes' libcurl multi
         * and its last status line. */
        run->manager.curl = curl_glue_free(run->manager.curl);
        free(run->manager.last_status);
        run->manager = (Manager) {};
        run->event = sd_event_unref(run->event);
}

/* The first sample of `family` whose labels contain `labels` (NULL: any),
 * or NULL. */
static inline const Sample *probe_sample(const Probe *p, const char *family, const char *labels) {
        for (size_t i = 0; i < p->last.n_samples; i++) {
                const Sample *s = &p->last.samples[i];
                if (streq(s->family->name, family) && (!labels || (s->labels && strstr(s->labels, labels))))
                        return s;
        }
        return NULL;
}

/* Its value; the test fails when there is no such sample. */
static inline double probe_sample_value(const Probe *p, const char *family, const char *labels) {
        const Sample *s = probe_sample(p, family, labels);
        if (!s)
                ASSERT_FAIL("no sample %s{%s}", family, labels ?: "");
        return s->value;
}

/* The config is refused, and its first error says `error`. */
static inline void test_config_load_fails(const char *yaml, const char *error) {
        _cleanup_strv_free_ char **errors = NULL;
        Config *config = NULL;

        ASSERT_ERROR(config_load_string("test.yaml", yaml, strlen(yaml), &config, &errors), EINVAL);
        ASSERT_TRUE(errors && errors[0]);
        fprintf(stderr, "%s\n", errors[0]);
        ASSERT_CONTAINS(errors[0], error);
}
