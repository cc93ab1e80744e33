"""Bans, scores, quotas and overload on real libp2p hosts over 127.0.0.1: what an offense is, what
gets a peer banned and cut off, and how a flood is dropped (and counted) without blaming the
forwarder or starving honest peers.

Every test runs its own trio.run under trio.fail_after (network_nodes.run); hosts listen on
127.0.0.1 port 0.
"""
from __future__ import annotations

import time
from contextlib import AsyncExitStack

import msgpack
import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.varint import encode_varint_prefixed

from network_nodes import (
    TOPIC,
    Node,
    RawPeer,
    claim,
    discovery,
    link,
    receiver_and_raw_peer,
    run,
    signed,
    start,
    until,
)
from swarm_node.wire import encode
from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.network import ConnectError
from swarm_node.p2p.quotas import DEFAULT_QUOTAS
from swarm_node.p2p.quotas import Quotas as _Quotas
from swarm_node.p2p.sync import SYNC_PROTOCOL


def test_repeat_offender_is_banned_and_cut_off():
    async def scenario():
        async with receiver_and_raw_peer() as (nursery, receiver, hostile):
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
        async with receiver_and_raw_peer() as (nursery, receiver, hostile):
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
