"""The network layer on real libp2p hosts over 127.0.0.1: gossip, validators, bans, sync, identity.

Every test runs its own trio.run under trio.fail_after; hosts listen on 127.0.0.1 port 0.
"""
from __future__ import annotations

import os
import stat
import time
from contextlib import AsyncExitStack

import msgpack
import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from swarm_node.messages import (
    PRESENCE_TOPIC,
    BenchKey,
    Best,
    Claim,
    Discovery,
    Presence,
    SeedRun,
    state_hash,
)
from swarm_node.wire import MAX_MESSAGE_BYTES, encode, message_id
from swarm_node.p2p.identity import load_or_create_identity, peer_id_of
from swarm_node.p2p.dialing import presence_dial_addrs
from swarm_node.p2p.gossipsub import GOSSIPSUB_PROTOCOLS
from swarm_node.p2p.network import ConnectError, SwarmNetwork
from swarm_node.p2p.quotas import DEFAULT_QUOTAS
from swarm_node.p2p.quotas import Quotas as _Quotas
from swarm_node.p2p.sync import SYNC_MAX_PER_PEER, SYNC_PROTOCOL, SyncError

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


# ---- gossip ------------------------------------------------------------------------------------


def test_discovery_reaches_both_other_peers_exactly_once():
    async def scenario():
        a, b, c = Node(), Node(), Node()
        async with trio.open_nursery() as nursery:
            await start(nursery, a, b, c)
            await link(a, b)
            await link(b, c)  # a - b - c: c only hears a through b's forwarding
            sent = discovery(a.id)
            mid = await a.net.publish(sent)
            for node in (b, c):
                message, peer, message_id = await node.next()
                assert (message, peer, message_id) == (sent, a.id, mid)
            await a.net.publish(sent)  # the same bytes again: a duplicate by content
            presence = Presence(author=b.id, ts=time.time(), bench=BENCH, role="init-norm",
                                hardware={"cores": 2}, head=CHILD, version="0.1.0")
            await b.net.publish(presence)
            assert (await c.next()).message == presence
            assert (await a.next()).message == presence  # a got the presence, not its own discovery
            for node in (a, b, c):
                assert await node.received(0.5) == []
            assert a.rejected == b.rejected == c.rejected == []
            nursery.cancel_scope.cancel()

    run(scenario)


def test_gossip_names_messages_by_content_so_peers_fetch_only_what_they_lack():
    """GossipSub's message cache, the source of IHAVE ids and IWANT answers, is keyed by the sha256
    message id (PROTOCOL.md): a peer told of a message it has asks for nothing, of one it lacks
    asks for it, and the holder can answer that id."""
    async def scenario():
        a, b = Node(), Node()
        async with trio.open_nursery() as nursery:
            await start(nursery, a, b)
            await link(a, b)
            mid = await a.net.publish(discovery(a.id))
            assert (await b.next()).message_id == mid
            for node in (a, b):
                cache = node.net._gossipsub.mcache
                assert cache.window(TOPIC) == [mid]
                assert message_id(cache.get(mid).data) == mid
            asked: list[bytes] = []

            async def emit_iwant(msg_ids, to_peer):
                asked.extend(msg_ids)

            gossipsub = b.net._gossipsub
            gossipsub.emit_iwant = emit_iwant
            unknown = bytes(32)
            await gossipsub.handle_ihave(rpc_pb2.ControlIHave(topicID=TOPIC, messageIDs=[mid, unknown]),
                                         ID.from_base58(a.id))
            assert asked == [unknown]
            nursery.cancel_scope.cancel()

    run(scenario)


def test_publish_refuses_a_message_of_another_author():
    async def scenario():
        a = Node()
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            with pytest.raises(ValueError):
                await a.net.publish(claim("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"))
            nursery.cancel_scope.cancel()
        with pytest.raises(RuntimeError):
            await a.net.publish(claim(a.id))

    run(scenario)


