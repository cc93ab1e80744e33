"""hostile_load part 2 (--part sync): an honest peer's request_best latency during a discovery flood."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from swarm_node.testing import NoSync, percentile
from hostile_common import (BASELINE_TIMEOUT_S, CHILD_READY_TIMEOUT_S, P95_GOAL_MS, SETTLE_TIMEOUT_S,
                            START_TIMEOUT_S, read_rows, rejections, start, start_child, stop_child,
                            suspicious_lines, tail)
from swarm_node.testing import NodeProcess, cpu_seconds, ledger_meta, read_status


def phase_line(label: str, samples: list[tuple[float, float, str | None]]) -> str:
    ok = [ms for _, ms, error in samples if error is None]
    failed = [error for _, _, error in samples if error is not None]
    if not ok:
        return f"sync: {label}: no answered requests ({len(failed)} failed: {failed[:3]})"
    fail = f", {len(failed)} failed ({sorted(set(failed))})" if failed else ""
    return (f"sync: {label}: request_best p50 {percentile(ok, 50):.1f} ms, p95 {percentile(ok, 95):.1f} ms, "
            f"max {max(ok):.1f} ms (n={len(ok)}{fail})")


def settled_fingerprint(home: Path) -> tuple | None:
    """What changes while the node still works on the flood; None while a verification is running.

    Discoveries whose author's verification budget is spent wait in the node's pending set until it
    refills (minutes), so a settled node may still hold some: their number is part of the fingerprint."""
    if read_rows(home, "SELECT id FROM experiments WHERE status = 'running'"):
        return None
    rows = read_rows(home, "SELECT (SELECT COUNT(*) FROM rejections) AS a, (SELECT COUNT(*) FROM discoveries) AS b, "
                           "(SELECT COUNT(*) FROM receipts) AS c, (SELECT COUNT(*) FROM experiments) AS d")
    if not rows:
        return None
    return (*rows[0].values(), read_status(home).get("pending_adoptions"))


async def sync_probe(tmp: Path, node: NodeProcess, address: str, target_train: Path, args) -> dict:
    import trio
    from libp2p.crypto.ed25519 import create_new_key_pair

    from swarm_node.messages import PRESENCE_TOPIC
    from swarm_node.p2p.network import SwarmNetwork
    from swarm_node.p2p.sync import SyncError

    honest = SwarmNetwork(create_new_key_pair(), topics=[PRESENCE_TOPIC], listen=["/ip4/127.0.0.1/tcp/0"],
                          sync_provider=NoSync())
    samples: list[tuple[float, float, str | None]] = []  # (wall time sent, ms, error)
    marks: dict = {}
    out = tmp / "attack-discoveries"
    out.mkdir()
    child = None

    def mark(name: str) -> None:
        marks[name] = time.time()
        marks.setdefault("cpu", {})[name] = {"node": cpu_seconds(node.popen.pid), "prober": time.process_time(),
                                             "attacker": cpu_seconds(child.pid) if child else 0.0}

    async def probe(peer: str) -> None:
        while True:
            sent = time.time()
            t0 = trio.current_time()
            error = None
            try:
                await honest.request_best(peer)
            except SyncError as exc:
                error = exc.reason
            samples.append((sent, (trio.current_time() - t0) * 1000, error))
            await trio.sleep(0.05)

    async def wait_settled() -> None:
        last, stable_since = None, None
        while True:
            fingerprint = await trio.to_thread.run_sync(settled_fingerprint, node.home)
            now = trio.current_time()
            if fingerprint is None or fingerprint != last:
                last, stable_since = fingerprint, now
            elif now - stable_since >= 1.5:
                return
            await trio.sleep(0.25)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(honest.run)
            peer = await honest.connect(address)
            child, child_log = start_child(tmp, "discoveries", [
                "--address", address, "--home", str(node.home), "--out", str(out),
                "--identities", str(math.ceil(args.discoveries / 10)), "--forwarders", str(args.forwarders),
                "--rate", str(args.rate),
                "--discoveries", str(args.discoveries), "--target-train", str(target_train),
                "--max-seconds", str(SETTLE_TIMEOUT_S + 120)])
            with trio.fail_after(CHILD_READY_TIMEOUT_S):
                while not (out / "ready.json").exists():
                    if child.poll() is not None:
                        raise RuntimeError(f"the attacker exited ({child.returncode}); log tail:\n"
                                           f"{tail(child_log.read_text(errors='replace'), 25)}")
                    await trio.sleep(0.05)
            marks["ready"] = json.loads((out / "ready.json").read_text())
            nursery.start_soon(probe, peer)
            mark("before")
            await trio.sleep(args.phase_s)
            mark("go")
            (out / "go").touch()
            with trio.fail_after(60):
                while not (out / "sent.json").exists():
                    if child.poll() is not None:
                        raise RuntimeError(f"the attacker exited ({child.returncode}) mid-flood")
                    await trio.sleep(0.02)
            marks["sent"] = json.loads((out / "sent.json").read_text())
            mark("flooded")
            with trio.move_on_after(SETTLE_TIMEOUT_S) as settle:
                await wait_settled()
            marks["settle_timed_out"] = settle.cancelled_caught
            mark("settled")
            await trio.sleep(args.phase_s)
            mark("after")
            marks["connected_at_end"] = peer in honest.connected_peers()
            nursery.cancel_scope.cancel()
    finally:
        if child is not None:
            await trio.to_thread.run_sync(stop_child, child, out / "stop")
    marks["samples"] = samples
    return marks


def part_sync(tmp: Path, target: Path, args) -> bool:
    import trio

    n = args.discoveries
    print(f"sync: an idle node (--max-experiments 0); an honest peer asks request_best every 50 ms; flood of {n} "
          f"discoveries from {math.ceil(n / 10)} identities through {args.forwarders} connections at "
          f"{args.rate:.0f} messages/s each", flush=True)
    node = start(tmp, target, "sync", "--max-experiments", "0",
                 python=["-m", "cProfile", "-o", str(tmp / "node.prof")] if args.profile_node else [])
    verdict = False
    try:
        address = node.wait(node.printed_address, START_TIMEOUT_S, "the node's address", poll=0.1)
        node.wait(lambda: ledger_meta(node.home, "head"), BASELINE_TIMEOUT_S, "the node's baseline", poll=0.1)
        node.wait(lambda: "research finished" in node.log(), BASELINE_TIMEOUT_S, "the node to go idle", poll=0.1)
        since = time.time()
        t = time.monotonic()
        marks = trio.run(sync_probe, tmp, node, address, target / "train.py", args)
        took = time.monotonic() - t
        samples = marks["samples"]
        sent = marks["sent"]
        ready = marks["ready"]
        before = [s for s in samples if marks["before"] <= s[0] < marks["go"]]
        during = [s for s in samples if marks["go"] <= s[0] < marks["settled"]]
        after = [s for s in samples if marks["settled"] <= s[0] < marks["after"]]
        print(f"sync: flood of {sent['sent']} discoveries sent in {sent['t_last'] - sent['t_first']:.2f} s; the node "
              f"settled {marks['settled'] - sent['t_last']:.1f} s after the last one"
              f"{' (TIMED OUT waiting to settle)' if marks['settle_timed_out'] else ''}; whole probe {took:.1f} s")
        t_last = sent["t_last"]
        print(phase_line(f"before ({marks['go'] - marks['before']:.1f} s)", before))
        print(phase_line(f"during ({marks['settled'] - marks['go']:.1f} s)", during))
        print(phase_line(f"  of which while sending ({t_last - marks['go']:.1f} s)", [s for s in during if s[0] < t_last]))
        print(phase_line(f"  of which after the last send ({marks['settled'] - t_last:.1f} s)",
                         [s for s in during if s[0] >= t_last]))
        print(phase_line(f"after  ({marks['after'] - marks['settled']:.1f} s)", after))
        cpu = marks["cpu"]
        for a, b, label in (("before", "go", "before"), ("go", "settled", "during"), ("go", "flooded", "while sending"),
                            ("settled", "after", "after")):
            seconds = marks[b] - marks[a]
            use = {who: 100 * (cpu[b][who] - cpu[a][who]) / seconds for who in ("node", "attacker", "prober")}
            print(f"sync: CPU {label}: node process {use['node']:.0f}% of one core, attacker {use['attacker']:.0f}%, "
                  f"prober {use['prober']:.0f}% (trainings excluded; {os.cpu_count()} cores)")
        peers = set(ready["ids"]) | set(ready["forwarders"])
        states = set(ready["states"])
        accepted = [r for r in read_rows(node.home, "SELECT state, author FROM discoveries") if r["state"] in states]
        rejected = rejections(node.home, peers, since)
        adoptions = [r for r in read_rows(node.home, "SELECT origin, status, reason FROM experiments WHERE "
                                          "proposer = 'adoption'") if r["origin"] in states]
        by_status: dict[str, int] = {}
        for r in adoptions:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        status = read_status(node.home)
        print(f"sync: head val_bpb {ready['head_val_bpb']:.4f}, each discovery claims {ready['claimed_val_bpb']:.4f} "
              f"(the mean of its runs on seeds {ready['seeds']}, each 0.03 below the head's)")
        print(f"sync: the node accepted {len(accepted)} of {sent['sent']} discoveries into its ledger; rejected, by "
              f"reason: {rejected or 'nothing'}; verified {len(adoptions)} (adoption experiments: "
              f"{by_status or 'none'}); banned {len(status.get('banned', []))} of {len(peers)} attacker ids; "
              f"honest peer still connected: {marks['connected_at_end']}; waiting for a verification budget "
              f"to refill: {status.get('pending_adoptions', '?')}")
        unaccounted = sent["sent"] - len(accepted) - sum(v for k, v in rejected.items() if not k.startswith(
            ("budget:", "false-claim", "parent-", "bad-patch", "state-mismatch", "error:")))
        if unaccounted:
            print(f"sync: {unaccounted} discoveries neither in the ledger nor rejected at the gossip layer "
                  f"(e.g. dropped by py-libp2p's queues or ignored as duplicates)")
        ok = [ms for _, ms, error in during if error is None]
        failed = [s for s in during if s[2] is not None]
        if not ok:
            print("goal sync during a discovery flood: p95 < 100 ms: NOT met (no answered requests during the flood)")
        else:
            p95 = percentile(ok, 95)
            verdict = p95 < P95_GOAL_MS and not failed
            print(f"goal sync during a {sent['sent']}-discovery flood: p95 < {P95_GOAL_MS:.0f} ms "
                  f"(measured {p95:.1f} ms{f', {len(failed)} requests failed' if failed else ''}): "
                  f"{'met' if verdict else 'NOT met'}")
        alive = node.popen.poll() is None
    finally:
        node.stop()
    troubles = suspicious_lines(node)
    clean = "stopped: any experiment in flight was recorded as interrupted" in node.log()
    if troubles or not clean or node.popen.returncode != 0:
        print(f"sync: node exit {node.popen.returncode}, stopped cleanly: {clean}, {len(troubles)} suspicious log "
              f"lines: {troubles[:5]}")
    elif not alive:
        print("sync: the node had exited before the end of the probe")
    return verdict
