"""The swarm's event stream: what the dashboard draws and the replay writes to events.jsonl.

Every event is a flat JSON object with `type`, `t` (seconds since the stream's start: virtual
seconds in a replay, real ones on a live node) and `wall` (unix time when it was recorded).
Types and their fields:

    join        peer, tier, role                     a peer came online (or was first seen)
    leave       peer                                 a peer went away
    link        a, b                                 a connection between two peers
    unlink      a, b
    experiment  peer, id, state, description, status (keep|discard|crash|baseline|adopted|refused),
                val_bpb, test_bpb, tier
    discovery   id, peer (its author), tier, state, parent, val_bpb, test_bpb, description, diff
    receipt     id, peer, from                       `peer` received discovery `id` from `from`
    adoption    id, peer, state, val_bpb, verified   `peer` now runs on discovery `id`
    reject      peer, from, reason                   `peer` rejected a message from `from`

A discovery's `id` is the state hash it introduced. Writers append; readers only read, so a
dashboard can follow a running node's home by tailing the file.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import trio

TYPES = ("join", "leave", "link", "unlink", "experiment", "discovery", "receipt", "adoption", "reject")


class EventLog:
    """Events in memory (and appended to a JSONL file when given a path); waiters are woken."""

    def __init__(self, path: Path | None = None, clock=None):
        self.events: list[dict] = []
        self.path = Path(path) if path else None
        self._file = open(self.path, "a", buffering=1) if self.path else None
        self._start = time.time()
        self._clock = clock  # a replay passes its virtual clock: callable -> seconds
        self._lock = threading.Lock()
        self._changed: trio.Event | None = None
        self._token = None

    def emit(self, type: str, **fields) -> dict:
        if type not in TYPES:
            raise ValueError(f"unknown event type {type!r}")
        now = time.time()
        event = {"type": type, "t": round(self._clock() if self._clock else now - self._start, 3),
                 "wall": round(now, 3), **fields}
        with self._lock:
            self.events.append(event)
            if self._file:
                self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._wake()
        return event

    def _wake(self) -> None:
        changed, token = self._changed, self._token
        if changed is None:
            return
        try:
            if trio.lowlevel.current_trio_token() is token:
                changed.set()
                return
        except RuntimeError:
            pass
        try:  # emitted from a worker thread: hand the wake-up to trio's thread
            token.run_sync_soon(changed.set)
        except trio.RunFinishedError:
            pass

    async def wait_beyond(self, count: int) -> None:
        """Return once more than `count` events exist."""
        while len(self.events) <= count:
            if self._changed is None or self._changed.is_set():
                self._changed = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
            await self._changed.wait()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def read_jsonl(path: Path) -> list[dict]:
    """Events from a file; a torn last line (the writer was killed mid-write) is skipped."""
    events = []
    with open(path) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
