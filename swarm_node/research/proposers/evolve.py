"""Evolutionary proposer: mutate the best, or recombine it with a near-miss.

A mutation moves one or two of the role's hyperparameters to a neighbouring grid value (learning
rates also by a log-uniform factor). A recombination takes what a near-miss (a discarded
experiment that came close) changed and adds one more mutation on top of the best.
"""
from __future__ import annotations

from ..hparams import write_block
from ...messages import state_hash
from .base import Proposal, ProposalContext
from .heuristic import describe, grid_by_distance

MAX_TRIES = 64


class EvolveProposer:
    name = "evolve"

    def __init__(self, explore: list[str], recombine_rate: float = 0.3):
        self.explore = explore
        self.recombine_rate = recombine_rate

    def _mutation(self, ctx: ProposalContext, head: dict) -> dict:
        names = [n for n in self.explore if n in head] or list(head)
        # Mostly the role's names, sometimes anything in the search space.
        pool = names if ctx.rng.random() < 0.8 else [n for n in head if n in ctx.search_space]
        changes = {}
        for name in ctx.rng.sample(pool, k=min(len(pool), ctx.rng.choice((1, 1, 2)))):
            current = head[name]
            if name == "LEARNING_RATE" and "min" in ctx.search_space.get(name, {}) and ctx.rng.random() < 0.5:
                bounds = ctx.search_space[name]
                value = float(f"{current * 2 ** ctx.rng.uniform(-1, 1):.2g}")
                changes[name] = min(max(value, bounds["min"]), bounds["max"])
                continue
            neighbours = grid_by_distance(name, current, ctx.search_space)[:2]
            if neighbours:
                changes[name] = ctx.rng.choice(neighbours)
        return changes

    def _near_miss(self, ctx: ProposalContext) -> dict:
        misses = sorted((e for e in ctx.history if e.status == "discard" and e.val_bpb is not None),
                        key=lambda e: e.val_bpb)[:3]
        if not misses:
            return {}
        miss = ctx.rng.choice(misses)
        return {k: v for k, v in miss.hparams.items()
                if k in ctx.head_hparams and ctx.head_hparams[k] != v}

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        head = ctx.head_hparams
        for _ in range(MAX_TRIES):
            changes = self._near_miss(ctx) if ctx.rng.random() < self.recombine_rate else {}
            kind = "recombine" if changes else "mutate"
            changes.update(self._mutation(ctx, head))
            try:
                source = write_block(ctx.head_source, changes)
            except (KeyError, TypeError, ValueError):
                continue
            if source != ctx.head_source and state_hash(source) not in ctx.known_states:
                return Proposal(train_py=source, description=f"{kind}: {describe(changes, head)}")
        return None
