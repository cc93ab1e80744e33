#!/usr/bin/env bash
# One check on an NVIDIA machine (H100 / H200): train experiments/tinygpt/train.py on CUDA for
# about 60 s with the hyperparameter block as committed, and print its summary (tokens/s, MFU).
#
# The caller places the corpus at ./.data/tinyshakespeare.txt in the repository first.
#
#     bash benchmarks/cuda_check.sh                          # 60 s on CUDA
#     BUDGET=5 SWARM_DEVICE=cpu bash benchmarks/cuda_check.sh  # dry run of this script on a CPU
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPUS="$REPO/.data/tinyshakespeare.txt"
CORPUS_SHA256=86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
BUDGET="${BUDGET:-60}"
DEVICE="${SWARM_DEVICE:-cuda}"
PYTHON="${PYTHON:-python3}"

if ! command -v "$PYTHON" >/dev/null; then
    echo "cuda_check: $PYTHON not found on this machine" >&2; exit 1
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "cuda_check: torch is not installed for $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"));" \
         "install it (pip install torch) and rerun" >&2
    exit 1
fi
"$PYTHON" - "$DEVICE" <<'EOF'
import sys, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name(0)}, "
          f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
elif sys.argv[1] == "cuda":
    sys.exit("cuda_check: torch sees no CUDA device (a CPU-only torch build, or no driver)")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || true

if [ ! -f "$CORPUS" ]; then
    echo "cuda_check: corpus missing: put tinyshakespeare.txt at $CORPUS" >&2; exit 1
fi

echo "training for ${BUDGET} s on ${DEVICE} (train.py as committed)"
start=$(date +%s.%N)
cd "$REPO/experiments/tinygpt"
SWARM_DATA="$CORPUS" SWARM_EXPECTED_SHA256="$CORPUS_SHA256" SWARM_TIME_BUDGET="$BUDGET" \
    SWARM_DEVICE="$DEVICE" SWARM_SEED=0 "$PYTHON" train.py
end=$(date +%s.%N)
echo "wall_seconds:     $(awk "BEGIN {printf \"%.1f\", $end - $start}")  (python start to exit)"
