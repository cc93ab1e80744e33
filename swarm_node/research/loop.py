"""The keep/discard loop: propose, check policy, commit, measure on several seeds, decide, record.

One experiment at a time; between experiments the loop takes in peers' discoveries (the intake,
research/swarm.py, feeds them through `adopt`), so the workspace is never touched by two things
at once. Running and recording each run is lab.py's. Runs are
reproducible (a compute budget), so a (state, seed) pair is a fact: the head keeps its per-seed
values and every decision pairs a candidate with the head on the same seeds (decision.py).
"""
from __future__ import annotations

import math
import random
import statistics

import structlog
import trio

from .adoption import Offer, Outcome, Runs, Verdict, rank, rebases, reproduces
from .decision import PairedNoise, confirm, decide
from .hearsay import Hearsay
from .hparams import changed_names, read_block, write_block
from .policy import check_change
from .proposers.base import PastExperiment, Proposal, ProposalContext, ProposerError, TransferCandidate
from .lab import Lab
from .records import Ablation, ExperimentRecord, Head, LoopSettings, Observer, vals
from .target import tier_baseline
from ..messages import state_hash
from .workspace import Workspace, make_diff
from ..status import Status

log = structlog.get_logger("swarm_node.loop")

MAX_PROPOSAL_TRIES = 8
MAX_QUEUED = 32  # rebase proposals and ablations waiting (oldest dropped)


class BaselineFailed(RuntimeError):
    """The unmodified target does not run here: nothing can be compared against it."""


