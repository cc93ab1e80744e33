"""The sync protocol (PROTOCOL.md section 7): one request and one answer per stream, each a
varint-prefixed frame of wire.py's sync codec.

Both sides bound what the other can cost them: an asker waits at most the sync timeout and reads
at most MAX_SYNC_RESPONSE_BYTES; an answerer holds few streams per peer and in all, and resets a
stream whose request does not come soon. A frame that breaks the protocol, or a state whose
source does not hash to it, is rejected as an offense of the peer that sent it.
"""
from __future__ import annotations

import inspect
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed, read_varint_prefixed_bytes_limited

from swarm_node.messages import Best, BestAnswer, BestRequest, ErrorAnswer, StateAnswer, StateRequest, state_hash
from swarm_node.wire import (
    MAX_SYNC_REQUEST_BYTES,
    MAX_SYNC_RESPONSE_BYTES,
    MessageRejected,
    decode_sync_answer,
    decode_sync_request,
    encode_sync,
)

from .offenses import Reject

log = structlog.get_logger("swarm_node.p2p.network")  # the network layer logs as one

SYNC_PROTOCOL = TProtocol("/swarm-node/sync/2.0.0")
SYNC_TIMEOUT_S = 5.0  # a whole request/answer exchange, either side
SYNC_REQUEST_TIMEOUT_S = 2.0  # an answerer waits this long for the request after a stream opens
SYNC_MAX_CONCURRENT = 16  # answered streams at once, all peers together; more are reset at once
SYNC_MAX_PER_PEER = 2  # answered streams at once from one peer; more are reset at once


class SyncProvider(Protocol):
    """What this node answers on the sync protocol.

    Plain methods are called on the trio thread (keep them quick: an indexed SQLite lookup is
    fine); a method may instead return an awaitable (be `async def`) to do slow work, e.g. through
    trio.to_thread.
    """

    def best(self) -> Mapping[str, Best | dict]: ...  # tier -> best state known

    def state_source(self, state_hash: str) -> str | None: ...  # train.py of a state, or None


class SyncError(Exception):
    """A sync request failed; `reason` is short: timeout, unreachable, refused:<why>, ..."""

    def __init__(self, reason: str, peer: str, detail: str = "") -> None:
        super().__init__(f"{reason} from {peer}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.peer = peer


class SyncClient:
    """The asking side. `running_host` returns the libp2p host, or raises while the network is not
    running; `peer_id` is our own, never asked."""

    def __init__(self, running_host: Callable[[], Any], peer_id: str, timeout: float, reject: Reject) -> None:
        self._running_host = running_host
        self._peer_id = peer_id
        self._timeout = timeout
        self._reject = reject

    async def best(self, peer_id: str) -> dict[str, Best]:
        answer = await self._ask(peer_id, BestRequest())
        if not isinstance(answer, BestAnswer):
            raise self._bad_answer(peer_id, "schema", f"answered {answer.op} to best")
        return dict(answer.best)

    async def state(self, peer_id: str, state: str) -> str | None:
        answer = await self._ask(peer_id, StateRequest(state=state))
        if not isinstance(answer, StateAnswer) or answer.state != state:
            raise self._bad_answer(peer_id, "schema", "answer does not match the request")
        if answer.source is not None and state_hash(answer.source) != state:
            raise self._bad_answer(peer_id, "state-mismatch", f"source does not hash to {state[:12]}")
        return answer.source

    async def state_any(self, peers: list[str], state: str, fanout: int, timeout: float) -> tuple[str, str] | None:
        self._running_host()  # not running: raise before any peer is asked
        waiting = deque(p for p in dict.fromkeys(peers) if p != self._peer_id)
        found: tuple[str, str] | None = None

        async def ask_in_turn(cancel_scope: trio.CancelScope) -> None:
            nonlocal found
            while waiting and found is None:
                peer = waiting.popleft()
                try:
                    source = await self.state(peer, state)
                except SyncError as error:
                    log.info("network.state_request_failed", peer=peer, state=state[:12], reason=error.reason)
                    continue
                if source is not None and found is None and state_hash(source) == state:
                    found = (source, peer)
                    cancel_scope.cancel()

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for _ in range(min(max(fanout, 1), len(waiting))):
                    nursery.start_soon(ask_in_turn, nursery.cancel_scope)
        return found

    def _bad_answer(self, peer_id: str, reason: str, detail: str) -> SyncError:
        self._reject(reason, ID.from_base58(peer_id), None)
        return SyncError(reason, peer_id, detail)

    async def _ask(self, peer_id: str, request: Any) -> Any:
        host = self._running_host()
        try:
            peer = ID.from_base58(peer_id)
        except Exception:
            raise SyncError("unreachable", peer_id, "not a peer id") from None
        stream: INetStream | None = None
        try:
            with trio.fail_after(self._timeout):
                stream = await host.new_stream(peer, [SYNC_PROTOCOL])
                await stream.write(encode_varint_prefixed(encode_sync(request)))
                data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_RESPONSE_BYTES)
                await stream.close()
        except trio.Cancelled:  # e.g. state_any got its answer elsewhere
            with trio.CancelScope(shield=True):
                await _reset(stream)
            raise
        except trio.TooSlowError:
            await _reset(stream)
            raise SyncError("timeout", peer_id) from None
        except MessageTooLarge:
            await _reset(stream)
            raise self._bad_answer(peer_id, "oversized", "answer over the size limit") from None
        except (BaseLibp2pError, OSError) as error:
            await _reset(stream)
            raise SyncError("unreachable", peer_id, f"{type(error).__name__}: {error}") from error
        try:
            answer = decode_sync_answer(data)
        except MessageRejected as rejected:
            raise self._bad_answer(peer_id, rejected.reason, rejected.detail) from None
        if isinstance(answer, ErrorAnswer):
            raise SyncError(f"refused:{answer.error}", peer_id)
        return answer


