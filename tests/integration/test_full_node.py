"""A whole mail node as the demo shows it: the node box's standard agent
configuration (tests/nodebox/lib/agent.sh) probes every component a node
has, and on a healthy cluster every one of them is ok.

Then the dovecot probe against the real Dovecot of node2: a held IMAP login
counted by doveadm who; the unit's LimitNOFILE changed by a drop-in (a
warning that names the value and the fix); and Dovecot stopped, where
doveadm cannot run (unknown: the check could not run, not "critical").
Every fault is undone afterwards.
"""

import re
import subprocess
from pathlib import Path

import pytest

NODEBOX = str(Path(__file__).resolve().parent.parent / "nodebox" / "nodebox")

NODE = "node2"
DROPIN = "/etc/systemd/system/dovecot.service.d/zz-rupost-test-drift.conf"

# The standard configuration: probe name -> type.
STANDARD = {
    "mail-units": "systemd-unit",
    "smtp": "smtp",
    "smtp-health": "smtp",
    "imaps": "imap",
    "managesieve": "managesieve",
    "lmtp": "lmtp",
    "postfix": "postfix",
    "dovecot": "dovecot",
    "sogo": "http",
    "sogo-nginx": "http",
    "nginx-redirect": "http",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "postgres": "postgres",
    "ldap": "ldap",
    "memcached": "memcached",
    "time": "time",
    "dns": "dns",
    "nfs-queues": "nfs",
    "nfs-storage": "nfs",
    "nfs-archive": "nfs",
    "nfs-record": "nfs",
}

# Probes that may warn on a healthy node box, and why. Empty: the mail
# probes allow the boxes' self-signed certificates (allow_self_signed), so a
# warning anywhere is a finding.
ALLOWED_WARNINGS = {}

HOLD_IMAP = r"""
import imaplib, signal, ssl, sys
signal.alarm(90)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=ctx)
m.login("alice@rupost.test", "alice-secret")
print("logged in", flush=True)
sys.stdin.read()
m.logout()
"""


def wait_status(cluster, name, status):
    """In NODE, with the patience this module always had."""
    return cluster.wait_status(NODE, name, status, timeout=40, interval=0.5)


def wait_reason(cluster, name, pattern, timeout=40):
    return cluster.wait_for(f"{name} reason ~ {pattern}", lambda: (
        lambda p: p if re.search(pattern, p["reason"]) else None)(cluster.probe(NODE, name)),
        timeout=timeout, interval=0.5)


