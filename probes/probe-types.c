/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one table of probe types. A new type is a const ProbeType in its own
 * file, declared here and added to the array. */

#include "probe.h"
#include "probes.h"

const ProbeType *const probe_types[] = {
        &probe_type_systemd_unit,
        &probe_type_tcp,
        &probe_type_http,
        &probe_type_nginx,
        &probe_type_haproxy,
        &probe_type_postfix,
        &probe_type_postgres,
        &probe_type_ldap,
        &probe_type_time,
        &probe_type_nfs,
        &probe_type_memcached,
        &probe_type_dns,
        &probe_type_dovecot,
        &probe_type_smtp, &probe_type_lmtp, &probe_type_imap, &probe_type_managesieve,
        NULL,
};
