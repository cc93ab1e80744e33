"""The node's network: a libp2p host running GossipSub and the sync protocol, put together.

One `SwarmNetwork` per node, run inside the node's trio nursery:

    network = SwarmNetwork(key_pair, topics=[PRESENCE_TOPIC, bench.topic()], ...)
    await nursery.start(network.run)          # listening and subscribed when this returns
    await network.connect(bootstrap_multiaddr)
    await network.publish(discovery)
    async for message, peer, message_id in network.messages: ...

Everything from libp2p is standard: TCP, noise, yamux (mplex fallback), GossipSub /meshsub/1.1.0
with strict signing. The parts: gossipsub.py mends py-libp2p's GossipSub, inbound.py validates what
comes in and hands it to the node, quotas.py bounds floods, offenses.py says what bans a peer,
sync.py asks and answers on the sync protocol; dialing.py picks the heard-of addresses worth
dialing. SwarmNetwork owns the host and its lifetime, counts every rejection, wherever it was
found, and carries out bans.
"""
from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any

import multiaddr
import structlog
import trio
from libp2p import new_host
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.address_validation import expand_wildcard_address

from swarm_node.messages import AnyMessage as Message
from swarm_node.messages import Best, topic_for
from swarm_node.wire import encode, message_id

from .gossipsub import MESH_DEGREE, ReportingPubsub, new_gossipsub
from .inbound import QUEUE_SIZE, Inbound, PolicyCheck
from .offenses import BAN_AFTER_OFFENSES, OFFENSES, count_offense
from .quotas import DEFAULT_QUOTAS, FORWARD_RATE, QUOTA_AUTHORS, Quotas
from .sync import SYNC_PROTOCOL, SYNC_TIMEOUT_S, SyncClient, SyncProvider, SyncServer

log = structlog.get_logger("swarm_node.p2p.network")

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
CONNECT_TIMEOUT_S = 10.0

RejectHook = Callable[[str, str, "Message | None"], None]


class ConnectError(Exception):
    """Dialing a peer failed (bad address, unreachable, timeout, banned)."""


