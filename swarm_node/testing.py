"""The project's helpers for starting nodes in tests and benchmarks, and for waiting on them.

tests/ (through conftest.py) and benchmarks/ both use this module, so how a `swarm-node join`
process is started, watched and stopped is written once:

    node = start_node(tmp, "node1", "--target", str(toy_target(tmp / "toy")), "--max-experiments", "1")
    try:
        address = node.wait(node.printed_address, 60, "node1's address")
        node.wait(lambda: node.rows("SELECT * FROM experiments WHERE status = 'keep'"), 120, "a keep")
    finally:
        node.stop()

Every wait is bounded: a deadline, polled at a fixed interval (so a bounded number of checks).
Only processes the caller started are stopped, each by its own PID: a signal (SIGINT, or SIGTERM
where given), a bounded wait, then SIGKILL and another bounded wait.

Standard library plus trio (a dependency of the package). REPO and TOY_TARGET assume a checkout
of the repository (an editable install), where the tests and benchmarks live.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
TOY_TARGET = REPO / "tests" / "toy_target"  # a research target without torch, with a known optimum
STOP_TIMEOUT_S = 30.0

Message = str | Callable[[], str]


class WaitFailed(AssertionError, TimeoutError):
    """A bounded wait ran out, or the process it watched exited first: a failed assertion to
    pytest, a TimeoutError to a benchmark."""


# ---- files and ports -------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def toy_target(folder: Path, sleep_seconds: float | None = None, *, edits: dict[str, str] | None = None,
               source: Path = TOY_TARGET) -> Path:
    """A copy of the toy target at `folder`. sleep_seconds: each of its runs sleeps that long (the
    sandbox passes no environment through, so the copy's train.py says so); edits: more {old: new}
    changes to its train.py, each old text found there exactly once."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
    changes = dict(edits or {})
    if sleep_seconds is not None:
        changes = {"SLEEP_SECONDS = 0.0": f"SLEEP_SECONDS = {float(sleep_seconds)}", **changes}
    if changes:
        train = folder / "train.py"
        text = train.read_text()
        for old, new in changes.items():
            if text.count(old) != 1:
                raise ValueError(f"{train} has no single {old.strip()!r} line to change")
            text = text.replace(old, new)
        train.write_text(text)
    return folder


# What a ledger says before its node created it, or while it writes: "nothing yet", not a bad query.
_NOT_YET = ("unable to open database file", "no such table", "database is locked", "file is not a database")


def ledger_rows(home: Path, sql: str, args: Sequence = (), *, missing_ok: bool = False) -> list[dict]:
    """Rows of the ledger in a node's home, opened read-only (a running node keeps writing it).

    Raises sqlite3.Error while there is no ledger yet; with `missing_ok`, [] then (and while busy)."""
    path = Path(home) / "ledger.sqlite3"
    try:
        db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=2)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql, tuple(args))]
        finally:
            db.close()
    except sqlite3.Error as exc:
        if missing_ok and str(exc).startswith(_NOT_YET):
            return []
        raise  # a query the ledger cannot answer (a wrong column) must fail the test, not read as "no rows"


def ledger_meta(home: Path, key: str):
    """A value of the ledger's `meta` table (JSON), or None while it is not there."""
    rows = ledger_rows(home, "SELECT value FROM meta WHERE key = ?", (key,), missing_ok=True)
    return json.loads(rows[0]["value"]) if rows else None


