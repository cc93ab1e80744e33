"""Adopting a peer's discovery: what it takes, and the typed verdicts the node acts on.

A discovery is data until checked: its diff is applied as text to the parent (pure Python,
never `git apply`), the result must hash to the state it names and pass this node's policy. The
research loop then decides (`ResearchLoop.adopt`): a verified discovery of our benchmark key whose
mean over the tier's seeds is below our head's (ties broken by state hash, a total order, so every
node converges on the same head) becomes our head, whatever a merge would say.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..status import Status
from .hparams import changed_names, read_block, write_block
from .policy import check_change
from .proposers.base import Proposal
from ..messages import state_hash
from .workspace import apply_diff

Runs = dict[int, tuple[float, float | None]]  # seed -> (val_bpb, test_bpb)


class Verdict(enum.Enum):
    ADOPTED = "adopted"
    FALSE_CLAIM = "false-claim"  # a seed we chose to re-run did not reproduce the claimed values
    NOT_BETTER = "not-better"  # not below our head (or not comparable): silent, nothing to do
    FAILED_TO_RUN = "failed-to-run"  # our re-run crashed or ran out of time here: never the author's fault
    BAD_PATCH = "bad-patch"  # the diff does not apply to its parent
    STATE_MISMATCH = "state-mismatch"  # the patched text is not the state the discovery names
    POLICY = "policy"  # the new train.py is outside this node's policy

    @property
    def offence(self) -> bool:
        """Only a hostile or broken peer sends these: they count against its standing."""
        return self in (Verdict.FALSE_CLAIM, Verdict.BAD_PATCH, Verdict.STATE_MISMATCH)


@dataclass(frozen=True)
class Offer:
    """A peer's discovery as the loop sees it: a full train.py and its claimed per-seed values."""

    state: str
    source: str
    runs: Runs
    description: str
    author: str


@dataclass
class Outcome:
    verdict: Verdict
    detail: str = ""
    record: object | None = None  # the loop's ExperimentRecord, when it ran or adopted something
    measured: Runs = field(default_factory=dict)  # what this node re-ran


def admit(parent_source: str, diff: str, claimed_state: str, *, root_source: str, policy: str,
          space: dict) -> tuple[str | None, Outcome | None]:
    """The peer's train.py, or the verdict that refuses it (before anything is run)."""
    patched = apply_diff(parent_source, diff)
    if not patched.ok:
        return None, Outcome(Verdict.BAD_PATCH, patched.error)
    if state_hash(patched.source) != claimed_state:
        return None, Outcome(Verdict.STATE_MISMATCH, "the patched train.py is not the state the discovery names")
    why = check_change(root_source, patched.source, mode=policy, space=space)
    if why:
        return None, Outcome(Verdict.POLICY, why)
    return patched.source, None


def rank(runs: Runs, seeds, state: str) -> tuple[float, str] | None:
    """The register's order: mean val_bpb over `seeds`, then state hash; None if a seed is missing."""
    if any(s not in runs for s in seeds):
        return None
    return sum(runs[s][0] for s in seeds) / len(seeds), state


def reproduces(claimed: tuple[float, float | None], measured: tuple[float, float | None], tolerance: float) -> bool:
    """A re-run matches a claim when val_bpb and (if both have it) test_bpb agree within `tolerance`."""
    if abs(claimed[0] - measured[0]) > tolerance:
        return False
    if claimed[1] is not None and measured[1] is not None and abs(claimed[1] - measured[1]) > tolerance:
        return False
    return True


def rebases(ledger, old_source: str, new_source: str) -> list[Proposal]:
    """After the head moved from `old_source` to `new_source` (a peer's): each of our own keeps whose
    change the old head still carried and the new head lacks, as a proposal on the new head
    (re-measured there, like any other)."""
    old_block, new_block = read_block(old_source), read_block(new_source)
    proposals = []
    for row in ledger.experiments():
        if row["status"] != Status.KEEP or row["proposer"] in ("adoption", "ablation") or not row["parent"]:
            continue
        kept = changed_names(ledger.state_source(row["parent"]) or "", ledger.state_source(row["state"]) or "")
        changes = {k: new for k, (_, new) in kept.items()
                   if old_block.get(k) == new and k in new_block and new_block[k] != new}
        if changes:
            proposals.append(Proposal(write_block(new_source, changes), f"rebase: {row['description']}"[:200]))
    return proposals
