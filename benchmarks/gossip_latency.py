"""Gossip latency: how long a Discovery takes to reach every other node of a GossipSub swarm.

For each swarm size N: N `SwarmNetwork` hosts (the node's real network layer: noise, yamux,
GossipSub with strict signing, validators and scoring) run in ONE trio process on 127.0.0.1.
Topology `random` (default): host i dials `--degree` distinct random earlier hosts (all of them
while i <= degree), a sparse connected graph fixed by `--seed`. Topology `star`: every host dials
host 0 only, which is what `swarm-node join --bootstrap <one address>` builds (nodes dial only
their bootstrap addresses). After the mesh has formed (every host has min(degree_low, its
connections) mesh peers on the research topic, waited for at most `--mesh-wait` s), K Discovery
messages are published one after the other, each from a random host, signed by that host's key
with author = its peer id. For each message we record, at every other host, the time from just
before `publish()` to the moment the message comes out of that host's `messages` channel
(validated, decoded, de-duplicated): one latency per receipt, N-1 per message. Printed per N:
how long dialing and mesh formation took, p50 / p95 / max over all receipts, the process's CPU use
while publishing, and at the end the goal check at 35 nodes.

By default all hosts share one event loop and so one core: every hop's signing, encryption and
validation is serialised, so the figures include the CPU cost of N hosts in one process (a
pessimistic stand-in for N machines) and whatever else loads the machine. `--processes P` runs the
hosts in P worker processes instead (`--processes N`: one process per host, as N `swarm-node join`
commands would), driven over pipes; receipt times are CLOCK_MONOTONIC, shared by all processes of
the machine. On a machine with fewer cores than processes the hosts still share those cores.

    /work/venv/bin/python benchmarks/gossip_latency.py [--nodes 10,35] [--messages 20] [--seed 1]
                                                        [--degree 3] [--topology random|star]
                                                        [--timeout 5] [--mesh-wait 15] [--processes P]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from swarm_node import logs
from swarm_node.messages import PRESENCE_TOPIC, BenchKey, Discovery, SeedRun, state_hash
from swarm_node.wire import encode, message_id
from swarm_node.p2p.gossipsub import MESH_DEGREE
from swarm_node.p2p.network import SwarmNetwork

BENCH = BenchKey(target="tinygpt", corpus=state_hash("gossip-latency corpus"), tier="cpu", budget=2 * 10**12,
                 unit="flops", device="cpu", torch="2.13.0")
TOPIC = BENCH.topic()
RUNS = [SeedRun(seed=s, val_bpb=2.0 + d, test_bpb=2.01 + d) for s, d in enumerate((-2e-3, -1e-3, 0, 1e-3, 2e-3))]
LISTEN = ["/ip4/127.0.0.1/tcp/0"]
GOAL_NODES, GOAL_P95_MS = 35, 250.0
GAP_S = 0.1  # pause between messages, so one message's forwarding does not overlap the next
RUN_TIMEOUT_S = 600.0  # whole run for one N


class NoSync:
    """Sync provider for a host that knows no states (nobody asks in this benchmark)."""

    def best(self) -> dict:
        return {}

    def state_source(self, state: str) -> None:
        return None


class WarningCount(logging.Handler):
    """Counts libp2p's warnings by their message template instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[str(record.msg).split("%")[0].strip(" ,:")[:60]] += 1