def test_hostile_messages_are_rejected_reported_and_not_forwarded():
    async def scenario():
        honest, receiver, third = Node(), Node(), Node()
        hostile, unsigned = RawPeer(), RawPeer(strict_signing=False)
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, honest, receiver, third)
            await hostile.enter(stack)
            await unsigned.enter(stack)
            await link(honest, receiver)
            await link(receiver, third)  # third hears hostile traffic only if receiver forwards it
            await hostile.link(receiver)
            await unsigned.link(receiver)

            await hostile.publish(encode(claim(honest.id)))  # (a) author claims another peer
            await hostile.publish(b"\x80" * (MAX_MESSAGE_BYTES + 1))  # (b) oversized
            await hostile.publish(b"\xc1garbage")  # (c) undecodable
            await hostile.publish(encode(discovery(hostile.id, diff="+import os\n")))  # (d) policy
            await unsigned.publish(encode(claim(unsigned.id)))  # (e) unsigned
            with trio.fail_after(5):
                while len(receiver.rejected) < 5:
                    await trio.sleep(0.02)
            assert sorted(receiver.rejected) == sorted([
                ("author-mismatch", hostile.id), ("oversized", hostile.id), ("undecodable", hostile.id),
                ("policy:code-outside-hparams", hostile.id), ("unsigned", unsigned.id),
            ])
            assert receiver.net.banned == set()  # four offenses: under the ban threshold

            valid = discovery(honest.id)
            await honest.net.publish(valid)
            assert (await receiver.next()).message == valid  # nothing hostile came first
            assert (await third.next()).message == valid
            assert await receiver.received(0.3) == [] and await third.received(0.3) == []
            assert third.rejected == [] and honest.rejected == []
            assert receiver.net.rejections["undecodable"] == 1
            nursery.cancel_scope.cancel()

    run(scenario)


def test_repeat_offender_is_banned_and_cut_off():
    async def scenario():
        receiver, hostile = Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, receiver)
            await hostile.enter(stack)
            await hostile.link(receiver)
            assert hostile.id in receiver.net.mesh_peers(TOPIC) or hostile.id in receiver.net.connected_peers()
            for i in range(5):
                await hostile.publish(b"\xc1junk %d" % i)
            with trio.fail_after(5):
                while hostile.id in receiver.net.connected_peers():
                    await trio.sleep(0.02)
            assert receiver.net.banned == {hostile.id}
            assert [r for r, _ in receiver.rejected] == ["undecodable"] * 5
            assert hostile.id not in receiver.net.mesh_peers(TOPIC)
            with pytest.raises(ConnectError):
                await receiver.net.connect(f"/ip4/127.0.0.1/tcp/1/p2p/{hostile.id}")
            # it may dial back in, but pubsub ignores it and sync refuses it
            await hostile.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(receiver.addr)))
            await hostile.publish(encode(claim(hostile.id)))
            try:
                stream = await hostile.host.new_stream(ID.from_base58(receiver.id), [SYNC_PROTOCOL])
                await stream.write(encode_varint_prefixed(b"\x81\xa2op\xa4best"))
                answer = await stream.read(1)
            except BaseLibp2pError:
                answer = b""
            assert answer == b""
            assert await receiver.received(0.3) == []
            nursery.cancel_scope.cancel()

    run(scenario)


def test_policy_rejections_lower_the_score_without_a_ban():
    """Local policy is no offense (an honest peer may forward a code diff), but P4 gates a flood."""
    async def scenario():
        receiver, hostile = Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, receiver)
            await hostile.enter(stack)
            await hostile.link(receiver)
            for i in range(40):  # paced: py-libp2p drops bursts beyond its 32-deep per-peer queue
                await hostile.publish(encode(discovery(hostile.id, diff=f"+import os  # {i}\n")))
                await trio.sleep(0.005)
            seen = -1
            with trio.fail_after(5):
                while seen != len(receiver.rejected):  # until nothing new for 0.3 s
                    seen = len(receiver.rejected)
                    await trio.sleep(0.3)
            assert {r for r, _ in receiver.rejected} == {"policy:code-outside-hparams"}
            assert 20 <= len(receiver.rejected) < 40  # past -20 the publish gate drops the rest
            assert receiver.net.peer_score(hostile.id) < -10  # decays by 10% a heartbeat
            assert receiver.net.banned == set() and hostile.id in receiver.net.connected_peers()
            nursery.cancel_scope.cancel()

    run(scenario)


