#!/usr/bin/python3
"""Per-shape convolution timing: the CPU backend (build/bin/conv_bench) against
torch.nn.functional.conv2d and its two backward passes (Debian's torch, CPU,
oneDNN), for every distinct convolution of the two ResNet-18s of the trainer's
step (audio 1x257x1004, visual 3x224x224, batch 16). The two sides alternate
(ours, torch, ours, torch) and run pinned to the same cores with the same
thread count.

    bench/backend-cpu/run.py [--threads N] [--reps R] [--batch B] [--rounds K] [--clock wall|cpu]

--clock cpu (with --threads 1) times each call by the calling thread's CPU
time on both sides (time.thread_time in torch), which other processes on a
shared machine do not disturb; wall (the default) is elapsed time. Each
number is the fastest of REPS calls over ROUNDS alternations. OpenBLAS's
kernel set (printed) follows OPENBLAS_CORETYPE when it is set.

Prints per shape and pass: our ms, torch ms, torch/ours (>1: we are faster),
then totals weighted by how often each shape occurs in the two networks.
"""
import argparse
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resnet18_convs(c_in, h, w):
    """(c, h, w, k, kernel, stride, pad, count) of each distinct conv of torchvision's ResNet-18."""
    out = []
    def o(x, k, s, p):
        return (x + 2 * p - k) // s + 1
    out.append((c_in, h, w, 64, 7, 2, 3, 1))
    h, w = o(h, 7, 2, 3), o(w, 7, 2, 3)
    h, w = o(h, 3, 2, 1), o(w, 3, 2, 1)  # max-pool
    out.append((64, h, w, 64, 3, 1, 1, 4))
    c = 64
    for k in (128, 256, 512):
        out.append((c, h, w, k, 3, 2, 1, 1))
        out.append((c, h, w, k, 1, 2, 0, 1))
        h, w = o(h, 3, 2, 1), o(w, 3, 2, 1)
        out.append((k, h, w, k, 3, 1, 1, 3))
        c = k
    return out


CORE = []


def ours(binary, n, c, h, w, k, kk, s, p, reps, threads, clock):
    r = subprocess.run([str(v) for v in (binary, n, c, h, w, k, kk, s, p, reps, threads, clock)],
                       capture_output=True, text=True, check=True)
    CORE[:] = [r.stderr.strip()]
    return [float(v) for v in r.stdout.split()]


def theirs(n, c, h, w, k, kk, s, p, reps, clock):
    now = time.thread_time if clock == "cpu" else time.perf_counter
    x = torch.randn(n, c, h, w)
    wt = torch.randn(k, c, kk, kk)
    y = F.conv2d(x, wt, stride=s, padding=p)
    dy = torch.randn_like(y)
    def fwd():
        F.conv2d(x, wt, stride=s, padding=p)
    def bwd(mask):
        torch.ops.aten.convolution_backward(dy, x, wt, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
    res = []
    for fn in (fwd, lambda: bwd([True, False, False]), lambda: bwd([False, True, False])):
        fn()  # warm-up
        t = []
        for _ in range(reps):
            t0 = now()
            fn()
            t.append(now() - t0)
        res.append(min(t) * 1e3)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of ours/torch per shape")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin")),
                                                  "conv_bench"))
    a = ap.parse_args()
    if a.clock == "cpu" and a.threads != 1:
        ap.error("--clock cpu needs --threads 1")
    torch.set_num_threads(a.threads)
    cores = ",".join(str(i) for i in range(a.threads))
    try:
        os.sched_setaffinity(0, set(range(a.threads)))  # pins torch here and conv_bench (inherited)
    except OSError:
        pass
    print(f"torch {torch.__version__} mkldnn={torch.backends.mkldnn.is_available()} threads={a.threads} "
          f"cores={cores} batch={a.batch}")
    shapes = [("visual",) + s for s in resnet18_convs(3, 224, 224)] + \
             [("audio",) + s for s in resnet18_convs(1, 257, 1004)]
    tot_o, tot_t = [0.0] * 3, [0.0] * 3
    print(f"{'net':6} {'shape (c,h,w->k,kxk/s,p)':30} {'count':>5} | "
          f"{'fwd ours':>9} {'torch':>8} {'ratio':>6} | {'bwd_data':>9} {'torch':>8} {'ratio':>6} | "
          f"{'bwd_filt':>9} {'torch':>8} {'ratio':>6}")
    for net, c, h, w, k, kk, s, p, cnt in shapes:
        o_runs, t_runs = [], []
        for _ in range(a.rounds):
            o_runs.append(ours(a.bin, a.batch, c, h, w, k, kk, s, p, a.reps, a.threads, a.clock))
            t_runs.append(theirs(a.batch, c, h, w, k, kk, s, p, a.reps, a.clock))
        o = [min(r[i] for r in o_runs) for i in range(3)]
        t = [min(r[i] for r in t_runs) for i in range(3)]
        for i in range(3):
            tot_o[i] += cnt * o[i]
            tot_t[i] += cnt * t[i]
        desc = f"{c},{h},{w}->{k},{kk}x{kk}/{s},{p}"
        print(f"{net:6} {desc:30} {cnt:5} | " + " | ".join(f"{o[i]:9.1f} {t[i]:8.1f} {t[i] / o[i]:6.2f}"
                                                          for i in range(3)), flush=True)
    print(f"{'total':6} {'(weighted by count)':30} {'':5} | " +
          " | ".join(f"{tot_o[i]:9.1f} {tot_t[i]:8.1f} {tot_t[i] / tot_o[i]:6.2f}" for i in range(3)))
    so, st = sum(tot_o), sum(tot_t)
    print(f"{CORE[0] if CORE else ''}, clock {a.clock}, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"all convolutions of one step (fwd + both bwd, both networks): ours {so:.0f} ms, torch {st:.0f} ms, "
          f"torch/ours {st / so:.2f}")


if __name__ == "__main__":
    sys.exit(main())
