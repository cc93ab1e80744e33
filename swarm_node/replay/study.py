"""`swarm-node replay --seeds 1-10`: the night once per seed, and what holds across seeds.

One seed is an anecdote: which agent proposes what first, and so what the swarm keeps, changes
with the seed. Each seed's night (and, with --compare, its isolated twin and its null-table
control) is written to seed-N/; REPORT.md here gives distributions over the seeds, gossip versus
isolated as paired differences with 95 % intervals, and the comparison with the original night.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..research.decision import t_quantile
from .analysis import technique_effects, verdict
from .engine import replay_seed
from .report import describe_table

# The March 8-9 night as reported (Hyperspace's account of it, as the project's brief quotes it).
NIGHT = {"agents": 35, "experiments": 333, "kaiming": "cut the loss by 21 %",
         "rmsnorm": "rediscovered", "tied": "rediscovered", "spread": "through GossipSub within seconds"}


def parse_seeds(text: str) -> list[int]:
    """'1-10' -> 1..10; '3,5,9' and '7' also; raises ValueError with the accepted forms."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                first, last = (int(x) for x in part.strip().split("-", 1))
                if last < first:
                    raise ValueError
                seeds += range(first, last + 1)
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give a range like 1-10, a list like 1,4,7, or one seed") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--seeds {text!r}: each seed once")
    return seeds


async def run_study(scenario, table: dict, seeds: list[int], out: Path, *, compare: bool, progress=print) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    nights = []
    for i, seed in enumerate(seeds):
        progress(f"seed {seed} ({i + 1} of {len(seeds)})")
        nights.append(await replay_seed(scenario, table, seed=seed, out=out / f"seed-{seed}", compare=compare,
                                        progress=progress))
        (out / "study.json").write_text(json.dumps({"seeds": seeds[:i + 1], "nights": nights}, indent=1))
    study = aggregate(nights, table)
    (out / "study.json").write_text(json.dumps({"seeds": seeds, "nights": nights, "aggregate": study}, indent=1))
    write_study_report(out, study, table, scenario, seeds)
    return study


def interval(values: list[float]) -> dict:
    """Mean with a 95 % t interval (over seeds), and the range."""
    n = len(values)
    mean = statistics.fmean(values) if values else math.nan
    half = t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half,
            "min": min(values, default=math.nan), "max": max(values, default=math.nan)}


def aggregate(nights: list[dict], table: dict) -> dict:
    mains = [n["main"] for n in nights]
    tiers = sorted({t for m in mains for t in m["best_by_tier"]})
    out: dict = {"seeds": len(nights), "tiers": {}, "keeps": interval([m["keeps"] for m in mains]),
                 "false_keeps": sum(m["false_keeps"] for m in mains), "all_keeps": sum(m["keeps"] for m in mains),
                 "proposals": interval([m["proposals"] for m in mains]),
                 "runs": interval([m["experiments"] for m in mains]),
                 "wall_seconds": interval([m["wall_seconds"] for m in mains]),
                 "delivery_ms_median": interval([m["delivery_ms"]["median"] for m in mains
                                                 if m["delivery_ms"]["median"] is not None]),
                 "delivery_ms_max": max((m["delivery_ms"]["max"] or 0 for m in mains), default=None)}
    night_s = mains[0]["night_seconds"]
    for tier in tiers:
        row = {"gossip": interval([m["best_by_tier"][tier] for m in mains if tier in m["best_by_tier"]])}
        if all("isolated" in n for n in nights):
            pairs = [(n["main"]["best_by_tier"][tier], n["isolated"]["best_by_tier"][tier]) for n in nights]
            row["isolated"] = interval([b for _, b in pairs])
            row["gossip_minus_isolated"] = interval([a - b for a, b in pairs])
            races = [n["main"]["solo_race"][tier] for n in nights]
            row["hours_to_solo_best"] = {
                "gossip": interval([_hours(r["t_gossip"], night_s) for r in races]),
                "isolated": interval([_hours(r["t_isolated"], night_s) for r in races]),
                "gossip_minus_isolated": interval([_hours(r["t_gossip"], night_s) - _hours(r["t_isolated"], night_s)
                                                   for r in races]),
                "not_reached": {"gossip": sum(r["t_gossip"] is None for r in races),
                                "isolated": sum(r["t_isolated"] is None for r in races)}}
        out["tiers"][tier] = row
    if all("null" in n for n in nights):
        nulls = [n["null"] for n in nights]
        out["null"] = {"keeps": interval([m["keeps"] for m in nulls]), "all_keeps": sum(m["keeps"] for m in nulls),
                       "proposals": sum(m["proposals"] for m in nulls)}
    transfers: dict[tuple, dict] = {}
    for m in mains:
        for t in m["transfers"]:
            key = (t["from"], t["tier"], t["description"].split(": ", 1)[-1])
            entry = transfers.setdefault(key, {"from": key[0], "tier": key[1], "change": key[2], "tried": 0,
                                               "kept": 0, "measured": [], "truth": t["truth"]})
            entry["tried"] += 1
            entry["kept"] += t["status"] == "keep"
            if t["measured"] is not None:
                entry["measured"].append(t["measured"])
    out["transfers"] = sorted(transfers.values(), key=lambda e: -e["tried"])
    found: dict[str, int] = {}
    for m in mains:
        for name in {f["technique"] for f in m["found"]}:
            found[name] = found.get(name, 0) + 1
    out["found"] = found
    measured: dict[tuple, list] = {}  # (tier, technique) -> the swarm's own paired measurements
    for m in mains:
        for e in m["effects"]:
            measured.setdefault((e["tier"], e["technique"]), []).append(e)
    out["effects"] = [{**e, "swarm": [(x["effect"], x["se"], x["kind"]) for x in measured.get((e["tier"], e["technique"]), [])]}
                      for e in technique_effects(table)]
    return out