def test_author_quota_drops_a_flood_without_blaming_the_forwarder():
    """Quotas are per signer: a flood beyond its bucket is rejected as "quota" (not an offense,
    no P4 penalty, not forwarded), forgeries in another author's name do not spend that author's
    bucket, and the other author's messages still get through."""
    async def scenario():
        tight = {"claim": (0.01, 3.0)}  # 3 at once, then one per 100 s: exact counts in a test
        receiver, third, honest, hostile = Node(quotas=tight), Node(quotas=tight), Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, receiver, third, honest)
            await hostile.enter(stack)
            await link(honest, receiver)
            await link(receiver, third)
            await hostile.link(receiver)
            for i in range(3):  # signed by hostile in honest's name: author-mismatch, spends nothing
                await hostile.publish(encode(claim(honest.id, description=f"forged {i}")))
            flood = [signed(hostile.key_pair, encode(claim(hostile.id, description=f"flood {i}")), seqno=i + 1)
                     for i in range(12)]
            await hostile.send_raw(receiver, flood)
            await until(lambda: receiver.net.rejections["quota"] + receiver.net.rejections["author-mismatch"] >= 12)
            got = [item for item in await receiver.received(0.3) if item.peer == hostile.id]
            assert len(got) == 3 and receiver.net.rejections["quota"] == 9
            assert receiver.net.rejections["author-mismatch"] == 3
            assert {r for r, p in receiver.rejected if p == hostile.id} == {"author-mismatch", "quota"}
            assert receiver.net.banned == set()
            assert receiver.net.peer_score(hostile.id) > -3.5  # only the 3 forgeries count in P4
            for i in range(3):
                await honest.net.publish(claim(honest.id, description=f"honest {i}"))
            mine = [await receiver.next() for _ in range(3)]
            assert [m.message.description for m in mine] == [f"honest {i}" for i in range(3)]
            # the third peer heard exactly what the receiver let through: 3 of the flood, 3 honest
            heard = await third.received(0.5)
            assert sorted(h.peer for h in heard) == sorted([hostile.id] * 3 + [honest.id] * 3)
            assert third.rejected == []
            nursery.cancel_scope.cancel()

    run(scenario)


def test_quota_buckets_refill_and_forget_the_least_recent_author():
    quotas = _Quotas(DEFAULT_QUOTAS, max_authors=2)
    rate, burst = DEFAULT_QUOTAS["presence"]
    assert [quotas.allow("a", "presence", 100.0) for _ in range(int(burst) + 1)] == [True] * int(burst) + [False]
    assert quotas.allow("b", "presence", 100.0)  # another author has its own bucket
    assert quotas.allow("a", "claim", 100.0)  # and each type its own
    assert not quotas.allow("a", "presence", 100.0 + 0.5 / rate)
    assert quotas.allow("a", "presence", 100.0 + 1.0 / rate)  # one token back after 1/rate s
    assert quotas.allow("a", "unknown-type", 100.0)  # types not in the table are not limited
    quotas.allow("c", "presence", 100.0)  # a third author: "b" (least recent) is forgotten
    assert len(quotas) == 2
    assert _Quotas({}, 1).allow("x", "claim", 0.0)
    with pytest.raises(ValueError):
        _Quotas({"claim": (1.0, 0.5)}, 10)
    # an honest node: a claim and a result per >= 1 s experiment, presence every 5 s, a discovery
    # (sent twice) and an adoption every 30 s, for ten minutes, never runs out
    honest = _Quotas(DEFAULT_QUOTAS, 10)
    for second in range(600):
        now = 1000.0 + second
        assert honest.allow("n", "claim", now) and honest.allow("n", "result", now)
        if second % 5 == 0:
            assert honest.allow("n", "presence", now)
        if second % 30 == 0:
            assert honest.allow("n", "discovery", now) and honest.allow("n", "discovery", now + 2)
            assert honest.allow("n", "adoption", now)


def test_stale_timestamps_and_loose_versions_are_rejected_but_not_offenses():
    async def scenario():
        receiver, honest, hostile = Node(), Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, receiver, honest)
            await hostile.enter(stack)
            await link(honest, receiver)
            await hostile.link(receiver)
            fields = claim(hostile.id).model_dump()
            await hostile.publish(encode(claim(hostile.id, ts=0.0)))  # a claim dated 1970
            await hostile.publish(encode(claim(hostile.id, ts=time.time() - 3700)))
            await hostile.publish(msgpack.packb(dict(fields, v=True)))
            await hostile.publish(msgpack.packb(dict(fields, v=1.0, description="float")))
            await until(lambda: len(receiver.rejected) >= 4)
            assert sorted(receiver.rejected) == sorted(
                [("stale-timestamp", hostile.id)] * 2 + [("schema", hostile.id)] * 2)
            await honest.net.publish(claim(honest.id))
            assert (await receiver.next()).peer == honest.id  # nothing of hostile's came first
            assert receiver.net.banned == set()
            assert len(receiver.net._offenses[ID.from_base58(hostile.id)]) == 2  # the two schema ones
            nursery.cancel_scope.cancel()

    run(scenario)