@pytest.fixture(scope="module")
def agent(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")


def not_ok(report):
    return {p["name"]: (p["status"], p["reason"]) for p in report["probes"]
            if p["status"] != "ok" and not (p["status"] == "warning" and p["name"] in ALLOWED_WARNINGS)}


@pytest.mark.parametrize("box", ["node1", "node2"])
def test_healthy_node_all_ok(cluster, agent, box):
    report = cluster.health(box)
    configured = {p["name"]: p["type"] for p in report["probes"]}
    assert configured == STANDARD, f"{box} does not run the standard configuration: {configured}"
    # Mail probes need two good runs (rise 2) after a restart of the agent.
    try:
        report = cluster.wait_for(f"every probe ok in {box}", lambda: (
            lambda r: r if not not_ok(r) else None)(cluster.health(box)), timeout=60, interval=1)
    except AssertionError:
        raise AssertionError(f"not ok in {box}: {not_ok(cluster.health(box))}")
    assert report["status"] == "ok", report["status"]
    by_name = {p["name"]: p for p in report["probes"]}
    assert by_name["dovecot"]["reason"].startswith(
        "dovecot.service: LimitNOFILE=1048576, LimitNPROC=4194304 as required; "), by_name["dovecot"]
    assert "after STARTTLS" in by_name["smtp"]["reason"], by_name["smtp"]
    assert by_name["haproxy"]["reason"].endswith("1 peer established"), by_name["haproxy"]
    assert "rupost, rupost_data, rupost_logs answer" in by_name["postgres"]["reason"]
    assert "all 2 controllers serve" in by_name["ldap"]["reason"]
    # Every run ended within its probe's timeout: no deadline fired.
    assert all(p["timeouts"] == 0 for p in report["probes"]), \
        [(p["name"], p["timeouts"]) for p in report["probes"] if p["timeouts"]]


def test_dovecot_counts_a_held_imap_login(cluster, agent):
    wait_status(cluster, "dovecot", "ok")
    holder = subprocess.Popen([NODEBOX, "exec", NODE, "--", "python3", "-c", HOLD_IMAP],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "logged in"
        p = wait_reason(cluster, "dovecot", r"; 1 connection of 1 user \(imap 1\)$")
        assert p["status"] == "ok", p
        m = cluster.metrics(NODE)
        assert cluster.metric(m, "rupost_dovecot_connections", probe="dovecot", service="imap") == 1
        assert cluster.metric(m, "rupost_dovecot_connections", probe="dovecot", service="pop3") == 0
        assert cluster.metric(m, "rupost_dovecot_users", probe="dovecot") == 1
        assert cluster.metric(m, "rupost_dovecot_unit_limit", probe="dovecot", resource="nofile", kind="soft") == 1048576
        assert cluster.metric(m, "rupost_dovecot_limit_drift", probe="dovecot", resource="nproc") == 0
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    wait_reason(cluster, "dovecot", r"; no client connections$")


def restart_dovecot(cluster):
    cluster.exec(NODE, "systemctl", "daemon-reload")
    cluster.exec(NODE, "systemctl", "restart", "dovecot.service", timeout=60)


def test_dovecot_limit_drift_is_a_warning(cluster, agent):
    wait_status(cluster, "dovecot", "ok")
    # Sorts after override.conf, so its value wins, as a package's or an
    # operator's later drop-in would.
    cluster.exec(NODE, "sh", "-c", f"cat > {DROPIN}", input="[Service]\nLimitNOFILE=1024\n")
    try:
        restart_dovecot(cluster)
        p = wait_status(cluster, "dovecot", "warning")
        assert p["reason"] == (
            "configuration drift: dovecot.service has LimitNOFILE=1024, the product requires 1048576: "
            "add it to /etc/systemd/system/dovecot.service.d/override.conf, then daemon-reload and "
            "restart dovecot.service"), p
        assert cluster.metric(cluster.metrics(NODE), "rupost_dovecot_limit_drift", probe="dovecot", resource="nofile") == 1

        # A soft limit alone below the requirement is drift too, shown as soft:hard.
        cluster.exec(NODE, "sh", "-c", f"cat > {DROPIN}",
                     input="[Service]\nLimitNOFILE=65536:1048576\nLimitNPROC=1000\n")
        restart_dovecot(cluster)
        p = wait_reason(cluster, "dovecot", "LimitNPROC=1000")
        assert p["status"] == "warning", p
        assert p["reason"] == (
            "configuration drift: dovecot.service has LimitNOFILE=65536:1048576, the product requires "
            "1048576, and LimitNPROC=1000, the product requires 4194304: add them to "
            "/etc/systemd/system/dovecot.service.d/override.conf, then daemon-reload and restart "
            "dovecot.service"), p
    finally:
        cluster.exec(NODE, "rm", "-f", DROPIN, check=False)
        restart_dovecot(cluster)
    wait_status(cluster, "dovecot", "ok")


def test_dovecot_stopped_is_unknown(cluster, agent):
    """doveadm cannot reach the anvil of a stopped Dovecot: the probe could
    not count, which is not the same as Dovecot being down (the unit and
    IMAP probes say that)."""
    wait_status(cluster, "dovecot", "ok")
    cluster.exec(NODE, "systemctl", "stop", "dovecot.service", timeout=60)
    try:
        p = wait_status(cluster, "dovecot", "unknown")
        assert re.match(r"^doveadm who failed \(exit status \d+\): .*anvil", p["reason"]), p
        wait_status(cluster, "mail-units", "critical")
    finally:
        cluster.exec(NODE, "systemctl", "start", "dovecot.service", timeout=60)
    wait_status(cluster, "dovecot", "ok")


def test_dovecot_unit_unknown_to_systemd(cluster, agent):
    """A unit name systemd does not have: the limits cannot be checked, and
    the reason says which unit, not a bare D-Bus error."""
    config = "/etc/rupost/agent.yaml"
    original = cluster.exec(NODE, "cat", config).stdout
    cluster.exec(NODE, "sh", "-c", f"cat > {config}", input=original.rstrip("\n") + (
        "\n  - name: dovecot-misnamed\n"
        "    type: dovecot\n"
        "    interval: 2s\n"
        "    timeout: 2s\n"
        "    unit: rupost-test-no-such-dovecot.service\n"))
    try:
        cluster.exec(NODE, "systemctl", "reload", "rupost-agent.service")
        p = wait_status(cluster, "dovecot-misnamed", "unknown")
        assert p["reason"] == ("rupost-test-no-such-dovecot.service is not-found: its limits cannot be "
                               "checked"), p
    finally:
        cluster.exec(NODE, "sh", "-c", f"cat > {config}", input=original)
        cluster.exec(NODE, "systemctl", "reload", "rupost-agent.service", check=False)
