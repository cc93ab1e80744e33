"""gossip_latency --processes: hosts spread over worker processes (`gossip_latency.py --worker`), driven
over pipes by the coordinator; receipt times are CLOCK_MONOTONIC, shared by all processes."""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import trio
from libp2p.crypto.ed25519 import create_new_key_pair

from swarm_node.testing import NoSync
from gossip_hosts import GAP_S, LISTEN, TOPIC, Outcome, discovery, hosts_short_of_mesh, topology
from swarm_node.messages import PRESENCE_TOPIC
from swarm_node.wire import encode, message_id
from swarm_node.p2p.network import SwarmNetwork

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gossip_latency.py")  # what a worker runs


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
        for w, group in enumerate(self.groups):
            proc = await trio.lowlevel.open_process(
                [sys.executable, SCRIPT, "--worker", ",".join(map(str, group)),
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
