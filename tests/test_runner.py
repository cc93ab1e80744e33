import shutil

import pytest
import trio

from swarm_node.research.runner import HarnessChanged, SubprocessRunner, parse_summary
from swarm_node.research.workspace import file_sha256

from conftest import TOY_TARGET

SUMMARY = "step 1\n---\nval_bpb:          1.5\ntest_bpb: 1.6\nnum_steps: 10\ndevice: cpu\n"


def test_summary_block_is_parsed_and_missing_values_are_none():
    assert parse_summary(SUMMARY) == {"val_bpb": 1.5, "test_bpb": 1.6, "num_steps": 10.0}
    assert parse_summary("no summary here") is None
    assert parse_summary("---\nval_bpb: nan\n") is None


def make_runner(tmp_path, train_py: str, **kw) -> SubprocessRunner:
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(TOY_TARGET / "prepare.py", ws / "prepare.py")
    (ws / "train.py").write_text(train_py)
    return SubprocessRunner(ws, budget=1, corpus_path=TOY_TARGET / "prepare.py", corpus_sha256="0" * 64,
                            expected_prepare_sha256=file_sha256(TOY_TARGET / "prepare.py"), device="cpu",
                            scratch=tmp_path / "scratch", **kw)


def measure(runner, train_py):
    return trio.run(runner.measure, train_py, 0)


@pytest.mark.parametrize("body, reason", [
    ("raise SystemExit('boom')", "exit status 1: boom"),
    ("import time; time.sleep(60)", "hang"),
    ("x = bytearray(64 * 2**30)", "out of memory"),
    ("print('finished without a summary')", "no summary block"),
])
def test_crashes_hangs_and_memory_hogs_become_crash_results(tmp_path, body, reason):
    runner = make_runner(tmp_path, body, margin=2, memory_limit_gb=2)
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
