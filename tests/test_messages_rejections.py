"""The wire contract's rejections: each reason `decode` gives, garbage, sizes, the clock, the version.

The rejected samples are in tests/wire_samples.py (invalid_samples()); the rules of each field:
tests/test_messages_fields.py.
"""
from __future__ import annotations

import msgpack
import pytest

from swarm_node.messages import MAX_DIFF_BYTES
from swarm_node.wire import MAX_MESSAGE_BYTES, MAX_PAST_S, MessageRejected, decode, decode_sync_request
from wire_samples import TS, _raw, decoder_reasons, invalid_samples, samples


# ---- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(invalid_samples()))
def test_each_rejection_reason(name):
    data, reason = invalid_samples()[name]
    with pytest.raises(MessageRejected) as caught:
        decode(data)
    assert caught.value.reason == reason


def test_oversized():
    padded = samples()["claim"].model_dump()
    padded["description"] = "x" * MAX_MESSAGE_BYTES
    with pytest.raises(MessageRejected) as caught:
        decode(msgpack.packb(padded))
    assert caught.value.reason == "oversized"
    with pytest.raises(MessageRejected) as caught:
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert caught.value.reason == "oversized"


def test_garbage_is_undecodable():
    for garbage in (b"", b"\xc1", b"\x81\xa1", bytes(range(256)), msgpack.packb({"v": 1}) + b"tail"):
        with pytest.raises(MessageRejected) as caught:
            decode(garbage)
        assert caught.value.reason in ("undecodable", "schema")


def test_diff_limit_counts_utf8_bytes():
    discovery = samples()["discovery"].model_dump()
    discovery["diff"] = "é" * (MAX_DIFF_BYTES // 2 + 1)  # under the char limit, over the byte limit
    with pytest.raises(MessageRejected) as caught:
        decode(msgpack.packb(discovery))
    assert caught.value.reason == "schema"


def test_timestamp_skew_is_relative_to_now():
    data = _raw("claim", ts=TS + 50)
    assert decode(data, now=TS).ts == TS + 50
    with pytest.raises(MessageRejected) as caught:
        decode(_raw("claim", ts=TS + 61), now=TS)
    assert caught.value.reason == "future-timestamp"
    assert decode(_raw("claim", ts=TS - MAX_PAST_S + 1), now=TS).ts == TS - MAX_PAST_S + 1
    with pytest.raises(MessageRejected) as caught:
        decode(_raw("claim", ts=TS - MAX_PAST_S - 1), now=TS)
    assert caught.value.reason == "stale-timestamp"
    assert decode(_raw("claim", ts=0.0), now=TS, check_time=False).ts == 0.0  # already validated once
    assert {"future-timestamp", "stale-timestamp"} <= decoder_reasons()


def test_version_must_be_the_msgpack_int_2():
    """`v: 2.0` equals 2 in Python but is not the int 2 on the wire; a v1 message is `version`."""
    for version, reason in ((True, "schema"), (2.0, "schema"), (1.0, "schema"), ("2", "schema"),
                            (None, "schema"), (1, "version"), (3, "version"), (0, "version"),
                            (-1, "version")):
        with pytest.raises(MessageRejected) as caught:
            decode(_raw("claim", v=version), now=TS)
        assert caught.value.reason == reason, version
    assert decode(_raw("claim", v=2), now=TS) == samples()["claim"]
    for frame in ({"op": "best", "v": True}, {"op": "best", "v": 1.0}):  # sync frames too (still v 1)
        with pytest.raises(MessageRejected) as caught:
            decode_sync_request(msgpack.packb(frame))
        assert caught.value.reason == "schema"
