"""Flood budgets: how much gossip one author, and one connection, may make us handle.

A message over its author's quota is dropped as GossipSub's "ignore": not delivered, not
forwarded, and not held against the forwarder, so a flood stops at the first honest peer instead
of reaching the whole swarm. Keys are free, so the per-connection forwarding rate stops a flood
signed by many keys at the connection it comes through.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType

QUOTA_AUTHORS = 4096  # authors whose quota buckets are kept (least recently heard of forgotten first)
# Messages one connection may hand us per topic and second, whoever their authors (py-libp2p
# drops the excess and lowers the forwarder's score, so a flooder is soon ignored). An honest
# relay of a busy swarm forwards a few per second.
FORWARD_RATE = 25.0
# Per-author gossip quotas: message type -> (tokens per second, burst). An honest node sends a
# presence every few seconds (default 5 s), one claim and one result per experiment (>= 1 s each,
# burst for a restart that resends a batch), and discoveries and adoptions rarely (a keep, each sent
# twice); the bursts leave room for catching up. Types not listed are not limited.
DEFAULT_QUOTAS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "presence": (1.0, 5.0),
    "claim": (1.0, 20.0),
    "result": (1.0, 20.0),
    "discovery": (0.1, 10.0),
    "adoption": (0.1, 10.0),
})


class Quotas:
    """Token buckets per (author, message type), for at most `max_authors` authors (LRU)."""

    def __init__(self, table: Mapping[str, tuple[float, float]], max_authors: int) -> None:
        for kind, (rate, burst) in table.items():
            if not (rate >= 0 and burst >= 1):
                raise ValueError(f"quota for {kind!r}: rate must be >= 0 and burst >= 1, got {rate}, {burst}")
        self._table = {kind: (float(rate), float(burst)) for kind, (rate, burst) in table.items()}
        self._max_authors = max(1, max_authors)
        self._buckets: OrderedDict[str, dict[str, tuple[float, float]]] = OrderedDict()

    def allow(self, author: str, kind: str, now: float) -> bool:
        """Spend one token of the author's bucket for `kind`; False when it is empty."""
        limit = self._table.get(kind)
        if limit is None:
            return True
        rate, burst = limit
        buckets = self._buckets.get(author)
        if buckets is None:
            buckets = self._buckets[author] = {}
            while len(self._buckets) > self._max_authors:
                self._buckets.popitem(last=False)  # forgotten: it starts again with a full bucket
        else:
            self._buckets.move_to_end(author)
        tokens, last = buckets.get(kind, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        allowed = tokens >= 1.0
        buckets[kind] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
