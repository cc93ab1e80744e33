"""Peers' claims on states they are about to measure: a courtesy, never a lock.

A claim keeps this node from measuring the same state at the same time, but a peer could claim
every reachable state and starve everyone. So claims expire (after a few training budgets), each
peer holds only a few at once (a new one pushes its oldest out), the book has a total size, and
the loop ignores claims altogether when they would leave it nothing to try.
"""
from __future__ import annotations

import time
from collections import OrderedDict

CLAIMS_PER_PEER = 4
MAX_CLAIMS = 4096


class ClaimBook:
    def __init__(self, ttl_s: float, clock=time.monotonic):
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._claims: OrderedDict[tuple[str, str], float] = OrderedDict()  # (peer, state) -> when heard, oldest first
        self._by_peer: dict[str, OrderedDict[str, None]] = {}  # each peer's live claims, oldest first

    def add(self, peer: str, state: str) -> None:
        self._drop((peer, state))  # a repeat moves to the end
        mine = self._by_peer.setdefault(peer, OrderedDict())
        self._claims[(peer, state)] = self.clock()
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
