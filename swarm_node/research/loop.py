"""The keep/discard loop: propose, check policy, commit, measure, decide, record.

One experiment at a time; between experiments the loop takes in adoptions from peers (the node
feeds them through `adopt`), so the workspace is never touched by two things at once.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

import structlog
import trio

from .claims import ClaimBook
from .hparams import read_block
from .noise import NoiseModel, estimate_sigma
from .policy import check_change
from .proposers.base import PastExperiment, Proposal, ProposalContext, ProposerError, TransferCandidate
from .runner import RunOutcome
from .workspace import Workspace, make_diff, merge3, state_hash

log = structlog.get_logger("swarm_node.loop")

MAX_PROPOSAL_TRIES = 8


def tier_baseline(target_train: str, overrides: dict | None) -> str:
    """The target's train.py with the tier's model size, for the names this target has: where a
    node of that tier starts, and what its policy compares every state with."""
    from .hparams import write_block
    block = read_block(target_train)
    return write_block(target_train, {k: v for k, v in (overrides or {}).items() if k in block})


class BaselineFailed(RuntimeError):
    """The unmodified target does not run here: nothing can be compared against it."""


@dataclass
class LoopSettings:
    budget: float
    tier: str
    role: str
    bench: str  # the benchmark key, JSON, as stored in the ledger
    space: dict
    program: str = ""
    policy: str = "hparams"
    seeds: tuple[int, int] = (0, 1)  # baseline seeds; candidates run the first, confirm with the second
    sigma: float | None = None  # configured noise instead of measuring it at start
    min_delta: float = 0.002
    z: float = 2.0
    confirm: bool = True
    verify_tolerance: float = 0.02  # |re-measured - claimed| allowed on top of z * sigma
    seed: int = 0  # proposers' random seed


@dataclass
class ExperimentRecord:
    id: int
    state: str
    parent: str | None
    description: str
    proposer: str
    status: str
    val_bpb: float | None
    test_bpb: float | None
    seeds: list[int]
    diff: str
    hparams: dict
    reason: str = ""
    memory_gb: float | None = None
    source: str = "local"
    author: str = "local"


class Observer:
    """What the loop tells the outside world; the CLI draws progress, the node publishes."""

    async def experiment_started(self, record: ExperimentRecord, budget: float) -> None: ...
    async def run_started(self, record: ExperimentRecord, seed: int, budget: float) -> None: ...
    async def experiment_finished(self, record: ExperimentRecord) -> None: ...
    async def discovery(self, record: ExperimentRecord, noise: float) -> None: ...


@dataclass
class Head:
    state: str
    commit: str
    val_bpb: float
    test_bpb: float | None


class ResearchLoop:
    def __init__(self, *, ledger, workspace: Workspace, runner, proposers: list, settings: LoopSettings,
                 observer: Observer | None = None, author: str = "local"):
        self.ledger = ledger
        self.workspace = workspace
        self.runner = runner
        self.proposers = proposers
        self.settings = settings
        self.observer = observer or Observer()
        self.author = author
        self.rng = random.Random(settings.seed)
        self.head: Head | None = None
        self.noise: NoiseModel | None = None
        self.transfers: list[TransferCandidate] = []
        self.foreign_states: set[str] = set()  # measured by peers in this benchmark key
        self.claims = ClaimBook(ttl_s=4 * settings.budget + 60)  # what peers are measuring now (a node sets its clock)
        self.finished = 0  # own experiments run by this process (not the baseline, not adoptions)

    # --- start-up -------------------------------------------------------------------------------

    async def prepare(self, target_dir, baseline_overrides: dict | None = None, *,
                      start_source: str | None = None, start_note: str | None = None) -> None:
        """Recover from a previous run (or create the workspace), then make sure a baseline exists.

        A new node may start from `start_source` (the swarm's best) instead of the target's train.py."""
        interrupted = await trio.to_thread.run_sync(self.ledger.recover_interrupted)
        if interrupted:
            log.warning("resumed after an interrupted experiment", interrupted=interrupted)
        if not self.workspace.exists():
            source = start_source or tier_baseline((target_dir / "train.py").read_text(), baseline_overrides)
            await trio.to_thread.run_sync(self.workspace.create, target_dir, source)
        elif start_source is not None:
            start_source = None  # resuming: the workspace is what we started from
        saved = self.ledger.get_meta("head")
        noise = self.ledger.get_meta("noise")
        if saved and noise:
            self.head = Head(**saved)
            self.noise = NoiseModel(sigma=noise["sigma"], min_delta=self.settings.min_delta, z=self.settings.z)
            if self.settings.sigma is not None:
                self.noise = NoiseModel(self.settings.sigma, self.settings.min_delta, self.settings.z)
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
            log.info("resuming from head", state=self.head.state[:12], val_bpb=self.head.val_bpb)
        elif start_source is None:
            await self._measure_baseline(start_note or "baseline")
        else:
            try:
                await self._measure_baseline(start_note or "baseline")
            except BaselineFailed as exc:  # the swarm's best does not run here: start from the target
                log.warning("the swarm's best failed its baseline here; starting from the target's train.py",
                            reason=str(exc).splitlines()[0])
                await trio.to_thread.run_sync(self.workspace.remove)
                await self.prepare(target_dir, baseline_overrides)

    async def _measure_baseline(self, description: str) -> None:
        source = self.workspace.read_train()
        state = state_hash(source)
        commit = await trio.to_thread.run_sync(self.workspace.head_commit)
        self.ledger.add_state(state, source, None, self.author)
        record = self._new_record(Proposal(source, description), "baseline", parent=None, diff="")
        record.id = self.ledger.start_experiment(
            state=state, parent=None, description=description, proposer="baseline", diff="",
            tier=self.settings.tier, bench=self.settings.bench, commit_sha=commit)
        await self.observer.experiment_started(record, self.settings.budget)
        outcomes = [await self._run(record, seed) for seed in self.settings.seeds]
        ok = [o for o in outcomes if o.status == "ok"]
        if len(ok) < len(outcomes):
            tail = next(o for o in outcomes if o.status != "ok")
            self.ledger.finish_experiment(record.id, status="crash", val_bpb=None, test_bpb=None,
                                          memory_gb=None, seeds=list(self.settings.seeds), reason=tail.reason)
            raise BaselineFailed(f"the baseline train.py crashed ({tail.reason}); last output:\n{tail.output_tail[-1500:]}")
        vals = [o.val_bpb for o in ok]
        sigma = self.settings.sigma if self.settings.sigma is not None else estimate_sigma(vals)
        self.noise = NoiseModel(sigma=sigma, min_delta=self.settings.min_delta, z=self.settings.z)
        self.head = Head(state=state, commit=commit, val_bpb=statistics.fmean(vals),
                         test_bpb=_mean([o.test_bpb for o in ok]))
        self._finish(record, "baseline", ok, reason=f"noise sigma {sigma:.4f} from {len(vals)} seeds",
                     meta={"head": self.head.__dict__, "noise": {"sigma": sigma, "values": vals}})
        log.info("baseline measured", val_bpb=round(self.head.val_bpb, 4), sigma=round(sigma, 4),
                 threshold=round(self.noise.threshold, 4))
        await self.observer.experiment_finished(record)

    # --- one experiment -------------------------------------------------------------------------

    def known_states(self, *, respect_claims: bool = True, respect_peers: bool = True) -> set[str]:
        """States not to measure now: ours, peers' results and, while they last, peers' claims."""
        known = self.ledger.measured_states() | {self.head.state}
        if respect_peers:
            known |= self.foreign_states
        if respect_claims:
            known |= self.claims.live()
        return known

    def history(self, limit: int = 200) -> list[PastExperiment]:
        past = []
        for row in self.ledger.experiments(limit):
            if row["status"] in ("running", "refused"):
                continue
            source = self.ledger.state_source(row["state"]) or ""
            try:
                hparams = read_block(source)
            except ValueError:
                hparams = {}
            past.append(PastExperiment(state=row["state"], description=row["description"], hparams=hparams,
                                       val_bpb=row["val_bpb"], status=row["status"], author=self.author))
        return past

    def _context(self, **respect) -> ProposalContext:
        source = self.workspace.read_train()
        return ProposalContext(head_source=source, head_hparams=read_block(source),
                               head_val_bpb=self.head.val_bpb, role=self.settings.role, tier=self.settings.tier,
                               search_space=self.settings.space, history=self.history(),
                               program=self.settings.program, transfers=list(self.transfers),
                               known_states=self.known_states(**respect), rng=self.rng)

    async def _propose(self, skip: set[str]) -> tuple[Proposal, str] | None:
        """The first proposal of the first proposer that has one. Peers' claims and results never
        leave the node idle: when they cover everything, it proposes as if it had not heard them."""
        for respect in ({}, {"respect_claims": False}, {"respect_claims": False, "respect_peers": False}):
            picked = await self._propose_with(skip, respect)
            if picked is not None:
                return picked
        return None

    async def _propose_with(self, skip: set[str], respect: dict) -> tuple[Proposal, str] | None:
        ctx = await trio.to_thread.run_sync(lambda: self._context(**respect))
        for proposer in self.proposers:
            if proposer.name in skip:
                continue
            try:
                proposal = await trio.to_thread.run_sync(proposer.propose, ctx)
            except ProposerError as exc:
                log.warning("proposer failed, trying the next one", proposer=proposer.name, reason=str(exc))
                continue
            if proposal is not None:
                return proposal, proposer.name
        return None

    def _new_record(self, proposal: Proposal, proposer: str, *, parent: str | None, diff: str,
                    source: str = "local", author: str | None = None) -> ExperimentRecord:
        try:
            hparams = read_block(proposal.train_py)
        except ValueError:
            hparams = {}
        return ExperimentRecord(id=0, state=state_hash(proposal.train_py), parent=parent,
                                description=proposal.description, proposer=proposer, status="running",
                                val_bpb=None, test_bpb=None, seeds=[], diff=diff, hparams=hparams,
                                source=source, author=author or self.author)

    async def step(self) -> ExperimentRecord | None:
        """Run one experiment; None when no proposer has anything left to try."""
        strikes: dict[str, int] = {}  # a proposer that keeps repeating itself yields its turn
        for _ in range(MAX_PROPOSAL_TRIES):
            picked = await self._propose({name for name, n in strikes.items() if n >= 2})
            if picked is None:
                return None
            proposal, proposer = picked
            strikes[proposer] = strikes.get(proposer, 0) + 1
            head_src = self.workspace.read_train()
            record = self._new_record(proposal, proposer, parent=self.head.state,
                                      diff=make_diff(head_src, proposal.train_py))
            if record.state in self.known_states(respect_claims=False, respect_peers=False):
                log.info("skipping a state already measured", state=record.state[:12], proposer=proposer)
                continue
            reason = check_change(head_src, proposal.train_py, mode=self.settings.policy, space=self.settings.space)
            if reason:
                self._refuse(record, reason)
                continue
            return await self._experiment(record, proposal.train_py)
        log.warning("no acceptable proposal after several tries", tries=MAX_PROPOSAL_TRIES)
        return None

    def _refuse(self, record: ExperimentRecord, reason: str) -> None:
        """A proposal that breaks the policy is recorded with its reason and never run."""
        record.id = self.ledger.start_experiment(
            state=record.state, parent=record.parent, description=record.description,
            proposer=record.proposer, diff=record.diff, tier=self.settings.tier,
            bench=self.settings.bench, commit_sha=None, source=record.source)
        self.ledger.finish_experiment(record.id, status="refused", val_bpb=None, test_bpb=None,
                                      memory_gb=None, seeds=[], reason=reason)
        record.status, record.reason = "refused", reason
        log.warning("proposal refused by the diff policy", proposer=record.proposer,
                    description=record.description, reason=reason)

    async def _experiment(self, record: ExperimentRecord, source: str) -> ExperimentRecord:
        s = self.settings
        commit = await trio.to_thread.run_sync(self.workspace.commit, source, record.description)
        self.ledger.add_state(record.state, source, record.parent, record.author)
        record.id = self.ledger.start_experiment(
            state=record.state, parent=record.parent, description=record.description,
            proposer=record.proposer, diff=record.diff, tier=s.tier, bench=s.bench,
            commit_sha=commit, source=record.source)
        await self.observer.experiment_started(record, s.budget)
        first = await self._run(record, s.seeds[0])
        outcomes = [first]
        if first.status != "ok":
            status, reason = "crash", first.reason
        elif not self.noise.improves(first.val_bpb, self.head.val_bpb):
            status, reason = "discard", f"{first.val_bpb:.4f} vs best {self.head.val_bpb:.4f} (threshold {self.noise.threshold:.4f})"
        elif not s.confirm:
            status, reason = "keep", "improved (confirmation off)"
        else:
            second = await self._run(record, s.seeds[1])
            outcomes.append(second)
            mean = _mean([o.val_bpb for o in outcomes if o.status == "ok"])
            if second.status == "ok" and self.noise.improves(mean, self.head.val_bpb):
                status, reason = "keep", f"confirmed with a second seed: mean {mean:.4f}"
            else:
                status, reason = "discard", f"did not confirm with a second seed ({second.reason or round(second.val_bpb, 4)})"
        ok = [o for o in outcomes if o.status == "ok"]
        meta = None
        if status == "keep":
            self.head = Head(state=record.state, commit=commit, val_bpb=_mean([o.val_bpb for o in ok]),
                             test_bpb=_mean([o.test_bpb for o in ok]))
            meta = {"head": self.head.__dict__}
        self._finish(record, status, ok, reason=reason, meta=meta)
        if status != "keep":
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
        log.info("experiment", id=record.id, status=status, val_bpb=_round(record.val_bpb),
                 best=round(self.head.val_bpb, 4), description=record.description, reason=reason)
        await self.observer.experiment_finished(record)
        if status == "keep":
            await self.observer.discovery(record, self.noise.sigma)
        return record

    async def _run(self, record: ExperimentRecord, seed: int) -> RunOutcome:
        run_id = self.ledger.start_run(record.id, seed)
        record.seeds.append(seed)
        await self.observer.run_started(record, seed, self.settings.budget)
        outcome = await self.runner.measure(self.workspace.read_train(), seed)
        self.ledger.finish_run(run_id, outcome)
        if outcome.status != "ok":
            log.warning("run crashed", id=record.id, seed=seed, reason=outcome.reason)
        return outcome

    def _finish(self, record: ExperimentRecord, status: str, ok: list[RunOutcome], *, reason: str,
                meta: dict | None) -> None:
        record.status, record.reason = status, reason
        record.val_bpb = _mean([o.val_bpb for o in ok])
        record.test_bpb = _mean([o.test_bpb for o in ok])
        mem = [o.peak_memory_mb for o in ok if o.peak_memory_mb is not None]
        record.memory_gb = round(max(mem) / 1024, 2) if mem else None
        self.ledger.finish_experiment(record.id, status=status, val_bpb=record.val_bpb,
                                      test_bpb=record.test_bpb, memory_gb=record.memory_gb,
                                      seeds=record.seeds, reason=reason, meta=meta)
        if record.proposer not in ("baseline", "adoption"):
            self.finished += 1

    # --- adopting a peer's discovery ------------------------------------------------------------

    async def adopt(self, *, parent_src: str, new_src: str, claimed_val: float, description: str,
                    source: str, author: str, verify: bool = True) -> ExperimentRecord | None:
        """Merge a peer's change onto the head (3-way), re-measure it if asked, adopt if it holds.

        Returns the adoption's record (status `adopted` or `refused`), or None when the discovery
        does not beat the head by more than noise (nothing to do)."""
        if not self.noise.improves(claimed_val, self.head.val_bpb):
            return None
        head_src = self.workspace.read_train()
        merged = merge3(parent_src, head_src, new_src)
        record = self._new_record(Proposal(merged or new_src, f"adopt {author[:8]}: {description}"),
                                  "adoption", parent=self.head.state,
                                  diff=make_diff(head_src, merged or new_src), source=source, author=author)
        reason = "3-way merge conflict with the local head" if merged is None else \
            check_change(head_src, merged, mode=self.settings.policy, space=self.settings.space)
        if reason:
            self._refuse(record, reason)
            return record
        if merged == head_src:
            return None
        if not verify:
            commit = await trio.to_thread.run_sync(self.workspace.commit, merged, record.description)
            self.ledger.add_state(record.state, merged, record.parent, author)
            record.id = self.ledger.start_experiment(
                state=record.state, parent=record.parent, description=record.description, proposer="adoption",
                diff=record.diff, tier=self.settings.tier, bench=self.settings.bench, commit_sha=commit, source=source)
            self.head = Head(record.state, commit, claimed_val, None)
            record.val_bpb = claimed_val
            self.ledger.finish_experiment(record.id, status="adopted", val_bpb=claimed_val, test_bpb=None,
                                          memory_gb=None, seeds=[], reason="adopted without verification",
                                          meta={"head": self.head.__dict__})
            record.status = "adopted"
            await self.observer.experiment_finished(record)
            return record
        commit = await trio.to_thread.run_sync(self.workspace.commit, merged, record.description)
        record.id = self.ledger.start_experiment(
            state=record.state, parent=record.parent, description=record.description, proposer="adoption",
            diff=record.diff, tier=self.settings.tier, bench=self.settings.bench, commit_sha=commit, source=source)
        await self.observer.experiment_started(record, self.settings.budget)
        outcome = await self._run(record, self.settings.seeds[0])
        tolerance = self.settings.verify_tolerance + self.noise.z * self.noise.sigma
        if outcome.status != "ok":
            status, reason = "refused", f"verification run crashed: {outcome.reason}"
        elif abs(outcome.val_bpb - claimed_val) > tolerance:
            status, reason = "refused", f"claimed {claimed_val:.4f}, re-measured {outcome.val_bpb:.4f} (tolerance {tolerance:.4f})"
        elif not self.noise.improves(outcome.val_bpb, self.head.val_bpb):
            status, reason = "refused", f"re-measured {outcome.val_bpb:.4f} does not beat the head {self.head.val_bpb:.4f}"
        else:
            status, reason = "adopted", f"verified: claimed {claimed_val:.4f}, re-measured {outcome.val_bpb:.4f}"
        ok = [outcome] if outcome.status == "ok" else []
        meta = None
        if status == "adopted":  # only now is the state ours to serve to peers
            self.ledger.add_state(record.state, merged, record.parent, author)
            self.head = Head(record.state, commit, outcome.val_bpb, outcome.test_bpb)
            meta = {"head": self.head.__dict__}
        self._finish(record, status, ok, reason=reason, meta=meta)
        if status != "adopted":
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
        log.info("adoption", status=status, author=author[:12], reason=reason)
        await self.observer.experiment_finished(record)
        return record


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def results_rows(ledger) -> list[str]:
    """results.tsv, autoresearch's five columns, derived from the ledger (so a kill never splits them)."""
    rows = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for e in ledger.experiments():
        if e["status"] in ("running", "refused"):
            continue
        commit = (e["commit_sha"] or "-------")[:7]
        val = f"{e['val_bpb']:.6f}" if e["val_bpb"] is not None else "0.000000"
        mem = f"{e['memory_gb']:.1f}" if e["memory_gb"] is not None else "0.0"
        desc = e["description"].replace("\t", " ").replace("\n", " ")
        rows.append(f"{commit}\t{val}\t{mem}\t{e['status']}\t{desc}")
    return rows


def write_results_tsv(ledger, path) -> None:
    from pathlib import Path
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text("\n".join(results_rows(ledger)) + "\n")
    tmp.replace(path)
