"""What the node takes in over gossip: the validator each message must pass before pubsub delivers
or forwards it, and the hand-off of validated messages to the node.

A message fails with a reason (wire.py's decoding, author = signer, topic, the node's policy)
or, over its author's quota, is ignored: neither forwarded nor held against the forwarder. A
validated message reaches the node once; when the node reads too slowly it is counted as
"overload", never dropped silently.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import structlog
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from swarm_node.messages import AnyMessage as Message
from swarm_node.messages import topic_for
from swarm_node.wire import MessageRejected, decode, message_id

from .gossipsub import remember
from .offenses import Reject
from .quotas import Quotas

log = structlog.get_logger("swarm_node.p2p.network")  # the network layer logs as one

QUEUE_SIZE = 4096  # validated messages waiting for the node; past this they count as "overload"

PolicyCheck = Callable[[Message], "str | None"]


class Received(NamedTuple):
    """A valid message from another peer: `peer` is its author (== signer)."""

    message: Message
    peer: str
    message_id: bytes


class Inbound:
    """Validators for our topics and the queue behind them; the node reads `messages`."""

    def __init__(
        self, my_id: ID, *, quotas: Quotas, policy_check: PolicyCheck | None, reject: Reject, queue_size: int
    ) -> None:
        self._my_id = my_id
        self._quotas = quotas
        self._policy_check = policy_check
        self._reject = reject
        self._send, self.messages = trio.open_memory_channel[Received](queue_size)
        self._validated: OrderedDict[bytes, Message] = OrderedDict()  # validator -> take_in hand-off
        self._delivered: OrderedDict[bytes, None] = OrderedDict()  # ids already handed to the node
        self._quota_reported: OrderedDict[bytes, None] = OrderedDict()  # ids counted under "quota"

    def close(self) -> None:
        self._send.close()

    def validator_for(self, topic: str, ignore: set[bytes]) -> Callable[[ID, rpc_pb2.Message], bool]:
        """The validator of `topic`; `ignore` is the pubsub's (ReportingPubsub.ignore)."""

        def validate(forwarder: ID, raw: rpc_pb2.Message) -> bool:
            if forwarder == self._my_id and raw.from_id == self._my_id.to_bytes():
                return True  # our own publish, built from a validated model
            reason, msg = self._check(topic, raw)
            mid = message_id(raw.data)
            if reason is None and not self._quotas.allow(msg.author, msg.type, trio.current_time()):
                ignore.add(mid)  # neither forwarded nor scored against the forwarder
                if mid in self._quota_reported:
                    return False  # another copy (gossip may bring it again): counted once
                remember(self._quota_reported, mid, None, 4096)
                reason = "quota"
            if reason is not None:
                self._reject(reason, forwarder, msg)
                return False
            remember(self._validated, mid, msg, 1024)
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

    def take_in(self, raw: rpc_pb2.Message) -> None:
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
        remember(self._delivered, mid, None, 4096)