def read_status(home: Path) -> dict:
    """The node's status.json (rewritten every second), or {} while there is none."""
    try:
        return json.loads((Path(home) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def printed_address(text: str, starts: str = "") -> str | None:
    """The first multiaddr a node printed as `--bootstrap ADDRESS` whose text starts with `starts`."""
    for match in re.finditer(r"--bootstrap (\S+)", text):
        if match.group(1).startswith(starts):
            return match.group(1)
    return None


def peer_of(address: str) -> str:
    """The peer id at the end of a multiaddr (…/p2p/<id>)."""
    return address.rsplit("/p2p/", 1)[1]


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process `pid` so far (Linux /proc; its children excluded), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# ---- waiting ---------------------------------------------------------------------------------------


def _text(message: Message) -> str:
    return message() if callable(message) else message


def wait_for(check: Callable, timeout: float, message: Message, *, poll: float = 0.3,
             proc: subprocess.Popen | None = None, ignore_errors: bool = False, error: type = WaitFailed):
    """Call `check()` every `poll` s until it returns something truthy, and return that.

    At most `timeout` s; then raises `error` with `message` (a string, or a callable making one,
    called only on failure); at once if `proc` has exited. With `ignore_errors`, an exception from
    `check` counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:
            if not ignore_errors:
                raise
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise error(f"the process exited ({proc.returncode}) while waiting: {_text(message)}")
        time.sleep(poll)
    raise error(f"timed out after {timeout:g} s: {_text(message)}")


async def poll_until(check: Callable, timeout: float, *, poll: float = 0.2, proc: subprocess.Popen | None = None):
    """In trio: `check()`'s first truthy value, called every `poll` s; None after `timeout` or once
    `proc` has exited. `check` must be quick (a ledger query): it runs on the event loop."""
    with trio.move_on_after(timeout):
        while True:
            value = check()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                return None
            await trio.sleep(poll)
    return None


async def until(check: Callable, timeout: float, *, poll: float = 0.2, proc: subprocess.Popen | None = None) -> bool:
    """In trio: whether `check()` came to hold within `timeout` s (and before `proc` exited)."""
    return bool(await poll_until(check, timeout, poll=poll, proc=proc))


# ---- processes -------------------------------------------------------------------------------------


def start_cli(*args: str, log: Path, home: Path | None = None, env: dict | None = None,
              prefix: Sequence[str] = (), python: Sequence[str] = ()) -> subprocess.Popen:
    """`python -m swarm_node.cli ARGS` from the repository root, stdout and stderr appended to `log`.

    home: its SWARM_NODE_HOME; env: more variables; prefix: a command to run it under (`ip netns exec
    NS`); python: interpreter options (`-m cProfile -o FILE`)."""
    full_env = {**os.environ, **({"SWARM_NODE_HOME": str(home)} if home is not None else {}), **(env or {})}
    with open(log, "ab") as out:
        return subprocess.Popen([*prefix, sys.executable, *python, "-m", "swarm_node.cli", *args], cwd=REPO,
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)


def stop_processes(procs: Iterable[subprocess.Popen], sig: int = signal.SIGINT,
                   timeout: float = STOP_TIMEOUT_S) -> list[int | None]:
    """Send `sig` to each process still running (SIGINT: how `join` is meant to be stopped), then
    wait up to `timeout` s for each, SIGKILL it if it has not exited and wait again. Only these PIDs."""
    procs = list(procs)
    children = [child for proc in procs if proc.poll() is None for child in _children(proc.pid)]
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for pid, started in children:  # a training run in its own session outlives a node killed with -9
        if _started(pid) == started:  # the same process, not a later one given its PID
            try:  # its whole group when it leads one (a run: `timeout` and the trainer under it)
                os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return [proc.returncode for proc in procs]


def _children(pid: int) -> list[tuple[int, str | None]]:
    """The direct children of a process we started, with their start times (Linux /proc)."""
    found: list[tuple[int, str | None]] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [(int(c), _started(int(c))) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _started(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """stop_processes for one process; its exit code."""
    return stop_processes([proc], sig, timeout)[0]


@contextmanager
def cpu_hogs(count: int = 1) -> Iterator[list[subprocess.Popen]]:
    """`count` busy-loop processes, each taking a core while the block runs; killed by PID after it."""
    hogs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=STOP_TIMEOUT_S)


class NodeProcess:
    """One `swarm-node join ARGS` subprocess started by the caller: its home, its log (stdout and
    stderr together, appended, so a restart in the same home and log keeps the earlier output)."""

    def __init__(self, home: Path, log_path: Path, *args: str, name: str | None = None, env: dict | None = None,
                 prefix: Sequence[str] = (), python: Sequence[str] = ()):
        self.name = name or Path(home).name
        self.home = Path(home)
        self.log_path = Path(log_path)
        self.started = time.monotonic()
        self.popen = start_cli("join", *args, log=self.log_path, home=self.home, env=env, prefix=prefix,
                               python=python)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def printed_address(self, starts: str = "") -> str | None:
        """The multiaddr the node printed to bootstrap to (see printed_address), or None before it has."""
        return printed_address(self.log(), starts)

    def rows(self, sql: str, args: Sequence = ()) -> list[dict]:
        """Rows of its ledger; [] while there is none."""
        return ledger_rows(self.home, sql, args, missing_ok=True)

    def meta(self, key: str):
        return ledger_meta(self.home, key)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.popen.pid)

    def _failure(self, what: str) -> str:
        return f"waiting for {what}; {self.name}'s log ends:\n{self.log()[-4000:]}"

    def wait(self, check: Callable, timeout: float, what: str, *, poll: float = 0.2, error: type = WaitFailed):
        """wait_for `check`, failing at once if the node exits; the failure shows the log's end."""
        return wait_for(check, timeout, lambda: self._failure(what), poll=poll, proc=self.popen, error=error)

    async def until(self, check: Callable, timeout: float, poll: float = 0.2) -> bool:
        """In trio: whether `check()` came to hold within `timeout` s while the node ran."""
        return await until(check, timeout, poll=poll, proc=self.popen)

    async def wait_async(self, check: Callable, timeout: float, what: str, poll: float = 0.2):
        """In trio: `check()`'s first truthy value; WaitFailed after `timeout` or when the node exits."""
        value = await poll_until(check, timeout, poll=poll, proc=self.popen)
        if not value:
            why = f"timed out after {timeout:g} s" if self.alive() else f"the node exited ({self.popen.returncode})"
            raise WaitFailed(f"{why}: {self._failure(what)}")
        return value

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """Stop this process (see stop_processes); its exit code."""
        return stop_process(self.popen, sig, timeout)


def start_node(folder: Path, name: str, *args: str, **options) -> NodeProcess:
    """A NodeProcess with its home at folder/name and its log at folder/name.log."""
    return NodeProcess(Path(folder) / name, Path(folder) / f"{name}.log", *args, name=name, **options)


class NoSync:
    """Sync provider for a host that knows no states: it answers every request with nothing."""

    def best(self) -> dict:
        return {}

    def state_source(self, state: str) -> None:
        return None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
