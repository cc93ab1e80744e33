"""The node's git workspace: a repository initialised from the research target.

Each experiment is a commit; a keep leaves the head there, a discard resets it, so `git log` in
the workspace is the research history. States are named by the sha256 of train.py.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

TARGET_FILES = ("prepare.py", "train.py", "program.md")


def state_hash(train_py: str) -> str:
    return hashlib.sha256(train_py.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class GitError(RuntimeError):
    pass


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd),
           "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


class Workspace:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def train_py(self) -> Path:
        return self.path / "train.py"

    def exists(self) -> bool:
        return (self.path / ".git").is_dir() and self.train_py.is_file()

    def create(self, target: Path, train_py: str) -> str:
        """Initialise from the target's files, with `train_py` as the baseline; returns the commit."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in TARGET_FILES:
            if (target / name).is_file():
                shutil.copyfile(target / name, self.path / name)
        self.train_py.write_text(train_py)
        _git(self.path, "init", "-q", "-b", "main")
        _git(self.path, "config", "user.name", "swarm-node")
        _git(self.path, "config", "user.email", "swarm-node@localhost")
        _git(self.path, "add", "-A")
        _git(self.path, "commit", "-q", "-m", "baseline")
        return self.head_commit()

    def head_commit(self) -> str:
        return _git(self.path, "rev-parse", "HEAD").stdout.strip()

    def read_train(self) -> str:
        return self.train_py.read_text()

    def commit(self, train_py: str, message: str) -> str:
        self.train_py.write_text(train_py)
        _git(self.path, "add", "train.py")
        _git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head_commit()

    def reset_to(self, commit: str) -> None:
        _git(self.path, "reset", "-q", "--hard", commit)
        _git(self.path, "clean", "-q", "-fd")

    def log(self, limit: int = 50) -> list[str]:
        out = _git(self.path, "log", f"-{limit}", "--format=%h %s").stdout
        return out.strip().splitlines()


def merge3(base: str, ours: str, theirs: str) -> str | None:
    """3-way merge of train.py texts; None when they conflict.

    Hyperparameters are merged name by name (git would call two changes on adjacent lines of the
    block a conflict); any other change goes through `git merge-file`."""
    merged = _merge_hparams(base, ours, theirs)
    return merged if merged is not None else _merge_lines(base, ours, theirs)


def _merge_hparams(base: str, ours: str, theirs: str) -> str | None:
    from .hparams import read_block, write_block
    try:
        b, o, t = read_block(base), read_block(ours), read_block(theirs)
    except ValueError:
        return None
    if not (list(b) == list(o) == list(t)) or write_block(base, o) != ours or write_block(base, t) != theirs:
        return None  # something besides literal values differs: leave it to git
    changes = {}
    for name, value in t.items():
        if value == b[name] and type(value) is type(b[name]):
            continue
        if o[name] != b[name] and (o[name] != value or type(o[name]) is not type(value)):
            return None  # both sides changed this name differently
        changes[name] = value
    return write_block(ours, changes)


def _merge_lines(base: str, ours: str, theirs: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="swarm-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_text(text)
            paths.append(str(p))
        proc = subprocess.run(["git", "merge-file", "-p", *paths], capture_output=True, text=True)
        if proc.returncode != 0:  # >0: number of conflicts; <0: error
            return None
        return proc.stdout


def make_diff(old: str, new: str) -> str:
    """Unified diff of train.py, as carried in a Discovery."""
    import difflib
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        "a/train.py", "b/train.py"))


def apply_diff(old: str, diff: str) -> str | None:
    """Apply a unified diff of train.py with `git apply`; None when it does not apply cleanly."""
    with tempfile.TemporaryDirectory(prefix="swarm-apply-") as tmp:
        Path(tmp, "train.py").write_text(old)
        Path(tmp, "change.diff").write_text(diff)
        proc = subprocess.run(["git", "apply", "--whitespace=nowarn", "change.diff"], cwd=tmp,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        return Path(tmp, "train.py").read_text()
