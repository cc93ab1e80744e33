"""The swarm-node command line: the parser, `main`, and the node's own commands (hardware, run, join,
status, report). `replay` and `bench-table` are in replay/commands.py, `dashboard` in dashboard/command.py.
`swarm-node COMMAND --help` explains each."""
from __future__ import annotations

import argparse
import json
import sys

import structlog
import trio

from . import __version__, logs
from .interrupts import find, run_until_interrupted, stop_on_sigterm

log = structlog.get_logger("swarm_node.cli")

EPILOG = """examples:
  swarm-node hardware                          what this machine is and which tier it joins
  swarm-node run --solo --budget 2e11 --max-experiments 6 --data tinyshakespeare.txt
  swarm-node report                            progress.png and report.md from the ledger

Everything a node keeps lives in SWARM_NODE_HOME (default ~/.swarm-node) or --home DIR."""


def _research_args(p: argparse.ArgumentParser) -> None:
    from .research import budget, policy
    from .research.decision import Rule
    from .research.runner import MEMORY_LIMIT_GB
    from .research.setup import PROPOSERS, Options
    g = p.add_argument_group("research")
    g.add_argument("--budget", type=float, help="training budget of one run: FLOPs in compute mode (e.g. 2e11), "
                   "seconds in time mode (default: the tier's; see `swarm-node hardware`)")
    g.add_argument("--budget-mode", choices=budget.MODES, default=Options.budget_mode,
                   help="compute (default): every run trains for the same FLOPs, counted by the target's harness, "
                   "so results do not depend on the machine's speed or load and can be shared; time: a fixed "
                   "number of seconds (autoresearch), for one dedicated machine researching alone (`run --solo` "
                   "only)")
    g.add_argument("--max-seconds", type=float, metavar="S", help="wall-clock limit of one run, start-up and "
                   "evaluation included; a run past it is a crash (too slow for this tier). Default: the tier's "
                   "(compute mode), or budget + 60 + budget/4 (time mode)")
    g.add_argument("--max-experiments", type=int, default=None, metavar="N",
                   help="stop after N experiments (the baseline not counted); default: run until Ctrl-C")
    g.add_argument("--data", metavar="FILE", help="train on your own corpus (its sha256 joins the benchmark key); "
                   "default: Tiny Shakespeare from SWARM_NODE_DATA, the cache, or a download")
    g.add_argument("--proposer", choices=PROPOSERS, default=Options.proposer,
                   help="who proposes changes: a role-aware grid search, an evolutionary search, or Claude "
                   f"(needs ANTHROPIC_API_KEY); default {Options.proposer}")
    g.add_argument("--policy", choices=policy.MODES, default=Options.policy,
                   help="hparams: only literal values in train.py's hyperparameter block may change (default); "
                   "code: any change to train.py (still sandboxed)")
    g.add_argument("--tier", help="override the detected hardware tier (see `swarm-node hardware`)")
    g.add_argument("--prior-sd", "--sigma", dest="prior_sd", type=float, metavar="SD",
                   help="SD of a paired difference in val_bpb to assume until the node's own history outweighs "
                   "it (default: the baseline's seed-to-seed spread)")
    g.add_argument("--min-delta", type=float, default=Rule.min_delta,
                   help=f"smallest improvement in val_bpb ever kept (default {Rule.min_delta})")
    g.add_argument("--t", type=float, default=Rule.t,
                   help=f"keep only above this many standard errors of the paired mean (default {Rule.t}; more "
                   "while the pooled SD rests on few differences)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=Options.device)
    g.add_argument("--threads", type=int, help="torch threads per training run (default: torch's choice)")
    g.add_argument("--seed", type=int, default=Options.seed, help="seed of the proposers' random choices")
    g.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT_GB, metavar="GB",
                   help=f"address-space limit of a CPU training run (default {MEMORY_LIMIT_GB:g}; 0 for none)")
    g.add_argument("--target", default=Options.target, help="research target: a shipped name or a folder with "
                   f"prepare.py and train.py (autoresearch style); default {Options.target}")


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="node home (default: $SWARM_NODE_HOME or ~/.swarm-node)")