class SwarmNetwork:
    def __init__(
        self,
        key_pair: KeyPair,
        *,
        topics: list[str],
        sync_provider: SyncProvider,
        policy_check: PolicyCheck | None = None,
        on_reject: RejectHook | None = None,
        listen: list[str] | tuple[str, ...] = DEFAULT_LISTEN,
        heartbeat_interval: int = 1,
        ban_after: int = BAN_AFTER_OFFENSES,
        sync_timeout: float = SYNC_TIMEOUT_S,
        queue_size: int = QUEUE_SIZE,
        mesh_degree: tuple[int, int, int] = MESH_DEGREE,
        quotas: Mapping[str, tuple[float, float]] | None = DEFAULT_QUOTAS,
        quota_authors: int = QUOTA_AUTHORS,
        forward_rate: float = FORWARD_RATE,
    ) -> None:
        """`quotas`: message type -> (tokens per second, burst) per author (DEFAULT_QUOTAS); None
        turns quotas off. `queue_size`: validated messages waiting in `messages`; when the node
        reads too slowly for it, the excess is counted under rejections["overload"]."""
        self._key_pair = key_pair
        self._my_id = ID.from_pubkey(key_pair.public_key)
        self.peer_id: str = self._my_id.to_base58()
        self._topics = list(dict.fromkeys(topics))
        self._on_reject = on_reject
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        self._heartbeat_interval = heartbeat_interval
        self.mesh_degree = mesh_degree
        self._ban_after = ban_after
        self._forward_rate = forward_rate
        self.banned: set[str] = set()
        self.rejections: dict[str, int] = defaultdict(int)  # reason -> count, for status/dashboard
        self._offenses: dict[ID, deque[float]] = defaultdict(deque)
        self._inbound = Inbound(
            self._my_id, quotas=Quotas(quotas or {}, quota_authors), policy_check=policy_check,
            reject=self._reject, queue_size=queue_size,
        )
        self.messages = self._inbound.messages
        self._sync_client = SyncClient(self._running_host, self.peer_id, sync_timeout, self._reject)
        self._sync_server = SyncServer(sync_provider, sync_timeout, self.banned, self._reject)
        self._host: Any = None
        self._pubsub: ReportingPubsub | None = None
        self._gossipsub: GossipSub | None = None
        self._nursery: trio.Nursery | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start host and pubsub, subscribe; `started()` once listening; run until cancelled.

        One run per instance: `messages` is closed when it ends (make a new SwarmNetwork to restart).
        """
        if self._host is not None:
            raise RuntimeError("a SwarmNetwork runs once; create a new one to restart")
        host = new_host(
            key_pair=self._key_pair,
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    self._key_pair, noise_privkey=create_x25519_key_pair().private_key
                )
            },
            listen_addrs=self._listen,
            # one connection per peer: host.connect() otherwise waits out a 250 ms dial delay
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        gossipsub = new_gossipsub(self.mesh_degree, self._heartbeat_interval, self._forward_rate)
        # One attempt per dial: the node retries its bootstrap peers itself (with backoff), and
        # py-libp2p's three quick retries made one heard-of address cost a stranger four connections.
        host.get_network().retry_config = RetryConfig(max_retries=0)
        self._host = host
        pubsub = ReportingPubsub(host, gossipsub, on_bad_signature=self._reject, on_message=self._inbound.take_in)
        try:
            async with host.run(self._listen):
                async with background_trio_service(pubsub), background_trio_service(gossipsub):
                    await pubsub.wait_until_ready()
                    host.set_stream_handler(SYNC_PROTOCOL, self._sync_server.serve)
                    async with trio.open_nursery() as nursery:
                        self._pubsub, self._gossipsub = pubsub, gossipsub
                        self._nursery = nursery
                        for topic in self._topics:
                            await self._subscribe(topic)
                        log.info("network.started", peer=self.peer_id, addrs=self.listen_addrs())
                        task_status.started()
                        await trio.sleep_forever()
        finally:
            self._nursery = None
            self._inbound.close()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def _require_running(self) -> None:
        if self._nursery is None:
            raise RuntimeError("SwarmNetwork is not running (start it with nursery.start(net.run))")

    def _running_host(self) -> Any:
        self._require_running()
        return self._host

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs ending in /p2p/<peer id>, usable as another node's --bootstrap."""
        self._require_running()
        suffix = f"/p2p/{self.peer_id}"
        addrs = []
        for transport_addr in self._host.get_transport_addrs():
            expanded = [str(a) for a in expand_wildcard_address(transport_addr)]  # 0.0.0.0 -> each NIC
            if str(transport_addr).startswith("/ip4/0.0.0.0/"):
                expanded.append(str(transport_addr).replace("/ip4/0.0.0.0/", "/ip4/127.0.0.1/", 1))
            for text in expanded:
                text = text if text.endswith(suffix) else text + suffix
                if text not in addrs:
                    addrs.append(text)
        return addrs

    async def connect(self, address: str) -> str:
        """Dial a peer by full multiaddr (with /p2p/<id>); returns its peer id; raises ConnectError."""
        self._require_running()
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        except Exception as error:
            raise ConnectError(f"bad multiaddr {address!r}: {error}") from error
        peer = info.peer_id.to_base58()
        if peer == self.peer_id:
            raise ConnectError("refusing to dial ourselves")
        if peer in self.banned:
            raise ConnectError(f"{peer} is banned")
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                await self._host.connect(info)
        except trio.TooSlowError as error:
            raise ConnectError(f"dialing {address} timed out") from error
        except (BaseLibp2pError, OSError) as error:
            raise ConnectError(f"dialing {address}: {error}") from error
        return peer

    def connected_peers(self) -> list[str]:
        if not self.running:
            return []
        return [p.to_base58() for p in self._host.get_connected_peers()]

    def mesh_peers(self, topic: str) -> list[str]:
        if not self.running:
            return []
        return [p.to_base58() for p in self._gossipsub.mesh.get(topic, ())]

    def peer_score(self, peer_id: str) -> float:
        """The peer's GossipSub score over our topics (0 for a well-behaved peer with our params)."""
        if not self.running:
            return 0.0
        return self._gossipsub.scorer.score(ID.from_base58(peer_id), self._topics)

    async def wait_for_subscriber(self, peer_id: str, topic: str, timeout: float = 5.0) -> None:
        """Until `peer_id` is known to be subscribed to `topic` (raises trio.TooSlowError)."""
        self._require_running()
        await self._pubsub.wait_for_subscription(ID.from_base58(peer_id), topic, timeout=timeout)

    async def wait_for_mesh(self, peer_id: str, topic: str, timeout: float = 5.0) -> None:
        """Until `peer_id` is in our GossipSub mesh for `topic` (raises trio.TooSlowError)."""
        self._require_running()
        await self._pubsub.wait_for_mesh(ID.from_base58(peer_id), topic, timeout=timeout)

    # ---- gossip --------------------------------------------------------------------------------

    async def publish(self, msg: Message) -> bytes:
        """Sign and send one of our messages on its topic; returns its message id.

        Raises ValueError if msg.author is not this node, MessageRejected('oversized').
        Publishing with no peers succeeds silently (libp2p behaviour).
        """
        self._require_running()
        if msg.author != self.peer_id:
            raise ValueError(f"message author {msg.author} is not this node ({self.peer_id})")
        data = encode(msg)
        await self._pubsub.publish(topic_for(msg), data)
        return message_id(data)

    async def _subscribe(self, topic: str) -> None:
        self._pubsub.set_topic_validator(topic, self._inbound.validator_for(topic, self._pubsub.ignore), False)
        # the subscription's own queue stays empty: ReportingPubsub hands messages to Inbound.take_in
        await self._pubsub.subscribe(topic)

    # ---- rejections and bans -------------------------------------------------------------------

    def _reject(self, reason: str, forwarder: ID, msg: Message | None) -> None:
        peer = forwarder.to_base58()
        self.rejections[reason] += 1
        (log.warning if reason == "overload" else log.info)(
            "network.rejected", reason=reason, peer=peer, type=getattr(msg, "type", None)
        )
        if reason in OFFENSES:
            self._count_offense(forwarder, reason)
        if self._on_reject is not None:
            try:
                self._on_reject(reason, peer, msg)
            except Exception:
                log.exception("network.on_reject_failed", reason=reason, peer=peer)

    def _count_offense(self, peer: ID, reason: str) -> None:
        recent = count_offense(self._offenses[peer], trio.current_time())
        if recent >= self._ban_after and peer.to_base58() not in self.banned:
            self._ban(peer, reason)

    def ban(self, peer_id: str, reason: str) -> None:
        """Ban a peer for what the node found out itself (e.g. repeated false claims)."""
        if peer_id not in self.banned and peer_id != self.peer_id:
            self._ban(ID.from_base58(peer_id), reason)

    def _ban(self, peer: ID, reason: str) -> None:
        """Blacklist in pubsub (drops its messages and stream), leave the mesh, hang up."""
        self.banned.add(peer.to_base58())
        log.warning("network.banned", peer=peer.to_base58(), last_reason=reason)
        if self._pubsub is None or self._nursery is None:
            return
        self._pubsub.add_to_blacklist(peer)
        self._gossipsub.remove_peer(peer)
        self._host.get_peerstore().clear_addrs(peer)  # keep libp2p's auto-connector from redialing
        self._nursery.start_soon(self._hang_up, peer)

    async def _hang_up(self, peer: ID) -> None:
        with trio.move_on_after(5):
            try:
                await self._host.disconnect(peer)
            except (BaseLibp2pError, OSError) as error:
                log.info("network.disconnect_failed", peer=peer.to_base58(), error=str(error))

    # ---- sync protocol -------------------------------------------------------------------------

    async def request_best(self, peer_id: str) -> dict[str, Best]:
        """The peer's best state per tier; raises SyncError."""
        return await self._sync_client.best(peer_id)

    async def request_state(self, peer_id: str, state: str) -> str | None:
        """train.py of `state` from the peer, verified by its hash; None if the peer lacks it."""
        return await self._sync_client.state(peer_id, state)

    async def request_state_any(
        self, peers: list[str], state: str, *, fanout: int = 3, timeout: float = SYNC_TIMEOUT_S
    ) -> tuple[str, str] | None:
        """train.py of `state` from whichever of `peers` answers with it first: (source, peer).

        Asks up to `fanout` peers at once, in the order given; when one fails or lacks the state
        the next in line is asked. The first answer whose source hashes to `state` wins and the
        other requests are cancelled (their streams reset). None when nobody had it within
        `timeout` seconds (a peer that never answers costs at most that). Failures are logged,
        and a lying peer counted as an offense, as request_state does; none is raised.
        """
        return await self._sync_client.state_any(peers, state, fanout, timeout)
