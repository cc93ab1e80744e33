"""Honest credit (a technique is found only by its own paired effect) and results.tsv as autoresearch writes it."""
from __future__ import annotations

import json

from swarm_node.credit import changes, changes_from_diff, credit, credit_lines, technique
from swarm_node.ledger import Ledger
from swarm_node.messages import BenchKey
from swarm_node.replay.report import credited
from swarm_node.report import results_rows, write_report, write_results_tsv
from swarm_node.research.hparams import write_block

from conftest import REPO

BASE = (REPO / "tests" / "toy_target" / "train.py").read_text()
KEY = BenchKey(target="toy", corpus="c" * 64, tier="cpu", budget=10**9, unit="flops", device="cpu", torch="2.13.0")
BENCH = json.dumps(KEY.model_dump(), sort_keys=True)  # as the ledger stores it


def effect(state, name, value, eff, se, kind="ablation", seeds=(0, 1, 2)):
    return {"bench": BENCH, "state": state, "parent": "p", "name": name, "value": value, "effect": eff, "se": se,
            "seeds": list(seeds), "kind": kind}


def test_technique_names():
    assert technique("NORM", "rmsnorm") == "RMSNorm"
    assert technique("LEARNING_RATE", 0.006) == "learning rate 0.006"
    assert technique("INIT", "kaiming") == "Kaiming init"
    assert technique("TIE_EMBEDDINGS", True) == "tied embeddings"
    assert technique("ACTIVATION", "silu") == "SiLU activation"
    assert technique("WARMUP_STEPS", 50) == "warmup steps 50"
    assert technique("SOMETHING_NEW", "x") == "SOMETHING_NEW = x"


def test_what_a_keep_changed_comes_from_the_block_not_from_prose():
    new = write_block(BASE, {"LEARNING_RATE": 0.006, "NORM": "rmsnorm"})
    assert changes(BASE, new) == {"LEARNING_RATE": 0.006, "NORM": "rmsnorm"}
    diff = ("--- a/train.py\n+++ b/train.py\n@@ -7,3 +7,3 @@\n-LEARNING_RATE = 0.001\n+LEARNING_RATE = 0.006  # x\n"
            "+    norm = 'rmsnorm'  # code, not the block\n+# RMSNorm would be nice\n")
    assert changes_from_diff(diff) == {"LEARNING_RATE": 0.006}


def test_credit_lines_single_ablated_and_combined():
    single = {"state": "s1", "changes": {"LEARNING_RATE": 0.006}}
    ablated = {"state": "s2", "changes": {"NORM": "rmsnorm", "INIT": "kaiming"}}
    combined = {"state": "s3", "changes": {"TIE_EMBEDDINGS": True, "ACTIVATION": "silu"}}
    half = {"state": "s4", "changes": {"NORM": "rmsnorm", "TIE_EMBEDDINGS": True, "ACTIVATION": "silu"}}
    effects = [effect("s1", "LEARNING_RATE", 0.006, 0.0213, 0.004, kind="single"),
               effect("s2", "NORM", "rmsnorm", 0.05, 0.01, seeds=[0, 1]),
               effect("s2", "INIT", "kaiming", 0.001, 0.01, seeds=[0, 1]),
               effect("s4", "NORM", "rmsnorm", -0.03, 0.01)]
    assert credit(single, effects) == [
        "learning rate 0.006: +0.0213 bpb (paired, single change over seeds [0, 1, 2], SE 0.0040)"]
    assert credit(ablated, effects) == [
        "RMSNorm: +0.0500 bpb (paired, ablation over seeds [0, 1], SE 0.0100)",
        "Kaiming init: no measurable effect (+0.0010 bpb; paired, ablation over seeds [0, 1], SE 0.0100)"]
    assert credit(combined, effects) == ["tied embeddings, SiLU activation: combined, not ablated"]
    assert credit(half, effects) == [
        "RMSNorm: -0.0300 bpb (paired, ablation over seeds [0, 1, 2], SE 0.0100)",
        "tied embeddings, SiLU activation: combined, not ablated"]
    assert credit({"state": "s5", "changes": {"INIT": "kaiming"}}, effects) == [
        "Kaiming init: kept as a single change, effect not recorded"]
    assert len(credit_lines([single, ablated, combined], effects)) == 4
    no_seeds = {k: v for k, v in effects[0].items() if k != "seeds"}  # an `effect` event carries none
    assert credit(single, [no_seeds]) == ["learning rate 0.006: +0.0213 bpb (paired, single change, SE 0.0040)"]


