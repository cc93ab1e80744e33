"""The node's git workspace: a repository initialised from the research target.

Each experiment is a commit; a keep leaves the head there, a discard resets it, so `git log` in
the workspace is the research history. States are named by the sha256 of train.py.
"""
from __future__ import annotations

import difflib
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .hparams import split_lines

TARGET_FILES = ("prepare.py", "train.py", "program.md")


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

    def remove(self) -> None:
        """Delete the workspace (a start state that does not run here is abandoned)."""
        shutil.rmtree(self.path, ignore_errors=True)

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


# --- diffs of train.py -------------------------------------------------------------------------
# A Discovery's diff comes from a peer, so it is parsed and applied here in pure Python: `git apply`
# would also honour renames, copies, mode changes, binary patches, other paths and fuzzy context.
# Exactly one text patch of train.py is accepted, in the form make_diff writes; lines are split on
# "\n" only, as Python reads the file (\r, \x0c, \x85... are ordinary characters of a line).

DIFF_HEADER = ("--- a/train.py", "+++ b/train.py")
NO_NEWLINE = "\\ No newline at end of file"
_HUNK = re.compile(r"@@ -([0-9]{1,9})(?:,([0-9]{1,9}))? \+([0-9]{1,9})(?:,([0-9]{1,9}))? @@")
_FOREIGN = (  # git extended headers and other patch kinds: never applied
    ("diff ", "a 'diff --git' header"), ("index ", "an 'index' line"), ("old mode", "a mode change"),
    ("new mode", "a mode change"), ("deleted file", "deleting a file"), ("new file", "creating a file"),
    ("rename ", "a rename"), ("copy ", "a copy"), ("similarity ", "a rename or copy"),
    ("dissimilarity ", "a rename or copy"), ("Binary files", "a binary patch"),
    ("GIT binary patch", "a binary patch"), ("literal ", "a binary patch"), ("delta ", "a binary patch"),
)


@dataclass(frozen=True)
class Hunk:
    old_start: int  # 0-based index of the first old line the hunk covers (or inserts before)
    new_start: int
    lines: tuple  # (op, line): op is " ", "-" or "+"; line keeps its "\n" unless it ends the file


@dataclass(frozen=True)
class Patched:
    """apply_diff's result: the new train.py, or why the diff was refused (exactly one is set)."""
    source: str | None = None
    error: str | None = None

    def __post_init__(self):
        if (self.source is None) == (self.error is None):
            raise ValueError("Patched needs exactly one of source and error")

    @property
    def ok(self) -> bool:
        return self.error is None


def make_diff(old: str, new: str) -> str:
    """Unified diff of train.py, as carried in a Discovery; "" when the texts are equal."""
    a, b = split_lines(old), split_lines(new)
    out = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(3):
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        out.append(f"@@ -{_range(i1, i2)} +{_range(j1, j2)} @@\n")
        for tag, x1, x2, y1, y2 in group:
            if tag == "equal":
                out += [_diff_line(" ", line) for line in a[x1:x2]]
            else:
                out += [_diff_line("-", line) for line in a[x1:x2]]
                out += [_diff_line("+", line) for line in b[y1:y2]]
    return "".join([f"{DIFF_HEADER[0]}\n{DIFF_HEADER[1]}\n", *out]) if out else ""


def _range(start: int, stop: int) -> str:
    return f"{start + 1 if stop > start else start},{stop - start}"  # an empty range names the line before


def _diff_line(op: str, line: str) -> str:
    return op + line if line.endswith("\n") else f"{op}{line}\n{NO_NEWLINE}\n"


def apply_diff(old: str, diff: str) -> Patched:
    """`old` with `diff` applied exactly (no fuzz, no offset). Never raises, never runs a process."""
    try:
        return _apply(old, diff)
    except Exception as exc:  # noqa: BLE001 - a peer's diff must not crash the validator
        return Patched(error=f"internal error applying the diff: {type(exc).__name__}")


