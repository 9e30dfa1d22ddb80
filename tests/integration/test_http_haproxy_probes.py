"""The http, nginx and haproxy probes in node1 against the real services.

node1 runs nginx (80 answers 301 to https, 443 proxies /SOGo to SOGo on
127.0.0.1:20000, stub_status at /basic_status), SOGo, and HAProxy with a
peers section shared with node2 on port 10000. The probes are appended to
node1's agent configuration for this module and removed afterwards.

Faults are real: SOGo stopped (both SOGo probes critical, the one through
nginx naming the direct one as its cause), and the peer port dropped with nft
inside node1 (the haproxy probe warns, naming node2).
"""

import re

import pytest

NFT_TABLE = "rupost_test_peers"

PROBES = """
  - name: sogo-direct
    type: http
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
    url: "http://127.0.0.1:20000/SOGo/"
    expect_status: [200, 302]
  - name: sogo-https
    type: http
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
    url: "https://127.0.0.1/SOGo/"
    host_header: node1.rupost.test
    expect_status: [200, 302]
    depends_on: [sogo-direct]
  - name: http-redirect
    type: http
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
    url: "http://127.0.0.1:80/"
    expect_status: [301]
    expect_location: "https://"
  - name: nginx-status
    type: nginx
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
  - name: ha-agent
    type: haproxy
    interval: 3s
    timeout: 3s
    rise: 1
    fall: 1
    expected_peers: 1
    control_system_probe: http-redirect
"""

NAMES = ("sogo-direct", "sogo-https", "http-redirect", "nginx-status", "ha-agent")


@pytest.fixture(scope="module")
def probes(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    try:
        with cluster.agent_config("node1", append=PROBES):
            # A reload the agent refused keeps the old probes: fail here, clearly.
            cluster.wait_for("the probes of this module in rupost-health", lambda: all(
                any(p["name"] == n for p in cluster.health("node1")["probes"]) for n in NAMES), timeout=20)
            yield
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
        cluster.exec("node1", "systemctl", "start", "sogo.service", check=False, timeout=60)


def test_healthy_node(cluster, probes):
    p = cluster.wait_status("node1", "sogo-direct", "ok")
    assert re.search(r"^http://127\.0\.0\.1:20000/SOGo/ answered (200|302) in ", p["reason"]), p
    p = cluster.wait_status("node1", "sogo-https", "ok")
    assert re.search(r"^https://127\.0\.0\.1/SOGo/ answered (200|302) in ", p["reason"]), p
    p = cluster.wait_status("node1", "http-redirect", "ok")
    assert p["reason"].startswith("http://127.0.0.1:80/ answered 301 in "), p
    p = cluster.wait_status("node1", "nginx-status", "ok")
    assert re.search(r"^nginx: \d+ active connections, \d+ requests served", p["reason"]), p
    cluster.wait_status("node1", "ha-agent", "ok")
    # Until its control system probe has reported, the node counts as not
    # manageable; the next run after that says all is well.
    p = cluster.wait_for("ha-agent ok and manageable", lambda: (
        lambda p: p if p["status"] == "ok" and "not manageable" not in p["reason"] else None)(
            cluster.probe("node1", "ha-agent")), timeout=20)
    assert re.search(r"^haproxy 2\.\S+: 3 backends, \d+ servers up, 1 peer established$", p["reason"]), p

    text = cluster.metrics("node1")
    assert cluster.metric(text, "rupost_http_status_code", probe="http-redirect") == 301
    assert cluster.metric(text, "rupost_http_status_code", probe="sogo-https") in (200, 302)
    # The box's self-signed certificate, read from the TLS session nginx offered.
    assert cluster.metric(text, "rupost_tls_certificate_expiry_timestamp_seconds", probe="sogo-https") > 1.7e9
    assert cluster.metric(text, "rupost_nginx_connections_accepted_total", probe="nginx-status") >= 1
    assert cluster.metric(text, "rupost_nginx_http_requests_total", probe="nginx-status") >= 1
    assert cluster.metric(text, "rupost_haproxy_up", probe="ha-agent") == 1
    assert cluster.metric(text, "rupost_haproxy_peer_connected", probe="ha-agent", peer="node2") == 1
    assert cluster.metric(text, "rupost_haproxy_server_status", probe="ha-agent", proxy="smtp", server="node1",
                  state="UP") == 1
    assert cluster.metric(text, "rupost_haproxy_stick_table_size", probe="ha-agent", table="smtp") > 0
    assert cluster.metric(text, "rupost_node_manageable", probe="ha-agent") == 1
    assert "# TYPE rupost_nginx_connections_accepted_total counter" in text


def test_sogo_stopped_is_critical(cluster, probes):
    cluster.wait_status("node1", "sogo-https", "ok")
    cluster.exec("node1", "systemctl", "stop", "sogo.service", timeout=60)
    try:
        cluster.wait_status("node1", "sogo-direct", "critical", timeout=20)
        # While sogod stops, connections may still be reset; then nothing listens.
        cluster.wait_for("sogo-direct refused", lambda: cluster.probe("node1", "sogo-direct")["reason"] ==
                         "http://127.0.0.1:20000/SOGo/: connect failed: Connection refused", timeout=20)
        # nginx answers for SOGo with 502; the verdict names the cause.
        cluster.wait_status("node1", "sogo-https", "critical", timeout=20)
        p = cluster.wait_for("sogo-https naming its cause", lambda: (
            lambda p: p if "(sogo-direct is critical: http://127.0.0.1:20000/SOGo/: connect failed: Connection "
                           "refused)" in p["reason"] else None)(cluster.probe("node1", "sogo-https")), timeout=20)
        assert p["reason"].startswith("https://127.0.0.1/SOGo/ answered 502, expected 200 or 302 (sogo-direct"), p
        assert cluster.metric(cluster.metrics("node1"), "rupost_http_status_code", probe="sogo-https") == 502
    finally:
        cluster.exec("node1", "systemctl", "start", "sogo.service", timeout=60)
    cluster.wait_status("node1", "sogo-direct", "ok", timeout=60)
    cluster.wait_status("node1", "sogo-https", "ok", timeout=30)


def test_peer_port_dropped_warns(cluster, probes):
    cluster.wait_status("node1", "ha-agent", "ok")
    cluster.exec("node1", "nft", "add", "table", "inet", NFT_TABLE)
    for chain, hook in (("in", "input"), ("out", "output")):
        cluster.exec("node1", "nft", "add", "chain", "inet", NFT_TABLE, chain,
                     f"{{ type filter hook {hook} priority 0 ; }}")
        for port in ("dport", "sport"):
            cluster.exec("node1", "nft", "add", "rule", "inet", NFT_TABLE, chain, "tcp", port, "10000", "drop")
    try:
        # HAProxy notices the silent peer after its heartbeat and reconnect timeouts.
        p = cluster.wait_status("node1", "ha-agent", "warning", timeout=60)
        assert re.search(r"peer node2 \(10\.231\.0\.12:10000\) is [A-Z]+, not ESTA: stick tables are not "
                         r"synchronised with it", p["reason"]), p
        assert cluster.metric(cluster.metrics("node1"), "rupost_haproxy_peer_connected", probe="ha-agent", peer="node2") == 0
        # HAProxy itself still runs: the node stays manageable.
        assert cluster.metric(cluster.metrics("node1"), "rupost_node_manageable", probe="ha-agent") == 1
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
    cluster.wait_status("node1", "ha-agent", "ok", timeout=60)
