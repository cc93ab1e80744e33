"""End-to-end attacks on one real `swarm-node join` process by real libp2p peers, on 127.0.0.1.

The module-scoped fixture `shared` starts the CLI in a subprocess (--max-experiments 0) on a copy of
the toy target (tests/hostile_node.py) and attacks it from this process (tests/hostile_shared.py)
with HostilePeers (tests/hostile_peer.py) that sign their messages like any peer, relay messages
signed by other fresh identities, and answer the sync protocol as they please. The attacks do not
interfere: source-encoding code execution, rename/binary patches, unverified registers, false claims
from one liar and five newcomers, idle sync streams, a discovery flood, a stale claim. What the node
made of it is read back from its SQLite ledger, its log, `swarm-node status --json`, the file system
and the attacker's own view of the network.

The other attacks on real nodes: claim squatting (tests/test_hostile_squat.py), a hostile bootstrap
peer and a crashing baseline (tests/test_hostile_bootstrap.py). Every fixture records what it needs
and stops its node before the tests read it, so only one node runs at a time on a small machine.
Every wait is bounded in time and count.
"""
from __future__ import annotations

import json
import re
import time

import pytest
import trio

from hostile_node import REFILL_S, NodeProc, start_node, toy_copy
from hostile_shared import ENCODING_VARIANTS, NOT_RUNNABLE, Shared, _run_shared, encoding_attack, runs_payload
from swarm_node.messages import BenchKey, Discovery, state_hash
from swarm_node.research.records import Head
from swarm_node.testing import peer_of


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    target = toy_copy(tmp)
    head_src = (target / "train.py").read_text()
    node = start_node(tmp, target, "--max-experiments", "0")
    s = Shared(node=node, head_src=head_src)
    started = time.monotonic()
    try:
        # is each encoding variant really code execution? (run as the runner would, before sending)
        for variant in ENCODING_VARIANTS:
            marker = tmp / f"PWNED-{variant}"
            s.live[variant] = runs_payload(encoding_attack(head_src, marker, variant), tmp / "live" / variant, marker)
        node.address = node.wait(node.printed_address, 60, "the node's multiaddr")
        node.peer = peer_of(node.address)
        node.wait(lambda: node.rows("SELECT * FROM experiments WHERE status = 'baseline'"), 60, "the baseline")
        s.bench = BenchKey(**node.meta("bench"))
        s.baseline = node.meta("head")["state"]
        assert s.baseline == state_hash(head_src), "the node's head is not the toy target's train.py"
        s.timings["node ready"] = time.monotonic() - started

        async def bounded():
            with trio.fail_after(180):  # the liar's refill wait alone is REFILL_S
                await _run_shared(s, node.address)
        trio.run(bounded)
        s.alive_after = node.alive()
        if s.alive_after:
            s.status = node.status()
        s.timings["total"] = time.monotonic() - started
        print("shared node timings (s):", {k: round(v, 1) for k, v in s.timings.items()})
        yield s
    finally:
        node.stop()


def _adoptions(node: NodeProc, states: list[str]) -> list[dict]:
    marks = ",".join("?" * len(states))
    return node.rows(f"SELECT * FROM experiments WHERE proposer = 'adoption' AND origin IN ({marks})", states)


# ---- 1 -----------------------------------------------------------------------------------------------


def test_source_encoding_code_execution_is_refused_and_never_runs(shared):
    """A PEP 263 declaration on line 1 (as Python counts lines, behind CR, FF, VT, FS, NEL, LS,
    a BOM, utf-7...) turns a comment in the hyperparameter block into code. Each variant is first
    shown to run its payload under plain python; sent as a signed Discovery (parent known to the
    node, or only to the attacker) each must be refused by the validator with a policy: reason."""
    s = shared
    dead = sorted(v for v, ran in s.live.items() if not ran and v not in NOT_RUNNABLE)
    assert not dead, f"these variants do not run their payload even under plain python (harness bug): {dead}"
    assert not any(s.live[v] for v in NOT_RUNNABLE)
    assert s.alive_after, s.node.log()[-4000:]
    policy = [r for r in s.node.rejections(s.coder) if r["reason"].startswith("policy:")]
    assert len(policy) == len(s.encoded), (
        f"{len(s.encoded)} encoding attacks sent, {len(policy)} refused with policy: ; the coder's rejections: "
        f"{s.node.reasons(s.coder)}")
    assert set(s.node.reasons(s.coder)) == {r["reason"] for r in policy}, s.node.reasons(s.coder)
    for name, d in s.encoded.items():
        for table, column in (("discoveries", "state"), ("states", "hash"), ("experiments", "state"),
                              ("experiments", "origin")):
            assert s.node.rows(f"SELECT 1 FROM {table} WHERE {column} = ?", (d.state,)) == [], (name, table)
    assert s.node.meta("head")["state"] == s.baseline
    time.sleep(1.0)  # the node is stopped: anything it started has finished
    ran = [m.name for m in s.markers if m.exists()]
    assert not ran, f"forbidden code ran on the node: {ran}"


