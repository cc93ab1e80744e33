"""What the research loop works with: its settings, one experiment's record, the head it
improves, and the observer it tells what it does (the CLI draws progress, the node publishes)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ..messages import BenchKey
from .adoption import Runs
from .budget import Budget
from .decision import Rule


@dataclass
class LoopSettings:
    budget: Budget
    bench: BenchKey  # only experiments of this key are compared
    role: str
    space: dict
    program: str = ""
    policy: str = "hparams"
    decision_seeds: tuple[int, ...] = (0, 1, 2)  # every candidate and the head run on these
    confirm_seeds: tuple[int, ...] = (3, 4)  # fresh seeds that confirm a keep
    rule: Rule = field(default_factory=Rule)
    prior_sd: float | None = None  # the paired-difference SD to assume before history (else from the baseline)
    confirm: bool = True
    repro_tolerance: float = 1e-4  # |re-run - claimed| allowed when verifying a peer (decision.REPRO_TOLERANCE)
    ablate_every: int | None = 4  # run a pending ablation after this many own experiments (and when idle)
    seed: int = 0  # proposers' random seed (and the verifier's choice of seed)

    @property
    def tier(self) -> str:
        return self.bench.tier

    @property
    def seeds(self) -> tuple[int, ...]:
        """All the seeds a head is known on."""
        return self.decision_seeds + (self.confirm_seeds if self.confirm else ())

    def __post_init__(self):
        if set(self.decision_seeds) & set(self.confirm_seeds):
            raise ValueError("confirmation seeds must be fresh: none of them may be a decision seed")


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
    origin: str = "local"  # "local", or the state hash of the peer's discovery this adoption took
    author: str = "local"
    runs: Runs = field(default_factory=dict)  # seed -> (val_bpb, test_bpb), every run that finished
    improvement: float | None = None  # mean paired improvement over the head, every seed compared
    se: float | None = None  # its standard error, from the pooled paired noise


class Observer:
    """What the loop tells the outside world; the CLI draws progress, the node publishes."""

    async def experiment_started(self, record: ExperimentRecord, budget: Budget) -> None: ...
    async def run_started(self, record: ExperimentRecord, seed: int, budget: Budget) -> None: ...
    async def experiment_finished(self, record: ExperimentRecord) -> None: ...
    async def discovery(self, record: ExperimentRecord, noise: float) -> None: ...
    async def effect(self, effect: dict) -> None: ...


@dataclass
class Head:
    state: str
    commit: str
    runs: Runs  # on every seed of the settings

    @property
    def val_bpb(self) -> float:
        return statistics.fmean(v for v, _ in self.runs.values())

    @property
    def test_bpb(self) -> float | None:
        return mean(t for _, t in self.runs.values())

    def vals(self) -> dict[int, float]:
        return vals(self.runs)

    def as_meta(self) -> dict:
        return {"state": self.state, "commit": self.commit, "runs": {str(s): list(r) for s, r in self.runs.items()}}

    @classmethod
    def from_meta(cls, meta: dict) -> Head:
        return cls(meta["state"], meta["commit"], {int(s): (r[0], r[1]) for s, r in meta["runs"].items()})


@dataclass(frozen=True)
class Ablation:
    """Measure what one name of a kept multi-change state contributes: revert it, pair with the state."""

    state: str
    name: str
    parent_value: object
    value: object
    parent: str


def mean(values) -> float | None:
    """The mean of the values that are not None; None if there are none."""
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def vals(runs: Runs) -> dict[int, float]:
    """seed -> val_bpb."""
    return {s: v for s, (v, _) in runs.items()}
