"""Every command of swarm-node. `swarm-node COMMAND --help` explains each."""
from __future__ import annotations

import argparse
import json
import sys

import structlog
import trio

from . import __version__, logs

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

log = structlog.get_logger("swarm_node.cli")

EPILOG = """examples:
  swarm-node hardware                          what this machine is and which tier it joins
  swarm-node run --solo --budget 2e11 --max-experiments 6 --data tinyshakespeare.txt
  swarm-node report                            progress.png and report.md from the ledger

Everything a node keeps lives in SWARM_NODE_HOME (default ~/.swarm-node) or --home DIR."""


def _research_args(p: argparse.ArgumentParser) -> None:
    from .research.decision import Rule
    from .research.runner import MEMORY_LIMIT_GB
    g = p.add_argument_group("research")
    g.add_argument("--budget", type=float, help="training budget of one run: FLOPs in compute mode (e.g. 2e11), "
                   "seconds in time mode (default: the tier's; see `swarm-node hardware`)")
    g.add_argument("--budget-mode", choices=("compute", "time"), default="compute",
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
    g.add_argument("--proposer", choices=("heuristic", "evolve", "claude"), default="heuristic",
                   help="who proposes changes: a role-aware grid search, an evolutionary search, or Claude "
                   "(needs ANTHROPIC_API_KEY); default heuristic")
    g.add_argument("--policy", choices=("hparams", "code"), default="hparams",
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
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    g.add_argument("--threads", type=int, help="torch threads per training run (default: torch's choice)")
    g.add_argument("--seed", type=int, default=0, help="seed of the proposers' random choices")
    g.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT_GB, metavar="GB",
                   help=f"address-space limit of a CPU training run (default {MEMORY_LIMIT_GB:g}; 0 for none)")
    g.add_argument("--target", default="tinygpt", help="research target: a shipped name or a folder with "
                   "prepare.py and train.py (autoresearch style); default tinygpt")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="node home (default: $SWARM_NODE_HOME or ~/.swarm-node)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of readable text")


def parser() -> argparse.ArgumentParser:
    from .dashboard.server import DEFAULT_PORT
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
    p.add_argument("--listen", action="append", default=[], metavar="MULTIADDR",
                   help="where to accept peers (repeatable; default /ip4/0.0.0.0/tcp/4001)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="adopt peers' discoveries without re-measuring them (default: re-measure)")
    p.add_argument("--dashboard", nargs="?", const=DEFAULT_PORT, type=int, metavar="PORT",
                   help=f"serve the gossip dashboard from this node (default port {DEFAULT_PORT})")
    p.add_argument("--dashboard-host", default="127.0.0.1",
                   help="dashboard address (default 127.0.0.1). The page answers only requests addressed to "
                        "localhost, a loopback or IP address, or this host, so a web page cannot read it "
                        "through DNS rebinding")
    p.add_argument("--presence-interval", type=float, default=5.0, metavar="S", help="heartbeat period")
    _common(p)
    _research_args(p)
    p.set_defaults(func=cmd_join)

    p = sub.add_parser("status", help="what a running node is doing (reads its home)")
    p.add_argument("--home", metavar="DIR", help="node home (default: $SWARM_NODE_HOME or ~/.swarm-node)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("bench-table", help="measure the replay's table: real trainings over a grid",
                       description="Train the tinygpt target over the grid in configs/bench_grid.toml: for each "
                       "tier, each configuration with each seed at the tier's compute budget (training FLOPs, so a "
                       "row re-trains to the same value elsewhere). Writes the table the replay's oracle reads, "
                       "row by row; run it again to resume where it stopped.")
    p.add_argument("--data", metavar="FILE", required=True, help="the corpus (Tiny Shakespeare)")
    p.add_argument("--out", metavar="FILE", help="default: experiments/tinygpt/table.json")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1)")
    p.add_argument("--tier", action="append", metavar="NAME",
                   help="measure only this tier (repeatable, in this order; default: every tier of bench_grid.toml)")
    p.add_argument("--limit", type=int, help="only the first N configurations of each tier (for a quick look)")
    p.set_defaults(func=cmd_bench_table)

    p = sub.add_parser("replay", help="re-run a 35-agent night on this machine in minutes (no GPU, no key)",
                       description="Replay a March 8-9 style night: 35 agents running the real node code on "
                       "127.0.0.1, their training answered by a table of real tinygpt trainings, time compressed "
                       "by a virtual clock. Writes events.jsonl, summary.json, REPORT.md and trajectory.png.")
    p.add_argument("--scenario", metavar="FILE", help="scenario TOML (default configs/replay_march8.toml)")
    p.add_argument("--seed", type=int, default=1, help="the replay's seed: same seed, same decisions (default 1)")
    p.add_argument("--seeds", metavar="RANGE", help="replay the night once per seed (e.g. 1-10, or 1,4,7) into "
                   "OUT/seed-N/ and write a REPORT.md of the distributions over seeds (with --compare: gossip vs "
                   "isolated with 95 %% intervals, and the null-table control)")
    p.add_argument("--out", metavar="DIR", default="replay-out", help="where to write (default ./replay-out)")
    p.add_argument("--no-gossip", dest="gossip", action="store_false", help="the same agents, isolated")
    p.add_argument("--compare", action="store_true", help="also run the controls and compare: the same night "
                   "without gossip, and on a null table (every row answers from the baseline's distribution, so "
                   "every keep there is false)")
    p.add_argument("--dashboard", nargs="?", const=DEFAULT_PORT, type=int, metavar="PORT",
                   help=f"watch it live in the dashboard (default port {DEFAULT_PORT}; stays up until Ctrl-C)")
    p.add_argument("--table", metavar="FILE", help="the measured table (default experiments/tinygpt/table.json)")
    p.set_defaults(func=cmd_replay)

    from .dashboard.command import add_dashboard_parser
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
    from .research.session import Options
    return Options(home=args.home, data=args.data, budget=args.budget, budget_mode=args.budget_mode, tier=args.tier,
                   proposer=args.proposer, policy=args.policy, prior_sd=args.prior_sd, min_delta=args.min_delta, t=args.t,
                   device=args.device, threads=args.threads, seed=args.seed, target=args.target,
                   max_seconds=args.max_seconds, memory_limit_gb=args.memory_limit or None)


