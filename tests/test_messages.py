"""The wire contract: round trips, golden vectors both ways, every rejection reason, schema.json.

SWARM_NODE_WRITE_PROTOCOL=1 pytest tests/test_messages.py rewrites protocol/schema.json and the
golden vectors from the samples below (gossip messages: samples() and invalid_samples(); sync
frames: sync_samples() and invalid_sync_samples()), writes their index protocol/vectors/vectors.json
(_vector_index()), and removes vector files no sample names any more (then review the diff: vectors
are a promise to peers; KEPT_VECTORS lists the ones that must never go). Run it twice: the
per-vector tests are parametrized from the index on disk.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import msgpack
import pytest
from pydantic import TypeAdapter

from swarm_node.messages import (
    MAX_DIFF_BYTES,
    MAX_SAFE_INT,
    MAX_SOURCE_BYTES,
    PRESENCE_TOPIC,
    PROTOCOL_VERSION,
    Adoption,
    BenchKey,
    Best,
    BestAnswer,
    BestRequest,
    Claim,
    Discovery,
    ErrorAnswer,
    Message,
    Presence,
    Result,
    SeedRun,
    StateAnswer,
    StateRequest,
    json_schema,
    research_topic,
    state_hash,
    topic_for,
)
from swarm_node.wire import (
    MAX_MESSAGE_BYTES,
    MAX_PAST_S,
    MAX_SYNC_REQUEST_BYTES,
    MessageRejected,
    decode,
    decode_sync_answer,
    decode_sync_request,
    encode,
    encode_sync,
    message_id,
)

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"
VECTORS = PROTOCOL / "vectors"
WRITE = os.environ.get("SWARM_NODE_WRITE_PROTOCOL") == "1"
MESSAGE = TypeAdapter(Message)  # a gossip message from plain data (a vector's JSON)

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
            # what the reference node sends: its ledger's experiments per outcome (node.py _presence)
            counters={"keep": 3, "discard": 8, "crash": 1, "adopted": 1, "refused": 0},
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


def _repeated_key(obj: dict, key: str, value) -> bytes:
    """`obj` packed with `key` written a second time at the end of the map (a fixmap: < 15 keys)."""
    body = msgpack.packb(obj, use_bin_type=True)
    assert 0x80 <= body[0] < 0x8F
    return bytes([body[0] + 1]) + body[1:] + msgpack.packb(key) + msgpack.packb(value, use_bin_type=True)


def _padded_to(obj: dict, size: int, field: str) -> bytes:
    """`obj` packed with `field` padded so that the whole map is exactly `size` bytes."""
    obj = dict(obj, **{field: ""})
    for _ in range(3):  # the str header grows at 32, 256 and 65536 bytes: converges in a few steps
        obj[field] = "x" * (len(obj[field]) + size - len(msgpack.packb(obj, use_bin_type=True)))
    data = msgpack.packb(obj, use_bin_type=True)
    assert len(data) == size
    return data


def invalid_samples() -> dict:
    """name -> (bytes, reason), rejected by `decode` against the current clock. Every reason decode
    gives has one (decoder_reasons()), and where several checks fail the first in PROTOCOL.md section 6
    wins."""
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
        "schema-version-string": (_raw("claim", v="2"), "schema"),
        # the whole message over 65536 bytes: oversized, before anything else is looked at
        "oversized": (_padded_to(_claim_map(), MAX_MESSAGE_BYTES + 1, "description"), "oversized"),
        "undecodable-trailing-bytes": (encode(samples()["claim"]) + b"\xc0", "undecodable"),  # two values
        "undecodable-int-key": (msgpack.packb({**_claim_map(), 7: "seven"}), "undecodable"),
        "undecodable-bin-key": (msgpack.packb(_bin_key(_claim_map(), "state"), use_bin_type=True), "undecodable"),
        "undecodable-repeated-key": (_repeated_key(_claim_map(), "description", "another"), "undecodable"),
        "undecodable-invalid-utf8": (
            _raw("claim", description="PLACEHOLDER").replace(msgpack.packb("PLACEHOLDER"), b"\xa2\xff\xfe"),
            "undecodable"),
        "schema-nil-list": (_raw("claim", seeds=None), "schema"),  # a list is never nil: [] or left out
        "schema-nil-map": (_raw("presence", counters=None), "schema"),  # nor a map
        "schema-float-for-int": (_raw("claim", bench=_bench(budget=3e13)), "schema"),
        "schema-bool-for-int": (_raw("claim", seeds=[0, 1, True]), "schema"),
        "schema-bin-for-str": (_raw("claim", description=b"LEARNING_RATE"), "schema"),
        "schema-torch-build-tag": (_raw("claim", bench=_bench(torch="2.13.0+cu128")), "schema"),
        "schema-nan-in-hparams": (_raw("discovery", hparams={"LEARNING_RATE": float("nan")}), "schema"),
        # under 32768 characters, over 32768 UTF-8 bytes: the rule schema.json cannot state
        "schema-diff-over-32768-bytes": (_raw("discovery", diff=DIFF[:-1] + "  # " + "\u00e9" * 16_400 + "\n"),
                                         "schema"),
        "schema-best-keyed-by-another-tier": (
            _raw("presence", best={"gpu-large": samples()["presence"].best["cpu"].model_dump()}), "schema"),
        "schema-state-equals-parent": (_raw("discovery", state=PARENT), "schema"),
        # which reason wins: v before the rest, schema over metric-bounds, both before timestamps
        "version-1-missing-field": (msgpack.packb(dict(_without(_claim_map(), "state"), v=1)), "version"),
        "schema-and-metric-bounds": (_raw("discovery", val_bpb=16.5, state="nothex"), "schema"),
        "metric-bounds-and-future-timestamp": (_raw("discovery", val_bpb=16.5, ts=4102444800.0), "metric-bounds"),
        "metric-bounds-negative-noise": (_raw("discovery", noise=-0.0125), "metric-bounds"),
        "metric-bounds-head": (_raw("presence", head_val_bpb=0.0), "metric-bounds"),
    }


def _claim_map() -> dict:
    return samples()["claim"].model_dump()


def _without(obj: dict, key: str) -> dict:
    return {k: v for k, v in obj.items() if k != key}


def _bin_key(obj: dict, key: str) -> dict:
    """`obj` with `key` as a msgpack bin instead of a str (same bytes, other type)."""
    return {(k.encode() if k == key else k): v for k, v in obj.items()}


# ---- sync frames (PROTOCOL.md section 7): the body of a frame, without its varint length prefix ----


def sync_samples() -> dict:
    """name -> (frame, "request" or "answer")."""
    cpu_best = samples()["presence"].best["cpu"]
    return {
        "sync-best-request": (BestRequest(), "request"),
        "sync-state-request": (StateRequest(state=PARENT), "request"),
        "sync-best-answer": (BestAnswer(best={"cpu": cpu_best}), "answer"),
        "sync-best-answer-empty": (BestAnswer(best={}), "answer"),  # before the baseline is measured
        "sync-state-answer": (StateAnswer(state=PARENT, source=PARENT_SRC), "answer"),
        "sync-state-answer-unknown": (StateAnswer(state=PARENT, source=None), "answer"),
        "sync-error-answer": (ErrorAnswer(error="schema"), "answer"),
    }


def _frame(name: str, **changes) -> bytes:
    return msgpack.packb(dict(sync_samples()[name][0].model_dump(), **changes), use_bin_type=True)


def invalid_sync_samples() -> dict:
    """name -> (bytes, "request" or "answer", reason)."""
    best = samples()["presence"].best["cpu"].model_dump()
    return {
        "sync-request-oversized": (_padded_to({"op": "best", "v": 2}, MAX_SYNC_REQUEST_BYTES + 1, "pad"), "request",
                                   "oversized"),
        "sync-request-undecodable": (_frame("sync-state-request")[:-5], "request", "undecodable"),
        "sync-request-unknown-op": (msgpack.packb({"op": "history", "v": 2}), "request", "schema"),
        "sync-request-version-1": (msgpack.packb({"op": "best", "v": 1}), "request", "version"),
        "sync-request-version-true": (msgpack.packb({"op": "best", "v": True}), "request", "schema"),
        "sync-answer-best-keyed-by-another-tier": (_frame("sync-best-answer", best={"gpu-large": best}), "answer",
                                                   "schema"),
        "sync-answer-metric-bounds": (_frame("sync-best-answer", best={"cpu": dict(best, val_bpb=0.0)}), "answer",
                                      "metric-bounds"),
        "sync-answer-source-not-a-str": (_frame("sync-state-answer", source=PARENT_SRC.encode()), "answer",
                                         "schema"),
    }


SYNC_DECODERS = {"request": decode_sync_request, "answer": decode_sync_answer}


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
        *((frame, SYNC_DECODERS[kind]) for frame, kind in sync_samples().values()),
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


# ---- what PROTOCOL.md section 4 makes strict -------------------------------------------------


def _with_raw_field(obj: dict, key: str, raw: bytes) -> bytes:
    """`obj` packed with one more field whose value is the msgpack bytes `raw` (a fixmap)."""
    body = msgpack.packb(obj, use_bin_type=True)
    assert 0x80 <= body[0] < 0x8F
    return bytes([body[0] + 1]) + body[1:] + msgpack.packb(key) + raw


def test_map_keys_are_unique_msgpack_strs_at_every_depth():
    """A key that is not a msgpack str, or a key twice in one map (whichever value a decoder would
    keep), makes the bytes `undecodable`, however deep."""
    claim = _claim_map()
    for data in (
        msgpack.packb(dict(claim, bench={**_bench(), 1: "x"})),
        msgpack.packb(dict(claim, bench=_bin_key(_bench(), "tier")), use_bin_type=True),
        msgpack.packb(_bin_key(claim, "v"), use_bin_type=True),
        _repeated_key(claim, "v", 2),  # even with the same value
        _with_raw_field(_without(claim, "bench"), "bench", _repeated_key(_bench(), "tier", "cpu")),
        _raw("discovery", hparams={b"LEARNING_RATE": 0.0008}),
        _raw("discovery", hparams={0.5: 1}),
        _raw("discovery", hparams={None: 1}),
    ):
        assert decode_reason(data) == "undecodable"
    assert decode_reason(_frame("sync-best-request")[:1] + b"\xa1v\x01" + _frame("sync-best-request")[1:]) \
        == "undecodable"  # a header that counts one pair fewer than follow: trailing bytes


def test_lists_and_maps_default_to_empty_never_nil():
    for name, field in (("presence", "best"), ("presence", "counters"), ("presence", "addrs"),
                        ("claim", "seeds"), ("result-keep", "runs"), ("discovery", "hparams"),
                        ("adoption", "runs")):
        assert _reason(name, **{field: None}) == "schema", field
        left_out = decode(msgpack.packb(_without(samples()[name].model_dump(), field)), now=TS)
        assert getattr(left_out, field) in ([], {}), field
    for name, field in (("presence", "hardware"), ("discovery", "runs")):  # required: no default
        assert _reason(name, **{field: None}) == "schema", field
        assert decode_reason(msgpack.packb(_without(samples()[name].model_dump(), field))) == "schema", field
    for name, field in (("presence", "head_val_bpb"), ("result-keep", "test_bpb"), ("discovery", "test_bpb"),
                        ("adoption", "val_bpb")):  # typed "or nil": left out is nil
        assert getattr(decode(msgpack.packb(_without(samples()[name].model_dump(), field)), now=TS), field) is None


def test_int_fields_take_only_msgpack_ints():
    for name, changes in (
        ("claim", {"bench": _bench(budget=True)}), ("claim", {"bench": _bench(budget=3e13)}),
        ("claim", {"seeds": [0.0]}), ("claim", {"seeds": [False]}),
        ("result-keep", {"runs": [{"seed": True, "val_bpb": 2.25, "test_bpb": None}]}),
        ("presence", {"counters": {"keep": 3.0}}), ("presence", {"counters": {"keep": True}}),
        ("adoption", {"verified": 1}),  # and a bool is not an int either way
    ):
        assert _reason(name, **changes) == "schema", changes
    # float fields take an int (what a JavaScript encoder sends for 2.0), never a bool
    assert _ok("discovery", noise=0, val_bpb=2).noise == 0.0
    assert _ok("claim", ts=int(TS)).ts == int(TS)
    for name, field in (("claim", "ts"), ("result-keep", "val_bpb"), ("discovery", "noise")):
        assert _reason(name, **{field: True}) == "schema", field
    # scalar maps keep each value's type: true, 1 and 1.0 are three different values
    d = _ok("discovery", hparams={"A": True, "B": 1, "C": 1.0})
    assert [type(d.hparams[k]) for k in "ABC"] == [bool, int, float]
    assert msgpack.unpackb(encode(d))["hparams"] == {"A": True, "B": 1, "C": 1.0}


def test_string_limits_count_characters_except_diff_and_source():
    assert _ok("claim", description="\u00e9" * 512).description == "\u00e9" * 512  # 1024 bytes
    assert _reason("claim", description="a" * 513) == "schema"
    assert _ok("presence", role="\u00e9" * 64).role == "\u00e9" * 64
    assert _ok("discovery", hparams={"\u00e9" * 64: "\u00e9" * 256}).hparams
    assert _reason("discovery", hparams={"a" * 65: 1}) == "schema"
    assert _reason("discovery", hparams={"a": "b" * 257}) == "schema"
    room = MAX_DIFF_BYTES - len(DIFF.encode()) - 1
    exact = DIFF + "#" + "\u00e9" * (room // 2) + "x" * (room % 2)
    assert len(exact.encode()) == MAX_DIFF_BYTES and _ok("discovery", diff=exact).diff == exact
    assert _reason("discovery", diff=exact + "x") == "schema"
    source = "\u00e9" * (MAX_SOURCE_BYTES // 2)  # exactly the limit in bytes, half of it in characters
    answer = msgpack.packb({"op": "state", "source": source, "state": state_hash(source), "v": 2})
    assert decode_sync_answer(answer).source == source
    for over in (source + "x", "x" * (MAX_SOURCE_BYTES + 1)):  # over in bytes; over in characters too
        with pytest.raises(MessageRejected) as caught:
            decode_sync_answer(msgpack.packb({"op": "state", "source": over, "state": state_hash(over), "v": 2}))
        assert caught.value.reason == "schema"


def test_which_reason_wins():
    """The first failing check of PROTOCOL.md section 6 names the rejection."""
    assert decode_reason(b"\xc1" * (MAX_MESSAGE_BYTES + 1)) == "oversized"  # size before parsing
    assert decode_reason(_repeated_key(dict(_claim_map(), v=1), "v", 1)) == "undecodable"  # parsing before v
    assert decode_reason(msgpack.packb({"v": 3, "type": "rumour"})) == "version"  # v before the fields
    assert decode_reason(msgpack.packb({"type": "claim", "v": 2.0})) == "schema"  # a float v is no version
    assert _reason("discovery", val_bpb=16.5, noise=-1.0) == "metric-bounds"  # only bounds are wrong
    assert _reason("discovery", val_bpb=16.5, description=7) == "schema"  # something else is wrong too
    assert _reason("discovery", val_bpb=16.5, ts=TS + 3600) == "metric-bounds"  # fields before the clock
    assert _reason("claim", ts=TS + 3600, description=7) == "schema"


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


def decoder_reasons() -> set[str]:
    """The reasons `decode` gives: those of checks 3 to 8b in PROTOCOL.md section 6's table."""
    text = (PROTOCOL / "PROTOCOL.md").read_text()
    table = text[text.index("## 6. Validation"):text.index("### 6.1")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| ")]
    reasons = {reason for number, _, cell, _ in rows if number in {"3", "4", "5", "6", "7", "8", "8b"}
               for reason in re.findall(r"`([a-z-]+)`", cell)}
    return reasons


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
