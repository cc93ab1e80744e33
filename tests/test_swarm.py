"""Three (then four) nodes started from the CLI in separate processes on 127.0.0.1."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, ledger_rows, slow_toy_target, swarm_node

NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--presence-interval", "1", "--timeout-margin", "10"]


class Swarm:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        # every run sleeps a little, so that peers are up before the first discovery
        self.target = slow_toy_target(tmp / "toy_target", 3)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        home = self.tmp / name
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "swarm_node.cli", "join", "--target", str(self.target), *NODE_ARGS, *args], cwd=REPO,
                                env={**os.environ, "SWARM_NODE_HOME": str(home), **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def bootstrap_addr(self, name: str, timeout: float = 60) -> str:
        return wait_for(lambda: (m := re.search(r"--bootstrap (\S+)", self.log(name))) and m.group(1), timeout,
                        f"{name} printed no multiaddr:\n" + self.log(name))

    def rows(self, name: str, sql: str, args=()):
        try:
            return ledger_rows(self.tmp / name, sql, args)
        except Exception:  # the node may not have created its ledger yet
            return []

    def stop(self, name: str, sig=signal.SIGINT) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def wait_for(check, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(message if isinstance(message, str) else message())


@pytest.fixture
def swarm(tmp_path):
    s = Swarm(tmp_path)
    yield s
    s.stop_all()


def status(name, swarm):
    return swarm_node("status", "--json", home=swarm.tmp / name, timeout=30)


def test_a_keep_spreads_is_verified_and_adopted_and_a_late_joiner_starts_from_the_best(swarm):
    # node1 researches (slowly, so the others are up before its first keep); node2 and node3 only adopt.
    swarm.start("node1", "--max-experiments", "3")
    addr = swarm.bootstrap_addr("node1")
    peer1 = addr.rsplit("/p2p/", 1)[1]
    for name in ("node2", "node3"):
        swarm.start(name, "--bootstrap", addr, "--max-experiments", "0")

    for name in ("node2", "node3"):
        adopted = wait_for(lambda: swarm.rows(name, "SELECT * FROM experiments WHERE status = 'adopted'"), 120,
                           lambda: f"{name} adopted nothing:\n" + swarm.log(name) + swarm.log("node1"))[0]
        assert "verified: claimed" in adopted["reason"]
        runs = swarm.rows(name, "SELECT * FROM runs WHERE experiment_id = ?", (adopted["id"],))
        assert len(runs) == 1 and runs[0]["status"] == "ok"  # re-measured before adoption
        seen = swarm.rows(name, "SELECT * FROM discoveries WHERE state = ?", (adopted["source"],))
        assert seen[0]["author"] == peer1 and seen[0]["first_from"] == peer1
        keep = swarm.rows("node1", "SELECT * FROM experiments WHERE status = 'keep' AND state = ?", (adopted["source"],))
        assert keep, "the adopted discovery is one of node1's keeps"
    # node1 learns of both adoptions through Adoption messages
    wait_for(lambda: len({r["peer"] for r in swarm.rows("node1", "SELECT peer FROM adoptions")}) >= 2, 60,
             lambda: "node1 saw no adoptions:\n" + swarm.log("node1"))

    # node1 finishes its 3 experiments; the swarm's best is then node1's best
    wait_for(lambda: "research finished" in swarm.log("node1"), 120, lambda: swarm.log("node1"))
    best = swarm.rows("node1", "SELECT * FROM best WHERE tier = 'cpu'")[0]
    swarm.start("node4", "--bootstrap", addr, "--max-experiments", "0")
    first = wait_for(lambda: swarm.rows("node4", "SELECT * FROM experiments WHERE status = 'baseline'"), 90,
                     lambda: "node4 measured no start state:\n" + swarm.log("node4"))[0]
    assert first["state"] == best["state"], swarm.log("node4")
    assert first["description"].startswith("start from the swarm's best")

    st = status("node2", swarm)
    assert '"connected_peers"' in st.stdout and peer1 in st.stdout


def test_kill_9_and_restart_keeps_the_identity_reconnects_and_the_ledger(swarm):
    swarm.start("node1", "--max-experiments", "1")
    addr = swarm.bootstrap_addr("node1")
    swarm.start("node2", "--bootstrap", addr, "--max-experiments", "2")
    wait_for(lambda: len(swarm.rows("node2", "SELECT * FROM experiments WHERE status != 'running'")) >= 2, 90,
             lambda: swarm.log("node2"))
    peer2 = re.search(r"--bootstrap \S+/p2p/(\S+)", swarm.log("node2")).group(1)
    before = swarm.rows("node2", "SELECT * FROM experiments WHERE status != 'running' ORDER BY id")
    swarm.stop("node2", signal.SIGKILL)
    swarm.start("node2", "--bootstrap", addr, "--max-experiments", "2")
    wait_for(lambda: swarm.log("node2").count("--bootstrap") >= 2, 60, lambda: swarm.log("node2"))
    peer2_again = re.findall(r"--bootstrap \S+/p2p/(\S+)", swarm.log("node2"))[-1]
    assert peer2_again == peer2
    after = swarm.rows("node2", "SELECT * FROM experiments ORDER BY id")
    assert after[:len(before)] == before
    import json
    wait_for(lambda: any(p["peer"] == peer2 for p in json.loads(status("node1", swarm).stdout)["connected_peers"]),
             60, "node2 did not reconnect to node1")
