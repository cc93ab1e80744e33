"""`swarm-node replay`: a whole night of a swarm, on one machine, in minutes.

Every agent is the node that `join` runs (libp2p host, GossipSub, claims, discoveries,
verification, adoption, the same proposers and keep/discard rule) with the table oracle as its
runner and the virtual clock deciding who goes next. `gossip=False` runs the same agents with
no connections: the ablation.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import trio

from ..events import EventLog
from ..node import Node, NodeOptions
from ..research.hardware import HardwareProfile, Tier
from ..research.setup import Options, setup
from ..research.target import Corpus
from .analysis import solo_race
from .clock import VirtualClock, current_agent
from .delivery import ClockDelivery
from .oracle import OracleRunner, TableOracle
from .scenario import AgentSpec, Scenario

log = structlog.get_logger("swarm_node.replay")

TYPE_ORDER = {"claim": 0, "result": 1, "discovery": 2, "adoption": 3, "presence": 4}


@dataclass
class Agent:
    spec: AgentSpec
    node: Node
    ready: bool = False
    gone: bool = False
    joined_wall: float = 0.0  # time.time() at its start: what was published before is not its news
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


@dataclass
class NightResult:
    out: Path
    gossip: bool
    wall_seconds: float
    runs: int
    gossip_timeouts: int
    agents: dict[str, Agent]


def _seed_for(replay_seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{replay_seed}/{name}".encode()).digest()[:4], "big")


def _build_agent(spec: AgentSpec, out: Path, table: dict, oracle: TableOracle, counter: list, clock: VirtualClock,
                 events: EventLog, seed: int, delivery: ClockDelivery) -> Agent:
    home = out / "agents" / spec.name
    corpus = Corpus(path=Path("table"), sha256=table["corpus_sha256"], name="tinyshakespeare.txt", bytes=0)
    seeds = sorted(int(x) for x in table["seeds"])  # runs are reproducible: an agent runs exactly these
    decision = min(3, len(seeds))
    tier = Tier(name=spec.tier, description=spec.group, role=spec.group, budget_flops=oracle.budget_flops,
                time_budget=spec.experiment_seconds, max_seconds=spec.experiment_seconds, seeds=decision,
                confirm_seeds=len(seeds) - decision, baseline=dict(oracle.table["base"]))
    profile = HardwareProfile(accelerator="cpu", device_name=spec.hardware, memory_gb=0.0, cpu_cores=0,
                              ram_gb=0.0, torch="table")
    space = agent_space(table)
    runner = OracleRunner(oracle, clock, spec.name, spec.experiment_seconds, counter)
    research = setup(Options(home=str(home), seed=_seed_for(seed, spec.name)), profile=profile, runner=runner,
                     corpus=corpus, tier=tier, space=space, explore=list(spec.explore), clock=clock.event_time)
    # A Presence floods all 35 hosts on this one core (about 0.5 s of CPU each) and the replay needs
    # none of it (agents dial whom the scenario says; the dashboard reads events): one per agent
    # every 5 real minutes, not every 5 s as in a real swarm, which would eat most of the core.
    # Discoveries are sent once: the clock's barrier already waits for every copy to arrive, and a
    # second copy 2 real seconds later would land in whichever window it happened to reach.
    # No gossip quotas: the clock's barrier paces the agents, and a quota met in a burst of real
    # time would make the night's decisions depend on how fast this machine is.
    node = Node(research, NodeOptions(max_experiments=None, presence_interval=300.0, republish_discoveries=False,
                                      quotas=None),
                events=events, listen=["/ip4/127.0.0.1/tcp/0"], delivery=delivery, name=spec.name)
    return Agent(spec=spec, node=node)


def agent_space(table: dict) -> dict:
    """What a replay agent may propose and run: the grid's values (all the table can answer), and
    every tier's model size within bounds but with no grid (so no proposer steps through it): a
    peer's diff shows its tier's size lines as context, and a real node's search space allows
    those too, so another tier's discovery is forwarded and its change transferable."""
    space = {name: {"choices": list(values)} for name, values in table["grid"].items()}
    for name in sorted({n for t in table["tiers"].values() for n in t["base"]} - set(space)):
        values = [t["base"][name] for t in table["tiers"].values() if name in t["base"]]
        space[name] = {"min": min(values), "max": max(values)}
    return space


