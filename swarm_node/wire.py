"""The wire codec: the canonical msgpack encoding of the models in messages.py, and their decoding
with the size, version and timestamp checks that name each rejection's reason.

Pure code (no network, no clock except the `now` that `decode` compares timestamps with).

Encoding: one msgpack map per message, keys sorted (bytewise, at every depth), strings as msgpack
str, floats as float64, every field written (None as nil, empty lists and maps as empty arrays and
maps). Decoding is tolerant where msgpack allows several spellings of one value (an integral float
sent as an int, float32, optional fields left out) and strict where a spelling could be read two
ways: map keys must be msgpack str and appear once per map (else `undecodable`), int fields take
only msgpack ints (not true, not 2.0: `schema`), and lists and maps are never nil (`schema`).

`decode` gives the reasons of PROTOCOL.md section 6, checks 3 to 8b; the sync decoders all of them
but the two timestamp ones (section 7).
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import msgpack
from pydantic import BaseModel, TypeAdapter, ValidationError

from .messages import (
    PROTOCOL_VERSION,
    AnyMessage,
    BestAnswer,
    BestRequest,
    ErrorAnswer,
    Message,
    StateAnswer,
    StateRequest,
    SyncAnswer,
    SyncRequest,
)

MAX_MESSAGE_BYTES = 64 * 1024  # a whole encoded gossip message
MAX_SYNC_REQUEST_BYTES = 1024
MAX_SYNC_RESPONSE_BYTES = 1024 * 1024
MAX_FUTURE_SKEW_S = 60.0  # timestamps further ahead of the receiver's clock are rejected
MAX_PAST_S = 3600.0  # timestamps further behind the receiver's clock are rejected (no replays of old news)

_METRIC_FIELDS = frozenset({"val_bpb", "test_bpb", "head_val_bpb", "noise"})
_BOUND_ERRORS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)

_MESSAGE = TypeAdapter(Message)
_SYNC_REQUEST = TypeAdapter(SyncRequest)
_SYNC_ANSWER = TypeAdapter(SyncAnswer)


class MessageRejected(Exception):
    """A message (or sync frame) that breaks the contract; `reason` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def message_id(data: bytes) -> bytes:
    """The gossip message id: the raw 32-byte sha256 of the payload bytes (content-addressed)."""
    return hashlib.sha256(data).digest()


def _within(data: bytes, limit: int) -> bytes:
    """`data`, if it fits the limit of its kind (PROTOCOL.md section 6, check 3; section 7)."""
    if len(data) > limit:
        raise MessageRejected("oversized", f"{len(data)} bytes > {limit}")
    return data


# ---- encoding ----------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-8"))}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return value


def _pack(model: BaseModel, limit: int) -> bytes:
    return _within(msgpack.packb(_canonical(model.model_dump(mode="python")), use_bin_type=True), limit)


def encode(msg: AnyMessage) -> bytes:
    """Canonical msgpack bytes of a gossip message; raises MessageRejected('oversized')."""
    return _pack(msg, MAX_MESSAGE_BYTES)


def encode_sync(frame: BaseModel) -> bytes:
    """Canonical msgpack bytes of a sync request or answer."""
    limit = MAX_SYNC_REQUEST_BYTES if isinstance(frame, (BestRequest, StateRequest)) else MAX_SYNC_RESPONSE_BYTES
    return _pack(frame, limit)


# ---- decoding ----------------------------------------------------------------------------------


class _BadMap(ValueError):
    """A msgpack map that one decoder could read differently from another."""


def _map(pairs: list[tuple[Any, Any]]) -> dict:
    """A decoded msgpack map: keys must be msgpack str (never bin) and appear once. A repeated key
    would leave its value to the decoder (first or last wins), so it is not a message at all."""
    obj: dict = {}
    for key, value in pairs:
        if type(key) is not str:
            raise _BadMap(f"a map key is {type(key).__name__}, not a msgpack str")
        if key in obj:
            raise _BadMap(f"the map key {key[:64]!r} appears twice")
        obj[key] = value
    return obj


def _unpack(data: bytes, limit: int) -> dict:
    _within(data, limit)  # before parsing: the size is the first check
    try:
        # strict_map_key refuses int, float, nil... keys; _map refuses bin keys and repeated keys
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=_map)
    except _BadMap as error:
        raise MessageRejected("undecodable", str(error)) from None
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise MessageRejected("undecodable", type(error).__name__) from None
    if not isinstance(obj, dict):
        raise MessageRejected("schema", f"top level is {type(obj).__name__}, not a map")
    if "v" not in obj:
        raise MessageRejected("schema", "no version field v")
    version = obj["v"]
    # strict: a msgpack int, not true (a bool is an int to Python) nor 1.0
    if type(version) is not int:
        raise MessageRejected("schema", f"v is a {type(version).__name__}, not an int")
    if version != PROTOCOL_VERSION:
        raise MessageRejected("version", f"v={version}")
    return obj


def _classify(error: ValidationError) -> MessageRejected:
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    if all(p["type"] in _BOUND_ERRORS and p["loc"] and p["loc"][-1] in _METRIC_FIELDS for p in problems):
        return MessageRejected("metric-bounds", detail)
    return MessageRejected("schema", detail)


def _validate(adapter: TypeAdapter, data: bytes, limit: int) -> Any:
    obj = _unpack(data, limit)
    try:
        return adapter.validate_python(obj)
    except ValidationError as error:
        raise _classify(error) from None


def decode(data: bytes, *, now: float | None = None, check_time: bool = True) -> AnyMessage:
    """Parse and validate one gossip message; raises MessageRejected(reason).

    `ts` must lie within [now - MAX_PAST_S, now + MAX_FUTURE_SKEW_S] (`now` defaults to the clock);
    check_time=False skips that, for a message already validated on arrival.
    """
    msg = _validate(_MESSAGE, data, MAX_MESSAGE_BYTES)
    if check_time:
        now = time.time() if now is None else now
        if msg.ts > now + MAX_FUTURE_SKEW_S:
            raise MessageRejected("future-timestamp", f"ts {msg.ts:.0f} is {msg.ts - now:.0f} s ahead")
        if msg.ts < now - MAX_PAST_S:
            raise MessageRejected("stale-timestamp", f"ts {msg.ts:.0f} is {now - msg.ts:.0f} s old")
    return msg


def decode_sync_request(data: bytes) -> BestRequest | StateRequest:
    return _validate(_SYNC_REQUEST, data, MAX_SYNC_REQUEST_BYTES)


def decode_sync_answer(data: bytes) -> BestAnswer | StateAnswer | ErrorAnswer:
    return _validate(_SYNC_ANSWER, data, MAX_SYNC_RESPONSE_BYTES)
