"""The ledger on real SQLite: discoveries per tier, and a ledger of an earlier version upgraded in place."""
from __future__ import annotations

import json
import sqlite3

import pytest

from swarm_node.ledger import Ledger
from wire_samples import samples


def _key(**changes):
    bench = samples()["discovery"].bench
    return bench.model_copy(update=changes)


def _in_tier(tier: str):
    d = samples()["discovery"]
    return d.model_copy(update={"bench": d.bench.model_copy(update={"tier": tier})})


def test_same_state_in_two_tiers_is_two_discoveries(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    cpu, gpu = _in_tier("cpu"), _in_tier("gpu-large")
    assert ledger.record_discovery(cpu, received_from="a", message_id="m1")
    assert ledger.record_discovery(gpu, received_from="a", message_id="m2")
    assert not ledger.record_discovery(gpu, received_from="b", message_id="m3")  # a second copy
    assert ledger.discovery("cpu", cpu.state)["tier"] == "cpu"
    assert ledger.discovery("gpu-consumer", cpu.state) is None
    tiers = [r["tier"] for r in ledger.query("SELECT tier FROM receipts ORDER BY message_id")]
    assert tiers == ["cpu", "gpu-large", "gpu-large"]


def test_earlier_ledger_is_upgraded_without_losing_rows(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE discoveries (
            state TEXT PRIMARY KEY, bench TEXT NOT NULL, tier TEXT NOT NULL, author TEXT NOT NULL,
            parent TEXT NOT NULL, diff TEXT NOT NULL, val_bpb REAL NOT NULL, test_bpb REAL, seeds TEXT NOT NULL,
            noise REAL NOT NULL, description TEXT NOT NULL, created_ts REAL NOT NULL,
            first_received_at REAL NOT NULL, first_from TEXT NOT NULL);
        CREATE TABLE receipts (
            message_id TEXT PRIMARY KEY, state TEXT NOT NULL, from_peer TEXT NOT NULL, received_at REAL NOT NULL);
        INSERT INTO discoveries VALUES ('s1', '{}', 'cpu', 'a', 'p', '', 2.5, 2.6, '[1]', 0.01, 'old one', 1, 2, 'a');
        INSERT INTO receipts VALUES ('m1', 's1', 'a', 2);
    """)
    old.close()
    ledger = Ledger(path)
    assert ledger.discovery("cpu", "s1")["description"] == "old one"
    assert [tuple(r) for r in ledger.query("SELECT message_id, tier FROM receipts")] == [("m1", "cpu")]
    assert ledger.record_discovery(_in_tier("gpu-large").model_copy(update={"state": "s1" * 32}),
                                   received_from="b", message_id="m2")
    ledger.close()
    assert Ledger(path).discovery("cpu", "s1") is not None  # a second open finds nothing to upgrade


def test_the_best_register_is_keyed_by_the_full_benchmark_key(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    mine, other_budget = _key(budget=60, tier="cpu"), _key(budget=5, tier="cpu")
    assert ledger.offer_best(mine, "b" * 64, 2.5, 2.6, "me")
    assert ledger.offer_best(other_budget, "a" * 64, 0.0001, None, "someone")  # same tier, other key
    assert ledger.best(mine)["val_bpb"] == 2.5 and ledger.best(mine)["state"] == "b" * 64
    assert not ledger.offer_best(mine, "c" * 64, 2.7, None, "me")  # worse: the register stays
    assert ledger.offer_best(mine, "a" * 64, 2.5, None, "me")  # a tie goes to the smaller hash
    assert ledger.best(mine)["state"] == "a" * 64
    assert ledger.best(_key(budget=60, tier="gpu-large")) is None


def test_a_register_keyed_by_tier_is_dropped_on_upgrade(tmp_path):
    """Earlier versions keyed it by tier and put peers' unverified claims in it: start it over (the
    node offers its own measured head again at start)."""
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE best (tier TEXT PRIMARY KEY, bench TEXT NOT NULL, state TEXT NOT NULL, val_bpb REAL NOT NULL,
                           test_bpb REAL, author TEXT NOT NULL, updated_at REAL NOT NULL);
        INSERT INTO best VALUES ('gpu-large', '{}', 's', 0.0001, NULL, 'liar', 1);
    """)
    old.close()
    ledger = Ledger(path)
    assert ledger.best(_key(tier="gpu-large")) is None
    assert ledger.offer_best(_key(tier="cpu"), "s" * 64, 2.0, None, "me")


def test_effects_are_stored_per_benchmark_state_and_name(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    b1, b2 = _key(tier="cpu"), _key(tier="gpu-large")
    ledger.record_effect(bench=b1, state="s", parent="p", name="NORM", value="rmsnorm", effect=0.02, se=0.004,
                         seeds=[0, 1], kind="ablation")
    ledger.record_effect(bench=b1, state="s", parent="p", name="NORM", value="rmsnorm", effect=0.03, se=0.004,
                         seeds=[0, 1, 2], kind="ablation")  # measured again: replaces
    ledger.record_effect(bench=b2, state="s", parent="p", name="LEARNING_RATE", value=0.006, effect=0.01,
                         se=0.002, seeds=[0], kind="single")
    assert [(r["bench"], r["name"], r["effect"], r["seeds"]) for r in ledger.effects()] == [
        (json.dumps(b1.model_dump(), sort_keys=True), "NORM", 0.03, "[0, 1, 2]"),
        (json.dumps(b2.model_dump(), sort_keys=True), "LEARNING_RATE", 0.01, "[0]")]
    (row,) = ledger.effects(b2)
    assert json.loads(row["value"]) == 0.006 and row["kind"] == "single" and row["parent"] == "p"
    with pytest.raises(ValueError):
        ledger.record_effect(bench=b1, state="s", parent="p", name="X", value=1, effect=0, se=0, seeds=[],
                             kind="guess")
    ledger.close()
    assert len(Ledger(path).effects(b1)) == 1  # kept across a restart


def test_a_ledger_without_the_effects_table_gains_it(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE effects")
    db.commit()
    db.close()
    ledger = Ledger(path)
    assert ledger.effects() == []
    ledger.record_effect(bench=_key(), state="s", parent=None, name="INIT", value="kaiming", effect=0.1, se=0.01,
                         seeds=[0], kind="single")
    assert ledger.effects(_key())[0]["name"] == "INIT"


def test_peers_claims_kept_in_the_ledger_are_bounded(tmp_path, monkeypatch):
    """Claims cost a peer nothing: only the newest MAX_CLAIM_ROWS outlive a flood."""
    import swarm_node.ledger as ledger_module
    monkeypatch.setattr(ledger_module, "MAX_CLAIM_ROWS", 10)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    bench = _key(tier="cpu")
    for i in range(25):
        ledger.record_foreign_state(state=f"{i:064x}", bench=bench, author=f"sybil-{i}", kind="claim")
    ledger.record_foreign_state(state="r" * 64, bench=bench, author="peer", kind="result", status="keep", val_bpb=2.0)
    claims = ledger.claims(bench, since=0)
    assert len(claims) == 10 and {c["state"] for c in claims} == {f"{i:064x}" for i in range(15, 25)}
    assert ledger.measured_by_peers(bench) == {"r" * 64}  # results are not claims: untouched
