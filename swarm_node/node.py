"""One swarm node: a libp2p host, GossipSub, the research loop and the sync service in one trio
nursery. Peers' discoveries in our benchmark that beat our head are merged, re-measured and
adopted between our own experiments; other tiers' discoveries become transfer candidates once a
peer in good standing has verified them.

Every peer is hostile until checked: each discovery is handled inside its own error boundary,
verifications are rationed per author (standing.py), claims expire (research/claims.py), and the
node's state is changed only on the trio thread (worker threads do SQLite and return values).
"""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import structlog
import trio

from . import __version__
from .events import EventLog
from .messages import PRESENCE_TOPIC, Adoption, BenchKey, Best, Claim, Discovery, Presence, Result, SeedRun
from .p2p.identity import load_or_create_identity
from .p2p.network import OFFENSES as NETWORK_OFFENSES
from .p2p.network import DEFAULT_QUOTAS, FORWARD_RATE, ConnectError, SwarmNetwork, SyncError, presence_dial_addrs
from .research.hparams import read_block
from .research.adoption import Offer, Runs, Verdict, admit
from .research.claims import ClaimBook
from .research.loop import ExperimentRecord, Observer, tier_baseline
from .research.policy import check_change, check_value, diff_reason
from .research.proposers.base import TransferCandidate
from .research.session import Research
from .research.workspace import state_hash
from .standing import Standing
from .status import DECIDED, Status

log = structlog.get_logger("swarm_node.node")

WANTED_PEERS = 4  # a node with fewer connections dials peers it hears of (see _dial_heard_of)
DIAL_EVERY_S = 60.0  # a peer heard of through Presence is dialled at most this often
MAX_DIALS = 2  # dials of heard-of peers in flight at once
PENDING_PER_AUTHOR = 2  # discoveries of one author waiting for adoption; more are dropped
MAX_PENDING = 64  # all authors together (the worst are dropped)
MAX_HEARD = 256  # other tiers' discoveries waiting for a trusted verification
MAX_TRANSFERS = 16
MAX_REPORTED = 20_000  # (state, seed) runs peers reported in our benchmark key, remembered for reuse
# What only a hostile peer sends: the network's protocol violations and discoveries that lie.
OFFENSES = NETWORK_OFFENSES | {v.value for v in Verdict if v.offence}


@dataclass
class NodeOptions:
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4001"])
    bootstrap: list[str] = field(default_factory=list)
    verify: bool = True
    max_experiments: int | None = None
    presence_interval: float = 5.0
    republish_discoveries: bool = True  # a second copy 2 s later (the replay's barrier makes it moot)
    first_contact_wait: float = 10.0  # how long a node with --bootstrap waits for peers before researching
    dashboard_port: int | None = None
    dashboard_host: str = "127.0.0.1"
    clock: object = time.monotonic  # seconds; what claims expire and verification budgets refill by (the replay's is virtual)
    quotas: dict | None = field(default_factory=lambda: dict(DEFAULT_QUOTAS))  # per-author gossip quotas; None: off


