"""Research's side of the swarm: what this node tells its peers (a Claim before an experiment, a
Result after it, the Discovery of a keep, an Adoption), and how it takes in what they tell it.

Claims and results of our benchmark key go to hearsay.py. A discovery of our key waits in a
bounded queue (a few per author, the best kept) and is taken between our own experiments:
fetched, patched and checked (adoption.py: admit), then verified by the loop
(`ResearchLoop.adopt`) if the author's verification budget allows (standing.py). Another tier's
discovery becomes a transfer candidate only when a peer in good standing, not its author,
verified and adopted it. No sockets here: the node publishes what this builds, and what needs
the network goes through `Swarm`.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

import structlog

from ..messages import Adoption, BenchKey, Claim, Discovery, Result, SeedRun
from .adoption import Offer, Runs, Verdict, admit
from .hparams import changed_names, read_block
from .policy import check_change, check_value, diff_reason
from .proposers.base import TransferCandidate
from .records import ExperimentRecord

if TYPE_CHECKING:
    from ..standing import Standing
    from .loop import ResearchLoop

log = structlog.get_logger("swarm_node.swarm")

PENDING_PER_AUTHOR = 2  # discoveries of one author waiting for adoption; more are dropped
MAX_PENDING = 64  # all authors together (the worst are dropped)
MAX_HEARD = 256  # other tiers' discoveries waiting for a trusted verification
MAX_TRANSFERS = 16  # for the life of the node (see _maybe_transfer)
DESCRIPTION_CHARS = 200  # what a message carries of a description (the wire limit is larger)


def seed_runs(runs: Runs) -> list[SeedRun]:
    return [SeedRun(seed=s, val_bpb=v, test_bpb=t) for s, (v, t) in sorted(runs.items())]


def claim_message(record: ExperimentRecord, author: str, bench: BenchKey, seeds) -> Claim:
    return Claim(author=author, ts=time.time(), bench=bench, state=record.state, parent=record.parent,
                 description=record.description[:DESCRIPTION_CHARS], seeds=list(seeds))


def result_message(record: ExperimentRecord, author: str, bench: BenchKey) -> Result:
    return Result(author=author, ts=time.time(), bench=bench, state=record.state, parent=record.parent,
                  description=record.description[:DESCRIPTION_CHARS], status=record.status,
                  val_bpb=record.val_bpb, test_bpb=record.test_bpb, runs=seed_runs(record.runs))


def discovery_message(record: ExperimentRecord, parent_source: str, source: str, author: str, bench: BenchKey,
                      noise: float) -> Discovery:
    """A keep (`source`, kept on `parent_source`) as peers receive it: the diff from its parent,
    per-seed runs, the pooled paired noise, and the hyperparameters it changed (what other tiers
    may transfer)."""
    hparams = {k: new for k, (_, new) in changed_names(parent_source, source).items()}
    return Discovery(author=author, ts=time.time(), bench=bench, state=record.state, parent=record.parent,
                     diff=record.diff, val_bpb=record.val_bpb, test_bpb=record.test_bpb, runs=seed_runs(record.runs),
                     noise=noise, description=record.description[:DESCRIPTION_CHARS], hparams=hparams)


def adoption_message(author: str, bench: BenchKey, discovery_state: str, head, verified: bool,
                     measured: Runs) -> Adoption:
    """`head`: our head after taking the discovery; its value is only ours to state if we verified it."""
    return Adoption(author=author, ts=time.time(), bench=bench, discovery_state=discovery_state, state=head.state,
                    val_bpb=head.val_bpb if verified else None, verified=verified, runs=seed_runs(measured))


def share_keep(loop, record: ExperimentRecord, noise: float) -> Discovery:
    """A keep of `loop` as the swarm will hear of it, recorded as our own discovery (ours to serve)
    and offered to our register. Only a node in a swarm shares: its author is a peer id."""
    ledger = loop.ledger
    d = discovery_message(record, ledger.state_source(record.parent) or "", ledger.state_source(record.state) or "",
                          loop.author, loop.settings.bench, noise)
    ledger.record_discovery(d, received_from=loop.author, message_id="own:" + d.state)
    loop.offer_head(loop.author)
    return d


class Swarm(Protocol):
    """What the intake needs from the node: the network, and somewhere to say what it refused."""

    def reject(self, reason: str, author: str, msg) -> None: ...
    def banned(self, author: str) -> bool: ...
    def ban(self, author: str, reason: str) -> None: ...
    async def fetch_state(self, state: str, prefer: str) -> str | None: ...
    async def adopted(self, adoption: Adoption) -> None: ...


class Intake:
    def __init__(self, loop: ResearchLoop, standing: Standing, swarm: Swarm, *, root_source: str, sized,
                 verify: bool = True):
        """`root_source`: the target's train.py at our tier's size, what every state we run derives
        from and our policy compares with; `sized`: the names of that size (never transferred);
        `verify`: re-run a seed of each discovery before adopting it."""
        self.loop = loop
        self.standing = standing
        self.root_source = root_source
        self._root_hparams = read_block(root_source)
        self._sized = set(sized)
        self.swarm = swarm
        self.verify = verify
        self.pending: dict[str, Discovery] = {}  # discoveries of our key waiting to be adopted, by state
        self._deferred: set[str] = set()  # pending states already recorded as waiting for a verification budget
        self._heard: OrderedDict[str, Discovery] = OrderedDict()  # other tiers' discoveries, by state

    @property
    def bench(self):
        return self.loop.settings.bench

    # --- before forwarding ----------------------------------------------------------------------

    def policy_check(self, msg) -> str | None:
        """Runs in the GossipSub validator, on the event loop: pure CPU, no I/O. Refuses diffs our
        policy would never run: every line the diff adds or keeps must be a line of the target's
        train.py, or one of its hyperparameter lines with only the literal changed (in bounds).
        `admit` applies the exact rule to the patched text before anything is measured."""
        if not isinstance(msg, Discovery) or self.loop.settings.policy == "code":
            return None
        space = self.loop.settings.space
        why = diff_reason(self.root_source, msg.diff, space)
        if why is None:
            for name, value in msg.hparams.items():
                if name in self._root_hparams:
                    why = check_value(name, value, self._root_hparams[name], space)
                    if why:
                        break
        return f"policy:{why}" if why else None

    def admissible(self, source: str) -> str | None:
        """None if this node's policy lets it run `source` (a peer's state), else why not."""
        settings = self.loop.settings
        return check_change(self.root_source, source, mode=settings.policy, space=settings.space)

    # --- taking news in (on the trio thread, after the ledger recorded it) ------------------------

    def take(self, msg, new: bool) -> None:
        """`new`: the ledger had not seen this discovery or adoption before (a repeat changes nothing)."""
        hearsay = self.loop.hearsay
        if isinstance(msg, Claim) and msg.bench == self.bench:
            hearsay.claims.add(msg.author, msg.state)
        elif isinstance(msg, Result) and msg.bench == self.bench:
            hearsay.measured_by_peer(msg.state, msg.runs, msg.author)
        elif isinstance(msg, Discovery) and new:
            self._discovery(msg)
        elif isinstance(msg, Adoption) and new:
            self._maybe_transfer(msg)

    def _discovery(self, d: Discovery) -> None:
        if d.bench == self.bench:
            self.loop.hearsay.measured_by_peer(d.state, d.runs, d.author)
            self._queue(d)
        elif d.bench.target == self.bench.target and d.bench.corpus == self.bench.corpus:
            self._heard[d.state] = d  # a transfer candidate once a peer in good standing verifies it
            while len(self._heard) > MAX_HEARD:
                self._heard.popitem(last=False)

    def _queue(self, d: Discovery) -> None:
        waiting = [s for s, p in self.pending.items() if p.author == d.author]
        if len(waiting) >= PENDING_PER_AUTHOR:  # keep the author's best few; a flood buys nothing
            worst = max(waiting, key=lambda s: self.pending[s].val_bpb)
            if self.pending[worst].val_bpb <= d.val_bpb:
                self.swarm.reject("budget:pending", d.author, d)
                return
            self.swarm.reject("budget:pending", d.author, self.pending.pop(worst))
        if not self.standing.may_verify(d.author, spend=False):
            self._deferred.add(d.state)
            self.swarm.reject("budget:verify", d.author, d)  # it waits until the author's budget refills
        self.pending[d.state] = d
        while len(self.pending) > MAX_PENDING:
            dropped = self.pending.pop(max(self.pending, key=self._rank))
            self.swarm.reject("budget:pending", dropped.author, dropped)  # the dropped one's author, not the newcomer's

    def _maybe_transfer(self, a: Adoption) -> None:
        """Another tier's discovery becomes a transfer candidate when a peer in good standing, not its
        author, re-measured and adopted it: an unverified claim never chooses our experiments."""
        d = self._heard.get(a.discovery_state)
        if d is None or not a.verified or a.author == d.author or not self.standing.good(a.author):
            return
        del self._heard[a.discovery_state]
        changes = {k: v for k, v in d.hparams.items() if k not in self._sized}
        # At most MAX_TRANSFERS for the life of the node: evicting the oldest instead would let two
        # fresh keys vouching for each other keep this node trying their changes forever.
        if changes and len(self.loop.transfers) < MAX_TRANSFERS:
            self.loop.transfers.append(TransferCandidate(d.description, changes, d.val_bpb, d.bench.tier, d.author))
            log.info("transfer candidate from another tier", tier=d.bench.tier, author=d.author[:16],
                     verified_by=a.author[:16], changes=changes)

    def _rank(self, state: str) -> tuple[float, str]:
        return self.pending[state].val_bpb, state

    def has_news(self) -> bool:
        """A discovery waits whose author's claims we may verify now."""
        return any(self.standing.may_verify(d.author, spend=False) for d in self.pending.values()
                   if not self.swarm.banned(d.author))

    # --- adopting, between our own experiments ----------------------------------------------------

    async def adopt_pending(self) -> None:
        """The best waiting discoveries first; one whose author's verification budget is spent waits
        (rationed, not forgotten: an honest peer's last discovery must still converge the swarm)."""
        while True:
            for state in [s for s, d in self.pending.items() if self.swarm.banned(d.author)]:
                del self.pending[state]  # a banned author's claims cost nothing more
            self._deferred &= set(self.pending)
            ready = [s for s, d in self.pending.items() if self.standing.may_verify(d.author, spend=False)]
            for state, d in self.pending.items():
                if state not in ready and state not in self._deferred:
                    self._deferred.add(state)  # recorded once: it waits for its author's budget
                    self.swarm.reject("budget:verify", d.author, d)
            if not ready:
                return
            d = self.pending.pop(min(ready, key=self._rank))
            self._deferred.discard(d.state)
            try:  # each discovery in its own error boundary
                await self._consider(d)
            except Exception as exc:
                log.exception("a discovery could not be handled", author=d.author[:16])
                self.swarm.reject(f"error:{type(exc).__name__}", d.author, d)

    async def _consider(self, d: Discovery) -> None:
        """Fetch, patch and check one discovery; if it would beat our head, let the loop verify and
        adopt it, and act on the loop's verdict."""
        runs: Runs = {r.seed: (r.val_bpb, r.test_bpb) for r in d.runs}
        if not self.loop.outranks_head(runs, d.state):
            return  # not better than what we run (in the register's order): nothing to do
        if not self.standing.may_verify(d.author):  # its claims cost us training runs: rationed
            self.pending.setdefault(d.state, d)
            return
        parent = self.loop.ledger.state_source(d.parent)
        if parent is None:
            parent = await self.swarm.fetch_state(d.parent, prefer=d.author)
        if parent is None:
            self.swarm.reject("parent-unavailable", d.author, d)
            return
        settings = self.loop.settings
        source, refused = admit(parent, d.diff, d.state, root_source=self.root_source, policy=settings.policy,
                                space=settings.space)
        if refused is not None:
            reason = f"policy:{refused.detail}" if refused.verdict is Verdict.POLICY else refused.verdict.value
            self.swarm.reject(reason, d.author, d)
            return
        outcome = await self.loop.adopt(Offer(d.state, source, runs, d.description, d.author), verify=self.verify)
        if outcome.verdict is Verdict.FALSE_CLAIM:
            self.loop.ledger.note_failed_verification(d.author)
            self.swarm.reject(Verdict.FALSE_CLAIM.value, d.author, d)
            if self.standing.verified(d.author, held=False):
                log.warning("banning a peer for repeated false claims", peer=d.author[:16])
                self.swarm.ban(d.author, Verdict.FALSE_CLAIM.value)
        elif outcome.verdict is Verdict.FAILED_TO_RUN:
            log.warning("could not re-run a peer's discovery here (not the peer's fault)", author=d.author[:16],
                        detail=outcome.detail)
        elif outcome.verdict is Verdict.ADOPTED:
            if self.verify:
                self.standing.verified(d.author, held=True)
            self.loop.offer_head(d.author)
            told = adoption_message(self.loop.author, self.bench, d.state, self.loop.head, self.verify, outcome.measured)
            self.loop.ledger.record_adoption(told, received_from=self.loop.author)
            await self.swarm.adopted(told)
