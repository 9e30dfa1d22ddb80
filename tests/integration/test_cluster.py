"""The cluster registry on real nodes (issue 6): both mail nodes heal and
share their state, leases and guards through infra's PostgreSQL.

- A node's withdrawal reaches the registry and the other node's view at
  once (NOTIFY), and every HAProxy (agent-check); it comes back by itself.
- The last node in service is never withdrawn, whatever fails on it: the
  refusal is logged at crit and exported as a metric.
- The database down for everyone is an alert, not a reason to withdraw or
  fence anybody, while every live peer confirms it on the peer port (9471).
- A node cut off from the database alone stops its mail group before its
  lease expires, while the other keeps serving, and comes back once it can
  renew again.

The module writes its own configuration into node1 and node2 (healing plus
a cluster section with short timings) and restores the previous one
afterwards, even when a test fails.
"""

import shutil
import subprocess
import time

import pytest

from cluster_helpers import (INFRA, NODES, REFUSED_ID, SELF_FENCED_ID, SHARED_OUTAGE_ID, db, drop_output,
                             group_stopped, in_service, journal_since, lease_expires, metrics, restart_groups,
                             start_database, undrop, unit_stopped_at, view, wait_all_in_service)
from healing_config import GROUP, healing_config, unit_states

NFT_TABLE = "rupost_test_cluster"


