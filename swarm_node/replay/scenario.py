"""A replay scenario: the night's shape (who joins when, on what hardware, for how long)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..assets import asset_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_SCENARIO = "replay_march8.toml"


@dataclass(frozen=True)
class AgentSpec:
    name: str  # e.g. laptop-07: also its peer name in events
    group: str
    tier: str
    hardware: str
    explore: tuple[str, ...]
    experiment_seconds: float  # virtual cost of one training run on this tier
    join_at: float
    leave_at: float


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    night_seconds: float
    connections: int
    agents: tuple[AgentSpec, ...]
    path: Path


def load_scenario(path: str | Path | None = None) -> Scenario:
    path = Path(path) if path else asset_dir("configs") / DEFAULT_SCENARIO
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    night = float(raw["night_seconds"])
    agents = []
    for g in raw["groups"]:
        count = int(g["count"])
        for i in range(count):
            join = g["join_from"] + (g["join_to"] - g["join_from"]) * (i / max(count - 1, 1))
            leave = min(night, join + g["leave_after"]) if "leave_after" in g else night
            agents.append(AgentSpec(name=f"{g['name']}-{i + 1:02d}", group=g["name"], tier=g["tier"],
                                    hardware=g["hardware"], explore=tuple(g["explore"]),
                                    experiment_seconds=float(g["experiment_seconds"]), join_at=float(join),
                                    leave_at=float(leave)))
    agents.sort(key=lambda a: (a.join_at, a.name))
    return Scenario(name=raw["name"], description=raw["description"], night_seconds=night,
                    connections=int(raw.get("connections", 4)), agents=tuple(agents), path=path)
