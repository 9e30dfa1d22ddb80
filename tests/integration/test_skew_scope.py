"""Clock skew and the scope of a failure on real nodes (issue 5).

- `rupost-health skew` on node1 lists the clock offsets its probes measured:
  infra's NTP server (time probe), PostgreSQL and memcached, all within the
  cluster's 1 s (the boxes share one clock).
- With a cluster section on both nodes, a dependency down for everyone
  (memcached stopped in infra) makes node1's memcached probe critical with
  scope "shared 1/1" once node2 reports it too, in the table, the JSON and
  the rupost_probe_failure_peers metric; the same probe failing on node1
  alone (an nft drop of infra:11211 inside node1) is "local".

The module adds a cluster section and a faster memcached probe to the
standard configuration of node1 and node2 and restores it afterwards, even
when a test fails.
"""

import json
import re

import pytest

from healing_config import cluster_section, node_address

NODES = ["node1", "node2"]
INFRA = "10.231.0.10"
NFT_TABLE = "rupost_test_scope"


def faster_memcached(config):
    """The standard memcached probe, every second and without hysteresis."""
    block = re.search(r"(  - name: memcached\n    type: memcached\n)((?:    .*\n)+)", config)
    assert block, "no memcached probe in the standard configuration"
    keys = [l for l in block.group(2).splitlines(keepends=True)
            if not re.match(r"    (interval|timeout|rise|fall):", l)]
    new = block.group(1) + "    interval: 1s\n    timeout: 900ms\n    rise: 1\n    fall: 1\n" + "".join(keys)
    return config[:block.start()] + new + config[block.end():]


def health(cluster, box, *args, check=False):
    res = cluster.exec(box, "rupost-health", *args, check=check)
    return res


def db(cluster, sql):
    return cluster.exec("infra", "runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-d", "rupost",
                        "-c", sql).stdout.strip()


