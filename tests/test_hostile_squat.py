"""Claim squatting against a real `swarm-node join` process on 127.0.0.1.

The module-scoped fixture `squat` starts a fresh node whose bootstrap peer is slow to answer `best`
and, meanwhile, has 100+ fresh identities (4 live claims each) claim every state the node's
proposers could reach from its head. The node must go on experimenting all the same.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

import pytest
import trio

from hostile_node import CPU_EXPLORE, NodeProc, _fail, bench_of, start_node, toy_copy
from hostile_peer import BestServer, Identity, send_batched
from swarm_node.assets import load_config
from swarm_node.messages import PRESENCE_TOPIC, Claim, state_hash
from swarm_node.wire import encode
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.proposers.base import ProposalContext
from swarm_node.research.proposers.evolve import EvolveProposer
from swarm_node.research.proposers.heuristic import HeuristicProposer, grid_by_distance


def reachable_states(head_src: str) -> dict[str, str]:
    """Every state the heuristic and evolve proposers can propose from `head_src` with an empty
    history: single changes to any grid value or choice of the role's names, learning rates as
    evolve draws them (head * 2**u, two significant digits), and every pair of such changes."""
    space = load_config("search_space")
    head = read_block(head_src)
    names = [n for n in CPU_EXPLORE if n in head and n in space]
    values = {n: list(grid_by_distance(n, head[n], space)) for n in names}
    lr = head["LEARNING_RATE"]
    steps = 100_000
    draws = {min(max(float(f"{lr * 2 ** (-1 + 2 * i / steps):.2g}"), space["LEARNING_RATE"]["min"]),
                 space["LEARNING_RATE"]["max"]) for i in range(steps + 1)}
    values["LEARNING_RATE"] += sorted(v for v in draws if v not in values["LEARNING_RATE"] and v != lr)
    changes = [{n: v} for n in names for v in values[n]]
    changes += [{a: va, b: vb} for i, a in enumerate(names) for b in names[i + 1:]
                for va in values[a] for vb in values[b]]
    states = {}
    for c in changes:
        src = write_block(head_src, c)
        if src != head_src:
            states[state_hash(src)] = ", ".join(f"{k}={v!r}" for k, v in c.items())
    return states


def proposers_blocked(head_src: str, claimed: set[str], tries: int = 30) -> bool:
    """True if neither proposer finds anything from `head_src` while `claimed` is respected."""
    space = load_config("search_space")
    for seed in range(tries):
        ctx = ProposalContext(head_source=head_src, head_hparams=read_block(head_src), head_val_bpb=2.5,
                              role="init-norm", search_space=space, history=[], tier="cpu",
                              known_states=claimed | {state_hash(head_src)}, rng=random.Random(seed))
        for proposer in (HeuristicProposer(CPU_EXPLORE), EvolveProposer(CPU_EXPLORE)):
            if proposer.propose(ctx) is not None:
                return False
    return True


@dataclass
class Squat:
    node: NodeProc | None
    head_src: str = ""
    claimed: dict = field(default_factory=dict)
    identities: int = 0
    squatter: str = ""
    claims_done_at: float = 0.0
    max_live_claims: int = 0
    finished_in_time: bool = False
    experiments: list = field(default_factory=list)
    baseline_done_at: float = 0.0
    timings: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def squat(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("squat")
    # runs of 1 s (a baseline is 5 of them, an experiment 3 to 5) and a bootstrap peer slow to
    # answer `best`: time for every claim to arrive before the node's first proposal (that this
    # held is checked, not assumed)
    target = toy_copy(tmp, SLEEP_SECONDS=1.0)
    head_src = (target / "train.py").read_text()
    bench = bench_of(target)
    research = bench.topic()
    started = time.monotonic()
    states = reachable_states(head_src)
    claims, authors, ids = [], [], list(states)
    for i in range(0, len(ids), 4):  # the book keeps 4 live claims per peer: one identity per 4
        who = Identity()
        authors.append(who.id)
        for state in ids[i:i + 4]:
            claims.append(who.sign(research, encode(Claim(author=who.id, ts=time.time(), bench=bench,
                                                          state=state, parent=state_hash(head_src),
                                                          description=f"measuring {states[state]}"))))
    squatter = BestServer([PRESENCE_TOPIC, research], delay=4.5)
    sq = Squat(node=None, head_src=head_src, claimed=states, identities=len(authors), squatter=squatter.id)
    sq.timings["crafted"] = time.monotonic() - started

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(squatter.net.run)
            addr = squatter.net.listen_addrs()[0]
            sq.node = node = start_node(tmp, target, "--bootstrap", addr, "--max-experiments", "3",
                                        "--max-seconds", "5")
            await node.wait_async(lambda: squatter.net.connected_peers(), 30, "the node to dial its bootstrap peer")
            node.peer = squatter.net.connected_peers()[0]
            await squatter.net.wait_for_subscriber(node.peer, research, timeout=10)
            sq.timings["node connected"] = time.monotonic() - started
            await send_batched(squatter, node.peer, claims, batch=16, pause=0.15)
            sq.claims_done_at = time.time()
            sq.timings["claims sent"] = time.monotonic() - started

            def done() -> bool:
                try:
                    live = json.loads((node.home / "status.json").read_text()).get("live_claims", 0)
                    sq.max_live_claims = max(sq.max_live_claims, live)
                except (OSError, ValueError):
                    pass
                return "research finished" in node.log()
            sq.finished_in_time = await node.until(done, 60)
            sq.timings["finished"] = time.monotonic() - started
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
        node = sq.node
        sq.experiments = node.rows("SELECT * FROM experiments WHERE proposer NOT IN ('baseline', 'adoption')"
                                   " ORDER BY id")
        base = node.rows("SELECT finished_at FROM experiments WHERE status = 'baseline'")
        sq.baseline_done_at = base[0]["finished_at"] if base else 0.0
        print("squat timings (s):", {k: round(v, 1) for k, v in sq.timings.items()},
              f"{len(claims)} claims from {len(authors)} identities")
        yield sq
    finally:
        if sq.node is not None:
            sq.node.stop()


def test_claim_squatting_never_idles_the_node(squat):
    q = squat
    # the attack is real: every state either proposer could try is claimed
    assert proposers_blocked(q.head_src, set(q.claimed)), "the claims leave the proposers something: no squat"
    assert q.node.reasons(q.squatter) == {}, f"claims were refused: {q.node.reasons(q.squatter)}"
    assert q.max_live_claims >= len(q.claimed), \
        f"the node held at most {q.max_live_claims} live claims of {len(q.claimed)} sent"
    finished = [e for e in q.experiments if e["status"] in ("keep", "discard", "crash")]
    assert finished, _fail(q.node, "no experiment ran under the claims")
    first = q.experiments[0]
    assert first["started_at"] > q.claims_done_at, \
        "harness race: the node started experimenting before every claim was sent (attack not exercised)"
    assert first["state"] in q.claimed, "the first experiment was not a claimed state: claims did not cover it"
    assert q.finished_in_time and len(finished) >= 3, \
        _fail(q.node, f"{len(finished)} experiments finished within 60 s of the claims: "
                      f"{[e['status'] for e in q.experiments]}")
    third = finished[2]["finished_at"]
    assert third - q.claims_done_at < 45, f"three experiments took {third - q.claims_done_at:.0f} s after the claims"
    idle = first["started_at"] - max(q.baseline_done_at, q.claims_done_at)
    assert idle < 10, f"the node idled {idle:.0f} s before its first experiment"
