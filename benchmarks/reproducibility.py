"""Reproducibility: does the same (train.py, seed, compute budget, corpus) give the same val_bpb
and test_bpb on this machine whatever the thread count and the load?

Runs experiments/tinygpt/train.py as the runner does (a subprocess in a copy of the target, settings
through SWARM_* variables) with the cpu tier's compute budget (SWARM_BUDGET_FLOPS, configs/tiers.toml),
for STATES train.py states (the cpu tier's baseline and single hyperparameter changes of it) x
SEEDS seeds x thread counts {1, 2} x {idle, beside a CPU hog} (one busy-loop process per core,
started and ended by PID). Printed: for each (state, seed) the largest |difference| in val_bpb and
in test_bpb across the four conditions, the overall largest of each (goal: 0 on CPU), and the
spread of wall times and steps per second (what a time budget would have turned into different
results; with a compute budget it only changes how long a run takes).

    python benchmarks/reproducibility.py --data ../shared/data/tinyshakespeare.txt [--budget 4.5e11]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarm_node.assets import load_config  # noqa: E402
from swarm_node.research.hparams import write_block  # noqa: E402
from swarm_node.research.target import tier_baseline  # noqa: E402
from swarm_node.research.summary import parse_summary  # noqa: E402
from swarm_node.testing import cpu_hogs  # noqa: E402

TARGET = REPO / "experiments" / "tinygpt"
CHANGES = [{}, {"LEARNING_RATE": 0.006}, {"INIT": "kaiming"}, {"NORM": "rmsnorm"}, {"TIE_EMBEDDINGS": True}]


def states() -> list[tuple[str, str]]:
    base = tier_baseline((TARGET / "train.py").read_text(), load_config("tiers")["tiers"]["cpu"]["baseline"])
    return [(", ".join(f"{k}={v}" for k, v in c.items()) or "baseline", write_block(base, c)) for c in CHANGES]


def run(workdir: Path, source: str, seed: int, threads: int, budget_flops: int, data: Path) -> dict:
    (workdir / "train.py").write_text(source)
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(workdir), "PYTHONDONTWRITEBYTECODE": "1",
           "SWARM_SEED": str(seed), "SWARM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "SWARM_BUDGET_FLOPS": str(budget_flops), "SWARM_DATA": str(data), "SWARM_DEVICE": "cpu"}
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as the runner passes them
        if key in os.environ:
            env[key] = os.environ[key]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "train.py"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=1800)
    wall = time.monotonic() - start
    summary = parse_summary(proc.stdout) if proc.returncode == 0 else None
    if summary is None:
        raise SystemExit(f"train.py failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"val": summary["val_bpb"], "test": summary.get("test_bpb"), "wall": wall, "steps": summary["num_steps"],
            "flops": summary.get("train_flops"),
            "steps_per_s": summary["num_steps"] / max(summary["training_seconds"], 1e-9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
    cpu = load_config("tiers")["tiers"]["cpu"]
    parser.add_argument("--budget", type=float, default=float(cpu["budget_flops"]),
                        help=f"training FLOPs per run (default the cpu tier's, {cpu['budget_flops']:.3g})")
    parser.add_argument("--states", type=int, default=len(CHANGES), help=f"states, at most {len(CHANGES)}")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no corpus at {args.data}: pass --data FILE")
    picked = states()[:args.states]
    results: dict[tuple, dict] = {}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repro-") as tmp:
        workdir = Path(tmp)
        for name in ("prepare.py",):
            shutil.copyfile(TARGET / name, workdir / name)
        for loaded in (False, True):
            with cpu_hogs((os.cpu_count() or 1) if loaded else 0):  # busy loops, killed by PID after the block
                for threads in (1, 2):
                    for label, source in picked:
                        for seed in range(args.seeds):
                            r = run(workdir, source, seed, threads, int(args.budget), args.data.resolve())
                            results[(label, seed, threads, loaded)] = r
                            print(f"{label:22s} seed {seed} threads {threads} {'hog ' if loaded else 'idle'}: "
                                  f"val_bpb {r['val']:.6f} test_bpb {r['test']:.6f} {r['steps']} steps "
                                  f"wall {r['wall']:.1f} s ({r['steps_per_s']:.1f} steps/s)", flush=True)
    worst_val = worst_test = 0.0
    print(f"\n{len(picked)} states x {args.seeds} seeds x threads {{1, 2}} x {{idle, hog}}, "
          f"budget {args.budget:.3g} FLOPs each:")
    for label, _ in picked:
        for seed in range(args.seeds):
            runs = [v for k, v in results.items() if k[0] == label and k[1] == seed]
            vals, tests = [r["val"] for r in runs], [r["test"] for r in runs]
            val_diff, test_diff = max(vals) - min(vals), max(tests) - min(tests)
            worst_val, worst_test = max(worst_val, val_diff), max(worst_test, test_diff)
            print(f"  {label:22s} seed {seed}: {runs[0]['steps']} steps, largest |difference| val_bpb {val_diff:.2e}, "
                  f"test_bpb {test_diff:.2e} over {len(runs)} conditions")
    walls = [r["wall"] for r in results.values()]
    rates = [r["steps_per_s"] for r in results.values()]
    worst = max(worst_val, worst_test)
    print(f"largest |difference|: val_bpb {worst_val:.2e}, test_bpb {worst_test:.2e} (goal: 0 on CPU): "
          f"{'met' if worst == 0 else 'NOT met'}; wall time per run {min(walls):.1f}-{max(walls):.1f} s "
          f"({max(walls) / min(walls):.1f}x)")
    print(f"training speed {min(rates):.1f}-{max(rates):.1f} steps/s ({max(rates) / min(rates):.1f}x): what a time "
          f"budget would have turned into different results; the compute budget only made runs longer")
    print(f"took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
