"""Assemble one node's research side from its options: home, target, corpus, tier, loop.

`run --solo`, `join` and the replay all build their loop here, so they run the same code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..assets import load_config, target_dir
from ..home import Home
from ..ledger import Ledger
from ..messages import BenchKey
from ..standing import Standing
from .budget import MODES, Budget
from .decision import REPRO_TOLERANCE, Rule
from .hardware import HardwareProfile, Tier, pick_tier, profile_for
from .hearsay import Hearsay
from .loop import ResearchLoop
from .proposers.evolve import EvolveProposer
from .proposers.heuristic import HeuristicProposer
from .records import LoopSettings
from .runner import MEMORY_LIMIT_GB, SubprocessRunner
from .target import Corpus, Target, bench_key, describe_bench, tier_baseline
from .workspace import Workspace

log = structlog.get_logger("swarm_node.setup")

PROPOSERS = ("heuristic", "evolve", "claude")


class SetupError(RuntimeError):
    """A problem with the node's options or home; the message says how to fix it."""


@dataclass
class Options:
    home: str | None = None
    data: str | None = None
    budget: float | None = None  # FLOPs (compute mode) or seconds (time mode); default: the tier's
    budget_mode: str = "compute"  # compute | time (one dedicated machine researching alone)
    tier: str | None = None
    proposer: str = "heuristic"
    policy: str = "hparams"
    prior_sd: float | None = None  # SD of a paired difference to assume until history outweighs it
    min_delta: float = Rule.min_delta
    t: float = Rule.t
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    memory_limit_gb: float | None = MEMORY_LIMIT_GB
    max_seconds: float | None = None  # wall limit of one run (default: the tier's, or time + 60 + time/4)
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
    bench: BenchKey
    loop: ResearchLoop
    standing: Standing  # what this node thinks of each peer (unused by a node researching alone)
    clock: object  # seconds, what claims expire and verification budgets refill by (the replay's is virtual)

    @property
    def root_source(self) -> str:
        """The target's train.py at this tier's size: where the node starts, what its policy compares with."""
        return tier_baseline((self.target.dir / "train.py").read_text(), self.tier.baseline)


def setup(opts: Options, profile: HardwareProfile | None = None, runner=None, observer=None,
          author: str = "local", *, corpus: Corpus | None = None, tier: Tier | None = None,
          space: dict | None = None, explore: list[str] | None = None, clock=time.monotonic) -> Research:
    """The replay passes its own corpus, tier, space and explore list (from the table and the
    scenario) so that 35 agents start without probing hardware or the corpus 35 times, and its
    virtual clock."""
    home = Home.from_env(opts.home)
    target = resolve_target(opts.target)
    corpus = corpus or target.resolve_corpus(opts.data, home.root)
    profile = profile or profile_for(opts.tier)
    try:
        tier = tier or pick_tier(profile, opts.tier)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    budget = make_budget(opts, tier)
    device = opts.device if opts.device != "auto" else profile.accelerator  # the runner's limits depend on it
    bench = bench_key(target.name, corpus.sha256, budget, tier.name, device)
    ledger = Ledger(home.ledger)
    saved = ledger.get_meta("bench")
    if saved is not None and saved != bench.model_dump():
        raise SetupError(
            f"{home.root} holds research for another benchmark ({describe_bench(saved)}), "
            f"not {describe_bench(bench.model_dump())}: "
            f"results are only comparable within one. Use another SWARM_NODE_HOME (or --home) for this one.")
    ledger.set_meta("bench", bench.model_dump())
    if runner is None:
        runner = SubprocessRunner(home.workspace, budget=budget, corpus_path=corpus.path,
                                  corpus_sha256=corpus.sha256, expected_prepare_sha256=target.prepare_sha256,
                                  device=device, threads=opts.threads, memory_limit_gb=opts.memory_limit_gb,
                                  scratch=home.cache / "runs")
    settings = LoopSettings(budget=budget, role=tier.role, bench=bench,
                            space=space or search_space(), program=_read_optional(target.dir / "program.md"),
                            policy=opts.policy, prior_sd=opts.prior_sd, rule=Rule(min_delta=opts.min_delta, t=opts.t),
                            repro_tolerance=REPRO_TOLERANCE[device], seed=opts.seed, decision_seeds=tuple(range(tier.seeds)),
                            confirm_seeds=tuple(range(tier.seeds, tier.seeds + tier.confirm_seeds)))
    budgets = 4 * budget.max_seconds + 60  # "a few runs": how long claims last, how fast verifications refill
    standing = Standing(refill_s=budgets, clock=clock)
    hearsay = Hearsay(ttl_s=budgets, clock=clock, measured=ledger.measured_by_peers(bench), trusted=standing.proven)
    now = time.time()
    for claim in ledger.claims(bench, since=now - budgets):  # a restart forgets no live claim
        hearsay.claims.add(claim["author"], claim["state"], age=now - claim["ts"])
    loop = ResearchLoop(ledger=ledger, workspace=Workspace(home.workspace), runner=runner,
                        proposers=make_proposers(opts.proposer, tier.role, opts.policy == "code", explore),
                        settings=settings, observer=observer, author=author, hearsay=hearsay)
    return Research(home, ledger, target, corpus, profile, tier, bench, loop, standing, clock)


def make_budget(opts: Options, tier: Tier) -> Budget:
    """Compute mode: FLOPs (default the tier's) within the tier's wall limit. Time mode: seconds
    (default the tier's time_budget) within that + 60 + a quarter of it (start-up, evaluation)."""
    if opts.budget_mode not in MODES:
        raise SetupError(f"--budget-mode must be one of {', '.join(MODES)}, not {opts.budget_mode!r}")
    if opts.budget is not None and not opts.budget > 0:
        raise SetupError(f"--budget must be positive, not {opts.budget:g}")
    if opts.max_seconds is not None and not opts.max_seconds > 0:
        raise SetupError(f"--max-seconds must be positive, not {opts.max_seconds:g}")
    if opts.budget_mode == "compute":
        amount = opts.budget if opts.budget is not None else tier.budget_flops
        if amount < 1:
            raise SetupError(f"--budget is training FLOPs in compute mode (e.g. 2e11), not {amount:g}")
        return Budget("compute", float(int(amount)), opts.max_seconds or tier.max_seconds)
    seconds = opts.budget if opts.budget is not None else tier.time_budget
    return Budget("time", float(seconds), opts.max_seconds or seconds + 60 + seconds / 4)


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


def _read_optional(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
