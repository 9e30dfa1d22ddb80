/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The time a directory server publishes, in LDAP's GeneralizedTime
 * (RFC 4517 3.3.13): "20261128103859Z", "20261128103859.0Z" (Active
 * Directory's currentTime), "20261128133859+0300". Whole seconds: the
 * fraction is dropped, which is all the servers give anyway. */

#include <stddef.h>
#include <stdint.h>

/* Seconds since the Unix epoch (UTC) into *ret; -EINVAL for anything that is
 * not a complete GeneralizedTime down to the second with a zone. */
int ldap_generalized_time_parse(const char *s, size_t len, int64_t *ret);
