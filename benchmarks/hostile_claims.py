"""hostile_load part 1 (--part claims): a node's experiment rate alone and under a claim flood."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from hostile_common import (CHILD_READY_TIMEOUT_S, EXPERIMENT_TIMEOUT_S, OWN, RATE_GOAL, RUN_SLEEP_S,
                            START_TIMEOUT_S, all_rejections, head_val, rejections, start, start_child,
                            stop_child, suspicious_lines, tail, wait_file)
from swarm_node.testing import NodeProcess, ledger_meta, read_status


def experiment_rate(node: NodeProcess) -> dict:
    rows = node.rows("SELECT * FROM experiments WHERE proposer NOT IN ('baseline', 'adoption') ORDER BY id")
    own = [r for r in rows if r["status"] in OWN and r["finished_at"] is not None]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    out = {"n": len(own), "counts": counts, "rate": None, "span": None}
    if own:
        span = max(r["finished_at"] for r in own) - min(r["started_at"] for r in own)
        out["span"] = span
        out["rate"] = len(own) / span * 60 if span > 0 else None
        out["mean_s"] = statistics.fmean(r["finished_at"] - r["started_at"] for r in own)
        out["states"] = [r["state"] for r in own]
        out["descriptions"] = [r["description"] for r in own]
    out["adoptions"] = len(node.rows("SELECT id FROM experiments WHERE proposer = 'adoption'"))
    head = ledger_meta(node.home, "head") or {}
    out["head_val_bpb"] = head_val(head)
    out["proposers"] = {}
    for r in rows:
        if r["status"] in OWN:
            out["proposers"][r["proposer"]] = out["proposers"].get(r["proposer"], 0) + 1
    return out


def claims_run(tmp: Path, target: Path, n: int, flooded: bool, args) -> dict:
    name = "flooded" if flooded else "unflooded"
    child = None
    out = tmp / "attack-claims"
    if flooded:  # the attacker starts first (imports, identities) and connects once the node prints its address
        out.mkdir()
        child, child_log = start_child(tmp, "claims", [
            "--home", str(tmp / name), "--out", str(out),
            "--identities", str(args.identities), "--forwarders", str(args.forwarders), "--rate", str(args.rate),
            "--target-train", str(target / "train.py"), "--max-seconds", str(60 + EXPERIMENT_TIMEOUT_S * n)])
    node = start(tmp, target, name, "--max-experiments", str(n))
    result: dict = {"name": name}
    live_claims_max = 0
    try:
        address = node.wait(node.printed_address, START_TIMEOUT_S, f"{name}'s address", poll=0.02)
        if flooded:
            tmp_address = out / "address.tmp"
            tmp_address.write_text(address)
            tmp_address.replace(out / "address")
            ready = wait_file(out / "ready.json", CHILD_READY_TIMEOUT_S, child, child_log)
            result["attacker_ready_s"] = time.monotonic() - node.started
        deadline = time.monotonic() + 60 + EXPERIMENT_TIMEOUT_S * n
        while "research finished" not in node.log():
            if node.popen.poll() is not None:
                raise RuntimeError(f"{name} exited ({node.popen.returncode}); log tail:\n{tail(node.log(), 25)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not finish {n} experiments in time; log tail:\n{tail(node.log(), 25)}")
            live_claims_max = max(live_claims_max, read_status(node.home).get("live_claims", 0) or 0)
            time.sleep(0.25)
        result.update(experiment_rate(node))
        first = node.rows("SELECT MIN(started_at) AS t FROM experiments WHERE proposer NOT IN ('baseline', 'adoption')")
        result["first_experiment_at"] = first[0]["t"] if first else None
        result["live_claims_max"] = live_claims_max
        if flooded:
            stop_child(child, out / "stop")
            child = None
            attack = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
            result["attack"] = attack
            if attack.get("t_first") and result["first_experiment_at"]:
                result["claims_lead_s"] = result["first_experiment_at"] - attack["t_first"]
            result["rejected"] = rejections(node.home, set(ready["ids"]) | set(ready["forwarders"]))
            result["banned"] = read_status(node.home).get("banned", [])
        result["all_rejected"] = all_rejections(node.home)
        result["alive"] = node.popen.poll() is None
    finally:
        if child is not None:
            stop_child(child, tmp / "attack-claims" / "stop")
        node.stop()
        result["exit"] = node.popen.returncode
        result["troubles"] = suspicious_lines(node)
        result["stopped_cleanly"] = "stopped: any experiment in flight was recorded as interrupted" in node.log()
    return result


def part_claims(tmp: Path, target: Path, args) -> bool:
    n = args.experiments
    print(f"claims: a node runs {n} experiments (toy runs of {RUN_SLEEP_S} s, --budget 1) alone, then under a "
          f"claim flood from {args.identities} identities through {args.forwarders} connections", flush=True)
    runs = {}
    for flooded in (False, True):
        t = time.monotonic()
        r = claims_run(tmp, target, n, flooded, args)
        runs[r["name"]] = r
        rate = f"{r['rate']:.1f} experiments/min" if r.get("rate") else "no rate"
        print(f"claims: {r['name']}: {r['n']} own experiments {r['counts']} in {r['span'] or 0:.1f} s from the first "
              f"start to the last finish ({rate}, mean {r.get('mean_s', 0):.2f} s each); adoption experiments "
              f"{r['adoptions']}; proposers {r['proposers']}; final head val_bpb {r['head_val_bpb']}; live claims at most "
              f"{r['live_claims_max']}; run took {time.monotonic() - t:.1f} s",
              flush=True)
        if r["name"] == "flooded":
            a = r.get("attack", {})
            per_round = a.get("states_per_round", [])
            print(f"claims: the attacker sent {a.get('sent', '?')} claims in {a.get('rounds', '?')} rounds over "
                  f"{a.get('heads', '?')} heads (states per round {min(per_round, default=0)}-{max(per_round, default=0)}, "
                  f"at most {a.get('per_identity_per_round_max', '?')} per identity per round, "
                  f"{a.get('identities', '?')} identities); attacker ready {r.get('attacker_ready_s', 0):.1f} s after "
                  f"the node started, first claims {r.get('claims_lead_s', float('nan')):.2f} s before the node's first "
                  f"own experiment started; still connected at the end: {a.get('still_connected')}")
            print(f"claims: the node rejected from the attacker, by reason: {r['rejected'] or 'nothing'}; "
                  f"banned: {len(r['banned'])}")
        if r["troubles"] or not r["stopped_cleanly"] or r["exit"] not in (0, None):
            print(f"claims: {r['name']}: exit {r['exit']}, stopped cleanly: {r['stopped_cleanly']}, "
                  f"{len(r['troubles'])} suspicious log lines: {r['troubles'][:5]}")
    base, flood = runs["unflooded"], runs["flooded"]
    same = base.get("states") == flood.get("states")
    print(f"claims: the two runs measured {'the same states in the same order' if same else 'DIFFERENT states'}")
    if not same:
        print(f"  unflooded: {base.get('descriptions')}\n  flooded:   {flood.get('descriptions')}")
    if base.get("rate") and flood.get("rate"):
        ratio = flood["rate"] / base["rate"]
        met = ratio >= RATE_GOAL and flood["n"] >= n
        print(f"claims: flooded/unflooded experiment rate = {flood['rate']:.1f} / {base['rate']:.1f} = {ratio:.2f}")
        print(f"goal claim flood: experiment rate within 20 % of an unflooded node's (ratio >= {RATE_GOAL}): "
              f"{'met' if met else 'NOT met'}")
        return met
    print("goal claim flood: experiment rate within 20 % of an unflooded node's: NOT met (no rate measured)")
    return False
