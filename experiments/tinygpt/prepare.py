"""The fixed harness of the tinygpt target: corpus, splits, batches, evaluation, run settings and
the training budget (FLOPs counted here, so that no train.py can count its own).

Proposers never edit this file. train.py imports it; the node only runs it as a script:

    python prepare.py --resolve              # the default corpus (found, or downloaded once)
    python prepare.py --data FILE --resolve  # your own corpus

Either prints one line of JSON: {"path": ..., "sha256": ..., "bytes": ..., "name": ...}.
On a corpus problem it prints the reason to stderr and exits 2.

Tokens are bytes (vocab 256). Splits by byte offset: first 90% train, next 5% validation, last 5%
held-out test. The metric is bits per byte on a fixed slice of a split.

The budget (read by RunSettings.from_env) is one of, by precedence:
  SWARM_MAX_STEPS     a fixed number of training steps (the replay's table, benchmarks)
  SWARM_BUDGET_FLOPS  training FLOPs (compute mode): train.py runs its first step under
                      count_flops, then trains max(1, budget // step FLOPs) steps in all, so a
                      bigger model gets fewer steps and a faster machine only finishes sooner
  SWARM_TIME_BUDGET   seconds of training (time mode; default 20 s when none of them is set)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it, so that `--resolve` (which the node runs)
# answers in milliseconds instead of paying seconds for the torch import.

CORPUS_NAME = "tinyshakespeare.txt"
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
CORPUS_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DOWNLOAD_TIMEOUT_S = 30
MIN_CORPUS_BYTES = 10_000

VOCAB_SIZE = 256
TRAIN_FRACTION, VAL_FRACTION = 0.90, 0.05  # the test split is the remaining 5%
EVAL_TOKENS = 32_768  # tokens scored per evaluation: quick on a CPU, identical for every run


class CorpusError(Exception):
    """The corpus is missing, corrupt or unusable; the message says what to do."""


# ----------------------------------------------------------------------------- corpus

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def node_cache() -> Path:
    home = os.environ.get("SWARM_NODE_HOME") or Path.home() / ".swarm-node"
    return Path(home).expanduser() / "cache"


def _check_pinned(path: Path, what_to_do: str) -> Path:
    actual = sha256_of(path)
    if actual != CORPUS_SHA256:
        raise CorpusError(
            f"{path} does not match the pinned corpus: sha256 expected {CORPUS_SHA256}, "
            f"got {actual}. {what_to_do}")
    return path


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            while block := resp.read(1 << 16):
                out.write(block)
        _check_pinned(Path(tmp), f"The download from {url} is not the expected file; nothing was kept.")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_default_corpus() -> Path:
    """$SWARM_NODE_DATA/tinyshakespeare.txt, else the node's cache, else download into the cache."""
    data_dir = os.environ.get("SWARM_NODE_DATA")
    if data_dir:
        candidate = Path(data_dir).expanduser() / CORPUS_NAME
        if candidate.is_file():
            return _check_pinned(candidate, "Replace it with a fresh download of "
                                 f"{CORPUS_URL}, or pass --data FILE to use your own corpus.")
    cached = node_cache() / CORPUS_NAME
    if cached.is_file():
        return _check_pinned(cached, "Delete it so that it is downloaded again, "
                             "or pass --data FILE to use your own corpus.")
    url = os.environ.get("SWARM_CORPUS_URL") or CORPUS_URL
    try:
        _download(url, cached)
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        raise CorpusError(
            f"no copy of {CORPUS_NAME} found (looked in SWARM_NODE_DATA={data_dir or '(unset)'} "
            f"and {cached.parent}) and the download from {url} failed: {exc}. "
            f"Download {CORPUS_URL} yourself, save it as {CORPUS_NAME} in a folder and set "
            f"SWARM_NODE_DATA to that folder, or pass --data FILE to use your own corpus.") from exc
    return cached.resolve()


