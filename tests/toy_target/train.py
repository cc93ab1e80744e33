"""Toy train.py: val_bpb is a smooth function of the hyperparameters plus seeded noise.

Some values misbehave on purpose: INIT="xavier" hangs, ACTIVATION="relu" crashes and
ACTIVATION="silu" asks for 64 GiB.
"""
# --- hyperparameters: proposers edit only the values in this block ---
LEARNING_RATE = 0.001      # best near 0.006
INIT = "normal"            # kaiming is better
NORM = "layernorm"         # rmsnorm is better
TIE_EMBEDDINGS = False     # tying is better
ACTIVATION = "gelu"
SLEEP_SECONDS = 0.0        # stretch a run (for interruption tests)
# --- end hyperparameters ---
import math
import os
import random
import time

seed = int(os.environ.get("SWARM_SEED", "0"))
if INIT == "xavier":  # a state that hangs
    time.sleep(3600)
if ACTIVATION == "relu":  # a state that crashes
    raise RuntimeError("toy crash: relu is not implemented")
if ACTIVATION == "silu":  # a state that eats memory (the runner's limit stops it)
    hog = bytearray(64 * 2**30)
time.sleep(SLEEP_SECONDS)
value = 2.0 + 0.3 * abs(math.log(LEARNING_RATE / 0.006))
value -= 0.1 * (INIT == "kaiming") + 0.08 * (NORM == "rmsnorm") + 0.05 * TIE_EMBEDDINGS
value += random.Random(seed).gauss(0, 0.003)
print("---")
print(f"val_bpb:          {value:.6f}")
print(f"test_bpb:         {value + 0.01:.6f}")
print(f"training_seconds: {float(os.environ.get('SWARM_TIME_BUDGET', '1')):.1f}")
print("total_seconds:    0.1")
print("peak_vram_mb:     10.0")
print("num_steps:        1")
print(f"train_flops:      {int(float(os.environ.get('SWARM_BUDGET_FLOPS') or 0))}")
print("num_params_M:     0.01")
