"""The wire contract: round trips, golden vectors both ways, every rejection reason, schema.json.

SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py rewrites protocol/schema.json and the
golden vectors from the samples below, and removes vector files no sample names any more (then
review the diff: vectors are a promise to peers).
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
    MAX_SAFE_INT,
    PRESENCE_TOPIC,
    PROTOCOL_VERSION,
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
    SeedRun,
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
CPU = BenchKey(target="tinygpt", corpus=CORPUS, tier="cpu", budget=30_000_000_000_000, unit="flops",
               device="cpu", torch="2.13.0")
# over 2^53: a budget is a 64-bit int, which a JavaScript number does not hold exactly
GPU = BenchKey(target="tinygpt", corpus=CORPUS, tier="gpu-large", budget=10**18, unit="flops",
               device="cuda", torch="2.13.0")
SOLO = BenchKey(target="tinygpt", corpus=CORPUS, tier="cpu", budget=300, unit="seconds", device="cpu",
                torch="2.13.0")
DIFF = (
    "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n"
    "-LEARNING_RATE = 6e-4\n+LEARNING_RATE = 8e-4\n"
)


# The child on the tier's seeds (the reference defaults): decision seeds 0, 1, 2 and confirmation
# seeds 3, 4. The means are exact in binary (val 2.25, test 2.3125), so the vectors show them exactly.
CHILD_RUNS = [
    SeedRun(seed=0, val_bpb=2.234375, test_bpb=2.296875),
    SeedRun(seed=1, val_bpb=2.265625, test_bpb=2.328125),
    SeedRun(seed=2, val_bpb=2.25, test_bpb=2.3125),
    SeedRun(seed=3, val_bpb=2.2421875, test_bpb=2.3046875),
    SeedRun(seed=4, val_bpb=2.2578125, test_bpb=2.3203125),
]


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
                       description="LEARNING_RATE 6e-4 -> 8e-4", seeds=[0, 1, 2]),
        "result-keep": Result(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT,
                              description="LEARNING_RATE 6e-4 -> 8e-4", status="keep",
                              val_bpb=2.25, test_bpb=2.3125, runs=CHILD_RUNS),
        "result-discard": Result(author=ALICE, ts=TS, bench=CPU, state=PARENT, parent=CHILD,
                                 description="LEARNING_RATE 8e-4 -> 6e-4", status="discard",
                                 val_bpb=2.3125, test_bpb=None,
                                 runs=[SeedRun(seed=0, val_bpb=2.3125), SeedRun(seed=1, val_bpb=2.3125),
                                       SeedRun(seed=2, val_bpb=2.3125)]),
        "result-crash": Result(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT,
                               description="N_LAYER 2 -> 64", status="crash",
                               val_bpb=None, test_bpb=None),
        "discovery": Discovery(author=ALICE, ts=TS, bench=CPU, state=CHILD, parent=PARENT, diff=DIFF,
                               val_bpb=2.25, test_bpb=2.3125, runs=CHILD_RUNS, noise=0.0125,
                               description="LEARNING_RATE 6e-4 -> 8e-4",
                               hparams={"LEARNING_RATE": 0.0008, "TIE_EMBEDDINGS": True, "N_LAYER": 2,
                                        "NORM": "rmsnorm"}),
        # Bob (same benchmark key) re-ran one seed of his choosing, reproduced it and rebased onto it
        "adoption": Adoption(author=BOB, ts=TS + 30, bench=CPU, discovery_state=CHILD, state=CHILD,
                             val_bpb=2.25, verified=True,
                             runs=[SeedRun(seed=3, val_bpb=2.2421875, test_bpb=2.3046875)]),
    }


def _raw(name: str, **changes) -> bytes:
    obj = samples()[name].model_dump()
    obj.update(changes)
    return msgpack.packb(obj, use_bin_type=True)


def _bench(**changes) -> dict:
    return dict(CPU.model_dump(), **changes)


def invalid_samples() -> dict:
    """name -> (bytes, reason); only small ones go into the vectors."""
    claim = samples()["claim"].model_dump()
    del claim["state"]
    unversioned = samples()["claim"].model_dump()
    del unversioned["v"]
    twice = [r.model_dump() for r in CHILD_RUNS]
    twice[3]["seed"] = twice[0]["seed"]
    zero_run = [r.model_dump() for r in CHILD_RUNS]
    zero_run[1]["val_bpb"] = 0.0
    return {
        "undecodable-truncated": (encode(samples()["claim"])[:-7], "undecodable"),
        "schema-not-a-map": (msgpack.packb(["claim", ALICE]), "schema"),
        "schema-missing-field": (msgpack.packb(claim), "schema"),
        "schema-no-version": (msgpack.packb(unversioned), "schema"),
        "schema-unknown-type": (_raw("claim", type="rumour"), "schema"),
        "schema-uppercase-hash": (_raw("claim", state=CHILD.upper()), "schema"),
        "schema-extra-field": (_raw("claim", mood="great"), "schema"),
        "schema-keep-without-metric": (_raw("result-keep", val_bpb=None), "schema"),
        "schema-duplicate-seed": (_raw("discovery", runs=twice), "schema"),
        "schema-unknown-unit": (_raw("claim", bench=_bench(unit="tokens")), "schema"),
        "version-1": (_raw("claim", v=1), "version"),  # an old node (PROTOCOL.md: v1 and v2 share no topic)
        "version-3": (_raw("claim", v=3), "version"),  # a newer node
        "metric-bounds-too-large": (_raw("discovery", val_bpb=16.5), "metric-bounds"),
        "metric-bounds-zero": (_raw("result-keep", test_bpb=0.0), "metric-bounds"),
        "metric-bounds-nan": (_raw("discovery", val_bpb=float("nan")), "metric-bounds"),
        "metric-bounds-in-run": (_raw("result-keep", runs=zero_run), "metric-bounds"),
        "future-timestamp": (_raw("claim", ts=4102444800.0), "future-timestamp"),
        "stale-timestamp": (_raw("claim", ts=0.0), "stale-timestamp"),  # a claim dated 1970
        "schema-version-true": (_raw("claim", v=True), "schema"),  # msgpack true is not an int
        "schema-version-float": (_raw("claim", v=1.0), "schema"),  # nor is a float
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
    assert CPU.label() == f"tinygpt/{CORPUS[:16]}/cpu/3e+13flops/cpu/torch2.13.0"
    assert SOLO.label() == f"tinygpt/{CORPUS[:16]}/cpu/300s/cpu/torch2.13.0"


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


# ---- field rules of version 2 -------------------------------------------------------------------


def _reason(name: str, **changes) -> str:
    with pytest.raises(MessageRejected) as caught:
        decode(_raw(name, **changes), now=TS)
    return caught.value.reason


def _ok(name: str, **changes):
    return decode(_raw(name, **changes), now=TS)


def test_bench_key_fields():
    assert _ok("claim", bench=SOLO.model_dump()).bench == SOLO
    top = 2**63 - 1  # the largest budget: msgpack uint64 / int64, beyond JavaScript's exact integers
    assert _ok("claim", bench=_bench(budget=top)).bench.budget == top
    assert top > MAX_SAFE_INT
    for device in ("cpu", "cuda", "mps"):
        assert _ok("claim", bench=_bench(device=device)).bench.device == device
    for changes in (
        {"unit": "tokens"}, {"unit": "FLOPS"}, {"unit": None},
        {"device": "tpu"}, {"device": "CUDA"}, {"device": None},
        {"budget": 0}, {"budget": -1}, {"budget": 2**63}, {"budget": 3e13},  # a float is not an int
        {"budget": True}, {"budget": "30000000000000"},
        {"torch": "2." + "1" * 63}, {"torch": 2.13}, {"torch": None},
        {"tier": "GPU"}, {"target": ""},
    ):
        assert _reason("claim", bench=_bench(**changes)) == "schema", changes
    for missing in ("unit", "device", "torch", "budget", "tier"):
        bench = _bench()
        del bench[missing]
        assert _reason("claim", bench=bench) == "schema", missing
    assert _reason("claim", bench=_bench(seconds=60)) == "schema"  # no extra fields


def test_bench_keys_differ_in_each_field():
    """Two measurements compare only under an equal key: each field makes a different key."""
    keys = {CPU, SOLO, GPU}
    for changes in ({"unit": "seconds"}, {"device": "mps"}, {"torch": "2.12.1"}, {"budget": 30_000_000_000_001},
                    {"tier": "cpu-small"}, {"corpus": PARENT}, {"target": "toy"}):
        keys.add(BenchKey(**_bench(**changes)))
    assert len(keys) == 10


def test_seed_run_fields():
    run = {"seed": 7, "val_bpb": 2.25, "test_bpb": None}
    assert _ok("result-keep", runs=[run]).runs == [SeedRun(seed=7, val_bpb=2.25)]
    assert _ok("result-keep", runs=[{"seed": 7, "val_bpb": 2.25}]).runs[0].test_bpb is None  # nil left out
    assert _ok("result-keep", runs=[dict(run, seed=MAX_SAFE_INT)]).runs[0].seed == MAX_SAFE_INT
    for changes, reason in (
        ({"seed": -1}, "schema"), ({"seed": MAX_SAFE_INT + 1}, "schema"), ({"seed": 1.0}, "schema"),
        ({"seed": None}, "schema"), ({"val_bpb": None}, "schema"), ({"extra": 1}, "schema"),
        ({"val_bpb": 0.0}, "metric-bounds"), ({"val_bpb": 16.5}, "metric-bounds"),
        ({"val_bpb": float("inf")}, "metric-bounds"), ({"test_bpb": -1.0}, "metric-bounds"),
    ):
        assert _reason("result-keep", runs=[dict(run, **changes)]) == reason, changes
    no_value = dict(run)
    del no_value["val_bpb"]
    assert _reason("result-keep", runs=[no_value]) == "schema"
    assert _reason("result-keep", runs=[[7, 2.25, None]]) == "schema"  # a map, not an array


def _runs(*seeds: int) -> list[dict]:
    return [{"seed": s, "val_bpb": 2.25, "test_bpb": None} for s in seeds]


def test_result_runs():
    assert _ok("result-keep", runs=[]).runs == []  # allowed: an implementation may send none
    assert Result(**{k: v for k, v in samples()["result-crash"].model_dump().items() if k != "runs"}).runs == []
    assert _ok("result-discard", runs=_runs(*range(32))).runs[-1].seed == 31
    assert _reason("result-discard", runs=_runs(*range(33))) == "schema"
    assert _reason("result-keep", runs=_runs(1, 2, 1)) == "schema"  # a seed twice
    assert _reason("result-crash", runs=_runs(5, 5)) == "schema"
    assert _reason("result-keep", seed=0) == "schema"  # the v1 field is gone
    assert _reason("result-keep", val_bpb=None) == "schema"
    assert _ok("result-crash").runs == [] and _ok("result-crash").val_bpb is None


def test_discovery_runs():
    assert _ok("discovery", runs=_runs(0)).runs == [SeedRun(seed=0, val_bpb=2.25)]
    assert len(_ok("discovery", runs=_runs(*range(32))).runs) == 32
    for runs in ([], _runs(*range(33)), _runs(0, 1, 0), None):
        assert _reason("discovery", runs=runs) == "schema", runs
    without = samples()["discovery"].model_dump()
    del without["runs"]
    assert decode_reason(msgpack.packb(without)) == "schema"  # required
    assert _reason("discovery", seeds=[0, 1]) == "schema"  # the v1 field is gone
    assert _reason("discovery", state=PARENT) == "schema"  # still: state must differ from parent


def decode_reason(data: bytes) -> str:
    with pytest.raises(MessageRejected) as caught:
        decode(data, now=TS)
    return caught.value.reason


def test_claim_seeds():
    assert _ok("claim", seeds=[]).seeds == []
    bare = samples()["claim"].model_dump()
    del bare["seeds"]
    assert decode(msgpack.packb(bare), now=TS).seeds == []  # optional: a claim may name no seeds
    assert _ok("claim", seeds=list(range(32))).seeds == list(range(32))
    for seeds in (list(range(33)), [-1], [MAX_SAFE_INT + 1], [1.0], [True], ["1"], None, 7):
        assert _reason("claim", seeds=seeds) == "schema", seeds


def test_adoption_runs():
    adoption = samples()["adoption"]
    assert adoption.verified and adoption.runs and adoption.state == adoption.discovery_state
    bare = adoption.model_dump()
    del bare["runs"]
    assert decode(msgpack.packb(bare), now=TS).runs == []
    unmeasured = _ok("adoption", runs=[], val_bpb=None, verified=False)
    assert unmeasured.runs == [] and unmeasured.val_bpb is None
    assert _reason("adoption", runs=_runs(*range(33))) == "schema"
    assert _reason("adoption", runs=[{"seed": 1, "val_bpb": 20.0}]) == "metric-bounds"
    assert _reason("adoption", verified=1) == "schema"  # a bool, not an int


def test_metric_fields_anywhere_are_metric_bounds():
    """Out-of-bounds metrics in a run are `metric-bounds` like top-level ones; mixed with another
    error they are `schema`."""
    bad_run = [{"seed": 1, "val_bpb": 0.0, "test_bpb": 17.0}]
    assert _reason("discovery", runs=bad_run) == "metric-bounds"
    assert _reason("discovery", runs=bad_run, noise=-1.0) == "metric-bounds"
    assert _reason("discovery", runs=[{"seed": -1, "val_bpb": 0.0}]) == "schema"


# ---- protocol/ files ---------------------------------------------------------------------------


def _vector_index() -> dict:
    return {
        "version": PROTOCOL_VERSION,
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
    for stale in sorted(set(VECTORS.glob("*.msgpack")) - {VECTORS / f for f in _vector_files()}):
        stale.unlink()  # a vector no sample names any more (e.g. a renamed one)


def _vector_files() -> set[str]:
    index = _vector_index()
    return {v["file"] for v in index["valid"] + index["invalid"]}


def test_vector_directory_holds_only_indexed_files():
    assert {p.name for p in VECTORS.iterdir()} == _vector_files() | {"vectors.json"}


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
    claim = samples()["claim"].model_dump(mode="json")
    for bad in (dict(claim, state="nothex"), dict(claim, v=1), dict(claim, bench=_bench(unit="tokens")),
                dict(claim, bench=_bench(budget=2**63)), dict(claim, bench=_bench(device="tpu"))):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    result = samples()["result-keep"].model_dump(mode="json")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(result, seed=0), schema)  # the v1 field
