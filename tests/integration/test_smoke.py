"""Smoke test: the node boxes run a real mail cluster.

Every check crosses box boundaries over the private bridge, so a passing run
means real services under real systemd talked to each other.
"""

import time
import uuid

import pytest

DOMAIN = "rupost.test"
ALICE = ("alice@rupost.test", "alice-secret")

IMAP_CHECK = r"""
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
host, user, password, subject = sys.argv[1:5]
m = imaplib.IMAP4_SSL(host, 993, ssl_context=ctx)
m.login(user, password)
m.select("INBOX", readonly=True)
typ, data = m.search(None, '(SUBJECT "%s")' % subject)
ids = data[0].split()
if ids:
    typ, msg = m.fetch(ids[-1], "(BODY.PEEK[TEXT])")
    print(msg[0][1].decode(errors="replace").strip())
m.logout()
"""


def test_boxes_are_up(cluster):
    for box in cluster.boxes:
        state = cluster.exec(box, "systemctl", "is-system-running",
                             check=False).stdout.strip()
        failed = [line.split()[0] for line in cluster.exec(
            box, "systemctl", "--failed", "--no-legend", "--plain").stdout.splitlines()]
        # The agent under test has its own test; here only the cluster counts.
        failed = [u for u in failed if u != "rupost-agent.service"]
        assert not failed, f"{box}: {state}; failed units: {failed}"
        assert state in ("running", "degraded"), f"{box}: {state}"
        assert cluster.exec(box, "hostname").stdout.strip() == box


def box_pids(cluster):
    lines = cluster.nodebox("status").stdout.splitlines()[1:]
    return {f[0]: f[2] for f in (l.split() for l in lines) if len(f) > 2}


def test_up_is_idempotent(cluster):
    before = box_pids(cluster)
    assert set(before) == set(cluster.boxes)
    t0 = time.monotonic()
    cluster.nodebox("up", "--nodes", str(cluster.nodes))
    assert time.monotonic() - t0 < 30
    # Same PIDs: running boxes were left alone.
    assert box_pids(cluster) == before


def test_box_confinement(cluster):
    status = cluster.exec("node1", "cat", "/proc/self/status").stdout
    capbnd = int(next(l.split()[1] for l in status.splitlines()
                      if l.startswith("CapBnd:")), 16)
    cap_sys_module, cap_sys_time = 16, 25
    assert not capbnd & (1 << cap_sys_time)
    assert not capbnd & (1 << cap_sys_module)
    # The bounding set of the box's PID 1 (inherited by all its services).
    pid1 = cluster.exec("node1", "cat", "/proc/1/status").stdout
    assert "CapBnd:\t" in pid1
    bnd1 = int(next(l.split()[1] for l in pid1.splitlines()
                    if l.startswith("CapBnd:")), 16)
    assert not bnd1 & (1 << cap_sys_time)
    # Kernel tunables read-only except the box's own network ones; /sys too.
    r = cluster.exec("node1", "sh", "-c",
                     "echo 1 > /proc/sys/kernel/sysrq", check=False)
    assert r.returncode != 0
    cluster.exec("node1", "sh", "-c",
                 "cat /proc/sys/net/ipv4/ip_forward > /proc/sys/net/ipv4/ip_forward")
    r = cluster.exec("node1", "touch", "/sys/kernel/nodebox-test", check=False)
    assert r.returncode != 0
    # Own cgroup subtree, no way out of the private network.
    cgroups = cluster.exec("node1", "cat", "/proc/1/cgroup").stdout.splitlines()
    assert "0::/init.scope" in cgroups
    assert cluster.exec("node1", "ip", "route", "show", "default").stdout.strip() == ""
    # chronyd may never set the clock.
    args = cluster.exec("node1", "sh", "-c",
                        "tr '\\0' ' ' < /proc/$(pidof chronyd | cut -d' ' -f1)/cmdline").stdout
    assert " -x" in args


def test_mail_node_layout(cluster):
    # The install guide's limits for dovecot (a drop-in in every box).
    out = cluster.exec("node1", "systemctl", "show", "dovecot.service",
                       "-p", "LimitNOFILE", "-p", "LimitNPROC").stdout.split()
    assert "LimitNOFILE=1048576" in out and "LimitNPROC=4194304" in out
    # Postfix's queue on the shared tree: root's directory, postfix's subdirs,
    # under the 420:420 MailQueues.
    q = "/srv/nfs/MailQueues/node1"
    assert cluster.exec("node1", "postconf", "-h", "queue_directory").stdout.strip() == q
    assert cluster.exec("node1", "stat", "-c", "%U %a", q).stdout.split() == ["root", "755"]
    assert cluster.exec("node1", "stat", "-c", "%U", f"{q}/active").stdout.strip() == "postfix"
    assert cluster.exec("node1", "stat", "-c", "%u:%g",
                        "/srv/nfs/MailQueues").stdout.strip() == "420:420"
    cluster.exec("node1", "postfix", "check")
    # Each node sees the other's queue (what queue evacuation needs).
    assert cluster.exec("node2", "test", "-d", f"{q}/deferred", check=False).returncode == 0


