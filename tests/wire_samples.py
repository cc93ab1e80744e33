"""The sample messages and sync frames of the wire contract, valid and invalid, shared by the
message tests (tests/test_messages*.py, which write and check the golden vectors from them) and by
other tests that need a well-formed message (test_ledger.py, test_intake.py).

samples() and invalid_samples() are gossip messages; sync_samples() and invalid_sync_samples() are
sync frames (PROTOCOL.md section 7). decoder_reasons() reads the reasons `decode` gives from
protocol/PROTOCOL.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import msgpack

from swarm_node.messages import (
    Adoption,
    BenchKey,
    Best,
    BestAnswer,
    BestRequest,
    Claim,
    Discovery,
    ErrorAnswer,
    Presence,
    Result,
    SeedRun,
    StateAnswer,
    StateRequest,
    state_hash,
)
from swarm_node.wire import (
    MAX_MESSAGE_BYTES,
    MAX_SYNC_REQUEST_BYTES,
    decode_sync_answer,
    decode_sync_request,
    encode,
)

PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"

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


def decoder_reasons() -> set[str]:
    """The reasons `decode` gives: those of checks 3 to 8b in PROTOCOL.md section 6's table."""
    text = (PROTOCOL / "PROTOCOL.md").read_text()
    table = text[text.index("## 6. Validation"):text.index("### 6.1")]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| ")]
    reasons = {reason for number, _, cell, _ in rows if number in {"3", "4", "5", "6", "7", "8", "8b"}
               for reason in re.findall(r"`([a-z-]+)`", cell)}
    return reasons