# ---- 2 -----------------------------------------------------------------------------------------------


def test_rename_and_binary_patches_are_refused_and_the_node_carries_on(shared):
    s = shared
    for name, error in s.patches_local.items():
        assert error, f"apply_diff accepted the {name} patch"
    assert s.alive_after, s.node.log()[-4000:]
    reasons = [r["reason"] for r in s.node.rejections(s.patcher)]
    policy = [r for r in reasons if r.startswith("policy:")]
    assert len(policy) == len(s.patches), reasons
    assert any("rename" in r for r in policy) and any("binary" in r for r in policy), policy
    for d in s.patches.values():
        assert s.node.rows("SELECT 1 FROM discoveries WHERE state = ?", (d.state,)) == []
    # research goes on: the node still answers sync and verified a later claim after the patches
    assert s.final_best and s.bench.tier in s.final_best, s.final_best
    assert s.node.rows("SELECT id FROM experiments WHERE started_at > ?", (s.patch_sent_at,)), \
        "no experiment started after the patches arrived"
    log = s.node.log()
    assert "could not handle a message" not in log and "a discovery could not be handled" not in log
    assert "Traceback" not in log, log[-4000:]


# ---- 3 -----------------------------------------------------------------------------------------------


def test_the_best_register_holds_only_what_the_node_measured(shared):
    s = shared
    for name, d in s.foreign.items():  # they did arrive
        assert s.node.rows("SELECT 1 FROM discoveries WHERE state = ? AND tier = ?", (d.state, d.bench.tier)), name
    assert s.node.rows("SELECT 1 FROM peers WHERE peer = ?", (s.presence_liar,)), "the boasting Presence never arrived"
    assert s.status is not None
    head = s.node.meta("head")
    assert head["state"] == s.baseline
    best = s.status["best"]
    assert set(best) == {s.bench.tier}, best
    head_val = Head.from_meta(head).val_bpb  # the mean of the head's per-seed runs
    assert best[s.bench.tier]["state"] == head["state"] and best[s.bench.tier]["val_bpb"] == head_val, (best, head)
    assert best[s.bench.tier]["author"] == s.node.peer, best
    rows = s.node.rows("SELECT bench, tier, state, val_bpb FROM best")
    assert [(json.loads(r["bench"]), r["tier"], r["state"]) for r in rows] == \
        [(s.bench.model_dump(), s.bench.tier, s.baseline)], rows
    assert s.final_best is not None and set(s.final_best) == {s.bench.tier}
    assert s.final_best[s.bench.tier].state == s.baseline and s.final_best[s.bench.tier].val_bpb > 1.0


# ---- 4 -----------------------------------------------------------------------------------------------


def _refuted(node: NodeProc, row: dict, lies: list[Discovery]) -> bool:
    """An adoption experiment refused because the one seed it re-ran did not reproduce the claim:
    its reason names the seed, the claimed value (the discovery's for that seed) and a real re-run."""
    match = re.search(r"seed (\d+): claimed ([\d.]+), re-ran ([\d.]+)", row["reason"] or "")
    if row["status"] != "refused" or not match:
        return False
    seed, claimed, rerun = int(match.group(1)), float(match.group(2)), float(match.group(3))
    lie = next(d for d in lies if d.state == row["origin"])
    ran = node.rows("SELECT seed, status, val_bpb FROM runs WHERE experiment_id = ?", (row["id"],))
    return abs({r.seed: r.val_bpb for r in lie.runs}[seed] - claimed) < 1e-6 and rerun > 1.0 and \
        [(r["seed"], r["status"]) for r in ran] == [(seed, "ok")]


