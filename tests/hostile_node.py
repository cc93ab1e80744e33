"""A `swarm-node join` subprocess for the attack tests (tests/test_hostile_attacks.py,
test_hostile_squat.py, test_hostile_bootstrap.py), its toy target and the discoveries sent to it.

NodeProc starts the CLI on a copy of the toy target (toy_copy) and reads back what the node made of
an attack: its SQLite ledger, its log and `swarm-node status --json`.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

from conftest import swarm_node
from swarm_node.assets import load_config
from swarm_node.messages import BenchKey, Discovery, SeedRun, state_hash
from swarm_node.research.hparams import write_block
from swarm_node.research.target import torch_version
from swarm_node.research.workspace import make_diff
from swarm_node.testing import NodeProcess, toy_target

MAX_SECONDS = 5  # the wall limit of one run (--max-seconds); toy runs take well under a second
# --budget is training FLOPs (the toy ignores it); fixtures that need another wall limit pass their own
NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--max-seconds", str(MAX_SECONDS), "--listen", "/ip4/127.0.0.1/tcp/0",
             "--presence-interval", "1"]
REFILL_S = 4 * MAX_SECONDS + 60  # node.py/standing.py: one verification token back per 4 * max_seconds + 60 s
SEEDS = range(5)  # the cpu tier's 3 decision and 2 confirmation seeds: a discovery must claim them all
CPU_EXPLORE = load_config("roles")["roles"]["init-norm"]["explore"]  # the cpu tier's role


# ---- processes -----------------------------------------------------------------------------------


class NodeProc(NodeProcess):
    """One `swarm-node join` subprocess started by a test module (stopped only by its own PID), its
    home at tmp/home and its log at tmp/node.log, with the ledger reads the tests need."""

    def __init__(self, tmp: Path, target: Path, *extra: str):
        super().__init__(tmp / "home", tmp / "node.log", "--target", str(target), *NODE_ARGS, *extra, name="node")
        self.tmp = tmp
        self.address = ""  # its multiaddr, once the fixture has read it
        self.peer = ""

    def rejections(self, *peers: str) -> list[dict]:
        marks = ",".join("?" * len(peers))
        return self.rows(f"SELECT peer, reason, at FROM rejections WHERE peer IN ({marks}) ORDER BY id", peers)

    def reasons(self, *peers: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejections(*peers):
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return counts

    def status(self) -> dict:
        return json.loads(swarm_node("status", "--json", "--home", str(self.home), home=self.home, timeout=30).stdout)


def start_node(tmp: Path, target: Path, *extra: str) -> NodeProc:
    return NodeProc(tmp, target, *extra)


def toy_copy(folder: Path, **changes) -> Path:
    """A copy of the toy target named toy_target (the bench's target name) with block values changed."""
    target = toy_target(folder / "toy_target")
    if changes:
        train = target / "train.py"
        train.write_text(write_block(train.read_text(), changes))
    return target


def bench_of(target: Path, tier: str = "cpu", budget: int = 1) -> BenchKey:
    """The bench key a node on this target copy uses (the toy's corpus is its own prepare.py; --budget 1
    is FLOPs; --tier cpu runs on the CPU; the torch version is the installed one's)."""
    corpus = hashlib.sha256((target / "prepare.py").read_bytes()).hexdigest()
    return BenchKey(target=target.name, corpus=corpus, tier=tier, budget=budget, unit="flops", device="cpu",
                    torch=torch_version())


def _fail(node: NodeProc, what: str) -> AssertionError:
    return AssertionError(f"{what}\n--- node log tail ---\n" + node.log()[-4000:])


# ---- crafting --------------------------------------------------------------------------------------


def seed_runs(val_bpb: float) -> list[SeedRun]:
    """Claimed runs on every seed of the tier, spread around `val_bpb` (their mean)."""
    vals = [round(val_bpb * (1 + 0.002 * (s - 2)), 8) for s in SEEDS]
    return [SeedRun(seed=s, val_bpb=v, test_bpb=min(round(v + 0.01, 8), 16.0)) for s, v in zip(SEEDS, vals)]


def discovery(author: str, bench: BenchKey, parent_src: str, new_src: str, val_bpb: float, description: str,
              hparams: dict | None = None, ts: float | None = None) -> Discovery:
    runs = seed_runs(val_bpb)
    return Discovery(author=author, ts=ts or time.time(), bench=bench, state=state_hash(new_src),
                     parent=state_hash(parent_src), diff=make_diff(parent_src, new_src),
                     val_bpb=statistics.fmean(r.val_bpb for r in runs),
                     test_bpb=statistics.fmean(r.test_bpb for r in runs), runs=runs, noise=0.001,
                     description=description, hparams=hparams or {})