@dataclass
class Outcome:
    nodes: int
    links: int = 0
    dials: list[float] = field(default_factory=list)  # seconds per connect()
    failed_dials: int = 0
    connect_s: float = 0.0
    mesh_s: float = 0.0
    mesh_short: int = 0  # hosts whose mesh was not full when we stopped waiting
    mesh_sizes: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0  # receipts that did not arrive within the timeout
    sent: int = 0
    publish_wall_s: float = 0.0
    publish_cpu_s: float = 0.0
    warnings: Counter[str] = field(default_factory=Counter)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def topology(n: int, kind: str, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """Edges (i, j) with j < i: host i dials host j."""
    if kind == "star":
        return [(i, 0) for i in range(1, n)]
    return [(i, j) for i in range(1, n) for j in sorted(rng.sample(range(i), min(i, degree)))]


def discovery(author: str, k: int) -> Discovery:
    return Discovery(
        author=author, ts=time.time(), bench=BENCH,
        state=state_hash(f"LEARNING_RATE = {k + 2}e-4\n"), parent=state_hash(f"LEARNING_RATE = {k + 1}e-4\n"),
        diff=f"-LEARNING_RATE = {k + 1}e-4\n+LEARNING_RATE = {k + 2}e-4\n",
        val_bpb=2.0, test_bpb=2.01, noise=0.01, description=f"benchmark message {k}",
        runs=RUNS,
        hparams={"LEARNING_RATE": (k + 2) * 1e-4},
    )


def hosts_short_of_mesh(nets: list[SwarmNetwork]) -> int:
    """How many hosts have fewer mesh peers on TOPIC than they could have."""
    return sum(len(net.mesh_peers(TOPIC)) < min(net.mesh_degree[1], len(net.connected_peers())) for net in nets)


async def measure(n: int, args: argparse.Namespace) -> Outcome:
    out = Outcome(nodes=n)
    rng = random.Random(args.seed)
    edges = topology(n, args.topology, args.degree, rng)
    out.links = len(edges)
    nets = [SwarmNetwork(create_new_key_pair(), topics=[PRESENCE_TOPIC, TOPIC], sync_provider=NoSync(),
                         listen=LISTEN, mesh_degree=args.mesh_degree) for _ in range(n)]
    # receipts[message id][host] = trio time the host's node got the message
    receipts: dict[bytes, dict[int, float]] = {}
    complete: dict[bytes, trio.Event] = {}

    async def collect(index: int, net: SwarmNetwork) -> None:
        async for received in net.messages:
            got = receipts.setdefault(received.message_id, {})
            got.setdefault(index, trio.current_time())
            if len(got) >= n - 1 and received.message_id in complete:
                complete[received.message_id].set()

    async with trio.open_nursery() as nursery:
        for index, net in enumerate(nets):
            await nursery.start(net.run)
            nursery.start_soon(collect, index, net)
        addrs = [net.listen_addrs()[0] for net in nets]

        started = trio.current_time()
        for i, j in edges:
            t = trio.current_time()
            try:
                await nets[i].connect(addrs[j])
            except Exception as error:  # a benchmark reports what failed and goes on
                out.failed_dials += 1
                print(f"N={n}: host {i} could not dial host {j}: {error}")
                continue
            out.dials.append(trio.current_time() - t)
        out.connect_s = trio.current_time() - started

        started = trio.current_time()
        with trio.move_on_after(args.mesh_wait):
            while hosts_short_of_mesh(nets):
                await trio.sleep(0.05)
        out.mesh_s = trio.current_time() - started
        out.mesh_short = hosts_short_of_mesh(nets)
        out.mesh_sizes = [len(net.mesh_peers(TOPIC)) for net in nets]

        wall0, cpu0 = trio.current_time(), time.process_time()
        for k in range(args.messages):
            source = rng.randrange(n)
            msg = discovery(nets[source].peer_id, k)
            mid = message_id(encode(msg))
            complete[mid] = trio.Event()
            receipts.setdefault(mid, {})
            t0 = trio.current_time()
            await nets[source].publish(msg)
            with trio.move_on_after(args.timeout):
                if len(receipts[mid]) < n - 1:
                    await complete[mid].wait()
            got = {host: t for host, t in receipts[mid].items() if host != source}
            out.latencies_ms.extend((t - t0) * 1000 for t in got.values())
            out.missing += (n - 1) - len(got)
            out.sent += 1
            await trio.sleep(GAP_S)
        out.publish_wall_s = trio.current_time() - wall0 - GAP_S * out.sent
        out.publish_cpu_s = time.process_time() - cpu0
        nursery.cancel_scope.cancel()
    return out


# ---- one process per group of hosts (--processes) -----------------------------------------------


def _emit(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def worker(hosts: list[int], mesh_degree: tuple[int, int, int]) -> None:
    """Run `hosts` (global indices) and obey one JSON command per stdin line; receipts are reported
    as they happen, each command's answer after it is done."""
    nets = {h: SwarmNetwork(create_new_key_pair(), topics=[PRESENCE_TOPIC, TOPIC], sync_provider=NoSync(),
                            listen=LISTEN, mesh_degree=mesh_degree) for h in hosts}

    async def collect(h: int, net: SwarmNetwork) -> None:
        async for received in net.messages:
            _emit(op="recv", host=h, mid=received.message_id.hex(), t=time.monotonic())

    async with trio.open_nursery() as nursery:
        for h, net in nets.items():
            await nursery.start(net.run)
            nursery.start_soon(collect, h, net)
        _emit(op="ready", addrs={h: net.listen_addrs()[0] for h, net in nets.items()})
        stdin = trio.lowlevel.FdStream(os.dup(0))
        buffer = b""
        while True:
            chunk = await stdin.receive_some(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                op = command["op"]
                if op == "dial":
                    t = time.monotonic()
                    try:
                        await nets[command["host"]].connect(command["addr"])
                        _emit(op="dial", ok=True, s=time.monotonic() - t)
                    except Exception as error:  # reported, as in the one-process mode
                        _emit(op="dial", ok=False, error=str(error))
                elif op == "mesh":
                    _emit(op="mesh", sizes=[len(net.mesh_peers(TOPIC)) for net in nets.values()],
                          short=hosts_short_of_mesh(list(nets.values())))
                elif op == "publish":
                    net = nets[command["host"]]
                    msg = discovery(net.peer_id, command["k"])
                    t0 = time.monotonic()
                    await net.publish(msg)
                    _emit(op="publish", mid=message_id(encode(msg)).hex(), t0=t0)
                elif op == "cpu":
                    _emit(op="cpu", s=time.process_time())
        nursery.cancel_scope.cancel()


class Workers:
    """The coordinator's side of --processes: P workers, their answers and the receipts."""

    def __init__(self, n: int, processes: int, mesh_degree: tuple[int, int, int]):
        self.groups = [list(range(n))[w::processes] for w in range(processes)]
        self.owner = {h: w for w, group in enumerate(self.groups) for h in group}
        self.procs: list[trio.Process] = []
        self.answers = [trio.open_memory_channel(100) for _ in self.groups]
        self.receipts: dict[str, dict[int, float]] = {}
        self.arrived = trio.Event()
        self.addrs: dict[int, str] = {}
        self.mesh_degree = mesh_degree

    async def start(self, nursery: trio.Nursery) -> None:
        script = os.path.abspath(__file__)
        for w, group in enumerate(self.groups):
            proc = await trio.lowlevel.open_process(
                [sys.executable, script, "--worker", ",".join(map(str, group)),
                 "--mesh-degree", ",".join(map(str, self.mesh_degree))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.procs.append(proc)
            nursery.start_soon(self._read, w, proc)
        for w in range(len(self.groups)):
            ready = await self.answers[w][1].receive()
            self.addrs.update({int(h): a for h, a in ready["addrs"].items()})

    async def _read(self, w: int, proc: trio.Process) -> None:
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                event = json.loads(line)
                if event["op"] == "recv":
                    self.receipts.setdefault(event["mid"], {}).setdefault(event["host"], event["t"])
                    self.arrived.set()
                else:
                    await self.answers[w][0].send(event)

    async def ask(self, w: int, **command) -> dict:
        await self.procs[w].stdin.send_all((json.dumps(command) + "\n").encode())
        return await self.answers[w][1].receive()

    async def cpu(self) -> float:
        return sum([(await self.ask(w, op="cpu"))["s"] for w in range(len(self.groups))])

    def stop(self) -> None:
        for proc in self.procs:  # only the workers this benchmark started
            if proc.returncode is None:
                proc.kill()


async def measure_processes(n: int, args: argparse.Namespace) -> Outcome:
    out = Outcome(nodes=n)
    rng = random.Random(args.seed)
    edges = topology(n, args.topology, args.degree, rng)
    out.links = len(edges)
    workers = Workers(n, min(args.processes, n), args.mesh_degree)
    try:
        async with trio.open_nursery() as nursery:
            await workers.start(nursery)
            started = time.monotonic()
            for i, j in edges:
                answer = await workers.ask(workers.owner[i], op="dial", host=i, addr=workers.addrs[j])
                if answer["ok"]:
                    out.dials.append(answer["s"])
                else:
                    out.failed_dials += 1
                    print(f"N={n}: host {i} could not dial host {j}: {answer['error']}")
            out.connect_s = time.monotonic() - started

            started = time.monotonic()
            with trio.move_on_after(args.mesh_wait):
                while True:
                    answers = [await workers.ask(w, op="mesh") for w in range(len(workers.groups))]
                    if not sum(a["short"] for a in answers):
                        break
                    await trio.sleep(0.2)
            answers = [await workers.ask(w, op="mesh") for w in range(len(workers.groups))]
            out.mesh_s = time.monotonic() - started
            out.mesh_short = sum(a["short"] for a in answers)
            out.mesh_sizes = [size for a in answers for size in a["sizes"]]

            wall0, cpu0 = time.monotonic(), await workers.cpu()
            for k in range(args.messages):
                source = rng.randrange(n)
                sent = await workers.ask(workers.owner[source], op="publish", host=source, k=k)
                with trio.move_on_after(args.timeout):
                    while len(workers.receipts.get(sent["mid"], {})) < n - 1:
                        workers.arrived = trio.Event()
                        await workers.arrived.wait()
                got = {h: t for h, t in workers.receipts.get(sent["mid"], {}).items() if h != source}
                out.latencies_ms.extend((t - sent["t0"]) * 1000 for t in got.values())
                out.missing += (n - 1) - len(got)
                out.sent += 1
                await trio.sleep(GAP_S)
            out.publish_wall_s = time.monotonic() - wall0 - GAP_S * out.sent
            out.publish_cpu_s = await workers.cpu() - cpu0
            nursery.cancel_scope.cancel()
    finally:
        workers.stop()
    return out


def report(out: Outcome) -> None:
    n = out.nodes
    dials = out.dials or [0.0]
    sizes = sorted(out.mesh_sizes) or [0]
    print(f"N={n}: connecting {out.links} links took {out.connect_s:.2f} s "
          f"(one dial: p50 {percentile(dials, 50) * 1000:.0f} ms, max {max(dials) * 1000:.0f} ms"
          + (f", {out.failed_dials} failed" if out.failed_dials else "") + ")")
    print(f"N={n}: mesh waited {out.mesh_s:.2f} s; {out.mesh_short} hosts short of a full mesh; "
          f"mesh peers per host min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}")
    receipts = out.sent * (n - 1)
    if out.latencies_ms:
        lat = out.latencies_ms
        print(f"N={n}: {out.sent} messages, {len(lat)}/{receipts} receipts ({out.missing} missing): "
              f"p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, max {max(lat):.1f} ms")
    else:
        print(f"N={n}: {out.sent} messages, no receipts out of {receipts}")
    if out.publish_wall_s > 0:
        print(f"N={n}: CPU while publishing (all processes): {out.publish_cpu_s:.2f} s over "
              f"{out.publish_wall_s:.2f} s of waiting ({100 * out.publish_cpu_s / out.publish_wall_s:.0f}% of one core)")
    if out.warnings:
        print(f"N={n}: libp2p warnings: " + "; ".join(f"{count}x {text!r}" for text, count in out.warnings.most_common(4)))


async def _bounded(n: int, args: argparse.Namespace) -> Outcome | None:
    with trio.move_on_after(RUN_TIMEOUT_S):
        return await (measure_processes(n, args) if args.processes > 1 else measure(n, args))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="10,35", help="comma-separated swarm sizes (default 10,35)")
    parser.add_argument("--messages", type=int, default=20, help="messages per swarm size (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of topology and publishers (default 1)")
    parser.add_argument("--degree", type=int, default=3, help="earlier hosts each host dials (default 3)")
    parser.add_argument("--topology", choices=("random", "star"), default="random")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for one message (default 5)")
    parser.add_argument("--mesh-wait", type=float, default=15.0, help="longest wait for the mesh (default 15 s)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes the hosts are spread over (default 1: all in this one)")
    parser.add_argument("--mesh-degree", default=",".join(map(str, MESH_DEGREE)),
                        help="GossipSub D,D_lo,D_hi (default %(default)s, the node's)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the hosts of one worker
    args = parser.parse_args()
    args.mesh_degree = tuple(int(d) for d in args.mesh_degree.split(","))
    if args.worker is not None:
        logs.configure(level="error")
        logging.getLogger("libp2p").setLevel(logging.ERROR)
        trio.run(worker, [int(h) for h in args.worker.split(",")], args.mesh_degree)
        return 0
    sizes = [int(s) for s in args.nodes.split(",") if s.strip()]
    logs.configure(level="warning")  # the hosts' info lines would drown the figures
    libp2p_log = logging.getLogger("libp2p")
    libp2p_log.propagate = False

    print(f"hosts in {'one process' if args.processes <= 1 else f'{args.processes} processes'}, "
          f"topology {args.topology}" + (f" (each host dials {args.degree} earlier ones)" if args.topology == "random"
                                          else " (every host dials host 0)") + f", seed {args.seed}")
    results = {}
    for n in sizes:
        if n < 2:
            print(f"N={n}: skipped (needs at least 2 hosts)")
            continue
        counter = WarningCount()
        libp2p_log.addHandler(counter)
        try:
            outcome = trio.run(_bounded, n, args)
        finally:
            libp2p_log.removeHandler(counter)
        if outcome is None:
            print(f"N={n}: did not finish within {RUN_TIMEOUT_S:.0f} s")
            continue
        outcome.warnings = counter.counts
        report(outcome)
        results[n] = outcome
    goal = results.get(GOAL_NODES)
    if goal is None:
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: not measured (run with --nodes {GOAL_NODES})")
    elif not goal.latencies_ms:
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: not met (no message arrived anywhere)")
    else:
        p95 = percentile(goal.latencies_ms, 95)
        met = p95 < GOAL_P95_MS and goal.missing == 0
        where = "one process" if args.processes <= 1 else f"{min(args.processes, GOAL_NODES)} processes"
        print(f"goal p95 < {GOAL_P95_MS:.0f} ms at {GOAL_NODES} nodes: {'met' if met else 'not met'} "
              f"(p95 {p95:.1f} ms, {goal.missing} missing; hosts in {where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
