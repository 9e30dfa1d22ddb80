"""The mail nodes boot clean with healing on (issue 10, item 7).

With healing on, the agent starts during the boot, alongside the mail
units. It used to see `postfix@-.service is activating (start-pre)`, judge
the group failed, withdraw and stop every unit (SOGo then timed out
stopping): a node box brought up with NODEBOX_HEALING=1 healed itself into
an outage. A member is now judged failed only from a settled group (no boot
transaction, no job in flight, no unit activating, past each unit's start
grace).

The module gives node1..N the configuration `NODEBOX_HEALING=1 nodebox up`
writes (the demo's: healing on, state shared in infra's PostgreSQL), then
NODEBOX_BOOT_ROUNDS times (2 by default) powers every mail node off from
inside (`systemctl poweroff`) and boots them again with `nodebox up`, which
keeps their disks: the agent is enabled there and starts in the boot with
that configuration. After each boot:

- the agent's journal of this boot has no withdrawal and no stop of the
  group: no transition to withdrawn, failed or fenced (MESSAGE_ID
  7b2e9c4d1f0a4c8e8a6b3d5f2c1e0a9b), no refused withdrawal, no "The mail
  group is stopped";
- systemd stopped no member unit in this boot;
- every node reaches in_service, by its own account (rupost-health --json)
  and in every node's cluster view, with every member unit active;
- the agent was not restarted.

Afterwards the nodes get the standard (watching) configuration back, as the
other modules expect, and their rows leave the registry.

By hand, for the record: NODEBOX_BOOT_ROUNDS=10; NODEBOX_BOOT_WHOLE=1
reboots the whole cluster instead (`nodebox down`, `NODEBOX_HEALING=1
nodebox up`: infra and its database boot beside the nodes).
"""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import NODEBOX
from healing_config import GROUP, GROUP_STATES, unit_states
from test_cluster import REFUSED_ID, db, view

ROUNDS = int(os.environ.get("NODEBOX_BOOT_ROUNDS", "2"))
WHOLE = os.environ.get("NODEBOX_BOOT_WHOLE") == "1"
STATE_CHANGED_ID = "7b2e9c4d1f0a4c8e8a6b3d5f2c1e0a9b"
# Anything in the agent's journal that means the group was (or was about
# to be) taken down.
BAD = re.compile(r"withdrawn|withdraw|mail group is stopped|is failed|is fenced|Stopping the mail group",
                 re.IGNORECASE)
# systemd's own line when it stops a unit: "Stopping postfix@-.service - ...".
STOPPING = re.compile(r"^(Stopping|Stopped) (%s)\b" % "|".join(re.escape(u) for u in GROUP_STATES))


def nodebox_up(cluster, healing):
    """`nodebox up` as the demo runs it (NODEBOX_HEALING=1) or as the suite
    does (the watching configuration): boots what is not running, writes
    every mail node's agent.yaml and reloads the agents."""
    env = dict(os.environ, NODEBOX_HEALING="1" if healing else "0")
    args = [NODEBOX, "up", "--nodes", str(cluster.nodes)]
    if os.environ.get("NODEBOX_DEB"):
        args += ["--deb", os.environ["NODEBOX_DEB"]]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, f"nodebox up exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stderr


def box_states(cluster):
    """{box: running|stopped} from `nodebox status`."""
    lines = cluster.nodebox("status").stdout.splitlines()[1:]
    return {f[0]: f[1] for f in (l.split() for l in lines) if len(f) > 1 and f[0] in cluster.boxes}


def agent_journal(cluster, box):
    """The agent's journal of this boot, as records."""
    out = cluster.exec(box, "journalctl", "-b", "-u", "rupost-agent.service", "-o", "json", "--no-pager").stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def member_stops(cluster, box):
    """systemd's lines of this boot about stopping a member unit."""
    out = cluster.exec(box, "journalctl", "-b", "_PID=1", "-o", "cat", "--no-pager").stdout
    return [l for l in out.splitlines() if STOPPING.match(l)]


def monotonic_prop(cluster, box, unit, prop):
    return int(cluster.exec(box, "systemctl", "show", "-P", prop, unit).stdout.strip() or 0) / 1e6


def node_in_service(cluster, box):
    state = cluster.health(box)["node_state"]
    return (state and state["state"] == "in_service" and
            all(s == "active" for s in unit_states(cluster, box).values()))


def cluster_in_service(cluster):
    for box in cluster.mail_nodes:
        v = view(cluster, box)
        if any(v.get(n, {}).get("state") != "in_service" for n in cluster.mail_nodes):
            return False
    return True


