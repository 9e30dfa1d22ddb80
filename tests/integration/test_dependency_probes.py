"""The time, nfs, memcached and dns probes in node1 against the infra box
and the other mail node.

infra serves NTP (chronyd -x, local stratum 8), memcached (-m 16), the
shared mail tree, which every box sees at /srv/nfs (a bind mount of one
tmpfs: the node box has no kernel NFS client, hence fstype tmpfs and the
mount point /srv/nfs above the share), and the zone rupost.test (NSD). node2's
chronyd answers its peers. The probes are appended to node1's agent
configuration for this module and removed afterwards.

Faults are real: the share's owner changed in infra (critical, with the
chown to run), memcached restarted with -m 1 (warning, with the -m to set),
infra's chronyd serving time 2 s ahead under libfaketime (critical), node2's
chronyd serving time of its own 2 s ahead (critical, naming node2) or stopped
(warning), records removed from or changed in the zone (each named with the
line to add or the value expected) and NSD stopped (critical).
"""

import contextlib
import re

import pytest

INFRA = "10.231.0.10"
NODE1 = "10.231.0.11"
NODE2 = "10.231.0.12"
ZONE = "/etc/nsd/rupost.test.zone"
CHRONY_CONF = "/etc/chrony/chrony.conf"
SHARE = "/srv/nfs/MailStorage"
# 2 s as measured: libfaketime's offset plus the query's own error
# (1.999 and 2.003 both happen).
TWO_SECONDS = r"(1\.9[5-9]\d|2\.0[0-4]\d)"
FAKETIME_DROPIN = "/etc/systemd/system/chrony.service.d/rupost-test-faketime.conf"

PROBES = f"""
  - name: clock
    type: time
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    servers: ["{INFRA}"]
    peers: ["{NODE2}"]
    # The boxes share the host's kernel clock, which no chronyd may set.
    ignore_kernel_clock: true
  - name: zone
    type: dns
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    domain: rupost.test
    mail_host: mail.rupost.test
    addresses: ["{NODE1}", "{NODE2}"]
    spf: "v=spf1 mx ~all"
    nameserver: {INFRA}
  - name: mail-storage
    type: nfs
    interval: 4s
    timeout: 3s
    rise: 1
    fall: 1
    path: {SHARE}
    mount_point: /srv/nfs
    fstype: tmpfs
  - name: cache
    type: memcached
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "{INFRA}:11211"
    ldap_domains: 1
    users: 1000
"""


