"""The measured table behind the replay: real trainings of the tinygpt target over a grid.

`swarm-node bench-table` trains every grid configuration with each seed for a fixed number of
steps (not seconds: a row must be re-trainable elsewhere) and writes a JSON table. The replay's
oracle answers an experiment with one seed's measured values, as tabular HPO benchmarks
(NAS-Bench-201, HPOBench) do. Nothing in the table is invented: each value is a train.py run.
"""
from __future__ import annotations

import datetime
import itertools
import json
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
from ..research.workspace import state_hash

DEFAULT_TABLE = "table.json"  # beside the target's train.py


def grid_configs(grid: dict) -> list[dict]:
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def config_source(base_source: str, base: dict, config: dict) -> str:
    return write_block(base_source, {**base, **config})


def train_once(target: Path, source: str, *, seed: int, steps: int, corpus: Path, threads: int) -> dict:
    """One real train.py run in a scratch folder; returns its summary values."""
    with tempfile.TemporaryDirectory(prefix="swarm-table-") as tmp:
        (Path(tmp) / "prepare.py").write_bytes((target / "prepare.py").read_bytes())
        (Path(tmp) / "train.py").write_text(source)
        env = {"PATH": os.defpath, "HOME": tmp, "LANG": "C.UTF-8", "SWARM_SEED": str(seed),
               "SWARM_MAX_STEPS": str(steps), "SWARM_TIME_BUDGET": "100000", "SWARM_DATA": str(corpus),
               "SWARM_DEVICE": "cpu", "SWARM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
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


def measure_table(out: Path, corpus: Path, *, jobs: int = 1, threads: int = 1, limit: int | None = None,
                  progress=print, command: str | None = None) -> dict:
    """Train every grid row (resuming from `out` if it exists) and write the table as it goes."""
    spec = load_config("bench_grid")
    target = target_dir("tinygpt")
    base_source = (target / "train.py").read_text()
    configs = grid_configs(spec["grid"])[:limit]
    table = json.loads(out.read_text()) if out.exists() else {}
    rows = {r["state"]: r for r in table.get("rows", [])}
    table.update({
        "target": "tinygpt", "steps": spec["steps"], "seeds": spec["seeds"], "base": spec["base"],
        "grid": spec["grid"], "corpus_sha256": _sha256(corpus), "device": "cpu", "threads_per_run": threads,
    })
    lock = threading.Lock()
    todo = [(c, seed) for c in configs for seed in spec["seeds"]
            if str(seed) not in rows.get(state_hash(config_source(base_source, spec["base"], c)), {}).get("seeds", {})]
    started, done = time.monotonic(), 0
    # Each bench-table run that measured rows is listed with its machine: a grown grid is measured
    # where it is run, and the table must say which rows came from where.
    sessions = table.setdefault("sessions", [])
    session = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpus": os.cpu_count()},
               "command": command or "swarm-node bench-table " + " ".join(sys.argv[2:]),
               "date": datetime.date.today().isoformat(), "runs": 0, "seconds": 0.0, "states": []}
    if todo:
        sessions.append(session)

    def one(item):
        nonlocal done
        config, seed = item
        source = config_source(base_source, spec["base"], config)
        values = train_once(target, source, seed=seed, steps=spec["steps"], corpus=corpus, threads=threads)
        with lock:
            row = rows.setdefault(state_hash(source), {"state": state_hash(source), "config": config, "seeds": {}})
            row["seeds"][str(seed)] = values
            done += 1
            session["runs"] += 1
            session["seconds"] = round(time.monotonic() - started, 1)
            if row["state"] not in session["states"]:
                session["states"].append(row["state"])
            table["rows"] = list(rows.values())
            table["measured_seconds"] = round(sum(s["seconds"] for s in sessions), 1)
            table["date"] = datetime.date.today().isoformat()
            _write(out, table)
            progress(f"[{done}/{len(todo)}] {config} seed {seed}: val_bpb {values['val_bpb']:.4f} "
                     f"({values['training_seconds']:.1f} s)")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))
    _write(out, table)
    return table


def _sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(out: Path, table: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1))
    tmp.replace(out)


def load_table(path: Path | None = None) -> dict:
    path = path or target_dir("tinygpt") / DEFAULT_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"no measured table at {path}: run `swarm-node bench-table` first")
    return json.loads(path.read_text())
