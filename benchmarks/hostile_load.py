"""Hostile load: does a flood from many identities slow a node's research or its sync answers?

Two goals from the security issue, each measured against one real `swarm-node join` CLI process
on 127.0.0.1 (its own SWARM_NODE_HOME in a temp dir, --tier cpu --budget 1 --max-seconds 6, listening
on 127.0.0.1:0) on a copy of the toy research target (tests/toy_target: no torch) whose runs sleep
0.5 s and whose INIT="xavier" state does not hang (its `time.sleep(3600)` becomes `pass`), so a
different order of experiments never turns into a timeout.

The attacker is a child process of this script (so its CPU is not the prober's): HostilePeers
(tests/hostile_peer.py, imported by putting tests/ on sys.path) connect to the node and write
pubsub messages straight into its stream, each signed by one of many fresh ed25519 identities
(this script crafts them like HostilePeer.craft, with another key pair), batched into RPCs and
paced under py-libp2p's per-forwarder rate limit. The attacker's peers skip checking what the
node forwards to them (no signatures, validators or decoding), so that on a small machine the
attacker's own CPU takes as little as possible from the node's. The attacker reads the node's
head from the node's ledger (`meta` head, `states`): quicker than anything a remote attacker learns.

1. --part claims: "A claim flood of every reachable state leaves the node's experiment rate within
   20 % of an unflooded node's." The node runs --max-experiments N (default 8, 3 with --quick)
   twice, one after the other: alone, then while the attacker claims every state the node's
   proposers can reach from its current head (every single-name change over the search space's
   grid/choices for the names in the target's block, and every two-name combination of those),
   spread over 40 identities (at most a few claims each per round, under the per-author quota),
   re-claimed every 2 s and at once when the head changes. The attacker starts before the node and
   connects as soon as it prints its address, so its first claims (on the baseline's neighbours)
   arrive before the node's first own experiment (the lead is printed). Rate = own experiments (proposer not
   baseline/adoption, status keep/discard/crash) per minute, from the first one's started_at to
   the last one's finished_at in the ledger. Printed: both rates, their ratio (goal >= 0.8), the
   claims sent and what the node rejected, by reason (ledger `rejections`).

       .venv/bin/python benchmarks/hostile_load.py --part claims [--experiments 8] [--identities 40]

2. --part sync: "Honest sync latency during a 300-discovery flood stays under 100 ms p95." The
   node runs --max-experiments 0 (idle after its baseline). An honest SwarmNetwork peer (subscribed
   to the presence topic only, so the flood the node forwards does not load the prober) asks the
   node `request_best` every 50 ms: before the flood (attacker connected, quiet), during it
   (from the first discovery sent until the node has settled: no verification running, ledger
   counts and the number of waiting discoveries still for 1.5 s; a discovery whose author's
   verification budget is spent waits in the node's pending set until it refills, so a settled
   node may still hold some) and after. The flood: 300 schema-valid, policy-passing Discoveries
   (60 with --quick), 10 per identity (the discovery quota's burst), each a real LEARNING_RATE
   change of the node's head (values spread log-uniformly over [1e-5, 0.05]) with the head as
   parent and claimed runs on every seed of the tier (0-4), each 0.03 below the head's run on that
   seed, so each outranks the head and enters the adoption path (a verification re-runs one seed:
   a false claim). They go through 3 attacker connections at 50 messages/s each (--rate;
   py-libp2p penalises a forwarder above 100/s per topic), so 300 take about 2 s. Printed:
   p50/p95/max per phase (the during phase also split into while-sending and after the last
   send), CPU use of the node, attacker and prober processes per phase, discoveries
   accepted/rejected (by reason)/verified (adoption experiments), how many still wait, and the
   goal check on the during-flood p95 (< 100 ms, and no request failed).

       .venv/bin/python benchmarks/hostile_load.py --part sync [--discoveries 300]

Both parts: `--part both` (the default). `--quick`: 3 experiments and 60 discoveries, short
phases (the smoke test). Timing figures are printed, never asserted.

The code: hostile_common.py (paths, tunables, node and attacker-process helpers), hostile_attacker.py
(the attacker child), hostile_claims.py (part 1), hostile_sync.py (part 2); this file parses the
options and runs the parts.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

# hostile_common first: it puts the repository (swarm_node) and tests/ (HostilePeer) on sys.path
from hostile_common import BATCH, FORWARDERS, PER_FORWARDER_RATE, RUN_SLEEP_S
from hostile_attacker import run_child
from hostile_claims import part_claims
from hostile_sync import part_sync
from swarm_node.testing import toy_target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("claims", "sync", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="3 experiments, 60 discoveries, 2 s phases (smoke test)")
    parser.add_argument("--experiments", type=int, help="--max-experiments of the claims part (default 8)")
    parser.add_argument("--discoveries", type=int, help="discoveries in the flood (default 300)")
    parser.add_argument("--identities", type=int, default=40, help="claiming identities (default 40)")
    parser.add_argument("--forwarders", type=int, default=FORWARDERS,
                        help=f"attacker connections the messages come through (default {FORWARDERS})")
    parser.add_argument("--rate", type=float, default=PER_FORWARDER_RATE,
                        help=f"messages per second on each attacker connection, {BATCH} per RPC (default "
                             f"{PER_FORWARDER_RATE:.0f}; py-libp2p penalises a forwarder above 100)")
    parser.add_argument("--phase-s", type=float, help="seconds of probing before and after the flood (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with homes and logs")
    parser.add_argument("--profile-node", action="store_true",
                        help="run the sync part's node under cProfile (its trio thread): node.prof in the temp dir "
                             "(implies --keep; the profiler slows the node, so its latencies are not the goal's)")
    # the attacker, when this script runs itself as a child process
    parser.add_argument("--child", choices=("claims", "discoveries"), help=argparse.SUPPRESS)
    for name in ("--address", "--home", "--out", "--target-train"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    args.experiments = args.experiments or (3 if args.quick else 8)
    args.discoveries = args.discoveries or (60 if args.quick else 300)
    args.phase_s = args.phase_s or (2.0 if args.quick else 5.0)
    args.keep = args.keep or args.profile_node

    from swarm_node.logs import configure
    configure(level="warning")  # the honest prober's network log stays quiet
    tmp = Path(tempfile.mkdtemp(prefix="hostile_load_"))
    # runs sleep RUN_SLEEP_S, and the xavier state does not hang, so another order of experiments never times out
    target = toy_target(tmp / "toy_target", RUN_SLEEP_S, edits={"    time.sleep(3600)": "    pass"})
    started = time.monotonic()
    print(f"hostile_load: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; temp dir {tmp}", flush=True)
    try:
        if args.part in ("claims", "both"):
            part_claims(tmp, target, args)
        if args.part in ("sync", "both"):
            part_sync(tmp, target, args)
    finally:
        print(f"hostile_load: took {time.monotonic() - started:.1f} s", flush=True)
        if args.keep:
            print(f"homes and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
