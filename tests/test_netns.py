"""Two nodes in two network namespaces joined by a veth pair: the swarm across a real link.

Needs root and iproute2 (`ip netns`); skipped with the reason otherwise. The namespaces, the
link and the addresses (10.231.7.0/24, inside our own namespaces only) are made and removed here.
"""
import os
import shutil
import subprocess

import pytest

from swarm_node.testing import NodeProcess, ledger_rows, peer_of, stop_processes, toy_target, wait_for

A, B = f"swn-a-{os.getpid()}", f"swn-b-{os.getpid()}"
ADDR_A, ADDR_B = "10.231.7.1", "10.231.7.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make network namespaces")
    try:
        ip("netns", "add", A)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc.stderr.decode().strip()}")
    try:
        ip("netns", "add", B)
        ip("link", "add", f"v{os.getpid()}a", "type", "veth", "peer", "name", f"v{os.getpid()}b")
        for ns, dev, addr in ((A, f"v{os.getpid()}a", ADDR_A), (B, f"v{os.getpid()}b", ADDR_B)):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in (A, B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_a_discovery_crosses_namespaces_and_is_adopted(namespaces, tmp_path):
    target = toy_target(tmp_path / "toy_target", 2)
    common = ["--target", str(target), "--tier", "cpu", "--budget", "1", "--presence-interval", "1",
              "--max-seconds", "10"]
    nodes = {}

    def start(ns, name, *args):
        nodes[name] = NodeProcess(tmp_path / name, tmp_path / f"{name}.log", *common, *args,
                                  prefix=["ip", "netns", "exec", ns])

    def logs():
        return "".join(f"\n--- {name} ---\n{node.log()}" for name, node in nodes.items())

    try:
        start(A, "a", "--listen", f"/ip4/{ADDR_A}/tcp/4001", "--max-experiments", "3")
        addr = wait_for(lambda: nodes["a"].printed_address(f"/ip4/{ADDR_A}/"), 60,
                        lambda: "node a printed no address on its namespace's interface" + logs(), ignore_errors=True)
        start(B, "b", "--listen", f"/ip4/{ADDR_B}/tcp/4001", "--bootstrap", addr, "--max-experiments", "0")
        adopted = wait_for(lambda: ledger_rows(tmp_path / "b", "SELECT * FROM experiments WHERE status = 'adopted'"),
                           150, lambda: "node b adopted nothing across the link" + logs(), ignore_errors=True)[0]
        assert "reproduced" in adopted["reason"]  # a seed b chose re-ran to the claimed values
        kept = ledger_rows(tmp_path / "a", "SELECT state FROM experiments WHERE status = 'keep'")
        assert adopted["origin"] in {r["state"] for r in kept}
        peer_a = peer_of(addr)
        assert ledger_rows(tmp_path / "b", "SELECT * FROM discoveries WHERE author = ?", (peer_a,))
    finally:
        stop_processes(node.popen for node in nodes.values())
