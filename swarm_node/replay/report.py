"""What a replay writes: summary.json, REPORT.md and the global-best chart, from events.jsonl."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..credit import changes_from_diff, credit, found, technique  # noqa: E402
from . import analysis  # noqa: E402
from .controls import base_row  # noqa: E402


def spread(events: list[dict]) -> list[dict]:
    """Each discovery's reach: share of the agents live at its birth that got it, and when."""
    live: dict[str, tuple[float, float]] = {}
    for e in events:
        if e["type"] == "join":
            live[e["peer"]] = (e["t"], float("inf"))
        elif e["type"] == "leave" and e["peer"] in live:
            live[e["peer"]] = (live[e["peer"]][0], e["t"])
    names = _names(events)
    out = []
    receipts: dict[str, list[tuple[float, str]]] = {}
    walls: dict[str, list[tuple[float, str]]] = {}  # real time.time() of each gossip receipt
    adoptions: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == "receipt":
            receipts.setdefault(e["id"], []).append((e["t"], e["peer"]))
            if e.get("via") != "presence" and "wall" in e:
                walls.setdefault(e["id"], []).append((e["wall"], e["peer"]))
        elif e["type"] == "adoption":
            adoptions.setdefault(e["id"], set()).add(e["peer"])
    seen = set()
    for e in events:
        if e["type"] != "discovery" or e["id"] in seen:
            continue  # a second agent measuring the same state in the same window: one discovery
        seen.add(e["id"])
        born = e["t"]
        alive = {p for p, (a, b) in live.items() if a <= born < b and p != e["peer"]}
        got = sorted((t, p) for t, p in receipts.get(e["id"], []) if p in alive)
        first: dict[str, float] = {}
        for t, p in got:
            first.setdefault(p, t)
        times = sorted(first.values())
        real: dict[str, float] = {}
        for w, p in sorted(walls.get(e["id"], [])):
            if p in alive:
                real.setdefault(p, 1000 * (w - e["wall"]) if "wall" in e else None)
        real_ms = sorted(v for v in real.values() if v is not None)
        need50 = (len(alive) + 1) // 2
        out.append({
            "id": e["id"], "author": names.get(e["peer"], e["peer"]), "tier": e["tier"],
            "val_bpb": e["val_bpb"], "test_bpb": e.get("test_bpb"), "description": e["description"],
            "t": round(born, 1), "live_agents": len(alive) + 1,
            "reached_fraction": round((len(first) + 1) / (len(alive) + 1), 4),
            "t_to_50": round(times[need50 - 1] - born, 3) if need50 and len(times) >= need50 else (0.0 if not alive else None),
            "t_to_100": round(times[-1] - born, 3) if alive and len(times) == len(alive) else (0.0 if not alive else None),
            "real_ms_to_50": round(real_ms[need50 - 1], 1) if need50 and len(real_ms) >= need50 else None,
            "real_ms_to_100": round(real_ms[-1], 1) if alive and len(real_ms) == len(alive) else None,
            "adopted_by": len(adoptions.get(e["id"], set())),
        })
    return out


def _names(events: list[dict]) -> dict[str, str]:
    return {e["peer"]: e.get("name", e["peer"]) for e in events if e["type"] == "join"}


