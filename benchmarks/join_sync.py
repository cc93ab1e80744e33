"""Join sync: how long a new node takes to run on the swarm's best state, training excluded.

A 10-node swarm of real `swarm-node join` CLI processes on 127.0.0.1 (one process per node, each
with its own SWARM_NODE_HOME in a temp dir, listening on 127.0.0.1:0), all on a copy of the toy
research target (tests/toy_target: no torch, a known optimum) whose runs sleep 2 s, --tier cpu
--budget 1 (training FLOPs, which the toy ignores) --max-seconds 11. node1 researches 3
experiments; nodes 2-4 bootstrap to node1, nodes 5-10 to a random one of nodes 1-4 (seeded), all
with --max-experiments 0: they start from node1's best or adopt its keeps (re-running one seed of
each), whichever reaches them first. Once every node's ledger holds node1's final best, new nodes
join one after the other, each with a fresh home, --bootstrap to a random swarm node and
--max-experiments 0; each is stopped (SIGTERM) once it has started from the best, so the swarm
stays at 10 nodes.

Measured per joiner, all from the moment its process is started (`Popen`):
  listening   the node printed its listen address (interpreter start, imports, the hardware
              probe, which imports torch in a subprocess, building the research side, libp2p up)
  synced      the node logged "starting from the swarm's best" (dialed the bootstrap peer, asked
              for its best and fetched that state's train.py over the sync protocol)
  workspace   its workspace/train.py hashes to the swarm's best state (written before any training)
and `after_s` from the node's own log line: Node object created -> "starting from the swarm's best"
(the network part alone). Printed: p50 / max of each, the goal check for both intervals, the
CPU the idle swarm uses, and the two start-up steps before a Node exists (imports, hardware
probe), each timed alone in a fresh process after the swarm has stopped.

    /work/venv/bin/python benchmarks/join_sync.py [--joiners 5] [--seed 1]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarm_node.testing import NodeProcess, percentile, start_node, stop_processes, toy_target, wait_for  # noqa: E402

SWARM_SIZE = 10
RESEARCH_EXPERIMENTS = 3
RUN_SLEEP_S = 2.0  # each toy run sleeps this long, so node1's keeps come after its peers are up
# --budget: training FLOPs (the toy ignores them); --max-seconds: the wall limit of one run (the old budget + margin)
NODE_ARGS = ["--tier", "cpu", "--budget", "1", "--listen", "/ip4/127.0.0.1/tcp/0", "--max-seconds", "11"]
GOAL_S = 5.0
START_TIMEOUT_S = 120.0  # one process to print its address
CONVERGE_TIMEOUT_S = 300.0  # the swarm to agree on node1's best
JOIN_TIMEOUT_S = 120.0  # one joiner to start from the best
POLL_S = 0.02
SYNCED = "starting from the swarm's best"


def sha256_text(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def start(tmp: Path, target: Path, name: str, *args: str) -> NodeProcess:
    """`swarm-node join` as `name`: home tmp/name, log tmp/name.log (stdout and stderr together)."""
    return start_node(tmp, name, "--target", str(target), *NODE_ARGS, *args)


def best(node: NodeProcess) -> str | None:
    """The best state of tier cpu in this node's ledger, or None."""
    rows = node.rows("SELECT state FROM best WHERE tier = 'cpu'")
    return rows[0]["state"] if rows else None


def baseline_state(node: NodeProcess) -> str | None:
    rows = node.rows("SELECT state FROM experiments WHERE status = 'baseline' ORDER BY id LIMIT 1")
    return rows[0]["state"] if rows else None


def wait_until(check, timeout: float, what: str):
    """check()'s first truthy value; TimeoutError after `timeout` s."""
    return wait_for(check, timeout, f"waiting for {what}", poll=POLL_S)


def start_swarm(tmp: Path, target: Path, rng: random.Random, nodes: list[NodeProcess]) -> None:
    """Start the swarm's processes, appending each to `nodes` at once (so the caller stops them all)."""
    nodes.append(start(tmp, target, "node1", "--max-experiments", str(RESEARCH_EXPERIMENTS)))
    wait_until(nodes[0].printed_address, START_TIMEOUT_S, "node1's address")
    for i in range(2, SWARM_SIZE + 1):
        if i == 5:  # nodes 5-10 bootstrap to one of nodes 1-4: wait for their addresses
            for node in nodes[1:4]:
                wait_until(node.printed_address, START_TIMEOUT_S, f"{node.name}'s address")
        via = nodes[0] if i <= 4 else nodes[rng.randrange(4)]
        nodes.append(start(tmp, target, f"node{i}", "--bootstrap", via.printed_address(), "--max-experiments", "0"))
    for node in nodes:
        wait_until(node.printed_address, START_TIMEOUT_S, f"{node.name}'s address")


def wait_for_convergence(nodes: list[NodeProcess]) -> str:
    """node1's final best, once every node's ledger holds it."""
    researcher = nodes[0]
    wait_until(lambda: "research finished" in researcher.log(), CONVERGE_TIMEOUT_S, "node1 to finish researching")
    final = best(researcher)
    wait_until(lambda: all(best(node) == final for node in nodes), CONVERGE_TIMEOUT_S,
               "every node to hold node1's best")
    return final