@pytest.fixture(scope="module")
def healing_nodes(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    try:
        nodebox_up(cluster, healing=True)
        for box in cluster.mail_nodes:
            cluster.wait_for(f"{box}'s agent healing", lambda: cluster.health(box)["node_state"]["healing"],
                             timeout=10)
        yield cluster
    finally:
        # Boot what a failed round left down, with the watching
        # configuration the other modules assume.
        nodebox_up(cluster, healing=False)
        for box in cluster.mail_nodes:
            cluster.exec(box, "sh", "-c", "systemctl reset-failed; systemctl start " + " ".join(GROUP), check=False)
        # Without a cluster section nobody renews these rows any more.
        db(cluster, "DELETE FROM rupost_agent.nodes WHERE name IN (%s)" %
           ", ".join(f"'{n}'" for n in cluster.mail_nodes))


def reboot_mail_nodes(cluster):
    """Powers every mail node off from inside and boots them again; returns
    the seconds from `nodebox up` to its end. With NODEBOX_BOOT_WHOLE=1
    the whole cluster instead: `nodebox down`, then `NODEBOX_HEALING=1
    nodebox up`, infra booting beside the nodes (by hand only: down also
    empties the shared mail tree the next modules may use)."""
    if WHOLE:
        cluster.nodebox("down")
        t0 = time.monotonic()
        nodebox_up(cluster, healing=True)
        return time.monotonic() - t0
    for box in cluster.mail_nodes:
        cluster.exec(box, "systemctl", "--no-block", "poweroff")
    cluster.wait_for("every mail node powered off", lambda: all(
        box_states(cluster).get(b) == "stopped" for b in cluster.mail_nodes), timeout=60, interval=0.5)
    assert box_states(cluster)["infra"] == "running"
    t0 = time.monotonic()
    nodebox_up(cluster, healing=True)
    return time.monotonic() - t0


def check_boot(cluster, round_no):
    """Everything a clean boot means, on every mail node; returns a line
    for the record."""
    t0 = time.monotonic()
    cluster.wait_for("every mail node in service, every member active",
                     lambda: all(node_in_service(cluster, b) for b in cluster.mail_nodes), timeout=90, interval=0.5)
    cluster.wait_for("every node in service in every cluster view", lambda: cluster_in_service(cluster),
                     timeout=30, interval=0.5)
    in_service = time.monotonic() - t0
    notes = []
    for box in cluster.mail_nodes:
        records = agent_journal(cluster, box)
        assert records, f"{box}: the agent logged nothing in this boot"
        bad = [r["MESSAGE"] for r in records
               if BAD.search(str(r.get("MESSAGE", ""))) or r.get("MESSAGE_ID") == REFUSED_ID or
               (r.get("MESSAGE_ID") == STATE_CHANGED_ID and " is in_service " not in r.get("MESSAGE", ""))]
        # "starting -> in_service" is the only transition of a clean boot.
        assert not bad, f"round {round_no}, {box}: the agent took the group down or meant to:\n" + "\n".join(bad)
        stops = member_stops(cluster, box)
        assert not stops, f"round {round_no}, {box}: member units stopped in this boot:\n" + "\n".join(stops)
        unit = cluster.exec(box, "systemctl", "show", "rupost-agent.service", "-p", "NRestarts",
                            "-p", "ActiveState").stdout
        assert "NRestarts=0" in unit and "ActiveState=active" in unit, (box, unit)
        # Whether the agent ran before the group had settled (the race this
        # is about): its start against postfix's master and SOGo becoming
        # active, on the box's monotonic clock.
        agent_up = monotonic_prop(cluster, box, "rupost-agent.service", "ExecMainStartTimestampMonotonic")
        last_member = max(monotonic_prop(cluster, box, u, "ActiveEnterTimestampMonotonic") for u in GROUP_STATES)
        unsettled = sum("not settled" in str(r.get("MESSAGE", "")) for r in records)
        notes.append(f"{box}: agent started {agent_up - last_member:+.2f} s from the last member active, "
                     f"{unsettled} 'not settled' notice(s)")
    return f"in service {in_service:.1f} s after up; " + "; ".join(notes)


def test_mail_nodes_boot_clean_with_healing(healing_nodes):
    cluster = healing_nodes
    record = []
    for round_no in range(1, ROUNDS + 1):
        up = reboot_mail_nodes(cluster)
        line = check_boot(cluster, round_no)
        record.append(f"round {round_no}/{ROUNDS}: up {up:.1f} s, {line}")
        print("\n" + record[-1], flush=True)
    print("\nclean boots (%s): %d of %d" % ("whole cluster" if WHOLE else "mail nodes", len(record), ROUNDS))
