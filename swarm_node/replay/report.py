"""What a replay writes: summary.json, REPORT.md and the global-best chart, from events.jsonl."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..credit import changes_from_diff, credit, found  # noqa: E402


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
    adoptions: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == "receipt":
            receipts.setdefault(e["id"], []).append((e["t"], e["peer"]))
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
        need50 = (len(alive) + 1) // 2
        out.append({
            "id": e["id"], "author": names.get(e["peer"], e["peer"]), "tier": e["tier"],
            "val_bpb": e["val_bpb"], "test_bpb": e.get("test_bpb"), "description": e["description"],
            "t": round(born, 1), "live_agents": len(alive) + 1,
            "reached_fraction": round((len(first) + 1) / (len(alive) + 1), 4),
            "t_to_50": round(times[need50 - 1] - born, 3) if need50 and len(times) >= need50 else (0.0 if not alive else None),
            "t_to_100": round(times[-1] - born, 3) if alive and len(times) == len(alive) else (0.0 if not alive else None),
            "adopted_by": len(adoptions.get(e["id"], set())),
        })
    return out


def _names(events: list[dict]) -> dict[str, str]:
    return {e["peer"]: e.get("name", e["peer"]) for e in events if e["type"] == "join"}


def _heads(events: list[dict]) -> list[dict]:
    """Experiments that left an agent on a measured state: its baseline, a keep, an adoption."""
    return [e for e in events if e["type"] == "experiment" and e["status"] in ("baseline", "keep", "adopted")
            and e.get("val_bpb")]


def trajectory(events: list[dict]) -> list[tuple[float, float, str]]:
    """(virtual time, global best val_bpb, tier) each time the swarm's best improved."""
    best, points = float("inf"), []
    for e in _heads(events):
        if e["val_bpb"] < best:
            best = e["val_bpb"]
            points.append((e["t"], best, e.get("tier", "")))
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
              gossip_timeouts: int, seed: int) -> dict:
    discoveries = spread(events)
    best = min(_heads(events), key=lambda e: e["val_bpb"], default=None)
    names = _names(events)
    return {
        "agents": agents, "experiments": runs, "seed": seed, "gossip": gossip,
        "keeps": sum(1 for e in events if e["type"] == "experiment" and e["status"] == "keep"),
        "adoptions": sum(1 for e in events if e["type"] == "adoption"),
        "wall_seconds": round(wall_seconds, 1), "gossip_timeouts": gossip_timeouts,
        "best": None if best is None else {"val_bpb": best["val_bpb"], "test_bpb": best.get("test_bpb"),
                                           "state": best["state"], "author": names.get(best["peer"], best["peer"]),
                                           "tier": best.get("tier")},
        "discoveries": discoveries,
        "decisions": [[names.get(e["peer"], e["peer"]), e["state"][:12], e["status"]]
                      for e in events if e["type"] == "experiment"],
    }


