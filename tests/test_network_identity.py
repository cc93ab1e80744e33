"""A node's identity: its key file (private permissions, tightened, corrupt) and the peer id the
network keeps."""
from __future__ import annotations

import os
import stat

import pytest
import trio

from network_nodes import LOCAL, TOPICS, Provider, run
from swarm_node.p2p.identity import load_or_create_identity, peer_id_of
from swarm_node.p2p.network import SwarmNetwork


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
