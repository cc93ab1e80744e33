"""The swarm's event stream: what the dashboard draws and the replay writes to events.jsonl.

Every event is a flat JSON object with `type`, `t` (seconds since the stream's start: virtual
seconds in a replay, real ones on a live node) and `wall` (unix time when it was recorded).
Types and their fields:

    join        peer, tier, role                     a peer came online (or was first seen)
    leave       peer                                 a peer went away
    link        a, b                                 a connection between two peers
    unlink      a, b
    experiment  peer, id, state, description, status (keep|discard|crash|baseline|adopted|refused),
                val_bpb, test_bpb, tier, parent, proposer, improvement, se (the mean paired
                improvement over the parent on every seed compared, and its standard error)
    discovery   id, peer (its author), tier, state, parent, val_bpb, test_bpb, description, diff
    receipt     id, peer, from                       `peer` received discovery `id` from `from`
                                                     (`via` presence: inferred from its register)
    adoption    id, peer, tier, state, val_bpb, verified   `peer` now runs on discovery `id`
    reject      peer, from, reason                   `peer` rejected a message from `from`
    effect      peer, tier, state, name, value, effect, se, seeds, kind (single|ablation)
                                                     what the change name = value brings to the kept
                                                     `state` (paired, positive = helps)

Every event also has `t` (seconds since the log started; a replay's virtual time) and `wall`
(real time.time()). A discovery's `id` is `tier:state` (the same train.py can be a discovery in two tiers). Writers append; readers only read, so a
dashboard can follow a running node's home by tailing the file.

Both the file and the memory are bounded. When events.jsonl passes `max_bytes` it is renamed
events.jsonl.1 (an older .1 is removed; `backups` > 1 keeps .2, .3, ...) and a new one is started;
a reader that follows the file notices the rename and goes on with the new one. In memory an
EventLog keeps the newest `keep` events; an event's index stays the same for the life of the log:
`first` is the index of the oldest event still held, `count()` the number ever emitted. Memory
is also bounded by the events' size (`keep_bytes`): 100 000 discoveries with 30 KB diffs would
not fit otherwise.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import trio

TYPES = ("join", "leave", "link", "unlink", "experiment", "discovery", "receipt", "adoption", "reject", "effect")


def discovery_id(tier: str, state: str) -> str:
    """Events name a discovery by tier and state: the same train.py can be a discovery in two tiers."""
    return f"{tier}:{state}"


MAX_BYTES = 16 * 2**20   # rotate events.jsonl when it passes this size
BACKUPS = 1               # rotated files kept: events.jsonl.1
KEEP = 100_000            # events held in memory
KEEP_BYTES = 32 * 2**20   # ... and their size as JSON lines (what the file holds with one backup)


def rotated_paths(path: Path) -> list[Path]:
    """The rotated predecessors of `path` that exist, oldest first: [..., path.2, path.1]."""
    path = Path(path)
    found = []
    n = 1
    while (old := path.with_name(f"{path.name}.{n}")).is_file():
        found.append(old)
        n += 1
    return found[::-1]


class Window:
    """The newest events: at most `keep` of them, at most `keep_bytes` of their JSON lines (None:
    no limit; the newest event is always held). Indices are absolute: `events[0]` has index
    `first`, the number of events dropped so far. Drops a sixteenth of a limit at a time, so
    appending stays cheap. Not locked: its owner does that."""

    def __init__(self, keep: int | None = KEEP, keep_bytes: int | None = KEEP_BYTES):
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.events: list[dict] = []
        self.first = 0
        self.bytes = 0
        self._sizes: list[int] = []

    def append(self, event: dict, size: int) -> None:
        self.events.append(event)
        self._sizes.append(size)
        self.bytes += size
        if (self.keep and len(self.events) > self.keep) or (self.keep_bytes and self.bytes > self.keep_bytes):
            self._trim()

    def _trim(self) -> None:
        count = len(self.events)
        most = count if not self.keep or count <= self.keep else self.keep - self.keep // 16
        most_bytes = self.bytes if not self.keep_bytes or self.bytes <= self.keep_bytes else \
            self.keep_bytes - self.keep_bytes // 16
        drop, left = 0, self.bytes
        while drop < count - 1 and (count - drop > most or left > most_bytes):
            left -= self._sizes[drop]
            drop += 1
        del self.events[:drop], self._sizes[:drop]
        self.first += drop
        self.bytes = left

    def count(self) -> int:
        """How many events were appended: the index the next one gets."""
        return self.first + len(self.events)

    def read(self, since: int, limit: int | None = None) -> tuple[int, list[dict]]:
        """The events from absolute index `since` on (from `first`, the oldest held, when `since`
        is older), at most `limit` of them; returns (the index of the first one returned, them)."""
        start = max(since, self.first, 0)
        i = start - self.first
        return start, self.events[i:] if limit is None else self.events[i:i + max(limit, 0)]

    def clear(self) -> None:
        self.events, self._sizes, self.first, self.bytes = [], [], 0, 0


class EventLog:
    """Events in memory (and appended to a JSONL file when given a path); waiters are woken.

    `events` holds the newest events, at most `keep` of them and `keep_bytes` of their JSON (None:
    no limit); `events[0]` has index `first`. The file is rotated when it passes `max_bytes`
    (None: never), keeping `backups` old files.
    """

    def __init__(self, path: Path | None = None, clock=None, *, max_bytes: int | None = MAX_BYTES,
                 backups: int = BACKUPS, keep: int | None = KEEP, keep_bytes: int | None = KEEP_BYTES):
        self.window = Window(keep, keep_bytes)
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self.backups = max(int(backups), 0)
        self._file = open(self.path, "a", buffering=1) if self.path else None
        self._size = os.fstat(self._file.fileno()).st_size if self._file else 0
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
        line = json.dumps(event, separators=(",", ":")) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            self.window.append(event, size)
            if self._file:
                self._file.write(line)
                self._size += size
                if self.max_bytes and self._size >= self.max_bytes:
                    self._rotate()
        self._wake()
        return event

    @property
    def events(self) -> list[dict]:
        """The events held in memory, oldest first; the first has index `first`."""
        return self.window.events

    @property
    def first(self) -> int:
        """The index of the oldest event held: how many were dropped from memory."""
        return self.window.first

    def count(self) -> int:
        """How many events were emitted: the index the next one gets."""
        return self.window.count()

    def read(self, since: int, limit: int | None = None) -> tuple[int, list[dict]]:
        """(index of the first event returned, the events from index `since` on, at most `limit`);
        from the oldest held when `since` is older."""
        with self._lock:
            return self.window.read(since, limit)

    def snapshot(self, since: int) -> list[dict]:
        return self.read(since)[1]

    def _rotate(self) -> None:
        """events.jsonl -> events.jsonl.1 (.1 -> .2 ... up to `backups`), then a new events.jsonl."""
        self._file.close()
        try:
            if self.backups:
                for n in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{n}")
                    if older.exists():
                        os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink()
        except OSError as exc:  # keep appending to the old file rather than lose events
            logging.getLogger(__name__).warning("cannot rotate %s: %s", self.path, exc)
        try:
            self._file = open(self.path, "a", buffering=1)
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:  # the events stay in memory; the file stops here
            logging.getLogger(__name__).warning("cannot reopen %s: %s", self.path, exc)
            self._file = None

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
        """Return once more than `count` events were emitted."""
        while self.count() <= count:
            if self._changed is None or self._changed.is_set():
                self._changed = trio.Event()
                self._token = trio.lowlevel.current_trio_token()
            await self._changed.wait()

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None


def read_jsonl(path: Path, *, rotated: bool = True) -> list[dict]:
    """Events from a file, after those of its rotated predecessors (path.N ... path.1) unless
    `rotated` is False; a torn line (its writer was killed mid-write) is skipped."""
    events = []
    for part in [*(rotated_paths(path) if rotated else []), Path(path)]:
        with open(part) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
    return events