def check_own_corpus(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CorpusError(f"corpus file {path} does not exist (or is not a file)")
    size = path.stat().st_size
    if size < MIN_CORPUS_BYTES:
        raise CorpusError(f"corpus file {path} has {size} bytes; at least {MIN_CORPUS_BYTES} are needed "
                          "for the train/validation/test splits")
    return path.resolve()


def resolve_corpus(data: str | os.PathLike | None = None) -> dict:
    """The corpus as the node sees it: its sha256 is part of the benchmark key."""
    path = check_own_corpus(data) if data else check_own_corpus(find_default_corpus())
    return {"path": str(path), "sha256": sha256_of(path), "bytes": path.stat().st_size, "name": path.name}


# ----------------------------------------------------------------------------- data

def load_splits(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) as uint8 tensors of bytes, split by offset 90 / 5 / 5."""
    import torch

    raw = Path(path).read_bytes()
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    n_train = int(len(data) * TRAIN_FRACTION)
    n_val = int(len(data) * (TRAIN_FRACTION + VAL_FRACTION))
    return data[:n_train], data[n_train:n_val], data[n_val:]


def get_batch(data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator,
              device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of seq_len + 1 bytes -> (inputs, next-byte targets), int64 on `device`.

    The offsets come from a CPU generator, so a seed gives the same batches on every device;
    `data` may already live on the device (then only the offsets travel)."""
    import torch

    starts = torch.randint(len(data) - seq_len - 1, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(seq_len + 1)
    windows = data[index.to(data.device, non_blocking=True)].to(device, non_blocking=True).long()
    return windows[:, :-1], windows[:, 1:]


def evaluate_bpb(model: torch.nn.Module, data: torch.Tensor, seq_len: int, device: str | torch.device,
                 max_tokens: int = EVAL_TOKENS, batch_size: int = 32) -> float:
    """Bits per byte on the first `max_tokens` predictions of `data`, in fixed non-overlapping
    windows of seq_len. Deterministic; `model(x)` must return logits (B, T, 256)."""
    import torch
    import torch.nn.functional as F

    n_windows = min(max_tokens, len(data) - 1) // seq_len
    if n_windows == 0:
        raise ValueError(f"split of {len(data)} bytes is too short for seq_len {seq_len}")
    was_training = model.training
    model.eval()
    # Summed in float64 from per-token losses: a float32 sum of 32,768 terms rounds at about 1e-6
    # of its value, and how a kernel splits it across threads changes that rounding.
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    try:
        with torch.no_grad():
            for first in range(0, n_windows, batch_size):
                starts = torch.arange(first, min(first + batch_size, n_windows)) * seq_len
                windows = data[starts[:, None] + torch.arange(seq_len + 1)].to(device).long()
                logits = model(windows[:, :-1])
                nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       windows[:, 1:].reshape(-1), reduction="none")
                total_nats += nats.double().sum()
    finally:
        model.train(was_training)
    total_tokens = n_windows * seq_len
    return total_nats.item() / total_tokens / math.log(2)


# ----------------------------------------------------------------------------- run settings

def pick_device(requested: str) -> str:
    import torch

    requested = requested.strip().lower() or "auto"
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("SWARM_DEVICE=cuda but torch sees no CUDA device")
    if requested == "mps" and not has_mps:
        raise ValueError("SWARM_DEVICE=mps but torch sees no MPS device")
    if requested not in ("cpu", "cuda", "mps"):
        raise ValueError(f"SWARM_DEVICE must be auto, cpu, cuda or mps, not {requested!r}")
    return requested


# ----------------------------------------------------------------------------- FLOPs

def _register_cpu_attention_flops() -> None:
    """On CPU, F.scaled_dot_product_attention runs aten._scaled_dot_product_flash_attention_for_cpu
    (and its _backward), which FlopCounterMode does not count (torch 2.13): count them as the other
    attention kernels are. Skipped where torch lacks these ops or already counts them."""
    import torch
    from torch.utils import flop_counter as fc

    forward = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    helpers = all(hasattr(fc, name) for name in ("register_flop_formula", "sdpa_flop_count",
                                                 "sdpa_backward_flop_count", "flop_registry"))
    if not helpers:
        return
    if forward is not None and forward not in fc.flop_registry:
        fc.register_flop_formula(forward)(
            lambda query, key, value, *args, out_shape=None, **kwargs: fc.sdpa_flop_count(query, key, value))
    if backward is not None and backward not in fc.flop_registry:
        fc.register_flop_formula(backward)(
            lambda grad_out, query, key, value, *args, out_shape=None, **kwargs:
            fc.sdpa_backward_flop_count(grad_out, query, key, value))


def count_flops(fn, *args, **kwargs) -> tuple[object, int]:
    """(fn(*args, **kwargs), the FLOPs it spent) as torch's FlopCounterMode counts them: matrix
    products and attention (forward and backward); elementwise work, norms and the optimizer's
    update are not counted. train.py runs its first training step through this."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention_flops()
    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return result, int(counter.get_total_flops())


# ----------------------------------------------------------------------------- determinism

_cpu_overrides = []  # the torch.library handles that keep the overrides registered


def _thread_independent_layer_norm() -> None:
    """On CPU, aten.native_layer_norm_backward sums LayerNorm's weight and bias gradients in one
    buffer per thread, so they differ at 1 and 2 threads (by 1e-9, measured; 500 steps made that
    1e-2 of val_bpb). Its decomposition (torch._decomp) sums over the rows with ordinary reductions,
    which split their outputs, not their sums, across threads: use it as the CPU kernel (1 vs 2
    threads then give equal bits, tests/test_tinygpt.py). Skipped where torch lacks it."""
    import warnings

    import torch
    try:
        from torch._decomp.decompositions import native_layer_norm_backward
    except ImportError:
        return
    if _cpu_overrides:
        return
    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Overriding a previously registered kernel": on purpose
        library.impl("native_layer_norm_backward", native_layer_norm_backward, "CPU")
    _cpu_overrides.append(library)


# ----------------------------------------------------------------------------- run settings

def _positive(env, name: str, kind: type, unit: str):
    """The positive number in env[name] (an int may be written 5e11), None if unset; else ValueError."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of {unit}, not {raw!r}")
    if kind is int:
        if value != int(value):
            raise ValueError(f"{name} must be a whole number of {unit}, not {raw!r}")
        return int(raw) if raw.isdigit() else int(value)
    return value


