"""What this machine is, and which tier of the swarm it joins.

Detection runs torch in a subprocess (the node itself never initialises CUDA: training happens
in the runner's subprocess, and a CUDA context in the node would only cost memory), and only
where an accelerator could be there: importing torch costs seconds at every start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

from ..assets import load_config

_PROBE = r"""
import json, torch
info = {"accelerator": "cpu", "device_name": "", "memory_gb": 0.0}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info = {"accelerator": "cuda", "device_name": p.name, "memory_gb": p.total_memory / 2**30}
elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    info = {"accelerator": "mps", "device_name": "Apple MPS", "memory_gb": 0.0}
info["torch"] = torch.__version__
print(json.dumps(info))
"""


@dataclass(frozen=True)
class HardwareProfile:
    accelerator: str  # cpu | cuda | mps
    device_name: str
    memory_gb: float  # accelerator memory (0 for cpu/mps)
    cpu_cores: int
    ram_gb: float
    torch: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Tier:
    """A class of machines researching one benchmark: a compute budget and a model size."""

    name: str
    description: str
    role: str
    budget_flops: int  # training FLOPs per run (compute mode, the default)
    time_budget: float  # training seconds per run, only for --budget-mode time
    max_seconds: float  # wall-clock limit of one run in compute mode: past it, too slow for this tier
    seeds: int  # K: decision seeds per experiment
    confirm_seeds: int  # C: fresh seeds that confirm a keep
    baseline: dict  # hyperparameter overrides applied to the target's train.py at start


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def detect() -> HardwareProfile:
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        info = json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise RuntimeError(f"could not probe the hardware with torch: {exc}") from exc
    return HardwareProfile(accelerator=info["accelerator"], device_name=info["device_name"],
                           memory_gb=round(info["memory_gb"], 1), cpu_cores=os.cpu_count() or 1,
                           ram_gb=round(_ram_gb(), 1), torch=info["torch"])


def cpu_profile() -> HardwareProfile:
    """The profile of a machine told to be a CPU node (`--tier cpu`): no torch import, which
    costs seconds at every start."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return HardwareProfile(accelerator="cpu", device_name="", memory_gb=0.0, cpu_cores=os.cpu_count() or 1,
                           ram_gb=round(_ram_gb(), 1), torch=torch_version)


# Where a GPU that torch could use shows itself without importing torch: NVIDIA's driver, ROCm's
# kernel driver, WSL's GPU bridge.
ACCELERATOR_PATHS = ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def may_have_accelerator() -> bool:
    """False only where torch cannot find an accelerator: Linux without any GPU driver."""
    if not sys.platform.startswith("linux"):
        return True  # macOS (MPS) and others: ask torch
    return any(os.path.exists(p) for p in ACCELERATOR_PATHS)


def profile_for(tier_override: str | None) -> HardwareProfile:
    """Probe the hardware with torch (seconds), unless the chosen tier runs on the CPU anyway or
    this is a Linux machine with no GPU driver, where torch could only answer "cpu"."""
    spec = load_config("tiers")["tiers"].get(tier_override or "", {})
    if spec.get("match", {}).get("accelerator") == "cpu" or not may_have_accelerator():
        return cpu_profile()
    return detect()


def tiers() -> dict[str, Tier]:
    return {name: _tier(name, t) for name, t in load_config("tiers")["tiers"].items()}


def _tier(name: str, t: dict) -> Tier:
    flops = t["budget_flops"]
    tier = Tier(name=name, description=t["description"], role=t["role"],
                budget_flops=flops if isinstance(flops, int) else int(float(flops)),
                time_budget=float(t["time_budget"]), max_seconds=float(t["max_seconds"]), seeds=int(t["seeds"]),
                confirm_seeds=int(t["confirm_seeds"]), baseline=dict(t.get("baseline", {})))
    if not (tier.budget_flops > 0 and tier.time_budget > 0 and tier.max_seconds > 0 and tier.seeds >= 1
            and tier.confirm_seeds >= 0):
        raise ValueError(f"tier {name} in configs/tiers.toml: budget_flops, time_budget and max_seconds must be "
                         f"positive, seeds at least 1 and confirm_seeds at least 0")
    return tier


def pick_tier(profile: HardwareProfile, override: str | None = None) -> Tier:
    known = tiers()
    if override:
        if override not in known:
            raise ValueError(f"unknown tier {override!r}; known tiers: {', '.join(known)} (configs/tiers.toml)")
        return known[override]
    for name, spec in load_config("tiers")["tiers"].items():
        match = spec.get("match", {})
        if profile.accelerator in match.get("accelerator", "cpu").split("|") and \
                profile.memory_gb >= match.get("min_memory_gb", 0):
            return known[name]
    return known["cpu"]