@pytest.fixture(scope="module")
def probes(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    try:
        with cluster.agent_config("node1", append=PROBES):
            yield
    finally:
        cluster.exec("infra", "chown", "420:420", SHARE, check=False)
        for box in ("infra", "node2"):
            cluster.exec(box, "rm", "-f", FAKETIME_DROPIN, check=False)
            cluster.exec(box, "systemctl", "daemon-reload", check=False)
        cluster.exec("infra", "systemctl", "restart", "chrony.service", "nsd.service", check=False)
        cluster.exec("node2", "systemctl", "restart", "chrony.service", check=False)


def faketime(cluster, box, offset):
    """BOX's chronyd serves time OFFSET seconds off (libfaketime)."""
    cluster.exec(box, "mkdir", "-p", FAKETIME_DROPIN.rsplit("/", 1)[0])
    cluster.exec(box, "sh", "-c", f"cat > {FAKETIME_DROPIN}", input=(
        "[Service]\n"
        "Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 "
        f"FAKETIME={offset:+d} FAKETIME_DONT_FAKE_MONOTONIC=1\n"))
    cluster.exec(box, "systemctl", "daemon-reload")
    cluster.exec(box, "systemctl", "restart", "chrony.service")


def real_time(cluster, box):
    cluster.exec(box, "rm", "-f", FAKETIME_DROPIN)
    cluster.exec(box, "systemctl", "daemon-reload")
    cluster.exec(box, "systemctl", "restart", "chrony.service")


def test_time_ok(cluster, probes):
    p = cluster.wait_status("node1", "clock", "ok")
    assert "2 NTP sources within" in p["reason"], p
    m = cluster.metrics("node1")
    for source in (INFRA, NODE2):
        assert re.search(r'^rupost_time_offset_seconds\{[^}]*source="%s"[^}]*\} ' % re.escape(source), m, re.M), m
    # The boxes share one kernel clock: the skew is what the network adds. The
    # exporter prints %.17g, so a tiny skew reads 4.2e-05: compare numbers.
    skew = re.search(r'^rupost_time_max_skew_seconds\{[^}]*\} (\S+)$', m, re.M)
    assert skew and float(skew.group(1)) < 0.1, m


def test_time_server_ahead_is_critical(cluster, probes):
    cluster.wait_status("node1", "clock", "ok")
    faketime(cluster, "infra", 2)
    try:
        p = cluster.wait_status("node1", "clock", "critical", timeout=30)
        assert re.search(r"^%s is %s s ahead \(delay \d+ ms\): more than the 1 s the cluster "
                         r"tolerates; check chrony on that host" % (re.escape(INFRA), TWO_SECONDS), p["reason"]), p
    finally:
        real_time(cluster, "infra")
    cluster.wait_status("node1", "clock", "ok", timeout=30)


def test_time_peer_ahead_is_critical(cluster, probes):
    """node2 keeps its own time, 2 s ahead: node1 names node2, not its
    server (which node1 still agrees with)."""
    cluster.wait_status("node1", "clock", "ok")
    conf = cluster.exec("node2", "cat", CHRONY_CONF).stdout
    cluster.exec("node2", "sh", "-c", f"cat > {CHRONY_CONF}",
                 input=re.sub(r"^server .*$", "local stratum 9", conf, flags=re.M))
    faketime(cluster, "node2", 2)
    try:
        p = cluster.wait_status("node1", "clock", "critical", timeout=30)
        assert re.search(r"^%s is %s s ahead \(delay \d+ ms\): more than the 1 s the cluster "
                         r"tolerates; check chrony on that host" % (re.escape(NODE2), TWO_SECONDS), p["reason"]), p
        offsets = {s: cluster.metric(cluster.metrics("node1"), "rupost_time_offset_seconds",
                                      probe="clock", source=s)
                   for s in (INFRA, NODE2)}
        assert abs(offsets[INFRA]) < 0.5 and 1.9 < offsets[NODE2] < 2.5, offsets
    finally:
        cluster.exec("node2", "sh", "-c", f"cat > {CHRONY_CONF}", input=conf)
        real_time(cluster, "node2")
    cluster.wait_status("node1", "clock", "ok", timeout=30)


@contextlib.contextmanager
def stopped(cluster, box, unit):
    """UNIT stopped in BOX inside the block, started again after it."""
    cluster.exec(box, "systemctl", "stop", unit)
    try:
        yield
    finally:
        cluster.exec(box, "systemctl", "start", unit)


def test_time_peer_silent_is_warning(cluster, probes):
    cluster.wait_status("node1", "clock", "ok")
    with stopped(cluster, "node2", "chrony.service"):
        p = cluster.wait_status("node1", "clock", "warning", timeout=30)
        assert p["reason"] == (f"cannot compare with {NODE2}: nothing listens on its NTP port "
                               "(ICMP port unreachable)"), p
    cluster.wait_status("node1", "clock", "ok", timeout=30)


def test_nfs_ok(cluster, probes):
    p = cluster.wait_status("node1", "mail-storage", "ok")
    assert p["reason"].startswith(f"{SHARE}: tmpfs, owner 420:420, write+fsync+read+unlink in "), p
    m = cluster.metrics("node1")
    for family in ("rupost_nfs_mount_present", "rupost_nfs_mount_responsive", "rupost_nfs_owner_ok"):
        assert re.search(r'^%s\{[^}]*share="MailStorage"[^}]*\} 1$' % family, m, re.M), (family, m)
    # The canary does not stay behind.
    assert cluster.exec("infra", "ls", "-A", SHARE).stdout.count(".rupost-agent-") == 0


def test_nfs_wrong_owner_is_critical(cluster, probes):
    cluster.wait_status("node1", "mail-storage", "ok")
    cluster.exec("infra", "chown", "0:0", SHARE)
    try:
        p = cluster.wait_status("node1", "mail-storage", "critical", timeout=20)
        assert (f"owner is 0:0, expected 420:420: run chown -R 420:420 {SHARE} on the NFS server"
                in p["reason"]), p
    finally:
        cluster.exec("infra", "chown", "420:420", SHARE)
    cluster.wait_status("node1", "mail-storage", "ok", timeout=20)


def test_memcached_ok(cluster, probes):
    p = cluster.wait_status("node1", "cache", "ok")
    assert "set/get of rupost-agent:node1 ok" in p["reason"], p
    m = cluster.metrics("node1")
    assert re.search(r'^rupost_memcached_limit_bytes\{[^}]*\} 16777216$', m, re.M), m


def test_memcached_too_small_is_warning(cluster, probes):
    cluster.wait_status("node1", "cache", "ok")
    conf = cluster.exec("infra", "cat", "/etc/memcached.conf").stdout
    # memcached 1.6 refuses -m 1 with its default 1 MiB item size limit.
    small = re.sub(r"^-m 16$", "-m 1\n-I 512k", conf, flags=re.M)
    assert small != conf, conf
    cluster.exec("infra", "sh", "-c", "cat > /etc/memcached.conf", input=small)
    cluster.exec("infra", "systemctl", "restart", "memcached.service")
    try:
        p = cluster.wait_status("node1", "cache", "warning", timeout=20)
        assert ("memcached has 1 MiB, needs at least 11 MiB for 1 LDAP domain and 1000 users: set -m 11"
                in p["reason"]), p
    finally:
        cluster.exec("infra", "sh", "-c", "cat > /etc/memcached.conf", input=conf)
        cluster.exec("infra", "systemctl", "restart", "memcached.service")
    cluster.wait_status("node1", "cache", "ok", timeout=20)


def serve_zone(cluster, text):
    cluster.exec("infra", "sh", "-c", f"cat > {ZONE}", input=text)
    cluster.exec("infra", "systemctl", "restart", "nsd.service")


@contextlib.contextmanager
def edited_zone(cluster, edit):
    """The zone in infra rewritten by EDIT (text -> text) and served inside
    the block; the original served again after it."""
    zone = cluster.exec("infra", "cat", ZONE).stdout
    new = edit(zone)
    assert new != zone
    serve_zone(cluster, new)
    try:
        yield
    finally:
        serve_zone(cluster, zone)


def test_dns_ok(cluster, probes):
    p = cluster.wait_status("node1", "zone", "ok")
    assert p["reason"] == ("rupost.test: MX, SPF, autoconfig, autodiscover, CalDAV/CardDAV SRV and 2 node addresses "
                           "of mail.rupost.test as expected"), p


def test_dns_records_missing_or_wrong(cluster, probes):
    cluster.wait_status("node1", "zone", "ok")

    def break_zone(zone):
        zone = re.sub(r"^autodiscover .*\n", "", zone, flags=re.M)
        zone = re.sub(r"^(@\s+MX\s+)10 mail$", r"\g<1>10 mx.other.test.", zone, flags=re.M)
        return re.sub(r"^mail\s+A\s+%s\n" % re.escape(NODE2), "", zone, flags=re.M)

    with edited_zone(cluster, break_zone):
        p = cluster.wait_status("node1", "zone", "critical", timeout=20)
        for expected in ("MX of rupost.test points to mx.other.test, expected mail.rupost.test",
                         "autodiscover.rupost.test CNAME is missing (NXDOMAIN): add "
                         "'autodiscover.rupost.test. CNAME mail.rupost.test.'",
                         f"mail.rupost.test does not list {NODE2} (it has: {NODE1}): add an A record for every node"):
            assert expected in p["reason"], (expected, p)
        assert cluster.metric(cluster.metrics("node1"), "rupost_dns_records_ok", probe="zone", record="mx") == 0
        assert cluster.metric(cluster.metrics("node1"), "rupost_dns_records_ok", probe="zone", record="spf") == 1
    cluster.wait_status("node1", "zone", "ok", timeout=20)


def test_dns_server_down_is_critical(cluster, probes):
    cluster.wait_status("node1", "zone", "ok")
    with stopped(cluster, "infra", "nsd.service"):
        p = cluster.wait_status("node1", "zone", "critical", timeout=20)
        assert p["reason"] == ("DNS lookups for rupost.test fail: rupost.test: nothing listens on the name server's "
                               f"DNS port (ICMP port unreachable) (name server {INFRA})"), p
    cluster.wait_status("node1", "zone", "ok", timeout=20)
