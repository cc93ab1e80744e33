"""The sync protocol on real libp2p hosts over 127.0.0.1: best and state requests, lying, sleepy
and hostile peers, and a server that one peer's idle streams do not starve.

Every test runs its own trio.run under trio.fail_after (network_nodes.run); hosts listen on
127.0.0.1 port 0.
"""
from __future__ import annotations

from contextlib import AsyncExitStack

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from network_nodes import (
    CHILD,
    CHILD_SRC,
    PARENT,
    PARENT_SRC,
    EmptyProvider,
    LyingProvider,
    Node,
    RawPeer,
    SleepyProvider,
    run,
    start,
    until,
)
from swarm_node.messages import state_hash
from swarm_node.p2p.identity import peer_id_of
from swarm_node.p2p.network import ConnectError
from swarm_node.p2p.sync import SYNC_MAX_PER_PEER, SYNC_PROTOCOL, SyncError


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
