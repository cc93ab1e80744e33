"""Hardware-aware heuristic proposer: a coordinate search over the role's hyperparameters.

It first tries transfer candidates (what peers found on other tiers), then, for each name the
tier's role explores, the grid values nearest the current one (fresh values before ones already
discarded elsewhere; values that crashed never again). After a keep the head changes and
the search starts again from there, so this is coordinate descent around the best.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

from ..hparams import write_block
from ...messages import state_hash
from .base import Proposal, ProposalContext


def describe(changes: dict, current: dict) -> str:
    return ", ".join(f"{name} {current.get(name)!r} -> {value!r}" for name, value in changes.items())


def grid_by_distance(name: str, current, space: dict) -> list:
    """Grid values other than `current`, nearest first (log distance for positive numbers)."""
    spec = space.get(name, {})
    values = list(spec.get("choices", spec.get("grid", [])))
    values = [v for v in values if not (v == current and type(v) is type(current))]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values + [current]):
        def distance(v):
            if v > 0 and current > 0:
                return abs(math.log(v) - math.log(current))
            return abs(v - current)
        values.sort(key=distance)
        if isinstance(current, float):
            values = [float(v) for v in values]
    return values


class HeuristicProposer:
    name = "heuristic"

    def __init__(self, explore: list[str]):
        self.explore = explore

    def _candidates(self, ctx: ProposalContext) -> Iterator[tuple[dict, str]]:
        for t in sorted(ctx.transfers, key=lambda t: t.val_bpb):
            changes = {k: v for k, v in t.hparams_changed.items()  # what the head does not already have
                       if k in ctx.head_hparams and not (ctx.head_hparams[k] == v and type(ctx.head_hparams[k]) is type(v))}
            if changes:
                yield changes, f"transfer from {t.tier} ({t.author[:8]}): {describe(changes, ctx.head_hparams)}"
        # Values that crashed anywhere are not retried; values already discarded at another head
        # come after the fresh ones.
        def seen(name, value, statuses):
            return any(e.status in statuses and e.hparams.get(name) == value and
                       type(e.hparams.get(name)) is type(value) for e in ctx.history)
        singles = []
        for name in self.explore:
            if name not in ctx.head_hparams:
                continue
            for value in grid_by_distance(name, ctx.head_hparams[name], ctx.search_space):
                if not seen(name, value, ("crash",)):
                    singles.append((seen(name, value, ("discard",)), {name: value}))
        for _, changes in sorted(singles, key=lambda item: item[0]):
            yield changes, describe(changes, ctx.head_hparams)

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        for changes, description in self._candidates(ctx):
            try:
                source = write_block(ctx.head_source, changes)
            except (KeyError, TypeError, ValueError):
                continue
            if source != ctx.head_source and state_hash(source) not in ctx.known_states:
                return Proposal(train_py=source, description=description)
        return None
