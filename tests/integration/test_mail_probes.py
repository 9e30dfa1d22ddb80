"""The smtp, lmtp, imap, managesieve and postfix probes in node2 against the
real Postfix and Dovecot of that box.

The probes are appended to node2's agent configuration for this module and
removed afterwards. The box's certificate is self-signed (CN
node2.rupost.test): the healthy probes allow that, and one probe that does
not shows the warning an operator gets for a built-in certificate.

Faults are real: a port dropped or refused with nft inside the box (a table
of our own, removed afterwards), and Postfix's master stopped with systemctl.
"""

import re

import pytest

NODE = "node2"
NFT_TABLE = "rupost_test_mail"

PROBES = """
  - name: mail-smtp
    type: smtp
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:25"
    server_name: node2.rupost.test
    allow_self_signed: true
  - name: mail-smtp-builtin-cert
    type: smtp
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:25"
  - name: mail-smtp-health
    type: smtp
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:20025"
  - name: mail-imaps
    type: imap
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:993"
    server_name: node2.rupost.test
    allow_self_signed: true
  - name: mail-sieve
    type: managesieve
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:4190"
    allow_self_signed: true
  - name: mail-lmtp
    type: lmtp
    interval: 2s
    timeout: 2s
    rise: 1
    fall: 1
    address: "127.0.0.1:24"
  - name: mail-postfix
    type: postfix
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
    queue_directory: /srv/nfs/MailQueues/node2
"""


def block_port(cluster, port, how):
    """Drops (no answer) or rejects (connection refused) local TCP to PORT."""
    action = "drop" if how == "drop" else "reject with tcp reset"
    cluster.exec(NODE, "nft", "-f", "-", input=(
        f"table inet {NFT_TABLE} {{\n"
        f"  chain input {{ type filter hook input priority -10; tcp dport {port} {action}; }}\n"
        f"}}\n"))


def unblock(cluster):
    cluster.exec(NODE, "nft", "delete", "table", "inet", NFT_TABLE, check=False)


@pytest.fixture(scope="module")
def probes(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    try:
        with cluster.agent_config(NODE, append=PROBES):
            yield
    finally:
        unblock(cluster)
        cluster.exec(NODE, "systemctl", "start", "postfix.service", check=False)


@pytest.fixture
def clean_nft(cluster):
    yield
    unblock(cluster)


def test_smtp_starttls_ok(cluster, probes):
    p = cluster.wait_status(NODE, "mail-smtp", "ok")
    assert re.match(r"127\.0\.0\.1:25: SMTP dialogue complete over TLSv1\.[23] after STARTTLS "
                    r"\(.*; certificate for node2\.rupost\.test valid until 20\d\d-\d\d-\d\d\)$", p["reason"]), p
    m = cluster.metrics(NODE)
    assert re.search(r'^rupost_tls_certificate_expiry_timestamp_seconds\{[^}]*probe="mail-smtp"[^}]*\} \d',
                     m, re.M), m
    assert re.search(r'^rupost_tls_self_signed\{[^}]*probe="mail-smtp"[^}]*\} 1$', m, re.M), m


def test_builtin_certificate_is_a_warning(cluster, probes):
    p = cluster.wait_status(NODE, "mail-smtp-builtin-cert", "warning")
    assert p["reason"] == ("127.0.0.1:25: self-signed certificate: replace the built-in certificate "
                           "for production"), p


def test_cluster_health_port_ok(cluster, probes):
    p = cluster.wait_status(NODE, "mail-smtp-health", "ok")
    assert p["reason"] == "127.0.0.1:20025: SMTP dialogue complete without TLS", p


def test_imaps_and_managesieve_ok(cluster, probes):
    p = cluster.wait_status(NODE, "mail-imaps", "ok")
    assert p["reason"].startswith("127.0.0.1:993: IMAP dialogue complete over TLSv1."), p
    p = cluster.wait_status(NODE, "mail-sieve", "ok")
    assert p["reason"].startswith("127.0.0.1:4190: ManageSieve dialogue complete over TLSv1."), p
    assert "after STARTTLS" in p["reason"], p


def test_lmtp_ok(cluster, probes):
    p = cluster.wait_status(NODE, "mail-lmtp", "ok")
    assert p["reason"] == "127.0.0.1:24: LMTP dialogue complete without TLS", p


def test_smtp_port_dropped_is_critical(cluster, probes, clean_nft):
    cluster.wait_status(NODE, "mail-smtp", "ok")
    block_port(cluster, 25, "drop")
    p = cluster.wait_status(NODE, "mail-smtp", "critical", timeout=20)
    assert p["reason"] == "no answer within 2s while connecting", p
    unblock(cluster)
    cluster.wait_status(NODE, "mail-smtp", "ok", timeout=20)


def test_imaps_refused_is_critical(cluster, probes, clean_nft):
    cluster.wait_status(NODE, "mail-imaps", "ok")
    block_port(cluster, 993, "reject")
    p = cluster.wait_status(NODE, "mail-imaps", "critical", timeout=20)
    assert p["reason"] == "127.0.0.1:993: connect failed: Connection refused", p


def test_managesieve_dropped_is_critical(cluster, probes, clean_nft):
    cluster.wait_status(NODE, "mail-sieve", "ok")
    block_port(cluster, 4190, "drop")
    p = cluster.wait_status(NODE, "mail-sieve", "critical", timeout=20)
    assert p["reason"] == "no answer within 2s while connecting", p


def test_lmtp_refused_is_critical(cluster, probes, clean_nft):
    cluster.wait_status(NODE, "mail-lmtp", "ok")
    block_port(cluster, 24, "reject")
    p = cluster.wait_status(NODE, "mail-lmtp", "critical", timeout=20)
    assert p["reason"] == "127.0.0.1:24: connect failed: Connection refused", p


def test_postfix_running(cluster, probes):
    p = cluster.wait_status(NODE, "mail-postfix", "ok")
    assert re.match(r"master running \(pid \d+\); queues: maildrop \d+, incoming \d+, active \d+, "
                    r"deferred \d+, hold \d+$", p["reason"]), p
    m = cluster.metrics(NODE)
    assert re.search(r'^rupost_postfix_master_up\{[^}]*probe="mail-postfix"[^}]*\} 1$', m, re.M), m
    for q in ("maildrop", "incoming", "active", "deferred", "hold"):
        assert re.search(r'^rupost_postfix_queue_messages\{[^}]*queue="%s"[^}]*\} \d+$' % q, m, re.M), (q, m)
        assert re.search(r'^rupost_postfix_queue_oldest_message_age_seconds\{[^}]*queue="%s"[^}]*\} \d+$' % q,
                         m, re.M), (q, m)


def test_postfix_master_stopped_is_critical(cluster, probes):
    cluster.wait_status(NODE, "mail-postfix", "ok")
    cluster.exec(NODE, "systemctl", "stop", "postfix.service")
    try:
        p = cluster.wait_status(NODE, "mail-postfix", "critical", timeout=20)
        assert p["reason"].startswith("postfix master not running: /srv/nfs/MailQueues/node2/pid/master.pid "), p
        m = cluster.metrics(NODE)
        assert re.search(r'^rupost_postfix_master_up\{[^}]*probe="mail-postfix"[^}]*\} 0$', m, re.M), m
    finally:
        cluster.exec(NODE, "systemctl", "start", "postfix.service")
    cluster.wait_status(NODE, "mail-postfix", "ok", timeout=30)
