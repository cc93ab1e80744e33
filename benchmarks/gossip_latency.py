"""Gossip latency: how long a Discovery takes to reach every other node of a GossipSub swarm.

For each swarm size N: N `SwarmNetwork` hosts (the node's real network layer: noise, yamux,
GossipSub with strict signing, validators and scoring) run in ONE trio process on 127.0.0.1.
Topology `random` (default): host i dials `--degree` distinct random earlier hosts (all of them
while i <= degree), a sparse connected graph fixed by `--seed`. Topology `star`: every host dials
host 0 only, which is what `swarm-node join --bootstrap <one address>` builds (nodes dial only
their bootstrap addresses). After the mesh has formed (every host has min(degree_low, its
connections) mesh peers on the research topic, waited for at most `--mesh-wait` s), K Discovery
messages are published one after the other, each from a random host, signed by that host's key
with author = its peer id. For each message we record, at every other host, the time from just
before `publish()` to the moment the message comes out of that host's `messages` channel
(validated, decoded, de-duplicated): one latency per receipt, N-1 per message. Printed per N:
how long dialing and mesh formation took, p50 / p95 / max over all receipts, the process's CPU use
while publishing, and at the end the goal check at 35 nodes.

By default all hosts share one event loop and so one core: every hop's signing, encryption and
validation is serialised, so the figures include the CPU cost of N hosts in one process (a
pessimistic stand-in for N machines) and whatever else loads the machine. `--processes P` runs the
hosts in P worker processes instead (`--processes N`: one process per host, as N `swarm-node join`
commands would), driven over pipes; receipt times are CLOCK_MONOTONIC, shared by all processes of
the machine. On a machine with fewer cores than processes the hosts still share those cores.

    /work/venv/bin/python benchmarks/gossip_latency.py [--nodes 10,35] [--messages 20] [--seed 1]
                                                        [--degree 3] [--topology random|star]
                                                        [--timeout 5] [--mesh-wait 15] [--processes P]

The code: gossip_hosts.py (the swarm, its messages, the one-process run), gossip_workers.py (the
--processes run); this file parses the options, prints the figures and the goal line.
"""
from __future__ import annotations

import argparse
import logging
from collections import Counter

import trio

from swarm_node.testing import percentile
from gossip_hosts import Outcome, measure
from gossip_workers import measure_processes, worker
from swarm_node import logs
from swarm_node.p2p.gossipsub import MESH_DEGREE

GOAL_NODES, GOAL_P95_MS = 35, 250.0
RUN_TIMEOUT_S = 600.0  # whole run for one N


class WarningCount(logging.Handler):
    """Counts libp2p's warnings by their message template instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg).split("%")[0].strip(" ,:")[:60]] += 1


def report(out: Outcome) -> None:
    n = out.nodes
    dials = out.dials or [0.0]
    sizes = sorted(out.mesh_sizes) or [0]
    print(f"N={n}: connecting {out.links} links took {out.connect_s:.2f} s "
          f"(one dial: p50 {percentile(dials, 50) * 1000:.0f} ms, max {max(dials) * 1000:.0f} ms"
          + (f", {out.failed_dials} failed" if out.failed_dials else "") + ")")
    print(f"N={n}: mesh waited {out.mesh_s:.2f} s; {out.mesh_short} hosts short of a full mesh; "
          f"mesh peers per host min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}")
    receipts = out.sent * (n - 1)
    if out.latencies_ms:
        lat = out.latencies_ms
        print(f"N={n}: {out.sent} messages, {len(lat)}/{receipts} receipts ({out.missing} missing): "
              f"p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, max {max(lat):.1f} ms")
    else:
        print(f"N={n}: {out.sent} messages, no receipts out of {receipts}")
    if out.publish_wall_s > 0:
        print(f"N={n}: CPU while publishing (all processes): {out.publish_cpu_s:.2f} s over "
              f"{out.publish_wall_s:.2f} s of waiting ({100 * out.publish_cpu_s / out.publish_wall_s:.0f}% of one core)")
    if out.warnings:
        print(f"N={n}: libp2p warnings: " + "; ".join(f"{count}x {text!r}" for text, count in out.warnings.most_common(4)))


async def _bounded(n: int, args: argparse.Namespace) -> Outcome | None:
    with trio.move_on_after(RUN_TIMEOUT_S):
        return await (measure_processes(n, args) if args.processes > 1 else measure(n, args))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="10,35", help="comma-separated swarm sizes (default 10,35)")
    parser.add_argument("--messages", type=int, default=20, help="messages per swarm size (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of topology and publishers (default 1)")
    parser.add_argument("--degree", type=int, default=3, help="earlier hosts each host dials (default 3)")
    parser.add_argument("--topology", choices=("random", "star"), default="random")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one message (default 5)")
    parser.add_argument("--mesh-wait", type=float, default=15.0, help="longest wait for the mesh (default 15 s)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes the hosts are spread over (default 1: all in this one)")
    parser.add_argument("--mesh-degree", default=",".join(map(str, MESH_DEGREE)),
                        help="GossipSub D,D_lo,D_hi (default %(default)s, the node's)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the hosts of one worker
    args = parser.parse_args()
    args.mesh_degree = tuple(int(d) for d in args.mesh_degree.split(","))
    if args.worker is not None:
        logs.configure(level="error")
        logging.getLogger("libp2p").setLevel(logging.ERROR)
        trio.run(worker, [int(h) for h in args.worker.split(",")], args.mesh_degree)
        return 0
    sizes = [int(s) for s in args.nodes.split(",") if s.strip()]
    logs.configure(level="warning")  # the hosts' info lines would drown the figures
    libp2p_log = logging.getLogger("libp2p")
    libp2p_log.propagate = False

    print(f"hosts in {'one process' if args.processes <= 1 else f'{args.processes} processes'}, "
          f"topology {args.topology}" + (f" (each host dials {args.degree} earlier ones)" if args.topology == "random"
                                          else " (every host dials host 0)") + f", seed {args.seed}")
    results = {}
    for n in sizes:
        if n < 2:
            print(f"N={n}: skipped (needs at least 2 hosts)")
            continue
        counter = WarningCount()
        libp2p_log.addHandler(counter)
        try:
            outcome = trio.run(_bounded, n, args)
        finally:
            libp2p_log.removeHandler(counter)
        if outcome is None:
            print(f"N={n}: did not finish within {RUN_TIMEOUT_S:.0f} s")
            continue
        outcome.warnings = counter.counts
        report(outcome)
        results[n] = outcome
    goal = results.get(GOAL_NODES)
    if goal is None:
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: not measured (run with --nodes {GOAL_NODES})")
    elif not goal.latencies_ms:
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: not met (no message arrived anywhere)")
    else:
        p95 = percentile(goal.latencies_ms, 95)
        met = p95 < GOAL_P95_MS and goal.missing == 0
        where = "one process" if args.processes <= 1 else f"{min(args.processes, GOAL_NODES)} processes"
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: {'met' if met else 'not met'} "
              f"(p95 {p95:.1f} ms, {goal.missing} missing; hosts in {where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
