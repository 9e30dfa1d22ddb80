/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include "probe.h"

extern const ProbeType probe_type_systemd_unit;
extern const ProbeType probe_type_tcp;
extern const ProbeType probe_type_http;
extern const ProbeType probe_type_nginx;
extern const ProbeType probe_type_haproxy;
extern const ProbeType probe_type_postfix;
extern const ProbeType probe_type_postgres;
extern const ProbeType probe_type_ldap;
extern const ProbeType probe_type_time;
extern const ProbeType probe_type_nfs;
extern const ProbeType probe_type_memcached;
extern const ProbeType probe_type_dns;
extern const ProbeType probe_type_dovecot;
/* Defined by the time probe; other probes report clock offsets of their servers in it. */
extern const MetricFamily family_time_offset_seconds;
extern const ProbeType probe_type_smtp, probe_type_lmtp, probe_type_imap, probe_type_managesieve;
