"""The tinygpt research target, run the way the node runs it: as scripts in subprocesses."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "experiments" / "tinygpt"
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
REFUSING_URL = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once

needs_corpus = pytest.mark.skipif(not CORPUS.is_file(), reason=f"shared corpus not found at {CORPUS}")


def run_script(script: str, *args: str, cwd: Path = TARGET, timeout: float = 60, **env: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=timeout)


def resolve(tmp_path: Path, *args: str, **env: str):
    env.setdefault("SWARM_NODE_HOME", str(tmp_path / "home"))
    env.setdefault("SWARM_CORPUS_URL", REFUSING_URL)
    return run_script("prepare.py", *args, "--resolve", **env)


def parse_summary(stdout: str) -> dict[str, str]:
    assert "\n---\n" in "\n" + stdout, stdout
    block = stdout.split("---\n", 1)[1]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.strip().splitlines())}


# ----------------------------------------------------------------------------- corpus

@needs_corpus
def test_resolve_finds_the_corpus_in_swarm_node_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tinyshakespeare.txt").symlink_to(CORPUS)
    proc = resolve(tmp_path, SWARM_NODE_DATA=str(data))
    assert proc.returncode == 0, proc.stderr
    corpus = json.loads(proc.stdout)
    assert corpus["sha256"] == CORPUS_SHA256
    assert corpus["bytes"] == 1_115_394
    assert corpus["name"] == "tinyshakespeare.txt"
    assert Path(corpus["path"]).is_absolute()


@needs_corpus
def test_resolve_finds_the_corpus_in_the_node_cache(tmp_path):
    cache = tmp_path / "home" / "cache"
    cache.mkdir(parents=True)
    (cache / "tinyshakespeare.txt").symlink_to(CORPUS)
    proc = resolve(tmp_path, SWARM_NODE_DATA=str(tmp_path / "no-such-folder"))
    assert proc.returncode == 0, proc.stderr
    assert CORPUS_SHA256 in proc.stdout


def test_a_corrupted_copy_is_refused_with_both_hashes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    wrong = b"To be, or not to be, that is the question.\n" * 1000
    (data / "tinyshakespeare.txt").write_bytes(wrong)
    proc = resolve(tmp_path, SWARM_NODE_DATA=str(data))
    assert proc.returncode == 2
    assert "sha256" in proc.stderr
    assert CORPUS_SHA256 in proc.stderr and hashlib.sha256(wrong).hexdigest() in proc.stderr
    assert str(data / "tinyshakespeare.txt") in proc.stderr
    assert proc.stdout == ""


def test_offline_without_a_copy_says_what_to_do(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = resolve(tmp_path, SWARM_NODE_DATA=str(empty))
    assert proc.returncode == 2
    message = proc.stderr
    assert "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt" in message
    assert "SWARM_NODE_DATA" in message and "--data" in message
    assert list((tmp_path / "home" / "cache").iterdir()) == []  # no partial download left behind


def test_own_corpus_gives_its_sha256(tmp_path):
    own = tmp_path / "own.txt"
    own.write_bytes(bytes(range(256)) * 80)  # 20 KB of any bytes
    proc = resolve(tmp_path, "--data", str(own))
    assert proc.returncode == 0, proc.stderr
    corpus = json.loads(proc.stdout)
    assert corpus == {"path": str(own.resolve()), "sha256": hashlib.sha256(own.read_bytes()).hexdigest(),
                      "bytes": 20_480, "name": "own.txt"}


def test_own_corpus_must_exist_and_not_be_tiny(tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_bytes(b"x" * 100)
    proc = resolve(tmp_path, "--data", str(tiny))
    assert proc.returncode == 2 and "100 bytes" in proc.stderr
    proc = resolve(tmp_path, "--data", str(tmp_path / "missing.txt"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


@needs_corpus
def test_train_refuses_a_corpus_whose_hash_changed(tmp_path):
    proc = run_script("train.py", SWARM_DATA=str(CORPUS), SWARM_EXPECTED_SHA256="0" * 64,
                      SWARM_NODE_HOME=str(tmp_path / "home"))
    assert proc.returncode == 2
    assert "SWARM_EXPECTED_SHA256" in proc.stderr and CORPUS_SHA256 in proc.stderr
    assert "---" not in proc.stdout


# ----------------------------------------------------------------------------- training

def edit_block(source: str, **values) -> str:
    for name, value in values.items():
        source, count = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value!r} ", source, flags=re.M)
        assert count == 1, name
    return source


@needs_corpus
@pytest.mark.slow
@pytest.mark.parametrize("changes", [
    {},  # the baseline as committed
    {"NORM": "rmsnorm", "INIT": "kaiming", "TIE_EMBEDDINGS": True, "ACTIVATION": "silu", "LR_SCHEDULE": "constant"},
    {"INIT": "xavier", "ACTIVATION": "relu", "LR_SCHEDULE": "linear", "DROPOUT": 0.1, "WARMUP_STEPS": 0,
     "N_LAYER": 2, "N_EMBD": 64, "SEQ_LEN": 64, "GRAD_CLIP": 0.0},
], ids=["baseline", "rmsnorm-kaiming-tied-silu", "xavier-relu-dropout-small"])
def test_train_runs_and_prints_the_summary(tmp_path, changes):
    for name in ("train.py", "prepare.py"):
        shutil.copy(TARGET / name, tmp_path / name)
    train_py = tmp_path / "train.py"
    train_py.write_text(edit_block(train_py.read_text(), **changes))
    proc = run_script("train.py", cwd=tmp_path, timeout=80, SWARM_DATA=str(CORPUS), SWARM_TIME_BUDGET="3",
                      SWARM_THREADS="1", SWARM_DEVICE="cpu", SWARM_SEED="1", SWARM_EXPECTED_SHA256=CORPUS_SHA256,
                      SWARM_NODE_HOME=str(tmp_path / "home"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = parse_summary(proc.stdout)
    assert list(summary) == ["val_bpb", "test_bpb", "training_seconds", "total_seconds", "peak_vram_mb",
                             "tokens_per_second", "mfu_percent", "num_steps", "num_params_M", "device"]
    for key in ("val_bpb", "test_bpb"):
        assert math.isfinite(float(summary[key])) and 0 < float(summary[key]) < 9, summary
    assert 3.0 <= float(summary["training_seconds"]) < 10
    assert int(summary["num_steps"]) >= 2 and float(summary["tokens_per_second"]) > 0
    assert float(summary["peak_vram_mb"]) > 0 and float(summary["mfu_percent"]) == 0
    assert summary["device"] == "cpu"


@needs_corpus
@pytest.mark.slow
def test_a_diverging_run_exits_nonzero_without_a_summary(tmp_path):
    for name in ("train.py", "prepare.py"):
        shutil.copy(TARGET / name, tmp_path / name)
    train_py = tmp_path / "train.py"
    train_py.write_text(edit_block(train_py.read_text(), LEARNING_RATE=1e30, WARMUP_STEPS=0, GRAD_CLIP=0.0,
                                   N_LAYER=1, N_EMBD=32, SEQ_LEN=32))
    proc = run_script("train.py", cwd=tmp_path, timeout=80, SWARM_DATA=str(CORPUS), SWARM_TIME_BUDGET="3",
                      SWARM_THREADS="1", SWARM_DEVICE="cpu")
    assert proc.returncode not in (0, 2), proc.stdout
    assert "not finite" in proc.stderr or "loss is nan" in proc.stderr or "loss is inf" in proc.stderr
    assert "val_bpb" not in proc.stdout
