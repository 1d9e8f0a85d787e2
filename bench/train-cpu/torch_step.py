"""Seconds per C2KD training step in PyTorch (float32, CPU): the same model
(tests/torch_ref/c2kd_ref.py) and the same step as train/system.c.
Prints one line per timed step: "torch <seconds>"."""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
import c2kd_ref as R  # noqa: E402

# Plain PyTorch activations for timing (the reference's custom ReLU records decisions).
R.relu = F.relu
R.leaky = F.leaky_relu

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--width", type=int, default=64)
ap.add_argument("--bins", type=int, default=257)
ap.add_argument("--time", type=int, default=1004)
ap.add_argument("--image", type=int, default=224)
ap.add_argument("--classes", type=int, default=28)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
cfg = R.default_cfg(width=a.width, classes=a.classes, batch=a.batch, bins=a.bins, time=a.time, image=a.image)
s = R.System(cfg)
for m in s.nets.values():
    m.float()
params = s.trained_params()
opt = torch.optim.SGD([p for _, p in params], lr=1e-3, momentum=0.9)
g = torch.Generator().manual_seed(5)
xa = torch.randn(a.batch, 1, a.bins, a.time, generator=g)
xv = torch.randn(a.batch, 3, a.image, a.image, generator=g)
y = torch.randint(0, a.classes, (a.batch,), generator=g)
# kendall_keep uses scipy on detached logits, as the C side computes tau-b per sample
for i in range(a.warmup + a.reps):
    t0 = time.perf_counter()
    opt.zero_grad()
    terms, _ = s.step_losses(xa, xv, y)
    sum(terms.values()).backward()
    opt.step()
    if i >= a.warmup:
        print(f"torch {time.perf_counter() - t0:.4f}", flush=True)
