"""Keep only what beats the current best by more than measured noise."""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class NoiseModel:
    sigma: float  # run-to-run standard deviation of val_bpb at the current best
    min_delta: float = 0.002  # never keep an improvement smaller than this
    z: float = 2.0

    @property
    def threshold(self) -> float:
        return max(self.min_delta, self.z * self.sigma)

    def improves(self, value: float, best: float) -> bool:
        return best - value > self.threshold


def estimate_sigma(values: list[float], floor: float = 0.001) -> float:
    """Sample standard deviation of repeated measurements, never below `floor`
    (two seeds can agree by chance; a zero sigma would keep every lucky run)."""
    if len(values) < 2:
        return floor
    return max(floor, statistics.stdev(values))
