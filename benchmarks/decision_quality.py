"""Decision quality: how often does the node's keep rule keep a useless candidate, and how often a
real one, at the noise measured in the tinygpt table?

From experiments/tinygpt/table.json (real trainings, several seeds per grid row): the SD of a paired
difference's per-seed noise (rows differing in one hyperparameter, each pair's differences around
their own mean, pooled), the across-seed spread of one state (pooled over rows) and the effect of
LEARNING_RATE 0.003 -> 0.006 (head - candidate, positive = better; in the base context and averaged
over all contexts). Then simulated nodes run the rule itself (swarm_node.research.decision: decide
on K seeds, confirm on C fresh ones, pooled noise grown after each decision) on candidates that are
null (effect 0) or real (the LR effect). Printed: false-keep rate over null candidates (goal <= 5 %)
and hit rate over real ones (goal >= 80 %), with their trial counts.

    python benchmarks/decision_quality.py [--table PATH] [--noise SD] [--effect D] [--t 2] [--k 3]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarm_node.research.decision import PairedNoise, Rule, confirm, decide  # noqa: E402

TABLE = REPO / "experiments" / "tinygpt" / "table.json"


def measure(table: dict, metric: str) -> dict:
    rows, names = table["rows"], list(table["grid"])
    vals = [{s: v[metric] for s, v in r["seeds"].items()} for r in rows]
    ss = df = 0.0
    for v in vals:  # across-seed spread of one state
        if len(v) >= 2:
            m = statistics.fmean(v.values())
            ss, df = ss + sum((x - m) ** 2 for x in v.values()), df + len(v) - 1
    spread = math.sqrt(ss / df)
    pooled = {n: [0.0, 0] for n in names}  # per-seed noise of a paired difference, by the changed name
    for i, a in enumerate(rows):
        for j in range(i + 1, len(rows)):
            changed = [n for n in names if a["config"][n] != rows[j]["config"][n]]
            d = [vals[i][s] - vals[j][s] for s in sorted(set(vals[i]) & set(vals[j]))]
            if len(changed) == 1 and len(d) >= 2:
                m = statistics.fmean(d)
                pooled[changed[0]][0] += sum((x - m) ** 2 for x in d)
                pooled[changed[0]][1] += len(d) - 1
    ss, df = sum(v[0] for v in pooled.values()), sum(v[1] for v in pooled.values())
    noise, noise_df = math.sqrt(ss / df), df
    by_name = {n: math.sqrt(v[0] / v[1]) for n, v in pooled.items() if v[1]}

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
    a = p.parse_args(argv)
    m = measure(json.loads(a.table.read_text()), a.metric)
    print(f"table {a.table.name}: seeds {m['seeds']}, {a.metric}")
    print(f"  across-seed spread of one state: {m['spread']:.4f}")
    print(f"  per-seed noise of a paired difference: {m['noise']:.4f} ({m['noise_df']} df, one-change pairs)")
    print("    by the changed name: " + ", ".join(f"{n} {v:.4f}" for n, v in m["by_name"].items()))
    base = m["effect_base"] if m["effect_base"] is not None else math.nan
    print(f"  LEARNING_RATE 0.003 -> 0.006 effect: base {base:+.4f}, "
          f"mean over {m['contexts']} contexts {m['effect_all']:+.4f} (head - candidate: + means 0.006 is better)")
    noise = a.noise if a.noise is not None else m["noise"]
    effect = a.effect if a.effect is not None else m["effect_all"] if math.isnan(base) else base
    effect = abs(effect)  # a negative effect is the reverse change's real improvement
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
