"""Live progress of the research loop on the terminal.

On a terminal: one status line redrawn twice a second (current experiment, a bar for its budget,
best so far, keeps / discards / crashes). Elsewhere (a log file, CI): one line per run start.
"""
from __future__ import annotations

import sys
import time

import trio

from .research.records import ExperimentRecord, Observer
from .status import HEADS

BAR = 24


class Progress(Observer):
    def __init__(self, total: int | None, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.current: ExperimentRecord | None = None
        self.seed = 0
        self.started = 0.0
        self.budget = None  # the run's Budget
        self.best: float | None = None
        self.counts = {"keep": 0, "discard": 0, "crash": 0, "adopted": 0}
        self.done = 0

    def line(self) -> str:
        c = self.counts
        best = f"{self.best:.4f}" if self.best is not None else "-"
        tally = f"best {best} | keep {c['keep']} discard {c['discard']} crash {c['crash']}"
        if c["adopted"]:
            tally += f" adopted {c['adopted']}"
        if self.current is None:
            return tally
        elapsed = time.monotonic() - self.started
        if self.budget is not None and self.budget.mode == "time":  # a bar only where the end is a time
            filled = min(BAR, int(BAR * elapsed / self.budget.amount))
            clock = f"[{'#' * filled + '-' * (BAR - filled)}] {elapsed:4.0f}/{self.budget.amount:.0f}s"
        else:
            clock = f"{elapsed:4.0f}s of {self.budget.label() if self.budget else '?'}"
        which = "baseline" if self.current.proposer == "baseline" else \
            f"exp {self.done + 1}" + (f"/{self.total}" if self.total else "")
        desc = self.current.description[:48]
        return f"[{which}] {desc} | seed {self.seed} {clock} | {tally}"

    def draw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()

    def clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    async def run_started(self, record, seed, budget):
        self.current, self.seed, self.budget, self.started = record, seed, budget, time.monotonic()
        if not self.tty:
            print(self.line(), file=self.stream, flush=True)

    async def experiment_finished(self, record):
        self.clear()
        if record.status in self.counts:
            self.counts[record.status] += 1
        if record.status in HEADS and record.val_bpb is not None:
            self.best = record.val_bpb
        if record.proposer not in ("baseline", "adoption", "ablation"):
            self.done += 1
        self.current = None

    async def tick(self) -> None:
        """Redraw until cancelled (run it in the node's nursery)."""
        while True:
            self.draw()
            await trio.sleep(0.5)
