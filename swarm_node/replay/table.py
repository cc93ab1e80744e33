"""The measured table behind the replay: real trainings of the tinygpt target, one table per tier.

`swarm-node bench-table` trains every grid configuration of each tier with each seed at that
tier's compute budget (training FLOPs, not seconds: a row must re-train to the same value on
another machine) and writes one JSON file. The replay's oracle answers an experiment with one
seed's measured values, as tabular HPO benchmarks (NAS-Bench-201, HPOBench) do. Nothing in the
table is invented: each value is a train.py run, and each tier lists the machines that ran it.
"""
from __future__ import annotations

import datetime
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..assets import load_config, target_dir
from ..research.hparams import write_block
from ..research.summary import parse_summary
from ..messages import state_hash
from ..research.workspace import file_sha256

DEFAULT_TABLE = "table.json"  # beside the target's train.py
FORMAT = 2  # 1: one table of fixed steps for every tier; 2: per-tier tables at compute budgets


def grid_configs(grid: dict) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def config_source(base_source: str, base: dict, config: dict) -> str:
    return write_block(base_source, {**base, **config})


def train_once(target: Path, source: str, *, seed: int, budget_flops: int, corpus: Path, threads: int) -> dict:
    """One real train.py run in a scratch folder; returns its summary values."""
    with tempfile.TemporaryDirectory(prefix="swarm-table-") as tmp:
        (Path(tmp) / "prepare.py").write_bytes((target / "prepare.py").read_bytes())
        (Path(tmp) / "train.py").write_text(source)
        env = {"PATH": os.defpath, "HOME": tmp, "LANG": "C.UTF-8", "SWARM_SEED": str(seed),
               "SWARM_BUDGET_FLOPS": str(int(budget_flops)), "SWARM_DATA": str(corpus),
               "SWARM_DEVICE": "cpu", "SWARM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
               "OMP_WAIT_POLICY": "PASSIVE"}
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            if key in os.environ:
                env[key] = os.environ[key]
        proc = subprocess.run([sys.executable, "train.py"], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=3600)
    summary = parse_summary(proc.stdout) if proc.returncode == 0 else None
    if summary is None:
        raise RuntimeError(f"train.py failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    return {k: summary[k] for k in ("val_bpb", "test_bpb", "training_seconds", "num_steps", "train_flops")
            if k in summary}


def bigram_reference(corpus: Path) -> dict:
    """Bits per byte of a byte-bigram count model (train split counts, add-alpha smoothing, the
    alpha best on validation) on the bytes the harness scores: the level a model must pass
    before its architecture can matter."""
    raw = corpus.read_bytes()
    n_train, n_val = int(len(raw) * 0.90), int(len(raw) * 0.95)  # prepare.py's 90 / 5 / 5 split
    train, val, test = raw[:n_train], raw[n_train:n_val], raw[n_val:]
    counts = [[0] * 256 for _ in range(256)]
    for a, b in zip(train, train[1:]):
        counts[a][b] += 1
    totals = [sum(row) for row in counts]
    eval_tokens = 32_768  # prepare.EVAL_TOKENS

    def bpb(split: bytes, alpha: float) -> float:
        pairs = list(zip(split, split[1:]))[:eval_tokens]
        return -sum(math.log2((counts[a][b] + alpha) / (totals[a] + 256 * alpha)) for a, b in pairs) / len(pairs)

    alpha = min((0.001, 0.01, 0.1, 1.0), key=lambda a: bpb(val, a))
    return {"val_bpb": round(bpb(val, alpha), 6), "test_bpb": round(bpb(test, alpha), 6), "alpha": alpha,
            "model": "byte bigram, train-split counts, add-alpha smoothing (alpha chosen on validation)"}


def measure_table(out: Path, corpus: Path, *, tiers: list[str] | None = None, jobs: int = 1, threads: int = 1,
                  limit: int | None = None, progress=print, command: str | None = None) -> dict:
    """Train every (tier, configuration, seed) not yet in `out` and write the table as it goes."""
    spec = load_config("bench_grid")
    unknown = sorted(set(tiers or []) - set(spec["tiers"]))
    if unknown:
        raise ValueError(f"no tier {', '.join(unknown)} in configs/bench_grid.toml (it has {', '.join(spec['tiers'])})")
    target = target_dir("tinygpt")
    base_source = (target / "train.py").read_text()
    table = json.loads(out.read_text()) if out.exists() else {}
    if table and table.get("format") != FORMAT:
        raise ValueError(f"{out} is a format-{table.get('format', 1)} table; measure a new one with --out NEW.json")
    table.update({"format": FORMAT, "target": "tinygpt", "corpus_sha256": file_sha256(corpus), "device": "cpu",
                  "threads_per_run": threads, "seeds": spec["seeds"], "grid": spec["grid"]})
    if "reference" not in table:
        table["reference"] = bigram_reference(corpus)
    lock = threading.Lock()
    todo = []
    started = time.monotonic()
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count()}
    for name in tiers or list(spec["tiers"]):
        tier_spec = spec["tiers"][name]
        t = table.setdefault("tiers", {}).setdefault(name, {})
        t.update({"budget_flops": int(tier_spec["budget_flops"]), "base": tier_spec["base"],
                  "measured_as": tier_spec["measured_as"]})
        rows = {r["state"]: r for r in t.get("rows", [])}
        t["rows"] = list(rows.values())
        # Each bench-table run that measured rows is listed with its machine: a grown grid is
        # measured where it is run, and the table must say which rows came from where.
        session = {"machine": machine, "command": command or "swarm-node bench-table " + " ".join(sys.argv[2:]),
                   "date": datetime.date.today().isoformat(), "runs": 0, "seconds": 0.0, "states": []}
        mine = [(name, t, rows, session, c, seed) for c in grid_configs(spec["grid"])[:limit] for seed in spec["seeds"]
                if str(seed) not in rows.get(state_hash(config_source(base_source, t["base"], c)), {}).get("seeds", {})]
        if mine:
            t.setdefault("sessions", []).append(session)
        todo += mine
    done = 0

    def one(item):
        nonlocal done
        name, t, rows, session, config, seed = item
        source = config_source(base_source, t["base"], config)
        values = train_once(target, source, seed=seed, budget_flops=t["budget_flops"], corpus=corpus, threads=threads)
        with lock:
            row = rows.setdefault(state_hash(source), {"state": state_hash(source), "config": config, "seeds": {}})
            row["seeds"][str(seed)] = values
            done += 1
            session["runs"] += 1
            session["seconds"] = round(time.monotonic() - started, 1)
            if row["state"] not in session["states"]:
                session["states"].append(row["state"])
            t["rows"] = list(rows.values())
            t["measured_seconds"] = round(sum(s["seconds"] for s in t["sessions"]), 1)
            table["date"] = datetime.date.today().isoformat()
            _write(out, table)
            progress(f"[{done}/{len(todo)}] {name} {config} seed {seed}: val_bpb {values['val_bpb']:.4f} "
                     f"({values['num_steps']} steps, {values['training_seconds']:.1f} s)")

    _write(out, table)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))
    _write(out, table)
    return table


def _write(out: Path, table: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1))
    tmp.replace(out)


def load_table(path: Path | None = None) -> dict:
    path = path or target_dir("tinygpt") / DEFAULT_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"no measured table at {path}: run `swarm-node bench-table` first")
    table = json.loads(path.read_text())
    if table.get("format") != FORMAT:
        raise ValueError(f"{path} is a format-{table.get('format', 1)} table (one table for every tier); this "
                         f"version reads format {FORMAT} (one per tier): measure it with `swarm-node bench-table`")
    return table
