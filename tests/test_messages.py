"""The wire contract: round trips, golden vectors both ways, schema.json.

SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py rewrites protocol/schema.json and the
golden vectors from the samples in tests/wire_samples.py (gossip messages: samples() and
invalid_samples(); sync frames: sync_samples() and invalid_sync_samples()), writes their index
protocol/vectors/vectors.json (_vector_index()), and removes vector files no sample names any more
(then review the diff: vectors are a promise to peers; KEPT_VECTORS lists the ones that must never
go). Run it twice: the per-vector tests are parametrized from the index on disk.

Every rejection reason: tests/test_messages_rejections.py; the field rules of version 2:
tests/test_messages_fields.py.
"""
from __future__ import annotations

import json
import os

import msgpack
import pytest
from pydantic import TypeAdapter

from swarm_node.messages import (
    PRESENCE_TOPIC,
    PROTOCOL_VERSION,
    BestAnswer,
    BestRequest,
    Message,
    StateAnswer,
    StateRequest,
    json_schema,
    research_topic,
    topic_for,
)
from swarm_node.wire import (
    MessageRejected,
    decode,
    decode_sync_answer,
    decode_sync_request,
    encode,
    encode_sync,
    message_id,
)
from wire_samples import (
    CHILD,
    CHILD_SRC,
    CORPUS,
    CPU,
    GPU,
    PROTOCOL,
    SOLO,
    SYNC_DECODERS,
    TS,
    _bench,
    decoder_reasons,
    invalid_samples,
    invalid_sync_samples,
    samples,
    sync_samples,
)

VECTORS = PROTOCOL / "vectors"
WRITE = os.environ.get("SWARM_NODE_WRITE_PROTOCOL") == "1"
MESSAGE = TypeAdapter(Message)  # a gossip message from plain data (a vector's JSON)


# ---- round trips and encoding ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(samples()))
def test_round_trip(name):
    msg = samples()[name]
    data = encode(msg)
    assert decode(data, now=TS) == msg
    assert encode(decode(data, now=TS)) == data
    assert MESSAGE.validate_python(json.loads(msg.model_dump_json())) == msg


def test_encoding_is_a_sorted_map_with_version():
    for msg in samples().values():
        obj = msgpack.unpackb(encode(msg), raw=False)
        assert obj["v"] == 2 == PROTOCOL_VERSION and obj["type"] == msg.type
        assert list(obj) == sorted(obj)
        assert list(obj["bench"]) == ["budget", "corpus", "device", "target", "tier", "torch", "unit"]
        for run in obj.get("runs", []):
            assert list(run) == ["seed", "test_bpb", "val_bpb"]


def test_message_id_is_sha256_of_payload():
    data = encode(samples()["discovery"])
    import hashlib

    assert message_id(data) == hashlib.sha256(data).digest() and len(message_id(data)) == 32


def test_topics():
    assert topic_for(samples()["presence"]) == PRESENCE_TOPIC == "swarm-node/2/presence"
    assert topic_for(samples()["discovery"]) == topic_for(samples()["adoption"]) == (
        f"swarm-node/2/research/tinygpt/{CORPUS[:16]}"
    )
    # every tier, budget, unit, device and torch of one target+corpus shares one research topic
    assert CPU.topic() == GPU.topic() == SOLO.topic() == research_topic("tinygpt", CORPUS)


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
        *((frame, SYNC_DECODERS[kind]) for frame, kind in sync_samples().values()),
    ):
        assert decoder(encode_sync(frame)) == frame


# ---- protocol/ files ---------------------------------------------------------------------------

# Vectors peers were promised (protocol/vectors/ as of the issue "one concept, one place"): a change
# may add vectors, never silently drop or rename these.
KEPT_VECTORS = frozenset({
    "presence", "claim", "result-keep", "result-discard", "result-crash", "discovery", "adoption",
    "undecodable-truncated", "schema-not-a-map", "schema-missing-field", "schema-no-version",
    "schema-unknown-type", "schema-uppercase-hash", "schema-extra-field", "schema-keep-without-metric",
    "schema-duplicate-seed", "schema-unknown-unit", "version-1", "version-3", "metric-bounds-too-large",
    "metric-bounds-zero", "metric-bounds-nan", "metric-bounds-in-run", "future-timestamp", "stale-timestamp",
    "schema-version-true", "schema-version-float",
})