def test_a_burst_of_valid_messages_is_delivered_or_counted_never_dropped_silently():
    """200 valid claims from 200 authors arrive at once. py-libp2p's own 32-slot subscription queue
    would drop most of them silently; here a node with the default queue gets all 200 even when it
    reads nothing meanwhile, and one with a small queue reading slowly counts each one it could not
    take as "overload"."""
    async def scenario():
        roomy, cramped, sender = Node(), Node(queue_size=16), RawPeer()
        authors = [create_new_key_pair() for _ in range(200)]
        burst = [signed(k, encode(claim(peer_id_of(k), description=f"burst {i}"))) for i, k in enumerate(authors)]
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, roomy, cramped)
            await sender.enter(stack)
            await sender.link(roomy)
            await sender.link(cramped)
            read: list = []

            async def read_slowly():
                async for item in cramped.net.messages:
                    read.append(item)
                    await trio.sleep(0.01)

            nursery.start_soon(read_slowly)
            await sender.send_raw(roomy, burst)
            await sender.send_raw(cramped, burst)

            def buffered(node):
                return node.net.messages.statistics().current_buffer_used

            await until(lambda: buffered(roomy) + roomy.net.rejections["overload"] >= 200, 8)
            await until(lambda: len(read) + buffered(cramped) + cramped.net.rejections["overload"] >= 200, 8)
            await trio.sleep(0.2)  # nothing more arrives
            delivered = []
            while True:
                try:
                    delivered.append(roomy.net.messages.receive_nowait())
                except trio.WouldBlock:
                    break
            assert len(delivered) == 200 and roomy.net.rejections["overload"] == 0
            assert {d.message.description for d in delivered} == {f"burst {i}" for i in range(200)}
            overload = cramped.net.rejections["overload"]
            assert len(read) + buffered(cramped) + overload == 200
            assert overload > 0 and len(read) >= 16
            assert sum(1 for reason, _ in cramped.rejected if reason == "overload") == overload
            assert roomy.rejected == [] and {r for r, _ in cramped.rejected} == {"overload"}
            nursery.cancel_scope.cancel()

    run(scenario)


def test_presence_dial_addrs_keeps_only_the_authors_own_tcp_addresses():
    me = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    other = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"
    good = [f"/ip4/10.0.0.5/tcp/4001/p2p/{me}", f"/ip6/::1/tcp/4001/p2p/{me}",
            f"/dns4/node.example.org/tcp/4001/p2p/{me}", f"/dns/node.example.org/tcp/4002/p2p/{me}"]
    bad = [
        f"/ip4/10.0.0.9/tcp/4001/p2p/{other}",  # a third party's address
        "/ip4/10.0.0.9/tcp/4001",  # no peer id
        f"/ip4/10.0.0.9/udp/4001/p2p/{me}",  # not tcp
        f"/ip4/10.0.0.9/tcp/4001/ws/p2p/{me}",  # not plain tcp
        f"/ip4/10.0.0.9/tcp/4001/p2p/{other}/p2p-circuit/p2p/{me}",  # through a relay
        f"/p2p/{me}",
        f"/ip4/0.0.0.0/tcp/4001/p2p/{me}",  # unspecified
        f"/ip4/224.0.0.1/tcp/4001/p2p/{me}",  # multicast
        f"/ip4/10.0.0.9/tcp/0/p2p/{me}",
        f"/ip4/999.0.0.1/tcp/4001/p2p/{me}",
        "not a multiaddr", "", f"/ip4/10.0.0.9/tcp/4001/p2p/{me}x", None,
    ]
    assert presence_dial_addrs(me, bad) == []
    assert presence_dial_addrs(me, bad + good) == good[:2]  # at most `limit` (2), in order
    assert presence_dial_addrs(me, good, limit=10) == good
    assert presence_dial_addrs(me, [good[0], good[0], *bad, good[2]]) == [good[0], good[2]]
    assert presence_dial_addrs(me, good, limit=0) == []
    assert presence_dial_addrs(other, good) == []
    many = [f"/ip4/10.0.0.9/tcp/{port}/p2p/{me}" for port in range(1, 300)]
    assert presence_dial_addrs(me, many) == many[:2]


