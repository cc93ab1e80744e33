import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from swarm_node.research.budget import Budget
from swarm_node.research.runner import ORPHAN_GRACE_S, HarnessChanged, SubprocessRunner, parse_summary
from swarm_node.research.workspace import file_sha256
from swarm_node.testing import _children, _started, stop_process, wait_for

from conftest import TOY_TARGET

SUMMARY = "step 1\n---\nval_bpb:          1.5\ntest_bpb: 1.6\nnum_steps: 10\ntrain_flops: 50000000000000001\ndevice: cpu\n"


def test_summary_block_is_parsed_and_missing_values_are_none():
    summary = parse_summary(SUMMARY)
    assert summary == {"val_bpb": 1.5, "test_bpb": 1.6, "num_steps": 10, "train_flops": 50_000_000_000_000_001}
    assert isinstance(summary["train_flops"], int)  # exact, past float64's 2**53
    assert parse_summary("no summary here") is None
    assert parse_summary("---\nval_bpb: nan\n") is None
    assert "train_flops" not in parse_summary("---\nval_bpb: 1\ntrain_flops: 1.5\n")


def make_runner(tmp_path, train_py: str, budget: Budget = Budget("compute", 1e9, 30), **kw) -> SubprocessRunner:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(TOY_TARGET / "prepare.py", ws / "prepare.py")
    (ws / "train.py").write_text(train_py)
    return SubprocessRunner(ws, budget=budget, corpus_path=TOY_TARGET / "prepare.py", corpus_sha256="0" * 64,
                            expected_prepare_sha256=file_sha256(TOY_TARGET / "prepare.py"), device="cpu",
                            scratch=tmp_path / "scratch", **kw)


def measure(runner, train_py):
    return trio.run(runner.measure, train_py, 0)


@pytest.mark.parametrize("body, reason", [
    ("raise SystemExit('boom')", "exit status 1: boom"),
    ("import time; time.sleep(60)", "too slow for this tier: no result within 2 s (wall-clock limit; budget 1e+09 FLOPs)"),
    ("x = bytearray(64 * 2**30)", "out of memory"),
    ("print('finished without a summary')", "no summary block"),
])
def test_crashes_hangs_and_memory_hogs_become_crash_results(tmp_path, body, reason):
    runner = make_runner(tmp_path, body, budget=Budget("compute", 1e9, 2), memory_limit_gb=2)
    outcome = measure(runner, body)
    assert outcome.status == "crash"
    assert reason in outcome.reason
    assert outcome.wall_seconds < 30


def test_the_sandbox_scrubs_the_environment_and_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "secret-key")
    body = ("import os, socket\n"
            "print('key' if 'ANTHROPIC_API_KEY' in os.environ else 'no-key')\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=2); print('net')\n"
            "except OSError as e:\n    print('no-net', e.errno)\n"
            "print('---'); print('val_bpb: 1.0')\n")
    outcome = measure(make_runner(tmp_path, body), body)
    assert outcome.status == "ok"
    assert "no-key" in outcome.output_tail
    assert "no-net" in outcome.output_tail


def test_a_changed_harness_is_refused(tmp_path):
    runner = make_runner(tmp_path, "print(1)")
    (runner.workspace / "prepare.py").write_text("# tampered\n")
    with pytest.raises(HarnessChanged, match="git -C .* checkout -- prepare.py"):
        measure(runner, "print(1)")


def test_the_budget_reaches_the_run_and_train_flops_comes_back(tmp_path):
    train_py = (TOY_TARGET / "train.py").read_text()
    outcome = measure(make_runner(tmp_path, train_py, budget=Budget("compute", 5e11, 30)), train_py)
    assert outcome.status == "ok" and outcome.train_flops == 500_000_000_000 and outcome.num_steps == 1


def test_a_time_budget_reaches_the_run_as_seconds(tmp_path):
    body = "import os; print('---'); print('val_bpb: 1'); print('training_seconds:', os.environ['SWARM_TIME_BUDGET'])\n" \
           "assert 'SWARM_BUDGET_FLOPS' not in os.environ"
    outcome = measure(make_runner(tmp_path, body, budget=Budget("time", 7, 30)), body)
    assert outcome.status == "ok" and outcome.training_seconds == 7 and outcome.train_flops is None


def test_a_run_past_max_seconds_is_too_slow_for_the_tier(tmp_path):
    """The toy target stretched by SLEEP_SECONDS past the budget's wall-clock limit: a crash, and the
    reason says why (not a hang: on a slower machine the same run would simply finish later)."""
    train_py = (TOY_TARGET / "train.py").read_text().replace("SLEEP_SECONDS = 0.0", "SLEEP_SECONDS = 30.0")
    outcome = measure(make_runner(tmp_path, train_py, budget=Budget("compute", 5e11, 1.5)), train_py)
    assert outcome.status == "crash" and outcome.val_bpb is None
    assert outcome.reason == "too slow for this tier: no result within 2 s (wall-clock limit; budget 5e+11 FLOPs)"
    assert outcome.wall_seconds < 10


def test_the_runner_takes_only_a_budget_object(tmp_path):
    with pytest.raises(TypeError, match="Budget"):
        make_runner(tmp_path, "print(1)", budget=60)


def test_a_run_ends_by_itself_after_its_node_is_killed(tmp_path):
    """A run has a session of its own, so a node killed with -9 cannot end it; its own wall limit
    (`timeout`, max_seconds + ORPHAN_GRACE_S) does. The node here is a process that measures a
    train.py that never ends, killed with -9 while the run is going."""
    node = tmp_path / "node.py"
    node.write_text(f"""
import sys, trio
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from test_runner import make_runner
from swarm_node.research.budget import Budget
runner = make_runner(Path({str(tmp_path)!r}), "import time; time.sleep(600)", Budget("compute", 1e9, 3))
trio.run(runner.measure, "import time; time.sleep(600)", 0)
""")
    proc = subprocess.Popen([sys.executable, str(node)], cwd=tmp_path)
    run = None
    try:
        run = wait_for(lambda: _children(proc.pid), 30, "the node started no run", poll=0.05)[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _started(run[0]) == run[1], "the run ended with its node: nothing to test"
        wait_for(lambda: _started(run[0]) != run[1], 3 + ORPHAN_GRACE_S + 15, "the orphaned run is still going")
    finally:
        stop_process(proc, signal.SIGKILL)
        if run is not None and _started(run[0]) == run[1]:  # the run this test's node started, by PID
            os.killpg(run[0], signal.SIGKILL)