def cmd_run(args) -> int:
    from .progress import Progress
    from .report import write_results_tsv
    from .research.session import build

    progress = Progress(args.max_experiments)
    logs.before_log = progress.clear if progress.tty else None
    research = build(_options(args), observer=progress)
    loop = research.loop
    log.info("solo research", tier=research.tier.name, role=research.tier.role,
             budget=_budget_label(research.bench), corpus=research.corpus.name, home=str(research.home.root))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_sigterm, nursery.cancel_scope)
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

    if _run_until_interrupted(main):
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
    from .research.session import build

    if args.budget_mode == "time":
        print("error: --budget-mode time is for one dedicated machine researching alone (`swarm-node run --solo`): "
              "a run's result in seconds depends on its machine's speed and load, so peers could not compare "
              "theirs with it. A swarm shares compute budgets (the default, --budget-mode compute).",
              file=sys.stderr)
        return 2
    progress = Progress(args.max_experiments)
    logs.before_log = progress.clear if progress.tty else None
    research = build(_options(args))
    opts = NodeOptions(listen=args.listen or ["/ip4/0.0.0.0/tcp/4001"], bootstrap=args.bootstrap,
                       verify=args.verify, max_experiments=args.max_experiments,
                       presence_interval=args.presence_interval, dashboard_port=args.dashboard,
                       dashboard_host=args.dashboard_host)
    node = Node(research, opts, observer=progress)
    log.info("joining the swarm", peer=node.peer_id, tier=research.tier.name, role=research.tier.role,
             budget=_budget_label(research.bench), home=str(research.home.root))

    failed: list[BaselineFailed] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_sigterm, nursery.cancel_scope)
            nursery.start_soon(progress.tick)
            try:
                await node.run()
            except BaseException as exc:  # a baseline that crashes: nothing to compare against
                baseline = _find(exc, BaselineFailed)
                if baseline is None:
                    raise
                failed.append(baseline)
                nursery.cancel_scope.cancel()
            finally:
                research.ledger.recover_interrupted()
                node.events.close()

    _run_until_interrupted(main)
    progress.clear()
    if failed:
        print(f"error: {failed[0]}\nThe target's train.py must run on this machine before the node can research; "
              f"check it with `swarm-node run --solo --max-experiments 0` and the output above.", file=sys.stderr)
        return 2
    print("stopped: any experiment in flight was recorded as interrupted", file=sys.stderr)
    return 0


def _run_until_interrupted(main) -> bool:
    """trio.run(main); True if Ctrl-C ended it."""
    try:
        trio.run(main)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        return True
    return False