# ---- sync protocol -----------------------------------------------------------------------------


def test_sync_best_and_state():
    async def scenario():
        a, b, liar = Node(), Node(), Node(provider_cls=LyingProvider)
        async with trio.open_nursery() as nursery:
            await start(nursery, a, b, liar)
            await b.net.connect(a.addr)
            await b.net.connect(liar.addr)
            best = await b.net.request_best(a.id)
            assert list(best) == ["cpu"] and best["cpu"].state == CHILD and best["cpu"].author == a.id
            assert await b.net.request_state(a.id, CHILD) == CHILD_SRC
            assert await b.net.request_state(a.id, state_hash("unknown")) is None
            big = "# padding\n" * 20_000  # 200 KB: many yamux frames
            a.provider.sources[state_hash(big)] = big
            assert await b.net.request_state(a.id, state_hash(big)) == big
            with pytest.raises(SyncError) as caught:
                await b.net.request_state(liar.id, CHILD)
            assert caught.value.reason == "state-mismatch"
            assert b.rejected == [("state-mismatch", liar.id)]
            nursery.cancel_scope.cancel()

    run(scenario)


def test_sync_server_survives_hostile_streams():
    async def scenario():
        server, client, hostile = Node(sync_timeout=0.5), Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, server, client)
            await hostile.enter(stack)
            await hostile.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(server.addr)))
            peer = ID.from_base58(server.id)
            silent = await hostile.host.new_stream(peer, [SYNC_PROTOCOL])  # says nothing: timed out
            huge = await hostile.host.new_stream(peer, [SYNC_PROTOCOL])  # claims a 1 GiB request
            await huge.write(b"\x80\x80\x80\x80\x04")  # varint 2**30
            answer = await huge.read(4096)
            assert b"oversized" in answer
            await client.net.connect(server.addr)
            t0 = trio.current_time()
            assert await client.net.request_state(server.id, PARENT) == PARENT_SRC
            assert trio.current_time() - t0 < 0.5
            with trio.fail_after(2):  # the server's timeout reset or closed it
                try:
                    assert await silent.read(10) == b""
                except BaseLibp2pError:
                    pass
            nursery.cancel_scope.cancel()

    run(scenario)


def test_one_peer_holding_idle_sync_streams_does_not_starve_another():
    """A peer gets SYNC_MAX_PER_PEER streams answered at once (the rest are reset at once), and an
    idle one is reset when no request came within 2 s, so 16 idle streams from one peer do not
    stop another peer's best request."""
    async def scenario():
        server, client, hostile = Node(), Node(), RawPeer()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            await start(nursery, server, client)
            await hostile.enter(stack)
            await hostile.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(server.addr)))
            await client.net.connect(server.addr)
            peer = ID.from_base58(server.id)
            opened_at = trio.current_time()
            idle = []
            for _ in range(16):
                try:
                    idle.append(await hostile.host.new_stream(peer, [SYNC_PROTOCOL]))
                except BaseLibp2pError:  # reset so soon that even the protocol negotiation failed
                    idle.append(None)
            closed_at: dict[int, float] = {}

            async def watch(i, stream):
                try:
                    if stream is not None:
                        await stream.read(10)
                except BaseLibp2pError:
                    pass
                closed_at[i] = trio.current_time() - opened_at

            async with trio.open_nursery() as watchers:
                for i, stream in enumerate(idle):
                    watchers.start_soon(watch, i, stream)
                await until(lambda: len(closed_at) >= 16 - SYNC_MAX_PER_PEER, 1.0)
                assert len(closed_at) == 16 - SYNC_MAX_PER_PEER  # reset at once
                assert server.net._sync_server.by_peer[ID.from_base58(hostile.id)] == SYNC_MAX_PER_PEER
                t0 = trio.current_time()
                best = await client.net.request_best(server.id)  # while hostile holds its two
                assert best["cpu"].state == CHILD and trio.current_time() - t0 < 1.0
                assert len(closed_at) == 16 - SYNC_MAX_PER_PEER
                await until(lambda: len(closed_at) == 16, 4.0)
            held = sorted(closed_at.values())[-SYNC_MAX_PER_PEER:]
            assert all(1.5 < t < 3.5 for t in held), held  # the 2 s request deadline, not 5 s
            assert server.net._sync_server.by_peer == {} and server.net._sync_server.active == 0
            nursery.cancel_scope.cancel()

    run(scenario)


