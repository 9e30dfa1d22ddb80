"""Fixtures for the node-box integration suite.

The session fixture `cluster` runs `nodebox up` (a no-op for boxes that are
already running, so `tests/integration/run` or a developer can bring the
cluster up first) and `nodebox down` at the end unless NODEBOX_KEEP=1.
"""

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODEBOX = str(HERE.parent / "nodebox" / "nodebox")
KEEP = os.environ.get("NODEBOX_KEEP") == "1"
RUN_DIR = os.environ.get("NODEBOX_RUN_DIR", "/run/rupost-nodebox")

# The skips a complete run may have: each was asked for by whoever runs the
# suite. Any other skip means something the suite needs was missing (no agent
# package, so "no rupost-agent .deb was given"): with NODEBOX_STRICT_SKIPS=1
# (tests/run, hence CI) such a test fails instead, because a suite that passes
# by not running proves nothing. A developer running a few tests by hand
# without a package still gets skips.
EXPECTED_SKIPS = (
    # The cluster is kept for a look around, so the teardown tests cannot run.
    "NODEBOX_KEEP=1: the cluster is kept running",
)
STRICT_SKIPS = os.environ.get("NODEBOX_STRICT_SKIPS") == "1"

# Run inside a box with the command as argv[1]: HAProxy's admin socket
# answers one command and closes.
HAPROXY_ADMIN = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(sys.argv[1].encode() + b"\n")
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
print(out.decode())
"""

# Run inside a box with a node's name as argv[1]: what that node's agent
# check port (HAProxy's agent-check) says.
AGENT_CHECK = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 9470), 2)
print(s.recv(200).decode().strip())
"""


