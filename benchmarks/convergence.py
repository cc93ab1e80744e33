"""Convergence under load: do researching tinygpt nodes on one small machine end on one head?

Three `swarm-node join` processes (the real CLI, tinygpt, --tier cpu, each its own home in a temp
dir, 127.0.0.1) all research; node2 runs with --threads 1, and a busy-loop process (started here,
ended by PID) takes a core for the whole run. Every few seconds the nodes' `swarm-node status
--json` are read. Printed: when (if) all three report the same head, their adoptions and their
re-runs' verdicts, every `false-claim` rejection (goal: none: runs are reproducible, so an honest
peer on a busy machine is never flagged), then a fourth node joins and the state it starts from.

    python benchmarks/convergence.py --data ../shared/data/tinyshakespeare.txt [--minutes 15]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOIN_ARGS: list[str] = []  # --join-args: more flags for every node (e.g. --max-seconds 900 on a crowded machine)
NODE_ARGS = ["--tier", "cpu", "--listen", "/ip4/127.0.0.1/tcp/0", "--presence-interval", "5"]


def start(tmp: Path, name: str, data: str, *args: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "swarm_node.cli", "join", "--data", data, *NODE_ARGS, *JOIN_ARGS,
                             *args],
                            cwd=REPO, env={**os.environ, "SWARM_NODE_HOME": str(tmp / name)},
                            stdout=log, stderr=subprocess.STDOUT)


def status(tmp: Path, name: str) -> dict:
    try:
        return json.loads((tmp / name / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def rows(tmp: Path, name: str, sql: str) -> list[dict]:
    try:
        db = sqlite3.connect(tmp / name / "ledger.sqlite3")
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql)]
        finally:
            db.close()
    except sqlite3.Error:
        return []


def wait_for_address(tmp: Path, name: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"--bootstrap (\S+)", (tmp / f"{name}.log").read_text(errors="replace"))
        if m:
            return m.group(1)
        time.sleep(0.5)
    raise SystemExit(f"{name} printed no address:\n" + (tmp / f"{name}.log").read_text(errors="replace")[-3000:])


def heads(tmp: Path, names) -> dict[str, str | None]:
    return {n: (status(tmp, n).get("head") or {}).get("state") for n in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Tiny Shakespeare")
    parser.add_argument("--minutes", type=float, default=15.0, help="the most the three nodes get to agree")
    parser.add_argument("--experiments", type=int, default=2, help="each node's own experiments (--max-experiments)")
    parser.add_argument("--keep", help="keep the nodes' homes in this folder")
    parser.add_argument("--join-args", default="", help="more flags for every `swarm-node join`, one string")
    args = parser.parse_args()
    JOIN_ARGS.extend(args.join_args.split())
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="swarm-converge-"))
    tmp.mkdir(parents=True, exist_ok=True)
    data = str(Path(args.data).resolve())
    names = ("node1", "node2", "node3")
    procs: list[subprocess.Popen] = []
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    started = time.monotonic()
    agreed_at = None
    try:
        own = ["--max-experiments", str(args.experiments)]
        procs.append(start(tmp, "node1", data, "--seed", "1", *own))
        addr = wait_for_address(tmp, "node1")
        procs.append(start(tmp, "node2", data, "--bootstrap", addr, "--seed", "2", "--threads", "1", *own))
        procs.append(start(tmp, "node3", data, "--bootstrap", addr, "--seed", "3", *own))
        while time.monotonic() - started < args.minutes * 60:
            finished = all(status(tmp, n).get("research") == "finished" for n in names)
            if finished and agreed_at is not None:
                break
            time.sleep(10)
            current = heads(tmp, names)
            same = len(set(current.values())) == 1 and None not in current.values()
            agreed_at = agreed_at or (time.monotonic() - started if same else None)
            agreed_at = agreed_at if same else None
            print(f"{(time.monotonic() - started) / 60:5.1f} min  heads "
                  + "  ".join(f"{n} {(h or '-')[:8]}" for n, h in current.items()), flush=True)
        current = heads(tmp, names)
        print(f"\nafter {(time.monotonic() - started) / 60:.1f} min: heads {'AGREE' if len(set(current.values())) == 1 else 'DIFFER'}"
              + (f" (since {agreed_at / 60:.1f} min)" if agreed_at else ""))
        for n in names:
            st = status(tmp, n)
            adopted = rows(tmp, n, "SELECT reason FROM experiments WHERE status = 'adopted'")
            refused = rows(tmp, n, "SELECT reason FROM experiments WHERE status = 'refused' AND proposer = 'adoption'")
            false = rows(tmp, n, "SELECT COUNT(*) AS c FROM rejections WHERE reason = 'false-claim'")[0]["c"]
            counts = rows(tmp, n, "SELECT status, COUNT(*) AS c FROM experiments GROUP BY status")
            print(f"{n}: head {(st.get('head') or {}).get('state', '-')[:12]} val_bpb "
                  f"{(st.get('head') or {}).get('val_bpb', float('nan')):.4f}; "
                  + ", ".join(f"{r['status']} {r['c']}" for r in counts)
                  + f"; false-claim rejections {false}; banned {st.get('banned')}; noise {st.get('noise')}")
            for r in adopted + refused:
                print(f"    adoption: {r['reason']}")
        procs.append(start(tmp, "node4", data, "--bootstrap", addr, "--max-experiments", "0"))
        deadline = time.monotonic() + 600
        first = []
        while not first and time.monotonic() < deadline:
            time.sleep(2)
            first = rows(tmp, "node4", "SELECT state, description FROM experiments WHERE status = 'baseline'")
        if first:
            print(f"node4 started from {first[0]['state'][:12]} ({first[0]['description']}); "
                  f"the three agreed on {current['node1'][:12] if current['node1'] else '-'}")
        else:
            print("node4 measured no start state within 10 min")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        hog.kill()
        hog.wait()
    print(f"homes and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
