"""Gossip on real libp2p hosts over 127.0.0.1: delivery, content ids, the validators' rejections
of hostile messages, and which Presence addresses a node dials.

Every test runs its own trio.run under trio.fail_after (network_nodes.run); hosts listen on
127.0.0.1 port 0. Bans and quotas: tests/test_network_bans_quotas.py; the sync protocol:
tests/test_network_sync.py; the identity: tests/test_network_identity.py.
"""
from __future__ import annotations

import time
from contextlib import AsyncExitStack

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from network_nodes import BENCH, CHILD, TOPIC, Node, RawPeer, claim, discovery, link, run, start
from swarm_node.messages import Presence
from swarm_node.wire import MAX_MESSAGE_BYTES, encode, message_id
from swarm_node.p2p.dialing import presence_dial_addrs


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