@pytest.fixture(scope="module")
def clustered(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    try:
        with cluster.agent_configs({n: healing_config(n, backoff="15s", infra=INFRA) for n in NODES},
                                   action="reload-or-restart"):
            wait_all_in_service(cluster, timeout=60)
            # Rows of nodes gone for good count as out of service in the guards.
            db(cluster, "DELETE FROM rupost_agent.nodes WHERE name NOT IN ('node1', 'node2')")
            yield cluster
    finally:
        undrop(cluster, "node1", NFT_TABLE)
        start_database(cluster, check=False)
        restart_groups(cluster)
        # Without a cluster section nobody renews these rows any more.
        db(cluster, "DELETE FROM rupost_agent.nodes WHERE name IN ('node1', 'node2')")


def test_view_and_withdrawal_reach_every_node(clustered):
    cluster = clustered
    table = cluster.exec("node2", "rupost-health", "cluster").stdout.splitlines()
    assert table[0].split() == ["NODE", "STATE", "LEASE", "AGE", "REASON"], table
    assert [l.split()[:2] for l in table[1:]] == [["node1", "in_service"], ["node2", "in_service"]], table
    assert table[1].split()[2].endswith("s") and table[1].split()[3] == "-", table
    for name, n in view(cluster, "node2").items():
        # Renewed every second.
        assert 0 <= n["lease_age_seconds"] < 3, (name, n)

    cluster.exec("node1", "systemctl", "kill", "-s", "KILL", "dovecot.service")
    cluster.wait_for("node1 withdrawn on its agent-check port",
                     lambda: cluster.agent_check("node1", via="node2").startswith("down #"), timeout=20, interval=0.1)
    seen = time.monotonic()
    # node2 learns it from the registry within a couple of seconds (NOTIFY).
    n1 = cluster.wait_for("node1 withdrawn in node2's cluster view", lambda: (
        lambda n: n if n["state"] == "withdrawn" else None)(view(cluster, "node2")["node1"]),
        timeout=2, interval=0.1)
    print(f"node1 withdrawn in node2's view {time.monotonic() - seen:.2f}s after its agent-check said so")
    assert "dovecot" in n1["reason"] or "imaps" in n1["reason"] or "mail-units" in n1["reason"], n1
    assert db(cluster, "SELECT state FROM rupost_agent.nodes WHERE name = 'node1'") == "withdrawn"
    for box in NODES:
        cluster.wait_for(f"node1 DOWN in {box}'s HAProxy", lambda: cluster.haproxy_server_status(
            box, "smtp", "node1").startswith("DOWN"), timeout=10)
    text = cluster.metrics("node2")
    assert cluster.samples(text)['rupost_cluster_nodes{state="withdrawn"}'] == 1
    if shutil.which("promtool"):
        res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert res.returncode == 0 and not res.stdout + res.stderr, res.stdout + res.stderr

    wait_all_in_service(cluster)
    for box in NODES:
        cluster.wait_for(f"node1 UP again in {box}'s HAProxy", lambda: cluster.haproxy_server_status(
            box, "smtp", "node1") == "UP", timeout=20)


def test_last_node_in_service_is_not_withdrawn(clustered):
    cluster = clustered
    since = time.time() - 1
    cluster.exec("node1", "systemctl", "kill", "-s", "KILL", "dovecot.service")
    cluster.wait_for("node1 withdrawn", lambda: cluster.agent_check("node1", via="node2").startswith("down #"),
                     timeout=20, interval=0.1)
    # While node1 waits out its backoff (15 s), node2 fails too.
    cluster.exec("node2", "systemctl", "kill", "-s", "KILL", "dovecot.service")
    refusals = cluster.wait_for("node2's refusal in its journal",
                                lambda: journal_since(cluster, "node2", since, REFUSED_ID), timeout=10)
    assert refusals[0]["PRIORITY"] == "2", refusals[0]  # LOG_CRIT
    assert "stays in service" in refusals[0]["MESSAGE"], refusals[0]
    assert "last-in-service" in refusals[0]["MESSAGE"], refusals[0]
    m = metrics(cluster, "node2")
    assert m['rupost_cluster_withdrawal_denied{reason="last-in-service"}'] == 1, m
    # node2 still takes clients, and says so in the registry.
    assert cluster.agent_check("node2", via="node1") == "up ready"
    assert view(cluster, "node1")["node2"]["state"] == "in_service"
    assert cluster.agent_check("node1", via="node2").startswith("down #")
    # Once node1 is back, node2 may withdraw and heal in its turn.
    wait_all_in_service(cluster, timeout=150)
    assert metrics(cluster, "node2")['rupost_cluster_withdrawal_denied{reason="last-in-service"}'] == 0
    assert db(cluster, "SELECT count(*) FROM rupost_agent.nodes WHERE name IN ('node1', 'node2') "
                       "AND state = 'in_service'") == "2"


def test_database_down_for_everyone_is_an_alert_only(clustered):
    cluster = clustered
    since = time.time() - 1
    cluster.exec("infra", "systemctl", "stop", "postgresql.service", timeout=60)
    try:
        for n in NODES:
            cluster.wait_for(f"rupost_cluster_db_up 0 on {n}",
                             lambda: metrics(cluster, n)["rupost_cluster_db_up"] == 0, timeout=10)
        # Past the fence deadline and the lease: nobody fenced or withdrew.
        end = time.monotonic() + 12
        while time.monotonic() < end:
            for n in NODES:
                assert cluster.agent_check(n, via="node2") == "up ready", n
                m = metrics(cluster, n)
                assert m["rupost_cluster_self_fenced"] == 0, (n, m)
                assert m["rupost_cluster_db_up"] == 0, (n, m)
            time.sleep(1)
        for n in NODES:
            assert all(s == "active" for s in unit_states(cluster, n).values()), n
            alerts = journal_since(cluster, n, since, SHARED_OUTAGE_ID)
            assert alerts and alerts[0]["PRIORITY"] == "2", (n, alerts)
    finally:
        start_database(cluster)
    renewed = {n: metrics(cluster, n)["rupost_cluster_lease_renew_timestamp_seconds"] for n in NODES}
    for n in NODES:
        cluster.wait_for(f"{n} renewing its lease again", lambda: (
            lambda m: m["rupost_cluster_db_up"] == 1
            and m["rupost_cluster_lease_renew_timestamp_seconds"] > renewed[n])(metrics(cluster, n)),
            timeout=20)
    wait_all_in_service(cluster, timeout=30)


def test_node_cut_off_alone_fences_itself_in_time(clustered):
    cluster = clustered
    try:
        drop_output(cluster, "node1", NFT_TABLE, "ip", "daddr", INFRA, "tcp", "dport", "5432")
        cut = time.time()
        cluster.wait_for("node1's whole mail group stopped", lambda: group_stopped(cluster, "node1"),
                         timeout=15, interval=0.1)
        # The lease node1 last renewed, on the DB server's clock: the group
        # was down before it ran out, so node2 may trust it once expired.
        expires = lease_expires(cluster, "node1")
        stopped = max(unit_stopped_at(cluster, "node1", u) for u in GROUP)
        fences = journal_since(cluster, "node1", cut - 1, SELF_FENCED_ID)
        assert fences and fences[0]["PRIORITY"] == "2", fences
        assert "stopping its mail group before its lease expires" in fences[0]["MESSAGE"], fences[0]
        fenced = int(fences[0]["__REALTIME_TIMESTAMP"]) / 1e6
        renewed = expires - 10
        print(f"\nnode1 cut off at +{cut - renewed:.2f}s after its last renewal; fenced at +{fenced - renewed:.2f}s, "
              f"group stopped at +{stopped - renewed:.2f}s, lease expires at +10s")
        # The fence comes at self_fence_after (4 s), give or take a renewal.
        assert fenced - renewed < 4 + 1.5, (fenced, renewed)
        assert stopped < expires, (stopped, expires)
        m = metrics(cluster, "node1")
        assert m["rupost_cluster_self_fenced"] == 1 and m["rupost_cluster_db_up"] == 0, m
        assert cluster.agent_check("node1", via="node2").startswith("down #")
        # node2 keeps serving and still renews.
        assert in_service(cluster, "node2")
        assert metrics(cluster, "node2")["rupost_cluster_db_up"] == 1
        for box in NODES:
            cluster.wait_for(f"node1 DOWN in {box}'s HAProxy", lambda: cluster.haproxy_server_status(
                box, "smtp", "node1").startswith("DOWN"), timeout=10)
        # Its lease runs out in node2's view and is never renewed meanwhile.
        cluster.wait_for("node1's lease expired in node2's view",
                         lambda: view(cluster, "node2")["node1"]["lease_age_seconds"] > 10, timeout=15)
        assert lease_expires(cluster, "node1") == expires
    finally:
        undrop(cluster, "node1", NFT_TABLE)
    wait_all_in_service(cluster, timeout=90)
    assert metrics(cluster, "node1")["rupost_cluster_self_fenced"] == 0