def _hours(t: float | None, night_seconds: float) -> float:
    """Hours to reach; a target never reached counts as the whole night (said in the report)."""
    return (night_seconds if t is None else t) / 3600


def _ci(i: dict, digits: int = 4) -> str:
    if i["n"] == 0:
        return "-"
    if i["n"] == 1 or math.isnan(i["low"]):
        return f"{i['mean']:.{digits}f}"
    return f"{i['mean']:.{digits}f} [{i['low']:.{digits}f}, {i['high']:.{digits}f}]"


def _range(i: dict, digits: int = 1) -> str:
    return f"{i['mean']:.{digits}f} (range {i['min']:.{digits}f}-{i['max']:.{digits}f})"


def write_study_report(out: Path, s: dict, table: dict, scenario, seeds: list[int]) -> None:
    seeds_text = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    lines = [f"# Replay of a {scenario.name} style night over {s['seeds']} seeds ({seeds_text})", "",
             f"Each seed's night, its report and events are in `seed-N/`. Scenario `{scenario.path.name}`: "
             f"{scenario.description}. Intervals are 95 % t intervals over the seeds; the same seed repeats the same "
             "decisions.", "", *describe_table(table), "",
             "## Per tier: final best and time to the best single agent", "",
             "Final best: the best val_bpb an agent of the tier stood on. Time to the solo best: virtual hours until "
             "the swarm's agents of the tier stood on the best state one isolated agent of that tier found all "
             "night (a swarm that never got there counts the whole night). Gossip - isolated is the paired "
             "difference per seed (negative = gossip better or sooner).", "",
             "| tier | final best, gossip | final best, isolated | gossip - isolated | hours to solo best, gossip | "
             "hours, isolated | gossip - isolated (h) | not reached (gossip / isolated) |",
             "|---|---|---|---|---|---|---|---|"]
    for tier, r in s["tiers"].items():
        if "isolated" in r:
            h = r["hours_to_solo_best"]
            lines.append(f"| {tier} | {_ci(r['gossip'])} | {_ci(r['isolated'])} | {_ci(r['gossip_minus_isolated'])} "
                         f"| {_ci(h['gossip'], 2)} | {_ci(h['isolated'], 2)} | {_ci(h['gossip_minus_isolated'], 2)} | "
                         f"{h['not_reached']['gossip']} / {h['not_reached']['isolated']} |")
        else:
            lines.append(f"| {tier} | {_ci(r['gossip'])} | - | - | - | - | - | - |")
    rate = s["false_keeps"] / s["all_keeps"] if s["all_keeps"] else 0.0
    lines += ["", "## Keeps, false keeps and the null control", "",
              f"- Keeps per night (gossip): {_range(s['keeps'])}; {s['false_keeps']} of {s['all_keeps']} "
              f"({rate:.1%}) are false on the table's evidence (not better than their parent by more than 2 SE over "
              "all its seeds)."]
    if "null" in s:
        n = s["null"]
        lines.append(f"- Null control (the same nights with gossip on a table whose every row answers from the "
                     f"baseline's distribution: every keep is false): {n['all_keeps']} keeps in {n['proposals']} "
                     f"proposals over {s['seeds']} nights ({n['all_keeps'] / max(n['proposals'], 1):.2%} of "
                     "proposals).")
    lines += ["", "## Techniques: found by the swarm, and what the table says they are worth", "",
              "Found: nights (of " + str(s["seeds"]) + ") in which the swarm credited the technique by its own "
              "paired effect (a single-change keep or an ablation). Worth: the table's paired effect of the single "
              "change from each tier's baseline.", ""]
    lines += [f"- {name}: found in {count} nights" for name, count in sorted(s["found"].items(), key=lambda x: -x[1])]
    if not s["found"]:
        lines.append("- no technique was credited in any night")
    lines += ["", "The swarm's own measurements: each keep of a single change, and each ablation of a combined keep, "
              "paired over the seeds it ran (any context, not only the baseline), over all nights: how many, and their "
              "mean.", "",
              "| tier | change | on the table: paired improvement (bpb) | SE | relative | verdict | measured by the swarm |",
              "|---|---|---|---|---|---|---|"]
    for e in s["effects"]:
        swarm = (f"{len(e['swarm'])}x, mean {statistics.fmean(x[0] for x in e['swarm']):+.4f} "
                 f"({', '.join(sorted({x[2] for x in e['swarm']}))})") if e["swarm"] else "never measured"
        lines.append(f"| {e['tier']} | {e['technique']} | {e['improvement']:+.4f} | {e['se']:.4f} | "
                     f"{e['relative']:+.2%} | {verdict(e)} | {swarm} |")
    lines += ["", "## Cross-tier transfer", "",
              "A discovery verified on one tier becomes a candidate on the others, tried at their own budget and "
              "decided by the same paired rule. Measured: the agents' mean paired improvement (positive = helps); "
              "table: the same comparison over all of the table's seeds.", ""]
    if s["transfers"]:
        lines += ["| from | to | change | tried (nights) | kept | measured, mean | on the table (SE) |",
                  "|---|---|---|---|---|---|---|"]
        for t in s["transfers"]:
            measured = f"{statistics.fmean(t['measured']):+.4f}" if t["measured"] else "crashed"
            truth = "not in the table" if t["truth"] is None else \
                f"{t['truth']['improvement']:+.4f} ({t['truth']['se']:.4f})"
            lines.append(f"| {t['from']} | {t['tier']} | {t['change'][:50]} | {t['tried']} | {t['kept']} | "
                         f"{measured} | {truth} |")
    else:
        lines.append("- no transfer was tried in any night")
    effects = {(e["tier"], e["technique"]): e for e in s["effects"]}

    def worth(name: str) -> str:
        return "; ".join(f"{tier} {e['relative']:+.1%}" for (tier, tech), e in effects.items() if tech == name) or "-"

    lines += ["", "## Compared with the night", "",
              "The night's figures are as reported; this replay's are measured here (means over the seeds, and "
              "ranges). Relative effects: the paired improvement in val_bpb over the tier's baseline (positive = "
              "helps), on this table.", "",
              "| | the March 8-9 night (reported) | this replay |", "|---|---|---|",
              f"| agents | {NIGHT['agents']} | {len(scenario.agents)} |",
              f"| experiments | {NIGHT['experiments']} | {_range(s['proposals'])} proposals tried, in "
              f"{_range(s['runs'])} training runs (baselines, confirmation seeds, verifications and ablations "
              "included) |",
              f"| keeps | not reported | {_range(s['keeps'])} |",
              f"| Kaiming init | {NIGHT['kaiming']} | {worth('Kaiming init')} |",
              f"| RMSNorm | {NIGHT['rmsnorm']} | {worth('RMSNorm')} |",
              f"| tied embeddings | {NIGHT['tied']} | {worth('tied embeddings')} |",
              f"| time to spread | {NIGHT['spread']} | real gossip delivery on this machine: median "
              f"{_ci(s['delivery_ms_median'], 0)} ms per night, slowest {s['delivery_ms_max']} ms; in virtual time "
              "a discovery reaches the others at the clock's next window (at most 5 virtual minutes) |",
              "", f"Wall time per night (gossip): {_range(s['wall_seconds'])} s on this machine."]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")
