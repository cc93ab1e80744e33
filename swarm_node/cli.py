"""Every command of swarm-node. `swarm-node COMMAND --help` explains each."""
from __future__ import annotations

import argparse
import json
import sys

import structlog
import trio

from . import __version__, logs

log = structlog.get_logger("swarm_node.cli")

EPILOG = """examples:
  swarm-node hardware                          what this machine is and which tier it joins
  swarm-node run --solo --budget 20 --max-experiments 6 --data tinyshakespeare.txt
  swarm-node report                            progress.png and report.md from the ledger

Everything a node keeps lives in SWARM_NODE_HOME (default ~/.swarm-node) or --home DIR."""


def _research_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("research")
    g.add_argument("--budget", type=float, help="training seconds per experiment (default: the tier's)")
    g.add_argument("--max-experiments", type=int, default=None, metavar="N",
                   help="stop after N experiments (the baseline not counted); default: run until Ctrl-C")
    g.add_argument("--data", metavar="FILE", help="train on your own corpus (its sha256 joins the benchmark key); "
                   "default: Tiny Shakespeare from SWARM_NODE_DATA, the cache, or a download")
    g.add_argument("--proposer", choices=("heuristic", "evolve", "claude"), default="heuristic",
                   help="who proposes changes: a role-aware grid search, an evolutionary search, or Claude "
                   "(needs ANTHROPIC_API_KEY); default heuristic")
    g.add_argument("--policy", choices=("hparams", "code"), default="hparams",
                   help="hparams: only literal values in train.py's hyperparameter block may change (default); "
                   "code: any change to train.py (still sandboxed)")
    g.add_argument("--tier", help="override the detected hardware tier (see `swarm-node hardware`)")
    g.add_argument("--sigma", type=float, help="noise of val_bpb to assume instead of measuring it at start")
    g.add_argument("--min-delta", type=float, default=0.002, help="smallest improvement ever kept (default 0.002)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    g.add_argument("--threads", type=int, help="torch threads per training run (default: torch's choice)")
    g.add_argument("--seed", type=int, default=0, help="seed of the proposers' random choices")
    g.add_argument("--timeout-margin", type=float, metavar="S", help="wall seconds a run may take beyond "
                   "its budget (start-up, evaluation) before it is killed as hung; default 60 + budget/4")
    g.add_argument("--memory-limit", type=float, default=8.0, metavar="GB",
                   help="address-space limit of a CPU training run (default 8; 0 for none)")
    g.add_argument("--target", default="tinygpt", help="research target: a shipped name or a folder with "
                   "prepare.py and train.py (autoresearch style); default tinygpt")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="node home (default: $SWARM_NODE_HOME or ~/.swarm-node)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of readable text")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="swarm-node", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Autonomous keep/discard research loops that share winning diffs over a "
                    "peer-to-peer network.")
    top.add_argument("--version", action="version", version=f"swarm-node {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("hardware", help="show this machine's profile, tier, role and budget")
    p.add_argument("--tier", help="show this tier instead of the detected one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_hardware)

    p = sub.add_parser("run", help="run the keep/discard loop", description="Run the autonomous keep/discard "
                       "loop. With --solo no network is used; results go to the node's home.")
    p.add_argument("--solo", action="store_true", required=True, help="research alone, no network "
                   "(to join a swarm use `swarm-node join`)")
    _common(p)
    _research_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="draw progress.png and write report.md from the ledger")
    _common(p)
    p.add_argument("--out", metavar="DIR", help="where to write (default: the node's home)")
    p.set_defaults(func=cmd_report)
    return top


def cmd_hardware(args) -> int:
    from .research.hardware import detect, pick_tier
    profile = detect()
    tier = pick_tier(profile, args.tier)
    if args.json:
        print(json.dumps({"hardware": profile.as_dict(), "tier": tier.name, "role": tier.role,
                          "budget": tier.budget, "baseline": tier.baseline}, indent=2))
        return 0
    device = profile.device_name or "none"
    print(f"accelerator  {profile.accelerator} ({device}{f', {profile.memory_gb} GB' if profile.memory_gb else ''})")
    print(f"cpu          {profile.cpu_cores} cores, {profile.ram_gb} GB RAM, torch {profile.torch}")
    print(f"tier         {tier.name}{' (override)' if args.tier else ''}: {tier.description}")
    print(f"role         {tier.role}")
    print(f"budget       {tier.budget} s of training per experiment")
    print(f"model        {', '.join(f'{k}={v}' for k, v in tier.baseline.items())}")
    return 0


def _options(args):
    from .research.session import Options
    return Options(home=args.home, data=args.data, budget=args.budget, tier=args.tier,
                   proposer=args.proposer, policy=args.policy, sigma=args.sigma, min_delta=args.min_delta,
                   device=args.device, threads=args.threads, seed=args.seed, target=args.target,
                   margin=args.timeout_margin, memory_limit_gb=args.memory_limit or None)


def cmd_run(args) -> int:
    from .progress import Progress
    from .research.loop import write_results_tsv
    from .research.session import build

    progress = Progress(args.max_experiments)
    logs.before_log = progress.clear if progress.tty else None
    research = build(_options(args), observer=progress)
    loop = research.loop
    log.info("solo research", tier=research.tier.name, role=research.tier.role,
             budget=research.bench["budget"], corpus=research.corpus.name, home=str(research.home.root))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.tick)
            try:
                await loop.prepare(research.target.dir, research.tier.baseline)
                progress.set_best(loop.head.val_bpb)
                while args.max_experiments is None or loop.finished < args.max_experiments:
                    record = await loop.step()
                    await trio.to_thread.run_sync(write_results_tsv, research.ledger, research.home.results_tsv)
                    progress.set_best(loop.head.val_bpb)
                    if record is None:
                        log.warning("the proposers have nothing left to try; stopping")
                        break
            finally:
                research.ledger.recover_interrupted()  # Ctrl-C mid-run: recorded as interrupted
                write_results_tsv(research.ledger, research.home.results_tsv)
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except KeyboardInterrupt:
        progress.clear()
        print("stopped: the experiment in flight was recorded as interrupted", file=sys.stderr)
        return 130
    progress.clear()
    c = research.ledger.counters()
    print(f"done: best val_bpb {loop.head.val_bpb:.4f} (state {loop.head.state[:12]}); "
          f"keep {c.get('keep', 0)}, discard {c.get('discard', 0)}, crash {c.get('crash', 0)}; "
          f"results in {research.home.results_tsv}")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from .home import Home
    from .ledger import Ledger
    from .report import write_report
    home = Home.from_env(args.home)
    if not home.ledger.exists():
        print(f"error: no ledger in {home.root}: run `swarm-node run --solo` first (or pass --home)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else home.root
    png, md = write_report(Ledger(home.ledger), out)
    print(f"wrote {png} and {md}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(json_lines=getattr(args, "log_json", False))
    from .research.session import SetupError
    from .research.target import CorpusError
    from .research.loop import BaselineFailed
    from .research.runner import HarnessChanged
    try:
        return args.func(args)
    except (SetupError, CorpusError, BaselineFailed, HarnessChanged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
