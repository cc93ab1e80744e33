"""What became of an experiment: one set of words for the ledger, the loop, events and reports."""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A str, so the ledger, JSON and events hold its plain value ("keep")."""

    RUNNING = "running"  # started; an interrupted run stays so until the next start marks it
    BASELINE = "baseline"  # the first head, measured on every seed
    KEEP = "keep"  # a proposal the paired rule kept: the new head
    DISCARD = "discard"  # measured, not better by the rule
    CRASH = "crash"  # a run failed (or was too slow for the tier)
    ADOPTED = "adopted"  # a peer's discovery, verified and taken as the head
    REFUSED = "refused"  # never run: the diff policy, or a peer's claim that did not hold
    INTERRUPTED = "interrupted"  # the node stopped while it ran

    __hash__ = str.__hash__  # Enum hashes the name: a dict keyed by "keep" must find Status.KEEP

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


DECIDED = (Status.KEEP, Status.DISCARD, Status.CRASH)  # a proposal run to a verdict
HEADS = (Status.BASELINE, Status.KEEP, Status.ADOPTED)  # what leaves a node on a measured state
