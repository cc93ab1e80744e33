"""The node's network: a libp2p host, GossipSub with validators and scoring, and the sync protocol.

One `SwarmNetwork` per node, run inside the node's trio nursery:

    network = SwarmNetwork(key_pair, topics=[PRESENCE_TOPIC, bench.topic()], ...)
    await nursery.start(network.run)          # listening and subscribed when this returns
    await network.connect(bootstrap_multiaddr)
    await network.publish(discovery)
    async for message, peer, message_id in network.messages: ...

Everything from libp2p is standard: TCP, noise, yamux (mplex fallback), GossipSub v1.1 (/meshsub/1.1.0) with
strict signing. What py-libp2p 0.8.1 does and does not do for us (measured, see PROTOCOL.md):
topic validators run before a message is delivered or forwarded; unsigned messages are dropped
by pubsub before any validator sees them (a small Pubsub subclass reports them); validator
failures feed the P4 score counter, but the mesh heartbeat never prunes low scorers, so repeat
offenders are banned here: blacklisted in pubsub, dropped from the mesh and disconnected.
py-libp2p hands validated messages to a 32-slot queue per topic and drops them silently when it is
full; the Pubsub subclass hands them straight to us instead, and we count any we cannot queue as
"overload". Per-author quotas drop floods as GossipSub's "ignore": not delivered, not forwarded,
and not held against the forwarder (py-libp2p has no ignore result: the subclass adds it).
"""
from __future__ import annotations

import inspect
import ipaddress
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

import multiaddr
import structlog
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError, ValidationError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.pubsub.validators import signature_validator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.address_validation import expand_wildcard_address
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from swarm_node.messages import (
    AnyMessage as Message,
    MAX_SYNC_REQUEST_BYTES,
    MAX_SYNC_RESPONSE_BYTES,
    Best,
    BestAnswer,
    BestRequest,
    ErrorAnswer,
    MessageRejected,
    StateAnswer,
    StateRequest,
    decode,
    decode_sync_answer,
    decode_sync_request,
    encode,
    encode_sync,
    message_id,
    state_hash,
    topic_for,
)

log = structlog.get_logger(__name__)

SYNC_PROTOCOL = TProtocol("/swarm-node/sync/2.0.0")
# 1.1 only: py-libp2p's 1.2 adds an IDONTWANT per message and hop, which doubled the CPU per
# message in a 35-host swarm (benchmarks/gossip_latency.py) for no gain at our message sizes.
GOSSIPSUB_PROTOCOLS = (TProtocol("/meshsub/1.1.0"),)
DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)

CONNECT_TIMEOUT_S = 10.0
SYNC_TIMEOUT_S = 5.0  # a whole request/answer exchange, either side
SYNC_REQUEST_TIMEOUT_S = 2.0  # an answerer waits this long for the request after a stream opens
SYNC_MAX_CONCURRENT = 16  # answered streams at once, all peers together; more are reset at once
SYNC_MAX_PER_PEER = 2  # answered streams at once from one peer; more are reset at once
QUEUE_SIZE = 4096  # validated messages waiting for the node; past this they count as "overload"
QUOTA_AUTHORS = 4096  # authors whose quota buckets are kept (least recently heard of forgotten first)
# Messages one connection may hand us per topic and second, whoever their authors: quotas are per
# author and keys are free, so a flood signed by many keys is stopped at the connection it comes
# through (py-libp2p drops the excess and lowers the forwarder's score, so a flooder is soon
# ignored). An honest relay of a busy swarm forwards a few per second.
FORWARD_RATE = 25.0
# Per-author gossip quotas: message type -> (tokens per second, burst). An honest node sends a
# presence every few seconds (default 5 s), one claim and one result per experiment (>= 1 s each,
# burst for a restart that resends a batch), and discoveries and adoptions rarely (a keep, each sent
# twice); the bursts leave room for catching up. A flood above these is dropped at the first honest
# peer instead of reaching the whole swarm. Types not listed are not limited.
DEFAULT_QUOTAS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "presence": (1.0, 5.0),
    "claim": (1.0, 20.0),
    "result": (1.0, 20.0),
    "discovery": (0.1, 10.0),
    "adoption": (0.1, 10.0),
})
OFFENSE_WINDOW_S = 600.0
BAN_AFTER_OFFENSES = 5  # protocol violations by one peer within the window
# Deterministic protocol violations: every honest node rejects these, so whoever sent one to us
# is at fault. Clock skew (future-timestamp, stale-timestamp), local policy (policy:*), quotas
# (quota) and our own overload (overload) are not offenses.
OFFENSES = frozenset(
    {
        "oversized", "undecodable", "schema", "metric-bounds", "author-mismatch",
        "topic-mismatch", "unsigned", "bad-signature", "state-mismatch",
    }
)

