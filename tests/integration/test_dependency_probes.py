"""The time, nfs and memcached probes in node1 against the infra box.

infra serves NTP (chronyd -x, local stratum 8), memcached (-m 16) and the
shared mail tree, which every box sees at /srv/nfs (a bind mount of one
tmpfs: the node box has no kernel NFS client, hence fstype tmpfs and the
mount point /srv/nfs above the share). The probes are appended to node1's
agent configuration for this module and removed afterwards.

Faults are real: the share's owner changed in infra (critical, with the
chown to run), memcached restarted with -m 1 (warning, with the -m to set),
and infra's chronyd serving time 2 s ahead under libfaketime (critical).

The dns probe is covered by its unit test against a fake authoritative
server: the boxes have no DNS server.
"""

import re

import pytest

INFRA = "10.231.0.10"
SHARE = "/srv/nfs/MailStorage"
FAKETIME_DROPIN = "/etc/systemd/system/chrony.service.d/rupost-test-faketime.conf"

PROBES = f"""
  - name: clock
    type: time
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    servers: ["{INFRA}"]
    # The boxes share the host's kernel clock, which no chronyd may set.
    ignore_kernel_clock: true
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
        cluster.exec("infra", "rm", "-f", FAKETIME_DROPIN, check=False)
        cluster.exec("infra", "systemctl", "daemon-reload", check=False)
        cluster.exec("infra", "systemctl", "restart", "chrony.service", check=False)


def test_time_ok(cluster, probes):
    p = cluster.wait_status("node1", "clock", "ok")
    assert "1 NTP source within" in p["reason"] and INFRA in p["reason"], p
    m = cluster.metrics("node1")
    assert re.search(r'^rupost_time_offset_seconds\{[^}]*source="%s"[^}]*\} ' % re.escape(INFRA), m, re.M), m
    assert re.search(r'^rupost_time_max_skew_seconds\{[^}]*\} 0\.0', m, re.M), m


def test_time_server_ahead_is_critical(cluster, probes):
    cluster.wait_status("node1", "clock", "ok")
    cluster.exec("infra", "mkdir", "-p", FAKETIME_DROPIN.rsplit("/", 1)[0])
    cluster.exec("infra", "sh", "-c", f"cat > {FAKETIME_DROPIN}", input=(
        "[Service]\n"
        "Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 "
        "FAKETIME=+2 FAKETIME_DONT_FAKE_MONOTONIC=1\n"))
    cluster.exec("infra", "systemctl", "daemon-reload")
    cluster.exec("infra", "systemctl", "restart", "chrony.service")
    try:
        p = cluster.wait_status("node1", "clock", "critical", timeout=30)
        assert re.search(r"^%s is 2\.0\d\d s ahead \(delay \d+ ms\): more than the 1 s the cluster "
                         r"tolerates; check chrony on that host" % re.escape(INFRA), p["reason"]), p
    finally:
        cluster.exec("infra", "rm", "-f", FAKETIME_DROPIN)
        cluster.exec("infra", "systemctl", "daemon-reload")
        cluster.exec("infra", "systemctl", "restart", "chrony.service")
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
