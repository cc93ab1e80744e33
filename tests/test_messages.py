"""The wire contract: round trips, golden vectors both ways, every rejection reason, schema.json.

SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py rewrites protocol/schema.json and the
golden vectors from the samples below (then review the diff: vectors are a promise to peers).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import msgpack
import pytest

from swarm_node.messages import (
    MAX_DIFF_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PAST_S,
    PRESENCE_TOPIC,
    REASONS,
    Adoption,
    BenchKey,
    Best,
    BestAnswer,
    BestRequest,
    Claim,
    Discovery,
    MessageRejected,
    Presence,
    Result,
    StateAnswer,
    StateRequest,
    decode,
    decode_sync_answer,
    decode_sync_request,
    encode,
    encode_sync,
    json_schema,
    message_id,
    parse,
    research_topic,
    state_hash,
    topic_for,
)

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"
VECTORS = PROTOCOL / "vectors"
WRITE = os.environ.get("SWARM_NODE_WRITE_PROTOCOL") == "1"

ALICE = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"  # Ed25519 seed 0x01 * 32
BOB = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq"  # Ed25519 seed 0x02 * 32
CORPUS = state_hash("tinyshakespeare")
PARENT_SRC = "LEARNING_RATE = 6e-4\n"
CHILD_SRC = "LEARNING_RATE = 8e-4\n"
PARENT, CHILD = state_hash(PARENT_SRC), state_hash(CHILD_SRC)
TS = 1767225600.25  # 2026-01-01T00:00:00.25Z
CPU = BenchKey(target="tinygpt", corpus=CORPUS, budget=60, tier="cpu")
GPU = BenchKey(target="tinygpt", corpus=CORPUS, budget=300, tier="gpu-large")
DIFF = (
    "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n"
    "-LEARNING_RATE = 6e-4\n+LEARNING_RATE = 8e-4\n"
)


def samples() -> dict:
    return {
        "presence": Presence(
            author=ALICE, ts=TS, bench=CPU, role="init-norm",
            hardware={"accelerator": "cpu", "cores": 2, "memory_gb": 7.5},
            head=CHILD, head_val_bpb=2.25,
            best={
                "cpu": Best(bench=CPU, state=CHILD, val_bpb=2.25, test_bpb=2.3125, author=ALICE),
                "gpu-large": Best(bench=GPU, state=PARENT, val_bpb=1.5, test_bpb=None, author=BOB),
            },
            counters={"experiments": 12, "keeps": 3, "adoptions": 1},
            version="0.1.0", addrs=[f"/ip4/127.0.0.1/tcp/4001/p2p/{ALICE}"],
        ),
        "claim": Claim(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT,
                       description="LEARNING_RATE 6e-4 -> 8e-4"),
        "result-keep": Result(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT,
                              description="LEARNING_RATE 6e-4 -> 8e-4", status="keep",
                              val_bpb=2.25, test_bpb=2.3125, seed=1337),
        "result-crash": Result(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT,
                               description="N_LAYER 2 -> 64", status="crash",
                               val_bpb=None, test_bpb=None, seed=0),
        "discovery": Discovery(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT, diff=DIFF,
                               val_bpb=2.25, test_bpb=2.3125, seeds=[1337, 1338], noise=0.0125,
                               description="LEARNING_RATE 6e-4 -> 8e-4",
                               hparams={"LEARNING_RATE": 0.0008, "TIE_EMBEDDINGS": True, "N_LAYER": 2,
                                        "NORM": "rmsnorm"}),
        "adoption": Adoption(author=BOB, ts=TS + 30, bench=GPU, discovery_state=CHILD, state=CHILD,
                             val_bpb=1.4375, verified=True),
    }


def _raw(name: str, **changes) -> bytes:
    obj = samples()[name].model_dump()
    obj.update(changes)
    return msgpack.packb(obj, use_bin_type=True)


def invalid_samples() -> dict:
    """name -> (bytes, reason); only small ones go into the vectors."""
    claim = samples()["claim"].model_dump()
    del claim["state"]
    unversioned = samples()["claim"].model_dump()
    del unversioned["v"]
    return {
        "undecodable-truncated": (encode(samples()["claim"])[:-7], "undecodable"),
        "schema-not-a-map": (msgpack.packb(["claim", ALICE]), "schema"),
        "schema-missing-field": (msgpack.packb(claim), "schema"),
        "schema-no-version": (msgpack.packb(unversioned), "schema"),
        "schema-unknown-type": (_raw("claim", type="rumour"), "schema"),
        "schema-uppercase-hash": (_raw("claim", state=CHILD.upper()), "schema"),
        "schema-extra-field": (_raw("claim", mood="great"), "schema"),
        "schema-keep-without-metric": (_raw("result-keep", val_bpb=None), "schema"),
        "version-2": (_raw("claim", v=2), "version"),
        "metric-bounds-too-large": (_raw("discovery", val_bpb=16.5), "metric-bounds"),
        "metric-bounds-zero": (_raw("result-keep", test_bpb=0.0), "metric-bounds"),
        "metric-bounds-nan": (_raw("discovery", val_bpb=float("nan")), "metric-bounds"),
        "future-timestamp": (_raw("claim", ts=4102444800.0), "future-timestamp"),
        "stale-timestamp": (_raw("claim", ts=0.0), "stale-timestamp"),  # a claim dated 1970
        "schema-version-true": (_raw("claim", v=True), "schema"),  # msgpack true is not the int 1
        "schema-version-float": (_raw("claim", v=1.0), "schema"),
    }


# ---- round trips and encoding ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(samples()))
def test_round_trip(name):
    msg = samples()[name]
    data = encode(msg)
    assert decode(data, now=TS) == msg
    assert encode(decode(data, now=TS)) == data
    assert parse(json.loads(msg.model_dump_json())) == msg


def test_encoding_is_a_sorted_map_with_version():
    for msg in samples().values():
        obj = msgpack.unpackb(encode(msg), raw=False)
        assert obj["v"] == 1 and obj["type"] == msg.type
        assert list(obj) == sorted(obj)
        assert list(obj["bench"]) == ["budget", "corpus", "target", "tier"]


def test_message_id_is_sha256_of_payload():
    data = encode(samples()["discovery"])
    import hashlib

    assert message_id(data) == hashlib.sha256(data).digest() and len(message_id(data)) == 32


def test_topics():
    assert topic_for(samples()["presence"]) == PRESENCE_TOPIC == "swarm-node/1/presence"
    assert topic_for(samples()["discovery"]) == topic_for(samples()["adoption"]) == (
        f"swarm-node/1/research/tinygpt/{CORPUS[:16]}"
    )
    assert CPU.topic() == GPU.topic() == research_topic("tinygpt", CORPUS)
    assert CPU.label() == f"tinygpt/{CORPUS[:16]}/60/cpu"


def test_tolerant_decoding_of_other_spellings():
    """An integral float sent as a msgpack int (JavaScript encoders do) and float32 are accepted."""
    obj = samples()["result-keep"].model_dump()
    obj["val_bpb"] = 2
    packer = msgpack.Packer(use_single_float=True, use_bin_type=True)
    for data in (msgpack.packb(obj), packer.pack(samples()["result-keep"].model_dump())):
        msg = decode(data, now=TS)
        assert isinstance(msg.val_bpb, float)


def test_sync_frames_round_trip():
    best = samples()["presence"].best
    for frame, decoder in (
        (BestRequest(), decode_sync_request),
        (StateRequest(state=CHILD), decode_sync_request),
        (BestAnswer(best=best), decode_sync_answer),
        (StateAnswer(state=CHILD, source=CHILD_SRC), decode_sync_answer),
        (StateAnswer(state=CHILD, source=None), decode_sync_answer),
    ):
        assert decoder(encode_sync(frame)) == frame


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
    assert {"future-timestamp", "stale-timestamp"} <= set(REASONS)


def test_version_must_be_the_msgpack_int_1():
    """`v: true` and `v: 1.0` equal 1 in Python but are not the int 1 on the wire."""
    for version, reason in ((True, "schema"), (1.0, "schema"), ("1", "schema"), (None, "schema"),
                            (2, "version"), (0, "version"), (-1, "version")):
        with pytest.raises(MessageRejected) as caught:
            decode(_raw("claim", v=version), now=TS)
        assert caught.value.reason == reason, version
    assert decode(_raw("claim", v=1), now=TS) == samples()["claim"]
    for frame in ({"op": "best", "v": True}, {"op": "best", "v": 1.0}):  # sync frames too
        with pytest.raises(MessageRejected) as caught:
            decode_sync_request(msgpack.packb(frame))
        assert caught.value.reason == "schema"


# ---- protocol/ files ---------------------------------------------------------------------------


def _vector_index() -> dict:
    return {
        "version": 1,
        "about": "Golden vectors: for each valid one, decode(file) must equal message (ts checked "
        "against the message's own ts, since a receiver rejects messages over an hour old) and "
        "encode(message) must equal the file byte for byte. Each invalid one must be rejected "
        "with reason (ts checked against the current time).",
        "valid": [
            {"name": name, "file": f"{name}.msgpack", "message_id_sha256": message_id(encode(msg)).hex(),
             "message": json.loads(msg.model_dump_json())}
            for name, msg in samples().items()
        ],
        "invalid": [
            {"name": name, "file": f"invalid-{name}.msgpack", "reason": reason}
            for name, (_, reason) in invalid_samples().items()
        ],
    }


def _schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@pytest.mark.skipif(not WRITE, reason="set SWARM_NODE_WRITE_PROTOCOL=1 to regenerate protocol/")
def test_write_protocol_files():
    VECTORS.mkdir(parents=True, exist_ok=True)
    (PROTOCOL / "schema.json").write_text(_schema_text())
    for name, msg in samples().items():
        (VECTORS / f"{name}.msgpack").write_bytes(encode(msg))
    for name, (data, _) in invalid_samples().items():
        (VECTORS / f"invalid-{name}.msgpack").write_bytes(data)
    (VECTORS / "vectors.json").write_text(json.dumps(_vector_index(), indent=2) + "\n")


def test_schema_json_is_up_to_date():
    assert (PROTOCOL / "schema.json").read_text() == _schema_text(), (
        "protocol/schema.json is stale: SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py"
    )


def test_golden_vectors_both_ways():
    index = json.loads((VECTORS / "vectors.json").read_text())
    assert {v["name"] for v in index["valid"]} >= {"presence", "claim", "result-keep", "discovery", "adoption"}
    for vector in index["valid"]:
        data = (VECTORS / vector["file"]).read_bytes()
        expected = parse(vector["message"])
        assert decode(data, now=expected.ts) == expected, vector["name"]
        assert encode(expected) == data, vector["name"]
        assert message_id(data).hex() == vector["message_id_sha256"]
    for vector in index["invalid"]:
        with pytest.raises(MessageRejected) as caught:
            decode((VECTORS / vector["file"]).read_bytes())
        assert caught.value.reason == vector["reason"], vector["name"]


def test_golden_vectors_match_the_samples():
    """The committed vectors are what these samples encode to (a change of encoding shows here)."""
    index = json.loads((VECTORS / "vectors.json").read_text())
    assert index == _vector_index()


def test_json_schema_accepts_the_vectors():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((PROTOCOL / "schema.json").read_text())
    for vector in json.loads((VECTORS / "vectors.json").read_text())["valid"]:
        jsonschema.validate(vector["message"], schema)
    bad = dict(samples()["claim"].model_dump(mode="json"), state="nothex")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