def test_infra_services(cluster):
    # PostgreSQL: the product's three databases, owned by rupost, over the bridge.
    out = cluster.exec("node1", "env", "PGPASSWORD=rupost", "psql", "-h", "infra",
                       "-U", "rupost", "-d", "rupost", "-tAc",
                       "SELECT datname FROM pg_database d JOIN pg_roles r "
                       "ON r.oid = d.datdba WHERE r.rolname = 'rupost' ORDER BY 1").stdout
    assert out.split() == ["rupost", "rupost_data", "rupost_logs"]
    # Two directory controllers with the same data and the RuPost schema.
    for host in ("ldap1", "ldap2"):
        out = cluster.exec("node1", "ldapsearch", "-x", "-LLL", "-H", f"ldap://{host}",
                           "-D", "cn=rupost-svc,dc=rupost,dc=test",
                           "-w", "rupost-svc-secret", "-b", "ou=people,dc=rupost,dc=test",
                           "(proxyAddresses=smtp:a.example@rupost.test)", "mail").stdout
        assert "mail: alice@rupost.test" in out, host
    # memcached on the infra address.
    out = cluster.python("node1", (
        "import socket; s = socket.create_connection(('infra', 11211), 3);"
        "s.sendall(b'version\\r\\n'); print(s.recv(100).decode())")).stdout
    assert out.startswith("VERSION")
    # chrony on the mail node follows infra.
    cluster.wait_for("node1's chronyd to select infra", lambda: "^*" in cluster.exec(
        "node1", "chronyc", "-n", "sources").stdout, timeout=30)
    # The shared tree over NFSv4 (userspace client), owned 420:420.
    out = cluster.exec("node1", "nfs-ls", "nfs://infra/srv/nfs/?version=4",
                       timeout=30).stdout
    for d in ("MailQueues", "MailStorage", "MailArchive", "MailRecord"):
        assert d in out
    st = cluster.exec("node1", "stat", "-c", "%u:%g", "/srv/nfs/MailStorage").stdout.strip()
    assert st == "420:420"


def test_mail_delivered_and_read_over_imaps_via_other_node(cluster):
    subject = f"nodebox-smoke-{uuid.uuid4().hex[:12]}"
    body = f"body-{uuid.uuid4().hex}"
    cluster.exec("infra", "swaks", "--silent", "2", "--server", "node1", "--port", "25",
                 "--from", "bob@rupost.test", "--to", ALICE[0],
                 "--header", f"Subject: {subject}", "--body", body, timeout=60)

    def read_back():
        r = cluster.exec("infra", "python3", "-c", IMAP_CHECK, "node2", ALICE[0],
                         ALICE[1], subject, check=False, timeout=30)
        return body in r.stdout and r.stdout

    cluster.wait_for("the message in alice's INBOX via node2", read_back, timeout=30)
    # Stored on the shared tree, as uid 420 (the NFS ownership rule).
    owners = cluster.exec("node2", "sh", "-c",
                          f"stat -c %u:%g /srv/nfs/MailStorage/{DOMAIN}/alice/Maildir/*/*"
                          ).stdout.split()
    assert owners and set(owners) == {"420:420"}


def test_second_smtp_listener_and_haproxy(cluster):
    for port in ("20025", "8025"):
        out = cluster.python("infra", (
            "import socket; s = socket.create_connection(('node1', %s), 5);"
            "print(s.recv(200).decode())" % port)).stdout
        assert out.startswith("220 "), (port, out)

    # Every node's haproxy peers with every other one on port 10000 ...
    for node in cluster.mail_nodes:
        others = [n for n in cluster.mail_nodes if n != node]
        cluster.wait_for(f"{node}'s haproxy peers", lambda: all(
            f"id={o}(remote,active)" in out and "last_status=ESTA" in out
            for out in [cluster.haproxy_admin(node, "show peers")] for o in others), timeout=20)
    # ... and a client's stickiness learnt on node1 shows up on node2.
    cluster.haproxy_admin("node1", "clear table smtp")
    cluster.python("infra", "import socket; socket.create_connection(('node1', 8025), 5).recv(100)")
    infra_ip = "10.231.0.10"
    cluster.wait_for("the stick-table entry on node2", lambda: infra_ip in cluster.haproxy_admin(
        "node2", "show table smtp"), timeout=10)


