"""Who a node talks to: bootstrap peers kept connected, a Presence every few seconds (how peers
learn our tier, head, register and addresses), and peer exchange: a node with few connections
dials peers it hears of through Presence, so a swarm grown from one bootstrap node becomes a mesh
rather than a star. Dials go only to a Presence's own author, at a few of its addresses, rarely.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import structlog
import trio

from . import __version__
from .messages import Presence
from .p2p.dialing import presence_dial_addrs
from .p2p.network import ConnectError
from .status import DECIDED, Status

log = structlog.get_logger("swarm_node.peers")

WANTED_PEERS = 4  # a node with fewer connections dials peers it hears of
DIAL_EVERY_S = 60.0  # a peer heard of through Presence is dialled at most this often
MAX_DIALS = 2  # dials of heard-of peers in flight at once
MAX_DIALED = 1024  # peers whose last dial is remembered


class PeerExchange:
    def __init__(self, node):
        self.node = node
        self.net = node.net
        self._dialing: set[str] = set()
        self._dialed_at: OrderedDict[str, float] = OrderedDict()  # heard-of peer -> last dial (monotonic)

    async def keep_connected(self, addr: str) -> None:
        """Dial a bootstrap peer, retrying with backoff; redial if the connection drops."""
        delay = 1.0
        peer = addr.rsplit("/p2p/", 1)[-1]
        while True:
            if peer not in self.net.connected_peers():
                try:
                    await self.net.connect(addr)
                    log.info("connected to bootstrap peer", addr=addr)
                    self.node.news.set()
                    delay = 1.0
                except ConnectError as exc:
                    log.warning("cannot reach bootstrap peer; researching alone meanwhile",
                                addr=addr, reason=str(exc), retry_in=f"{delay:.0f}s")
                    await trio.sleep(delay)
                    delay = min(delay * 2, 60.0)
                    continue
            await trio.sleep(5.0)

    async def announce(self, interval: float) -> None:
        """A Presence every `interval` seconds, once there is a head to announce."""
        while True:
            if self.node.loop.head is not None:
                await self.node.publish(self.presence())
            await trio.sleep(interval)

    def presence(self) -> Presence:
        node, research = self.node, self.node.research
        counters = node.ledger.counters()
        head = node.loop.head
        return Presence(
            author=node.peer_id, ts=time.time(), bench=node.bench, role=research.tier.role,
            hardware={k: v for k, v in research.profile.as_dict().items() if isinstance(v, (str, int, float))},
            head=head.state, head_val_bpb=head.val_bpb, best=node.best(),
            counters={k: counters.get(k, 0) for k in (*DECIDED, Status.ADOPTED, Status.REFUSED)},
            version=__version__, addrs=self.net.listen_addrs()[:16])

    def heard(self, p: Presence) -> None:
        """Dial the author of a Presence if we have few connections (and a swarm to grow)."""
        connected = self.net.connected_peers()
        if not self.node.opts.bootstrap or p.author in connected or len(connected) >= WANTED_PEERS \
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
        while len(self._dialed_at) > MAX_DIALED:
            self._dialed_at.popitem(last=False)
        self._dialing.add(p.author)
        self.node.nursery.start_soon(self._dial, p.author, addrs)

    async def _dial(self, peer: str, addrs: list[str]) -> None:
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
