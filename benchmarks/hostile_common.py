"""hostile_load's shared part: paths, tunables, and helpers for the node, its ledger and the attacker process.

Importing this module puts the repository (swarm_node) and tests/ (HostilePeer) on sys.path, so the
other hostile_* modules import it before anything from those.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
for _path in (str(REPO), str(TESTS)):  # swarm_node, and tests/ for HostilePeer
    if _path not in sys.path:
        sys.path.insert(0, _path)

from swarm_node.testing import NodeProcess, ledger_rows, start_node, stop_process  # noqa: E402

SCRIPT = Path(__file__).resolve().with_name("hostile_load.py")  # run again as the attacker (--child)
RUN_SLEEP_S = 0.5
# --budget is training FLOPs (the toy ignores it); --max-seconds the wall limit of one run (the old budget + margin)
NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--max-seconds", "6", "--listen", "/ip4/127.0.0.1/tcp/0"]
RATE_GOAL = 0.8  # flooded / unflooded experiments per minute
P95_GOAL_MS = 100.0
START_TIMEOUT_S = 120.0  # the node prints its address
BASELINE_TIMEOUT_S = 120.0  # the node has a head
EXPERIMENT_TIMEOUT_S = 30.0  # per experiment asked for, on top of a fixed minute
CHILD_READY_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 120.0
CLAIM_INTERVAL_S = 2.0
BATCH = 10  # messages per RPC
FORWARDERS = 3  # HostilePeer connections the attacker's messages come through
PER_FORWARDER_RATE = 50.0  # messages/s per connection (py-libp2p's limit: 100 per topic and forwarder)
OWN = ("keep", "discard", "crash")


# ---- the node, its ledger, its process --------------------------------------------------------------


def read_rows(home: Path, sql: str, args=()) -> list[dict]:
    """Rows of the node's ledger, read-only; [] while it does not exist or is busy."""
    return ledger_rows(home, sql, args, missing_ok=True)


def head_runs(head: dict | None) -> dict[int, tuple[float, float | None]]:
    """seed -> (val_bpb, test_bpb) of a ledger's `meta` head (the loop keeps the head's per-seed runs)."""
    return {int(seed): (run[0], run[1]) for seed, run in (head or {}).get("runs", {}).items()}


def head_val(head: dict | None) -> float | None:
    """The head's val_bpb: the mean over its seeds, as the node computes it."""
    runs = head_runs(head)
    return statistics.fmean(v for v, _ in runs.values()) if runs else None


def start(tmp: Path, target: Path, name: str, *args: str, python: list[str] = ()) -> NodeProcess:
    """`swarm-node join` as `name` (home tmp/name, log tmp/name.log), stopped by node.stop(): SIGINT, then SIGKILL."""
    return start_node(tmp, name, "--target", str(target), *NODE_ARGS, *args, python=python)


def suspicious_lines(node: NodeProcess) -> list[str]:
    """Log lines that look wrong: tracebacks, errors, exceptions, crashes of the node itself."""
    lines = node.log().splitlines()
    return [line for line in lines if re.search(r"Traceback|\[error|\[critical|exception", line, re.I)
            and "toy crash" not in line]


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def start_child(tmp: Path, kind: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """This script again, as the attacker (`--child claims|discoveries`); its output in a log file."""
    log_path = tmp / f"attacker-{kind}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([sys.executable, str(SCRIPT), "--child", kind, *args],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    return popen, log_path


def stop_child(popen: subprocess.Popen, stop_file: Path, timeout: float = 20.0) -> None:
    """Ask the attacker to stop (a file it polls), then SIGINT, then SIGKILL."""
    stop_file.touch()
    try:
        popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(popen, timeout=10)


def wait_file(path: Path, timeout: float, child: subprocess.Popen, log_path: Path) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        if child.poll() is not None:
            raise RuntimeError(f"the attacker exited ({child.returncode}); its log tail:\n"
                               f"{tail(log_path.read_text(errors='replace'), 25)}")
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for the attacker's {path.name}")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def rejections(home: Path, peers: set[str], since: float = 0.0) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in read_rows(home, "SELECT peer, reason FROM rejections WHERE at >= ?", (since,)):
        if r["peer"] in peers:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def all_rejections(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in read_rows(home, "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason"):
        counts[r["reason"]] = r["n"]
    return counts
