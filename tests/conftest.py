import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOY_TARGET = REPO / "tests" / "toy_target"
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def swarm_node(*args, home: Path, timeout: float = 300, env: dict | None = None, check: bool = True):
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "SWARM_NODE_HOME": str(home), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "swarm_node.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"swarm-node {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def ledger_rows(home: Path, sql: str, args=()):
    db = sqlite3.connect(home / "ledger.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def slow_toy_target(folder: Path, seconds: float) -> Path:
    """A copy of the toy target whose runs take `seconds` (the sandbox passes no env through)."""
    import shutil
    shutil.copytree(TOY_TARGET, folder)
    train = folder / "train.py"
    train.write_text(train.read_text().replace("SLEEP_SECONDS = 0.0", f"SLEEP_SECONDS = {float(seconds)}"))
    return folder


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_file():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright's sync API (no browser download)."""
    from dashboard_checks import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    from dashboard_checks import screenshot_dir
    return screenshot_dir(tmp_path)