def test_request_state_any_does_not_wait_for_a_holder_that_never_answers():
    async def scenario():
        client = Node(sync_timeout=1.5)
        sleepy, holder, empty, liar = (Node(provider_cls=SleepyProvider), Node(),
                                       Node(provider_cls=EmptyProvider), Node(provider_cls=LyingProvider))
        sleepy2 = Node(provider_cls=SleepyProvider)  # sleepy's server still holds its 2 streams later
        async with trio.open_nursery() as nursery:
            await start(nursery, client, sleepy, holder, empty, liar, sleepy2)
            for node in (sleepy, holder, empty, liar, sleepy2):
                await client.net.connect(node.addr)
            t0 = trio.current_time()
            got = await client.net.request_state_any([sleepy.id, holder.id], CHILD)
            assert got == (CHILD_SRC, holder.id) and trio.current_time() - t0 < 1.0
            # one at a time: the sleeper first costs its request's timeout, then the next is asked
            t0 = trio.current_time()
            got = await client.net.request_state_any([sleepy.id, empty.id, liar.id, holder.id], PARENT,
                                                     fanout=1, timeout=5.0)
            assert got == (PARENT_SRC, holder.id) and 1.4 < trio.current_time() - t0 < 3.0
            assert client.rejected == [("state-mismatch", liar.id)]
            # nobody has it: None, as soon as everyone has said so
            t0 = trio.current_time()
            assert await client.net.request_state_any([empty.id, holder.id], state_hash("nope")) is None
            assert trio.current_time() - t0 < 1.0
            # a holder that never answers costs at most `timeout`
            t0 = trio.current_time()
            assert await client.net.request_state_any([sleepy2.id], CHILD, timeout=0.5) is None
            assert 0.4 < trio.current_time() - t0 < 1.0
            assert await client.net.request_state_any([], CHILD) is None
            mixed = [client.id, "not-a-peer", holder.id]  # ourselves and junk are skipped
            assert await client.net.request_state_any(mixed, CHILD) == (CHILD_SRC, holder.id)
            nursery.cancel_scope.cancel()

    run(scenario)


def test_sync_to_an_unknown_peer_fails_cleanly():
    async def scenario():
        a = Node(sync_timeout=2)
        async with trio.open_nursery() as nursery:
            await start(nursery, a)
            with pytest.raises(SyncError) as caught:
                await a.net.request_best(peer_id_of(create_new_key_pair()))
            assert caught.value.reason in ("unreachable", "timeout")
            with pytest.raises(ConnectError):
                await a.net.connect("/ip4/127.0.0.1/tcp/9")  # no /p2p/ part
            nursery.cancel_scope.cancel()

    run(scenario)


# ---- identity ----------------------------------------------------------------------------------


def test_identity_persists_with_private_permissions(tmp_path):
    path = tmp_path / "home" / "identity.key"
    first = load_or_create_identity(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_identity(path)
    assert peer_id_of(first) == peer_id_of(again)
    assert peer_id_of(first).startswith("12D3KooW")  # Ed25519
    assert [p.name for p in path.parent.iterdir()] == ["identity.key"]  # no temporary left


def test_identity_with_loose_permissions_is_tightened(tmp_path):
    path = tmp_path / "identity.key"
    peer = peer_id_of(load_or_create_identity(path))
    path.chmod(0o644)
    assert peer_id_of(load_or_create_identity(path)) == peer
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_identity_refuses_a_corrupt_file(tmp_path):
    from swarm_node.p2p.identity import IdentityError

    path = tmp_path / "identity.key"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(IdentityError):
        load_or_create_identity(path)


def test_network_keeps_the_identity_peer_id(tmp_path):
    key_pair = load_or_create_identity(tmp_path / "identity.key")

    async def scenario():
        net = SwarmNetwork(key_pair, topics=TOPICS, listen=[LOCAL], sync_provider=Provider("x", {}))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            assert net.peer_id == peer_id_of(key_pair)
            assert all(a.endswith(f"/p2p/{net.peer_id}") for a in net.listen_addrs())
            nursery.cancel_scope.cancel()

    run(scenario)