class ResearchLoop:
    def __init__(self, *, ledger, workspace: Workspace, runner, proposers: list, settings: LoopSettings,
                 observer: Observer | None = None, author: str = "local", hearsay: Hearsay | None = None):
        """`hearsay`: what peers tell this node (a node's clock and trust); alone, nobody tells it anything."""
        self.ledger = ledger
        self.workspace = workspace
        self.runner = runner
        self.proposers = proposers
        self.settings = settings
        self.lab = Lab(ledger, workspace, runner, settings, hearsay or Hearsay(ttl_s=settings.budget.max_seconds))
        self.hearsay = self.lab.hearsay
        self.lab.observer, self.lab.author = observer or Observer(), author
        self.rng = random.Random(settings.seed)
        self.head: Head | None = None
        self.noise: PairedNoise | None = None
        self.transfers: list[TransferCandidate] = []
        self.rebases: list[Proposal] = []  # own kept changes a new head lacks, to re-measure on it
        self.ablations: list[Ablation] = []
        self._since_ablation = 0  # own experiments since the last ablation
        self.finished = 0  # own experiments run by this process (not the baseline, not adoptions)

    @property
    def observer(self) -> Observer:
        return self.lab.observer

    @property
    def author(self) -> str:
        """Who this node is to its peers: its libp2p peer id in a swarm, "local" alone."""
        return self.lab.author

    def join_swarm(self, author: str, observer: Observer) -> None:
        """The loop of a node in a swarm: its peer id is the author of what it measures, and
        `observer` tells the swarm what it does."""
        self.lab.author, self.lab.observer = author, observer

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
        saved, noise = self.ledger.get_meta("head"), self.ledger.get_meta("noise")
        if saved and noise:
            self.head, self.noise = Head.from_meta(saved), PairedNoise(**noise)
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
            log.info("resuming from head", state=self.head.state[:12], val_bpb=round(self.head.val_bpb, 4))
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
        s = self.settings
        source = self.workspace.read_train()
        commit = await trio.to_thread.run_sync(self.workspace.head_commit)
        self.ledger.add_state(state_hash(source), source, None, self.author)
        record = self.lab.record(Proposal(source, description), "baseline", parent=None, diff="")
        record.id = self.lab.start(record, commit)
        await self.observer.experiment_started(record, s.budget)
        crash = await self.lab.measure(record, s.seeds)
        if crash is not None:
            self.lab.finish(record, Status.CRASH, reason=crash.reason)
            raise BaselineFailed(f"the baseline train.py crashed ({crash.reason}); last output:\n{crash.output_tail[-1500:]}")
        vals = [v for v, _ in record.runs.values()]
        self.noise = PairedNoise(prior_sd=s.prior_sd) if s.prior_sd is not None else PairedNoise.from_baseline(vals)
        self.head = Head(record.state, commit, dict(record.runs))
        self.lab.finish(record, Status.BASELINE, reason=f"prior SD of paired differences {self.noise.sd:.4f} "
                     f"from {len(vals)} seeds", meta=self._meta())
        log.info("baseline measured", val_bpb=round(self.head.val_bpb, 4), seeds=list(s.seeds),
                 prior_sd=round(self.noise.sd, 4))
        await self.observer.experiment_finished(record)

    def _meta(self) -> dict:
        return {"head": self.head.as_meta(), "noise": self.noise.as_dict()}

    # --- what to try ----------------------------------------------------------------------------

    def known_states(self, *, respect_claims: bool = True, respect_peers: bool = True) -> set[str]:
        """States not to measure now: ours, peers' results and, while they last, peers' claims."""
        known = self.ledger.measured_states() | {self.head.state}
        if respect_peers:
            known |= self.hearsay.measured
        if respect_claims:
            known |= self.hearsay.claims.live()
        return known

    def history(self, limit: int = 200) -> list[PastExperiment]:
        past = []
        for row in self.ledger.experiments(limit):
            if row["status"] in (Status.RUNNING, Status.REFUSED):
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
        """A queued rebase first, else the first proposal of the first proposer that has one. Peers'
        claims and results never leave the node idle: when they cover everything, it proposes as
        if it had not heard them."""
        while self.rebases:
            proposal = self.rebases.pop(0)
            if state_hash(proposal.train_py) not in self.known_states(respect_claims=False, respect_peers=False):
                return proposal, "rebase"
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

    # --- one experiment -------------------------------------------------------------------------

    async def step(self) -> ExperimentRecord | None:
        """Run one experiment (or a pending ablation); None when there is nothing left to try."""
        every = self.settings.ablate_every
        if self.ablations and every and self._since_ablation >= every:
            self._since_ablation = 0
            return await self._ablate(self.ablations.pop(0))
        strikes: dict[str, int] = {}  # a proposer that keeps repeating itself yields its turn
        for _ in range(MAX_PROPOSAL_TRIES):
            picked = await self._propose({name for name, n in strikes.items() if n >= 2})
            if picked is None:
                break
            proposal, proposer = picked
            strikes[proposer] = strikes.get(proposer, 0) + 1
            head_src = self.workspace.read_train()
            record = self.lab.record(proposal, proposer, parent=self.head.state,
                                      diff=make_diff(head_src, proposal.train_py))
            if record.state in self.known_states(respect_claims=False, respect_peers=False):
                log.info("skipping a state already measured", state=record.state[:12], proposer=proposer)
                continue
            reason = check_change(head_src, proposal.train_py, mode=self.settings.policy, space=self.settings.space)
            if reason:
                self.lab.refuse(record, reason)
                continue
            self._since_ablation += 1
            return await self._experiment(record, proposal.train_py)
        else:
            log.warning("no acceptable proposal after several tries", tries=MAX_PROPOSAL_TRIES)
        if self.ablations:  # nothing better to do: measure what a combined keep's parts bring
            return await self._ablate(self.ablations.pop(0))
        return None

    async def _experiment(self, record: ExperimentRecord, source: str) -> ExperimentRecord:
        s = self.settings
        commit = await self.lab.commit(record, source)
        self.finished += 1
        await self.observer.experiment_started(record, s.budget)
        head = self.head.vals()
        differences: list[float] = []
        crash = await self.lab.measure(record, s.decision_seeds)
        if crash is not None:
            status, reason = Status.CRASH, crash.reason
        else:
            decision = decide(head, vals(record.runs), s.decision_seeds, self.noise, s.rule)
            differences += decision.differences
            status, reason = (Status.KEEP if decision.passed else Status.DISCARD), decision.describe()
            if decision.passed and s.confirm and s.confirm_seeds:
                crash = await self.lab.measure(record, s.confirm_seeds)
                if crash is not None:
                    status, reason = Status.DISCARD, f"a confirmation run crashed: {crash.reason}"
                else:
                    check = confirm(head, vals(record.runs), s.confirm_seeds, self.noise, s.rule)
                    differences += check.differences
                    status = Status.KEEP if check.passed else Status.DISCARD
                    reason += f"; fresh seeds {'confirm' if check.passed else 'do not confirm'}: " \
                              f"{check.improvement:+.4f} over {list(check.seeds)}"
        if differences:
            record.improvement = statistics.fmean(differences)
            record.se = self.noise.sd / math.sqrt(len(differences))
        self.noise.add(differences)  # after the decision: a result never judges itself
        parent = self.head
        if status == Status.KEEP:
            self.head = Head(record.state, commit, dict(record.runs))
        self.lab.finish(record, status, reason=reason, meta=self._meta())
        if status != Status.KEEP:
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
        log.info("experiment", id=record.id, status=status, val_bpb=record.val_bpb and round(record.val_bpb, 4),
                 best=round(self.head.val_bpb, 4), description=record.description, reason=reason)
        await self.observer.experiment_finished(record)
        if status == Status.KEEP:
            await self._credit(record, parent, differences)
            await self.observer.discovery(record, self.noise.sd)
        return record

    def offer_head(self, author: str) -> None:
        """Our head into the register of our benchmark key (what peers' `best` requests are answered with)."""
        self.ledger.offer_best(self.settings.bench, self.head.state, self.head.val_bpb, self.head.test_bpb, author)

    # --- honest credit --------------------------------------------------------------------------

    async def _credit(self, record: ExperimentRecord, parent: Head, differences: list[float]) -> None:
        """A keep that changed one name measured that name's effect; a combined keep queues ablations."""
        changed = changed_names(self.ledger.state_source(parent.state) or "", self.workspace.read_train())
        if len(changed) == 1:
            (name, (old, new)), = changed.items()
            se = self.noise.sd / len(differences) ** 0.5
            await self._record_effect(record.state, parent.state, name, new, statistics.fmean(differences), se,
                                      sorted(record.runs), "single")
        else:
            for name, (old, new) in changed.items():
                self.ablations.append(Ablation(record.state, name, old, new, parent.state))
            del self.ablations[:-MAX_QUEUED]

    async def _record_effect(self, state, parent, name, value, effect, se, seeds, kind) -> None:
        row = dict(bench=self.settings.bench, state=state, parent=parent, name=name, value=value,
                   effect=effect, se=se, seeds=seeds, kind=kind)
        self.ledger.record_effect(**row)
        log.info("effect measured", name=name, value=value, effect=round(effect, 4), se=round(se, 4), kind=kind)
        await self.observer.effect(row)

    async def _ablate(self, job: Ablation) -> ExperimentRecord | None:
        """The kept state with one name reverted, paired with the state on the decision seeds."""
        s = self.settings
        kept_source = self.ledger.state_source(job.state)
        kept = self._known_runs(job.state)
        if kept_source is None or kept is None:
            return None
        source = write_block(kept_source, {job.name: job.parent_value})
        record = self.lab.record(Proposal(source, f"ablation: {job.name} back to {job.parent_value!r}"),
                                  "ablation", parent=job.state, diff=make_diff(kept_source, source))
        await self.lab.commit(record, source)
        await self.observer.experiment_started(record, s.budget)
        crash = await self.lab.measure(record, s.decision_seeds)
        reason = f"a run crashed: {crash.reason}" if crash else ""
        if crash is None:
            diffs = [record.runs[x][0] - kept[x] for x in s.decision_seeds]  # ablated - kept: what the name brings
            effect, se = statistics.fmean(diffs), self.noise.sd / len(diffs) ** 0.5
            self.noise.add(diffs)
            reason = f"{job.name}={job.value!r} brings {effect:+.4f} (SE {se:.4f}) over seeds {list(s.decision_seeds)}"
        self.lab.finish(record, Status.CRASH if crash else Status.DISCARD, reason=reason, meta=self._meta())
        await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
        await self.observer.experiment_finished(record)
        if crash is None:
            await self._record_effect(job.state, job.parent, job.name, job.value, effect, se,
                                      list(s.decision_seeds), "ablation")
        return record

    def _known_runs(self, state: str) -> dict[int, float] | None:
        if self.head.state == state:
            return self.head.vals()
        runs = {r["seed"]: r["val_bpb"] for r in self.ledger.state_runs(state) if r["status"] == "ok"}
        return runs if all(x in runs for x in self.settings.decision_seeds) else None

    # --- adopting a peer's discovery: rebase onto the better head ------------------------------

    def outranks_head(self, runs: Runs, state: str) -> bool:
        """Whether claimed per-seed values would beat the head in the register's order."""
        mine = rank(self.head.runs, self.settings.seeds, self.head.state)
        theirs = rank(runs, self.settings.seeds, state)
        return theirs is not None and mine is not None and theirs < mine

    async def adopt(self, offer: Offer, *, verify: bool = True) -> Outcome:
        """Move the head to a peer's better state if a seed we choose reproduces its claim.

        Not better (or not comparable: a seed of ours missing) is silent. Otherwise one claimed
        seed, picked here, is re-run; a mismatch is a false claim, a crash or timeout here is
        nobody's fault. Adopted: our own kept changes the new head lacks become proposals on it."""
        s = self.settings
        if offer.state == self.head.state or not self.outranks_head(offer.runs, offer.state):
            return Outcome(Verdict.NOT_BETTER, "does not beat the head over this tier's seeds")
        head_src = self.workspace.read_train()
        record = self.lab.record(Proposal(offer.source, f"adopt {offer.author[:8]}: {offer.description}"),
                                  "adoption", parent=self.head.state, diff=make_diff(head_src, offer.source),
                                  origin=offer.state, author=offer.author)
        commit = await self.lab.commit(record, offer.source, serve=False)
        runs = dict(offer.runs)
        if verify:
            seed = self.rng.choice(sorted(s.seeds))
            await self.observer.experiment_started(record, s.budget)
            outcome = await self.lab.run(record, seed, reuse=False)
            if outcome.status != "ok":
                verdict, detail = Verdict.FAILED_TO_RUN, f"our re-run of seed {seed} failed here: {outcome.reason}"
            else:
                measured = (outcome.val_bpb, outcome.test_bpb)
                record.runs[seed] = measured
                if reproduces(offer.runs[seed], measured, s.repro_tolerance):
                    verdict, detail = Verdict.ADOPTED, f"seed {seed} reproduced ({measured[0]:.6f})"
                    runs[seed] = measured
                else:
                    verdict, detail = Verdict.FALSE_CLAIM, (
                        f"seed {seed}: claimed {offer.runs[seed][0]:.6f}, re-ran {measured[0]:.6f} "
                        f"(tolerance {s.repro_tolerance:g})")
        else:
            verdict, detail = Verdict.ADOPTED, "adopted without verification"
        measured_runs = dict(record.runs)
        if verdict is Verdict.ADOPTED:  # only now is the state ours to serve to peers
            old = self.head
            self.ledger.add_state(offer.state, offer.source, old.state, offer.author)
            self.head = Head(offer.state, commit, {x: runs[x] for x in s.seeds})
            record.runs = dict(self.head.runs)
            self.rebases += rebases(self.ledger, self.ledger.state_source(old.state) or "", offer.source)
            del self.rebases[:-MAX_QUEUED]
        self.lab.finish(record, Status.ADOPTED if verdict is Verdict.ADOPTED else Status.REFUSED, reason=detail,
                     meta=self._meta() if verdict is Verdict.ADOPTED else None)
        if verdict is not Verdict.ADOPTED:
            await trio.to_thread.run_sync(self.workspace.reset_to, self.head.commit)
        log.info("adoption", verdict=verdict.value, author=offer.author[:12], detail=detail)
        await self.observer.experiment_finished(record)
        return Outcome(verdict, detail, record, measured_runs)
