"""Hardware detection: torch is imported (seconds) only where an accelerator could be there."""
from __future__ import annotations

import subprocess
import sys

import pytest

from swarm_node.research import hardware


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver check is Linux's")
def test_no_gpu_driver_means_a_cpu_profile_without_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "ACCELERATOR_PATHS", (str(tmp_path / "no-driver"),))
    monkeypatch.setattr(hardware.subprocess, "run", _no_probe)
    profile = hardware.profile_for(None)
    assert profile.accelerator == "cpu" and profile.torch  # its version, read from the package metadata
    assert hardware.pick_tier(profile).name == "cpu"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver check is Linux's")
def test_a_gpu_driver_means_asking_torch(monkeypatch, tmp_path):
    (tmp_path / "kfd").write_text("")
    monkeypatch.setattr(hardware, "ACCELERATOR_PATHS", (str(tmp_path / "kfd"),))
    asked = []
    monkeypatch.setattr(hardware, "detect", lambda: asked.append(True) or hardware.cpu_profile())
    hardware.profile_for(None)
    assert asked == [True]


def test_a_cpu_tier_is_never_probed(monkeypatch):
    monkeypatch.setattr(hardware.subprocess, "run", _no_probe)
    assert hardware.profile_for("cpu").accelerator == "cpu"


def _no_probe(*args, **kwargs):
    raise AssertionError(f"torch was probed: {args}")


def test_the_probe_itself_runs_here():
    """The real probe (torch in a subprocess) still works where it is asked for."""
    profile = hardware.detect()
    assert profile.accelerator in ("cpu", "cuda", "mps") and profile.torch
    assert subprocess.run([sys.executable, "-c", "import torch"]).returncode == 0
