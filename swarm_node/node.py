"""One swarm node: it composes a libp2p network (p2p/), the research side (research/: the loop and
its intake of peers' news), peer exchange (peers.py), the status file (status_file.py) and the
dashboard, in one trio nursery. Received messages are recorded in the ledger (a worker thread)
and handed to the intake; what the loop does is told to the swarm by `Publisher`.

Every peer is hostile until checked: each message and each discovery is handled inside its own
error boundary, and the node's state is changed only on the trio thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog
import trio

from . import status_file
from .events import EventLog, discovery_id
from .messages import PRESENCE_TOPIC, Adoption, Best, Claim, Discovery, Presence, Result, state_hash
from .dashboard.server import DEFAULT_HOST
from .p2p.dialing import JOIN_LISTEN
from .p2p.identity import load_or_create_identity
from .p2p.network import SwarmNetwork
from .p2p.offenses import OFFENSES as NETWORK_OFFENSES
from .p2p.quotas import DEFAULT_QUOTAS, FORWARD_RATE
from .p2p.sync import SyncError
from .peers import PeerExchange
from .research.adoption import Verdict
from .research.swarm import Intake, claim_message, result_message, share_keep
from .research.records import ExperimentRecord, Observer
from .research.setup import Research
from .status import DECIDED

log = structlog.get_logger("swarm_node.node")

# What only a hostile peer sends: the network's protocol violations and discoveries that lie.
OFFENSES = NETWORK_OFFENSES | {v.value for v in Verdict if v.offence}


class Delivery:
    """How gossip reaches the node's research, and what an idle node waits for: a live node handles
    each message the moment it arrives and, with nothing to try, waits for news (or 30 s). The
    replay delivers through its virtual clock instead (replay/delivery.py), so that a night's
    decisions do not depend on how fast this machine forwards gossip."""

    async def received(self, node: Node, msg, peer: str, message_id: str) -> None:
        await node.handle(msg, peer, message_id)

    def published(self, message_id: str, msg) -> None:
        """This node published `msg` (the replay counts copies until every peer has it)."""

    async def idle(self, node: Node) -> None:
        """Nothing left to try: wait for something that may change that."""
        await node.wait_for_news()


@dataclass
class NodeOptions:
    listen: list[str] = field(default_factory=lambda: [JOIN_LISTEN])
    bootstrap: list[str] = field(default_factory=list)
    verify: bool = True
    max_experiments: int | None = None
    presence_interval: float = 5.0
    republish_discoveries: bool = True  # a second copy 2 s later (the replay's barrier makes it moot)
    first_contact_wait: float = 10.0  # how long a node with --bootstrap waits for peers before researching
    dashboard_port: int | None = None
    dashboard_host: str = DEFAULT_HOST
    quotas: dict | None = field(default_factory=lambda: dict(DEFAULT_QUOTAS))  # per-author gossip quotas; None: off


class Node:
    def __init__(self, research: Research, opts: NodeOptions, *, observer: Observer | None = None,
                 events: EventLog | None = None, listen: list[str] | None = None,
                 delivery: Delivery | None = None, name: str | None = None):
        """`events`: a log shared by several nodes (the replay); then each node records only what
        it did and received itself, never what it heard about others (they record that).
        `delivery`: how received messages reach research (the replay's waits for its clock);
        `name`: a readable name for events (the replay's agent names)."""
        self.research, self.opts = research, opts
        self.ledger, self.loop, self.bench = research.ledger, research.loop, research.bench
        self.intake = Intake(self.loop, research.standing, self, root_source=research.root_source,
                             sized=research.tier.baseline, verify=opts.verify)
        self.net = SwarmNetwork(load_or_create_identity(research.home.identity_key),
                                topics=[PRESENCE_TOPIC, self.bench.topic()], listen=listen or opts.listen,
                                sync_provider=self, policy_check=self.intake.policy_check, on_reject=self.reject,
                                quotas=opts.quotas,  # None (the replay, paced by its clock): no gossip budgets
                                forward_rate=FORWARD_RATE if opts.quotas is not None else 1000.0)
        self.peer_id = self.net.peer_id
        self.loop.join_swarm(self.peer_id, Publisher(self, observer or Observer()))
        self.delivery = delivery or Delivery()
        self.name = name
        self.shared_events = events is not None
        self.events = events or EventLog(research.home.root / "events.jsonl")
        self.peers = PeerExchange(self)
        self._seen_holding: set[tuple[str, str]] = set()  # (peer, discovery id) pairs already drawn
        self.news = trio.Event()  # set when something arrives that the research task may want
        self.started = time.monotonic()
        self.research_done = False

    # --- what peers may ask us (sync protocol) --------------------------------------------------

    def best(self) -> dict[str, Best]:
        """Our benchmark's entry of the register (only what we measured or verified), by tier."""
        row = self.ledger.best(self.bench)
        if row is None:
            return {}
        return {self.bench.tier: Best(bench=self.bench, state=row["state"], val_bpb=row["val_bpb"],
                                      test_bpb=row["test_bpb"], author=row["author"])}

    def state_source(self, state: str) -> str | None:
        return self.ledger.state_source(state)

    # --- what the intake needs of the swarm (research/swarm.py: Swarm) --------------------------

    def reject(self, reason: str, peer: str, msg) -> None:
        """Every refused message or discovery, on the trio thread (SQLite: one quick insert)."""
        if reason in OFFENSES:
            self.research.standing.offense(peer)
        self.ledger.record_rejection(peer, reason)
        self.events.emit("reject", peer=self.peer_id, **{"from": peer}, reason=reason)
        log.warning("rejected a message", reason=reason, peer=peer[:16], type=getattr(msg, "type", None))

    def banned(self, author: str) -> bool:
        return author in self.net.banned

    def ban(self, author: str, reason: str) -> None:
        self.net.ban(author, reason)

    async def fetch_state(self, state: str, prefer: str) -> str | None:
        """A state's train.py from whichever of a few peers answers first (`prefer` first)."""
        peers = sorted(self.net.connected_peers(), key=lambda p: p != prefer)[:8]
        found = await self.net.request_state_any(peers, state)
        return found[0] if found else None

    async def adopted(self, adoption: Adoption) -> None:
        self._adoption_event(adoption)
        await self.publish(adoption)

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            await self.start(nursery)
            print("swarm-node is listening; other nodes join with:", flush=True)
            for addr in self.net.listen_addrs():
                print(f"  swarm-node join --bootstrap {addr}", flush=True)
            nursery.start_soon(self.peers.announce, self.opts.presence_interval)
            nursery.start_soon(status_file.keep_writing, self)
            for addr in self.opts.bootstrap:
                nursery.start_soon(self.peers.keep_connected, addr)
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

    async def _start_dashboard(self, nursery) -> None:
        from .dashboard.app import create_app
        from .dashboard.server import serve
        from .dashboard.sources import LiveSource
        url = await nursery.start(lambda task_status: serve(
            create_app(LiveSource(self.events), allowed_hosts=[self.opts.dashboard_host]),
            host=self.opts.dashboard_host, port=self.opts.dashboard_port,
            task_status=task_status))
        print(f"dashboard: {url}", flush=True)

    async def publish(self, msg) -> None:
        try:
            message_id = await self.net.publish(msg)
            self.delivery.published(message_id.hex(), msg)
        except Exception as exc:  # publishing must never stop research
            log.warning("publish failed", type=msg.type, error=str(exc))

    async def publish_again(self, d: Discovery, delay: float = 2.0) -> None:
        """Send a discovery once more (new timestamp, so a new message id): py-libp2p 0.8 drops
        messages when a peer's queue overflows, and a discovery is worth a second copy.
        Receivers recognise it by its state and only note the receipt."""
        await trio.sleep(delay)
        await self.publish(d.model_copy(update={"ts": time.time()}))

    # --- inbound --------------------------------------------------------------------------------

    async def _receive(self) -> None:
        async for msg, peer, message_id in self.net.messages:
            await self.delivery.received(self, msg, peer, message_id.hex())

    async def handle(self, msg, peer: str, message_id: str) -> None:
        """One message: recorded (a worker thread: SQLite), then taken in, in its own error boundary."""
        try:
            facts = await trio.to_thread.run_sync(self._record, msg, peer, message_id)
            self._react(msg, peer, facts)
        except Exception:
            log.exception("could not handle a message", type=msg.type, peer=peer[:16])
        if self.intake.has_news():
            self.news.set()

    def handle_now(self, msg, peer: str, message_id: str) -> None:
        """`handle` on the trio thread (the replay's deterministic delivery)."""
        try:
            self._react(msg, peer, self._record(msg, peer, message_id))
        except Exception:
            log.exception("could not handle a message", type=msg.type, peer=peer[:16])

    def _record(self, msg, peer: str, message_id: str):
        """Write one valid message to the ledger and return what reacting needs; changes nothing
        else. Idempotent: GossipSub may deliver a message again, and a repeat changes nothing."""
        if isinstance(msg, Presence):
            held = [discovery_id(b.bench.tier, b.state) for b in msg.best.values()
                    if (msg.author, discovery_id(b.bench.tier, b.state)) not in self._seen_holding
                    and self.ledger.discovery(b.bench.tier, b.state)]
            return self.ledger.record_peer(msg), held
        if isinstance(msg, Claim) and msg.bench == self.bench:
            self.ledger.record_foreign_state(state=msg.state, bench=self.bench, author=msg.author, kind="claim")
        elif isinstance(msg, Result) and msg.bench == self.bench:
            self.ledger.record_foreign_state(state=msg.state, bench=self.bench, author=msg.author,
                                             kind="result", status=msg.status, val_bpb=msg.val_bpb)
        elif isinstance(msg, Discovery):
            return self.ledger.record_discovery(msg, received_from=peer, message_id=message_id)
        elif isinstance(msg, Adoption):
            return self.ledger.record_adoption(msg, received_from=peer)
        return None

    def _react(self, msg, peer: str, facts) -> None:
        """What a recorded message changes: events for the dashboard, then the intake (trio thread)."""
        self.research.standing.heard(msg.author)
        if isinstance(msg, Presence):
            new, held = facts
            if not self.shared_events:
                if new:
                    self.events.emit("join", peer=msg.author, tier=msg.bench.tier, role=msg.role)
                for discovery in held:  # a peer whose register holds a discovery has received it
                    self._seen_holding.add((msg.author, discovery))
                    self.events.emit("receipt", id=discovery, peer=msg.author, via="presence")
            self.peers.heard(msg)
            return
        if isinstance(msg, Discovery) and facts:
            self._discovery_events(msg, peer)
        elif isinstance(msg, Adoption) and facts and not self.shared_events:
            self._adoption_event(msg)
        self.intake.take(msg, new=bool(facts))

    def _discovery_events(self, d: Discovery, peer: str) -> None:
        if not self.shared_events:
            self.discovery_event(d)
        self.events.emit("receipt", id=discovery_id(d.bench.tier, d.state), peer=self.peer_id, **{"from": peer})
        log.info("discovery received", author=d.author[:16], tier=d.bench.tier, val_bpb=d.val_bpb,
                 description=d.description)

    def discovery_event(self, d: Discovery) -> None:
        self.events.emit("discovery", id=discovery_id(d.bench.tier, d.state), peer=d.author, tier=d.bench.tier,
                         state=d.state, parent=d.parent, val_bpb=d.val_bpb, test_bpb=d.test_bpb,
                         description=d.description, diff=d.diff)

    def _adoption_event(self, a: Adoption) -> None:
        self.events.emit("adoption", id=discovery_id(a.bench.tier, a.discovery_state), peer=a.author,
                         tier=a.bench.tier, state=a.state, val_bpb=a.val_bpb, verified=a.verified)

    # --- research -------------------------------------------------------------------------------

    async def wait_for_news(self) -> None:
        if self.intake.has_news():
            return
        self.news = trio.Event()
        with trio.move_on_after(30):
            await self.news.wait()

    async def run_research(self) -> None:
        """Start (from the swarm's best if peers know one), then experiment and adopt, forever."""
        start_src, start_author = await self._swarm_start()
        note = start_author and f"start from the swarm's best by {start_author[:16]}"
        await self.loop.prepare(self.research.target.dir, self.research.tier.baseline,
                                start_source=start_src, start_note=note)
        if start_src is None or self.loop.head.state != state_hash(start_src):
            start_author = None  # our own baseline (or the swarm's best failed here)
        self.loop.offer_head(start_author or self.peer_id)
        while self.opts.max_experiments is None or self.loop.finished < self.opts.max_experiments:
            await self.intake.adopt_pending()
            if await self.loop.step() is None:
                log.debug("nothing left to try; waiting for news from the swarm")
                await self.delivery.idle(self)
        self.research_done = True
        log.info("research finished; still serving the swarm and adopting its discoveries (Ctrl-C to stop)")
        while True:
            await self.intake.adopt_pending()
            await self.delivery.idle(self)

    async def _swarm_start(self) -> tuple[str | None, str | None]:
        """A new node starts from the best its peers know for its benchmark, if any: (train.py, author)."""
        if self.ledger.get_meta("head") is not None or not (self.opts.bootstrap or self.net.connected_peers()):
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
        why = source and self.intake.admissible(source)
        if not source or why:
            log.warning("the swarm's best is outside this node's policy; starting from the target", reason=why)
            return None, None
        log.info("starting from the swarm's best", state=entry.state[:12], val_bpb=entry.val_bpb,
                 author=entry.author[:16], after_s=round(time.monotonic() - self.started, 2))
        return source, entry.author


class Publisher(Observer):
    """Tells the swarm what the loop does: a Claim before, a Result after, the Discovery of a keep;
    and the event log, for the dashboard. `inner`: the observer the caller gave (progress)."""

    def __init__(self, node: Node, inner: Observer):
        self.node, self.inner = node, inner

    async def experiment_started(self, record: ExperimentRecord, budget) -> None:
        await self.inner.experiment_started(record, budget)
        n = self.node
        if record.parent and record.proposer != "adoption":
            await n.publish(claim_message(record, n.peer_id, n.bench, n.loop.settings.decision_seeds))

    async def run_started(self, record, seed, budget) -> None:
        await self.inner.run_started(record, seed, budget)

    async def experiment_finished(self, record: ExperimentRecord) -> None:
        await self.inner.experiment_finished(record)
        n = self.node
        n.events.emit("experiment", peer=n.peer_id, id=record.id, state=record.state, description=record.description,
                      status=record.status, val_bpb=record.val_bpb, test_bpb=record.test_bpb, tier=n.bench.tier,
                      parent=record.parent, proposer=record.proposer, improvement=record.improvement, se=record.se)
        if record.status in DECIDED and record.parent:
            await n.publish(result_message(record, n.peer_id, n.bench))

    async def discovery(self, record: ExperimentRecord, noise: float) -> None:
        """A keep: ours to serve (ledger) and in our register, then told to the swarm."""
        await self.inner.discovery(record, noise)
        n = self.node
        d = share_keep(n.loop, record, noise)
        n.discovery_event(d)
        await n.publish(d)
        if n.opts.republish_discoveries:
            n.nursery.start_soon(n.publish_again, d)

    async def effect(self, effect: dict) -> None:
        await self.inner.effect(effect)
        n = self.node
        n.events.emit("effect", peer=n.peer_id, tier=n.bench.tier, **{k: effect[k] for k in (
            "state", "name", "value", "effect", "se", "seeds", "kind")})
