import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_node.testing import REPO, TOY_TARGET, ledger_rows  # noqa: F401  (the helpers tests import from here)

CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def swarm_node(*args, home: Path, timeout: float = 300, env: dict | None = None, check: bool = True):
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "SWARM_NODE_HOME": str(home), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "swarm_node.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"swarm-node {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


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