def trajectory(events: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Per tier, (virtual time, best val_bpb of any agent of that tier) each time it improved. Each
    tier has its own model and budget, so only values within one tier compare."""
    best: dict[str, float] = {}
    points: dict[str, list[tuple[float, float]]] = {}
    for e in analysis.heads(events):
        if e["val_bpb"] < best.get(e["tier"], float("inf")):
            best[e["tier"]] = e["val_bpb"]
            points.setdefault(e["tier"], []).append((e["t"], e["val_bpb"]))
    return points


def credited(events: list[dict]) -> tuple[list[dict], list[dict]]:
    """Each discovery (first copy of each id) with what it changed and its credit lines, and the
    techniques found: those whose own paired effect (an `effect` event of the same tier and state,
    the last one of a name) helped beyond 2 SE, first discovery first. A diff credits nothing."""
    effects: dict[tuple[str, str], list[dict]] = {}
    for e in events:
        if e["type"] == "effect":
            effects.setdefault((e.get("tier", ""), e["state"]), []).append(e)
    keeps, seen = [], set()
    for e in events:
        if e["type"] != "discovery" or e["id"] in seen:
            continue
        seen.add(e["id"])
        keep = {"id": e["id"], "state": e["state"], "tier": e["tier"], "t": e["t"], "val_bpb": e["val_bpb"],
                "description": e["description"], "changes": e.get("hparams") or changes_from_diff(e.get("diff", ""))}
        keep["credit"] = credit(keep, effects.get((e["tier"], e["state"]), []))
        keeps.append(keep)
    techniques = [{"technique": label, "tier": k["tier"], "t": k["t"], "val_bpb": k["val_bpb"],
                   "effect": eff["effect"], "se": eff["se"], "kind": eff["kind"]}
                  for k in keeps for _, label, eff in found([k], effects.get((k["tier"], k["state"]), []))]
    first = {}
    for f in techniques:
        first.setdefault(f["technique"], f)
    return keeps, list(first.values())


def summarize(events: list[dict], *, agents: int, runs: int, gossip: bool, wall_seconds: float,
              gossip_timeouts: int, seed: int, table: dict) -> dict:
    names = _names(events)
    keeps = analysis.keeps(events, table)
    return {
        "agents": agents, "experiments": runs, "proposals": analysis.proposals(events), "seed": seed,
        "gossip": gossip, "control": table.get("control"),
        "keeps": len(keeps), "false_keeps": sum(k["false"] for k in keeps),
        "adoptions": sum(1 for e in events if e["type"] == "adoption"),
        "wall_seconds": round(wall_seconds, 1), "gossip_timeouts": gossip_timeouts,
        "best_by_tier": analysis.best_by_tier(events),
        "discoveries": spread(events),
        "transfers": analysis.transfers(events, table),
        "found": [{k: f[k] for k in ("technique", "tier", "t", "effect", "se", "kind")} for f in credited(events)[1]],
        "effects": [{"tier": e["tier"], "technique": technique(e["name"], e["value"]), "effect": e["effect"],
                     "se": e["se"], "kind": e["kind"]} for e in events if e["type"] == "effect"],
        "delivery_ms": _quantiles(analysis.delivery_ms(events)),
        "decisions": [[names.get(e["peer"], e["peer"]), e["state"][:12], e["status"]]
                      for e in events if e["type"] == "experiment"],
    }


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    values = sorted(values)
    return {"n": len(values), "median": round(statistics.median(values), 1),
            "p95": round(values[min(len(values) - 1, int(0.95 * len(values)))], 1), "max": round(values[-1], 1)}


def draw_trajectory(runs: dict[str, dict[str, list]], path: Path, night: float) -> None:
    """One line per (run, tier): `runs` is {"gossip": trajectory(...), "isolated": ...}."""
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    colours = {}
    for label, by_tier in runs.items():
        for tier, points in sorted(by_tier.items()):
            xs = [p[0] / 3600 for p in points] + [night / 3600]
            ys = [p[1] for p in points] + [points[-1][1]]
            colour = colours.setdefault(tier, f"C{len(colours)}")
            ax.step(xs, ys, where="post", linewidth=2, color=colour, linestyle="-" if label == "gossip" else "--",
                    label=f"{tier} ({label})")
    ax.set_xlabel("night (virtual hours)")
    ax.set_ylabel("best val_bpb of the tier")
    ax.set_title("each tier's best over the night (its own table; tiers are different models)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def describe_table(table: dict) -> list[str]:
    """Where the numbers come from: each tier's table, its machine, and the n-gram reference."""
    ref = table["reference"]
    lines = [f"Every training run is answered by `table.json`: real tinygpt trainings, {len(table['seeds'])} seeds "
             f"per configuration, one table per tier at its compute budget. For scale, {ref['model']} scores val "
             f"{ref['val_bpb']:.4f} / test {ref['test_bpb']:.4f} bits per byte.", "",
             "| tier | measured as | budget (FLOPs) | steps | configurations | baseline val_bpb (mean) | measured on |",
             "|---|---|---|---|---|---|---|"]
    for tier, t in table["tiers"].items():
        base = base_row(table, tier)
        first = next(iter(base["seeds"].values()))
        machines = "; ".join(f"{m['machine']['cpus']} CPU cores, {m['date']}, `{m['command']}`" for m in t["sessions"])
        lines.append(f"| {tier} | {t['measured_as']} | {t['budget_flops']:.3g} | {first['num_steps']} | "
                     f"{len(t['rows'])} | {statistics.fmean(s['val_bpb'] for s in base['seeds'].values()):.4f} | "
                     f"{machines} |")
    if table.get("control"):
        lines += ["", f"**Control table** — {table['control']}."]
    return lines


def effects_table(table: dict) -> list[str]:
    lines = ["| tier | change from the baseline | paired improvement (bpb) | SE | relative | on the table |",
             "|---|---|---|---|---|---|"]
    for e in analysis.technique_effects(table):
        lines.append(f"| {e['tier']} | {e['technique']} | {e['improvement']:+.4f} | {e['se']:.4f} | "
                     f"{e['relative']:+.2%} | {analysis.verdict(e)} |")
    return lines


def _truth(truth: dict | None) -> str:
    return "not in the table" if truth is None else f"{truth['improvement']:+.4f} (SE {truth['se']:.4f})"


def write_report(out: Path, summary: dict, events: list[dict], table: dict, scenario,
                 isolated: tuple[dict, list[dict]] | None = None, null: dict | None = None) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    runs = {"gossip" if summary["gossip"] else "isolated": trajectory(events)}
    if isolated:
        runs["isolated"] = trajectory(isolated[1])
    draw_trajectory(runs, out / "trajectory.png", scenario.night_seconds)
    lines = [
        f"# Replay of a {scenario.name} style night",
        "",
        f"**What this is:** a replay of {summary['agents']} agents running the real swarm-node code (libp2p "
        "GossipSub on 127.0.0.1, real proposers, keep/discard, claims, discoveries, verification, adoption). "
        "It is not the original night's models: only the time is simulated, every val_bpb is a measured one.",
        "", *describe_table(table), "",
        f"- Scenario: `{scenario.path.name}` — {scenario.description}",
        f"- Seed {summary['seed']}, gossip {'on' if summary['gossip'] else 'off'}; {summary['proposals']} proposals "
        f"tried in {summary['experiments']} training runs (the rest are baselines, confirmations, verifications and "
        f"ablations), {summary['keeps']} keeps ({summary['false_keeps']} false on the table's evidence), "
        f"{summary['adoptions']} adoptions; wall time {summary['wall_seconds']} s.",
        "- Best per tier: " + ", ".join(f"{tier} {v:.4f}" for tier, v in sorted(summary["best_by_tier"].items())),
        f"- Gossip messages that had not reached every agent when the clock moved on: {summary['gossip_timeouts']} "
        "(they are applied later; with any, the same seed may not repeat every decision).",
        "",
        "![each tier's best](trajectory.png)",
        "",
        "## Discoveries and their spread",
        "",
        "t: virtual seconds into the night. Reach: share of the agents live at its birth that received it. "
        "Virtual times to 50 % / 100 % count until the agents took it in: agents take in news at the clock's next "
        "synchronisation point (windows of at most 5 virtual minutes), so they are mostly the rest of the window. "
        "Real ms: the wall-clock milliseconds gossip took on this machine from publication to receipt.",
        "",
        "| t | author | tier | val_bpb | reach | to 50 % (virtual s) | to 100 % (virtual s) | real ms to 50 % | "
        "real ms to 100 % | adopted by | change |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in summary["discoveries"]:
        lines.append(f"| {d['t']:.0f} | {d['author']} | {d['tier']} | {d['val_bpb']:.4f} | {d['reached_fraction']:.0%} "
                     f"| {d['t_to_50']} | {d['t_to_100']} | {d['real_ms_to_50']} | {d['real_ms_to_100']} | "
                     f"{d['adopted_by']} | {d['description'][:60]} |")
    discoveries, found_ = credited(events)
    lines += ["", "## What the discoveries are credited with", "",
              "A technique is credited only by its own paired effect (mean paired improvement in val_bpb, "
              "positive = helps; |effect| <= 2 SE is no measurable effect): a discovery that changed one "
              "hyperparameter is that measurement; the parts of one that changed several count only once an "
              "ablation reverted each in the kept state (\"combined, not ablated\" until then).", ""]
    if found_:
        lines += [f"- found: {f['technique']}, first on tier {f['tier']} at t={f['t']:.0f} s "
                  f"({f['effect']:+.4f} bpb, SE {f['se']:.4f}, {f['kind']}; val_bpb {f['val_bpb']:.4f})"
                  for f in found_]
    else:
        lines.append("- found: no technique has a measured paired effect above 2 SE")
    for d in discoveries:
        lines.append(f"- t={d['t']:.0f} tier {d['tier']}, `{d['description'][:60]}`: "
                     + ("; ".join(d["credit"]) or "no hyperparameter changed"))
    lines += ["", "## What each technique is worth on this table", "",
              "Each single change from a tier's baseline, paired over the table's seeds (what a reader can "
              "recompute from `table.json`):", "", *effects_table(table)]
    lines += ["", "## Keeps checked against the table", ""]
    checked = analysis.keeps(events, table)
    lines.append(f"- {len(checked)} keeps; {sum(k['false'] for k in checked)} false: not better than their parent "
                 "by more than 2 SE over all of the table's seeds.")
    lines += [f"  - false: {k['tier']} `{k['description'][:60]}`: table {_truth(k['truth'])}" for k in checked
              if k["false"]]
    lines += ["", "## Cross-tier transfer", ""]
    moved = summary["transfers"]
    lines.append(f"- {len(moved)} experiments tried another tier's discovery on their own tier; "
                 f"{sum(t['status'] == 'keep' for t in moved)} were kept.")
    if moved:
        lines += ["", "| t | tier | from | change | measured paired improvement (SE) | on the table (SE) | decision |",
                  "|---|---|---|---|---|---|---|"]
        for t in moved:
            measured = "crashed" if t["measured"] is None else f"{t['measured']:+.4f} ({t['se']:.4f})"
            lines.append(f"| {t['t']:.0f} | {t['tier']} | {t['from']} | {t['description'].split(': ', 1)[-1][:50]} | "
                         f"{measured} | {_truth(t['truth'])} | {t['status']} |")
    if isolated:
        iso_summary, iso_events = isolated
        lines += ["", "## What gossip bought (the ablation)", "",
                  "The same agents, same seed, same table, without connections (`--no-gossip`). Per tier, the best "
                  "a single isolated agent of that tier found all night, and when each swarm first reached it:", "",
                  "| tier | final best, gossip | final best, isolated | best single isolated agent | reached with "
                  "gossip | reached isolated |", "|---|---|---|---|---|---|"]
        for tier, race in analysis.solo_race(events, iso_events).items():
            lines.append(f"| {tier} | {summary['best_by_tier'].get(tier, float('nan')):.4f} | "
                         f"{iso_summary['best_by_tier'][tier]:.4f} | {race['solo_best']:.4f} | "
                         f"{_hours(race['t_gossip'])} | {_hours(race['t_isolated'])} |")
        lines += ["", f"Training runs: gossip {summary['experiments']}, isolated {iso_summary['experiments']}; "
                  f"keeps: gossip {summary['keeps']}, isolated {iso_summary['keeps']}."]
    if null:
        lines += ["", "## Null control", "",
                  f"The same night with gossip on a null table ({null['control']}): {null['keeps']} keeps in "
                  f"{null['proposals']} proposals; no row of that table is better than the baseline, so every keep "
                  "there is false."]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")


def _hours(t: float | None) -> str:
    return "not reached" if t is None else f"{t / 3600:.2f} h"
