"""The loop's decisions, verification and rebase, with no libp2p host: a real ledger, a real git
workspace and a runner that answers from a table of per-seed values (reproducible runs)."""
import trio

from swarm_node.ledger import Ledger
from swarm_node.messages import BenchKey, SeedRun, state_hash
from swarm_node.research.adoption import Offer, Verdict, admit
from swarm_node.research.budget import Budget
from swarm_node.research.decision import Rule
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.loop import ResearchLoop
from swarm_node.research.records import LoopSettings
from swarm_node.research.proposers.base import Proposal
from swarm_node.research.runner import RunOutcome
from swarm_node.research.workspace import Workspace, make_diff

from conftest import TOY_TARGET

BASE = (TOY_TARGET / "train.py").read_text()
SEEDS = (0, 1, 2, 3, 4)
NOISE = {0: 0.010, 1: -0.006, 2: 0.004, 3: -0.008, 4: 0.002}  # per seed, shared by every state (paired)


def value(hparams: dict, seed: int) -> float:
    """A known landscape: each name's change has a fixed effect; the seed shifts every state alike,
    plus a small state-and-seed term so that paired differences are not exactly constant."""
    v = 3.0 + NOISE[seed]
    v -= 0.05 * (hparams["NORM"] == "rmsnorm") + 0.03 * (hparams["INIT"] == "kaiming")
    v -= 0.08 * (hparams["LEARNING_RATE"] == 0.006)
    v += 0.1 * (hparams["LEARNING_RATE"] < 0.0005)
    v += 0.0005 * ((hash((hparams["LEARNING_RATE"], seed)) % 7) - 3) / 3
    return round(v, 6)


class TableRunner:
    def __init__(self, workspace: Workspace, crash_states=()):
        self.workspace = workspace
        self.crash_states = set(crash_states)
        self.calls: list[tuple[str, int]] = []

    async def measure(self, train_py: str, seed: int) -> RunOutcome:
        assert self.workspace.read_train() == train_py
        self.calls.append((state_hash(train_py), seed))
        if state_hash(train_py) in self.crash_states:
            return RunOutcome(status="crash", reason="too slow for this tier: no result within 5 s")
        v = value(read_block(train_py), seed)
        return RunOutcome(status="ok", val_bpb=v, test_bpb=v + 0.01)


class Scripted:
    name = "scripted"

    def __init__(self, *changes):
        self.changes = list(changes)

    def propose(self, ctx):
        if not self.changes:
            return None
        change = self.changes.pop(0)
        return Proposal(write_block(ctx.head_source, change), ", ".join(f"{k} -> {v!r}" for k, v in change.items()))


def make_loop(tmp_path, *changes, crash_states=()):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    workspace = Workspace(tmp_path / "ws")
    runner = TableRunner(workspace, crash_states)
    settings = LoopSettings(budget=Budget("compute", 1e9, 5.0), role="init-norm",
                            bench=BenchKey(target="toy", corpus="c" * 64, tier="cpu", budget=10**9, unit="flops",
                                           device="cpu", torch="2.13.0"),
                            space={"NORM": {"choices": ["layernorm", "rmsnorm"]},
                                   "INIT": {"choices": ["normal", "kaiming"]},
                                   "LEARNING_RATE": {"min": 1e-4, "max": 1e-2, "kind": "log"}},
                            rule=Rule(min_delta=0.002, t=2.0), ablate_every=None)
    loop = ResearchLoop(ledger=ledger, workspace=workspace, runner=runner, proposers=[Scripted(*changes)],
                        settings=settings, author="me")
    return loop, runner


def run(coro_fn, *args):
    return trio.run(coro_fn, *args)


