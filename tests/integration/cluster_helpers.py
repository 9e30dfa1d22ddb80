"""What the cluster suites (test_cluster.py, test_safety.py) look at and do
to the two mail nodes: the registry in infra's PostgreSQL, each agent's view,
metrics and journal, each node's agent-check answer, and the faults (nft
drops inside a box's own network namespace, the database stopped).

Plain functions over conftest's Cluster; no pytest here."""

import json

from healing_config import GROUP, unit_states

NODES = ["node1", "node2"]
INFRA = "10.231.0.10"

REFUSED_ID = "a7d3f1b9c5e24d8a9b6c0e4f2a8d1c3e"
SHARED_OUTAGE_ID = "d8b4a2c6e0f94b7d9e3a5c1f7b2d4e6a"
SELF_FENCED_ID = "5c1f7e2a9b3d4e8fa0c6b2d8e4f1a3c5"
STATE_CHANGED_ID = "7b2e9c4d1f0a4c8e8a6b3d5f2c1e0a9b"


def group_stopped(cluster, box):
    return all(s in ("inactive", "failed") for s in unit_states(cluster, box).values())


def view(cluster, box):
    """`rupost-health cluster --json` on BOX, by node name."""
    out = cluster.exec(box, "rupost-health", "cluster", "--json").stdout
    return {n["name"]: n for n in json.loads(out)["nodes"]}


def metrics(cluster, box):
    """The agent's samples on BOX: {'name{labels}': value}."""
    return cluster.samples(cluster.metrics(box))


def db(cluster, sql):
    return cluster.exec("infra", "runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-d", "rupost",
                        "-c", sql).stdout.strip()


def registry_states(cluster):
    """{node: state} of the registry rows, read in infra itself."""
    out = db(cluster, "SELECT name, state FROM rupost_agent.nodes ORDER BY name")
    return dict(l.split("|", 1) for l in out.splitlines() if l)


def journal_since(cluster, box, since, message_id):
    out = cluster.exec(box, "journalctl", "-u", "rupost-agent.service", f"--since=@{since:.0f}",
                       f"MESSAGE_ID={message_id}", "-o", "json", "--no-pager", check=False).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def in_service(cluster, node, via="node2"):
    return cluster.agent_check(node, via=via) == "up ready" and all(
        s == "active" for s in unit_states(cluster, node).values())


def all_in_service(cluster):
    v = view(cluster, "node2")
    return all(in_service(cluster, n) for n in NODES) and all(
        v[n]["state"] == "in_service" and v[n]["lease_age_seconds"] < 3 for n in NODES)


def wait_all_in_service(cluster, timeout=120):
    cluster.wait_for("node1 and node2 in service with fresh leases", lambda: all_in_service(cluster),
                     timeout=timeout, interval=0.5)


def lease_expires(cluster, node):
    return float(db(cluster, "SELECT extract(epoch FROM lease_expires) FROM rupost_agent.nodes "
                             f"WHERE name = '{node}'"))


UNIT_STOPPED_AT = r"""
import subprocess, sys, time
mono = int(subprocess.run(["systemctl", "show", "-P", "InactiveEnterTimestampMonotonic", sys.argv[1]],
                          capture_output=True, text=True, check=True).stdout)
print(mono / 1e6 + time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC))
"""


def unit_stopped_at(cluster, box, unit):
    """When UNIT last went inactive, unix seconds to the microsecond (the
    boxes share the kernel's clocks)."""
    return float(cluster.exec(box, "python3", "-c", UNIT_STOPPED_AT, unit).stdout)


def start_database(cluster, check=True):
    # nodebox-data (the harness's databases) requires postgresql: it went
    # down with it.
    cluster.exec("infra", "systemctl", "start", "postgresql.service", "nodebox-data.service",
                 check=check, timeout=60)


def drop_output(cluster, box, table, *match):
    """Drops BOX's outgoing packets matching MATCH (nft words, e.g. "ip",
    "daddr", ADDR, "tcp", "dport", "5432") in the nft TABLE (inet family) of
    BOX's own network namespace; the table is created on first use and goes
    with undrop()."""
    cluster.exec(box, "nft", "add", "table", "inet", table)
    cluster.exec(box, "nft", "add", "chain", "inet", table, "out", "{ type filter hook output priority 0 ; }")
    cluster.exec(box, "nft", "add", "rule", "inet", table, "out", *match, "drop")


def undrop(cluster, box, table):
    cluster.exec(box, "nft", "delete", "table", "inet", table, check=False)


def restart_groups(cluster, nodes=NODES):
    """After a module: every member unit started again in NODES."""
    for n in nodes:
        cluster.exec(n, "sh", "-c", "systemctl reset-failed; systemctl start " + " ".join(GROUP), check=False)