def _find(exc: BaseException, kind: type) -> BaseException | None:
    """`exc` itself or the first `kind` inside trio's exception groups; None if there is none."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for e in exc.exceptions if (found := _find(e, kind)) is not None), None)
    return None


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, possibly wrapped in trio's exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_interrupted(e) for e in exc.exceptions)
    return False


async def _stop_on_sigterm(scope) -> None:
    import signal
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def cmd_status(args) -> int:
    import time

    from .home import Home
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
    print(f"tier       {data['tier']} ({data['role']}), budget {_budget_label(data['bench'])}")
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


def _budget_label(bench: dict) -> str:
    if bench.get("unit", "seconds") == "flops":
        return f"{bench['budget']:.3g} FLOPs"
    return f"{bench['budget']} s"


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_replay(args) -> int:
    import time
    from functools import partial
    from pathlib import Path

    from .replay.engine import replay
    from .replay.scenario import load_scenario
    from .replay.table import load_table

    import logging
    logs.configure(json_lines=False, level="error")  # 35 nodes' logs would drown the progress line
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # agents leaving make py-libp2p log tracebacks
    scenario = load_scenario(args.scenario)
    try:
        table = load_table(Path(args.table) if args.table else None)
        for tier in sorted({a.tier for a in scenario.agents} - set(table["tiers"])):
            raise ValueError(f"the scenario's tier {tier!r} has no table in {args.table or 'table.json'} (it has "
                             f"{', '.join(table['tiers'])}): measure it with `swarm-node bench-table --tier {tier}`")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if args.seeds:
        from .replay.study import parse_seeds
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.dashboard is not None or not args.gossip:
            print("error: --seeds runs whole studies; use --seed N for --dashboard or --no-gossip", file=sys.stderr)
            return 2
    print(f"replaying {scenario.name}: {len(scenario.agents)} agents, {scenario.night_seconds / 3600:.0f} virtual "
          f"hours, {f'seeds {args.seeds}' if args.seeds else f'seed {args.seed}'}, gossip {'on' if args.gossip else 'off'} -> {out}", flush=True)
    async def dashboard(event_logs):
        from .dashboard.app import create_app
        from .dashboard.server import serve
        from .dashboard.sources import LiveSource
        while not event_logs:
            await trio.sleep(0.05)
        app = create_app(LiveSource(event_logs[0], mode="replay", title=f"replay {scenario.name}"))
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, app, host="127.0.0.1", port=args.dashboard))
            print(f"dashboard: {url} (stays up after the replay; Ctrl-C to stop)", flush=True)
    start = time.monotonic()
    reported = []
    if args.seeds:
        from .replay.study import run_study

        async def study() -> None:
            s = await run_study(scenario, table, seeds, out, compare=args.compare,
                                progress=lambda line: print(line, flush=True))
            reported.append(s)
            print(f"done in {time.monotonic() - start:.0f} s: {len(seeds)} seeds; report: {out / 'REPORT.md'}",
                  flush=True)
        interrupted = _run_until_interrupted(study)
        return 0 if reported else 130 if interrupted else 1

    def done(summary: dict) -> None:
        reported.append(summary)
        bests = ", ".join(f"{tier} {v:.4f}" for tier, v in sorted(summary["best_by_tier"].items()))
        print(f"done in {time.monotonic() - start:.0f} s: {summary['experiments']} training runs, "
              f"{summary['keeps']} keeps, best val_bpb per tier: {bests}; "
              f"report: {out / 'REPORT.md'}" + ("; the dashboard stays up until Ctrl-C" if args.dashboard is not None
                                                else ""), flush=True)

    async def main() -> None:
        await replay(scenario, table, seed=args.seed, out=out, gossip=args.gossip, compare=args.compare,
                     progress=lambda line: print(line, flush=True), on_report=done,
                     dashboard=dashboard if args.dashboard is not None else None)
    interrupted = _run_until_interrupted(main)
    return 0 if reported else 130 if interrupted else 1


def cmd_bench_table(args) -> int:
    import time
    from pathlib import Path

    from .assets import target_dir
    from .replay.table import DEFAULT_TABLE, measure_table
    out = Path(args.out) if args.out else target_dir("tinygpt") / DEFAULT_TABLE
    if not Path(args.data).is_file():
        print(f"error: no corpus at {args.data}: pass --data FILE (Tiny Shakespeare)", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        table = measure_table(out, Path(args.data).resolve(), tiers=args.tier, jobs=args.jobs, threads=args.threads,
                              limit=args.limit, progress=lambda line: print(line, flush=True))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {len(t['rows'])}" for name, t in table["tiers"].items())
    print(f"wrote {out}: configurations per tier: {sizes}, in {time.monotonic() - start:.0f} s")
    return 0


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
