"""Decision quality: how often does the node's keep rule keep a useless candidate, and how often a
real one, at measured noise?

Source (printed): real runs at the cpu tier's compute budget (configs/tiers.toml), where a node
decides, cached in --runs (made by --measure N: the tier's baseline and single changes of it, CHANGES,
seeds 0..N-1, run as the runner does; resumable; machine, torch, budget and date recorded); else
the cpu tier's table in experiments/tinygpt/table.json (--tier for another). From it: the per-seed SD of a paired difference
(one-change pairs, each centred on its own mean, pooled), the across-seed spread of one state and the
effect of LEARNING_RATE 0.003 -> 0.006 (head - candidate, + = better; runs: also every change's, with
SE and t). Then simulated nodes run the rule itself (swarm_node.research.decision: decide on K seeds,
confirm on C fresh ones, pooled noise grown after each decision) on null (effect 0) and real (the LR
effect) candidates. Printed: false-keep rate (goal <= 5 %) and hit rate (goal >= 80 %), with counts.

    python benchmarks/decision_quality.py [--source table|runs] [--noise SD] [--effect D] [--t 2] [--k 3]
    python benchmarks/decision_quality.py --data ../shared/data/tinyshakespeare.txt --measure 8 --jobs 2
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarm_node.assets import load_config  # noqa: E402
from swarm_node.research.decision import PairedNoise, Rule, confirm, decide  # noqa: E402
from swarm_node.research.hparams import write_block  # noqa: E402
from swarm_node.research.target import tier_baseline  # noqa: E402
from swarm_node.research.summary import parse_summary  # noqa: E402

TARGET = REPO / "experiments" / "tinygpt"
TABLE = TARGET / "table.json"
RUNS = REPO / "benchmarks" / "results" / "decision_runs_cpu.json"
BASE, LR = "baseline", "LEARNING_RATE=0.006"  # the runs file's state names: the baseline, the real effect
CHANGES = [{}, {"LEARNING_RATE": 0.006}, {"INIT": "kaiming"}, {"NORM": "rmsnorm"}, {"TIE_EMBEDDINGS": True},
           {"ACTIVATION": "silu"}]
NAMES = [",".join(f"{k}={v}" for k, v in c.items()) or BASE for c in CHANGES]


def train(source: str, seed: int, budget: int, data: Path) -> dict:
    """One run as the runner does it: train.py in a fresh copy of the target, one thread, on the CPU."""
    with tempfile.TemporaryDirectory(prefix="decision-") as tmp:
        work = Path(tmp)
        (work / "train.py").write_text(source)
        shutil.copyfile(TARGET / "prepare.py", work / "prepare.py")
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1",
               "SWARM_SEED": str(seed), "SWARM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "SWARM_BUDGET_FLOPS": str(budget), "SWARM_DATA": str(data), "SWARM_DEVICE": "cpu"}
        env.update({k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ})
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "train.py"], cwd=work, env=env, capture_output=True, text=True,
                              timeout=1800)
    s = parse_summary(proc.stdout) if proc.returncode == 0 else None
    if s is None:
        raise RuntimeError(f"train.py failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"val_bpb": s["val_bpb"], "test_bpb": s.get("test_bpb"), "steps": s["num_steps"],
            "wall_s": round(time.monotonic() - start, 1)}


def measure_runs(path: Path, seeds: int, budget: int, data: Path, jobs: int) -> None:
    """Every (state, seed) not yet in the runs file, `jobs` at once; the file is rewritten after each run."""
    doc = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    if doc.get("budget_flops", budget) != budget:
        raise SystemExit(f"{path} holds runs at {doc['budget_flops']:.3g} FLOPs, not {budget:.3g}: pass another --runs")
    doc.update(budget_flops=budget, machine=platform.node(), platform=platform.platform(), cpus=os.cpu_count(),
               torch=importlib.metadata.version("torch"), date=datetime.date.today().isoformat(), data=data.name)
    base = tier_baseline((TARGET / "train.py").read_text(), load_config("tiers")["tiers"]["cpu"]["baseline"])
    todo = [(name, write_block(base, c), seed) for seed in range(seeds) for name, c in zip(NAMES, CHANGES)]
    todo = [t for t in todo if str(t[2]) not in doc["runs"].get(t[0], {})]
    path.parent.mkdir(parents=True, exist_ok=True)
    lock, done, began = threading.Lock(), [0], time.monotonic()
    print(f"measuring {len(todo)} runs at {budget:.3g} FLOPs, {jobs} at once, into {path}", flush=True)

    def one(item):
        name, source, seed = item
        r = train(source, seed, budget, data)
        with lock:
            doc["runs"].setdefault(name, {})[str(seed)] = r
            path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            done[0] += 1
            print(f"[{done[0]}/{len(todo)} {time.monotonic() - began:.0f} s] {name:22s} seed {seed}: val_bpb "
                  f"{r['val_bpb']:.4f} {r['steps']} steps {r['wall_s']:.0f} s", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))


def pooled(groups) -> tuple[float, int]:
    """The pooled SD of groups of values, each group around its own mean, and its degrees of freedom."""
    ss, df = 0.0, 0
    for g in (list(g) for g in groups):
        if len(g) >= 2:
            m = statistics.fmean(g)
            ss, df = ss + sum((x - m) ** 2 for x in g), df + len(g) - 1
    return (math.sqrt(ss / df) if df else math.nan), df


def from_runs(doc: dict, metric: str) -> dict:
    """Noise, spread and effects from runs at one budget: paired differences baseline - change."""
    order = sorted(doc["runs"], key=lambda n: NAMES.index(n) if n in NAMES else len(NAMES))
    runs = {n: {int(s): v[metric] for s, v in doc["runs"][n].items()} for n in order}
    diffs = {n: [runs[BASE][s] - v[s] for s in sorted(set(runs.get(BASE, {})) & set(v))]
             for n, v in runs.items() if n != BASE}
    diffs = {n: d for n, d in diffs.items() if len(d) >= 2}
    if LR not in diffs:
        raise SystemExit(f"the runs file needs >= 2 seeds of {BASE} and {LR}")
    effects = {}
    for name, d in diffs.items():
        m, sd = statistics.fmean(d), statistics.stdev(d)
        se = sd / math.sqrt(len(d))
        effects[name] = {"mean": m, "sd": sd, "se": se, "t": m / se if se else math.inf, "n": len(d)}
    noise, noise_df = pooled(diffs.values())
    return {"spread": pooled(v.values() for v in runs.values())[0], "noise": noise, "noise_df": noise_df,
            "effects": effects, "effect": effects[LR]["mean"], "seeds": sorted({s for v in runs.values() for s in v})}


def measure(table: dict, tier: str, metric: str) -> dict:
    rows, names = table["tiers"][tier]["rows"], list(table["grid"])
    vals = [{s: v[metric] for s, v in r["seeds"].items()} for r in rows]
    spread = pooled(v.values() for v in vals)[0]  # across-seed spread of one state
    pairs = {n: [] for n in names}  # per-seed noise of a paired difference, by the changed name
    for i, a in enumerate(rows):
        for j in range(i + 1, len(rows)):
            changed = [n for n in names if a["config"][n] != rows[j]["config"][n]]
            if len(changed) == 1:
                pairs[changed[0]].append([vals[i][s] - vals[j][s] for s in sorted(set(vals[i]) & set(vals[j]))])
    noise, noise_df = pooled(d for ds in pairs.values() for d in ds)
    by_name = {n: sd for n, ds in pairs.items() for sd, df in [pooled(ds)] if df}

    def key(config: dict) -> tuple:
        return tuple((n, config[n]) for n in names if n != "LEARNING_RATE")
    by_lr = {(r["config"]["LEARNING_RATE"], key(r["config"])): v for r, v in zip(rows, vals)}
    effects = {}
    for (lr, ctx), head in by_lr.items():
        cand = by_lr.get((0.006, ctx))
        if lr == 0.003 and cand:
            effects[ctx] = statistics.fmean(head[s] - cand[s] for s in sorted(set(head) & set(cand)))
    base = tuple((n, table["grid"][n][0]) for n in names if n != "LEARNING_RATE")
    seeds = sorted({s for v in vals for s in v}, key=int)
    return {"spread": spread, "noise": noise, "noise_df": noise_df, "by_name": by_name,
            "effect_base": effects.get(base), "effect_all": statistics.fmean(effects.values()),
            "contexts": len(effects), "seeds": seeds}


def simulate(*, noise: float, effect: float, spread: float, rule: Rule, k: int, c: int, nodes: int,
             experiments: int, real_fraction: float, seed: int) -> dict:
    rng = random.Random(seed)
    counts = {"null": [0, 0, 0], "real": [0, 0, 0]}  # trials, passed the decision, kept
    dseeds, fseeds = range(k), range(k, k + c)
    for _ in range(nodes):
        pooled = PairedNoise.from_baseline([rng.gauss(4.0, spread) for _ in range(k + c)])
        for _ in range(experiments):
            kind = "real" if rng.random() < real_fraction else "null"
            mu = effect if kind == "real" else 0.0
            diffs = [rng.gauss(mu, noise) for _ in range(k + c)]
            head = {s: 0.0 for s in range(k + c)}
            cand = {s: -d for s, d in enumerate(diffs)}  # head - candidate = d
            first = decide(head, cand, dseeds, pooled, rule)
            kept = first.passed and confirm(head, cand, fseeds, pooled, rule).passed
            n = counts[kind]
            n[0], n[1], n[2] = n[0] + 1, n[1] + first.passed, n[2] + kept
            pooled.add(diffs if first.passed else diffs[:k])  # what was measured, after the decision
    return counts


def rate(n: list[int], i: int) -> str:
    return f"{100 * n[i] / n[0]:.1f} % of {n[0]}" if n[0] else "n/a of 0"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--metric", default="val_bpb")
    p.add_argument("--noise", type=float, help="per-seed SD of a paired difference (default: measured)")
    p.add_argument("--effect", type=float, help="the real candidates' effect (default: measured LR effect, base)")
    p.add_argument("--spread", type=float, help="across-seed SD of one state (default: measured)")
    p.add_argument("--t", type=float, default=Rule().t)
    p.add_argument("--min-delta", type=float, default=Rule().min_delta)
    p.add_argument("--k", type=int, default=3, help="decision seeds")
    p.add_argument("--c", type=int, default=2, help="fresh confirmation seeds")
    p.add_argument("--nodes", type=int, default=400)
    p.add_argument("--experiments", type=int, default=30, help="per simulated node")
    p.add_argument("--real-fraction", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", choices=("auto", "table", "runs"), default="auto",
                   help="where noise and effect come from (auto: the runs file if it exists, else the table)")
    p.add_argument("--tier", default="cpu", help="with --source table: the tier's table (default cpu)")
    p.add_argument("--runs", type=Path, default=RUNS, help="cached runs at the tier budget (JSON)")
    p.add_argument("--measure", type=int, metavar="N", help="first train the missing runs, seeds 0..N-1")
    p.add_argument("--jobs", type=int, default=1, help="runs at once while measuring")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
    cpu = load_config("tiers")["tiers"]["cpu"]
    p.add_argument("--budget-flops", type=float, default=float(cpu["budget_flops"]),
                   help=f"training FLOPs per run (default the cpu tier's, {cpu['budget_flops']:.3g})")
    a = p.parse_args(argv)
    if a.measure:
        if not a.data.is_file():
            raise SystemExit(f"no corpus at {a.data}: pass --data FILE")
        measure_runs(a.runs, a.measure, int(a.budget_flops), a.data.resolve(), a.jobs)
    if a.source == "runs" or (a.source == "auto" and a.runs.is_file()):
        doc = json.loads(a.runs.read_text())
        m = from_runs(doc, a.metric)
        print(f"source: measured runs at {doc['budget_flops']:.3g} FLOPs (cpu tier budget {cpu['budget_flops']:.3g}) "
              f"({a.runs.name}: {doc['machine']}, {doc['platform']}, torch {doc['torch']}, {doc['date']}), "
              f"seeds {m['seeds']}, {a.metric}")
        print(f"  across-seed spread of one state: {m['spread']:.4f}")
        print(f"  per-seed noise of a paired difference: {m['noise']:.4f} ({m['noise_df']} df, baseline - change, "
              f"centred per change)")
        print("  paired effects, baseline - change (+ means the change is better):")
        for name, e in m["effects"].items():
            print(f"    {name:22s} {e['mean']:+.4f} SE {e['se']:.4f} t {e['t']:+.1f} (sd {e['sd']:.4f}, "
                  f"{e['n']} seeds)")
        effect = m["effect"]
        print(f"  real candidates' effect: {LR}'s, {effect:+.4f}")
    else:
        table = json.loads(a.table.read_text())
        if table.get("format") != 2 or a.tier not in table["tiers"]:
            raise SystemExit(f"{a.table} has no per-tier table {a.tier!r}: measure it with `swarm-node bench-table`")
        m = measure(table, a.tier, a.metric)
        print(f"source: table {a.table.name}, tier {a.tier} at {table['tiers'][a.tier]['budget_flops']:.3g} FLOPs, "
              f"seeds {m['seeds']}, {a.metric}")
        print(f"  across-seed spread of one state: {m['spread']:.4f}")
        print(f"  per-seed noise of a paired difference: {m['noise']:.4f} ({m['noise_df']} df, one-change pairs)")
        print("    by the changed name: " + ", ".join(f"{n} {v:.4f}" for n, v in m["by_name"].items()))
        base = m["effect_base"] if m["effect_base"] is not None else math.nan
        print(f"  LEARNING_RATE 0.003 -> 0.006 effect: base {base:+.4f}, mean over {m['contexts']} contexts "
              f"{m['effect_all']:+.4f} (head - candidate: + means 0.006 is better)")
        effect = m["effect_all"] if math.isnan(base) else base
    noise = a.noise if a.noise is not None else m["noise"]
    effect = abs(a.effect if a.effect is not None else effect)  # a negative effect: the reverse change is real
    spread = a.spread if a.spread is not None else m["spread"]
    rule = Rule(min_delta=a.min_delta, t=a.t)
    print(f"simulated: noise {noise:.4f}, effect {effect:+.4f}, spread {spread:.4f}, min_delta {rule.min_delta}, "
          f"t {rule.t}, K={a.k}, C={a.c}, {a.nodes} nodes x {a.experiments} experiments, "
          f"real fraction {a.real_fraction}, seed {a.seed}")
    n = simulate(noise=noise, effect=effect, spread=spread, rule=rule, k=a.k, c=a.c, nodes=a.nodes,
                 experiments=a.experiments, real_fraction=a.real_fraction, seed=a.seed)
    fk, hit = n["null"][2] / max(1, n["null"][0]), n["real"][2] / max(1, n["real"][0])
    print(f"passed the decision: null {rate(n['null'], 1)}, real {rate(n['real'], 1)}")
    print(f"false-keep rate: {rate(n['null'], 2)} null candidates (goal <= 5 %): {'met' if fk <= 0.05 else 'NOT met'}")
    print(f"hit rate: {rate(n['real'], 2)} real candidates (goal >= 80 %): {'met' if hit >= 0.80 else 'NOT met'}")


if __name__ == "__main__":
    main()