def failure_peers(cluster, box, name):
    text = cluster.metrics(box)
    m = re.search(r'^rupost_probe_failure_peers\{probe="%s",type="[^"]*"\} (\S+)$' % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def memcached_ok_everywhere(cluster):
    return all(cluster.probe(n, "memcached")["status"] == "ok" for n in NODES)


@pytest.fixture(scope="module")
def scoped(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    configs = {n: faster_memcached(cluster.exec(n, "cat", "/etc/rupost/agent.yaml").stdout).rstrip("\n")
               + "\n" + cluster_section(INFRA, node_address(n)) for n in NODES}
    try:
        with cluster.agent_configs(configs, action="reload-or-restart"):
            # Both registered with live leases, as each other sees them.
            for n in NODES:
                cluster.wait_for(f"{n} sees both nodes in the registry", lambda n=n: {
                    x["name"] for x in json.loads(health(cluster, n, "cluster", "--json").stdout)["nodes"]
                    if x["lease_age_seconds"] < 3} >= set(NODES), timeout=30, interval=0.5)
            cluster.wait_for("memcached ok on both nodes", lambda: memcached_ok_everywhere(cluster), timeout=30)
            yield cluster
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
        cluster.exec("infra", "systemctl", "start", "memcached.service", check=False)
        # Without a cluster section nobody renews these rows any more.
        db(cluster, "DELETE FROM rupost_agent.nodes WHERE name IN ('node1', 'node2')")


def test_skew_lists_the_sources(scoped):
    cluster = scoped

    def sources():
        res = health(cluster, "node1", "skew", "--json")
        got = {s["source"]: s for s in json.loads(res.stdout)["sources"]}
        return (res, got) if {INFRA, "postgres", f"{INFRA}:11211"} <= got.keys() else None

    res, got = cluster.wait_for("the NTP server, postgres and memcached in node1's skew", sources, timeout=30)
    assert got[INFRA]["probe"] == "time" and got[INFRA]["type"] == "time", got[INFRA]
    assert got["postgres"]["type"] == "postgres", got["postgres"]
    assert got[f"{INFRA}:11211"]["type"] == "memcached", got
    assert got[f"{INFRA}:11211"]["resolution_seconds"] == 1, got
    # One clock for all boxes: every source within the cluster's 1 s.
    for name, s in got.items():
        assert s["status"] == "ok", (name, s)
        assert abs(s["offset_seconds"]) < 0.5 or s["resolution_seconds"] == 1, (name, s)
    assert res.returncode == 0, res.stdout

    table = health(cluster, "node1", "skew")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "PROBE", "OFFSET", "VERDICT"], lines
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows[INFRA][1] == "time" and rows["postgres"][1] == "postgres", lines
    print("\n" + table.stdout)

    # --verbose shows the same offsets under their probes.
    verbose = health(cluster, "node1", "--verbose").stdout
    assert f'rupost_time_offset_seconds{{source="{INFRA}"}}' in verbose, verbose


def test_shared_failure_is_shared(scoped):
    cluster = scoped
    cluster.exec("infra", "systemctl", "stop", "memcached.service")
    try:
        p = cluster.wait_for("node1's memcached critical, shared with node2", lambda: (
            lambda p: p if p["status"] == "critical" and p["scope"] == "shared 1/1" else None)(
                cluster.probe("node1", "memcached")), timeout=30, interval=0.5)
        assert p["peers_failing"] == 1 and p["live_peers"] == 1, p
        assert cluster.probe("node2", "memcached")["scope"] == "shared 1/1"
        table = health(cluster, "node1").stdout
        assert re.search(r"^memcached\s+memcached\s+critical \(shared 1/1\)\s", table, re.M), table
        assert failure_peers(cluster, "node1", "memcached") == 1
        # Every probe has the series; one nobody fails counts 0.
        assert failure_peers(cluster, "node1", "postgres") == 0
        assert db(cluster, "SELECT string_agg(node, ' ' ORDER BY node) FROM rupost_agent.probe_failures "
                           "WHERE probe = 'memcached' AND cleared_at IS NULL") == "node1 node2"
    finally:
        cluster.exec("infra", "systemctl", "start", "memcached.service")
    cluster.wait_for("memcached ok again on both nodes", lambda: memcached_ok_everywhere(cluster), timeout=30)
    assert cluster.probe("node1", "memcached")["scope"] is None


def test_failure_of_one_node_is_local(scoped):
    cluster = scoped
    cluster.exec("node1", "nft", "add", "table", "inet", NFT_TABLE)
    try:
        cluster.exec("node1", "nft", "add", "chain", "inet", NFT_TABLE, "out",
                     "{ type filter hook output priority 0; }")
        cluster.exec("node1", "nft", "add", "rule", "inet", NFT_TABLE, "out",
                     "ip", "daddr", INFRA, "tcp", "dport", "11211", "drop")
        p = cluster.wait_for("node1's memcached critical", lambda: (
            lambda p: p if p["status"] == "critical" else None)(cluster.probe("node1", "memcached")),
            timeout=30, interval=0.5)
        # node2 keeps reaching memcached: node1's fault alone.
        assert cluster.probe("node2", "memcached")["status"] == "ok"
        assert p["scope"] == "local", p
        assert p["peers_failing"] == 0 and p["live_peers"] == 1, p
        table = health(cluster, "node1").stdout
        assert re.search(r"^memcached\s+memcached\s+critical \(local\)\s", table, re.M), table
        assert failure_peers(cluster, "node1", "memcached") == 0
        # node2 sees node1 failing: from its side, one peer fails a probe
        # that is fine here.
        cluster.wait_for("node1's failure in node2's metrics",
                         lambda: failure_peers(cluster, "node2", "memcached") == 1, timeout=10)
        assert cluster.probe("node2", "memcached")["scope"] is None
    finally:
        cluster.exec("node1", "nft", "delete", "table", "inet", NFT_TABLE, check=False)
    cluster.wait_for("memcached ok again on node1", lambda: memcached_ok_everywhere(cluster), timeout=30)
