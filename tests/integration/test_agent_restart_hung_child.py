"""An agent killed while a probe child is stuck on a hung share, then
restarted (issue 10, item 6).

test_hung_nfs.py's FUSE filesystem that answers nothing after the mount
stands in for an NFS server gone away under a hard mount; an nfs probe on it
leaves a check child of the agent blocked in stat() for good (SIGKILL cannot
end it). node1's agent runs with healing and a cluster section, so it also
listens on the peer port 9471 and holds a PostgreSQL connection. With the
child stuck, the agent's main process is SIGKILLed (`systemctl kill
--kill-whom=main`) and systemd restarts it. Then:

- the stuck child holds none of the agent's descriptors, before and after
  the kill: stdio and the pipe to its parent, nothing else (before commit
  daac948 a child kept every descriptor of the agent, since it forks
  without exec: the listening sockets of 9469-9471, the control socket, the
  PostgreSQL and D-Bus connections);
- the new agent binds 9469, 9470, 9471 and the control socket (bind
  failures are fatal at start: with the child holding them it could not
  start) and answers /metrics and rupost-health, while the old child still
  exists, stuck where it was.

All under the packaged unit as is: its KillMode=process is what lets
systemd start the new agent beside the leftover child (with the default,
control-group, systemd waited for the stuck child, which never goes, and
there was no agent for minutes).
"""

import time

import pytest

from healing_config import healing_config, node_address
from test_cluster import db
from test_hung_nfs import NODE, PROBE, agent_processes, agent_unit, hanging_share

INFRA = "10.231.0.10"
CONTROL_SOCKET = "/run/rupost-agent/control.sock"
PORTS = [9469, 9470, 9471]


def proc(cluster, pid, name):
    return cluster.exec(NODE, "cat", f"/proc/{pid}/{name}", check=False).stdout


def task(cluster, pid):
    """(state letter, parent pid, kernel function it waits in) of PID."""
    stat = proc(cluster, pid, "stat").rpartition(")")[2].split()
    if not stat:
        return "gone", 0, ""
    return stat[0], int(stat[1]), proc(cluster, pid, "wchan").strip()


def fd_targets(cluster, pid):
    """{fd: what it points to} of PID, from /proc/PID/fd."""
    out = cluster.exec(NODE, "sh", "-c", f'cd /proc/{pid}/fd && for f in *; do echo "$f $(readlink $f)"; done').stdout
    return {int(fd): target for fd, _, target in (l.partition(" ") for l in out.splitlines() if l)}


def assert_only_stdio_and_pipe(cluster, pid):
    held = fd_targets(cluster, pid)
    extra = {fd: t for fd, t in held.items() if fd > 2}
    assert set(held) >= {0, 1, 2}, held
    assert len(extra) == 1 and next(iter(extra.values())).startswith("pipe:"), \
        f"the stuck child {pid} holds more than stdio and its pipe: {held}"
    return held


def stuck_child(cluster):
    """The agent's nfs check child, blocked on the share (the newest one
    when earlier agents left theirs)."""
    cluster.wait_status(NODE, "nfs-hung", "critical", timeout=20)
    unit = agent_unit(cluster)
    main = int(unit["MainPID"])

    def find():
        kids = [p for p in agent_processes(cluster, unit) if p != main and task(cluster, p)[1] == main]
        return kids[-1] if kids else None

    child = cluster.wait_for("a check child of the agent stuck on the share", find, timeout=10)
    state, _, wchan = task(cluster, child)
    print(f"\nagent {main}: child {child} in state {state}, waiting in {wchan}")
    # Asleep in the FUSE request (request_wait_answer), S before any signal, D after.
    assert state in ("S", "D") and ("fuse" in wchan or "request_wait_answer" in wchan), (state, wchan)
    return unit, child


def listeners(cluster):
    """Every listening TCP and unix socket in the box with its holders."""
    return cluster.exec(NODE, "ss", "-Hlpnxt").stdout.splitlines()


