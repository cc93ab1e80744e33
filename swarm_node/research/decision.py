"""Keep or discard on paired multi-seed differences, never on one lucky seed.

A candidate and the head run on the same seeds; each seed gives one paired difference
(head - candidate: positive means the candidate is better). The candidate is kept only if the mean
difference over the decision seeds exceeds max(min_delta, t * SE), with SE from the standard
deviation of paired differences pooled over the node's history, and then only if fresh seeds
that took no part in the decision agree. Runs are reproducible, so a (state, seed) pair is a fact
and a difference between two states on one seed is one too: all the noise is across seeds.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

# |re-run - claimed| a verifier allows, per device type. CPU: this machine gave identical values
# across thread counts and load (benchmarks/reproducibility.py); other CPUs may pick other kernels
# (unmeasured), so a margin far below seed-to-seed noise. CUDA/MPS: unmeasured here (no GPU).
REPRO_TOLERANCE = {"cpu": 1e-4, "cuda": 2e-3, "mps": 2e-3}

PRIOR_DF = 2  # what a configured prior (--prior-sd) counts for until history replaces it

# One-sided 97.5 % quantiles of Student's t: with few pooled differences the SD is itself
# uncertain, so the multiplier grows (a guessed SD must not keep lucky candidates).
_T975 = ((1, 12.71), (2, 4.30), (3, 3.18), (4, 2.78), (5, 2.57), (6, 2.45), (8, 2.31), (10, 2.23),
         (15, 2.13), (20, 2.09), (30, 2.04), (60, 2.00))


def t_quantile(df: int) -> float:
    for limit, t in _T975:
        if df <= limit:
            return t
    return 1.96


@dataclass
class PairedNoise:
    """The pooled SD of paired differences: each experiment's differences around their own mean,
    plus a prior (`prior_df` degrees of freedom at `prior_sd`) that history gradually outweighs."""

    prior_sd: float
    sum_sq: float = 0.0
    df: int = 0
    prior_df: int = PRIOR_DF

    @classmethod
    def from_baseline(cls, values: list[float], floor: float = 0.001) -> PairedNoise:
        """The prior: two independent runs differ by sqrt(2) times the baseline's spread across seeds
        (pairing on seeds only makes differences smaller, so this errs on the safe side)."""
        spread = statistics.stdev(values) if len(values) >= 2 else floor
        # the spread of n baseline seeds is itself an estimate with n - 1 degrees of freedom
        return cls(prior_sd=max(floor, math.sqrt(2) * spread), prior_df=max(1, len(values) - 1))

    @property
    def sd(self) -> float:
        return math.sqrt((self.sum_sq + self.prior_df * self.prior_sd ** 2) / (self.df + self.prior_df))

    @property
    def total_df(self) -> int:
        return self.df + self.prior_df

    def add(self, differences: list[float]) -> None:
        """One experiment's paired differences (after its decision: they never judge themselves)."""
        if len(differences) < 2:
            return
        mean = statistics.fmean(differences)
        self.sum_sq += sum((d - mean) ** 2 for d in differences)
        self.df += len(differences) - 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    min_delta: float = 0.002  # never keep an improvement smaller than this (bits per byte)
    t: float = 2.0  # at least this many standard errors; more while the pooled SD rests on few differences


@dataclass(frozen=True)
class Comparison:
    seeds: tuple[int, ...]
    differences: tuple[float, ...]  # head - candidate, per seed
    improvement: float  # their mean
    se: float
    threshold: float
    passed: bool

    def describe(self) -> str:
        return (f"paired improvement {self.improvement:+.4f} over seeds {list(self.seeds)} "
                f"(threshold {self.threshold:.4f}, SE {self.se:.4f})")


def paired(head: dict[int, float], candidate: dict[int, float], seeds) -> list[float]:
    missing = [s for s in seeds if s not in head or s not in candidate]
    if missing:
        raise KeyError(f"seeds {missing} are not measured for both states")
    return [head[s] - candidate[s] for s in seeds]


def decide(head: dict[int, float], candidate: dict[int, float], seeds, noise: PairedNoise, rule: Rule) -> Comparison:
    """The decision: mean paired improvement over `seeds` above max(min_delta, t * SE)."""
    seeds = tuple(seeds)
    diffs = paired(head, candidate, seeds)
    se = noise.sd / math.sqrt(len(diffs))
    threshold = max(rule.min_delta, max(rule.t, t_quantile(noise.total_df)) * se)
    improvement = statistics.fmean(diffs)
    return Comparison(seeds, tuple(diffs), improvement, se, threshold, improvement > threshold)


def confirm(head: dict[int, float], candidate: dict[int, float], fresh_seeds, noise: PairedNoise,
            rule: Rule) -> Comparison:
    """The confirmation on fresh seeds: their mean paired improvement must exceed min_delta too, so
    a candidate that passed the decision by luck on its seeds is caught here."""
    seeds = tuple(fresh_seeds)
    diffs = paired(head, candidate, seeds)
    improvement = statistics.fmean(diffs)
    se = noise.sd / math.sqrt(len(diffs))
    return Comparison(seeds, tuple(diffs), improvement, se, rule.min_delta, improvement > rule.min_delta)


def mean_over(values: dict[int, float], seeds) -> float:
    return statistics.fmean(values[s] for s in seeds)