async def run_night(scenario: Scenario, table: dict, *, seed: int, out: Path, gossip: bool = True,
                    progress=print, dashboard_events: list | None = None, window: float = 300.0) -> NightResult:
    """`window`: virtual seconds in which agents act without hearing each other (see clock.py)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    clock = VirtualClock()
    oracles = {tier: TableOracle(table, tier) for tier in sorted({a.tier for a in scenario.agents})}
    counter: list = []  # one entry per training run the tables answered
    events = EventLog(out / "events.jsonl", clock=clock.event_time)
    if dashboard_events is not None:
        dashboard_events.append(events)
    rng = random.Random(seed)
    agents: dict[str, Agent] = {}
    started = time.monotonic()

    def ready_names(excluding: str) -> set[str]:
        return {n for n, a in agents.items() if a.ready and not a.gone and n != excluding}

    async def live(agent: Agent, task_status=trio.TASK_STATUS_IGNORED) -> None:
        name, node = agent.spec.name, agent.node
        current_agent.set(name)
        agent.joined_wall = time.time()
        with agent.scope:
            try:
                async with trio.open_nursery() as nursery:
                    await node.start(nursery)
                    task_status.started()
                    if gossip:
                        await _connect(agent, agents, rng, events, scenario.connections)
                    agent.ready = True
                    await node.run_research()
            finally:
                _leave(agent, clock, events)
                node.ledger.recover_interrupted()

    last_print = 0.0
    async with trio.open_nursery() as nursery:
        joins = list(scenario.agents)
        leaves = sorted((a.leave_at, a.name) for a in scenario.agents)
        names = {}  # peer id -> agent name: a deterministic order for simultaneous messages

        def order(item):
            msg, _, _ = item
            return (names.get(msg.author, msg.author), TYPE_ORDER.get(msg.type, 9), getattr(msg, "state", ""))

        while True:
            await clock.quiet()
            names.update({a.node.peer_id: n for n, a in agents.items()})
            _apply_inboxes(agents, order)
            with_news = [n for n in clock.idle_agents() if agents[n].node.intake.has_news() and not agents[n].gone]
            if with_news:
                for name in with_news:
                    clock.wake(name)
                continue
            candidates = [(clock.next_wake_time() or float("inf"), 2),
                          (joins[0].join_at if joins else float("inf"), 0),
                          (leaves[0][0] if leaves else float("inf"), 1)]
            t, kind = min(candidates)
            if t >= scenario.night_seconds:
                break
            if kind == 0:
                spec = joins.pop(0)
                clock.advance_to(t)
                # the clock waits for every message to reach every agent before moving on
                delivery = ClockDelivery(clock, spec.name, lambda name=spec.name: ready_names(name), gossip=gossip)
                agent = _build_agent(spec, out, table, oracles[spec.tier], counter, clock, events, seed, delivery)
                agents[spec.name] = agent
                clock.mark_busy(spec.name)
                await nursery.start(live, agent)
            elif kind == 1:
                _, name = leaves.pop(0)
                clock.advance_to(t)
                if name in agents and not agents[name].gone:
                    _leave(agents[name], clock, events)  # now, not when its host has shut down
                    agents[name].scope.cancel()
                    await trio.sleep(0)
                    if gossip:
                        await _repair(agents, rng, events)
            else:
                clock.release_until(min(t + window, candidates[1][0], candidates[2][0], scenario.night_seconds))
            if time.monotonic() - last_print > 2:
                last_print = time.monotonic()
                progress(_progress_line(clock, agents, len(counter), scenario))
        await clock.quiet()  # what was published in the last window still reaches everyone
        _apply_inboxes(agents, order)
        for agent in agents.values():
            agent.scope.cancel()
    clock.advance_to(scenario.night_seconds)
    events.close()
    progress(_progress_line(clock, agents, len(counter), scenario))
    return NightResult(out=out, gossip=gossip, wall_seconds=time.monotonic() - started, runs=len(counter),
                       gossip_timeouts=clock.gossip_timeouts, agents=agents)


def _apply_inboxes(agents: dict[str, Agent], order) -> None:
    """Each agent takes in its new messages (replay/delivery.py), agents in a fixed order."""
    for name in sorted(agents):
        agent = agents[name]
        agent.node.delivery.apply(agent.node, order, since=agent.joined_wall)


def _leave(agent: Agent, clock: VirtualClock, events: EventLog) -> None:
    """The agent is gone from this moment: nothing waits for it, and the leave is stamped now
    (its libp2p host may take a real second to shut down while the night goes on)."""
    if not agent.gone:
        agent.gone = True
        clock.gone(agent.spec.name)
        events.emit("leave", peer=agent.node.peer_id)


async def _connect(agent: Agent, agents: dict[str, Agent], rng: random.Random, events: EventLog, k: int) -> None:
    """Dial up to k agents already online (chosen by the replay's seed) and wait for the mesh."""
    others = sorted(n for n, a in agents.items() if a.ready and not a.gone and n != agent.spec.name)
    # Prefer the least connected (ties by the seed): GossipSub prunes a peer's mesh above 12, and
    # py-libp2p then sends pruned peers nothing, so no agent should collect too many links.
    rng.shuffle(others)
    others.sort(key=lambda n: len(agents[n].node.net.connected_peers()))
    linked = [agents[name] for name in others[:k] if await _link(agent, agents[name], events)]
    # A peer forwards only to its mesh, which takes a heartbeat to graft: until then a newcomer
    # would hear only its neighbours' own messages. Wait for it (bounded; gossip repairs the rest).
    async with trio.open_nursery() as nursery:
        for other in linked:
            nursery.start_soon(_meshed, other, agent)


async def _meshed(a: Agent, b: Agent, timeout: float = 3.0) -> None:
    try:
        await a.node.net.wait_for_mesh(b.node.peer_id, a.node.bench.topic(), timeout=timeout)
    except Exception as exc:  # a full mesh may refuse the graft; IHAVE gossip still reaches b
        log.info("replay mesh not formed", a=a.spec.name, b=b.spec.name, error=str(exc))


async def _link(a: Agent, b: Agent, events: EventLog) -> bool:
    addr = b.node.net.listen_addrs()[0]
    try:
        await a.node.net.connect(addr)
        await a.node.net.wait_for_subscriber(b.node.peer_id, a.node.bench.topic(), timeout=10)
    except Exception as exc:  # a failed link is logged; the agent still has its others
        log.warning("replay link failed", a=a.spec.name, b=b.spec.name, error=str(exc))
        return False
    events.emit("link", a=a.node.peer_id, b=b.node.peer_id)
    return True


async def _repair(agents: dict[str, Agent], rng: random.Random, events: EventLog) -> None:
    """After a departure, an agent left with fewer than two connections dials another one."""
    live = sorted(n for n, a in agents.items() if a.ready and not a.gone)
    for name in live:
        agent = agents[name]
        if len(agent.node.net.connected_peers()) < 2 and len(live) > 2:
            choices = [n for n in live if n != name and agents[n].node.peer_id not in agent.node.net.connected_peers()]
            if choices:
                await _link(agent, agents[rng.choice(choices)], events)


def _progress_line(clock: VirtualClock, agents: dict[str, Agent], runs: int, scenario: Scenario) -> str:
    live = sum(1 for a in agents.values() if not a.gone)
    keeps = sum(a.node.ledger.counters().get("keep", 0) for a in agents.values())
    bests = [a.node.loop.head.val_bpb for a in agents.values() if a.node.loop.head is not None]
    best = f"{min(bests):.4f}" if bests else "-"
    return (f"night {_hms(clock.now)} / {_hms(scenario.night_seconds)} | agents live {live:2d} | "
            f"training runs {runs:3d} | keeps {keeps:2d} | best val_bpb {best}")


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


async def replay_seed(scenario: Scenario, table: dict, *, seed: int, out: Path, gossip: bool = True,
                      compare: bool = False, progress=print, dashboard_events: list | None = None) -> dict:
    """One seed's night, and with `compare` its controls (the same night isolated, and on a null
    table); writes their reports and returns {"gossip"|"isolated": summary, "isolated"?, "null"?}."""
    from ..events import read_jsonl
    from .controls import null_table
    from .report import summarize, write_report

    async def night(name: str, where: Path, on: dict, with_gossip: bool, logs=None) -> tuple[dict, list[dict]]:
        if name != "main":
            progress(f"control: the same night {name}")
        result = await run_night(scenario, on, seed=seed, out=where, gossip=with_gossip, progress=progress,
                                 dashboard_events=logs)
        events = read_jsonl(result.out / "events.jsonl")
        summary = summarize(events, agents=len(result.agents), runs=result.runs, gossip=result.gossip,
                            wall_seconds=result.wall_seconds, gossip_timeouts=result.gossip_timeouts, seed=seed,
                            table=on)
        return {**summary, "night_seconds": scenario.night_seconds}, events

    main, main_events = await night("main", out, table, gossip, dashboard_events)
    summaries = {"main": main}
    isolated = null = None
    if compare and gossip:
        isolated = await night("without gossip", out / "isolated", table, False)
        write_report(out / "isolated", isolated[0], isolated[1], table, scenario)
        nulled = null_table(table)
        null, null_events = await night("on a null table", out / "null", nulled, True)
        write_report(out / "null", null, null_events, nulled, scenario)
        summaries.update(isolated=isolated[0], null=null)
        main["solo_race"] = solo_race(main_events, isolated[1])
    write_report(out, main, main_events, table, scenario, isolated, null)
    return summaries


async def replay(scenario: Scenario, table: dict, *, seed: int, out: Path, gossip: bool = True,
                 compare: bool = False, progress=print, dashboard=None, on_report=None) -> dict:
    """Run the night (and, with `compare`, its controls), then write the report.
    `on_report(summary)` is called once it is written (a dashboard keeps serving after that)."""
    logs = [] if dashboard is not None else None
    async with trio.open_nursery() as nursery:
        if dashboard is not None:
            nursery.start_soon(dashboard, logs)
        summaries = await replay_seed(scenario, table, seed=seed, out=out, gossip=gossip, compare=compare,
                                      progress=progress, dashboard_events=logs)
        if on_report is not None:
            on_report(summaries["main"])
        if dashboard is None:
            nursery.cancel_scope.cancel()
    return summaries["main"]
