"""The cluster safety core on real nodes (issue 10, DESIGN.md invariant 3 and
the fence of invariant 4).

- Both nodes' dovecot killed at the same instant, five times: the database
  grants one withdrawal and refuses the other (last-in-service, or
  shared-failure while both report the same probe failing), so one node
  always stays in service (registry, agent-check and every HAProxy), and the
  other withdraws.
- A partition {node1} | {node2, infra}: node1 cannot renew and cannot reach
  its only live peer, so it fences itself (its mail group stopped) before
  its lease expires on the database's clock; node2 keeps serving. Healed,
  node1 renews, lifts its fence and comes back in service.
- The database black-holed for everyone with the peer port open: every live
  peer confirms the outage, nobody fences (an alert). With the peer port
  dropped too, nobody can tell a shared outage from being cut off, and every
  node fences (the documented safe choice). Restored, everyone renews and
  comes back in service.

The module runs node1 and node2 with healing and a cluster section (short
timings, a short backoff) and restores the previous configuration, the
network and the mail groups afterwards, even when a test fails.
"""

import subprocess
import time

import pytest

from cluster_helpers import (INFRA, NODES, REFUSED_ID, SELF_FENCED_ID, SHARED_OUTAGE_ID, STATE_CHANGED_ID, db,
                             drop_output, group_stopped, journal_since, lease_expires, metrics, registry_states,
                             restart_groups, start_database, undrop, unit_stopped_at, wait_all_in_service)
from conftest import NODEBOX
from healing_config import GROUP, healing_config, node_address, unit_states

NFT_TABLE = "rupost_test_safety"
# From healing_config's cluster section.
SELF_FENCE_AFTER = 4
LEASE_TTL = 10

# Run in a box with a unix time as argv[1]: sleeps until then and SIGKILLs
# dovecot, so that both nodes lose it within a millisecond or two (the boxes
# share the kernel's clock), whatever `nodebox exec` costs to start.
KILL_AT = r"""
import subprocess, sys, time
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
at = time.time()
subprocess.run(["systemctl", "kill", "-s", "KILL", "dovecot.service"], check=True)
print(f"{at:.6f}")
"""


