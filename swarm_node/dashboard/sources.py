"""Where the dashboard's events come from.

A source is a growing list of events (see `swarm_node.events`) read by absolute index: an event
keeps its index even after older ones are dropped from memory. `read(since, limit)` returns
(the index of the first event returned, the events from index `since` on, at most `limit`):
when `since` is older than the oldest event still held, it starts there. `snapshot(since)` is
just the events, `count()` the number of events so far (the next index), and
`wait_beyond(count)` returns once more than `count` events exist. `mode` tells the page how to
show them: "live" (a node in this process), "home" (a node's home tailed from another process)
or "replay" (the page plays the events itself by their virtual time `t`, with a scrubber). A
replay running in this process (`replay --dashboard`) is a LiveSource with mode="replay": its
page starts at full speed, so it keeps up with the replay as it runs, and can still be scrubbed
back.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import trio

from ..events import KEEP, KEEP_BYTES, EventLog, Window, rotated_paths

POLL_SECONDS = 0.25
HEAD_BYTES = 512  # how a file is recognised besides its inode, which a later file may reuse
MODES = ("live", "home", "replay")


class LiveSource:
    """The event log of a node (or a replay) running in this trio loop."""

    def __init__(self, event_log: EventLog, *, mode: str = "live", title: str = "live node"):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.log = event_log
        self.mode = mode
        self.title = title
        self.generation = 0  # a live log never rewinds
        self.follow = True   # events are being made now: a replay page keeps up with them by default

    def read(self, since: int, limit: int | None = None) -> tuple[int, list[dict]]:
        return self.log.read(since, limit)

    def snapshot(self, since: int) -> list[dict]:
        return self.log.read(since)[1]

    def count(self) -> int:
        return self.log.count()

    async def wait_beyond(self, count: int) -> None:
        await self.log.wait_beyond(count)


class FileSource:
    """Tails an events.jsonl that another process appends to.

    Only whole lines are read: a torn last line waits until its writer finishes it. A file that
    does not exist yet reads as empty. Its rotated predecessors (events.jsonl.1, ...) are read
    first, and when the writer rotates the file (renames it to events.jsonl.1 and starts a new
    one) the rest of the old file and then the new one are read: indices go on. A file that
    shrinks or is replaced otherwise (a replay started over in the same directory) is read again
    from the start and `generation` goes up, so readers can restart. At most `keep` events and
    `keep_bytes` of their lines are held (None: no limit); older ones are dropped and their
    indices are not reused.
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "home", title: str | None = None,
                 poll: float = POLL_SECONDS, keep: int | None = KEEP, keep_bytes: int | None = KEEP_BYTES):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.title = title or self.path.resolve().parent.name or str(self.path)
        self.poll = poll
        self.follow = False  # a finished file: a replay page plays it at a watchable speed
        self.generation = 0
        self._window = Window(keep, keep_bytes)
        self._fresh = True   # nothing read yet: start with the rotated predecessors
        self._identity: tuple[int, int] | None = None  # the file being followed
        self._offset = 0     # bytes of it read
        self._tail = b""
        self._head = b""     # the file's first bytes: a file rewritten in place starts differently
        self._lock = threading.Lock()

    def read(self, since: int, limit: int | None = None) -> tuple[int, list[dict]]:
        with self._lock:
            self._refresh()
            return self._window.read(since, limit)

    def snapshot(self, since: int) -> list[dict]:
        return self.read(since)[1]

    def count(self) -> int:
        return self.refresh()

    async def wait_beyond(self, count: int) -> None:
        while self.refresh() <= count:
            await trio.sleep(self.poll)

    def refresh(self) -> int:
        """Read what was appended since the last call; returns the number of events so far."""
        with self._lock:
            self._refresh()
            return self._window.count()

    def _refresh(self) -> None:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:  # not there yet, or between a rotation's rename and the new file
            return
        with f:
            stat = os.fstat(f.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if self._identity is not None:
                if identity != self._identity:
                    if not self._finish_rotated():
                        self._restart()  # replaced (or rotated more often than backups are kept)
                elif stat.st_size < self._offset or f.read(len(self._head)) != self._head:
                    self._restart()  # truncated, or rewritten (a new file may reuse the inode)
            if self._identity is None:
                if self._fresh:
                    for old in rotated_paths(self.path):
                        self._read_rest(old, 0, skip=identity)
                    self._fresh = False
                self._identity, self._offset, self._tail, self._head = identity, 0, b"", b""
            if stat.st_size <= self._offset:
                return
            f.seek(self._offset)
            chunk = f.read()
        if len(self._head) < HEAD_BYTES:  # then the head is all that was read of the file so far
            self._head = (self._head + chunk)[:HEAD_BYTES]
        self._offset += len(chunk)
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()  # b"" after a newline; otherwise a line still being written
        self._add(lines)

    def _finish_rotated(self) -> bool:
        """The followed file was renamed to a rotated name: read its rest and any newer rotated
        files, then the caller goes on with the new file. False when it is gone."""
        olds = rotated_paths(self.path)  # oldest first
        for n, old in enumerate(olds):
            try:
                stat = old.stat()
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) == self._identity and stat.st_size >= self._offset:
                try:
                    with open(old, "rb") as f:
                        if f.read(len(self._head)) != self._head:
                            continue  # a later file that got the freed inode of ours
                except OSError:
                    continue
                tail, self._tail = self._tail, b""
                self._read_rest(old, self._offset, prefix=tail)
                for newer in olds[n + 1:]:
                    self._read_rest(newer, 0)
                self._identity = None
                return True
        return False

    def _read_rest(self, path: Path, offset: int, *, prefix: bytes = b"", skip=None) -> None:
        """The whole lines of a finished file from `offset` on (a torn last line is dropped)."""
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                if (stat.st_dev, stat.st_ino) == skip:
                    return  # a rotation raced with us: this is the file we are about to follow
                f.seek(offset)
                data = prefix + f.read()
        except OSError:
            return
        self._add(data.split(b"\n"))

    def _add(self, lines) -> None:
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a line torn by a writer killed mid-write, then appended to
                continue
            if isinstance(event, dict):
                self._window.append(event, len(line) + 1)

    def _restart(self) -> None:
        self._window.clear()
        self._fresh = True
        self._identity = None
        self._offset = 0
        self._tail = b""
        self._head = b""
        self.generation += 1
