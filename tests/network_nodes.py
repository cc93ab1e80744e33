"""Real libp2p hosts on 127.0.0.1 for the network tests (tests/test_network_*.py): a Node (a
SwarmNetwork that records what it rejected), a RawPeer (a bare py-libp2p host that publishes whatever
bytes it is given), the messages they exchange, and `run`, which bounds each test's trio.run.
"""
from __future__ import annotations

import time
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from swarm_node.messages import PRESENCE_TOPIC, BenchKey, Best, Claim, Discovery, SeedRun, state_hash
from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.gossipsub import GOSSIPSUB_PROTOCOLS
from swarm_node.p2p.network import SwarmNetwork

PARENT_SRC = "LEARNING_RATE = 6e-4\n"
CHILD_SRC = "LEARNING_RATE = 8e-4\n"
PARENT, CHILD = state_hash(PARENT_SRC), state_hash(CHILD_SRC)
BENCH = BenchKey(target="tinygpt", corpus=state_hash("corpus"), tier="cpu", budget=2 * 10**12, unit="flops",
                 device="cpu", torch="2.13.0")
TOPIC = BENCH.topic()
TOPICS = [PRESENCE_TOPIC, TOPIC]
LOCAL = "/ip4/127.0.0.1/tcp/0"
RUNS = [SeedRun(seed=s, val_bpb=2.25 + d, test_bpb=2.3 + d) for s, d in enumerate((-0.002, 0.0, 0.002, -0.001, 0.001))]


def discovery(author: str, diff: str = "-LEARNING_RATE = 6e-4\n+LEARNING_RATE = 8e-4\n", **changes):
    fields = dict(author=author, ts=time.time(), bench=BENCH, state=CHILD, parent=PARENT, diff=diff,
                  val_bpb=2.25, test_bpb=2.3, runs=RUNS, noise=0.01, description="lr up",
                  hparams={"LEARNING_RATE": 8e-4})
    fields.update(changes)
    return Discovery(**fields)


def claim(author: str, **changes):
    fields = dict(author=author, ts=time.time(), bench=BENCH, state=CHILD, parent=PARENT, description="lr up")
    fields.update(changes)
    return Claim(**fields)


def hparams_only(msg) -> str | None:
    """Stand-in for the node's diff policy: code (an import) is outside the hyperparameter block."""
    if isinstance(msg, Discovery) and "import" in msg.diff:
        return "policy:code-outside-hparams"
    return None


class Provider:
    def __init__(self, author: str, sources: dict[str, str]):
        self.author = author
        self.sources = sources

    def best(self):
        return {"cpu": Best(bench=BENCH, state=CHILD, val_bpb=2.25, test_bpb=2.3, author=self.author)}

    def state_source(self, state: str):
        return self.sources.get(state)


class LyingProvider(Provider):
    def state_source(self, state: str):
        return "print('not what you asked for')\n"


class SleepyProvider(Provider):
    """Has every state and never gets round to answering (until its server's sync timeout)."""

    async def state_source(self, state: str):
        await trio.sleep(60)
        return self.sources.get(state)


class EmptyProvider(Provider):
    def state_source(self, state: str):
        return None


class Node:
    """A SwarmNetwork plus what it rejected."""

    def __init__(self, provider_cls=Provider, **kwargs):
        self.rejected: list[tuple[str, str]] = []
        key_pair = create_new_key_pair()
        self.provider = provider_cls(peer_id_of(key_pair), {PARENT: PARENT_SRC, CHILD: CHILD_SRC})
        self.net = SwarmNetwork(
            key_pair, topics=TOPICS, listen=[LOCAL], policy_check=hparams_only, sync_provider=self.provider,
            on_reject=lambda reason, peer, msg: self.rejected.append((reason, peer)), **kwargs,
        )

    @property
    def id(self) -> str:
        return self.net.peer_id

    @property
    def addr(self) -> str:
        return self.net.listen_addrs()[0]

    async def received(self, seconds: float) -> list:
        """Everything delivered within `seconds`."""
        items = []
        with trio.move_on_after(seconds):
            async for item in self.net.messages:
                items.append(item)
        return items

    async def next(self, timeout: float = 5.0):
        with trio.fail_after(timeout):
            return await self.net.messages.receive()