class Node:
    def __init__(self, research: Research, opts: NodeOptions, observer: Observer | None = None,
                 events: EventLog | None = None, listen: list[str] | None = None):
        """`events`: a log shared by several nodes (the replay); then each node records only what
        it did and received itself, never what it heard about others (they record that)."""
        self.research = research
        self.ledger = research.ledger
        self.loop = research.loop
        self.opts = opts
        self.inner = observer or Observer()
        self.loop.observer = _Publisher(self)
        self.bench = BenchKey(**research.bench)
        self.bench_json = research.bench_json
        key = load_or_create_identity(research.home.identity_key)
        self.net = SwarmNetwork(key, topics=[PRESENCE_TOPIC, self.bench.topic()], listen=listen or opts.listen,
                                sync_provider=self, policy_check=self.policy_check, on_reject=self._rejected,
                                quotas=opts.quotas,  # None (the replay, paced by its clock): no gossip budgets
                                forward_rate=FORWARD_RATE if opts.quotas is not None else 1000.0)
        self.peer_id = self.net.peer_id
        self.loop.author = self.peer_id
        self.shared_events = events is not None
        self.events = events or EventLog(research.home.root / "events.jsonl")
        self._seen_holding: set[tuple[str, str]] = set()  # (peer, discovery id) pairs already drawn
        self._dialing: set[str] = set()
        self._dialed_at: OrderedDict[str, float] = OrderedDict()  # heard-of peer -> last dial (monotonic)
        budgets = 4 * research.loop.settings.budget.max_seconds + 60  # "a few runs", for claims and verifications
        self.standing = Standing(refill_s=budgets, clock=opts.clock)
        self.loop.claims = ClaimBook(ttl_s=budgets, clock=opts.clock)
        self._reported: OrderedDict[tuple[str, int], tuple[float, float | None, str]] = OrderedDict()
        self.loop.reported = self._reported_run
        self._heard: OrderedDict[str, Discovery] = OrderedDict()  # other tiers' discoveries, by state
        # what every state this node runs derives from: the target's train.py at the tier's size
        self.root_source = tier_baseline((research.target.dir / "train.py").read_text(), research.tier.baseline)
        self._root_hparams = read_block(self.root_source)
        self.name: str | None = None  # a readable name for events (the replay's agent names)
        self.inbox: list | None = None  # set by the replay: messages wait there for apply_inbox()
        self.handled = None  # optional hook(message_id_hex): the replay's gossip barrier counts deliveries
        self.published = None  # optional hook(message_id_hex, msg)
        self.pending: dict[str, Discovery] = {}  # discoveries waiting to be adopted, by state
        self._deferred: set[str] = set()  # pending states already recorded as waiting for a verification budget
        self.news = trio.Event()  # set when something arrives that the research task may want
        self.started = time.monotonic()
        self.research_done = False
        self.start_author: str | None = None  # set when this node starts from a peer's best

    # --- what peers may ask us (sync protocol) --------------------------------------------------

    def best(self) -> dict[str, Best]:
        """Our benchmark's entry of the register (only what we measured or verified), by tier."""
        row = self.ledger.best(self.bench_json)
        if row is None:
            return {}
        return {self.bench.tier: Best(bench=self.bench, state=row["state"], val_bpb=row["val_bpb"],
                                      test_bpb=row["test_bpb"], author=row["author"])}

    def state_source(self, state: str) -> str | None:
        return self.ledger.state_source(state)

    # --- validation before forwarding -----------------------------------------------------------

    def policy_check(self, msg) -> str | None:
        """Runs in the GossipSub validator, on the event loop: pure CPU, no I/O. Refuses diffs our
        policy would never run: every line the diff adds or keeps must be a line of the target's
        train.py, or one of its hyperparameter lines with only the literal changed (in bounds).
        The exact rule runs again on the patched text before anything is measured."""
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
        return check_change(self.root_source, source, mode=self.loop.settings.policy, space=self.loop.settings.space)

    def _rejected(self, reason: str, peer: str, msg) -> None:
        """Called for every refused message or discovery, on the trio thread (SQLite: one quick insert)."""
        if reason in OFFENSES:
            self.standing.offense(peer)
        self.ledger.record_rejection(peer, reason)
        self.events.emit("reject", peer=self.peer_id, **{"from": peer}, reason=reason)
        log.warning("rejected a message", reason=reason, peer=peer[:16], type=getattr(msg, "type", None))

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            await self.start(nursery)
            print("swarm-node is listening; other nodes join with:", flush=True)
            for addr in self.net.listen_addrs():
                print(f"  swarm-node join --bootstrap {addr}", flush=True)
            nursery.start_soon(self._presence_loop)
            nursery.start_soon(self._status_loop)
            for addr in self.opts.bootstrap:
                nursery.start_soon(self._keep_connected, addr)
            if self.opts.dashboard_port is not None:
                await self._start_dashboard(nursery)
            await self.run_research()

    async def start(self, nursery) -> None:
        """Network up and inbound messages handled; the caller drives the research."""
        self.nursery = nursery
        await nursery.start(self.net.run)
        self.events.emit("join", peer=self.peer_id, tier=self.bench.tier, role=self.research.tier.role,
                         name=self.name or self.peer_id)
        nursery.start_soon(self._receive)

    async def _dial_heard_of(self, peer: str, addrs: list[str]) -> None:
        """Peer exchange through Presence: dial peers we hear of until we have a few, so that a
        swarm grown from one bootstrap node becomes a mesh rather than a star."""
        try:
            for addr in addrs:
                try:
                    await self.net.connect(addr)
                    log.info("connected to a peer heard of through presence", peer=peer[:16], addr=addr)
                    return
                except ConnectError:
                    continue
        finally:
            self._dialing.discard(peer)

    async def _publish_again(self, d: Discovery, delay: float = 2.0) -> None:
        """Send a discovery once more (new timestamp, so a new message id): py-libp2p 0.8 drops
        messages when a peer's queue overflows, and a discovery is worth a second copy.
        Receivers recognise it by its state and only note the receipt."""
        await trio.sleep(delay)
        await self._publish(d.model_copy(update={"ts": time.time()}))

    async def _start_dashboard(self, nursery) -> None:
        from .dashboard.app import create_app
        from .dashboard.server import serve
        from .dashboard.sources import LiveSource
        url = await nursery.start(lambda task_status: serve(
            create_app(LiveSource(self.events), allowed_hosts=[self.opts.dashboard_host]),
            host=self.opts.dashboard_host, port=self.opts.dashboard_port,
            task_status=task_status))
        print(f"dashboard: {url}", flush=True)

    async def _keep_connected(self, addr: str) -> None:
        """Dial a bootstrap peer, retrying with backoff; redial if the connection drops."""
        delay = 1.0
        while True:
            peer = addr.rsplit("/p2p/", 1)[-1]
            if peer not in self.net.connected_peers():
                try:
                    await self.net.connect(addr)
                    log.info("connected to bootstrap peer", addr=addr)
                    self.news.set()
                    delay = 1.0
                except ConnectError as exc:
                    log.warning("cannot reach bootstrap peer; researching alone meanwhile",
                                addr=addr, reason=str(exc), retry_in=f"{delay:.0f}s")
                    await trio.sleep(delay)
                    delay = min(delay * 2, 60.0)
                    continue
            await trio.sleep(5.0)

    async def _presence_loop(self) -> None:
        while True:
            if self.loop.head is not None:
                await self._publish(self._presence())
            await trio.sleep(self.opts.presence_interval)

    def _presence(self) -> Presence:
        counters = self.ledger.counters()
        head = self.loop.head
        return Presence(
            author=self.peer_id, ts=time.time(), bench=self.bench, role=self.research.tier.role,
            hardware={k: v for k, v in self.research.profile.as_dict().items() if isinstance(v, (str, int, float))},
            head=head.state, head_val_bpb=head.val_bpb,
            best={t: b for t, b in self.best().items()},
            counters={k: counters.get(k, 0) for k in (*DECIDED, Status.ADOPTED, Status.REFUSED)},
            version=__version__, addrs=self.net.listen_addrs()[:16])

    async def _publish(self, msg) -> None:
        try:
            message_id = await self.net.publish(msg)
            if self.published is not None:
                self.published(message_id.hex(), msg)
        except Exception as exc:  # publishing must never stop research
            log.warning("publish failed", type=msg.type, error=str(exc))

    # --- inbound --------------------------------------------------------------------------------

    async def _receive(self) -> None:
        async for msg, peer, message_id in self.net.messages:
            if self.inbox is not None:  # the replay applies messages at its synchronisation points
                self.inbox.append((msg, peer, message_id.hex()))
                self.handled(message_id.hex())
                continue
            try:  # each message in its own error boundary: a bad one is logged, never fatal
                facts = await trio.to_thread.run_sync(self._record, msg, peer, message_id.hex())
                self._react(msg, peer, facts)
            except Exception:
                log.exception("could not handle a message", type=msg.type, peer=peer[:16])
            if self.handled is not None:
                self.handled(message_id.hex())
            if self.has_news():
                self.news.set()

    def apply_inbox(self, order) -> None:
        """Handle what the inbox collected, sorted by `order` (the replay's deterministic order)."""
        items, self.inbox[:] = sorted(self.inbox, key=order), []
        for msg, peer, message_id in items:
            try:
                self._react(msg, peer, self._record(msg, peer, message_id))
            except Exception:
                log.exception("could not handle a message", type=msg.type, peer=peer[:16])

    def _record(self, msg, peer: str, message_id: str):
        """Write one valid message to the ledger (in a worker thread: SQLite) and return what the
        node needs to react; changes nothing else. Idempotent: GossipSub may deliver a message
        again, and the ledger's keys make a repeat change nothing."""
        if isinstance(msg, Presence):
            held = [discovery_id(b.bench.tier, b.state) for b in msg.best.values()
                    if (msg.author, discovery_id(b.bench.tier, b.state)) not in self._seen_holding
                    and self.ledger.discovery(b.bench.tier, b.state)]
            return self.ledger.record_peer(msg), held
        if isinstance(msg, Result) and msg.bench == self.bench:
            self.ledger.record_foreign_state(state=msg.state, bench=self.bench_json, author=msg.author,
                                             kind="result", status=msg.status, val_bpb=msg.val_bpb)
        elif isinstance(msg, Discovery):
            bench = json.dumps(msg.bench.model_dump(), sort_keys=True)
            return self.ledger.record_discovery(msg, bench=bench, received_from=peer, message_id=message_id)
        elif isinstance(msg, Adoption):
            return self.ledger.record_adoption(msg, received_from=peer)
        return None

    def _react(self, msg, peer: str, facts) -> None:
        """What a recorded message changes in the node: on the trio thread only."""
        self.standing.heard(msg.author)
        if isinstance(msg, Presence):
            new, held = facts
            if new and not self.shared_events:
                self.events.emit("join", peer=msg.author, tier=msg.bench.tier, role=msg.role)
            if not self.shared_events:  # a peer whose register holds a discovery has received it
                for discovery in held:
                    self._seen_holding.add((msg.author, discovery))
                    self.events.emit("receipt", id=discovery, peer=msg.author, via="presence")
            self._maybe_dial(msg)
        elif isinstance(msg, Claim) and msg.bench == self.bench:
            self.loop.claims.add(msg.author, msg.state)
        elif isinstance(msg, Result) and msg.bench == self.bench:
            self.loop.foreign_states.add(msg.state)
            self._note_runs(msg.state, msg.runs, msg.author)
        elif isinstance(msg, Discovery) and facts:
            self._discovery_received(msg, peer)
        elif isinstance(msg, Adoption) and facts:
            if not self.shared_events:
                self.events.emit("adoption", id=discovery_id(msg.bench.tier, msg.discovery_state), peer=msg.author,
                                 tier=msg.bench.tier, state=msg.state, val_bpb=msg.val_bpb, verified=msg.verified)
            self._maybe_transfer(msg)

    def _discovery_received(self, d: Discovery, peer: str) -> None:
        if not self.shared_events:
            self.events.emit("discovery", id=discovery_id(d.bench.tier, d.state), peer=d.author, tier=d.bench.tier,
                             state=d.state, parent=d.parent, val_bpb=d.val_bpb, test_bpb=d.test_bpb,
                             description=d.description, diff=d.diff)
        self.events.emit("receipt", id=discovery_id(d.bench.tier, d.state), peer=self.peer_id, **{"from": peer})
        log.info("discovery received", author=d.author[:16], tier=d.bench.tier, val_bpb=d.val_bpb,
                 description=d.description)
        if d.bench == self.bench:
            self.loop.foreign_states.add(d.state)  # measured by a peer in our benchmark key
            self._note_runs(d.state, d.runs, d.author)
            waiting = [s for s, p in self.pending.items() if p.author == d.author]
            if len(waiting) >= PENDING_PER_AUTHOR:  # keep the author's best few; a flood buys nothing
                worst = max(waiting, key=lambda s: self.pending[s].val_bpb)
                if self.pending[worst].val_bpb <= d.val_bpb:
                    self._rejected("budget:pending", d.author, d)
                    return
                self._rejected("budget:pending", d.author, self.pending.pop(worst))
            if not self.standing.may_verify(d.author, spend=False):
                self._deferred.add(d.state)
                self._rejected("budget:verify", d.author, d)  # it waits until the author's budget refills
            self.pending[d.state] = d  # adopted between experiments by the research task
            while len(self.pending) > MAX_PENDING:
                dropped = self.pending.pop(max(self.pending, key=self._pending_rank))
                self._rejected("budget:pending", dropped.author, dropped)  # the dropped one's author, not the newcomer's
        elif d.bench.target == self.bench.target and d.bench.corpus == self.bench.corpus:
            self._heard[d.state] = d  # a transfer candidate once a peer in good standing verifies it
            while len(self._heard) > MAX_HEARD:
                self._heard.popitem(last=False)

    def _note_runs(self, state: str, runs: list[SeedRun], author: str) -> None:
        for r in runs:
            self._reported[(state, r.seed)] = (r.val_bpb, r.test_bpb, author)
            self._reported.move_to_end((state, r.seed))
        while len(self._reported) > MAX_REPORTED:
            self._reported.popitem(last=False)

    def _reported_run(self, state: str, seed: int) -> tuple[float, float | None, str] | None:
        """A run a proven peer reported: reused rather than re-run (an unproven peer's word is not)."""
        found = self._reported.get((state, seed))
        return found if found is not None and self.standing.proven(found[2]) else None

    def _maybe_transfer(self, a: Adoption) -> None:
        """Another tier's discovery becomes a transfer candidate when a peer in good standing, not its
        author, re-measured and adopted it: an unverified claim never chooses our experiments."""
        d = self._heard.get(a.discovery_state)
        if d is None or not a.verified or a.author == d.author or not self.standing.good(a.author):
            return
        self._transfer(self._heard.pop(a.discovery_state), vouched_by=a.author)

    def _transfer(self, d: Discovery, vouched_by: str) -> None:
        sized = set(self.research.tier.baseline)  # model size is the tier's business
        changes = {k: v for k, v in d.hparams.items() if k not in sized}
        # At most MAX_TRANSFERS for the life of the node: evicting the oldest instead would let two
        # fresh keys vouching for each other keep this node trying their changes forever.
        if changes and len(self.loop.transfers) < MAX_TRANSFERS:
            self.loop.transfers.append(TransferCandidate(d.description, changes, d.val_bpb, d.bench.tier, d.author))
            log.info("transfer candidate from another tier", tier=d.bench.tier, author=d.author[:16],
                     verified_by=vouched_by[:16], changes=changes)

    def _maybe_dial(self, p: Presence) -> None:
        """Peer exchange: dial the author of a Presence, by its own id, at a few of its addresses,
        rarely, and only while we have few connections (never a third party's port)."""
        connected = self.net.connected_peers()
        if not self.opts.bootstrap or p.author in connected or len(connected) >= WANTED_PEERS \
                or p.author in self._dialing or len(self._dialing) >= MAX_DIALS:
            return
        now = time.monotonic()
        if now - self._dialed_at.get(p.author, -DIAL_EVERY_S) < DIAL_EVERY_S:
            return
        addrs = presence_dial_addrs(p.author, list(p.addrs))
        if not addrs:
            return
        self._dialed_at[p.author] = now
        self._dialed_at.move_to_end(p.author)
        while len(self._dialed_at) > 1024:
            self._dialed_at.popitem(last=False)
        self._dialing.add(p.author)
        self.nursery.start_soon(self._dial_heard_of, p.author, addrs)

    # --- research -------------------------------------------------------------------------------

    def _pending_rank(self, state: str) -> tuple[float, str]:
        return self.pending[state].val_bpb, state

    def has_news(self) -> bool:
        """A discovery waits whose author's claims we may verify now."""
        return any(self.standing.may_verify(d.author, spend=False) for d in self.pending.values()
                   if d.author not in self.net.banned)

    async def _wait_for_news(self) -> None:
        if self.has_news():
            return
        self.news = trio.Event()
        with trio.move_on_after(30):
            await self.news.wait()

    async def run_research(self, wait_for_news=None) -> None:
        """Start (from the swarm's best if peers know one), then experiment and adopt, forever.

        `wait_for_news` is what an idle node awaits; the replay passes its virtual clock's."""
        wait_for_news = wait_for_news or self._wait_for_news
        start_src, note = await self._swarm_start()
        await self.loop.prepare(self.research.target.dir, self.research.tier.baseline,
                                start_source=start_src, start_note=note)
        if start_src is not None and self.loop.head.state != state_hash(start_src):
            self.start_author = None  # the swarm's best failed here: we start from our own baseline
        self._offer_head(self.start_author or self.peer_id)
        while self.opts.max_experiments is None or self.loop.finished < self.opts.max_experiments:
            await self._adopt_pending()
            record = await self.loop.step()
            if record is None:
                log.debug("nothing left to try; waiting for news from the swarm")
                await wait_for_news()
        self.research_done = True
        log.info("research finished; still serving the swarm and adopting its discoveries (Ctrl-C to stop)")
        while True:
            await self._adopt_pending()
            await wait_for_news()

    async def _swarm_start(self) -> tuple[str | None, str | None]:
        """A new node starts from the best its peers know for its benchmark, if any."""
        if self.loop.ledger.get_meta("head") is not None or not (self.opts.bootstrap or self.net.connected_peers()):
            return None, None
        with trio.move_on_after(self.opts.first_contact_wait):
            while not self.net.connected_peers():
                await trio.sleep(0.05)
        best = None
        for peer in self.net.connected_peers()[:8]:
            try:
                answer = await self.net.request_best(peer)
            except SyncError as exc:
                log.info("no best from peer", peer=peer[:16], reason=str(exc))
                continue
            entry = answer.get(self.bench.tier)
            if entry and entry.bench == self.bench and \
                    (best is None or (entry.val_bpb, entry.state) < (best[0].val_bpb, best[0].state)):
                best = (entry, peer)
        if best is None:
            return None, None
        entry, peer = best
        try:
            source = await self.net.request_state(peer, entry.state)
        except SyncError as exc:
            log.warning("could not fetch the swarm's best", reason=str(exc))
            return None, None
        why = source and self.admissible(source)
        if not source or why:
            log.warning("the swarm's best is outside this node's policy; starting from the target", reason=why)
            return None, None
        log.info("starting from the swarm's best", state=entry.state[:12], val_bpb=entry.val_bpb,
                 author=entry.author[:16], after_s=round(time.monotonic() - self.started, 2))
        self.start_author = entry.author
        return source, f"start from the swarm's best by {entry.author[:16]}"

    def _offer_head(self, author: str) -> None:
        head = self.loop.head
        self.ledger.offer_best(self.bench_json, self.bench.tier, head.state, head.val_bpb, head.test_bpb, author)

    async def _adopt_pending(self) -> None:
        """The best waiting discoveries first; one whose author's verification budget is spent waits
        (rationed, not forgotten: an honest peer's last discovery must still converge the swarm)."""
        while True:
            for state in [s for s, d in self.pending.items() if d.author in self.net.banned]:
                del self.pending[state]  # a banned author's claims cost nothing more
            self._deferred &= set(self.pending)
            ready = [s for s, d in self.pending.items() if self.standing.may_verify(d.author, spend=False)]
            for state, d in self.pending.items():
                if state not in ready and state not in self._deferred:
                    self._deferred.add(state)  # recorded once: it waits for its author's budget
                    self._rejected("budget:verify", d.author, d)
            if not ready:
                return
            d = self.pending.pop(min(ready, key=self._pending_rank))
            self._deferred.discard(d.state)
            try:  # each discovery in its own error boundary
                await self._consider(d)
            except Exception as exc:
                log.exception("a discovery could not be handled", author=d.author[:16])
                self._rejected(f"error:{type(exc).__name__}", d.author, d)

    async def _consider(self, d: Discovery) -> None:
        """Fetch, patch and check one discovery; if it would beat our head, let the loop verify and
        adopt it, and act on the loop's verdict."""
        runs: Runs = {r.seed: (r.val_bpb, r.test_bpb) for r in d.runs}
        if not self.loop.outranks_head(runs, d.state):
            return  # not better than what we run (in the register's order): nothing to do
        if not self.standing.may_verify(d.author):  # its claims cost us training runs: rationed
            self.pending.setdefault(d.state, d)
            return
        parent = self.ledger.state_source(d.parent)
        if parent is None:
            parent = await self._fetch_state(d.parent, prefer=d.author)
        if parent is None:
            self._rejected("parent-unavailable", d.author, d)
            return
        settings = self.loop.settings
        source, refused = admit(parent, d.diff, d.state, root_source=self.root_source, policy=settings.policy,
                                space=settings.space)
        if refused is not None:
            reason = f"policy:{refused.detail}" if refused.verdict is Verdict.POLICY else refused.verdict.value
            self._rejected(reason, d.author, d)
            return
        outcome = await self.loop.adopt(Offer(d.state, source, runs, d.description, d.author), verify=self.opts.verify)
        if outcome.verdict is Verdict.FALSE_CLAIM:
            self.ledger.note_failed_verification(d.author)
            self._rejected("false-claim", d.author, d)
            if self.standing.verified(d.author, held=False):
                log.warning("banning a peer for repeated false claims", peer=d.author[:16])
                self.net.ban(d.author, "false-claim")
        elif outcome.verdict is Verdict.FAILED_TO_RUN:
            log.warning("could not re-run a peer's discovery here (not the peer's fault)", author=d.author[:16],
                        detail=outcome.detail)
        elif outcome.verdict is Verdict.ADOPTED:
            if self.opts.verify:
                self.standing.verified(d.author, held=True)
            self._offer_head(d.author)
            head = self.loop.head
            adoption = Adoption(author=self.peer_id, ts=time.time(), bench=self.bench, discovery_state=d.state,
                                state=head.state, val_bpb=head.val_bpb if self.opts.verify else None,
                                verified=self.opts.verify, runs=_seed_runs(outcome.measured))
            self.ledger.record_adoption(adoption, received_from=self.peer_id)
            self.events.emit("adoption", id=discovery_id(d.bench.tier, d.state), peer=self.peer_id, tier=self.bench.tier,
                             state=head.state, val_bpb=adoption.val_bpb, verified=adoption.verified)
            await self._publish(adoption)

    async def _fetch_state(self, state: str, prefer: str) -> str | None:
        """A state's train.py from whichever of a few peers answers first (the author first)."""
        peers = sorted(self.net.connected_peers(), key=lambda p: p != prefer)[:8]
        found = await self.net.request_state_any(peers, state)
        return found[0] if found else None

    # --- status for `swarm-node status` ---------------------------------------------------------

    def status(self) -> dict:
        """What `swarm-node status` shows; on the trio thread (the ledger part: `_ledger_status`)."""
        head = self.loop.head
        return {
            "peer_id": self.peer_id, "pid": os.getpid(), "updated_at": time.time(), "version": __version__,
            "listen_addrs": self.net.listen_addrs() if self.net.running else [],
            "tier": self.bench.tier, "role": self.research.tier.role, "bench": self.bench.model_dump(),
            "connected": self.net.connected_peers(),
            "head": None if head is None else {"state": head.state, "val_bpb": head.val_bpb, "test_bpb": head.test_bpb},
            "noise": None if self.loop.noise is None else {
                "paired_sd": self.loop.noise.sd, "df": self.loop.noise.total_df,
                "decision_seeds": list(self.loop.settings.decision_seeds),
                "confirm_seeds": list(self.loop.settings.confirm_seeds)},
            "pending_adoptions": len(self.pending), "live_claims": len(self.loop.claims),
            "transfer_candidates": len(self.loop.transfers), "banned": sorted(self.net.banned),
            "research": "finished" if self.research_done else "running",
        }

    def _ledger_status(self, status: dict) -> dict:
        """`status` completed from the ledger (in a worker thread: SQLite)."""
        peers = {r["peer"]: r for r in self.ledger.peers()}
        counters = self.ledger.counters()
        best = self.best()
        status = dict(status)
        status["connected_peers"] = [{"peer": p, "tier": peers[p]["tier"] if p in peers else None}
                                     for p in status.pop("connected")]
        status.update({
            "known_peers": len(peers),
            "best": {t: {"state": b.state, "val_bpb": b.val_bpb, "test_bpb": b.test_bpb, "author": b.author}
                     for t, b in best.items()},
            "experiments": sum(counters.get(k, 0) for k in DECIDED),
            "keeps": counters.get(Status.KEEP, 0), "adoptions": counters.get(Status.ADOPTED, 0),
            "refused": counters.get(Status.REFUSED, 0), "rejected": self.ledger.rejections_by_reason(),
        })
        return status

    async def _status_loop(self) -> None:
        path = self.research.home.status_file
        linked: set[str] = set()
        while True:
            connected = set(self.net.connected_peers())
            for peer in connected - linked:
                self.events.emit("link", a=self.peer_id, b=peer)
            for peer in linked - connected:
                self.events.emit("unlink", a=self.peer_id, b=peer)
            linked = connected
            data = await trio.to_thread.run_sync(self._ledger_status, self.status())
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2))
            tmp.replace(path)
            await trio.sleep(1.0)


