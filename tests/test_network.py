"""The network layer on real libp2p hosts over 127.0.0.1: gossip, validators, bans, sync, identity.

Every test runs its own trio.run under trio.fail_after; hosts listen on 127.0.0.1 port 0.
"""
from __future__ import annotations

import os
import stat
import time
from contextlib import AsyncExitStack

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
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from swarm_node.messages import (
    MAX_MESSAGE_BYTES,
    PRESENCE_TOPIC,
    BenchKey,
    Best,
    Claim,
    Discovery,
    Presence,
    encode,
    message_id,
    state_hash,
)
from swarm_node.p2p.identity import load_or_create_identity, peer_id_of
from swarm_node.p2p.network import (
    GOSSIPSUB_PROTOCOLS,
    SYNC_PROTOCOL,
    ConnectError,
    SwarmNetwork,
    SyncError,
)

PARENT_SRC = "LEARNING_RATE = 6e-4\n"
CHILD_SRC = "LEARNING_RATE = 8e-4\n"
PARENT, CHILD = state_hash(PARENT_SRC), state_hash(CHILD_SRC)
BENCH = BenchKey(target="tinygpt", corpus=state_hash("corpus"), budget=60, tier="cpu")
TOPIC = BENCH.topic()
TOPICS = [PRESENCE_TOPIC, TOPIC]
LOCAL = "/ip4/127.0.0.1/tcp/0"


def discovery(author: str, diff: str = "-LEARNING_RATE = 6e-4\n+LEARNING_RATE = 8e-4\n", **changes):
    fields = dict(author=author, ts=time.time(), bench=BENCH, state=CHILD, parent=PARENT, diff=diff,
                  val_bpb=2.25, test_bpb=2.3, seeds=[1, 2], noise=0.01, description="lr up",
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