def _apply(old: str, diff: str) -> Patched:
    hunks, reason = parse_diff(diff)
    if reason:
        return Patched(error=reason)
    if not isinstance(old, str):
        return Patched(error="the old train.py is not text")
    src, out, pos = split_lines(old), [], 0
    for n, hunk in enumerate(hunks, 1):
        if hunk.old_start > len(src):
            return Patched(error=f"hunk {n} starts after the end of train.py ({len(src)} lines)")
        out += src[pos:hunk.old_start]
        pos = hunk.old_start
        for op, line in hunk.lines:
            if op != "+":
                if pos >= len(src) or src[pos] != line:
                    return Patched(error=f"hunk {n}: line {pos + 1} of train.py does not match the diff")
                pos += 1
            if op != "-":
                out.append(line)
    out += src[pos:]
    if any(not line.endswith("\n") for line in out[:-1]):
        return Patched(error="a line marked 'No newline at end of file' is not the last line")
    return Patched(source="".join(out))


def parse_diff(diff: str) -> tuple[list[Hunk], str | None]:
    """The hunks of a single-file train.py patch, or ([], why it is not one)."""
    if not isinstance(diff, str) or not diff:
        return [], "empty diff"
    if not diff.endswith("\n"):
        return [], "the diff does not end with a newline (truncated?)"
    lines = diff[:-1].split("\n")
    for index, expected in enumerate(DIFF_HEADER):
        line = lines[index] if index < len(lines) else ""
        if line != expected:
            return [], f"diff line {index + 1}: {_not_a_hunk(line, first=True)}"
    hunks, i, old_end, delta = [], 2, 0, 0
    while i < len(lines):
        m = _HUNK.fullmatch(lines[i])
        if not m:
            return [], f"diff line {i + 1}: {_not_a_hunk(lines[i], first=False)}"
        n = len(hunks) + 1
        a, b, c, d = int(m[1]), int(m[2] or 1), int(m[3]), int(m[4] or 1)
        if (b and not a) or (d and not c):
            return [], f"hunk {n}: line numbers start at 1"
        if not b and not d:
            return [], f"hunk {n} is empty"
        old_start, new_start = (a - 1 if b else a), (c - 1 if d else c)
        if old_start < old_end:
            return [], f"hunk {n} overlaps or comes before the previous one"
        if new_start != old_start + delta:
            return [], f"hunk {n}: its new line number disagrees with the hunks before it"
        body, left_old, left_new, i = [], b, d, i + 1
        while left_old > 0 or left_new > 0:
            if i >= len(lines):
                return [], f"hunk {n} is truncated: it has fewer lines than its header counts"
            op, line = lines[i][:1], lines[i][1:]
            if op not in (" ", "-", "+"):
                return [], f"diff line {i + 1}: hunk {n} has fewer lines than its header counts"
            left_old -= op != "+"
            left_new -= op != "-"
            if left_old < 0 or left_new < 0:
                return [], f"diff line {i + 1}: hunk {n} has more lines than its header counts"
            i += 1
            if i < len(lines) and lines[i] == NO_NEWLINE:
                body.append((op, line))
                i += 1
            else:
                body.append((op, line + "\n"))
        hunks.append(Hunk(old_start, new_start, tuple(body)))
        old_end, delta = old_start + b, delta + d - b
    if not hunks:
        return [], "the diff has no hunks"
    return hunks, None


def _not_a_hunk(line: str, *, first: bool) -> str:
    for prefix, kind in _FOREIGN:
        if line.startswith(prefix):
            return f"{kind} is not accepted (only a text patch of train.py)"
    if "/dev/null" in line:
        return "creating or deleting a file is not accepted"
    if line.startswith(("--- ", "+++ ")):
        if not first:
            return "a second file header: only one patch of train.py is accepted"
        return f"only train.py may be patched, not {line[4:][:80]!r}"
    if first:
        return f"expected {DIFF_HEADER[0]!r} then {DIFF_HEADER[1]!r}"
    if line[:1] in (" ", "-", "+", "\\"):
        return "the previous hunk has more lines than its header counts"
    return f"expected a hunk header '@@ -A,B +C,D @@', got {line[:80]!r}"
