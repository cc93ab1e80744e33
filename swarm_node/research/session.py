"""Assemble one node's research side from its options: home, target, corpus, tier, loop.

`run --solo`, `join` and the replay all build their loop here, so they run the same code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..assets import load_config, target_dir
from ..home import Home
from ..ledger import Ledger
from .hardware import HardwareProfile, Tier, pick_tier, profile_for
from .loop import LoopSettings, ResearchLoop
from .proposers.evolve import EvolveProposer
from .proposers.heuristic import HeuristicProposer
from .runner import SubprocessRunner
from .target import Corpus, Target, bench_key
from .workspace import Workspace

log = structlog.get_logger("swarm_node.session")

PROPOSERS = ("heuristic", "evolve", "claude")


class SetupError(RuntimeError):
    """A problem with the node's options or home; the message says how to fix it."""


@dataclass
class Options:
    home: str | None = None
    data: str | None = None
    budget: float | None = None
    tier: str | None = None
    proposer: str = "heuristic"
    policy: str = "hparams"
    sigma: float | None = None
    min_delta: float = 0.002
    z: float = 2.0
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    memory_limit_gb: float | None = 8.0
    margin: float | None = None  # wall seconds beyond the budget before a run counts as hung
    target: str = "tinygpt"
    extra: dict = field(default_factory=dict)


def search_space() -> dict:
    return load_config("search_space")


def make_proposers(name: str, role: str, allow_code: bool = False, explore: list[str] | None = None) -> list:
    if name not in PROPOSERS:
        raise SetupError(f"unknown proposer {name!r}; choose one of {', '.join(PROPOSERS)}")
    explore = explore or load_config("roles")["roles"][role]["explore"]
    heuristic, evolve = HeuristicProposer(explore), EvolveProposer(explore)
    if name == "evolve":
        return [evolve, heuristic]
    if name == "claude":
        from .proposers.base import ProposerError
        from .proposers.claude import ClaudeProposer
        try:
            claude = ClaudeProposer(allow_code=allow_code)
        except ProposerError as exc:
            raise SetupError(str(exc)) from exc
        return [claude, heuristic, evolve]  # the others step in when the API fails
    return [heuristic, evolve]


@dataclass
class Research:
    home: Home
    ledger: Ledger
    target: Target
    corpus: Corpus
    profile: HardwareProfile
    tier: Tier
    bench: dict
    loop: ResearchLoop

    @property
    def bench_json(self) -> str:
        return json.dumps(self.bench, sort_keys=True)


def build(opts: Options, profile: HardwareProfile | None = None, runner=None, observer=None,
          author: str = "local", *, corpus: Corpus | None = None, tier: Tier | None = None,
          space: dict | None = None, explore: list[str] | None = None) -> Research:
    """The replay passes its own corpus, tier, space and explore list (from the table and the
    scenario) so that 35 agents start without probing hardware or the corpus 35 times."""
    home = Home.from_env(opts.home)
    target = resolve_target(opts.target)
    corpus = corpus or target.resolve_corpus(opts.data, home.root)
    profile = profile or profile_for(opts.tier)
    try:
        tier = tier or pick_tier(profile, opts.tier)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    budget = opts.budget if opts.budget is not None else tier.budget
    bench = bench_key(target.name, corpus.sha256, budget, tier.name)
    ledger = Ledger(home.ledger)
    saved = ledger.get_meta("bench")
    if saved is not None and saved != bench:
        raise SetupError(
            f"{home.root} holds research for another benchmark ({_describe(saved)}), not {_describe(bench)}: "
            f"results are only comparable within one. Use another SWARM_NODE_HOME (or --home) for this one.")
    ledger.set_meta("bench", bench)
    device = opts.device if opts.device != "auto" else profile.accelerator  # the runner's limits depend on it
    if runner is None:
        runner = SubprocessRunner(home.workspace, budget=budget, corpus_path=corpus.path,
                                  corpus_sha256=corpus.sha256, expected_prepare_sha256=target.prepare_sha256,
                                  device=device, threads=opts.threads, memory_limit_gb=opts.memory_limit_gb, margin=opts.margin,
                                  scratch=home.cache / "runs")
    settings = LoopSettings(budget=budget, tier=tier.name, role=tier.role, bench=json.dumps(bench, sort_keys=True),
                            space=space or search_space(), program=_read_optional(target.dir / "program.md"),
                            policy=opts.policy, sigma=opts.sigma, min_delta=opts.min_delta, z=opts.z,
                            seed=opts.seed)
    loop = ResearchLoop(ledger=ledger, workspace=Workspace(home.workspace), runner=runner,
                        proposers=make_proposers(opts.proposer, tier.role, opts.policy == "code", explore),
                        settings=settings, observer=observer, author=author)
    return Research(home, ledger, target, corpus, profile, tier, bench, loop)


def resolve_target(name_or_path: str) -> Target:
    """A shipped target by name (tinygpt), or any folder holding prepare.py and train.py."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "train.py").is_file() or not (path / "prepare.py").is_file():
            raise SetupError(f"{path} is not a research target: it needs prepare.py and train.py")
        return Target(path.resolve().name, path.resolve())
    try:
        return Target(name_or_path, target_dir(name_or_path))
    except FileNotFoundError as exc:
        raise SetupError(f"{exc}; pass a shipped target's name (tinygpt) or a folder") from exc


def _describe(bench: dict) -> str:
    return f"target {bench['target']}, corpus {bench['corpus'][:12]}, budget {bench['budget']} s, tier {bench['tier']}"


def _read_optional(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