def _common(p: argparse.ArgumentParser) -> None:
    _home(p)
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of readable text")


def parser() -> argparse.ArgumentParser:
    from .dashboard.command import add_dashboard_parser
    from .dashboard.server import DEFAULT_HOST, DEFAULT_PORT
    from .p2p.dialing import JOIN_LISTEN
    from .replay.commands import add_replay_parsers
    top = argparse.ArgumentParser(
        prog="swarm-node", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Autonomous keep/discard research loops that share winning diffs over a "
                    "peer-to-peer network.")
    top.add_argument("--version", action="version", version=f"swarm-node {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("hardware", help="show this machine's profile, tier, role, budget and model")
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

    p = sub.add_parser("join", help="join a swarm (or start one) and research with it",
                       description="Run a swarm node: the keep/discard loop sized to this machine, sharing "
                       "winning diffs over libp2p GossipSub and adopting peers' discoveries after re-measuring "
                       "them. Without --bootstrap this node is the first of a new swarm; it prints the address "
                       "others pass to --bootstrap.", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  swarm-node join --bootstrap /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW...")
    p.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                   help="a peer to join through, with /p2p/<peer id> (repeatable)")
    # --listen, --dashboard-host, --presence-interval: unset unless given, so NodeOptions' defaults apply
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help=f"where to accept peers (repeatable; default {JOIN_LISTEN})")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="adopt peers' discoveries without re-measuring them (default: re-measure)")
    p.add_argument("--dashboard", nargs="?", const=DEFAULT_PORT, type=int, metavar="PORT",
                   help=f"serve the gossip dashboard from this node (default port {DEFAULT_PORT})")
    p.add_argument("--dashboard-host",
                   help=f"dashboard address (default {DEFAULT_HOST}). The page answers only requests addressed to "
                        "localhost, a loopback or IP address, or this host, so a web page cannot read it "
                        "through DNS rebinding")
    p.add_argument("--presence-interval", type=float, metavar="S", help="heartbeat period")
    _common(p)
    _research_args(p)
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("status", help="what a running node is doing (reads its home)")
    _home(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    add_replay_parsers(sub)
    add_dashboard_parser(sub)

    p = sub.add_parser("report", help="draw progress.png and write report.md from the ledger")
    _common(p)
    p.add_argument("--out", metavar="DIR", help="where to write (default: the node's home)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained dashboard snapshot of the "
                   "node's events (or of a replay's, with --replay DIR)")
    p.add_argument("--replay", metavar="DIR", help="with --html: snapshot a replay's events.jsonl instead")
    p.set_defaults(func=cmd_report)
    return top


def cmd_hardware(args) -> int:
    from .research.hardware import detect, pick_tier
    profile = detect()
    tier = pick_tier(profile, args.tier)
    if args.json:
        print(json.dumps({"hardware": profile.as_dict(), "tier": tier.name, "role": tier.role,
                          "budget_flops": tier.budget_flops, "time_budget": tier.time_budget,
                          "max_seconds": tier.max_seconds, "seeds": tier.seeds, "confirm_seeds": tier.confirm_seeds,
                          "baseline": tier.baseline}, indent=2))
        return 0
    device = profile.device_name or "none"
    print(f"accelerator  {profile.accelerator} ({device}{f', {profile.memory_gb} GB' if profile.memory_gb else ''})")
    print(f"cpu          {profile.cpu_cores} cores, {profile.ram_gb} GB RAM, torch {profile.torch}")
    print(f"tier         {tier.name}{' (override)' if args.tier else ''}: {tier.description}")
    print(f"role         {tier.role}")
    print(f"budget       {tier.budget_flops:.3g} training FLOPs per run (at most {tier.max_seconds:g} s of wall "
          f"clock); --budget-mode time: {tier.time_budget:g} s")
    print(f"seeds        {tier.seeds} per experiment, {tier.confirm_seeds} more to confirm a keep")
    print(f"model        {', '.join(f'{k}={v}' for k, v in tier.baseline.items())}")
    return 0


def _options(args):
    from .research.setup import Options
    return Options(home=args.home, data=args.data, budget=args.budget, budget_mode=args.budget_mode, tier=args.tier,
                   proposer=args.proposer, policy=args.policy, prior_sd=args.prior_sd, min_delta=args.min_delta, t=args.t,
                   device=args.device, threads=args.threads, seed=args.seed, target=args.target,
                   max_seconds=args.max_seconds, memory_limit_gb=args.memory_limit or None)


def cmd_run(args) -> int:
    from .progress import Progress
    from .report import write_results_tsv
    from .research.setup import setup

    progress = Progress(args.max_experiments)
    logs.before_log = progress.clear if progress.tty else None
    research = setup(_options(args), observer=progress)
    loop = research.loop
    log.info("solo research", tier=research.tier.name, role=research.tier.role,
             budget=research.loop.settings.budget.label(), corpus=research.corpus.name, home=str(research.home.root))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_sigterm, nursery.cancel_scope)
            nursery.start_soon(progress.tick)
            try:
                await loop.prepare(research.target.dir, research.tier.baseline)
                while args.max_experiments is None or loop.finished < args.max_experiments:
                    record = await loop.step()
                    await trio.to_thread.run_sync(write_results_tsv, research.ledger, research.home.results_tsv)
                    if record is None:
                        log.warning("the proposers have nothing left to try; stopping")
                        break
            finally:
                research.ledger.recover_interrupted()  # Ctrl-C mid-run: recorded as interrupted
                write_results_tsv(research.ledger, research.home.results_tsv)
            nursery.cancel_scope.cancel()

    if run_until_interrupted(main):
        progress.clear()
        print("stopped: the experiment in flight was recorded as interrupted", file=sys.stderr)
        return 130
    progress.clear()
    if loop.head is None:
        print("stopped before the baseline was measured", file=sys.stderr)
        return 130
    c = research.ledger.counters()
    print(f"done: best val_bpb {loop.head.val_bpb:.4f} (state {loop.head.state[:12]}); "
          f"keep {c.get('keep', 0)}, discard {c.get('discard', 0)}, crash {c.get('crash', 0)}; "
          f"results in {research.home.results_tsv}")
    return 0


