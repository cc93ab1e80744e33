"""Running and recording experiments: a ledger row for each experiment and each run, every run on
the runner (or, outside a verification, a proven peer's report of that state and seed: runs are
reproducible), the observer told as each run starts. What to run and what to keep is the loop's.
"""
from __future__ import annotations

import structlog
import trio

from ..messages import state_hash
from ..status import Status
from .hearsay import Hearsay
from .hparams import read_block
from .proposers.base import Proposal
from .records import ExperimentRecord, LoopSettings, Observer, mean
from .runner import RunOutcome
from .workspace import Workspace

log = structlog.get_logger("swarm_node.lab")


class Lab:
    def __init__(self, ledger, workspace: Workspace, runner, settings: LoopSettings, hearsay: Hearsay):
        self.ledger = ledger
        self.workspace = workspace
        self.runner = runner
        self.settings = settings
        self.hearsay = hearsay
        self.observer = Observer()
        self.author = "local"

    async def commit(self, record: ExperimentRecord, source: str, *, serve: bool = True) -> str:
        """`source` committed as the workspace's train.py and the experiment started. `serve`: store the
        state as ours to serve to peers now (a peer's, being verified, only once it is adopted)."""
        commit = await trio.to_thread.run_sync(self.workspace.commit, source, record.description)
        if serve:
            self.ledger.add_state(record.state, source, record.parent, record.author)
        record.id = self.start(record, commit)
        return commit

    def record(self, proposal: Proposal, proposer: str, *, parent: str | None, diff: str,
               origin: str = "local", author: str | None = None) -> ExperimentRecord:
        try:
            hparams = read_block(proposal.train_py)
        except ValueError:
            hparams = {}
        return ExperimentRecord(id=0, state=state_hash(proposal.train_py), parent=parent,
                                description=proposal.description, proposer=proposer, status=Status.RUNNING,
                                val_bpb=None, test_bpb=None, seeds=[], diff=diff, hparams=hparams,
                                origin=origin, author=author or self.author)

    def refuse(self, record: ExperimentRecord, reason: str) -> None:
        """A proposal that breaks the policy is recorded with its reason and never run."""
        record.id = self.start(record, None)
        record.status, record.reason = Status.REFUSED, reason
        self.ledger.finish_experiment(record.id, status=Status.REFUSED, val_bpb=None, test_bpb=None,
                                      memory_gb=None, seeds=[], reason=reason)
        log.warning("proposal refused by the diff policy", proposer=record.proposer,
                    description=record.description, reason=reason)

    def start(self, record: ExperimentRecord, commit: str | None) -> int:
        return self.ledger.start_experiment(
            state=record.state, parent=record.parent, description=record.description, proposer=record.proposer,
            diff=record.diff, bench=self.settings.bench, commit_sha=commit, origin=record.origin)

    async def measure(self, record: ExperimentRecord, seeds) -> RunOutcome | None:
        """Run (or reuse a trusted peer's report of) each seed in turn; the first crash, or None."""
        for seed in seeds:
            if seed in record.runs:
                continue
            outcome = await self.run(record, seed)
            if outcome.status != "ok":
                return outcome
            record.runs[seed] = (outcome.val_bpb, outcome.test_bpb)
        return None

    async def run(self, record: ExperimentRecord, seed: int, *, reuse: bool = True) -> RunOutcome:
        """One run; `reuse`: a trusted peer's report of this (state, seed) stands in for it (never when
        the run is the verification of a claim: then the claim itself would be the report)."""
        run_id = self.ledger.start_run(record.id, seed)
        record.seeds.append(seed)
        reported = self.hearsay.run(record.state, seed) if reuse else None
        if reported is not None:  # runs are reproducible: a trusted peer's (state, seed) is a fact
            val, test, author = reported
            outcome = RunOutcome(status="ok", val_bpb=val, test_bpb=test, output_tail=f"reported by {author}")
        else:
            await self.observer.run_started(record, seed, self.settings.budget)
            outcome = await self.runner.measure(self.workspace.read_train(), seed)
        self.ledger.finish_run(run_id, outcome)
        if outcome.status != "ok":
            log.warning("run crashed", id=record.id, seed=seed, reason=outcome.reason)
        elif outcome.peak_memory_mb is not None:
            record.memory_gb = max(record.memory_gb or 0.0, round(outcome.peak_memory_mb / 1024, 2))
        return outcome

    def finish(self, record: ExperimentRecord, status: str, *, reason: str, meta: dict | None = None) -> None:
        record.status, record.reason = status, reason
        record.val_bpb = mean(v for v, _ in record.runs.values())
        record.test_bpb = mean(t for _, t in record.runs.values())
        self.ledger.finish_experiment(record.id, status=status, val_bpb=record.val_bpb,
                                      test_bpb=record.test_bpb, memory_gb=record.memory_gb,
                                      seeds=record.seeds, reason=reason, meta=meta)
