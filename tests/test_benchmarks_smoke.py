"""The benchmark scripts still run: gossip_latency at a tiny size prints its figures (no timing asserts)."""
import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("processes", [1, 3])
def test_gossip_latency_prints_its_figures_at_a_tiny_size(processes):
    proc = subprocess.run([sys.executable, "benchmarks/gossip_latency.py", "--nodes", "3", "--messages", "2",
                           "--processes", str(processes)], cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert ("hosts in one process" if processes == 1 else "hosts in 3 processes") in out, out
    assert re.search(r"N=3: connecting 3 links took [\d.]+ s", out), out
    assert re.search(r"N=3: 2 messages, 4/4 receipts \(0 missing\): p50 [\d.]+ ms, p95 [\d.]+ ms, max [\d.]+ ms",
                     out), out
    assert "goal p95 < 250 ms at 35 nodes: not measured" in out, out


def test_the_other_benchmarks_parse_their_options():
    for script in ("join_sync.py", "loop_efficiency.py", "reproducibility.py"):
        proc = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=REPO, capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stdout + proc.stderr


def test_hostile_load_quick_prints_both_goal_lines():
    """benchmarks/hostile_load.py --quick: a claim flood (3 experiments, twice) and a 60-discovery flood
    against real nodes; only that it runs and prints its figures, never whether a goal is met."""
    proc = subprocess.run([sys.executable, "benchmarks/hostile_load.py", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=150)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"claims: flooded/unflooded experiment rate = [\d.]+ / [\d.]+ = [\d.]+", out), out
    assert re.search(r"goal claim flood: .*: (met|NOT met)$", out, re.M), out
    assert re.search(r"sync: during \([\d.]+ s\): request_best p50 [\d.]+ ms, p95 [\d.]+ ms", out), out
    assert re.search(r"goal sync during a 60-discovery flood: p95 < 100 ms \(measured [\d.]+ ms.*\): (met|NOT met)$",
                     out, re.M), out


def test_decision_quality_prints_both_rates(tmp_path):
    """benchmarks/decision_quality.py at a small trial count, from the cpu tier's table and from a runs
    file (written here, 3 seeds): the source, the noise, the effects and both rates with their trial
    counts; never whether a goal is met."""
    import json
    runs = {"baseline": [2.50, 2.52, 2.48], "LEARNING_RATE=0.006": [2.45, 2.48, 2.44],
            "INIT=kaiming": [2.51, 2.52, 2.50]}
    (tmp_path / "runs.json").write_text(json.dumps({
        "budget_flops": 450_000_000_000, "machine": "test", "platform": "test", "torch": "0", "date": "today",
        "runs": {n: {str(s): {"val_bpb": v} for s, v in enumerate(vals)} for n, vals in runs.items()}}))
    for source in ("table", "runs"):
        proc = subprocess.run([sys.executable, "benchmarks/decision_quality.py", "--nodes", "4", "--experiments", "10",
                               "--source", source, "--runs", str(tmp_path / "runs.json")],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert re.search(r"per-seed noise of a paired difference: [\d.]+ \(\d+ df", out), out
        if source == "table":
            assert re.search(r"^source: table table.json, tier cpu at 4.5e\+11 FLOPs", out, re.M), out
            assert re.search(r"LEARNING_RATE 0.003 -> 0.006 effect: base [+-][\d.]+, mean over \d+ contexts", out), out
        else:
            assert re.search(r"^source: measured runs at 4.5e\+11 FLOPs", out, re.M), out
            assert re.search(r"^ +LEARNING_RATE=0.006 +\+0.0433 SE [\d.]+ t \+[\d.]+ \(sd [\d.]+, 3 seeds\)$", out,
                             re.M), out
            assert re.search(r"^ +INIT=kaiming +-0.0100 SE", out, re.M), out
        assert re.search(r"K=3, C=2, 4 nodes x 10 experiments, .* seed 0$", out, re.M), out
        assert re.search(r"^false-keep rate: [\d.]+ % of \d+ null candidates \(goal <= 5 %\): (met|NOT met)$", out,
                         re.M), out
        assert re.search(r"^hit rate: [\d.]+ % of \d+ real candidates \(goal >= 80 %\): (met|NOT met)$", out,
                         re.M), out
