"""Where the dashboard's events come from.

A source is a growing list of events (see `swarm_node.events`) read by index:
`snapshot(since)` returns the events from index `since` on, and `wait_beyond(count)` returns
once more than `count` events exist. `mode` tells the page how to show them: "live" (a node in
this process), "home" (a node's home tailed from another process) or "replay" (the page plays
the events itself by their virtual time `t`, with a scrubber). A replay running in this process
(`replay --dashboard`) is a LiveSource with mode="replay": its page starts at full speed, so it
keeps up with the replay as it runs, and can still be scrubbed back.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import trio

from ..events import EventLog

POLL_SECONDS = 0.25
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

    def snapshot(self, since: int) -> list[dict]:
        return self.log.events[max(since, 0):]

    async def wait_beyond(self, count: int) -> None:
        await self.log.wait_beyond(count)


class FileSource:
    """Tails an events.jsonl that another process appends to.

    Only whole lines are read: a torn last line waits until its writer finishes it. A file that
    does not exist yet reads as empty. A file that shrinks (a replay started over in the same
    directory) is read again from the start and `generation` goes up, so readers can restart.
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "home", title: str | None = None,
                 poll: float = POLL_SECONDS):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.title = title or self.path.resolve().parent.name or str(self.path)
        self.poll = poll
        self.follow = False  # a finished file: a replay page plays it at a watchable speed
        self.generation = 0
        self._events: list[dict] = []
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._tail = b""
        self._head = b""  # the file's first bytes: a file rewritten in place starts differently
        self._lock = threading.Lock()

    def snapshot(self, since: int) -> list[dict]:
        self.refresh()
        return self._events[max(since, 0):]

    async def wait_beyond(self, count: int) -> None:
        while True:
            self.refresh()
            if len(self._events) > count:
                return
            await trio.sleep(self.poll)

    def refresh(self) -> int:
        """Read what was appended since the last call; returns the number of events known."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return len(self._events)
            identity = (stat.st_dev, stat.st_ino)
            with open(self.path, "rb") as f:
                if self._identity is not None and (identity != self._identity or stat.st_size < self._offset
                                                   or f.read(len(self._head)) != self._head):
                    self._restart()  # replaced, truncated, or rewritten (a new file may reuse the inode)
                self._identity = identity
                if stat.st_size == self._offset:
                    return len(self._events)
                f.seek(self._offset)
                chunk = f.read()
            if not self._head:
                self._head = chunk[:64]
            self._offset += len(chunk)
            lines = (self._tail + chunk).split(b"\n")
            self._tail = lines.pop()  # b"" after a newline; otherwise a line still being written
            for line in lines:
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:  # a line torn by a writer killed mid-write, then appended to
                    continue
                if isinstance(event, dict):
                    self._events.append(event)
            return len(self._events)

    def _restart(self) -> None:
        self._events = []
        self._offset = 0
        self._tail = b""
        self._head = b""
        self.generation += 1
