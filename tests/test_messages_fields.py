"""The wire contract's field rules (version 2): bench keys, seed runs, claims and adoptions, metric
bounds, and what PROTOCOL.md section 4 makes strict (unique str keys, nil, ints, string limits,
which reason wins).
"""
from __future__ import annotations

import msgpack
import pytest

from swarm_node.messages import (
    MAX_DIFF_BYTES,
    MAX_SAFE_INT,
    MAX_SOURCE_BYTES,
    BenchKey,
    Result,
    SeedRun,
    state_hash,
)
from swarm_node.wire import MAX_MESSAGE_BYTES, MessageRejected, decode, decode_sync_answer, encode
from wire_samples import (
    CPU,
    DIFF,
    GPU,
    PARENT,
    SOLO,
    TS,
    _bench,
    _bin_key,
    _claim_map,
    _frame,
    _raw,
    _repeated_key,
    _without,
    samples,
)


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