def test_a_real_effect_is_kept_after_fresh_seeds_and_a_null_one_discarded_on_the_decision_seeds(tmp_path):
    loop, runner = make_loop(tmp_path, {"NORM": "rmsnorm"}, {"LEARNING_RATE": 0.0011})

    async def main():
        await loop.prepare(TOY_TARGET)
        assert sorted(loop.head.runs) == list(SEEDS)
        kept = await loop.step()
        null = await loop.step()
        return kept, null

    kept, null = run(main)
    assert kept.status == "keep" and sorted(kept.runs) == list(SEEDS), kept.reason
    assert "fresh seeds confirm" in kept.reason
    assert null.status == "discard" and sorted(null.runs) == [0, 1, 2]  # never reached the fresh seeds
    assert loop.head.state == kept.state
    assert abs(loop.head.val_bpb - sum(value(read_block(loop.workspace.read_train()), s) for s in SEEDS) / 5) < 1e-12
    assert loop.noise.df == 4 + 2  # the keep's 5 differences and the discard's 3, each centred
    effects = loop.ledger.effects()
    assert [(e["name"], e["kind"]) for e in effects] == [("NORM", "single")]
    assert abs(effects[0]["effect"] - 0.05) < 0.002


def test_a_combined_keep_is_ablated_name_by_name(tmp_path):
    loop, runner = make_loop(tmp_path, {"NORM": "rmsnorm", "INIT": "kaiming", "LEARNING_RATE": 0.0012})

    async def main():
        await loop.prepare(TOY_TARGET)
        kept = await loop.step()
        ablations = [await loop.step() for _ in range(3)]
        return kept, ablations, await loop.step()

    kept, ablations, nothing = run(main)
    assert kept.status == "keep"
    assert all(a.proposer == "ablation" and a.status == "discard" for a in ablations)
    assert nothing is None and loop.head.state == kept.state  # ablations never move the head
    effects = {e["name"]: e["effect"] for e in loop.ledger.effects() if e["kind"] == "ablation"}
    assert abs(effects["NORM"] - 0.05) < 0.002 and abs(effects["INIT"] - 0.03) < 0.002
    assert abs(effects["LEARNING_RATE"]) < 0.002


def _peer_offer(loop, change, *, lie: float = 0.0, author="peer"):
    source = write_block(BASE, change)
    runs = {s: (value(read_block(source), s) - lie, value(read_block(source), s) - lie + 0.01) for s in SEEDS}
    return Offer(state_hash(source), source, runs, "peer change", author)


def test_a_better_peer_state_is_adopted_whatever_a_merge_would_say_and_our_keep_is_rebased(tmp_path):
    loop, runner = make_loop(tmp_path, {"NORM": "rmsnorm"})

    async def main():
        await loop.prepare(TOY_TARGET)
        await loop.step()  # our keep: NORM
        # the peer changed LEARNING_RATE (which we never touched) and INIT, on the target's baseline:
        # no common history beyond the baseline, and it is better than our head
        offer = _peer_offer(loop, {"INIT": "kaiming", "NORM": "rmsnorm", "LEARNING_RATE": 0.002})
        assert loop.outranks_head(offer.runs, offer.state)
        outcome = await loop.adopt(offer)
        return offer, outcome

    offer, outcome = run(main)
    assert outcome.verdict is Verdict.ADOPTED, outcome.detail
    assert loop.head.state == offer.state and loop.workspace.read_train() == offer.source
    assert len(outcome.measured) == 1  # one seed, chosen by us, re-ran
    assert not loop.rebases  # the new head already has NORM=rmsnorm


def test_own_keeps_the_new_head_lacks_become_proposals_on_it(tmp_path):
    loop, runner = make_loop(tmp_path, {"NORM": "rmsnorm"})

    async def main():
        await loop.prepare(TOY_TARGET)
        await loop.step()  # our keep: NORM (-0.05)
        outcome = await loop.adopt(_peer_offer(loop, {"LEARNING_RATE": 0.006}))  # -0.08, without NORM
        rebased = await loop.step()
        return outcome, rebased

    outcome, rebased = run(main)
    assert outcome.verdict is Verdict.ADOPTED, outcome.detail
    assert rebased.proposer == "rebase" and rebased.description.startswith("rebase: NORM")
    assert rebased.status == "keep", rebased.reason  # NORM still helps on the new head
    assert read_block(loop.workspace.read_train()) == read_block(write_block(BASE, {
        "LEARNING_RATE": 0.006, "NORM": "rmsnorm"}))


