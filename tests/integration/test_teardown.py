"""Runs last (file order): `nodebox down` must leave nothing behind."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KEEP, NODEBOX, RUN_DIR

CG_PARENTS = ("/sys/fs/cgroup/unified/rupost-nodebox", "/sys/fs/cgroup/rupost-nodebox")


def box_processes():
    """Live processes started by nodebox (launchers and everything below)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"box-init.sh" in cmd and state != "Z":
            found.append((pid, cmd.decode(errors="replace")))
    return found


@pytest.mark.skipif(KEEP, reason="NODEBOX_KEEP=1: the cluster is kept running")
def test_down_leaves_nothing_behind(cluster):
    t0 = time.monotonic()
    cluster.nodebox("down", timeout=300)
    print(f"nodebox down took {time.monotonic() - t0:.1f} s")

    assert_clean()
    assert not Path(RUN_DIR, "boxes").exists()
    # A second down is harmless.
    cluster.nodebox("down")


def assert_clean():
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True,
                           text=True, check=True).stdout
    assert "rupost-nb-" not in netns
    assert not [p for p in CG_PARENTS if os.path.exists(p)]
    assert "rupost-nodebox" not in Path("/proc/self/mountinfo").read_text()
    assert not box_processes()


@pytest.mark.skipif(KEEP, reason="NODEBOX_KEEP=1: the cluster is kept running")
def test_down_cleans_up_after_an_interrupted_up(cluster):
    # Kill `up` while the boxes boot: half-made state everywhere.
    proc = subprocess.Popen([NODEBOX, "up", "--nodes", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not box_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert box_processes(), "up did not get as far as launching a box"
    cluster.nodebox("down", timeout=300)
    assert_clean()
