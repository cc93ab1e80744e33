"""GossipSub as the swarm runs it: py-libp2p 0.8.1's router and pubsub, mended where they fall short.

What py-libp2p does and does not do for us (measured, see PROTOCOL.md): topic validators run
before a message is delivered or forwarded; unsigned messages are dropped by pubsub before any
validator sees them; validated messages go to a 32-slot queue per topic, dropped silently when it
is full; a validator can only accept or reject (GossipSub's "ignore" is missing); and the message
cache is keyed by from+seqno whatever the message id rule is. `ReportingPubsub` and the cache here
mend that; the router's parameters (mesh degree, scoring, forwarding rate) are the swarm's.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from libp2p.custom_types import TProtocol
from libp2p.exceptions import ValidationError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.pubsub.validators import signature_validator

from swarm_node.wire import message_id

from .offenses import Reject

log = structlog.get_logger("swarm_node.p2p.network")  # the network layer logs as one

# 1.1 only: py-libp2p's 1.2 adds an IDONTWANT per message and hop, which doubled the CPU per
# message in a 35-host swarm (benchmarks/gossip_latency.py) for no gain at our message sizes.
GOSSIPSUB_PROTOCOLS = (TProtocol("/meshsub/1.1.0"),)
MESH_DEGREE = (6, 4, 12)  # GossipSub D, D_lo, D_hi (PROTOCOL.md section 3)


def remember(cache: OrderedDict, key: bytes, value: Any, capacity: int) -> None:
    """Keep `key` as the newest of at most `capacity`: gossip can bring any message again, so what
    is remembered per message id must forget the oldest rather than grow with the traffic."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > capacity:
        cache.popitem(last=False)


class _Ignored(Exception):
    """Raised through push_msg for a message a validator asked to ignore."""


class ReportingPubsub(Pubsub):
    """py-libp2p's Pubsub with strict signing and our message ids, telling us about messages it
    drops for a missing or bad signature, handing each validated message straight to `on_message`
    (py-libp2p's own per-topic queue holds 32 and drops the rest silently), and able to ignore a
    message: a validator that adds the message id to `ignore` before returning False gets it
    dropped without the P4 penalty for the forwarder and without caching the failure (the same
    message may pass later)."""

    def __init__(
        self,
        host: Any,
        router: GossipSub,
        *,
        on_bad_signature: Reject,
        on_message: Callable[[rpc_pb2.Message], None],
    ) -> None:
        super().__init__(host, router, strict_signing=True, msg_id_constructor=_pubsub_message_id)
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
                    remember(self._reported, mid, None, 1024)
                    self._on_bad_signature(reason, msg_forwarder, None)
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


def new_gossipsub(mesh_degree: tuple[int, int, int], heartbeat_interval: int, forward_rate: float) -> GossipSub:
    """The router: `forward_rate` is messages per connection and topic a second (quotas.FORWARD_RATE)."""
    gossipsub = GossipSub(
        protocols=list(GOSSIPSUB_PROTOCOLS),
        degree=mesh_degree[0],
        degree_low=mesh_degree[1],
        degree_high=mesh_degree[2],
        time_to_live=60,
        gossip_window=3,
        gossip_history=5,
        heartbeat_interval=heartbeat_interval,
        do_px=False,
        score_params=_score_params(),
        # adaptive gossip stretches the heartbeat to 30-60 s when it judges the network
        # unhealthy (a small swarm looks unhealthy), which freezes score decay and mesh repair
        adaptive_gossip_enabled=False,
        max_messages_per_topic_per_second=forward_rate,
    )
    gossipsub.mcache = _ContentAddressedCache(gossipsub.mcache.window_size, gossipsub.mcache.history_size)
    return gossipsub