@pytest.fixture(scope="module")
def safe(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    # A short backoff: each round of the concurrent-kill test waits for two
    # recoveries. Attempts never run out within the module.
    configs = {n: healing_config(n, backoff="3s", backoff_max="6s", max_attempts=0, infra=INFRA)
               for n in NODES}
    try:
        with cluster.agent_configs(configs, action="reload-or-restart"):
            wait_all_in_service(cluster, timeout=60)
            # Rows of nodes gone for good count as out of service in the guards.
            db(cluster, "DELETE FROM rupost_agent.nodes WHERE name NOT IN ('node1', 'node2')")
            yield cluster
    finally:
        cluster.nodebox("heal", check=False)
        for n in NODES:
            undrop(cluster, n, NFT_TABLE)
        start_database(cluster, check=False)
        restart_groups(cluster)
        # Without a cluster section nobody renews these rows any more.
        db(cluster, "DELETE FROM rupost_agent.nodes WHERE name IN ('node1', 'node2')")


def serving(cluster, node, haproxies=NODES):
    """NODE in service as the registry, its agent-check port and the HAProxy
    of every box in HAPROXIES see it (smtp: its postfix runs whatever
    happened to dovecot)."""
    return (registry_states(cluster).get(node) == "in_service"
            and cluster.agent_check(node, via=node) == "up ready"
            and all(cluster.haproxy_server_status(box, "smtp", node) == "UP" for box in haproxies))


def withdrawn(cluster, node):
    return (registry_states(cluster).get(node) in ("withdrawn", "recovering")
            and cluster.agent_check(node, via=node).startswith("down #"))


def kill_dovecot_on_both(cluster):
    """SIGKILLs dovecot on both nodes at the same instant; returns when."""
    at = time.time() + 2
    procs = [subprocess.Popen([NODEBOX, "exec", n, "--", "python3", "-c", KILL_AT, f"{at:.6f}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in NODES]
    killed = []
    for n, p in zip(NODES, procs):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, (n, out, err)
        killed.append(float(out))
    print(f"\ndovecot kills started on {NODES[0]} and {NODES[1]} {abs(killed[0] - killed[1]) * 1000:.1f} ms apart")
    return min(killed)


def test_concurrent_failures_leave_one_node_in_service(safe):
    cluster = safe
    for round in range(1, 6):
        wait_all_in_service(cluster, timeout=90)
        since = time.time() - 1
        killed = kill_dovecot_on_both(cluster)
        # Until one node withdrew, and on until the other one is seen
        # serving with dovecot dead: at least one node in service at every
        # look (the registry is read first, so a look never sees a state
        # older than the one it checks the ports against).
        out = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = registry_states(cluster)
            assert any(states.get(n) == "in_service" for n in NODES), (round, states)
            gone = [n for n in NODES if withdrawn(cluster, n)]
            if gone:
                out = gone[0]
                break
            time.sleep(0.2)
        assert out, (f"round {round}: neither node withdrew within 30 s of losing dovecot: "
                     f"{registry_states(cluster)}; refusals: "
                     f"{[j['MESSAGE'] for n in NODES for j in journal_since(cluster, n, since, REFUSED_ID)]}")
        stayed = next(n for n in NODES if n != out)
        cluster.wait_for(f"{stayed} still serving, refused its withdrawal", lambda: serving(cluster, stayed),
                         timeout=10, interval=0.2)
        # Its own withdrawal was refused: because the other node had gone
        # (last-in-service), or, asked first, because the other node in
        # service failed the same probe at the same moment (shared-failure:
        # the database cannot tell two local failures from a shared one).
        # The node that withdrew may have been refused that way too before
        # it asked again for another probe that failed.
        refusals = cluster.wait_for(f"{stayed}'s refusal in its journal",
                                    lambda: journal_since(cluster, stayed, since, REFUSED_ID), timeout=10)
        for n in NODES:
            for j in journal_since(cluster, n, since, REFUSED_ID):
                assert "(last-in-service)" in j["MESSAGE"] or "(shared-failure)" in j["MESSAGE"], j["MESSAGE"]
                print(f"round {round}: {n} refused: {j['MESSAGE']}")
        changes = journal_since(cluster, out, since, STATE_CHANGED_ID)
        print(f"round {round}: {out} withdrew: {changes[0]['MESSAGE'] if changes else '?'}; {stayed} stayed "
              f"({len(refusals)} refusal(s))")
        # Every HAProxy takes the withdrawn node out; the one that stayed
        # serves on, until its peer is back and it may heal in its turn.
        for box in NODES:
            cluster.wait_for(f"{out} DOWN in {box}'s HAProxy", lambda: cluster.haproxy_server_status(
                box, "smtp", out).startswith("DOWN"), timeout=10)
        # Both heal, one after the other; never both out at once.
        deadline = time.monotonic() + 120
        while True:
            states = registry_states(cluster)
            assert any(states.get(n) == "in_service" for n in NODES), (round, states)
            if all(states.get(n) == "in_service" for n in NODES) and all(
                    all(s == "active" for s in unit_states(cluster, n).values()) for n in NODES):
                break
            assert time.monotonic() < deadline, f"round {round}: not both back in service: {states}"
            time.sleep(0.3)
        print(f"round {round}: both back in service {time.time() - killed:.1f} s after the kill")
    wait_all_in_service(cluster, timeout=90)


def test_partitioned_node_fences_itself_before_its_lease_expires(safe):
    cluster = safe
    wait_all_in_service(cluster, timeout=90)
    since = time.time() - 1
    try:
        cluster.nodebox("partition", "node1", "node2")
        cluster.nodebox("partition", "node1", "infra")
        cut = time.time()
        cluster.wait_for("node1's whole mail group stopped", lambda: group_stopped(cluster, "node1"),
                         timeout=LEASE_TTL + 5, interval=0.2)
        # node1's last renewal as the database recorded it: the group went
        # down before that lease ran out on the server's clock.
        expires = lease_expires(cluster, "node1")
        stopped = max(unit_stopped_at(cluster, "node1", u) for u in GROUP)
        fences = journal_since(cluster, "node1", since, SELF_FENCED_ID)
        assert fences and fences[0]["PRIORITY"] == "2", fences
        print(f"\nnode1 partitioned at {cut - (expires - LEASE_TTL):+.2f} s after its last renewal, group "
              f"stopped at {stopped - (expires - LEASE_TTL):+.2f} s, lease expiring at +{LEASE_TTL} s: "
              f"{fences[0]['MESSAGE']}")
        assert stopped < expires, (stopped, expires)
        m = metrics(cluster, "node1")
        assert m["rupost_cluster_self_fenced"] == 1 and m["rupost_cluster_db_up"] == 0, m
        assert cluster.agent_check("node1", via="node1").startswith("down #")
        # node2 serves on and renews (node1's HAProxy cannot reach it: only
        # node2's own counts), and its HAProxy takes node1 out.
        assert serving(cluster, "node2", haproxies=["node2"])
        assert metrics(cluster, "node2")["rupost_cluster_db_up"] == 1
        assert not journal_since(cluster, "node2", since, SELF_FENCED_ID)
        cluster.wait_for("node1 DOWN in node2's HAProxy", lambda: cluster.haproxy_server_status(
            "node2", "smtp", "node1").startswith("DOWN"), timeout=15)
        # Still fenced while cut off: nothing starts the group again.
        time.sleep(3)
        assert group_stopped(cluster, "node1"), unit_states(cluster, "node1")
    finally:
        cluster.nodebox("heal")
    healed = time.time()
    lifted = cluster.wait_for("node1's fence lifted in its journal", lambda: [
        j for j in journal_since(cluster, "node1", healed - 1, SELF_FENCED_ID) if "lifted" in j["MESSAGE"]],
        timeout=60)
    print(f"node1: {lifted[0]['MESSAGE']}")
    wait_all_in_service(cluster, timeout=90)
    assert metrics(cluster, "node1")["rupost_cluster_self_fenced"] == 0


def test_database_black_holed_for_everyone(safe):
    cluster = safe
    wait_all_in_service(cluster, timeout=90)
    since = time.time() - 1
    try:
        for n in NODES:
            drop_output(cluster, n, NFT_TABLE, "ip", "daddr", INFRA, "tcp", "dport", "5432")
        lost = time.time()
        for n in NODES:
            cluster.wait_for(f"rupost_cluster_db_up 0 on {n}", lambda: metrics(cluster, n)["rupost_cluster_db_up"] == 0,
                             timeout=15)
        # Every live peer answers on 9471 that it cannot renew either: a
        # shared outage, logged, and nobody fences, well past the fence
        # deadline and the lease.
        for n in NODES:
            alerts = cluster.wait_for(f"the shared outage in {n}'s journal",
                                      lambda: journal_since(cluster, n, since, SHARED_OUTAGE_ID),
                                      timeout=SELF_FENCE_AFTER + 10)
            assert alerts[0]["PRIORITY"] == "2", alerts[0]
            print(f"\n{n}: {alerts[0]['MESSAGE']}")
        while time.time() < lost + LEASE_TTL + 3:
            for n in NODES:
                m = metrics(cluster, n)
                assert m["rupost_cluster_self_fenced"] == 0, (n, m)
                assert cluster.agent_check(n, via=n) == "up ready", n
            time.sleep(1)
        for n in NODES:
            assert all(s == "active" for s in unit_states(cluster, n).values()), n
            assert not journal_since(cluster, n, since, SELF_FENCED_ID), n

        # The peer port dropped between the nodes too: nobody can tell the
        # outage from being cut off, so every node fences.
        for n in NODES:
            other = next(o for o in NODES if o != n)
            cluster.exec(n, "nft", "add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", node_address(other),
                         "tcp", "dport", "9471", "drop")
        cut = time.time()
        for n in NODES:
            cluster.wait_for(f"{n}'s whole mail group stopped", lambda: group_stopped(cluster, n),
                             timeout=SELF_FENCE_AFTER + 10, interval=0.2)
        for n in NODES:
            fences = journal_since(cluster, n, cut - 1, SELF_FENCED_ID)
            assert fences and fences[0]["PRIORITY"] == "2", (n, fences)
            stopped = max(unit_stopped_at(cluster, n, u) for u in GROUP)
            print(f"{n}: group stopped {stopped - cut:.2f} s after the peer port was dropped: "
                  f"{fences[0]['MESSAGE']}")
            assert metrics(cluster, n)["rupost_cluster_self_fenced"] == 1, n
            assert cluster.agent_check(n, via=n).startswith("down #"), n
    finally:
        for n in NODES:
            undrop(cluster, n, NFT_TABLE)
    restored = time.time()
    for n in NODES:
        cluster.wait_for(f"{n}'s fence lifted", lambda: [
            j for j in journal_since(cluster, n, restored - 1, SELF_FENCED_ID) if "lifted" in j["MESSAGE"]],
            timeout=60)
    wait_all_in_service(cluster, timeout=120)
    for n in NODES:
        assert metrics(cluster, n)["rupost_cluster_self_fenced"] == 0, n