def _vector_index() -> dict:
    return {
        "version": PROTOCOL_VERSION,
        "about": "Golden vectors (PROTOCOL.md section 11). valid: decode(file) must equal message (ts checked "
        "against the message's own ts, since a receiver rejects messages over an hour old) and "
        "encode(message) must equal the file byte for byte; message_id_sha256 is the gossip message id. "
        "invalid: each file must be rejected with reason (ts checked against the current time). "
        "sync_valid and sync_invalid: the same for sync frames (the msgpack body of a frame, without its "
        "varint length prefix), decoded as a request or an answer as `decoder` says.",
        "valid": [
            {"name": name, "file": f"{name}.msgpack", "message_id_sha256": message_id(encode(msg)).hex(),
             "message": json.loads(msg.model_dump_json())}
            for name, msg in samples().items()
        ],
        "invalid": [
            {"name": name, "file": f"invalid-{name}.msgpack", "reason": reason}
            for name, (_, reason) in invalid_samples().items()
        ],
        "sync_valid": [
            {"name": name, "file": f"{name}.msgpack", "decoder": decoder, "frame": json.loads(frame.model_dump_json())}
            for name, (frame, decoder) in sync_samples().items()
        ],
        "sync_invalid": [
            {"name": name, "file": f"invalid-{name}.msgpack", "decoder": decoder, "reason": reason}
            for name, (_, decoder, reason) in invalid_sync_samples().items()
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
    for name, (frame, _) in sync_samples().items():
        (VECTORS / f"{name}.msgpack").write_bytes(encode_sync(frame))
    for name, (data, _, _) in invalid_sync_samples().items():
        (VECTORS / f"invalid-{name}.msgpack").write_bytes(data)
    (VECTORS / "vectors.json").write_text(json.dumps(_vector_index(), indent=2) + "\n")
    for stale in sorted(set(VECTORS.glob("*.msgpack")) - {VECTORS / f for f in _vector_files()}):
        stale.unlink()  # a vector no sample names any more (e.g. a renamed one)


def _vector_files() -> set[str]:
    index = _vector_index()
    return {v["file"] for key in ("valid", "invalid", "sync_valid", "sync_invalid") for v in index[key]}


def _index_on_disk() -> dict:
    path = VECTORS / "vectors.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_vector_directory_holds_only_indexed_files():
    assert {p.name for p in VECTORS.iterdir()} == _vector_files() | {"vectors.json"}


def test_schema_json_is_up_to_date():
    assert (PROTOCOL / "schema.json").read_text() == _schema_text(), (
        "protocol/schema.json is stale: SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py"
    )


def test_golden_vectors_both_ways():
    index = _index_on_disk()
    assert {v["name"] for v in index["valid"]} >= {"presence", "claim", "result-keep", "discovery", "adoption"}
    for vector in index["valid"]:
        data = (VECTORS / vector["file"]).read_bytes()
        expected = MESSAGE.validate_python(vector["message"])
        assert decode(data, now=expected.ts) == expected, vector["name"]
        assert encode(expected) == data, vector["name"]
        assert message_id(data).hex() == vector["message_id_sha256"]
    for vector in index["sync_valid"]:
        data = (VECTORS / vector["file"]).read_bytes()
        decoded = SYNC_DECODERS[vector["decoder"]](data)
        assert json.loads(decoded.model_dump_json()) == vector["frame"], vector["name"]
        assert encode_sync(decoded) == data, vector["name"]


@pytest.mark.parametrize("vector", _index_on_disk().get("invalid", []), ids=lambda v: v["name"])
def test_every_invalid_vector_is_rejected_with_its_reason(vector):
    """Each invalid gossip vector, old and new, read from disk, decoded by the node's own decoder
    (the one its GossipSub validator calls) against the current clock."""
    with pytest.raises(MessageRejected) as caught:
        decode((VECTORS / vector["file"]).read_bytes())
    assert caught.value.reason == vector["reason"], caught.value.detail


@pytest.mark.parametrize("vector", _index_on_disk().get("sync_invalid", []), ids=lambda v: v["name"])
def test_every_invalid_sync_vector_is_rejected_with_its_reason(vector):
    with pytest.raises(MessageRejected) as caught:
        SYNC_DECODERS[vector["decoder"]]((VECTORS / vector["file"]).read_bytes())
    assert caught.value.reason == vector["reason"], caught.value.detail


def test_vectors_cover_every_decoder_reason():
    index = _index_on_disk()
    assert {v["reason"] for v in index["invalid"]} == decoder_reasons()
    sync_reasons = {(v["decoder"], v["reason"]) for v in index["sync_invalid"]}
    assert {r for d, r in sync_reasons if d == "request"} >= {"oversized", "undecodable", "schema", "version"}
    assert {r for d, r in sync_reasons if d == "answer"} >= {"schema", "metric-bounds"}
    names = {v["name"] for key in ("valid", "invalid") for v in index[key]}
    assert KEPT_VECTORS <= names, sorted(KEPT_VECTORS - names)


def test_golden_vectors_match_the_samples():
    """The committed vectors are what these samples encode to (a change of encoding shows here)."""
    assert _index_on_disk() == _vector_index()
    for name, (data, _) in invalid_samples().items():
        assert (VECTORS / f"invalid-{name}.msgpack").read_bytes() == data, name
    for name, (data, _, _) in invalid_sync_samples().items():
        assert (VECTORS / f"invalid-{name}.msgpack").read_bytes() == data, name


def test_json_schema_accepts_the_vectors():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((PROTOCOL / "schema.json").read_text())
    for vector in _index_on_disk()["valid"]:
        jsonschema.validate(vector["message"], schema)
    claim = samples()["claim"].model_dump(mode="json")
    for bad in (dict(claim, state="nothex"), dict(claim, v=1), dict(claim, bench=_bench(unit="tokens")),
                dict(claim, bench=_bench(budget=2**63)), dict(claim, bench=_bench(device="tpu")),
                dict(claim, seeds=None), dict(claim, bench=_bench(torch="2.13.0+cu128"))):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    result = samples()["result-keep"].model_dump(mode="json")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(result, seed=0), schema)  # the v1 field
    defs = schema["$defs"]
    for frame, (sample, _) in sync_samples().items():
        jsonschema.validate(json.loads(sample.model_dump_json()), defs[type(sample).__name__] | {"$defs": defs})
    # the two limits in UTF-8 bytes say so: maxLength (characters) is only their weaker bound
    for model, field in (("Discovery", "diff"), ("StateAnswer", "source")):
        assert "UTF-8 bytes" in defs[model]["properties"][field]["description"]