def cmd_join(args) -> int:
    from .node import Node, NodeOptions
    from .progress import Progress
    from .research.loop import BaselineFailed
    from .research.setup import setup

    if args.budget_mode == "time":
        print("error: --budget-mode time is for one dedicated machine researching alone (`swarm-node run --solo`): "
              "a run's result in seconds depends on its machine's speed and load, so peers could not compare "
              "theirs with it. A swarm shares compute budgets (the default, --budget-mode compute).",
              file=sys.stderr)
        return 2
    progress = Progress(args.max_experiments)
    logs.before_log = progress.clear if progress.tty else None
    research = setup(_options(args))
    given = {"listen": args.listen, "presence_interval": args.presence_interval, "dashboard_host": args.dashboard_host}
    opts = NodeOptions(bootstrap=args.bootstrap, verify=args.verify, max_experiments=args.max_experiments,
                       dashboard_port=args.dashboard, **{k: v for k, v in given.items() if v is not None})
    node = Node(research, opts, observer=progress)
    log.info("joining the swarm", peer=node.peer_id, tier=research.tier.name, role=research.tier.role,
             budget=research.loop.settings.budget.label(), home=str(research.home.root))

    failed: list[BaselineFailed] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_sigterm, nursery.cancel_scope)
            nursery.start_soon(progress.tick)
            try:
                await node.run()
            except BaseException as exc:  # a baseline that crashes: nothing to compare against
                baseline = find(exc, BaselineFailed)
                if baseline is None:
                    raise
                failed.append(baseline)
                nursery.cancel_scope.cancel()
            finally:
                research.ledger.recover_interrupted()
                node.events.close()

    run_until_interrupted(main)
    progress.clear()
    if failed:
        print(f"error: {failed[0]}\nThe target's train.py must run on this machine before the node can research; "
              f"check it with `swarm-node run --solo --max-experiments 0` and the output above.", file=sys.stderr)
        return 2
    print("stopped: any experiment in flight was recorded as interrupted", file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    import time

    from .home import Home
    from .research.target import budget_text
    home = Home.from_env(args.home)
    path = home.status_file
    if not path.exists():
        print(f"error: no node has run in {home.root} (no status.json): start one with `swarm-node join`",
              file=sys.stderr)
        return 2
    data = json.loads(path.read_text())
    age = time.time() - data["updated_at"]
    data["running"] = age < 15 and _alive(data["pid"])
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    state = "running" if data["running"] else f"NOT running (last update {age:.0f} s ago)"
    print(f"node       {data['peer_id']} ({state}, research {data['research']})")
    for addr in data["listen_addrs"]:
        print(f"listening  {addr}")
    print(f"tier       {data['tier']} ({data['role']}), budget {budget_text(data['bench'])}")
    peers = ", ".join(f"{p['peer'][:12]}…({p['tier'] or '?'})" for p in data["connected_peers"]) or "none"
    print(f"peers      {len(data['connected_peers'])} connected: {peers}; {data['known_peers']} known")
    if data["head"]:
        h = data["head"]
        print(f"head       {h['state'][:12]} val_bpb {h['val_bpb']:.4f}")
    for tier, b in data["best"].items():
        print(f"best       {tier}: {b['val_bpb']:.4f} (test {b['test_bpb'] if b['test_bpb'] is None else round(b['test_bpb'], 4)}) "
              f"state {b['state'][:12]} by {b['author'][:12]}…")
    print(f"research   {data['experiments']} experiments, {data['keeps']} keeps, {data['adoptions']} adoptions, "
          f"{data['refused']} refused")
    if data.get("noise"):
        n = data["noise"]
        print(f"noise      SD of a paired difference {n['paired_sd']:.4f} ({n['df']} df, pooled over this node's "
              f"history); decisions on seeds {n['decision_seeds']}, confirmed on {n['confirm_seeds']}")
    rejected = ", ".join(f"{r} {n}" for r, n in data["rejected"].items()) or "none"
    print(f"rejected   {rejected}")
    return 0


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_report(args) -> int:
    from pathlib import Path

    from .home import Home
    from .ledger import Ledger
    from .report import write_report
    if args.html and args.replay:
        return _export_html(Path(args.replay) / "events.jsonl", Path(args.html), f"replay {args.replay}")
    home = Home.from_env(args.home)
    if not home.ledger.exists():
        print(f"error: no ledger in {home.root}: run `swarm-node run --solo` first (or pass --home)", file=sys.stderr)
        return 2
    if args.html:
        if _export_html(home.root / "events.jsonl", Path(args.html), f"node {home.root}"):
            return 2
    out = Path(args.out) if args.out else home.root
    png, md = write_report(Ledger(home.ledger), out)
    print(f"wrote {png} and {md}")
    return 0


def _export_html(events_path, out, title: str) -> int:
    from .dashboard.command import export_html
    from .events import read_jsonl
    if not events_path.is_file():
        print(f"error: no events at {events_path} (a node writes them while it runs `join`; a replay into its "
              "--out folder)", file=sys.stderr)
        return 2
    print(f"wrote {export_html(read_jsonl(events_path), out, title)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(json_lines=getattr(args, "log_json", False))
    from .research.setup import SetupError
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
