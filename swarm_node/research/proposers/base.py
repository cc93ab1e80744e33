"""What every proposer receives and returns.

A proposer never touches the workspace: it returns the full new text of train.py and a one-line
description; the loop checks the diff policy, skips states already measured, commits and runs it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PastExperiment:
    """One measured (or crashed) experiment, as proposers see the history."""

    state: str  # sha256 of train.py
    description: str
    hparams: dict  # the hyperparameter block's values for that state
    val_bpb: float | None  # None for a crash
    status: str  # baseline | keep | discard | crash | adopted | interrupted
    author: str = "local"


@dataclass(frozen=True)
class TransferCandidate:
    """A discovery from another tier (or a peer) that the local tier may want to try."""

    description: str
    hparams_changed: dict  # name -> new value, as seen in the peer's diff
    val_bpb: float
    tier: str
    author: str


@dataclass
class ProposalContext:
    head_source: str  # current train.py (the best state this node runs on)
    head_hparams: dict
    head_val_bpb: float | None
    role: str  # from the tier: e.g. "lr-sweep" or "init-norm"
    search_space: dict  # name -> {"choices": [...]} or {"min": x, "max": y, "kind": "float|int|log"}
    history: list[PastExperiment]
    program: str = ""  # program.md, for LLM proposers
    tier: str = ""
    transfers: list[TransferCandidate] = field(default_factory=list)
    known_states: set[str] = field(default_factory=set)  # measured or claimed anywhere: do not repeat
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True)
class Proposal:
    train_py: str  # the full new text of train.py
    description: str  # one line, shown in results.tsv and the dashboard


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        """Return a new candidate, or None when this proposer has nothing left to try."""
        ...


class ProposerError(Exception):
    """A proposer could not produce a usable proposal (API down, malformed output...).

    The loop logs the reason and falls back to another proposer for this round."""
