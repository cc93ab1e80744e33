"""The fixed harness of the tinygpt target: corpus, splits, batches, evaluation, run settings.

Proposers never edit this file. train.py imports it; the node only runs it as a script:

    python prepare.py --resolve              # the default corpus (found, or downloaded once)
    python prepare.py --data FILE --resolve  # your own corpus

Either prints one line of JSON: {"path": ..., "sha256": ..., "bytes": ..., "name": ...}.
On a corpus problem it prints the reason to stderr and exits 2.

Tokens are bytes (vocab 256). Splits by byte offset: first 90% train, next 5% validation, last 5%
held-out test. The metric is bits per byte on a fixed slice of a split.
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
    total_nats = torch.zeros((), device=device)
    try:
        with torch.no_grad():
            for first in range(0, n_windows, batch_size):
                starts = torch.arange(first, min(first + batch_size, n_windows)) * seq_len
                windows = data[starts[:, None] + torch.arange(seq_len + 1)].to(device).long()
                logits = model(windows[:, :-1])
                total_nats += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                              windows[:, 1:].reshape(-1), reduction="sum")
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


@dataclass(frozen=True)
class RunSettings:
    """What the runner passes to train.py through the environment."""

    time_budget: float  # SWARM_TIME_BUDGET: seconds of training (default 20)
    seed: int  # SWARM_SEED (default 0)
    data: Path  # SWARM_DATA: absolute corpus path (default: the pinned corpus, found as above)
    sha256: str  # of `data`; must equal SWARM_EXPECTED_SHA256 when that is set
    device: str  # SWARM_DEVICE: auto | cpu | cuda | mps, resolved here
    threads: int | None  # SWARM_THREADS: torch.set_num_threads, when set
    max_steps: int | None = None  # SWARM_MAX_STEPS: stop after this many steps (a budget in steps)

    @classmethod
    def from_env(cls, env: dict | None = None) -> "RunSettings":
        """Raises CorpusError for corpus problems and ValueError for malformed settings."""
        env = os.environ if env is None else env
        budget = float(env.get("SWARM_TIME_BUDGET") or 20)
        if not budget > 0:
            raise ValueError(f"SWARM_TIME_BUDGET must be positive, not {budget}")
        threads = int(env["SWARM_THREADS"]) if env.get("SWARM_THREADS") else None
        corpus = resolve_corpus(env.get("SWARM_DATA") or None)
        expected = (env.get("SWARM_EXPECTED_SHA256") or "").strip().lower()
        if expected and expected != corpus["sha256"]:
            raise CorpusError(f"{corpus['path']} has sha256 {corpus['sha256']}, but the runner expects "
                              f"{expected} (SWARM_EXPECTED_SHA256): the corpus changed since it was resolved")
        return cls(time_budget=budget, seed=int(env.get("SWARM_SEED") or 0), data=Path(corpus["path"]),
                   sha256=corpus["sha256"], device=pick_device(env.get("SWARM_DEVICE") or "auto"),
                   threads=threads, max_steps=int(env["SWARM_MAX_STEPS"]) if env.get("SWARM_MAX_STEPS") else None)

    def apply(self) -> None:
        import torch

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
