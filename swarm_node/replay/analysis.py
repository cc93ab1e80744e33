"""What a replayed night's events mean, checked against the table that answered them.

The table knows every configuration's value on every seed, so a reader can check the swarm's
claims: whether a keep was better than its parent on all the table's seeds, what each technique
is worth on each tier, what a transfer to another tier really brought.
"""
from __future__ import annotations

import math
import statistics

from ..credit import technique
from .controls import base_row
from ..status import DECIDED, HEADS, Status

TRANSFER = "transfer from "


def paired(table: dict, tier: str, parent: str, state: str) -> dict | None:
    """The table's paired improvement of `state` over `parent` on every seed both have (positive =
    `state` is better): mean, SE of the mean, seeds; None when either state is not a table row."""
    rows = {r["state"]: r for r in table["tiers"][tier]["rows"]}
    a, b = rows.get(parent), rows.get(state)
    if a is None or b is None:
        return None
    seeds = sorted(set(a["seeds"]) & set(b["seeds"]), key=int)
    diffs = [a["seeds"][s]["val_bpb"] - b["seeds"][s]["val_bpb"] for s in seeds]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("inf")
    return {"improvement": statistics.fmean(diffs), "se": se, "seeds": len(diffs)}


def really_better(truth: dict | None) -> bool:
    """Better on the table's own evidence: mean paired improvement over all its seeds above 2 SE."""
    return truth is not None and truth["improvement"] > 2 * truth["se"]


def verdict(effect: dict) -> str:
    """A paired effect read at 2 SE: helps, hurts, or no measurable effect."""
    if effect["improvement"] > 2 * effect["se"]:
        return "helps"
    return "hurts" if effect["improvement"] < -2 * effect["se"] else "no measurable effect"


def technique_effects(table: dict) -> list[dict]:
    """Each single change from each tier's baseline, measured on the table (paired over its seeds)."""
    out = []
    for tier, t in table["tiers"].items():
        base = base_row(table, tier)
        for row in t["rows"]:
            changed = {k: v for k, v in row["config"].items() if base["config"][k] != v}
            if len(changed) == 1:
                (name, value), = changed.items()
                truth = paired(table, tier, base["state"], row["state"])
                mean_base = statistics.fmean(s["val_bpb"] for s in base["seeds"].values())
                out.append({"tier": tier, "technique": technique(name, value), "name": name, "value": value,
                            **truth, "relative": truth["improvement"] / mean_base})
    return out


def keeps(events: list[dict], table: dict) -> list[dict]:
    """Every keep of the night with the table's verdict on it."""
    out = []
    for e in events:
        if e["type"] == "experiment" and e["status"] == Status.KEEP and e.get("parent"):
            truth = paired(table, e["tier"], e["parent"], e["state"])
            out.append({"tier": e["tier"], "state": e["state"], "description": e["description"],
                        "measured": e.get("improvement"), "truth": truth, "false": not really_better(truth)})
    return out


def transfers(events: list[dict], table: dict) -> list[dict]:
    """Each experiment that tried another tier's discovery on its own tier: its paired outcome as
    the agent measured it and as the table knows it."""
    out = []
    for e in events:
        if e["type"] == "experiment" and e["description"].startswith(TRANSFER) and e.get("parent"):
            source = e["description"][len(TRANSFER):].split(" ", 1)[0]
            out.append({"tier": e["tier"], "from": source, "description": e["description"], "status": e["status"],
                        "measured": e.get("improvement"), "se": e.get("se"),
                        "truth": paired(table, e["tier"], e["parent"], e["state"]), "t": e["t"]})
    return out


def best_by_tier(events: list[dict]) -> dict[str, float]:
    """The best val_bpb any agent of each tier stood on during the night."""
    best: dict[str, float] = {}
    for e in heads(events):
        best[e["tier"]] = min(best.get(e["tier"], math.inf), e["val_bpb"])
    return best


def heads(events: list[dict]) -> list[dict]:
    """Experiments that left an agent on a measured state: its baseline, a keep, an adoption."""
    return [e for e in events if e["type"] == "experiment" and e["status"] in HEADS and e.get("val_bpb")]


def time_to(events: list[dict], tier: str, target: float) -> float | None:
    """Virtual seconds until an agent of `tier` stood on a state at least as good as `target`."""
    return next((e["t"] for e in heads(events) if e["tier"] == tier and e["val_bpb"] <= target + 1e-12), None)


def proposals(events: list[dict]) -> int:
    """Experiments that ran a proposal (not a baseline, an adoption or an ablation's re-measure)."""
    return sum(1 for e in events if e["type"] == "experiment" and e["status"] in DECIDED
               and e.get("proposer") not in ("baseline", "adoption", "ablation"))


def delivery_ms(events: list[dict]) -> list[float]:
    """Real milliseconds from each discovery's publication to each gossip receipt of it (the wall
    clock of this machine; a replay's virtual windows hide these)."""
    born = {}
    for e in events:
        if e["type"] == "discovery" and "wall" in e:
            born.setdefault(e["id"], e["wall"])
    return [1000 * (e["wall"] - born[e["id"]]) for e in events
            if e["type"] == "receipt" and e.get("via") != "presence" and e["id"] in born and "wall" in e]


def solo_race(gossip_events: list[dict], isolated_events: list[dict]) -> dict[str, dict]:
    """Per tier: the best one isolated agent of the tier found all night, and the virtual seconds
    the gossip swarm and the isolated swarm took to reach it (None: never)."""
    out = {}
    for tier, solo in sorted(best_by_tier(isolated_events).items()):
        out[tier] = {"solo_best": solo, "t_gossip": time_to(gossip_events, tier, solo),
                     "t_isolated": time_to(isolated_events, tier, solo)}
    return out
