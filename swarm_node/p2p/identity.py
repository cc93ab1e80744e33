"""The node's persistent Ed25519 identity: same key file, same peer ID after every restart.

The file holds the libp2p protobuf encoding of the private key (KeyType Ed25519, Data = the
32-byte seed; the 64-byte seed+public form that go-libp2p writes is read too). It is created
0600 and atomically: written to a temporary file, fsynced, then hard-linked into place, so a
crash never leaves a half-written key and two nodes starting on one home agree on one key.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType, PrivateKey
from libp2p.peer.id import ID

log = logging.getLogger(__name__)


class IdentityError(Exception):
    """The key file exists but is not a usable Ed25519 libp2p private key."""


def load_or_create_identity(path: str | os.PathLike) -> KeyPair:
    """The key pair stored at `path`, creating (0600, atomically) a new Ed25519 one if absent."""
    path = Path(path)
    if not path.exists():
        _create(path)
    return _load(path)


def peer_id_of(key_pair: KeyPair) -> str:
    return ID.from_pubkey(key_pair.public_key).to_base58()


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = create_new_key_pair().private_key.serialize()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)  # atomic create-if-absent: a concurrent creator's key wins
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _load(path: Path) -> KeyPair:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("identity key %s was mode %o; restricting it to 0600", path, mode)
        path.chmod(0o600)
    raw = path.read_bytes()
    try:
        proto = PrivateKey.deserialize_from_protobuf(raw)
    except Exception as error:
        raise IdentityError(f"{path} is not a libp2p private key: {error}") from error
    if proto.key_type != KeyType.Ed25519.value:
        raise IdentityError(f"{path} holds a key of type {proto.key_type}, not Ed25519")
    if len(proto.data) not in (32, 64):
        raise IdentityError(f"{path}: Ed25519 key data is {len(proto.data)} bytes")
    private = Ed25519PrivateKey.from_bytes(proto.data[:32])
    public = private.get_public_key()
    if len(proto.data) == 64 and proto.data[32:] != public.to_bytes():
        raise IdentityError(f"{path}: the stored public half does not match the seed")
    return KeyPair(private, public)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
