"""A small GPT trained on bytes for a fixed compute budget; what the proposers edit.

Plain GPT-2 style baseline: learned positions, pre-norm blocks, LayerNorm, GELU, untied head,
N(0, 0.02) init. Run settings (budget, seed, corpus, device) come from the environment, read by
prepare.py. The budget is training FLOPs, counted by prepare.py on the first step: a bigger model
gets fewer steps, a faster machine only finishes sooner (or a number of steps, or seconds; see
prepare.py). Prints autoresearch's summary block (`---`, then `key: value` lines) to stdout.
"""
# --- hyperparameters: proposers edit only the values in this block ---
LEARNING_RATE = 3e-3       # peak AdamW learning rate
WARMUP_STEPS = 20          # linear warmup, in steps
WEIGHT_DECAY = 0.1         # AdamW, applied to 2-D weights only
BETA1 = 0.9
BETA2 = 0.99
GRAD_CLIP = 1.0            # max global grad norm; 0 disables clipping
BATCH_SIZE = 16
SEQ_LEN = 128
N_LAYER = 4
N_EMBD = 128
N_HEAD = 4
DROPOUT = 0.0
INIT = "normal"            # normal | kaiming | xavier   (normal = N(0, 0.02), GPT-2 style)
NORM = "layernorm"         # layernorm | rmsnorm
TIE_EMBEDDINGS = False
ACTIVATION = "gelu"        # gelu | relu | silu
LR_SCHEDULE = "cosine"     # cosine | linear | constant   (decay over the budget)
# --- end hyperparameters ---

import math
import resource
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import VOCAB_SIZE, CorpusError, RunSettings, count_flops, evaluate_bpb, get_batch, load_splits