def test_sogo_answers_through_nginx(cluster):
    code = cluster.exec("infra", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "20", "https://node1/SOGo/").stdout
    assert code in ("200", "302")
    code = cluster.exec("infra", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "http://node1/").stdout
    assert code == "301"
    out = cluster.exec("node1", "curl", "-s", "http://127.0.0.1/basic_status").stdout
    assert "Active connections" in out


IMAP_LOGIN = r"""
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL(sys.argv[1], 993, ssl_context=ctx)
print(m.login(sys.argv[2], sys.argv[3])[0])
m.logout()
"""


def test_sogo_login_uses_ldap_postgres_memcached(cluster):
    def login(password):
        return cluster.exec(
            "infra", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
            "--max-time", "20", "-H", "Content-Type: application/json",
            "-d", '{"userName": "%s", "password": "%s"}' % (ALICE[0], password),
            "https://node2/SOGo/connect").stdout

    assert cluster.wait_for("a SOGo login as alice", lambda: login(ALICE[1]) == "200",
                            timeout=30)
    assert login("wrong-password") == "403"


def test_ldap_controller_failover(cluster):
    """Two controllers of one domain: logins keep working without ldap1."""
    def imap_login(node):
        r = cluster.exec("infra", "python3", "-c", IMAP_LOGIN, node, "bob@rupost.test",
                         "bob-secret", check=False, timeout=30)
        return r.stdout.strip() == "OK"

    assert imap_login("node1")
    cluster.exec("infra", "systemctl", "stop", "slapd.service")
    try:
        assert cluster.exec("infra", "nc", "-z", "-w", "1", "ldap1", "389",
                            check=False).returncode != 0
        assert cluster.wait_for("a login through ldap2", lambda: imap_login("node1"),
                                timeout=20)
    finally:
        cluster.exec("infra", "systemctl", "start", "slapd.service")
    assert cluster.wait_for("ldap1 back", lambda: cluster.exec(
        "infra", "nc", "-z", "-w", "1", "ldap1", "389", check=False).returncode == 0,
        timeout=20)


def test_partition_isolate_heal(cluster):
    def reach(src, dst, port="25"):
        return cluster.exec(src, "nc", "-z", "-w", "1", dst, port,
                            check=False).returncode == 0

    assert reach("node1", "node2")
    try:
        cluster.nodebox("partition", "node1", "node2")
        assert not reach("node1", "node2")
        assert not reach("node2", "node1")
        assert reach("node1", "infra", "5432")
        cluster.nodebox("isolate", "node2")
        assert not reach("infra", "node2")
        assert "partition node1 node2" in cluster.nodebox("status").stdout
    finally:
        cluster.nodebox("heal")
    assert reach("node1", "node2")
    assert reach("infra", "node2")


def test_agent_sees_dovecot_kill(cluster):
    if not cluster.agent_expected():
        pytest.skip("no rupost-agent .deb was given to nodebox up "
                    "(--deb / NODEBOX_DEB / build-deb/), so there is no agent to test")
    cluster.wait_for("mail-units ok", lambda: cluster.probe(
        "node1", "mail-units")["status"] == "ok", timeout=30)
    report = cluster.health("node1")
    assert report["node"] == "node1"
    # Timestamp and kill in one go, inside the box, so exec latency is not counted.
    out = cluster.exec("node1", "sh", "-c",
                       "date +%s.%N; systemctl kill -s KILL dovecot.service").stdout
    killed_at = float(out.split()[0])
    try:
        p = cluster.wait_for("mail-units to go critical", lambda: (
            lambda q: q if q["status"] == "critical" else None)(
                cluster.probe("node1", "mail-units")), timeout=10, interval=0.05)
        delay = p["changed_at"] - killed_at
        print(f"agent noticed the dovecot kill after {delay * 1000:.1f} ms")
        assert -0.05 < delay < 1.0, p
    finally:
        cluster.exec("node1", "sh", "-c",
                     "systemctl reset-failed dovecot.service; systemctl start dovecot.service")
    cluster.wait_for("mail-units ok again", lambda: cluster.probe(
        "node1", "mail-units")["status"] == "ok", timeout=30)
    out = cluster.metrics("node1")
    assert "mail-units" in out or "mail_units" in out