PolicyCheck = Callable[[Message], "str | None"]
RejectHook = Callable[[str, str, "Message | None"], None]


class Received(NamedTuple):
    """A valid message from another peer: `peer` is its author (== signer)."""

    message: Message
    peer: str
    message_id: bytes


class SyncProvider(Protocol):
    """What this node answers on the sync protocol.

    Plain methods are called on the trio thread (keep them quick: an indexed SQLite lookup is
    fine); a method may instead return an awaitable (be `async def`) to do slow work, e.g. through
    trio.to_thread.
    """

    def best(self) -> Mapping[str, Best | dict]: ...  # tier -> best state known

    def state_source(self, state_hash: str) -> str | None: ...  # train.py of a state, or None


class ConnectError(Exception):
    """Dialing a peer failed (bad address, unreachable, timeout, banned)."""


class SyncError(Exception):
    """A sync request failed; `reason` is short: timeout, unreachable, refused:<why>, ..."""

    def __init__(self, reason: str, peer: str, detail: str = "") -> None:
        super().__init__(f"{reason} from {peer}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.peer = peer


class _Ignored(Exception):
    """Raised through push_msg for a message a validator asked to ignore."""


class _ReportingPubsub(Pubsub):
    """py-libp2p's Pubsub, telling us about messages it drops for a missing or bad signature,
    handing each validated message straight to `on_message` (py-libp2p's own per-topic queue
    holds 32 and drops the rest silently), and able to ignore a message: a validator that adds the
    message id to `ignore` before returning False gets it dropped without the P4 penalty for the
    forwarder and without caching the failure (the same message may pass later)."""

    def __init__(
        self,
        *args: Any,
        on_bad_signature: Callable[[ID, rpc_pb2.Message, str], None],
        on_message: Callable[[rpc_pb2.Message], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_bad_signature = on_bad_signature
        self._on_message = on_message
        self._reported: OrderedDict[bytes, None] = OrderedDict()
        self.ignore: set[bytes] = set()

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            try:
                self._on_message(publish_message)
            except Exception:  # never let our bug stop pubsub's forwarding of the message
                log.exception("network.deliver_failed")

    async def validate_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        try:
            await super().validate_msg(msg_forwarder, msg)
        except ValidationError:
            mid = self.get_message_id(msg)
            if mid in self.ignore:
                self.ignore.discard(mid)
                self.validation_cache._remove(mid)
                raise _Ignored() from None  # push_msg lets it through: no P4 counted
            raise

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if (
            self.strict_signing
            and msg_forwarder != self.my_id
            and not self.is_peer_blacklisted(msg_forwarder)
            and not self._is_msg_seen(msg)
        ):
            reason = None
            if not msg.signature:
                reason = "unsigned"
            else:
                try:
                    valid = signature_validator(msg)
                except Exception:
                    valid = False
                reason = None if valid else "bad-signature"
            if reason is not None:
                # gossip (IHAVE/IWANT) may bring the same bad message again: report it once
                mid = self.get_message_id(msg)
                if mid not in self._reported:
                    _remember(self._reported, mid, None, 1024)
                    self._on_bad_signature(msg_forwarder, msg, reason)
                return
        try:
            await super().push_msg(msg_forwarder, msg)
        except _Ignored:
            pass


def _pubsub_message_id(msg: rpc_pb2.Message) -> bytes:
    return message_id(msg.data)


class _ContentAddressedCache(MessageCache):
    """GossipSub's message cache keyed by our message id (sha256 of the payload), as IHAVE and
    IWANT need: py-libp2p 0.8 keys it by from+seqno whatever the pubsub's id rule is, so its IHAVE
    named ids no peer had seen, every IHAVE drew an IWANT and every IWANT a full copy again."""

    def put(self, msg: rpc_pb2.Message) -> None:
        mid = _pubsub_message_id(msg)
        if mid not in self.msgs:
            self.msgs[mid] = msg
            self.history[0].append(CacheEntry(mid, msg.topicIDs))


def _score_params() -> ScoreParams:
    # Only P4 (invalid messages) is weighted: -1 per rejected message, decaying 10% per heartbeat.
    # Below -20 (py-libp2p's publish gate) a forwarder's messages are dropped before validation
    # and we stop sending to it; below -40 its GRAFTs are refused.
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=1.0, cap=1000.0, decay=0.9),
        gossip_threshold=-10.0,
        publish_threshold=-20.0,
        graylist_threshold=-40.0,
        accept_px_threshold=0.0,
    )


MESH_DEGREE = (6, 4, 12)  # GossipSub D, D_lo, D_hi (PROTOCOL.md section 3)


class _Quotas:
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


_DIAL_HOST_PROTOCOLS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6"})


def presence_dial_addrs(author: str, addrs: list[str], limit: int = 2) -> list[str]:
    """The addresses of a Presence worth dialing: at most `limit`, each a multiaddr of exactly
    /<ip4|ip6|dns|dns4|dns6>/<host>/tcp/<port>/p2p/<author>, i.e. the author's own address (a
    relayed Presence must not make us dial third parties), not an unspecified or multicast IP,
    nor port 0. Canonical text, in the given order, without duplicates."""
    chosen: list[str] = []
    if limit <= 0 or not author:
        return chosen
    for text in addrs:
        if len(chosen) >= limit:
            break
        if not isinstance(text, str) or len(text) > 256:
            continue
        try:
            address = multiaddr.Multiaddr(text)
            parts = [(protocol.name, value) for protocol, value in address.items()]
        except Exception:
            continue
        if len(parts) != 3:
            continue
        (host_kind, host), (transport, port), (p2p, peer) = parts
        if host_kind not in _DIAL_HOST_PROTOCOLS or transport != "tcp" or p2p != "p2p" or peer != author:
            continue
        try:
            if not 0 < int(port) < 65536:
                continue
            if host_kind in ("ip4", "ip6"):
                ip = ipaddress.ip_address(host)
                if ip.is_unspecified or ip.is_multicast:
                    continue
        except ValueError:
            continue
        canonical = str(address)
        if canonical not in chosen:
            chosen.append(canonical)
    return chosen


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
        self._provider = sync_provider
        self._policy_check = policy_check
        self._on_reject = on_reject
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        self._heartbeat_interval = heartbeat_interval
        self.mesh_degree = mesh_degree
        self._ban_after = ban_after
        self._sync_timeout = sync_timeout
        self._send, self.messages = trio.open_memory_channel[Received](queue_size)
        self.banned: set[str] = set()
        self.rejections: dict[str, int] = defaultdict(int)  # reason -> count, for status/dashboard
        self._offenses: dict[ID, deque[float]] = defaultdict(deque)
        self._validated: OrderedDict[bytes, Message] = OrderedDict()  # validator -> reader hand-off
        self._delivered: OrderedDict[bytes, None] = OrderedDict()  # ids already handed to the node
        self._quotas = _Quotas(quotas or {}, quota_authors)
        self._forward_rate = forward_rate
        self._quota_reported: OrderedDict[bytes, None] = OrderedDict()  # ids counted under "quota"
        self._sync_active = 0  # answered sync streams, all peers
        self._sync_by_peer: dict[ID, int] = defaultdict(int)  # answered sync streams per peer
        self._host: Any = None
        self._pubsub: _ReportingPubsub | None = None
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
        gossipsub = GossipSub(
            protocols=list(GOSSIPSUB_PROTOCOLS),
            degree=self.mesh_degree[0],
            degree_low=self.mesh_degree[1],
            degree_high=self.mesh_degree[2],
            time_to_live=60,
            gossip_window=3,
            gossip_history=5,
            heartbeat_interval=self._heartbeat_interval,
            do_px=False,
            score_params=_score_params(),
            # adaptive gossip stretches the heartbeat to 30-60 s when it judges the network
            # unhealthy (a small swarm looks unhealthy), which freezes score decay and mesh repair
            adaptive_gossip_enabled=False,
            max_messages_per_topic_per_second=self._forward_rate,  # per connection and topic (FORWARD_RATE)
        )
        gossipsub.mcache = _ContentAddressedCache(gossipsub.mcache.window_size, gossipsub.mcache.history_size)
        # One attempt per dial: the node retries its bootstrap peers itself (with backoff), and
        # py-libp2p's three quick retries made one heard-of address cost a stranger four connections.
        host.get_network().retry_config = RetryConfig(max_retries=0)
        self._host = host
        pubsub = _ReportingPubsub(
            host,
            gossipsub,
            strict_signing=True,
            msg_id_constructor=_pubsub_message_id,
            on_bad_signature=self._on_bad_signature,
            on_message=self._take_in,
        )
        try:
            async with host.run(self._listen):
                async with background_trio_service(pubsub), background_trio_service(gossipsub):
                    await pubsub.wait_until_ready()
                    host.set_stream_handler(SYNC_PROTOCOL, self._serve_sync)
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
            self._send.close()

    @property
    def running(self) -> bool:
        return self._nursery is not None

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
        self._pubsub.set_topic_validator(topic, self._validator_for(topic), False)
        # the subscription's own queue stays empty: _ReportingPubsub hands messages to _take_in
        await self._pubsub.subscribe(topic)

    def _take_in(self, raw: rpc_pb2.Message) -> None:
        """Queue a validated message from another peer for the node, once per message id; called
        by pubsub right after validation. Never blocks: past `queue_size` waiting it counts the
        message as "overload" (it was still forwarded) instead of dropping it silently."""
        if raw.from_id == self._my_id.to_bytes():
            return  # pubsub hands us our own publishes too
        mid = message_id(raw.data)
        if mid in self._delivered:
            return  # the same message on a second topic, or replayed after seen-cache expiry
        msg = self._validated.pop(mid, None)
        if msg is None:  # evicted from the hand-off cache: it did pass validation
            try:
                msg = decode(raw.data, check_time=False)
            except MessageRejected:
                return
        author = ID(raw.from_id)
        try:
            self._send.send_nowait(Received(msg, author.to_base58(), mid))
        except trio.WouldBlock:
            self._reject("overload", author, msg)  # not remembered: a later copy may still get in
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # shutting down
        _remember(self._delivered, mid, None, 4096)

    def _validator_for(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, raw: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id and raw.from_id == self._my_id.to_bytes():
                return True  # our own publish, built from a validated model
            reason, msg = self._check(topic, raw)
            mid = message_id(raw.data)
            if reason is None and not self._quotas.allow(msg.author, msg.type, trio.current_time()):
                self._pubsub.ignore.add(mid)  # neither forwarded nor scored against the forwarder
                if mid in self._quota_reported:
                    return False  # another copy (gossip may bring it again): counted once
                _remember(self._quota_reported, mid, None, 4096)
                reason = "quota"
            if reason is not None:
                self._reject(reason, forwarder, msg)
                return False
            _remember(self._validated, mid, msg, 1024)
            return True

        return validate

    def _check(self, topic: str, raw: rpc_pb2.Message) -> tuple[str | None, Message | None]:
        try:
            msg = decode(raw.data)
        except MessageRejected as rejected:
            return rejected.reason, None
        try:
            signer = ID(raw.from_id).to_base58()
        except Exception:
            return "author-mismatch", msg
        if msg.author != signer:
            return "author-mismatch", msg
        if list(raw.topicIDs) != [topic] or topic_for(msg) != topic:
            return "topic-mismatch", msg
        if self._policy_check is not None:
            try:
                why = self._policy_check(msg)
            except Exception:
                log.exception("network.policy_check_failed", type=msg.type, author=msg.author)
                why = "policy:error"
            if why:
                return (why if why.startswith("policy:") else f"policy:{why}"), msg
        return None, msg

    def _on_bad_signature(self, forwarder: ID, raw: rpc_pb2.Message, reason: str) -> None:
        self._reject(reason, forwarder, None)

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
        now = trio.current_time()
        history = self._offenses[peer]
        history.append(now)
        while history and history[0] < now - OFFENSE_WINDOW_S:
            history.popleft()
        if len(history) >= self._ban_after and peer.to_base58() not in self.banned:
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
        answer = await self._ask(peer_id, BestRequest())
        if not isinstance(answer, BestAnswer):
            raise self._bad_answer(peer_id, "schema", f"answered {answer.op} to best")
        return dict(answer.best)

    async def request_state(self, peer_id: str, state: str) -> str | None:
        """train.py of `state` from the peer, verified by its hash; None if the peer lacks it."""
        answer = await self._ask(peer_id, StateRequest(state=state))
        if not isinstance(answer, StateAnswer) or answer.state != state:
            raise self._bad_answer(peer_id, "schema", "answer does not match the request")
        if answer.source is not None and state_hash(answer.source) != state:
            raise self._bad_answer(peer_id, "state-mismatch", f"source does not hash to {state[:12]}")
        return answer.source

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
        self._require_running()
        waiting = deque(p for p in dict.fromkeys(peers) if p != self.peer_id)
        found: tuple[str, str] | None = None

        async def ask_in_turn(cancel_scope: trio.CancelScope) -> None:
            nonlocal found
            while waiting and found is None:
                peer = waiting.popleft()
                try:
                    source = await self.request_state(peer, state)
                except SyncError as error:
                    log.info("network.state_request_failed", peer=peer, state=state[:12], reason=error.reason)
                    continue
                if source is not None and found is None and state_hash(source) == state:
                    found = (source, peer)
                    cancel_scope.cancel()

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for _ in range(min(max(fanout, 1), len(waiting))):
                    nursery.start_soon(ask_in_turn, nursery.cancel_scope)
        return found

    def _bad_answer(self, peer_id: str, reason: str, detail: str) -> SyncError:
        self._reject(reason, ID.from_base58(peer_id), None)
        return SyncError(reason, peer_id, detail)

    async def _ask(self, peer_id: str, request: Any) -> Any:
        self._require_running()
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            raise SyncError("unreachable", peer_id, "not a peer id") from None
        stream: INetStream | None = None
        try:
            with trio.fail_after(self._sync_timeout):
                stream = await self._host.new_stream(peer, [SYNC_PROTOCOL])
                await stream.write(encode_varint_prefixed(encode_sync(request)))
                data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_RESPONSE_BYTES)
                await stream.close()
        except trio.Cancelled:  # e.g. request_state_any got its answer elsewhere
            with trio.CancelScope(shield=True):
                await _reset(stream)
            raise
        except trio.TooSlowError:
            await _reset(stream)
            raise SyncError("timeout", peer_id) from None
        except MessageTooLarge:
            await _reset(stream)
            raise self._bad_answer(peer_id, "oversized", "answer over the size limit") from None
        except (BaseLibp2pError, OSError) as error:
            await _reset(stream)
            raise SyncError("unreachable", peer_id, f"{type(error).__name__}: {error}") from error
        try:
            answer = decode_sync_answer(data)
        except MessageRejected as rejected:
            raise self._bad_answer(peer_id, rejected.reason, rejected.detail) from None
        if isinstance(answer, ErrorAnswer):
            raise SyncError(f"refused:{answer.error}", peer_id)
        return answer

    async def _serve_sync(self, stream: INetStream) -> None:
        """Answer one request: at most SYNC_MAX_PER_PEER streams per peer and SYNC_MAX_CONCURRENT
        in all at once (others are reset at once, so one peer cannot starve the rest), the request
        within SYNC_REQUEST_TIMEOUT_S of the stream opening, all of it within sync_timeout."""
        peer = stream.muxed_conn.peer_id
        if peer.to_base58() in self.banned:
            await _reset(stream)
            return
        if self._sync_by_peer.get(peer, 0) >= SYNC_MAX_PER_PEER or self._sync_active >= SYNC_MAX_CONCURRENT:
            log.info("network.sync_busy", peer=peer.to_base58(), from_peer=self._sync_by_peer.get(peer, 0),
                     all=self._sync_active)
            await _reset(stream)
            return
        self._sync_by_peer[peer] += 1
        self._sync_active += 1
        try:
            with trio.move_on_after(self._sync_timeout) as scope:
                await self._answer(stream, peer)
            if scope.cancelled_caught:
                log.info("network.sync_timeout", peer=peer.to_base58())
                await _reset(stream)
        except (BaseLibp2pError, OSError) as error:
            log.info("network.sync_stream_failed", peer=peer.to_base58(), error=repr(error))
            await _reset(stream)
        finally:
            self._sync_active -= 1
            self._sync_by_peer[peer] -= 1
            if self._sync_by_peer[peer] <= 0:
                del self._sync_by_peer[peer]

    async def _answer(self, stream: INetStream, peer: ID) -> None:
        try:
            with trio.move_on_after(min(SYNC_REQUEST_TIMEOUT_S, self._sync_timeout)) as waiting:
                data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_REQUEST_BYTES)
            if waiting.cancelled_caught:
                log.info("network.sync_request_timeout", peer=peer.to_base58())
                await _reset(stream)
                return
            request = decode_sync_request(data)
        except MessageTooLarge:
            self._reject("oversized", peer, None)
            answer: Any = ErrorAnswer(error="oversized")
        except MessageRejected as rejected:
            self._reject(rejected.reason, peer, None)
            answer = ErrorAnswer(error=rejected.reason)
        else:
            answer = await self._answer_request(request)
        try:
            payload = encode_sync(answer)
        except MessageRejected:
            payload = encode_sync(ErrorAnswer(error="oversized"))
        await stream.write(encode_varint_prefixed(payload))
        await stream.close()

    async def _answer_request(self, request: Any) -> Any:
        try:
            if isinstance(request, BestRequest):
                best = await _maybe_await(self._provider.best())
                return BestAnswer(
                    best={t: b if isinstance(b, Best) else Best.model_validate(b) for t, b in best.items()}
                )
            source = await _maybe_await(self._provider.state_source(request.state))
            return StateAnswer(state=request.state, source=source)
        except Exception:
            log.exception("network.sync_provider_failed", op=request.op)
            return ErrorAnswer(error="internal")

    def _require_running(self) -> None:
        if self._nursery is None:
            raise RuntimeError("SwarmNetwork is not running (start it with nursery.start(net.run))")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _reset(stream: INetStream | None) -> None:
    if stream is None:
        return
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except (BaseLibp2pError, OSError):
            pass


def _remember(cache: OrderedDict, key: bytes, value: Any, capacity: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > capacity:
        cache.popitem(last=False)