def join_once(tmp: Path, target: Path, name: str, via: NodeProcess, best: str) -> dict:
    joiner = start(tmp, target, name, "--bootstrap", via.printed_address(), "--max-experiments", "0")
    workspace_train = joiner.home / "workspace" / "train.py"
    times: dict[str, float] = {}
    deadline = joiner.started + JOIN_TIMEOUT_S
    next_ledger_check = 0.0
    try:
        while time.monotonic() < deadline and not {"listening", "synced", "workspace"} <= times.keys():
            now = time.monotonic() - joiner.started
            text = joiner.log()
            if "listening" not in times and "swarm-node is listening" in text:
                times["listening"] = now
            if "synced" not in times and SYNCED in text:
                times["synced"] = now
            if "workspace" not in times and sha256_text(workspace_train) == best:
                times["workspace"] = now
            if now >= next_ledger_check:  # a node that started elsewhere measures that state first
                next_ledger_check = now + 0.5
                started_from = baseline_state(joiner)
                if started_from is not None and started_from != best:
                    times["wrong_start"] = 1.0
                    break
            if joiner.popen.poll() is not None:
                break
            time.sleep(POLL_S)
        text = joiner.log()
        match = re.search(re.escape(SYNCED) + r".*?after_s=([\d.]+)", text)
        if match:
            times["after_s"] = float(match.group(1))
        if "workspace" not in times:
            why = "started from another state" if "wrong_start" in times else \
                f"exited {joiner.popen.returncode}" if joiner.popen.poll() is not None else \
                f"not within {JOIN_TIMEOUT_S:.0f} s"
            tail = "\n".join(text.splitlines()[-15:])
            print(f"  {name}: did not start from the swarm's best ({why}); log tail:\n{tail}")
    finally:
        joiner.stop(signal.SIGTERM)  # `join` stops cleanly on SIGTERM
    return times


def idle_cpu(nodes: list[NodeProcess], seconds: float = 5.0) -> float:
    """Share of one core the swarm's processes use while nobody trains."""
    before = sum(node.cpu_seconds() for node in nodes)
    time.sleep(seconds)
    return (sum(node.cpu_seconds() for node in nodes) - before) / seconds


def startup_parts() -> dict[str, float]:
    """What a `join` process does before its node exists, timed here in fresh processes."""
    parts = {}
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "import swarm_node.cli, swarm_node.node"], cwd=REPO, check=False,
                   capture_output=True, timeout=120)
    parts["interpreter + imports"] = time.monotonic() - t
    t = time.monotonic()
    subprocess.run([sys.executable, "-c", "from swarm_node.research.hardware import detect; detect()"], cwd=REPO,
                   check=False, capture_output=True, timeout=180)
    parts["hardware probe (torch in a subprocess, with its own imports)"] = time.monotonic() - t
    return parts


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no measurements"
    return f"{label}: p50 {percentile(values, 50):.2f} s, max {max(values):.2f} s (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joiners", type=int, default=5, help="new nodes joining one after the other (default 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the bootstrap choices (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with every node's home and log")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="join_sync_"))
    target = toy_target(tmp / "toy_target", RUN_SLEEP_S)
    nodes: list[NodeProcess] = []
    results: list[dict] = []
    try:
        t = time.monotonic()
        start_swarm(tmp, target, rng, nodes)
        print(f"swarm: {len(nodes)} node processes listening after {time.monotonic() - t:.1f} s")
        best = wait_for_convergence(nodes)
        baseline = baseline_state(nodes[0])
        print(f"swarm: all {len(nodes)} nodes hold node1's best {best[:12]} after {time.monotonic() - t:.1f} s "
              f"({'differs from' if best != baseline else 'SAME AS'} node1's baseline {str(baseline)[:12]})")
        print(f"swarm: the {len(nodes)} idle node processes use {100 * idle_cpu(nodes):.0f}% of one core "
              f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
        for j in range(1, args.joiners + 1):
            via = nodes[rng.randrange(len(nodes))]
            times = join_once(tmp, target, f"joiner{j}", via, best)
            results.append(times)
            shown = ", ".join(f"{k} {times[k]:.2f} s" for k in ("listening", "synced", "workspace", "after_s")
                              if k in times)
            print(f"joiner{j} (bootstrap {via.name}): {shown}")
    except TimeoutError as error:
        print(f"stopped early: {error}")
    finally:
        stop_processes((node.popen for node in nodes), signal.SIGTERM)
        if args.keep:
            print(f"homes and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    for part, seconds in startup_parts().items():
        print(f"start-up part, timed alone with the swarm stopped: {part} {seconds:.2f} s")
    process = [r["workspace"] for r in results if "workspace" in r]
    node_part = [r["after_s"] for r in results if "after_s" in r]
    print(summary("process start -> listening", [r["listening"] for r in results if "listening" in r]))
    print(summary("process start -> logged 'starting from the swarm's best'", [r["synced"] for r in results if "synced" in r]))
    print(summary("process start -> workspace holds the best train.py", process))
    print(summary("Node created -> 'starting from the swarm's best' (after_s)", node_part))
    wrong = sum("wrong_start" in r for r in results)
    if wrong:
        print(f"{wrong} joiners started from a state other than the swarm's best")
    for label, values in (("process start -> workspace holds the best", process),
                          ("Node created -> starting from the best", node_part)):
        if len(values) < len(results) or not values:
            verdict = "not met (some joiners never got there)"
        else:
            verdict = "met" if percentile(values, 50) < GOAL_S and max(values) < GOAL_S else "not met"
        print(f"goal < {GOAL_S:.0f} s ({label}, p50 and max): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
