"""`swarm-node bench-table` and `swarm-node replay`: measure the table of real trainings, and replay a
night of agents answered from it."""
from __future__ import annotations

import inspect
import logging
import sys
import time
from functools import partial
from pathlib import Path

import trio

from .. import logs
from ..assets import target_dir
from ..dashboard.server import DEFAULT_PORT
from ..interrupts import run_until_interrupted
from .scenario import DEFAULT_SCENARIO, load_scenario
from .table import DEFAULT_TABLE, load_table, measure_table


def add_replay_parsers(sub) -> None:
    """The `bench-table` and `replay` subcommands, in that order."""
    measured = {name: param.default for name, param in inspect.signature(measure_table).parameters.items()}
    table_path = f"experiments/tinygpt/{DEFAULT_TABLE}"

    p = sub.add_parser("bench-table", help="measure the replay's table: real trainings over a grid",
                       description="Train the tinygpt target over the grid in configs/bench_grid.toml: for each "
                       "tier, each configuration with each seed at the tier's compute budget (training FLOPs, so a "
                       "row re-trains to the same value elsewhere). Writes the table the replay's oracle reads, "
                       "row by row; run it again to resume where it stopped.")
    p.add_argument("--data", metavar="FILE", required=True, help="the corpus (Tiny Shakespeare)")
    p.add_argument("--out", metavar="FILE", help=f"default: {table_path}")
    p.add_argument("--jobs", type=int, default=measured["jobs"],
                   help=f"trainings at once (default {measured['jobs']})")
    p.add_argument("--threads", type=int, default=measured["threads"],
                   help=f"torch threads per training (default {measured['threads']})")
    p.add_argument("--tier", action="append", metavar="NAME",
                   help="measure only this tier (repeatable, in this order; default: every tier of bench_grid.toml)")
    p.add_argument("--limit", type=int, help="only the first N configurations of each tier (for a quick look)")
    p.set_defaults(func=cmd_bench_table)

    p = sub.add_parser("replay", help="re-run a 35-agent night on this machine in minutes (no GPU, no key)",
                       description="Replay a March 8-9 style night: 35 agents running the real node code on "
                       "127.0.0.1, their training answered by a table of real tinygpt trainings, time compressed "
                       "by a virtual clock. Writes events.jsonl, summary.json, REPORT.md and trajectory.png.")
    p.add_argument("--scenario", metavar="FILE", help=f"scenario TOML (default configs/{DEFAULT_SCENARIO})")
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
    p.add_argument("--table", metavar="FILE", help=f"the measured table (default {table_path})")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    from .engine import replay  # the nodes, libp2p included: only when a night is replayed

    logs.configure(json_lines=False, level="error")  # 35 nodes' logs would drown the progress line
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # agents leaving make py-libp2p log tracebacks
    scenario = load_scenario(args.scenario)
    try:
        table = load_table(Path(args.table) if args.table else None)
        for tier in sorted({a.tier for a in scenario.agents} - set(table["tiers"])):
            raise ValueError(f"the scenario's tier {tier!r} has no table in {args.table or DEFAULT_TABLE} (it has "
                             f"{', '.join(table['tiers'])}): measure it with `swarm-node bench-table --tier {tier}`")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    if args.seeds:
        from .study import parse_seeds
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
        from ..dashboard.app import create_app
        from ..dashboard.server import serve
        from ..dashboard.sources import LiveSource
        while not event_logs:
            await trio.sleep(0.05)
        app = create_app(LiveSource(event_logs[0], mode="replay", title=f"replay {scenario.name}"))
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(serve, app, host="127.0.0.1", port=args.dashboard))
            print(f"dashboard: {url} (stays up after the replay; Ctrl-C to stop)", flush=True)
    start = time.monotonic()
    reported = []
    if args.seeds:
        from .study import run_study

        async def study() -> None:
            s = await run_study(scenario, table, seeds, out, compare=args.compare,
                                progress=lambda line: print(line, flush=True))
            reported.append(s)
            print(f"done in {time.monotonic() - start:.0f} s: {len(seeds)} seeds; report: {out / 'REPORT.md'}",
                  flush=True)
        interrupted = run_until_interrupted(study)
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
    interrupted = run_until_interrupted(main)
    return 0 if reported else 130 if interrupted else 1


def cmd_bench_table(args) -> int:
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
