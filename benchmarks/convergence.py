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
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarm_node.testing import (NodeProcess, cpu_hogs, ledger_rows, read_status, start_node,  # noqa: E402
                                stop_processes, wait_for)

JOIN_ARGS: list[str] = []  # --join-args: more flags for every node (e.g. --max-seconds 900 on a crowded machine)
NODE_ARGS = ["--tier", "cpu", "--listen", "/ip4/127.0.0.1/tcp/0", "--presence-interval", "5"]


def start(tmp: Path, name: str, data: str, *args: str) -> NodeProcess:
    return start_node(tmp, name, "--data", data, *NODE_ARGS, *JOIN_ARGS, *args)


def status(tmp: Path, name: str) -> dict:
    return read_status(tmp / name)


def rows(tmp: Path, name: str, sql: str) -> list[dict]:
    return ledger_rows(tmp / name, sql, missing_ok=True)


def wait_for_address(node: NodeProcess, timeout: float = 180) -> str:
    return wait_for(node.printed_address, timeout, lambda: f"{node.name} printed no address:\n" + node.log()[-3000:],
                    poll=0.5, error=SystemExit)


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
    procs: list[NodeProcess] = []
    started = time.monotonic()
    agreed_at = None
    with cpu_hogs(1):  # a busy loop takes a core for the whole run
        try:
            own = ["--max-experiments", str(args.experiments)]
            procs.append(start(tmp, "node1", data, "--seed", "1", *own))
            addr = wait_for_address(procs[0])
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
            verdict = "AGREE" if len(set(current.values())) == 1 else "DIFFER"
            print(f"\nafter {(time.monotonic() - started) / 60:.1f} min: heads {verdict}"
                  + (f" (since {agreed_at / 60:.1f} min)" if agreed_at else ""))
            for n in names:
                st = status(tmp, n)
                adopted = rows(tmp, n, "SELECT reason FROM experiments WHERE status = 'adopted'")
                refused = rows(tmp, n, "SELECT reason FROM experiments WHERE status = 'refused' "
                                       "AND proposer = 'adoption'")
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
            stop_processes((node.popen for node in procs), signal.SIGTERM)
    print(f"homes and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
