"""One swarm node: a libp2p host, GossipSub, the research loop and the sync service in one trio
nursery. Peers' discoveries in our benchmark that beat our head are merged, re-measured and
adopted between our own experiments; other tiers' discoveries become transfer candidates.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field

import structlog
import trio

from . import __version__
from .events import EventLog
from .messages import Adoption, BenchKey, Best, Claim, Discovery, Presence, Result
from .p2p.identity import load_or_create_identity
from .p2p.network import ConnectError, SwarmNetwork, SyncError
from .research.hparams import read_block
from .research.loop import ExperimentRecord, Observer
from .research.policy import check_change, check_value
from .research.proposers.base import TransferCandidate
from .research.session import Research
from .research.workspace import apply_diff, state_hash

log = structlog.get_logger("swarm_node.node")

WANTED_PEERS = 4  # a node with fewer connections dials peers it hears of (see _dial_heard_of)

# A diff line the `hparams` policy can accept: `NAME = literal  # comment` (checked fully on adoption).
_HPARAM_LINE = re.compile(r"""^[A-Z][A-Z0-9_]*\s*=\s*(-?[0-9][0-9eE.+\-_]*|True|False|"[^"\\]*"|'[^'\\]*')\s*(#.*)?$""")


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
        self.net = SwarmNetwork(key, topics=[_presence_topic(), self.bench.topic()], listen=listen or opts.listen,
                                sync_provider=self, policy_check=self.policy_check, on_reject=self._rejected)
        self.peer_id = self.net.peer_id
        self.loop.author = self.peer_id
        self.shared_events = events is not None
        self.events = events or EventLog(research.home.root / "events.jsonl")
        self._seen_holding: set[tuple[str, str]] = set()  # (peer, discovery id) pairs already drawn
        self._dialing: set[str] = set()
        self.name: str | None = None  # a readable name for events (the replay's agent names)
        self.inbox: list | None = None  # set by the replay: messages wait there for apply_inbox()
        self.handled = None  # optional hook(message_id_hex): the replay's gossip barrier counts deliveries
        self.published = None  # optional hook(message_id_hex, msg)
        self.pending: dict[str, Discovery] = {}  # discoveries waiting to be adopted, by state
        self.news = trio.Event()  # set when something arrives that the research task may want
        self.started = time.monotonic()
        self.research_done = False
        self.start_author: str | None = None  # set when this node starts from a peer's best

    # --- what peers may ask us (sync protocol) --------------------------------------------------

    def best(self) -> dict[str, Best]:
        out = {}
        for tier, row in self.ledger.best().items():
            out[tier] = Best(bench=BenchKey(**json.loads(row["bench"])), state=row["state"],
                             val_bpb=row["val_bpb"], test_bpb=row["test_bpb"], author=row["author"])
        return out

    def state_source(self, state: str) -> str | None:
        return self.ledger.state_source(state)

    # --- validation before forwarding -----------------------------------------------------------

    def policy_check(self, msg) -> str | None:
        """Runs in the GossipSub validator: refuse diffs our policy would never run."""
        if not isinstance(msg, Discovery) or self.loop.settings.policy == "code":
            return None
        in_hunk = False
        for line in msg.diff.splitlines():
            if line.startswith("@@"):
                in_hunk = True
                continue
            if not in_hunk or not line.startswith(("+", "-")):
                continue  # file headers before the first hunk, context lines
            body = line[1:].strip()
            if body and not _HPARAM_LINE.match(body):
                return f"policy:code-outside-hparams ({body[:60]!r})"
        base = self._baseline_hparams()
        for name, value in msg.hparams.items():
            if name in base:
                why = check_value(name, value, base[name], self.loop.settings.space)
                if why:
                    return f"policy:{why}"
        parent = self.ledger.state_source(msg.parent)
        if parent is not None:  # we know the parent: check exactly what the diff makes
            new = apply_diff(parent, msg.diff)
            if new is None or state_hash(new) != msg.state:
                return "policy:diff does not produce the claimed state"
            why = check_change(parent, new, mode="hparams", space=self.loop.settings.space)
            if why:
                return f"policy:{why}"
        return None

    def _baseline_hparams(self) -> dict:
        if not hasattr(self, "_base_hparams"):
            self._base_hparams = read_block((self.research.target.dir / "train.py").read_text())
        return self._base_hparams

    def _rejected(self, reason: str, peer: str, msg) -> None:
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
            create_app(LiveSource(self.events)), host=self.opts.dashboard_host, port=self.opts.dashboard_port,
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
            counters={k: counters.get(k, 0) for k in ("keep", "discard", "crash", "adopted", "refused")},
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
            try:
                await trio.to_thread.run_sync(self._handle, msg, peer, message_id.hex())
            except Exception:
                log.exception("could not handle a message", type=msg.type, peer=peer[:16])
            if self.handled is not None:
                self.handled(message_id.hex())
            if isinstance(msg, Presence) and self.opts.bootstrap and peer not in self._dialing and \
                    peer not in self.net.connected_peers() and len(self.net.connected_peers()) < WANTED_PEERS:
                self._dialing.add(peer)
                self.nursery.start_soon(self._dial_heard_of, peer, list(msg.addrs))
            if self.pending:
                self.news.set()

    def apply_inbox(self, order) -> None:
        """Handle what the inbox collected, sorted by `order` (the replay's deterministic order)."""
        items, self.inbox[:] = sorted(self.inbox, key=order), []
        for msg, peer, message_id in items:
            try:
                self._handle(msg, peer, message_id)
            except Exception:
                log.exception("could not handle a message", type=msg.type, peer=peer[:16])

    def _handle(self, msg, peer: str, message_id: str) -> None:
        """Record one valid message (in a worker thread: SQLite). Idempotent: GossipSub may
        deliver a message again, and the ledger's keys make a repeat change nothing."""
        same_bench = getattr(msg, "bench", None) == self.bench
        if isinstance(msg, Presence):
            if self.ledger.record_peer(msg) and not self.shared_events:
                self.events.emit("join", peer=msg.author, tier=msg.bench.tier, role=msg.role)
            if not self.shared_events:  # a peer whose register holds a discovery has received it
                for best in msg.best.values():
                    held = (msg.author, discovery_id(best.bench.tier, best.state))
                    if held not in self._seen_holding and self.ledger.discovery(best.bench.tier, best.state):
                        self._seen_holding.add(held)
                        self.events.emit("receipt", id=held[1], peer=msg.author, via="presence")
        elif isinstance(msg, Claim) and same_bench:
            self.ledger.record_foreign_state(state=msg.state, bench=self.bench_json, author=msg.author, kind="claim")
            self.loop.foreign_states.add(msg.state)
        elif isinstance(msg, Result) and same_bench:
            self.ledger.record_foreign_state(state=msg.state, bench=self.bench_json, author=msg.author,
                                             kind="result", status=msg.status, val_bpb=msg.val_bpb)
            self.loop.foreign_states.add(msg.state)
        elif isinstance(msg, Discovery):
            self._handle_discovery(msg, peer, message_id)
        elif isinstance(msg, Adoption):
            if self.ledger.record_adoption(msg, received_from=peer) and not self.shared_events:
                self.events.emit("adoption", id=discovery_id(msg.bench.tier, msg.discovery_state), peer=msg.author, state=msg.state,
                                 val_bpb=msg.val_bpb, verified=msg.verified)

    def _handle_discovery(self, d: Discovery, peer: str, message_id: str) -> None:
        bench = json.dumps(d.bench.model_dump(), sort_keys=True)
        new = self.ledger.record_discovery(d, bench=bench, received_from=peer, message_id=message_id)
        if not new:
            return  # a re-delivery: recorded as a receipt, nothing else to do
        if not self.shared_events:
            self.events.emit("discovery", id=discovery_id(d.bench.tier, d.state), peer=d.author, tier=d.bench.tier, state=d.state,
                             parent=d.parent, val_bpb=d.val_bpb, test_bpb=d.test_bpb, description=d.description,
                             diff=d.diff)
        self.events.emit("receipt", id=discovery_id(d.bench.tier, d.state), peer=self.peer_id, **{"from": peer})
        log.info("discovery received", author=d.author[:16], tier=d.bench.tier, val_bpb=d.val_bpb,
                 description=d.description)
        self.loop.foreign_states.add(d.state)
        if d.bench == self.bench:
            self.pending[d.state] = d  # adopted between experiments by the research task
        elif d.bench.target == self.bench.target and d.bench.corpus == self.bench.corpus:
            self.ledger.offer_best(d.bench.tier, bench, d.state, d.val_bpb, d.test_bpb, d.author)
            sized = set(self.research.tier.baseline)  # model size is the tier's business
            changes = {k: v for k, v in d.hparams.items() if k not in sized}
            if changes:
                self.loop.transfers.append(TransferCandidate(d.description, changes, d.val_bpb, d.bench.tier, d.author))

    # --- research -------------------------------------------------------------------------------

    async def _wait_for_news(self) -> None:
        if self.pending:
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
        head = self.loop.head
        self.ledger.offer_best(self.bench.tier, self.bench_json, head.state, head.val_bpb, head.test_bpb,
                               self.start_author or self.peer_id)
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
        base = (self.research.target.dir / "train.py").read_text()
        why = source and check_change(base, source, mode=self.loop.settings.policy, space=self.loop.settings.space)
        if not source or why:
            log.warning("the swarm's best is outside this node's policy; starting from the target", reason=why)
            return None, None
        log.info("starting from the swarm's best", state=entry.state[:12], val_bpb=entry.val_bpb,
                 author=entry.author[:16], after_s=round(time.monotonic() - self.started, 2))
        self.start_author = entry.author
        return source, f"start from the swarm's best by {entry.author[:16]}"

    async def _adopt_pending(self) -> None:
        while self.pending:
            state = min(self.pending, key=lambda s: self.pending[s].val_bpb)
            d = self.pending.pop(state)
            if d.val_bpb >= self.loop.head.val_bpb:
                continue
            parent = self.ledger.state_source(d.parent)
            if parent is None:
                parent = await self._fetch_state(d.parent, prefer=d.author)
            new = apply_diff(parent, d.diff) if parent is not None else None
            if new is None or state_hash(new) != d.state:
                self._rejected("state-mismatch" if parent else "parent-unavailable", d.author, d)
                continue
            self.ledger.add_state(d.state, new, d.parent, d.author)
            record = await self.loop.adopt(parent_src=parent, new_src=new, claimed_val=d.val_bpb,
                                           description=d.description, source=d.state, author=d.author,
                                           verify=self.opts.verify)
            if record is None:
                continue
            if record.status == "refused" and "claimed" in record.reason:
                self.ledger.note_failed_verification(d.author)
                self._rejected("false-claim", d.author, d)
            if record.status == "adopted":
                head = self.loop.head
                self.ledger.offer_best(self.bench.tier, self.bench_json, head.state, head.val_bpb,
                                       head.test_bpb, d.author)
                adoption = Adoption(author=self.peer_id, ts=time.time(), bench=self.bench, discovery_state=d.state,
                                    state=head.state, val_bpb=record.val_bpb if self.opts.verify else None,
                                    verified=self.opts.verify)
                self.ledger.record_adoption(adoption, received_from=self.peer_id)
                self.events.emit("adoption", id=discovery_id(d.bench.tier, d.state), peer=self.peer_id, state=head.state,
                                 val_bpb=adoption.val_bpb, verified=adoption.verified)
                await self._publish(adoption)

    async def _fetch_state(self, state: str, prefer: str) -> str | None:
        peers = self.net.connected_peers()
        for peer in sorted(peers, key=lambda p: p != prefer)[:8]:
            try:
                source = await self.net.request_state(peer, state)
            except SyncError:
                continue
            if source is not None:
                return source
        return None

    # --- status for `swarm-node status` ---------------------------------------------------------

    def status(self) -> dict:
        head = self.loop.head
        peers = {r["peer"]: r for r in self.ledger.peers()}
        connected = self.net.connected_peers()
        counters = self.ledger.counters()
        return {
            "peer_id": self.peer_id, "pid": os.getpid(), "updated_at": time.time(), "version": __version__,
            "listen_addrs": self.net.listen_addrs() if self.net.running else [],
            "tier": self.bench.tier, "role": self.research.tier.role, "bench": self.bench.model_dump(),
            "connected_peers": [{"peer": p, "tier": peers[p]["tier"] if p in peers else None} for p in connected],
            "known_peers": len(peers),
            "head": None if head is None else {"state": head.state, "val_bpb": head.val_bpb, "test_bpb": head.test_bpb},
            "best": {t: {"state": r["state"], "val_bpb": r["val_bpb"], "test_bpb": r["test_bpb"], "author": r["author"]}
                     for t, r in self.ledger.best().items()},
            "experiments": sum(counters.get(k, 0) for k in ("keep", "discard", "crash")),
            "keeps": counters.get("keep", 0), "adoptions": counters.get("adopted", 0),
            "refused": counters.get("refused", 0), "rejected": self.ledger.rejections_by_reason(),
            "research": "finished" if self.research_done else "running",
        }

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
            data = await trio.to_thread.run_sync(self.status)
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
                                           description=record.description[:200]))

    async def run_started(self, record, seed, budget) -> None:
        await self.node.inner.run_started(record, seed, budget)

    async def experiment_finished(self, record: ExperimentRecord) -> None:
        await self.node.inner.experiment_finished(record)
        n = self.node
        n.events.emit("experiment", peer=n.peer_id, id=record.id, state=record.state, description=record.description,
                      status=record.status, val_bpb=record.val_bpb, test_bpb=record.test_bpb, tier=n.bench.tier)
        if record.status in ("keep", "discard", "crash") and record.parent:
            await n._publish(Result(author=n.peer_id, ts=time.time(), bench=n.bench, state=record.state,
                                    parent=record.parent, description=record.description[:200], status=record.status,
                                    val_bpb=record.val_bpb, test_bpb=record.test_bpb,
                                    seed=record.seeds[0] if record.seeds else 0))

    async def discovery(self, record: ExperimentRecord, noise: float) -> None:
        await self.node.inner.discovery(record, noise)
        n = self.node
        parent = n.ledger.state_source(record.parent)
        changed = {k: v for k, v in record.hparams.items() if read_block(parent).get(k) != v} if parent else {}
        d = Discovery(author=n.peer_id, ts=time.time(), bench=n.bench, state=record.state, parent=record.parent,
                      diff=record.diff, val_bpb=record.val_bpb, test_bpb=record.test_bpb, seeds=record.seeds,
                      noise=noise, description=record.description[:200], hparams=changed)
        n.ledger.record_discovery(d, bench=n.bench_json, received_from=n.peer_id, message_id="own:" + d.state)
        n.ledger.offer_best(n.bench.tier, n.bench_json, d.state, d.val_bpb, d.test_bpb, n.peer_id)
        n.events.emit("discovery", id=discovery_id(n.bench.tier, d.state), peer=n.peer_id, tier=n.bench.tier, state=d.state, parent=d.parent,
                      val_bpb=d.val_bpb, test_bpb=d.test_bpb, description=d.description, diff=d.diff)
        await n._publish(d)
        if n.opts.republish_discoveries:
            n.nursery.start_soon(n._publish_again, d)


def discovery_id(tier: str, state: str) -> str:
    """Events name a discovery by tier and state: the same train.py can be a discovery in two tiers."""
    return f"{tier}:{state}"


def _presence_topic() -> str:
    from .messages import PRESENCE_TOPIC
    return PRESENCE_TOPIC
