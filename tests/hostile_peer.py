"""A hostile swarm peer for tests, on real libp2p.

It is a real `SwarmNetwork` (so it connects, joins the GossipSub mesh and answers sync requests
like any peer) that also hand-crafts pubsub messages which `SwarmNetwork.publish` refuses to send:
raw bytes, another peer's name as author, no signature, a forged signature, and the very same
signed message twice. Crafted messages go straight into the pubsub stream to one peer, so neither
this peer's validators nor its seen-message cache stand in the way.

Identity is a fresh key whose messages a HostilePeer relays; BestServer a HostilePeer whose sync
`best` answer the test chooses.
"""
from __future__ import annotations

import os

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.network import SwarmNetwork

LOCAL = "/ip4/127.0.0.1/tcp/0"


class HostilePeer:
    """A peer that misbehaves on purpose. Run `net.run` in a nursery, then `connect` to a victim."""

    def __init__(self, topics: list[str], sources: dict[str, str] | None = None):
        self.key_pair = create_new_key_pair()
        self.id = peer_id_of(self.key_pair)
        self.sources = dict(sources or {})  # train.py by state, served over sync
        self.asked: list[str] = []  # states peers asked us for
        self.net = SwarmNetwork(self.key_pair, topics=topics, listen=[LOCAL], sync_provider=self)

    # --- what we answer on the sync protocol ----------------------------------------------------

    def best(self) -> dict:
        return {}

    def state_source(self, state: str) -> str | None:
        self.asked.append(state)
        return self.sources.get(state)

    # --- reaching the victim --------------------------------------------------------------------

    async def connect(self, address: str, topics: list[str], timeout: float = 15.0) -> str:
        """Dial `address`; wait until the victim is in our mesh for every topic. Returns its id."""
        peer = await self.net.connect(address)
        for topic in topics:
            await self.net.wait_for_mesh(peer, topic, timeout=timeout)
        return peer

    # --- crafting -------------------------------------------------------------------------------

    def craft(self, topic: str, data: bytes, *, signing: str = "valid") -> rpc_pb2.Message:
        """One pubsub message from us; `signing` is 'valid', 'none' or 'forged' (random bytes)."""
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=ID.from_base58(self.id).to_bytes(),
                              seqno=os.urandom(8))
        if signing == "none":
            return msg
        if signing == "valid":  # signed over data, topics, from and seqno, before the key is added
            msg.signature = self.key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        elif signing == "forged":
            msg.signature = os.urandom(64)
        else:
            raise ValueError(f"signing must be valid, none or forged, not {signing!r}")
        msg.key = self.key_pair.public_key.serialize()
        return msg

    async def send(self, peer: str, *messages: rpc_pb2.Message, pause: float = 0.05) -> None:
        """Write each message on our pubsub stream to `peer`, paced: py-libp2p drops a burst
        beyond its 32-deep per-peer queue."""
        gossipsub = self.net._gossipsub  # noqa: SLF001 - the test reaches below the public API on purpose
        if gossipsub is None:
            raise RuntimeError("the hostile peer is not running")
        for msg in messages:
            gossipsub.send_rpc(ID.from_base58(peer), rpc_pb2.RPC(publish=[msg]))
            await trio.sleep(pause)


class Identity:
    """A fresh key: messages signed by it are relayed by a HostilePeer (GossipSub forwards others'
    messages, so the forwarder is not the author)."""

    def __init__(self):
        self.key_pair = create_new_key_pair()
        self.id = peer_id_of(self.key_pair)

    def sign(self, topic: str, data: bytes) -> rpc_pb2.Message:
        msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=ID.from_base58(self.id).to_bytes(),
                              seqno=os.urandom(8))
        msg.signature = self.key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = self.key_pair.public_key.serialize()
        return msg


class BestServer(HostilePeer):
    """A hostile peer whose sync `best` answer is chosen by the test (optionally after a delay)."""

    def __init__(self, topics, best: dict | None = None, sources: dict | None = None, delay: float = 0.0):
        super().__init__(topics, sources)
        self.entries = dict(best or {})
        self.delay = delay
        self.best_asked = 0

    def best(self):
        self.best_asked += 1
        if not self.delay:
            return dict(self.entries)

        async def later():
            await trio.sleep(self.delay)
            return dict(self.entries)
        return later()


async def send_batched(peer: HostilePeer, node: str, msgs: list, batch: int = 16, pause: float = 0.1) -> None:
    """Several messages per RPC: the sender's per-peer queue holds 32 RPCs, not 32 messages."""
    gossipsub = peer.net._gossipsub  # noqa: SLF001
    for i in range(0, len(msgs), batch):
        gossipsub.send_rpc(ID.from_base58(node), rpc_pb2.RPC(publish=msgs[i:i + batch]))
        await trio.sleep(pause)