async def start(nursery, *nodes: Node) -> None:
    for node in nodes:
        await nursery.start(node.net.run)


async def link(a: Node, b: Node) -> None:
    """a dials b; wait until each is in the other's mesh for both topics."""
    await a.net.connect(b.addr)
    for topic in TOPICS:
        await a.net.wait_for_mesh(b.id, topic)
        await b.net.wait_for_mesh(a.id, topic)


class RawPeer:
    """A bare py-libp2p host with GossipSub and no validators: publishes whatever bytes it is given."""

    def __init__(self, strict_signing: bool = True):
        self.key_pair = create_new_key_pair()
        self.id = peer_id_of(self.key_pair)
        self.host = new_host(key_pair=self.key_pair, listen_addrs=[multiaddr.Multiaddr(LOCAL)],
                             connection_config=ConnectionConfig(max_connections_per_peer=1))
        self.gossipsub = GossipSub(protocols=list(GOSSIPSUB_PROTOCOLS), degree=6, degree_low=4, degree_high=12,
                                   heartbeat_interval=1, adaptive_gossip_enabled=False,
                                   max_messages_per_topic_per_second=1000)
        self.pubsub = Pubsub(self.host, self.gossipsub, strict_signing=strict_signing)

    async def enter(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.host.run([multiaddr.Multiaddr(LOCAL)]))
        await stack.enter_async_context(background_trio_service(self.pubsub))
        await stack.enter_async_context(background_trio_service(self.gossipsub))
        await self.pubsub.wait_until_ready()
        await self.pubsub.subscribe(TOPIC)

    async def link(self, node: Node) -> None:
        await self.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addr)))
        await self.pubsub.wait_for_subscription(ID.from_base58(node.id), TOPIC)
        await node.net.wait_for_subscriber(self.id, TOPIC)

    async def publish(self, data: bytes) -> None:
        await self.pubsub.publish(TOPIC, data)

    async def send_raw(self, node: Node, messages: list, per_rpc: int = 20) -> None:
        """Write pubsub messages straight onto a new GossipSub stream to `node`, `per_rpc` to an
        RPC: no outbound queue of our own to overflow, so every message reaches node's pubsub."""
        stream = await self.host.new_stream(ID.from_base58(node.id), list(GOSSIPSUB_PROTOCOLS))
        for i in range(0, len(messages), per_rpc):
            rpc = rpc_pb2.RPC(publish=messages[i:i + per_rpc])
            await stream.write(encode_varint_prefixed(rpc.SerializeToString()))


@asynccontextmanager
async def receiver_and_raw_peer():
    """A running Node and a RawPeer linked to it, in a nursery the caller cancels when done:
    yields (nursery, receiver, raw peer)."""
    receiver, raw = Node(), RawPeer()
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        await start(nursery, receiver)
        await raw.enter(stack)
        await raw.link(receiver)
        yield nursery, receiver, raw


def signed(key_pair, data: bytes, seqno: int = 1, topic: str = TOPIC) -> rpc_pb2.Message:
    """A pubsub message signed by `key_pair` (its author), as libp2p's publish builds one."""
    msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=ID.from_pubkey(key_pair.public_key).to_bytes(),
                          seqno=seqno.to_bytes(8, "big"))
    msg.signature = key_pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = key_pair.public_key.serialize()
    return msg


async def until(condition, timeout: float = 5.0, step: float = 0.02) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(step)


def run(test, seconds: float = 20.0):
    async def bounded():
        with trio.fail_after(seconds):
            await test()

    trio.run(bounded)
