"""A training budget: how much one run may train, and how long it may take.

Compute mode (the default): a run trains until it has spent `amount` FLOPs, counted by the
target's fixed harness (prepare.py), so the same train.py, seed and corpus give the same result
on a fast or a busy machine; the wall clock only limits a run (past `max_seconds` it is a crash:
too slow for this tier). Time mode (`--budget-mode time`, autoresearch's fixed seconds) is for one
dedicated machine researching alone: its results depend on the machine's speed and load, so they
never share a benchmark key with compute results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODES = ("compute", "time")


@dataclass(frozen=True)
class Budget:
    mode: Literal["compute", "time"]
    amount: float  # training FLOPs (compute) or training seconds (time)
    max_seconds: float  # wall-clock limit of one run, start-up and evaluation included

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"budget mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.amount > 0 or not self.max_seconds > 0:
            raise ValueError(f"a budget must be positive (got {self.amount} and a limit of {self.max_seconds} s)")

    @property
    def unit(self) -> str:
        """How the benchmark key names the amount."""
        return "flops" if self.mode == "compute" else "seconds"

    def env(self) -> dict[str, str]:
        """The harness's settings for one run (prepare.py reads them)."""
        if self.mode == "compute":
            return {"SWARM_BUDGET_FLOPS": str(int(self.amount))}
        return {"SWARM_TIME_BUDGET": repr(float(self.amount))}

    def label(self) -> str:
        return amount_text(self.amount, self.unit)


def amount_text(amount: float, unit: str) -> str:
    """A budget for people: "4.5e+11 FLOPs", "300 s" (`unit` as the benchmark key names it)."""
    return f"{amount:.3g} FLOPs" if unit == "flops" else f"{amount:g} s"