class _Publisher(Observer):
    """Tells the swarm what the loop does: a Claim before, a Result after, a Discovery on a keep."""

    def __init__(self, node: Node):
        self.node = node

    async def experiment_started(self, record: ExperimentRecord, budget: float) -> None:
        await self.node.inner.experiment_started(record, budget)
        if record.parent and record.proposer != "adoption":
            await self.node._publish(Claim(author=self.node.peer_id, ts=time.time(), bench=self.node.bench,
                                           state=record.state, parent=record.parent,
                                           description=record.description[:200],
                                           seeds=list(self.node.loop.settings.decision_seeds)))

    async def run_started(self, record, seed, budget) -> None:
        await self.node.inner.run_started(record, seed, budget)

    async def experiment_finished(self, record: ExperimentRecord) -> None:
        await self.node.inner.experiment_finished(record)
        n = self.node
        n.events.emit("experiment", peer=n.peer_id, id=record.id, state=record.state, description=record.description,
                      status=record.status, val_bpb=record.val_bpb, test_bpb=record.test_bpb, tier=n.bench.tier,
                      parent=record.parent, proposer=record.proposer, improvement=record.improvement, se=record.se)
        if record.status in DECIDED and record.parent:
            await n._publish(Result(author=n.peer_id, ts=time.time(), bench=n.bench, state=record.state,
                                    parent=record.parent, description=record.description[:200], status=record.status,
                                    val_bpb=record.val_bpb, test_bpb=record.test_bpb,
                                    runs=_seed_runs(record.runs)))

    async def discovery(self, record: ExperimentRecord, noise: float) -> None:
        await self.node.inner.discovery(record, noise)
        n = self.node
        parent = n.ledger.state_source(record.parent)
        changed = {k: v for k, v in record.hparams.items() if read_block(parent).get(k) != v} if parent else {}
        d = Discovery(author=n.peer_id, ts=time.time(), bench=n.bench, state=record.state, parent=record.parent,
                      diff=record.diff, val_bpb=record.val_bpb, test_bpb=record.test_bpb,
                      runs=_seed_runs(record.runs), noise=noise, description=record.description[:200], hparams=changed)
        n.ledger.record_discovery(d, bench=n.bench_json, received_from=n.peer_id, message_id="own:" + d.state)
        n._offer_head(n.peer_id)
        n.events.emit("discovery", id=discovery_id(n.bench.tier, d.state), peer=n.peer_id, tier=n.bench.tier, state=d.state, parent=d.parent,
                      val_bpb=d.val_bpb, test_bpb=d.test_bpb, description=d.description, diff=d.diff)
        await n._publish(d)
        if n.opts.republish_discoveries:
            n.nursery.start_soon(n._publish_again, d)


    async def effect(self, effect: dict) -> None:
        await self.node.inner.effect(effect)
        n = self.node
        n.events.emit("effect", peer=n.peer_id, tier=n.bench.tier, state=effect["state"], name=effect["name"],
                      value=effect["value"], effect=effect["effect"], se=effect["se"], seeds=effect["seeds"],
                      kind=effect["kind"])


def _seed_runs(runs: Runs) -> list[SeedRun]:
    return [SeedRun(seed=s, val_bpb=v, test_bpb=t) for s, (v, t) in sorted(runs.items())]


def discovery_id(tier: str, state: str) -> str:
    """Events name a discovery by tier and state: the same train.py can be a discovery in two tiers."""
    return f"{tier}:{state}"