H100_BF16_PEAK_FLOPS = 989.5e12  # dense, no sparsity
LOG_EVERY_S = 2.0  # progress line (and the only loss sync) every this many seconds


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(dim: int) -> nn.Module:
    return {"layernorm": nn.LayerNorm, "rmsnorm": RMSNorm}[NORM](dim)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.proj = nn.Linear(N_EMBD, N_EMBD)
        self.proj.is_residual = True
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, N_HEAD, C // N_HEAD).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=DROPOUT if self.training else 0.0)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.fc.feeds_activation = True
        self.act = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[ACTIVATION]()
        self.proj = nn.Linear(4 * N_EMBD, N_EMBD)
        self.proj.is_residual = True
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x):
        return self.dropout(self.proj(self.act(self.fc(x))))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn = make_norm(N_EMBD), SelfAttention()
        self.norm2, self.mlp = make_norm(N_EMBD), MLP()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB_SIZE, N_EMBD)
        self.pos_emb = nn.Embedding(SEQ_LEN, N_EMBD)
        self.dropout = nn.Dropout(DROPOUT)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.norm = make_norm(N_EMBD)
        self.head = nn.Linear(N_EMBD, VOCAB_SIZE, bias=False)
        self.apply(self._init)
        if TIE_EMBEDDINGS:
            self.head.weight = self.tok_emb.weight

    def _init(self, module: nn.Module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.Linear):
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            if INIT == "normal":  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
                residual = getattr(module, "is_residual", False)
                nn.init.normal_(module.weight, std=0.02 / math.sqrt(2 * N_LAYER) if residual else 0.02)
            elif INIT == "kaiming":  # fan-in; the MLP's first layer feeds a ReLU-like activation
                feeds_act = getattr(module, "feeds_activation", False)
                nn.init.kaiming_normal_(module.weight, mode="fan_in",
                                        nonlinearity="relu" if feeds_act else "linear")
            elif INIT == "xavier":
                nn.init.xavier_normal_(module.weight)
            else:
                raise ValueError(f"unknown INIT {INIT!r}")

    def forward(self, idx):
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.dropout(self.tok_emb(idx) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def lr_at(step: int, progress: float) -> float:
    """Linear warmup over WARMUP_STEPS, then decay by the fraction of the budget spent."""
    warmup = min(1.0, (step + 1) / WARMUP_STEPS) if WARMUP_STEPS > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    decay = {"cosine": 0.5 * (1.0 + math.cos(math.pi * progress)),
             "linear": 1.0 - progress, "constant": 1.0}[LR_SCHEDULE]
    return LEARNING_RATE * warmup * decay


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def fail(message: str, code: int = 1):
    print(f"train.py: {message}", file=sys.stderr)
    sys.exit(code)


def main():
    t_start = time.perf_counter()
    try:
        settings = RunSettings.from_env()
    except (CorpusError, ValueError) as exc:
        fail(str(exc), code=2)
    settings.apply()  # threads, torch.manual_seed, deterministic kernels
    device = settings.device
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    train_data, val_data, test_data = load_splits(settings.data)
    train_data = train_data.to(device)  # a few MB: batches are then cut on the device
    batches = torch.Generator().manual_seed(settings.seed)

    model = GPT().to(device)
    num_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LEARNING_RATE, betas=(BETA1, BETA2), fused=device == "cuda")

    def train_step(step: int, progress: float) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress)
        x, y = get_batch(train_data, BATCH_SIZE, SEQ_LEN, batches, device)
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.reshape(-1))
        loss.backward()
        if GRAD_CLIP > 0:
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    # Step 0 (allocator, kernel selection) runs outside the clock, under prepare.py's FLOP counter:
    # every step costs what it cost, so a compute budget is a number of steps. In time mode
    # (total_steps None) the budget counts the training time of every later step instead;
    # tokens_per_second is over those steps only.
    model.train()
    loss, step_flops = count_flops(train_step, 0, 0.0)
    sync()
    total_steps = settings.total_steps(step_flops)
    steps, t_train, training_seconds = 1, time.perf_counter(), 0.0
    last_log = t_train

    def progress() -> float:
        if total_steps:
            return steps / total_steps
        return training_seconds / settings.time_budget

    while (steps < total_steps if total_steps else training_seconds < settings.time_budget):
        loss = train_step(steps, progress())
        steps += 1
        now = time.perf_counter()  # no sync here: the device may run a few steps behind
        training_seconds = now - t_train
        if now - last_log >= LOG_EVERY_S:
            last_log = now
            value = loss.item()
            if not math.isfinite(value):
                fail(f"loss is {value} at step {steps}; stopping")
            print(f"step {steps:5d} | loss {value:.4f} | lr {lr_at(steps, progress()):.2e}"
                  f" | {training_seconds:5.1f}s", file=sys.stderr, flush=True)
    sync()
    training_seconds = time.perf_counter() - t_train
    final_loss = loss.item()
    if not math.isfinite(final_loss):
        fail(f"loss is {final_loss} at step {steps}; stopping")

    with autocast:
        val_bpb = evaluate_bpb(model, val_data, SEQ_LEN, device)
        test_bpb = evaluate_bpb(model, test_data, SEQ_LEN, device)
    if not (math.isfinite(val_bpb) and math.isfinite(test_bpb)):
        fail(f"evaluation is not finite (val_bpb {val_bpb}, test_bpb {test_bpb})")

    tokens_per_second = (steps - 1) * BATCH_SIZE * SEQ_LEN / max(training_seconds, 1e-9)
    # FLOPs as prepare.py counted them (matrix products and attention, forward and backward; the
    # causal mask's skipped half is counted too, as in PaLM's and nanoGPT's count).
    flops_per_second = (steps - 1) * step_flops / max(training_seconds, 1e-9)
    mfu = 100 * flops_per_second / H100_BF16_PEAK_FLOPS if device == "cuda" else 0.0

    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"test_bpb:         {test_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.perf_counter() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_memory_mb(device):.1f}")
    print(f"tokens_per_second: {tokens_per_second:.1f}")
    print(f"mfu_percent:      {mfu:.2f}")
    print(f"num_steps:        {steps}")
    print(f"train_flops:      {steps * step_flops}")
    print(f"num_params_M:     {num_params / 1e6:.2f}")
    print(f"device:           {device}")


if __name__ == "__main__":
    main()
