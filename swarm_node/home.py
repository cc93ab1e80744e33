"""Where one node keeps everything: SWARM_NODE_HOME (default ~/.swarm-node).

Two homes never share anything, so several nodes can run on one machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, override: str | os.PathLike | None = None) -> "Home":
        raw = override or os.environ.get("SWARM_NODE_HOME") or Path.home() / ".swarm-node"
        root = Path(raw).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite3"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def results_tsv(self) -> Path:
        return self.root / "results.tsv"

    @property
    def cache(self) -> Path:
        path = self.root / "cache"
        path.mkdir(exist_ok=True)
        return path

    @property
    def identity_key(self) -> Path:
        return self.root / "identity.key"

    @property
    def status_file(self) -> Path:
        """Written by a running node, read by `swarm-node status`."""
        return self.root / "status.json"