def draw_trajectory(points_by_run: dict[str, list], path: Path, night: float) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    for label, points in points_by_run.items():
        if points:
            xs = [p[0] / 3600 for p in points] + [night / 3600]
            ys = [p[1] for p in points] + [points[-1][1]]
            ax.step(xs, ys, where="post", linewidth=2, label=label)
    ax.set_xlabel("night (virtual hours)")
    ax.set_ylabel("best val_bpb in the swarm")
    ax.set_title("global best over the night (tinygpt table, measured on a CPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def time_to_reach(points: list, target: float) -> float | None:
    return next((t for t, v, _ in points if v <= target + 1e-12), None)


def write_report(out: Path, summary: dict, events: list[dict], table: dict, scenario,
                 isolated: tuple[dict, list[dict]] | None = None) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    runs = {"gossip" if summary["gossip"] else "isolated": trajectory(events)}
    if isolated:
        runs["isolated"] = trajectory(isolated[1])
    draw_trajectory(runs, out / "trajectory.png", scenario.night_seconds)
    best = summary["best"] or {}
    lines = [
        f"# Replay of a {scenario.name} style night",
        "",
        f"**What this is:** a replay of {summary['agents']} agents running the real swarm-node code (libp2p "
        "GossipSub on 127.0.0.1, real proposers, keep/discard, claims, discoveries, verification, adoption) "
        "whose training runs are answered by a table of real tinygpt trainings measured on a CPU "
        f"({len(table['rows'])} configurations x {len(table['seeds'])} seeds, {table['steps']} steps each, "
        + "; ".join(f"{len(m['states'])} configurations measured on {m['machine']['cpus']} CPU cores, {m['date']}, "
                    f"`{m['command']}`" for m in table["sessions"]) + "). "
        "It is not the original night's models: only the time is simulated, every val_bpb is a measured one.",
        "",
        f"- Scenario: `{scenario.path.name}` — {scenario.description}",
        f"- Seed {summary['seed']}, gossip {'on' if summary['gossip'] else 'off'}; "
        f"{summary['experiments']} training runs, {summary['keeps']} keeps, {summary['adoptions']} adoptions; "
        f"wall time {summary['wall_seconds']} s.",
        f"- Best: val_bpb {best.get('val_bpb', float('nan')):.4f} (test_bpb {best.get('test_bpb') or float('nan'):.4f}) "
        f"by {best.get('author')} on tier {best.get('tier')}.",
        f"- Gossip messages that had not reached every agent when the clock moved on: {summary['gossip_timeouts']} "
        "(they are applied later; with any, the same seed may not repeat every decision).",
        "",
        "![global best](trajectory.png)",
        "",
        "## Discoveries and their spread",
        "",
        "t: virtual seconds into the night. Reach: share of the agents live at its birth that received it; "
        "times to 50 % / 100 % are virtual seconds from its birth until the agents took it in. Agents take in "
        "news at the clock's next synchronisation point (windows of at most 5 virtual minutes), so this is "
        "mostly the rest of the window, plus the real seconds gossip took on this machine.",
        "",
        "| t | author | tier | val_bpb | test_bpb | reach | to 50 % | to 100 % | adopted by | change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in summary["discoveries"]:
        lines.append(f"| {d['t']:.0f} | {d['author']} | {d['tier']} | {d['val_bpb']:.4f} | "
                     f"{(d['test_bpb'] or float('nan')):.4f} | {d['reached_fraction']:.0%} | {d['t_to_50']} | "
                     f"{d['t_to_100']} | {d['adopted_by']} | {d['description'][:60]} |")
    discoveries, found_ = credited(events)
    lines += ["", "## What the discoveries are credited with", "",
              "A technique is credited only by its own paired effect (mean paired improvement in val_bpb, "
              "positive = helps; |effect| <= 2 SE is no measurable effect): a discovery that changed one "
              "hyperparameter is that measurement; the parts of one that changed several count only once an "
              "ablation reverted each in the kept state.", ""]
    if found_:
        lines += [f"- found: {f['technique']}, first on tier {f['tier']} at t={f['t']:.0f} s "
                  f"({f['effect']:+.4f} bpb, SE {f['se']:.4f}, {f['kind']}; val_bpb {f['val_bpb']:.4f})"
                  for f in found_]
    else:
        lines.append("- found: no technique has a measured paired effect above 2 SE")
    for d in discoveries:
        lines.append(f"- t={d['t']:.0f} tier {d['tier']}, `{d['description'][:60]}`: "
                     + ("; ".join(d["credit"]) or "no hyperparameter changed"))
    lines += ["", "Whether a technique helps at all is the table's business: at "
              f"{table['steps']} steps of this small model, some of them do not beat the baseline by more than "
              "the measured noise, and then the swarm rightly does not keep them.", "",
              "## Cross-tier transfer", ""]
    transfers = [e for e in events if e["type"] == "experiment" and e["description"].startswith("transfer from")]
    kept_transfers = [e for e in transfers if e["status"] == "keep"]
    lines.append(f"- {len(transfers)} experiments tried another tier's discovery on their own tier; "
                 f"{len(kept_transfers)} were kept.")
    gaps = [d["test_bpb"] - d["val_bpb"] for d in summary["discoveries"] if d["test_bpb"] is not None]
    lines += ["", "## Validation vs held-out test", ""]
    if best:
        lines.append(f"- Best state: val {best['val_bpb']:.4f}, test {(best.get('test_bpb') or float('nan')):.4f}.")
    if gaps:
        lines.append(f"- Over all discoveries, test - val ranges from {min(gaps):+.4f} to {max(gaps):+.4f}: "
                     "a test value far above validation would mean the swarm over-fitted the validation split.")
    if isolated:
        iso_summary, iso_events = isolated
        iso_points = runs["isolated"]
        solo_best = _best_single_agent(iso_events)
        t_gossip = time_to_reach(runs["gossip"], solo_best) if solo_best else None
        t_iso = time_to_reach(iso_points, solo_best) if solo_best else None
        lines += ["", "## What gossip bought (the ablation)", "",
                  "The same agents, same seed, same table, without connections (`--no-gossip`).", "",
                  "| | gossip | isolated |", "|---|---|---|",
                  f"| final best val_bpb | {summary['best']['val_bpb']:.4f} | {iso_summary['best']['val_bpb']:.4f} |",
                  f"| time to the best a single isolated agent found all night ({solo_best:.4f}) | "
                  f"{_hours(t_gossip)} | {_hours(t_iso)} |",
                  f"| training runs | {summary['experiments']} | {iso_summary['experiments']} |",
                  f"| keeps | {summary['keeps']} | {iso_summary['keeps']} |"]
    (out / "REPORT.md").write_text("\n".join(lines) + "\n")


def _best_single_agent(events: list[dict]) -> float | None:
    return min((e["val_bpb"] for e in _heads(events)), default=None)


def _hours(t: float | None) -> str:
    return "not reached" if t is None else f"{t / 3600:.2f} h"
