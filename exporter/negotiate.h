/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* What a scrape gets, from its Accept and Accept-Encoding headers: pure
 * functions over the header values, so that they can be fuzzed and tested
 * in a table. Nothing here fails: a header that cannot be read is a client
 * that asked for nothing in particular, and gets the default. */

#include <stdbool.h>

#include "lib/macro.h"

typedef enum Exposition {
        EXPOSITION_TEXT_0_0_4, /* the default, for every client that did not ask for OpenMetrics */
        EXPOSITION_OPENMETRICS_1_0_0,
        EXPOSITION_OPENMETRICS_0_0_1, /* the draft version, same body; older Prometheus asks for it */
        _EXPOSITION_MAX,
} Exposition;

/* The Content-Type header of an exposition. */
const char *exposition_content_type(Exposition x) _pure_;
bool exposition_is_openmetrics(Exposition x) _pure_;

/* The exposition an Accept header (NULL when absent) ranks first. OpenMetrics
 * only when the header names application/openmetrics-text with a q above 0
 * and above that of the text format (wildcards count for the text format
 * only); on equal q, a type named beats one matched by a wildcard, then what
 * the header lists first. Everything else, garbage
 * and "nothing acceptable" included, is text 0.0.4: an exporter answers
 * rather than sending 406 to a scraper. */
Exposition negotiate_exposition(const char *accept) _pure_;

/* Whether an Accept-Encoding header (NULL when absent) allows gzip: "gzip" or
 * "x-gzip", else "*", with q above 0, and not below an explicit "identity". */
bool negotiate_gzip(const char *accept_encoding) _pure_;