def kill_main(cluster, unit):
    cluster.exec(NODE, "systemctl", "kill", "--kill-whom=main", "-s", "KILL", "rupost-agent.service")
    return time.monotonic()


def new_agent(cluster, old_pid):
    """The unit's state once a new main process runs, or None."""
    u = agent_unit(cluster)
    active = cluster.exec(NODE, "systemctl", "is-active", "rupost-agent.service", check=False).stdout.strip()
    return u if active == "active" and u["MainPID"] not in ("0", str(old_pid)) else None


@pytest.fixture(scope="module")
def stuck(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    config = healing_config(NODE, infra=INFRA).replace("probes:\n", "probes:" + PROBE, 1)
    try:
        with hanging_share(cluster), cluster.agent_config(NODE, config, action="reload-or-restart"):
            yield cluster
    finally:
        # Released, the stuck children return: a stop that waited for them
        # ends and systemd restarts the agent (Restart=on-failure).
        cluster.wait_for("rupost-agent active again", lambda: cluster.exec(
            NODE, "systemctl", "is-active", "rupost-agent.service", check=False).stdout.strip() == "active",
            timeout=30, interval=0.5)
        # Without a cluster section nobody renews this row any more.
        db(cluster, f"DELETE FROM rupost_agent.nodes WHERE name = '{NODE}'")


def test_new_agent_binds_beside_the_stuck_child(stuck):
    cluster = stuck
    old, child = stuck_child(cluster)
    old_pid = int(old["MainPID"])
    held = assert_only_stdio_and_pipe(cluster, child)
    ls = listeners(cluster)
    for port in PORTS:
        assert any(f":{port} " in l and f"pid={old_pid}," in l for l in ls), (port, ls)

    # The packaged unit as is: systemd restarts the main process alone, the
    # child stays in the cgroup.
    assert cluster.exec(NODE, "systemctl", "show", "-P", "DropInPaths", "rupost-agent.service").stdout.strip() == ""
    assert cluster.exec(NODE, "systemctl", "show", "-P", "KillMode", "rupost-agent.service").stdout.strip() == "process"
    t0 = kill_main(cluster, old)
    new = cluster.wait_for("a new agent started by systemd", lambda: new_agent(cluster, old_pid),
                           timeout=30, interval=0.2)
    took = time.monotonic() - t0
    new_pid = int(new["MainPID"])
    print(f"new agent {new_pid} active {took:.1f} s after the kill (NRestarts {old['NRestarts']} -> "
          f"{new['NRestarts']})")

    # The old child is still there, stuck where it was, with the same
    # descriptors: stdio and its pipe.
    state, ppid, wchan = task(cluster, child)
    assert state in ("S", "D") and ppid != old_pid, (state, ppid, wchan)
    assert child in agent_processes(cluster, new), "the stuck child left the agent's cgroup"
    assert assert_only_stdio_and_pipe(cluster, child) == held

    # The new agent holds every listener, the old child none.
    ls = listeners(cluster)
    for port in PORTS:
        line = next((l for l in ls if f":{port} " in l), None)
        assert line and f"pid={new_pid}," in line, (port, ls)
    line = next((l for l in ls if f" {CONTROL_SOCKET} " in l), None)
    assert line and f"pid={new_pid}," in line, ls
    assert not [l for l in ls if f"pid={child}," in l], ls

    # And answers: /metrics, rupost-health over the control socket, and
    # the peer port.
    # (Its own first check of the share hangs too and is critical at its
    # 1 s deadline.)
    cluster.wait_status(NODE, "nfs-hung", "critical", timeout=20)
    assert cluster.metric(cluster.metrics(NODE), "rupost_nfs_mount_responsive", share="HungShare") == 0
    report = cluster.health(NODE)
    assert report["source"] == "agent" and report["node_state"]["healing"], report
    assert report["start_time"] > time.time() - took - 10, report
    cluster.exec("node2", "python3", "-c", f"import socket; socket.create_connection(('{node_address(NODE)}', "
                 "9471), 2).close()")
