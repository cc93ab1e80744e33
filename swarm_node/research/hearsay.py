"""What peers of our benchmark key told us about states: claims on states they are about to
measure, states they measured, and their per-seed runs. Heard, not checked: it only chooses what
not to run now (claims, measured states) or stands in for a run when its author is proven.

A claim is a courtesy, never a lock. It keeps this node from measuring the same state at the same time, but a peer could claim
every reachable state and starve everyone. So claims expire (after a few training budgets), each
peer holds only a few at once (a new one pushes its oldest out), the book has a total size, and
the loop ignores claims altogether when they would leave it nothing to try.
"""
from __future__ import annotations

import time
from collections import OrderedDict

CLAIMS_PER_PEER = 4
MAX_CLAIMS = 4096
MAX_REPORTED = 20_000  # (state, seed) runs remembered for reuse, least recently heard forgotten first

Reported = tuple[float, float | None, str]  # val_bpb, test_bpb, author


class Hearsay:
    def __init__(self, ttl_s: float, clock=time.monotonic, measured: set[str] = frozenset(),
                 trusted=lambda author: False):
        """`measured`: states peers measured in this key, as the ledger remembers them across restarts;
        `trusted(author)`: whether an author's reported runs stand in for ours (standing.proven)."""
        self.claims = ClaimBook(ttl_s, clock)
        self.measured: set[str] = set(measured)
        self.trusted = trusted
        self._runs: OrderedDict[tuple[str, int], Reported] = OrderedDict()

    def measured_by_peer(self, state: str, runs, author: str) -> None:
        """A Result or Discovery of our key: the state is measured, and its runs are remembered."""
        self.measured.add(state)
        for r in runs:
            self._runs[(state, r.seed)] = (r.val_bpb, r.test_bpb, author)
            self._runs.move_to_end((state, r.seed))
        while len(self._runs) > MAX_REPORTED:
            self._runs.popitem(last=False)

    def run(self, state: str, seed: int) -> Reported | None:
        """A run a proven peer reported: reused rather than re-run (an unproven peer's word is not)."""
        found = self._runs.get((state, seed))
        return found if found is not None and self.trusted(found[2]) else None


class ClaimBook:
    def __init__(self, ttl_s: float, clock=time.monotonic):
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._claims: OrderedDict[tuple[str, str], float] = OrderedDict()  # (peer, state) -> when heard, oldest first
        self._by_peer: dict[str, OrderedDict[str, None]] = {}  # each peer's live claims, oldest first

    def add(self, peer: str, state: str, age: float = 0.0) -> None:
        """`age`: seconds since the claim was heard (a claim reloaded after a restart); add oldest first."""
        self._drop((peer, state))  # a repeat moves to the end
        mine = self._by_peer.setdefault(peer, OrderedDict())
        self._claims[(peer, state)] = self.clock() - age
        mine[state] = None
        while len(mine) > CLAIMS_PER_PEER:
            self._drop((peer, next(iter(mine))))
        while len(self._claims) > MAX_CLAIMS:
            self._drop(next(iter(self._claims)))

    def live(self) -> set[str]:
        """States under a claim that has not expired."""
        self._expire()
        return {state for _, state in self._claims}

    def __len__(self) -> int:
        self._expire()
        return len(self._claims)

    def _drop(self, key: tuple[str, str]) -> None:
        if self._claims.pop(key, None) is None:
            return
        peer, state = key
        mine = self._by_peer[peer]
        del mine[state]
        if not mine:
            del self._by_peer[peer]

    def _expire(self) -> None:
        horizon = self.clock() - self.ttl_s
        while self._claims and next(iter(self._claims.values())) < horizon:
            self._drop(next(iter(self._claims)))
