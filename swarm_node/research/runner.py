"""Run one training of train.py in a sandboxed subprocess and read its summary block.

The budget (budget.py) reaches train.py as SWARM_* variables; the harness counts it. The sandbox:
a scrubbed environment, a wall-clock limit (the budget's max_seconds; and, on Linux, `timeout`
a little later, for a run whose node was killed), an address-space limit on CPU runs, its own
process group (killed whole on timeout or cancel) and, where Linux lets
an unprivileged or root user make one, an empty network namespace (`unshare --net`). It is not a
security boundary against a determined attacker: the code still runs as the node's user and can
read that user's files. That is why peers' code diffs are refused unless explicitly allowed.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import trio

from .budget import Budget
from .summary import parse_summary
from .workspace import file_sha256

TAIL_CHARS = 4000


@dataclass(frozen=True)
class RunOutcome:
    status: str  # ok | crash | interrupted
    val_bpb: float | None = None
    test_bpb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None
    num_steps: int | None = None
    train_flops: int | None = None
    params_m: float | None = None
    tokens_per_second: float | None = None
    output_tail: str = ""
    reason: str = ""


class HarnessChanged(RuntimeError):
    """prepare.py in the workspace differs from the target's: results would not be comparable."""


@cache
def _no_network_prefix() -> tuple[str, ...]:
    """`unshare` into an empty network namespace, if this OS lets us; else nothing."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    for flags in (("--net",), ("--map-root-user", "--net")):
        try:
            if subprocess.run([exe, *flags, "true"], capture_output=True, timeout=10).returncode == 0:
                return (exe, *flags)
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


ORPHAN_GRACE_S = 5  # after the node's own deadline, so that a live node always ends its run first


def _wall_limit_prefix(seconds: float) -> tuple[str, ...]:
    """GNU `timeout`, so a run ends even when its node was killed with -9 and cannot end it (the
    run has a session of its own); the node's own deadline comes first. Else nothing."""
    exe = shutil.which("timeout")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    return (exe, "--kill-after=5", str(int(seconds) + ORPHAN_GRACE_S))


MEMORY_LIMIT_GB = 8.0  # address-space limit of a CPU training run (a runaway model must not take the machine)


class SubprocessRunner:
    """Runs `python train.py` in the workspace; one instance per node."""

    def __init__(self, workspace: Path, *, budget: Budget, corpus_path: Path, corpus_sha256: str,
                 expected_prepare_sha256: str, device: str = "auto", threads: int | None = None,
                 memory_limit_gb: float | None = MEMORY_LIMIT_GB, scratch: Path | None = None):
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a Budget, not {type(budget).__name__}")
        self.workspace = Path(workspace)
        self.budget = budget
        self.corpus_path = Path(corpus_path)
        self.corpus_sha256 = corpus_sha256
        self.expected_prepare_sha256 = expected_prepare_sha256
        self.device = device
        self.threads = threads
        self.memory_limit_gb = memory_limit_gb
        self.timeout = budget.max_seconds  # start-up, data loading and evaluation included
        self.scratch = Path(scratch or self.workspace.parent / "cache" / "runs")
        self.scratch.mkdir(parents=True, exist_ok=True)

    def check_harness(self) -> None:
        actual = file_sha256(self.workspace / "prepare.py")
        if actual != self.expected_prepare_sha256:
            raise HarnessChanged(
                f"prepare.py in {self.workspace} was changed (sha256 {actual[:12]}..., expected "
                f"{self.expected_prepare_sha256[:12]}...): results would not be comparable. Restore it with "
                f"`git -C {self.workspace} checkout -- prepare.py`.")

    def _env(self, seed: int) -> dict[str, str]:
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(self.scratch),
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
               **self.budget.env(), "SWARM_SEED": str(seed),
               "SWARM_DATA": str(self.corpus_path), "SWARM_EXPECTED_SHA256": self.corpus_sha256,
               "SWARM_DEVICE": self.device,
               "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS (ignored without CUDA)
               # OpenMP threads that wait sleep instead of spinning: on a machine doing other work a
               # spinning 2-thread run took 134 s where a sleeping one took 22 s (same result)
               "OMP_WAIT_POLICY": "PASSIVE"}
        for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "CUDA_HOME", "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY"):
            if key in os.environ:
                env[key] = os.environ[key]
        if self.threads:
            env["SWARM_THREADS"] = env["OMP_NUM_THREADS"] = str(self.threads)
        return env

    def _limits(self):
        limit = self.memory_limit_gb
        if not limit or self.device != "cpu":
            return None  # CUDA maps huge virtual ranges: an address-space cap would break it

        def apply() -> None:
            cap = int(limit * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        return apply

    async def measure(self, train_py: str, seed: int) -> RunOutcome:
        self.check_harness()
        if self.workspace.joinpath("train.py").read_text() != train_py:
            raise RuntimeError("workspace train.py is not the state being measured (commit it first)")
        log_path = self.scratch / "last-run.log"
        cmd = [*_no_network_prefix(), *_wall_limit_prefix(self.timeout), sys.executable, "train.py"]
        start = time.monotonic()
        with open(log_path, "wb") as log:
            proc = await trio.lowlevel.open_process(
                cmd, cwd=self.workspace, env=self._env(seed), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=self._limits())
            reason = ""
            try:
                with trio.move_on_after(self.timeout) as deadline:
                    await proc.wait()
                if deadline.cancelled_caught:
                    reason = (f"too slow for this tier: no result within {self.timeout:.0f} s "
                              f"(wall-clock limit; budget {self.budget.label()})")
                    await _kill_group(proc)
            except BaseException:  # cancelled (Ctrl-C, node shutdown): never leave a trainer behind
                with trio.CancelScope(shield=True):
                    await _kill_group(proc)
                raise
        wall = time.monotonic() - start
        output = log_path.read_text(errors="replace")
        tail = output[-TAIL_CHARS:]
        summary = parse_summary(output) if not reason and proc.returncode == 0 else None
        if summary is None:
            return RunOutcome(status="crash", wall_seconds=wall, output_tail=tail,
                              reason=reason or _crash_reason(proc.returncode, tail))
        return RunOutcome(
            status="ok", val_bpb=summary["val_bpb"], test_bpb=summary.get("test_bpb"),
            training_seconds=summary.get("training_seconds"), total_seconds=summary.get("total_seconds"),
            wall_seconds=wall, peak_memory_mb=summary.get("peak_vram_mb"),
            num_steps=int(summary["num_steps"]) if "num_steps" in summary else None,
            train_flops=int(summary["train_flops"]) if "train_flops" in summary else None,
            params_m=summary.get("num_params_M"), tokens_per_second=summary.get("tokens_per_second"),
            output_tail=tail)


def _crash_reason(returncode: int | None, tail: str) -> str:
    if "MemoryError" in tail or "out of memory" in tail.lower():
        return "out of memory"
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    if returncode == 0:
        return "no summary block (expected '---' then 'val_bpb: ...')"
    last = next((line for line in reversed(tail.strip().splitlines()) if line.strip()), "")
    return f"exit status {returncode}: {last[:200]}"


async def _kill_group(proc: trio.Process) -> None:
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        with trio.move_on_after(grace):
            await proc.wait()
            return
