"""The node's status file (what `swarm-node status` reads) and the link events of its connections,
refreshed every second. The ledger part is read in a worker thread (SQLite); the rest on the trio
thread, where the node's state lives."""
from __future__ import annotations

import json
import os
import time

import trio

from . import __version__
from .status import DECIDED, Status


def snapshot(node) -> dict:
    """What the node knows on the trio thread; `with_ledger` completes it."""
    head, loop = node.loop.head, node.loop
    return {
        "peer_id": node.peer_id, "pid": os.getpid(), "updated_at": time.time(), "version": __version__,
        "listen_addrs": node.net.listen_addrs() if node.net.running else [],
        "tier": node.bench.tier, "role": node.research.tier.role, "bench": node.bench.model_dump(),
        "connected": node.net.connected_peers(),
        "head": None if head is None else {"state": head.state, "val_bpb": head.val_bpb, "test_bpb": head.test_bpb},
        "noise": None if loop.noise is None else {
            "paired_sd": loop.noise.sd, "df": loop.noise.total_df,
            "decision_seeds": list(loop.settings.decision_seeds), "confirm_seeds": list(loop.settings.confirm_seeds)},
        "pending_adoptions": len(node.intake.pending), "live_claims": len(loop.hearsay.claims),
        "transfer_candidates": len(loop.transfers), "banned": sorted(node.net.banned),
        "research": "finished" if node.research_done else "running",
    }


def with_ledger(node, status: dict) -> dict:
    """`snapshot` completed from the ledger (in a worker thread: SQLite)."""
    peers = {r["peer"]: r for r in node.ledger.peers()}
    counters = node.ledger.counters()
    status = dict(status)
    status["connected_peers"] = [{"peer": p, "tier": peers[p]["tier"] if p in peers else None}
                                 for p in status.pop("connected")]
    status.update({
        "known_peers": len(peers),
        "best": {t: {"state": b.state, "val_bpb": b.val_bpb, "test_bpb": b.test_bpb, "author": b.author}
                 for t, b in node.best().items()},
        "experiments": sum(counters.get(k, 0) for k in DECIDED),
        "keeps": counters.get(Status.KEEP, 0), "adoptions": counters.get(Status.ADOPTED, 0),
        "refused": counters.get(Status.REFUSED, 0), "rejected": node.ledger.rejections_by_reason(),
    })
    return status


async def keep_writing(node) -> None:
    path = node.research.home.status_file
    linked: set[str] = set()
    while True:
        connected = set(node.net.connected_peers())
        for peer in connected - linked:
            node.events.emit("link", a=node.peer_id, b=peer)
        for peer in linked - connected:
            node.events.emit("unlink", a=node.peer_id, b=peer)
        linked = connected
        data = await trio.to_thread.run_sync(with_ledger, node, snapshot(node))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)
        await trio.sleep(1.0)
