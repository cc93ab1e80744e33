"""Control tables: the same night on a table whose answer is known in advance.

`null_table`: every configuration answers from the baseline's distribution (the baseline's run
of that seed plus noise of the size the real table's paired differences show), so no change
helps and every keep on it is a false keep. `plant`: a null table where the rows that set some hyperparameters
answer some paired SDs lower: a swarm that works must find that change and spread it.
The noise is drawn from the row's state and seed, so a control table is the same every time.
"""
from __future__ import annotations

import copy
import hashlib
import math
import random
import statistics


def paired_sd(rows: list[dict], base_row: dict) -> float:
    """The pooled SD of paired differences (row - baseline, same seed) around each row's own mean."""
    sum_sq, df = 0.0, 0
    for row in rows:
        seeds = sorted(set(row["seeds"]) & set(base_row["seeds"]))
        if row is base_row or len(seeds) < 2:
            continue
        diffs = [row["seeds"][s]["val_bpb"] - base_row["seeds"][s]["val_bpb"] for s in seeds]
        mean = statistics.fmean(diffs)
        sum_sq += sum((d - mean) ** 2 for d in diffs)
        df += len(diffs) - 1
    return math.sqrt(sum_sq / df) if df else 0.0


def base_row(table: dict, tier: str) -> dict:
    """The row that sets every grid name to its first value: train.py's own values, the baseline."""
    first = {name: values[0] for name, values in table["grid"].items()}
    return next(r for r in table["tiers"][tier]["rows"] if r["config"] == first)


def null_table(table: dict) -> dict:
    """Every row, the baseline's too, answers seed s with the baseline's seed-s value plus its own
    noise of SD paired_sd / sqrt(2): any two rows then differ, paired, by noise of the real table's
    size and by nothing else."""
    null = copy.deepcopy(table)
    null["control"] = "null: every row answers from the baseline's distribution; every keep is false"
    for tier, t in null["tiers"].items():
        base = base_row(table, tier)
        sd = paired_sd(table["tiers"][tier]["rows"], base) / math.sqrt(2)
        t["null_row_sd"] = round(sd, 6)
        for row in t["rows"]:
            for seed, values in row["seeds"].items():
                noise = random.Random(hashlib.sha256(f"{row['state']}/{seed}".encode()).digest()).gauss(0.0, sd)
                values.update(val_bpb=round(base["seeds"][seed]["val_bpb"] + noise, 6),
                              test_bpb=round(base["seeds"][seed]["test_bpb"] + noise, 6),
                              training_seconds=base["seeds"][seed]["training_seconds"])
    return null


def plant(table: dict, changes: dict, sds: float) -> dict:
    """A null table on which the rows that set every name in `changes` are better by `sds` of the
    tier's paired SD (the effect a rule must find is then the same size, in noise, on every tier)."""
    planted = null_table(table)
    planted["control"] = f"planted: {changes} is {sds} paired SDs better on every tier, nothing else helps"
    for t in planted["tiers"].values():
        effect = sds * t["null_row_sd"] * math.sqrt(2)
        t["planted_effect"] = round(effect, 6)
        for row in t["rows"]:
            if all(row["config"].get(k) == v for k, v in changes.items()):
                for values in row["seeds"].values():
                    values["val_bpb"] = round(values["val_bpb"] - effect, 6)
                    values["test_bpb"] = round(values["test_bpb"] - effect, 6)
    return planted
