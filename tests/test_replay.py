"""The replay: its measured table, and a small night run through the CLI."""
import json
import random
from collections import defaultdict

import pytest

from swarm_node.assets import target_dir
from swarm_node.replay.table import config_source, load_table, train_once

from conftest import REPO, swarm_node

TINY = REPO / "tests" / "replay_tiny.toml"


def test_two_random_table_rows_retrain_within_their_seed_spread(corpus):
    table = load_table()
    base = (target_dir("tinygpt") / "train.py").read_text()
    for row in random.sample(table["rows"], 2):
        seeds = row["seeds"]
        vals = [s["val_bpb"] for s in seeds.values()]
        spread = max(max(vals) - min(vals), 0.01)
        seed = random.choice(sorted(seeds))
        got = train_once(target_dir("tinygpt"), config_source(base, table["base"], row["config"]), seed=int(seed),
                         steps=table["steps"], corpus=corpus, threads=1)
        assert abs(got["val_bpb"] - seeds[seed]["val_bpb"]) <= spread, (row["config"], seed, got, seeds)
        assert got["num_steps"] == table["steps"]


def per_agent(decisions):
    out = defaultdict(list)
    for agent, state, status in decisions:
        out[agent].append((state, status))
    return dict(out)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    runs = []
    for i in range(2):
        out = tmp / f"run{i}"
        proc = swarm_node("replay", "--scenario", str(TINY), "--seed", "3", "--out", str(out), "--compare",
                          home=tmp / "home", timeout=400)
        runs.append((out, proc))
    return runs


def test_a_small_night_writes_its_report(tiny_runs):
    out, proc = tiny_runs[0]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("agents", "experiments", "keeps", "gossip", "wall_seconds", "best", "discoveries"):
        assert key in summary
    assert summary["agents"] == 6 and summary["gossip"] is True and summary["experiments"] > 20
    assert set(summary["best"]) >= {"val_bpb", "test_bpb", "state", "author", "tier"}
    for d in summary["discoveries"]:
        assert set(d) >= {"id", "author", "tier", "val_bpb", "reached_fraction", "t_to_50", "t_to_100"}
    report = (out / "REPORT.md").read_text()
    assert "not the original night's models" in report and "What gossip bought" in report
    assert (out / "trajectory.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "isolated" / "summary.json").is_file()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["type"] for e in events} >= {"join", "link", "experiment", "receipt"}
    assert "done in" in proc.stdout


def test_the_same_seed_makes_the_same_decisions(tiny_runs):
    (a, _), (b, _) = tiny_runs
    for sub in (".", "isolated"):
        first = json.loads((a / sub / "summary.json").read_text())
        second = json.loads((b / sub / "summary.json").read_text())
        assert per_agent(first["decisions"]) == per_agent(second["decisions"]), sub
        assert first["experiments"] == second["experiments"]