def test_false_claims_cost_at_most_the_verification_budget_and_get_the_liar_banned(shared):
    """Each lie claims runs on every seed of the tier, far better than the head: the node re-runs one
    seed of its choosing, which does not reproduce it. One verification, then the liar's budget is
    spent: a lie arriving now is recorded as budget:verify and waits (beyond two waiting ones,
    budget:pending drops it) until a token comes back, when a waiting lie is verified and refuted:
    two false claims, a ban."""
    s = shared
    runs = _adoptions(s.node, [d.state for d in s.lies])
    assert 1 <= len(runs) <= 2, \
        f"{len(runs)} verification runs for one liar's {len(s.lies)} claims (budget: 1, +1 after {REFILL_S} s)"
    assert all(_refuted(s.node, r, s.lies) for r in runs), runs
    order = [r["reason"] for r in s.node.rejections(s.liar)]
    # budget:verify is recorded when a lie arrives over budget (it may arrive while the first one's
    # verification still runs, so before its false-claim); the second false-claim comes after it
    assert order.count("false-claim") == 2, f"no waiting lie was verified once a token came back: {order}"
    last_false_claim = len(order) - 1 - order[::-1].index("false-claim")
    assert "budget:verify" in order and order.index("budget:verify") < last_false_claim, \
        f"the second verification did not wait for the budget: {order}"
    assert set(order) <= {"false-claim", "budget:verify", "budget:pending"}, order
    started = sorted(r["started_at"] for r in runs)
    assert len(started) == 2 and started[1] - started[0] >= REFILL_S - 2, \
        f"the second verification started {started[1] - started[0]:.1f} s after the first (a token takes {REFILL_S} s)"
    assert order.count("budget:verify") <= len(s.lies) - 1, f"a waiting lie was recorded more than once: {order}"
    assert s.liar_cut_off, "the node did not disconnect the peer with two false claims"
    assert any("banning a peer for repeated false claims" in line for line in s.node.log().splitlines())
    assert s.status is not None and s.liar in s.status["banned"], s.status and s.status["banned"]
    assert s.node.rows("SELECT 1 FROM experiments WHERE status = 'adopted'") == []


def test_newcomers_share_one_small_verification_budget(shared):
    s = shared
    ids = [who for who, _ in s.newcomers]
    runs = _adoptions(s.node, [d.state for _, d in s.newcomers])
    assert len(runs) <= 2, f"{len(runs)} verification runs for 5 fresh identities' false claims"
    reasons = s.node.reasons(*ids)
    assert sum(reasons.values()) == len(ids), reasons
    assert reasons.get("budget:verify", 0) >= len(ids) - 2, reasons
    assert reasons.get("false-claim", 0) == len(runs), (reasons, runs)
    assert all(_refuted(s.node, r, [d for _, d in s.newcomers]) for r in runs), runs
    # the ones over budget wait (not dropped) until the shared newcomers' budget refills
    assert s.status is not None and s.status["pending_adoptions"] >= reasons.get("budget:verify", 0), \
        (s.status and s.status["pending_adoptions"], reasons)


# ---- 6 -----------------------------------------------------------------------------------------------


def test_idle_sync_streams_from_one_peer_do_not_block_others(shared):
    s = shared
    assert s.idle_opened >= 3, f"only {s.idle_opened} of 16 idle sync streams opened: the attack did not happen"
    assert s.honest_best is not None, f"the honest sync request failed behind 16 idle streams: {s.honest_error}"
    assert s.bench.tier in s.honest_best
    assert s.honest_best_s < 2.0, f"the honest sync request took {s.honest_best_s:.2f} s"


# ---- 8 -----------------------------------------------------------------------------------------------


def test_a_flood_from_one_author_is_mostly_refused_and_stored_bounded(shared):
    s = shared
    assert s.flood_sent == 150 and min(s.flood_bytes) > 20_000, (s.flood_sent, min(s.flood_bytes))
    assert s.alive_after, s.node.log()[-4000:]
    reasons = s.node.reasons(s.flooder)
    quota = reasons.get("quota", 0)
    policy = sum(n for r, n in reasons.items() if r.startswith("policy:"))
    stored = s.node.rows("SELECT COUNT(*) AS n FROM discoveries WHERE author = ?", (s.flooder,))[0]["n"]
    assert stored <= 12, f"{stored} of the flood's discoveries stored ({reasons})"
    assert stored >= 1, "none of the flood's valid discoveries got through: the flood never reached the node"
    assert quota >= 50, reasons
    assert policy >= 10, reasons
    assert quota + policy >= 75, f"most of 150 should be refused with quota or policy: {reasons}"
    assert stored + sum(reasons.values()) <= s.flood_sent


def test_a_claim_from_1970_is_stale(shared):
    assert shared.stale_sent
    assert shared.node.reasons(shared.patcher).get("stale-timestamp") == 1, shared.node.reasons(shared.patcher)