def _experiment(ledger, *, status, source=None, parent=None, description="", val=None, mem=None,
                commit="abcdef0123", proposer="agent"):
    state = f"state{len(ledger.experiments())}"
    if source is not None:
        ledger.add_state(state, source, parent, "me")
    eid = ledger.start_experiment(state=state, parent=parent, description=description, proposer=proposer,
                                  diff="", bench=KEY, commit_sha=commit)
    if status != "running":
        ledger.finish_experiment(eid, status=status, val_bpb=val, test_bpb=val, memory_gb=mem, seeds=[0, 1, 2])
    return state


def test_report_credits_only_measured_techniques(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    base = _experiment(ledger, status="baseline", source=BASE, description="baseline", val=3.0)
    lr_src = write_block(BASE, {"LEARNING_RATE": 0.006})
    lr = _experiment(ledger, status="keep", source=lr_src, parent=base, description="LEARNING_RATE 0.001 -> 0.006",
                     val=2.9)
    both_src = write_block(lr_src, {"INIT": "kaiming", "NORM": "rmsnorm"})
    both = _experiment(ledger, status="keep", source=both_src, parent=lr, description="Kaiming init and RMSNorm",
                       val=2.8)
    _experiment(ledger, status="discard", source=write_block(both_src, {"NORM": "layernorm"}), parent=both,
                description="ablation: NORM back to 'layernorm'", val=2.85, proposer="ablation")
    tied = _experiment(ledger, status="keep", source=write_block(both_src, {"TIE_EMBEDDINGS": True,
                                                                            "ACTIVATION": "silu"}),
                       parent=both, description="tie embeddings, SiLU (RMSNorm everywhere!)", val=2.7)
    ledger.record_effect(bench=KEY, state=lr, parent=base, name="LEARNING_RATE", value=0.006, effect=0.1, se=0.01,
                         seeds=[0, 1, 2], kind="single")
    ledger.record_effect(bench=KEY, state=both, parent=lr, name="NORM", value="rmsnorm", effect=0.05, se=0.01,
                         seeds=[0, 1, 2], kind="ablation")
    ledger.record_effect(bench=KEY.model_copy(update={"tier": "gpu-large"}), state=tied, parent=both, name="ACTIVATION", value="silu",
                         effect=0.5, se=0.01, seeds=[0], kind="ablation")  # another benchmark key: not ours
    _, md = write_report(ledger, tmp_path / "out")
    text = md.read_text()
    section = text[text.index("## What the keeps are credited with"):]
    assert "learning rate 0.006: +0.1000 bpb (paired, single change over seeds [0, 1, 2], SE 0.0100)" in section
    assert "RMSNorm: +0.0500 bpb (paired, ablation over seeds [0, 1, 2], SE 0.0100)" in section
    assert "Kaiming init: combined, not ablated" in section
    assert "tied embeddings, SiLU activation: combined, not ablated" in section
    found = next(line for line in section.splitlines() if line.startswith("Techniques credited as found"))
    assert found.endswith(": learning rate 0.006, RMSNorm.")  # not Kaiming, tying or SiLU: never measured here
    assert "ablation: NORM back" not in section  # an ablation is a measurement, not a keep


def test_report_without_keeps_says_so(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    _experiment(ledger, status="baseline", source=BASE, description="baseline", val=3.0)
    text = write_report(ledger, tmp_path / "out")[1].read_text()
    assert "## What the keeps are credited with" in text and "- no keeps yet" in text
    assert "credited as found" not in text


def test_results_rows_have_autoresearch_statuses_only(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    _experiment(ledger, status="baseline", source=BASE, description="tinygpt as shipped", val=3.0, mem=1.25)
    _experiment(ledger, status="keep", description="LEARNING_RATE 0.001 -> 0.006", val=2.9, mem=1.3)
    _experiment(ledger, status="discard", description="ablation: NORM back to 'layernorm'", val=2.95,
                proposer="ablation")
    _experiment(ledger, status="crash", description="ACTIVATION -> relu", commit=None)
    _experiment(ledger, status="interrupted", description="INIT -> xavier")
    _experiment(ledger, status="adopted", description="adopt 12D3KooWabc: RMSNorm", val=2.8)
    _experiment(ledger, status="refused", description="adopt 12D3KooWxyz: too good to be true", val=1.0)
    _experiment(ledger, status="running", description="still\trunning")
    rows = results_rows(ledger.experiments())
    assert rows == [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        "abcdef0\t3.000000\t1.2\tkeep\tbaseline",
        "abcdef0\t2.900000\t1.3\tkeep\tLEARNING_RATE 0.001 -> 0.006",
        "abcdef0\t2.950000\t0.0\tdiscard\tablation: NORM back to 'layernorm'",
        "-------\t0.000000\t0.0\tcrash\tACTIVATION -> relu",
        "abcdef0\t0.000000\t0.0\tcrash\tINIT -> xavier (interrupted)",
        "abcdef0\t2.800000\t0.0\tkeep\tadopt 12D3KooWabc: RMSNorm",
    ]
    assert {r.split("\t")[3] for r in rows[1:]} <= {"keep", "discard", "crash"}
    path = tmp_path / "results.tsv"
    path.write_text("old\n")
    write_results_tsv(ledger, path)
    assert path.read_text() == "\n".join(rows) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "results" in p.name) == ["results.tsv"]


def test_replay_credits_discoveries_from_effect_events_only():
    diff_one = "--- a/train.py\n+++ b/train.py\n-NORM = \"layernorm\"\n+NORM = \"rmsnorm\"\n"
    diff_two = ("--- a/train.py\n+++ b/train.py\n-INIT = \"normal\"\n+INIT = \"kaiming\"\n"
                "-TIE_EMBEDDINGS = False\n+TIE_EMBEDDINGS = True\n")
    diff_three = "+LEARNING_RATE = 0.006\n+ACTIVATION = \"silu\"\n"

    def discovery(state, t, diff, tier="cpu"):
        return {"type": "discovery", "id": f"{tier}:{state}", "peer": "a", "tier": tier, "state": state,
                "parent": "p", "t": t, "val_bpb": 3.0 - t / 1000, "test_bpb": None, "description": state, "diff": diff}

    events = [
        discovery("s1", 100, diff_one),
        discovery("s1", 101, diff_one),  # a second copy of the same discovery
        {"type": "effect", "t": 102, "peer": "a", "tier": "cpu", "state": "s1", "name": "NORM", "value": "rmsnorm",
         "effect": 0.04, "se": 0.01, "kind": "single"},
        discovery("s2", 200, diff_two),
        {"type": "effect", "t": 300, "peer": "a", "tier": "cpu", "state": "s2", "name": "INIT", "value": "kaiming",
         "effect": 0.03, "se": 0.005, "kind": "ablation"},
        {"type": "effect", "t": 301, "peer": "a", "tier": "gpu", "state": "s2", "name": "TIE_EMBEDDINGS",
         "value": True, "effect": 0.03, "se": 0.005, "kind": "ablation"},  # another tier's measurement
        discovery("s3", 400, diff_three),
    ]
    keeps, found = credited(events)
    assert [k["state"] for k in keeps] == ["s1", "s2", "s3"]
    assert keeps[0]["credit"] == ["RMSNorm: +0.0400 bpb (paired, single change, SE 0.0100)"]
    assert keeps[1]["credit"] == ["Kaiming init: +0.0300 bpb (paired, ablation, SE 0.0050)",
                                  "tied embeddings: combined, not ablated"]
    assert keeps[2]["credit"] == ["learning rate 0.006, SiLU activation: combined, not ablated"]
    assert [(f["technique"], f["t"]) for f in found] == [("RMSNorm", 100), ("Kaiming init", 200)]
