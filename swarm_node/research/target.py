"""A research target seen from the node: its files, its corpus, its benchmark key.

The node never imports the target. It asks the target's own prepare.py (run as a script) to find
and hash-check the corpus, so the lookup and the pinned hash live in one place.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..messages import BenchKey
from .budget import Budget, amount_text
from .hparams import read_block, write_block
from .workspace import file_sha256


class CorpusError(RuntimeError):
    """The corpus is missing or does not match its hash; the message says what to do."""


@dataclass(frozen=True)
class Corpus:
    path: Path
    sha256: str
    name: str
    bytes: int


@dataclass(frozen=True)
class Target:
    name: str
    dir: Path

    @property
    def prepare_sha256(self) -> str:
        return file_sha256(self.dir / "prepare.py")

    def resolve_corpus(self, data: str | os.PathLike | None, home: Path) -> Corpus:
        cmd = [sys.executable, str(self.dir / "prepare.py"), "--resolve"]
        if data:
            cmd += ["--data", str(Path(data).expanduser().resolve())]
        env = {**os.environ, "SWARM_NODE_HOME": str(home)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            raise CorpusError(message)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        return Corpus(path=Path(info["path"]), sha256=info["sha256"], name=info["name"], bytes=info["bytes"])


def bench_key(target: str, corpus_sha256: str, budget: Budget, tier: str, device: str) -> BenchKey:
    """Only experiments with the same key are ever compared: besides target, corpus, tier and
    budget, the device type and torch version are in it, since either can change a run's numbers."""
    return BenchKey(target=target, corpus=corpus_sha256, tier=tier, budget=int(round(budget.amount)),
                    unit=budget.unit, device=device, torch=torch_version())


def describe_bench(bench: dict) -> str:
    """A benchmark key as stored in a ledger's meta (older ledgers lack some fields), for people."""
    return (f"target {bench['target']}, corpus {bench['corpus'][:12]}, tier {bench['tier']}, "
            f"budget {budget_text(bench)}, "
            f"device {bench.get('device', '?')}, torch {bench.get('torch', '?')}")


def budget_text(bench: dict) -> str:
    """A stored benchmark key's budget for people (a ledger from before compute budgets holds seconds)."""
    return amount_text(bench["budget"], bench.get("unit", "seconds"))


@functools.cache
def torch_version() -> str:
    """The installed torch's version without its build tag (2.13.0+cpu -> 2.13.0), read from the
    package metadata: importing torch in the node would cost seconds."""
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return "none"


def tier_baseline(target_train: str, overrides: dict | None) -> str:
    """The target's train.py with the tier's model size, for the names this target has: where a
    node of that tier starts, and what its policy compares every state with."""
    block = read_block(target_train)
    return write_block(target_train, {k: v for k, v in (overrides or {}).items() if k in block})
