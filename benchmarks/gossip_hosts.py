"""gossip_latency's swarm: the benchmark's bench key and message, the topology, what one run measures
(Outcome), and the measurement with every host in this one process."""
from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from swarm_node.testing import NoSync
from swarm_node.messages import PRESENCE_TOPIC, BenchKey, Discovery, SeedRun, state_hash
from swarm_node.wire import encode, message_id
from swarm_node.p2p.network import SwarmNetwork

BENCH = BenchKey(target="tinygpt", corpus=state_hash("gossip-latency corpus"), tier="cpu", budget=2 * 10**12,
                 unit="flops", device="cpu", torch="2.13.0")
TOPIC = BENCH.topic()
RUNS = [SeedRun(seed=s, val_bpb=2.0 + d, test_bpb=2.01 + d) for s, d in enumerate((-2e-3, -1e-3, 0, 1e-3, 2e-3))]
LISTEN = ["/ip4/127.0.0.1/tcp/0"]
GAP_S = 0.1  # pause between messages, so one message's forwarding does not overlap the next


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