class SyncServer:
    """The answering side: `serve` is the stream handler. `banned` is read, never changed: a
    banned peer's streams are reset unanswered."""

    def __init__(self, provider: SyncProvider, timeout: float, banned: set[str], reject: Reject) -> None:
        self._provider = provider
        self._timeout = timeout
        self._banned = banned
        self._reject = reject
        self.active = 0  # answered streams, all peers
        self.by_peer: dict[ID, int] = defaultdict(int)  # answered streams per peer

    async def serve(self, stream: INetStream) -> None:
        """Answer one request: at most SYNC_MAX_PER_PEER streams per peer and SYNC_MAX_CONCURRENT
        in all at once (others are reset at once, so one peer cannot starve the rest), the request
        within SYNC_REQUEST_TIMEOUT_S of the stream opening, all of it within the sync timeout."""
        peer = stream.muxed_conn.peer_id
        if peer.to_base58() in self._banned:
            await _reset(stream)
            return
        if self.by_peer.get(peer, 0) >= SYNC_MAX_PER_PEER or self.active >= SYNC_MAX_CONCURRENT:
            log.info("network.sync_busy", peer=peer.to_base58(), from_peer=self.by_peer.get(peer, 0),
                     all=self.active)
            await _reset(stream)
            return
        self.by_peer[peer] += 1
        self.active += 1
        try:
            with trio.move_on_after(self._timeout) as scope:
                await self._answer(stream, peer)
            if scope.cancelled_caught:
                log.info("network.sync_timeout", peer=peer.to_base58())
                await _reset(stream)
        except (BaseLibp2pError, OSError) as error:
            log.info("network.sync_stream_failed", peer=peer.to_base58(), error=repr(error))
            await _reset(stream)
        finally:
            self.active -= 1
            self.by_peer[peer] -= 1
            if self.by_peer[peer] <= 0:
                del self.by_peer[peer]

    async def _answer(self, stream: INetStream, peer: ID) -> None:
        try:
            with trio.move_on_after(min(SYNC_REQUEST_TIMEOUT_S, self._timeout)) as waiting:
                data = await read_varint_prefixed_bytes_limited(stream, MAX_SYNC_REQUEST_BYTES)
            if waiting.cancelled_caught:
                log.info("network.sync_request_timeout", peer=peer.to_base58())
                await _reset(stream)
                return
            request = decode_sync_request(data)
        except MessageTooLarge:
            self._reject("oversized", peer, None)
            answer: Any = ErrorAnswer(error="oversized")
        except MessageRejected as rejected:
            self._reject(rejected.reason, peer, None)
            answer = ErrorAnswer(error=rejected.reason)
        else:
            answer = await self._answer_request(request)
        try:
            payload = encode_sync(answer)
        except MessageRejected:
            payload = encode_sync(ErrorAnswer(error="oversized"))
        await stream.write(encode_varint_prefixed(payload))
        await stream.close()

    async def _answer_request(self, request: Any) -> Any:
        try:
            if isinstance(request, BestRequest):
                best = await _maybe_await(self._provider.best())
                return BestAnswer(
                    best={t: b if isinstance(b, Best) else Best.model_validate(b) for t, b in best.items()}
                )
            source = await _maybe_await(self._provider.state_source(request.state))
            return StateAnswer(state=request.state, source=source)
        except Exception:
            log.exception("network.sync_provider_failed", op=request.op)
            return ErrorAnswer(error="internal")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _reset(stream: INetStream | None) -> None:
    if stream is None:
        return
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except (BaseLibp2pError, OSError):
            pass
