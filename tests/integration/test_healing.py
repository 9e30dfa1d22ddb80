"""Self-healing on real nodes: the mail group stops and starts as one, the
node withdraws from every HAProxy and comes back by itself (issue 6).

The module turns healing on in node1's agent for its own tests and restores
the previous configuration afterwards, so the other suites' faults (a stopped
SOGo, say) never trigger a group stop.
"""

import time
import uuid

import pytest

from healing_config import GROUP, healing_config, unit_states as _unit_states

def unit_states(cluster, box="node1"):
    return _unit_states(cluster, box)


def group_all(cluster, state, box="node1"):
    states = unit_states(cluster, box)
    return all(s == state for s in states.values()) and states


def agent_check(cluster):
    """What node1's agent check port says, asked from node2."""
    return cluster.agent_check("node1", via="node2")


def in_service(cluster):
    return agent_check(cluster) == "up ready" and group_all(cluster, "active")


@pytest.fixture(scope="module")
def healing(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up, so there is no agent to test")
    with cluster.agent_config("node1", healing_config("node1")):
        cluster.wait_for("node1 in service with healing on", lambda: in_service(cluster), timeout=60)
        yield cluster
    cluster.exec("node1", "sh", "-c", "systemctl reset-failed; systemctl start " + " ".join(GROUP),
                 check=False)


# The backoff (20 s) keeps the group down long enough for the checks below to
# see it down on a loaded machine; it starts at the decision, so recovery
# takes about that long.
def wait_recovered(cluster, timeout=90):
    cluster.wait_for("node1 recovered and re-admitted", lambda: in_service(cluster), timeout=timeout)
    cluster.wait_for("node1 UP again in node2's HAProxy", lambda: cluster.haproxy_server_status(
        "node2", "smtp", "node1") == "UP", timeout=20)


def test_sigkill_dovecot_stops_the_group_withdraws_and_recovers(healing):
    cluster = healing
    cluster.exec("node1", "systemctl", "kill", "-s", "KILL", "dovecot.service")

    # All four units stop together, within their own stop time and a margin.
    cluster.wait_for("the whole mail group on node1 stopped",
                     lambda: all(s in ("inactive", "failed") for s in unit_states(cluster).values()),
                     timeout=20, interval=0.1)
    # Withdrawn: the agent says so on its agent-check port ...
    reply = agent_check(cluster)
    assert reply.startswith("down #"), reply
    assert "dovecot" in reply, reply
    # ... and every node's HAProxy took node1 out, on the agent's word (not
    # only because the ports went away: a recovering node answers on its
    # ports before it is re-admitted).
    cluster.wait_for("node1 DOWN in every HAProxy", lambda: all(
        cluster.haproxy_server_status(box, "smtp", "node1").startswith("DOWN")
        for box in cluster.mail_nodes), timeout=10)
    for box in cluster.mail_nodes:
        said = cluster.haproxy_server_stat(box, "smtp", "node1", "last_agt")
        assert said.startswith("via agent : down (withdrawn: ") and "dovecot" in said, (box, said)

    # The cluster still takes mail: through node1's HAProxy it goes to node2.
    subject = f"healing-{uuid.uuid4().hex[:10]}"
    cluster.exec("infra", "swaks", "--silent", "2", "--server", "node1", "--port", "8025",
                 "--from", "bob@rupost.test", "--to", "alice@rupost.test",
                 "--header", f"Subject: {subject}", timeout=60)
    cluster.wait_for("the message in alice's mailbox, delivered by node2", lambda: cluster.exec(
        "node2", "sh", "-c", f"grep -rlq 'Subject: {subject}' /srv/nfs/MailStorage/rupost.test/alice/Maildir/",
        check=False).returncode == 0, timeout=30)

    # dovecot can start again: the agent restarts the group and re-admits node1.
    wait_recovered(cluster)


def test_systemctl_stop_nginx_stops_the_whole_group(healing):
    cluster = healing
    cluster.exec("node1", "systemctl", "stop", "nginx.service")
    cluster.wait_for("the whole mail group on node1 stopped",
                     lambda: all(s in ("inactive", "failed") for s in unit_states(cluster).values()),
                     timeout=20, interval=0.1)
    assert agent_check(cluster).startswith("down #")
    wait_recovered(cluster)


def test_sigstopped_postfix_trips_its_probe_and_the_group(healing):
    cluster = healing
    # The process runs but does not answer: only the protocol probe can tell.
    cluster.exec("node1", "systemctl", "kill", "-s", "STOP", "postfix@-.service")
    try:
        cluster.wait_for("the whole mail group on node1 stopped",
                         lambda: all(s in ("inactive", "failed") for s in unit_states(cluster).values()),
                         timeout=30, interval=0.2)
    finally:
        # A stopped process cannot die of SIGTERM; let it go on to its end.
        cluster.exec("node1", "systemctl", "kill", "-s", "CONT", "postfix@-.service", check=False)
    reply = agent_check(cluster)
    assert reply.startswith("down #") and "smtp" in reply, reply
    wait_recovered(cluster)


def test_agent_killed_while_stopping_the_group_leaves_it_consistent(healing):
    cluster = healing
    # Kill dovecot and, a moment later, the agent in the middle of its stop.
    cluster.exec("node1", "sh", "-c",
                 "systemctl kill -s KILL dovecot.service; sleep 0.05; "
                 "systemctl kill -s KILL rupost-agent.service")
    # systemd restarts the agent; it must never leave half the group running.
    cluster.wait_for("the agent back", lambda: cluster.exec(
        "node1", "systemctl", "is-active", "rupost-agent.service", check=False).stdout.strip() == "active",
        timeout=20)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if in_service(cluster):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"node1 not back in service: {unit_states(cluster)}, {agent_check(cluster)}")
    # Settled: the whole group runs and stays running.
    time.sleep(3)
    assert group_all(cluster, "active"), unit_states(cluster)


def test_healing_switched_off_lifts_the_veto(healing):
    """HAProxy keeps the last verdict its agent check read. A node withdrawn
    when healing is switched off must not stay out for good: without healing
    the agent answers "up ready", and HAProxy's own checks decide."""
    cluster = healing
    cluster.exec("node1", "systemctl", "kill", "-s", "KILL", "dovecot.service")
    cluster.wait_for("node1 withdrawn, as node2's HAProxy heard it", lambda: cluster.haproxy_server_stat(
        "node2", "smtp", "node1", "last_agt").startswith("via agent : down (withdrawn: "), timeout=20)
    config = cluster.exec("node1", "cat", "/etc/rupost/agent.yaml").stdout
    watching = config.split("\nhealing:\n")[0] + "\n"
    assert "healing" not in watching, watching
    cluster.exec("node1", "sh", "-c", "cat > /etc/rupost/agent.yaml", input=watching)
    try:
        cluster.exec("node1", "systemctl", "reload", "rupost-agent.service")
        assert cluster.wait_for("node1's agent check without healing", lambda: agent_check(cluster) == "up ready")
        # Nobody heals now: the operator starts the group.
        cluster.exec("node1", "sh", "-c", "systemctl reset-failed; systemctl start " + " ".join(GROUP))
        cluster.wait_for("node1 back in node2's HAProxy, on the agent's word too", lambda: (
            cluster.haproxy_server_status("node2", "smtp", "node1") == "UP"
            and cluster.haproxy_server_stat("node2", "smtp", "node1", "last_agt") == "via agent : up"), timeout=30)
    finally:
        cluster.exec("node1", "sh", "-c", "cat > /etc/rupost/agent.yaml", input=config)
        cluster.exec("node1", "systemctl", "reload", "rupost-agent.service")
