"""Three (then four) nodes started from the CLI in separate processes on 127.0.0.1."""
import json
import re
import signal
from pathlib import Path

import pytest

from conftest import swarm_node
from swarm_node.testing import NodeProcess, cpu_hogs, ledger_rows, printed_address, toy_target, wait_for

NODE_ARGS = ["--tier", "cpu", "--listen", "/ip4/127.0.0.1/tcp/0", "--presence-interval", "1", "--max-seconds", "30"]


class Swarm:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        # every run sleeps a little, so that peers are up before the first discovery
        self.target = toy_target(tmp / "toy_target", 0.5)
        self.procs: dict[str, NodeProcess] = {}

    def start(self, name: str, *args: str, env: dict | None = None) -> NodeProcess:
        """`swarm-node join` as `name` (home tmp/name, log tmp/name.log, appended across restarts)."""
        self.procs[name] = NodeProcess(self.tmp / name, self.tmp / f"{name}.log", "--target", str(self.target),
                                       *NODE_ARGS, *args, env=env)
        return self.procs[name]

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def bootstrap_addr(self, name: str, timeout: float = 60) -> str:
        return wait_for(lambda: printed_address(self.log(name)), timeout, lambda: f"{name} printed no multiaddr:\n"
                        + self.log(name))

    def rows(self, name: str, sql: str, args=()):
        return ledger_rows(self.tmp / name, sql, args, missing_ok=True)  # [] before the node made its ledger

    def stop(self, name: str, sig=signal.SIGINT) -> int:
        return self.procs.pop(name).stop(sig)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def swarm(tmp_path):
    s = Swarm(tmp_path)
    yield s
    s.stop_all()


def status(name, swarm):
    return swarm_node("status", "--json", home=swarm.tmp / name, timeout=30)


def head_of(name, swarm):
    data = json.loads(status(name, swarm).stdout)
    return data["head"]["state"] if data.get("head") else None


def test_three_researching_nodes_converge_on_one_head_and_a_late_joiner_starts_from_it(swarm, tmp_path):
    """Every node researches; one runs with --threads 1 beside a CPU-bound process. Runs are
    reproducible, so every verification holds: the nodes end on one head, no honest peer is flagged."""
    with cpu_hogs(1):
        swarm.start("node1", "--seed", "1", "--max-experiments", "4")
        addr = swarm.bootstrap_addr("node1")
        swarm.start("node2", "--bootstrap", addr, "--seed", "2", "--max-experiments", "4", "--threads", "1")
        swarm.start("node3", "--bootstrap", addr, "--seed", "3", "--max-experiments", "4")
        names = ("node1", "node2", "node3")
        wait_for(lambda: all("research finished" in swarm.log(n) for n in names), 300,
                 lambda: "\n".join(swarm.log(n)[-3000:] for n in names))
        wait_for(lambda: len({head_of(n, swarm) for n in names}) == 1, 120,
                 lambda: "heads differ: " + str({n: head_of(n, swarm) for n in names}))
    head = head_of("node1", swarm)
    for name in names:
        assert not swarm.rows(name, "SELECT * FROM rejections WHERE reason = 'false-claim'"), swarm.log(name)
        assert json.loads(status(name, swarm).stdout)["banned"] == []
    adopted = [r for n in names for r in swarm.rows(n, "SELECT * FROM experiments WHERE status = 'adopted'")]
    assert adopted and all("reproduced" in r["reason"] for r in adopted), adopted
    # the common head is the best any node kept, by the register's order (mean over the tier's seeds)
    keeps = [r for n in names for r in swarm.rows(n, "SELECT * FROM experiments WHERE status = 'keep'")]
    assert min(keeps, key=lambda r: (r["val_bpb"], r["state"]))["state"] == head

    swarm.start("node4", "--bootstrap", addr, "--max-experiments", "0")
    first = wait_for(lambda: swarm.rows("node4", "SELECT * FROM experiments WHERE status = 'baseline'"), 90,
                     lambda: "node4 measured no start state:\n" + swarm.log("node4"))[0]
    assert first["state"] == head and first["description"].startswith("start from the swarm's best")


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
    wait_for(lambda: any(p["peer"] == peer2 for p in json.loads(status("node1", swarm).stdout)["connected_peers"]),
             60, "node2 did not reconnect to node1")
