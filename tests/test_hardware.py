"""Hardware detection: torch is imported (seconds) only where an accelerator could be there."""
from __future__ import annotations

import subprocess
import sys

import pytest

from swarm_node.research import hardware
from swarm_node.research.budget import Budget


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


# ----------------------------------------------------------------------------- tiers and budgets

def test_every_tier_is_a_compute_budget_and_a_model():
    known = hardware.tiers()
    assert set(known) == {"gpu-large", "gpu-consumer", "cpu"}
    for tier in known.values():
        assert isinstance(tier.budget_flops, int) and tier.budget_flops > 0
        assert tier.time_budget > 0 and tier.max_seconds > 0 and tier.confirm_seeds >= 1
        assert {"N_LAYER", "N_EMBD", "BATCH_SIZE", "SEQ_LEN"} <= set(tier.baseline)
    assert known["cpu"].seeds >= 3
    # 8.22e8 FLOPs per step of the cpu baseline (measured; tests/test_tinygpt.py checks the count)
    assert 500 <= known["cpu"].budget_flops // 822_083_584 <= 600
    assert known["gpu-large"].budget_flops > known["gpu-consumer"].budget_flops > known["cpu"].budget_flops


def test_the_budget_of_a_run_comes_from_the_tier_or_the_options():
    from swarm_node.research.setup import Options, SetupError, make_budget
    cpu = hardware.tiers()["cpu"]
    assert make_budget(Options(), cpu) == Budget("compute", cpu.budget_flops, cpu.max_seconds)
    assert make_budget(Options(budget=2e11, max_seconds=30), cpu) == Budget("compute", 2e11, 30)
    assert make_budget(Options(budget_mode="time"), cpu) == Budget("time", 60, 60 + 60 + 15)
    assert make_budget(Options(budget_mode="time", budget=20), cpu) == Budget("time", 20, 85)
    assert Budget("compute", 2e11, 30).env() == {"SWARM_BUDGET_FLOPS": "200000000000"}
    for bad in (Options(budget=0), Options(budget_mode="flops"), Options(max_seconds=-1)):
        with pytest.raises(SetupError):
            make_budget(bad, cpu)


def test_the_hardware_command_shows_the_tier_budget(tmp_path):
    from conftest import swarm_node
    out = swarm_node("hardware", "--tier", "cpu", home=tmp_path).stdout
    assert "4.5e+11 training FLOPs per run (at most 600 s of wall clock); --budget-mode time: 60 s" in out, out
    assert "3 per experiment, 2 more to confirm a keep" in out, out


def test_join_refuses_a_time_budget(tmp_path):
    from conftest import swarm_node
    proc = swarm_node("join", "--budget-mode", "time", "--tier", "cpu", home=tmp_path, check=False, timeout=60)
    assert proc.returncode == 2
    assert "--budget-mode time is for one dedicated machine researching alone" in proc.stderr
    assert "peers could not compare" in proc.stderr