class Cluster:
    """Thin wrapper around the nodebox command."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.mail_nodes = [f"node{i}" for i in range(1, nodes + 1)]
        self.boxes = ["infra"] + self.mail_nodes

    def nodebox(self, *args, check=True, timeout=600):
        res = subprocess.run([NODEBOX, *args], capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(
                f"nodebox {' '.join(args)} exited {res.returncode}\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
        return res

    def exec(self, box, *cmd, check=True, timeout=60, input=None):
        """Run CMD in BOX; returns the CompletedProcess (text mode)."""
        res = subprocess.run([NODEBOX, "exec", box, "--", *cmd],
                             capture_output=True, text=True, timeout=timeout,
                             input=input)
        if check and res.returncode != 0:
            raise AssertionError(
                f"in {box}: {' '.join(cmd)} exited {res.returncode}\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
        return res

    def python(self, box, code, check=True, timeout=60):
        """Run a Python snippet inside BOX (its own python3)."""
        return self.exec(box, "python3", "-c", code, check=check,
                         timeout=timeout)

    @contextlib.contextmanager
    def agent_config(self, box, text=None, append=None, action="reload"):
        """Runs BOX's agent with the config TEXT (or the current one plus
        APPEND) inside the block, then puts the previous config back: also
        when the agent refused the new one, so that one module's broken
        config never becomes the next module's starting point. ACTION is
        the systemctl verb that applies the new config."""
        path = "/etc/rupost/agent.yaml"
        original = self.exec(box, "cat", path).stdout
        if text is None:
            text = original.rstrip("\n") + "\n" + append
        try:
            self.exec(box, "sh", "-c", f"cat > {path}", input=text)
            self.exec(box, "systemctl", action, "rupost-agent.service")
            yield original
        finally:
            self.exec(box, "sh", "-c", f"cat > {path}", input=original)
            self.exec(box, "systemctl", "reload", "rupost-agent.service", check=False)

    @contextlib.contextmanager
    def agent_configs(self, texts, action="reload"):
        """agent_config() in several boxes at once: TEXTS maps a box to its
        config. Yields the previous configs by box."""
        with contextlib.ExitStack() as stack:
            yield {box: stack.enter_context(self.agent_config(box, text, action=action))
                   for box, text in texts.items()}

    def health(self, box):
        """`rupost-health --json` in BOX, parsed. Its exit status is the
        worst probe status (0-3), so any of those is an answer."""
        r = self.exec(box, "rupost-health", "--json", check=False)
        assert r.returncode in (0, 1, 2, 3), r.stderr
        report = json.loads(r.stdout)
        assert "probes" in report, f"rupost-health --json in {box}: {report}"
        return report

    def probe(self, box, name):
        """The record of probe NAME in BOX's health report."""
        return next(p for p in self.health(box)["probes"] if p["name"] == name)

    def wait_status(self, box, name, status, timeout=30, interval=0.3):
        """Waits for a fresh result with STATUS (the reported status and the
        last run's); returns the probe's record."""
        return self.wait_for(f"{name} {status} in {box}", lambda: (
            lambda p: p if p["status"] == status and p["last_status"] == status else None)(
                self.probe(box, name)), timeout=timeout, interval=interval)

    def metrics(self, box):
        """The agent's /metrics page in BOX, as text."""
        return self.exec(box, "curl", "-s", "http://127.0.0.1:9469/metrics").stdout

    @staticmethod
    def metric(text, name, **labels):
        """The value of the first sample of NAME in the metrics TEXT whose
        labels include LABELS."""
        for line in text.splitlines():
            m = re.match(r"^%s(?:\{([^}]*)\})? (\S+)$" % re.escape(name), line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                return float(m.group(2))
        raise KeyError(f"{name} {labels} not in the metrics")

    @staticmethod
    def samples(text):
        """Every sample in the metrics TEXT: {'name{labels}': value}."""
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def haproxy_admin(self, box, command):
        """HAProxy's answer to COMMAND on BOX's admin socket."""
        return self.exec(box, "python3", "-c", HAPROXY_ADMIN, command).stdout

    def haproxy_server_stat(self, box, backend, server, column):
        """One column of `show stat` for one server, as BOX's HAProxy sees
        it (e.g. status; last_agt: what its agent check last said)."""
        lines = [l for l in self.haproxy_admin(box, "show stat").splitlines() if l]
        header = lines[0].lstrip("# ").split(",")
        index = header.index(column)
        for line in lines[1:]:
            f = line.split(",")
            if f[0] == backend and f[1] == server:
                return f[index]
        raise AssertionError(f"no {backend}/{server} in show stat on {box}")

    def haproxy_server_status(self, box, backend, server):
        return self.haproxy_server_stat(box, backend, server, "status")

    def agent_check(self, node, via):
        """What NODE's agent check port answers, asked from VIA."""
        return self.exec(via, "python3", "-c", AGENT_CHECK, node).stdout.strip()

    def tool(self, name):
        """The path inside every box of the helper program
        tests/nodebox/tools/NAME.c, compiled here (the boxes have no
        compiler; their Debian is the host's) into the directory the boxes
        share read-only."""
        source = HERE.parent / "nodebox" / "tools" / f"{name}.c"
        target = Path(RUN_DIR, "shared", name)
        subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror",
                        "-I", str(HERE.parent / "unit"), "-o", f"{target}.tmp", str(source)],
                       check=True, capture_output=True, text=True)
        os.replace(f"{target}.tmp", target)
        return f"/nodebox/shared/{name}"

    def agent_expected(self):
        """True when `nodebox up` was given an agent package to install.

        The agent then has to work: a package that fails to install or an
        agent that crashes is a test failure, not a reason to skip."""
        return Path(RUN_DIR, "agent-deb").exists()

    def wait_for(self, what, predicate, timeout=30.0, interval=0.2):
        """Poll PREDICATE until it returns something true.  Failures inside
        it (a service still starting) count as "not yet"; the last one is
        reported on timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except (AssertionError, ValueError, KeyError, StopIteration) as e:
                last = e
            else:
                if last:
                    return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                             f"(last: {last!r})")


@pytest.fixture(scope="session")
def cluster():
    nodes = int(os.environ.get("NODEBOX_NODES", "2"))
    # The smoke test crosses nodes (deliver on node1, read on node2).
    assert nodes >= 2, "the integration suite needs NODEBOX_NODES >= 2"
    c = Cluster(nodes)
    args = ["up", "--nodes", str(nodes)]
    if os.environ.get("NODEBOX_DEB"):
        args += ["--deb", os.environ["NODEBOX_DEB"]]
    c.nodebox(*args, timeout=1800)
    yield c
    if not KEEP:
        c.nodebox("down", check=False)


def _diagnostics():
    """Cluster state and failed units, for the report of a failed test."""
    def run(*args):
        r = subprocess.run([NODEBOX, *args], capture_output=True, text=True,
                           timeout=60)
        return r.stdout + r.stderr

    text = run("status")
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and fields[1] == "running":
            failed = run("exec", fields[0], "--", "systemctl", "--failed",
                         "--no-legend", "--plain")
            for unit in [l.split()[0] for l in failed.splitlines() if l.strip()]:
                text += f"\n--- {fields[0]}: {unit} (failed) ---\n"
                text += "\n".join(run("logs", fields[0], unit).splitlines()[-30:])
    return text


def _skip_reason(report):
    """The reason given to pytest.skip() or skipif, without pytest's prefix."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if reason not in EXPECTED_SKIPS:
            report.outcome = "failed"
            report.longrepr = (f"unexpected skip: {reason}\n(NODEBOX_STRICT_SKIPS=1: only the "
                               f"reasons in conftest.EXPECTED_SKIPS may skip a test)")
            return
    if report.when == "call" and report.failed:
        try:
            report.sections.append(("nodebox diagnostics", _diagnostics()))
        except Exception as e:  # diagnostics must never hide the failure
            report.sections.append(("nodebox diagnostics", f"unavailable: {e}"))


def pytest_collection_modifyitems(session, config, items):
    """test_teardown.py stops the cluster: whatever other modules exist, its
    tests run last."""
    last = [i for i in items if i.path.name == "test_teardown.py"]
    items[:] = [i for i in items if i.path.name != "test_teardown.py"] + last
