"""The agent configuration the healing and cluster suites (and the heal
benchmark) run the mail nodes with: the three member probes at a fast pace
and a `healing:` section, optionally a `cluster:` section. One place, so the
suites cannot drift apart. No pytest here: the benchmark imports it too."""

GROUP = ["nginx.service", "postfix.service", "dovecot.service", "sogo.service"]
# What systemctl shows for each member; postfix's master runs in postfix@-.
GROUP_STATES = GROUP + ["postfix@-.service"]

_PROBES_AND_HEALING = """\
node: {node}
web:
  listen_address: "0.0.0.0:9469"
control_socket: /run/rupost-agent/control.sock
probes:
  - name: mail-units
    type: systemd-unit
    interval: 10s
    timeout: 2s
    rise: 1
    fall: 1
    units: [nginx.service, postfix.service, postfix@-.service, dovecot.service, sogo.service]
  - name: smtp
    type: tcp
    interval: 1s
    timeout: 900ms
    rise: 1
    fall: 2
    address: "127.0.0.1:25"
    expect: "220 "
  - name: imaps
    type: tcp
    interval: 1s
    timeout: 900ms
    rise: 1
    fall: 2
    address: "127.0.0.1:993"
    tls: true
    expect: "* OK"
healing:
  units: [nginx.service, postfix.service, dovecot.service, sogo.service]
  member_probes: [mail-units, smtp, imaps]
  stop_timeout: 5s
  start_timeout: 30s
  backoff_initial: {backoff}
  backoff_max: {backoff_max}
  stable_period: {stable_period}
  healthy_rounds: 2
  round_interval: 500ms
  max_attempts: {max_attempts}
"""

# Leases renewed every second, the fence after 4 s without, the lease 10 s
# (a fencing stop kills the group, well inside the 6 s left). A short
# shared_failure_window, so that one test's failure does not count as a
# shared one in the next.
_CLUSTER = """\
cluster:
  conninfo: "hostaddr={infra} port=5432 user=rupost dbname=rupost sslmode=disable"
  password_file: /etc/rupost/postgres.password
  lease_ttl: 10s
  renew_interval: 1s
  self_fence_after: 4s
  shared_failure_window: 2s
  peer_address: "{address}:9471"
"""


def node_address(node):
    """The box's address on the node box's bridge (tests/nodebox/lib/common.sh box_ip)."""
    return f"10.231.0.{10 + int(node.removeprefix('node'))}"


def healing_config(node, backoff="20s", backoff_max="30s", stable_period="10m", max_attempts=10,
                   infra=None):
    """The config text for NODE; with INFRA (its address) also the cluster
    section, with the node's own address as the peer address. The backoff
    keeps a withdrawn node out long enough for a test to see it down on a
    loaded machine."""
    text = _PROBES_AND_HEALING.format(node=node, backoff=backoff, backoff_max=backoff_max,
                                      stable_period=stable_period, max_attempts=max_attempts)
    if infra:
        text += cluster_section(infra, node_address(node))
    return text


def cluster_section(infra, address):
    """The `cluster:` section every suite runs the nodes with (INFRA: the
    database's address, ADDRESS: the node's, where its peers ask it)."""
    return _CLUSTER.format(infra=infra, address=address)


def unit_states(cluster, box):
    """systemctl is-active of every member unit in BOX, by unit name."""
    out = cluster.exec(box, "systemctl", "is-active", *GROUP_STATES, check=False).stdout.split()
    return dict(zip(GROUP_STATES, out))
