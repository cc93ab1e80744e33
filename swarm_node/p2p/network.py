"""The node's network: a libp2p host, GossipSub with validators and scoring, and the sync protocol.

One `SwarmNetwork` per node, run inside the node's trio nursery:

    network = SwarmNetwork(key_pair, topics=[PRESENCE_TOPIC, bench.topic()], ...)
    await nursery.start(network.run)          # listening and subscribed when this returns
    await network.connect(bootstrap_multiaddr)
    await network.publish(discovery)
    async for message, peer, message_id in network.messages: ...

Everything from libp2p is standard: TCP, noise, yamux (mplex fallback), GossipSub v1.1/v1.2 with
strict signing. What py-libp2p 0.8.1 does and does not do for us (measured, see PROTOCOL.md):
topic validators run before a message is delivered or forwarded; unsigned messages are dropped
by pubsub before any validator sees them (a small Pubsub subclass reports them); validator
failures feed the P4 score counter, but the mesh heartbeat never prunes low scorers, so repeat
offenders are banned here: blacklisted in pubsub, dropped from the mesh and disconnected.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import multiaddr
import structlog
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.network.config import ConnectionConfig
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

SYNC_PROTOCOL = TProtocol("/swarm-node/sync/1.0.0")
# 1.1 only: py-libp2p's 1.2 adds an IDONTWANT per message and hop, which doubled the CPU per
# message in a 35-host swarm (benchmarks/gossip_latency.py) for no gain at our message sizes.
GOSSIPSUB_PROTOCOLS = (TProtocol("/meshsub/1.1.0"),)
DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)

CONNECT_TIMEOUT_S = 10.0
SYNC_TIMEOUT_S = 10.0  # a whole request/answer exchange, either side
SYNC_MAX_CONCURRENT = 16  # answered streams at once; more are reset
OFFENSE_WINDOW_S = 600.0
BAN_AFTER_OFFENSES = 5  # protocol violations by one peer within the window
# Deterministic protocol violations: every honest node rejects these, so whoever sent one to us
# is at fault. Clock skew (future-timestamp) and local policy (policy:*) are not offenses.
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


class _ReportingPubsub(Pubsub):
    """py-libp2p's Pubsub, telling us about messages it drops for a missing or bad signature."""

    def __init__(
        self, *args: Any, on_bad_signature: Callable[[ID, rpc_pb2.Message, str], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_bad_signature = on_bad_signature
        self._reported: OrderedDict[bytes, None] = OrderedDict()

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
        await super().push_msg(msg_forwarder, msg)


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
        queue_size: int = 256,
        mesh_degree: tuple[int, int, int] = MESH_DEGREE,
    ) -> None:
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
        self._sync_slots = trio.Semaphore(SYNC_MAX_CONCURRENT)
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
            # counted per forwarder and topic; one forwarder relays the whole swarm's traffic
            max_messages_per_topic_per_second=100.0,
        )
        gossipsub.mcache = _ContentAddressedCache(gossipsub.mcache.window_size, gossipsub.mcache.history_size)
        self._host = host
        pubsub = _ReportingPubsub(
            host,
            gossipsub,
            strict_signing=True,
            msg_id_constructor=_pubsub_message_id,
            on_bad_signature=self._on_bad_signature,
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

    async def subscribe(self, topic: str) -> None:
        """Join one more topic while running (topics given to __init__ are joined by run())."""
        self._require_running()
        if topic not in self._topics:
            self._topics.append(topic)
            await self._subscribe(topic)

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
        subscription = await self._pubsub.subscribe(topic)
        self._nursery.start_soon(self._deliver, topic, subscription)

    async def _deliver(self, topic: str, subscription: Any) -> None:
        """Hand each valid message from another peer to the node, once per message id."""
        my_id = self._my_id.to_bytes()
        async for raw in subscription:
            if raw.from_id == my_id:
                continue  # pubsub hands us our own publishes too
            mid = message_id(raw.data)
            if mid in self._delivered:
                continue  # the same message on a second topic, or replayed after seen-cache expiry
            _remember(self._delivered, mid, None, 4096)
            msg = self._validated.pop(mid, None)
            if msg is None:  # evicted from the hand-off cache: it did pass validation
                msg = decode(raw.data, now=float("inf"))
            await self._send.send(Received(msg, ID(raw.from_id).to_base58(), mid))

    def _validator_for(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, raw: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id and raw.from_id == self._my_id.to_bytes():
                return True  # our own publish, built from a validated model
            reason, msg = self._check(topic, raw)
            if reason is not None:
                self._reject(reason, forwarder, msg)
                return False
            _remember(self._validated, message_id(raw.data), msg, 1024)
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
        log.info("network.rejected", reason=reason, peer=peer, type=getattr(msg, "type", None))
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

    def _bad_answer(self, peer_id: str, reason: str, detail: str) -> SyncError:
        self._reject(reason, ID.from_base58(peer_id), None)
        return SyncError(reason, peer_id, detail)

    async def _ask(self, peer_id: str, request: Any) -> Any:
        self._require_running()
        peer = ID.from_base58(peer_id)
        stream: INetStream | None = None
        try:
            with trio.fail_after(self._sync_timeout):
                stream = await self._host.new_stream(peer, [SYNC_PROTOCOL])
                await stream.write(encode_varint_prefixed(encode_sync(request)))
                data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_RESPONSE_BYTES)
                await stream.close()
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
        peer = stream.muxed_conn.peer_id
        if peer.to_base58() in self.banned:
            await _reset(stream)
            return
        try:
            self._sync_slots.acquire_nowait()
        except trio.WouldBlock:
            await _reset(stream)
            return
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
            self._sync_slots.release()

    async def _answer(self, stream: INetStream, peer: ID) -> None:
        try:
            data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_REQUEST_BYTES)
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
