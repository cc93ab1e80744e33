"""What this node thinks of each peer: how much compute it will spend checking the peer's claims,
the peer's record, and whether its word counts.

Every false claim costs a full training run to expose, so verifications are rationed per author
(a token bucket; an author none of whose claims has verified yet gets one token, a proven one a
few) and a repeat liar is banned. New keys are free to make, so all unproven authors together
also share one small bucket: a thousand fresh identities buy no more runs than a few. A claim
that verifies gives its token back (only lies use the budget up), so an honest peer's discoveries
converge the swarm without waiting for a refill. Pure bookkeeping: no I/O, a clock passed in,
bounded memory.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

NEW_AUTHOR_BURST = 1  # verifications in a row for an author with no verified claim yet
PROVEN_AUTHOR_BURST = 3
NEWCOMERS_BURST = 2  # verifications in a row for all unproven authors together
BAN_AFTER_FALSE_CLAIMS = 2  # ... and more false claims than verified ones
MAX_TRACKED = 4096  # peers remembered; the least recently heard are forgotten


@dataclass
class Record:
    tokens: float
    refilled_at: float
    verified: int = 0
    false_claims: int = 0
    offenses: int = 0

    @property
    def good(self) -> bool:
        return self.false_claims == 0 and self.offenses == 0


class Standing:
    def __init__(self, refill_s: float, clock=time.monotonic):
        """`refill_s`: seconds for one verification token to come back (a few training budgets)."""
        self.refill_s = max(float(refill_s), 1.0)
        self.clock = clock
        self._peers: OrderedDict[str, Record] = OrderedDict()
        self._newcomers = Record(tokens=NEWCOMERS_BURST, refilled_at=clock())

    def _record(self, peer: str) -> Record:
        record = self._peers.get(peer)
        if record is None:
            record = self._peers[peer] = Record(tokens=NEW_AUTHOR_BURST, refilled_at=self.clock())
            while len(self._peers) > MAX_TRACKED:
                self._peers.popitem(last=False)
        self._peers.move_to_end(peer)
        return record

    def heard(self, peer: str) -> None:
        """A valid message from `peer`: it becomes known (and stays remembered)."""
        self._record(peer)

    def may_verify(self, author: str, spend: bool = True) -> bool:
        """Spend one verification on `author`'s claim if its budget allows (`spend=False`: only ask)."""
        r = self._record(author)
        proven = r.verified > 0 and r.good
        buckets = [(r, PROVEN_AUTHOR_BURST if proven else NEW_AUTHOR_BURST)]
        if not proven:
            buckets.append((self._newcomers, NEWCOMERS_BURST))
        for bucket, burst in buckets:
            self._refill(bucket, burst)
        if any(bucket.tokens < 1 for bucket, _ in buckets):
            return False
        for bucket, _ in buckets if spend else ():
            bucket.tokens -= 1
        return True

    def _refill(self, bucket: Record, burst: int) -> None:
        now = self.clock()
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.refilled_at) / self.refill_s)
        bucket.refilled_at = now

    def verified(self, author: str, held: bool) -> bool:
        """Record a verification's outcome; True when the author has now earned a ban."""
        r = self._record(author)
        if held:  # an honest claim moved our head: the run it cost was not spent on a lie
            r.verified += 1
            r.tokens = min(PROVEN_AUTHOR_BURST, r.tokens + 1)
            return False
        r.false_claims += 1
        return r.false_claims >= BAN_AFTER_FALSE_CLAIMS and r.false_claims > r.verified

    def offense(self, peer: str) -> None:
        self._record(peer).offenses += 1

    def good(self, peer: str) -> bool:
        """Known to this node, and never caught lying or breaking the protocol."""
        r = self._peers.get(peer)
        return r is not None and r.good

    def proven(self, peer: str) -> bool:
        """Good, and at least one of its claims re-ran here to the same values: its reported runs
        are reused instead of re-run (runs are reproducible)."""
        r = self._peers.get(peer)
        return r is not None and r.good and r.verified > 0