@dataclass(frozen=True)
class RunSettings:
    """What the runner passes to train.py through the environment."""

    seed: int  # SWARM_SEED (default 0)
    data: Path  # SWARM_DATA: absolute corpus path (default: the pinned corpus, found as above)
    sha256: str  # of `data`; must equal SWARM_EXPECTED_SHA256 when that is set
    device: str  # SWARM_DEVICE: auto | cpu | cuda | mps, resolved here
    threads: int | None = None  # SWARM_THREADS: torch.set_num_threads, when set
    max_steps: int | None = None  # SWARM_MAX_STEPS: a budget in steps (wins over the others)
    budget_flops: int | None = None  # SWARM_BUDGET_FLOPS: a budget in training FLOPs
    time_budget: float | None = None  # SWARM_TIME_BUDGET: seconds of training (time mode)

    @property
    def mode(self) -> str:
        """steps | compute | time: what ends training."""
        return "steps" if self.max_steps else "compute" if self.budget_flops else "time"

    def total_steps(self, step_flops: int) -> int | None:
        """Training steps of this run, given one step's FLOPs; None in time mode."""
        if self.max_steps:
            return self.max_steps
        if self.budget_flops:
            return max(1, self.budget_flops // max(1, step_flops))
        return None

    @classmethod
    def from_env(cls, env: dict | None = None) -> "RunSettings":
        """Raises CorpusError for corpus problems and ValueError for malformed settings."""
        env = os.environ if env is None else env
        max_steps = _positive(env, "SWARM_MAX_STEPS", int, "steps")
        budget_flops = _positive(env, "SWARM_BUDGET_FLOPS", int, "FLOPs")
        time_budget = _positive(env, "SWARM_TIME_BUDGET", float, "seconds")
        if not (max_steps or budget_flops or time_budget):
            time_budget = 20.0  # a bare `python train.py`
        threads = _positive(env, "SWARM_THREADS", int, "threads")
        seed = int(env.get("SWARM_SEED") or 0)
        corpus = resolve_corpus(env.get("SWARM_DATA") or None)
        expected = (env.get("SWARM_EXPECTED_SHA256") or "").strip().lower()
        if expected and expected != corpus["sha256"]:
            raise CorpusError(f"{corpus['path']} has sha256 {corpus['sha256']}, but the runner expects "
                              f"{expected} (SWARM_EXPECTED_SHA256): the corpus changed since it was resolved")
        return cls(seed=seed, data=Path(corpus["path"]), sha256=corpus["sha256"],
                   device=pick_device(env.get("SWARM_DEVICE") or "auto"), threads=threads,
                   max_steps=max_steps, budget_flops=budget_flops, time_budget=time_budget)

    def apply(self) -> None:
        """Threads, the seed, and deterministic kernels: the same train.py, seed, budget and corpus
        give the same numbers on a machine whatever its load and thread count (CPU, measured by
        benchmarks/reproducibility.py). On CUDA cuBLAS needs CUBLAS_WORKSPACE_CONFIG for that (set
        here unless the runner did); ops without a deterministic kernel only warn."""
        import torch

        if self.device == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        _thread_independent_layer_norm()  # the CPU kernel only
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="FILE", help="your own corpus (any bytes, at least 10 KB)")
    parser.add_argument("--resolve", action="store_true", help="print the resolved corpus as one line of JSON")
    args = parser.parse_args(argv)
    try:
        corpus = resolve_corpus(args.data)
    except CorpusError as exc:
        print(f"prepare.py: {exc}", file=sys.stderr)
        return 2
    if args.resolve:
        print(json.dumps(corpus))
    else:
        train, val, test = load_splits(corpus["path"])
        print(f"corpus {corpus['path']} ({corpus['bytes']:,} bytes, sha256 {corpus['sha256']})")
        print(f"splits: train {len(train):,}  val {len(val):,}  test {len(test):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
