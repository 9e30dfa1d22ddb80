"""The postgres and ldap probes in node1 against the infra box.

infra runs PostgreSQL with the three RuPost databases and two directory
controllers (ldap1 = 10.231.0.10, ldap2 = 10.231.0.9) of dc=rupost,dc=test
with the RuPost schema. The probes are appended to node1's agent
configuration for this module and removed afterwards.

Faults are real: PostgreSQL stopped in infra (critical), packets to one
controller dropped with nft inside node1 (warning, the other controller
serves, the run costs the controller's budget and not the probe's timeout),
and ldap1's clock 3 s ahead under libfaketime (warning naming it: the
controllers publish their time in OpenLDAP's monitor backend).
"""

import re

import pytest

INFRA = "10.231.0.10"
LDAP2 = "10.231.0.9"
PG_PASSWORD_FILE = "/etc/rupost/test-postgres.password"
LDAP_PASSWORD_FILE = "/etc/rupost/test-ldap.password"
NFT_TABLE = "rupost_test_ldap"
FAKETIME_DROPIN = "/etc/systemd/system/slapd.service.d/rupost-test-faketime.conf"

PROBES = f"""
  - name: shared-db
    type: postgres
    interval: 4s
    timeout: 3s
    rise: 1
    fall: 1
    host: {INFRA}
    user: rupost
    password_file: {PG_PASSWORD_FILE}
  - name: directory
    type: ldap
    interval: 5s
    timeout: 4s
    rise: 1
    fall: 1
    domain: rupost.test
    controllers: ["ldap://{INFRA}:389", "ldap://{LDAP2}:389"]
    bind_dn: "cn=rupost-svc,dc=rupost,dc=test"
    password_file: {LDAP_PASSWORD_FILE}
    search_filter: "(mail=alice@rupost.test)"
    flavor: freeipa
    controller_timeout: 1500ms
"""


@pytest.fixture(scope="module")
def probes(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    cluster.exec("node1", "sh", "-c",
                 f"umask 077; echo rupost > {PG_PASSWORD_FILE}; "
                 f"echo rupost-svc-secret > {LDAP_PASSWORD_FILE}")
    try:
        with cluster.agent_config("node1", append=PROBES):
            yield
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
        cluster.exec("infra", "systemctl", "start", "postgresql.service", check=False)
        if cluster.exec("infra", "test", "-e", FAKETIME_DROPIN, check=False).returncode == 0:
            cluster.exec("infra", "rm", "-f", FAKETIME_DROPIN, check=False)
            cluster.exec("infra", "systemctl", "daemon-reload", check=False)
            cluster.exec("infra", "systemctl", "restart", "slapd.service", check=False)
        cluster.exec("node1", "rm", "-f", PG_PASSWORD_FILE, LDAP_PASSWORD_FILE, check=False)


def test_postgres_ok(cluster, probes):
    p = cluster.wait_status("node1", "shared-db", "ok")
    assert "primary; rupost, rupost_data, rupost_logs answer" in p["reason"], p
    metrics = cluster.metrics("node1")
    for db in ("rupost", "rupost_data", "rupost_logs"):
        assert re.search(r'^rupost_postgres_up\{[^}]*database="%s"[^}]*\} 1$' % db, metrics, re.M), metrics
    assert re.search(r'^rupost_time_offset_seconds\{[^}]*source="postgres"', metrics, re.M), metrics


def test_ldap_ok(cluster, probes):
    p = cluster.wait_status("node1", "directory", "ok")
    assert "domain rupost.test: all 2 controllers serve" in p["reason"], p
    assert "found as " in p["reason"], p
    assert "rupost-svc-secret" not in p["reason"]
    # Both controllers publish their time; one clock for all boxes, read in
    # whole seconds.
    metrics = cluster.metrics("node1")
    for controller in (INFRA, LDAP2):
        offset = cluster.metric(metrics, "rupost_time_offset_seconds", probe="directory",
                                source=f"ldap://{controller}:389")
        assert -1 <= offset <= 1, (controller, offset)


def test_ldap_controller_clock_ahead_is_warning(cluster, probes):
    cluster.wait_status("node1", "directory", "ok")
    cluster.exec("infra", "mkdir", "-p", FAKETIME_DROPIN.rsplit("/", 1)[0])
    cluster.exec("infra", "sh", "-c", f"cat > {FAKETIME_DROPIN}", input=(
        "[Service]\n"
        "Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 "
        "FAKETIME=+3 FAKETIME_DONT_FAKE_MONOTONIC=1\n"))
    cluster.exec("infra", "systemctl", "daemon-reload")
    cluster.exec("infra", "systemctl", "restart", "slapd.service")
    try:
        p = cluster.wait_status("node1", "directory", "warning", timeout=30)
        assert re.search(r"^domain rupost\.test: all 2 controllers serve; ldap://%s:389's clock is [2-4] s ahead of "
                         r"ours \(cn=Monitor monitorTimestamp\): the cluster tolerates 1 s; check the time sync of "
                         r"that controller$" % re.escape(INFRA), p["reason"]), p
        offset = cluster.metric(cluster.metrics("node1"), "rupost_time_offset_seconds", probe="directory",
                                source=f"ldap://{INFRA}:389")
        assert 2 <= offset <= 4, offset
    finally:
        cluster.exec("infra", "rm", "-f", FAKETIME_DROPIN)
        cluster.exec("infra", "systemctl", "daemon-reload")
        cluster.exec("infra", "systemctl", "restart", "slapd.service")
    cluster.wait_status("node1", "directory", "ok", timeout=30)


def test_postgres_stopped_is_critical(cluster, probes):
    cluster.wait_status("node1", "shared-db", "ok")
    cluster.exec("infra", "systemctl", "stop", "postgresql.service", timeout=60)
    try:
        p = cluster.wait_status("node1", "shared-db", "critical", timeout=20)
        assert f"PostgreSQL at {INFRA}:5432" in p["reason"], p
        assert "does not answer" in p["reason"] or "rejecting connections" in p["reason"], p
    finally:
        cluster.exec("infra", "systemctl", "start", "postgresql.service", timeout=60)
    cluster.wait_status("node1", "shared-db", "ok", timeout=30)


def test_ldap_controller_black_holed_fails_over(cluster, probes):
    timeouts = cluster.wait_status("node1", "directory", "ok")["timeouts"]
    cluster.exec("node1", "nft", "add", "table", "inet", NFT_TABLE)
    cluster.exec("node1", "nft", "add", "chain", "inet", NFT_TABLE, "out",
                 "{ type filter hook output priority 0 ; }")
    cluster.exec("node1", "nft", "add", "rule", "inet", NFT_TABLE, "out",
                 "ip", "daddr", LDAP2, "tcp", "dport", "389", "drop")
    try:
        p = cluster.wait_status("node1", "directory", "warning", timeout=20)
        assert "domain rupost.test: 1 of 2 controllers serve" in p["reason"], p
        assert f"ldap://{LDAP2}:389: no answer within 1.5s" in p["reason"], p
        # The controller's budget (1.5s) and a little, never the 4s timeout.
        assert 1.4 < p["duration_seconds"] < 2.5, p
        # The probe finished by itself: the core's deadline never fired.
        assert p["timeouts"] == timeouts, p
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
    cluster.wait_status("node1", "directory", "ok", timeout=20)