def test_a_claim_that_a_re_run_does_not_reproduce_is_a_false_claim(tmp_path):
    loop, runner = make_loop(tmp_path)

    async def main():
        await loop.prepare(TOY_TARGET)
        return await loop.adopt(_peer_offer(loop, {"INIT": "kaiming"}, lie=0.00011))

    outcome = run(main)
    # every claimed seed is 0.00011 too good (over the 1e-4 tolerance): whichever seed we re-run exposes it
    assert outcome.verdict is Verdict.FALSE_CLAIM and outcome.verdict.offence, outcome.detail
    assert loop.workspace.read_train() == BASE and read_block(loop.workspace.read_train())["INIT"] == "normal"


def test_not_better_and_failed_to_run_are_not_offences(tmp_path):
    worse = write_block(BASE, {"LEARNING_RATE": 0.0002})
    kaiming = write_block(BASE, {"INIT": "kaiming"})
    loop, runner = make_loop(tmp_path, crash_states=[state_hash(kaiming)])

    async def main():
        await loop.prepare(TOY_TARGET)
        not_better = await loop.adopt(_peer_offer(loop, {"LEARNING_RATE": 0.0002}))
        failed = await loop.adopt(_peer_offer(loop, {"INIT": "kaiming"}))
        return not_better, failed

    not_better, failed = run(main)
    assert state_hash(worse) != loop.head.state
    assert not_better.verdict is Verdict.NOT_BETTER and not not_better.verdict.offence
    assert failed.verdict is Verdict.FAILED_TO_RUN and not failed.verdict.offence
    assert "too slow" in failed.detail
    assert loop.workspace.read_train() == BASE


def test_admit_refuses_what_does_not_patch_or_hash_or_pass_the_policy():
    new = write_block(BASE, {"INIT": "kaiming"})
    diff = make_diff(BASE, new)
    space = {"INIT": {"choices": ["normal", "kaiming"]}}
    source, refused = admit(BASE, diff, state_hash(new), root_source=BASE, policy="hparams", space=space)
    assert source == new and refused is None
    _, refused = admit(BASE, diff, "0" * 64, root_source=BASE, policy="hparams", space=space)
    assert refused.verdict is Verdict.STATE_MISMATCH
    _, refused = admit(BASE, diff.replace("@@ -", "@@ -9"), state_hash(new), root_source=BASE, policy="hparams",
                       space=space)
    assert refused.verdict is Verdict.BAD_PATCH and refused.verdict.offence
    code = BASE.replace("import math", "import math, os")
    _, refused = admit(BASE, make_diff(BASE, code), state_hash(code), root_source=BASE, policy="hparams", space=space)
    assert refused.verdict is Verdict.POLICY


def test_a_verification_re_runs_even_when_a_trusted_peer_reported_that_seed(tmp_path):
    """Reported runs stand in for our own only outside verification: otherwise a proven peer's
    claim would be checked against itself."""
    loop, runner = make_loop(tmp_path)
    offer = _peer_offer(loop, {"INIT": "kaiming"}, lie=0.01)
    loop.hearsay.trusted = lambda author: author == "peer"
    loop.hearsay.measured_by_peer(offer.state, [SeedRun(seed=s, val_bpb=v, test_bpb=t) for s, (v, t) in offer.runs.items()],
                                  "peer")
    assert loop.hearsay.run(offer.state, 0) is not None  # outside a verification, this run would be reused

    async def main():
        await loop.prepare(TOY_TARGET)
        return await loop.adopt(offer)

    outcome = run(main)
    assert outcome.verdict is Verdict.FALSE_CLAIM, outcome.detail
    assert runner.calls[-1][0] == offer.state  # really trained

