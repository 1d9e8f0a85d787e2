#!/usr/bin/env python3
"""PyTorch side of bench/train-gpu: one C2KD training step (two torchvision
ResNet-18s, visual student 3x224x224, audio teacher 1x257x1004, both trained,
proxies on layer3, the loss of ../../shared/docs/c2kd-method.md with Kendall
tau-b selection), SGD momentum 0.9, random data already on the device.

Prints one JSON object (and writes it to --json): median step time, epoch
time (--epoch-steps steps), peak memory (torch.cuda.max_memory_allocated over
the whole run and after warm-up; max_memory_reserved; device used = total -
free from cudaMemGetInfo).

  python3 torch_step.py [--steps 20] [--warmup 3] [--epoch-steps 403] [--benchmark]
                        [--compile] [--no-tf32] [--batch 64] [--small] [--device cuda|cpu]

--small shrinks everything (for a CPU self-check: --device cpu --small).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import torchvision
except ImportError:  # the same layout, written out (for machines without torchvision)
    torchvision = None


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class _ResNet18(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans, cin = [64, 128, 256, 512], 64
        for i, c in enumerate(chans):
            setattr(self, "layer%d" % (i + 1), nn.Sequential(_Block(cin, c, 1 if i == 0 else 2), _Block(c, c, 1)))
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)


def resnet18(in_ch, classes):
    m = torchvision.models.resnet18(num_classes=classes) if torchvision else _ResNet18(classes)
    if in_ch != 3:
        m.conv1 = nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


def forward_with_layer3(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer2(m.layer1(x))
    f3 = m.layer3(x)
    x = m.layer4(f3)
    x = torch.flatten(m.avgpool(x), 1)
    return m.fc(x), f3


class Proxy(nn.Module):
    """layer3 output -> global avg pool -> 1x1 conv (no bias) -> BN -> LeakyReLU(0.1) -> Linear."""

    def __init__(self, ch, classes):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, classes)

    def forward(self, f):
        x = F.adaptive_avg_pool2d(f, 1)
        x = F.leaky_relu(self.bn(self.conv(x)), 0.1)
        return self.fc(torch.flatten(x, 1))


def kendall_tau_b(a, c):
    """Per-row Kendall tau-b (ties as scipy), [B, C] x [B, C] -> [B]."""
    C = a.shape[1]
    sa = torch.sign(a.unsqueeze(2) - a.unsqueeze(1))
    sc = torch.sign(c.unsqueeze(2) - c.unsqueeze(1))
    mask = torch.triu(torch.ones(C, C, dtype=torch.bool, device=a.device), diagonal=1)
    s = (sa * sc)[:, mask].sum(1)
    ta = (sa[:, mask] == 0).sum(1).to(a.dtype)
    tc = (sc[:, mask] == 0).sum(1).to(a.dtype)
    n0 = C * (C - 1) / 2
    return s / torch.sqrt((n0 - ta) * (n0 - tc))


def kl(target_logits, logits):
    """KL(softmax(sg target) || softmax(logits)), batch mean."""
    return F.kl_div(F.log_softmax(logits, 1), F.softmax(target_logits.detach(), 1), reduction="batchmean")


def nt_kl(dst, src, y, keep):
    m = F.one_hot(y, dst.shape[1]).to(dst.dtype)
    s = src.detach() * (1 - m)
    a = F.softmax(s, 1)
    la = F.log_softmax(s, 1)
    lq = F.log_softmax(dst * (1 - m), 1)
    per = (a * (la - lq)).sum(1)
    return (per * keep).sum() / dst.shape[0]


def c2kd_loss(zt, pt, zs, ps, y, omega=0.0):
    tau = kendall_tau_b(pt.detach(), ps.detach())
    keep = (tau > omega).to(zt.dtype)
    lt = F.cross_entropy(zt, y) + kl(zt, pt) + kl(pt, zt) + nt_kl(pt, ps, y, keep)
    ls = F.cross_entropy(zs, y) + kl(zs, ps) + kl(ps, zs) + nt_kl(ps, pt, y, keep)
    return lt + ls, keep.mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--epoch-steps", type=int, default=403)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--compile", action="store_true", help="torch.compile the step's forward+loss")
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json")
    a = ap.parse_args()

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    tf32 = not a.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = a.benchmark
    torch.manual_seed(1)

    B, C = a.batch, a.classes
    H, T, S = (257, 1004, 224) if not a.small else (32, 48, 32)
    teacher = resnet18(1, C).to(dev)   # audio
    student = resnet18(3, C).to(dev)   # visual
    tproxy = Proxy(256, C).to(dev)
    sproxy = Proxy(256, C).to(dev)
    for m in (teacher, student, tproxy, sproxy):
        m.train()
    params = [p for m in (teacher, student, tproxy, sproxy) for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    audio = torch.randn(B, 1, H, T, device=dev)
    visual = torch.randn(B, 3, S, S, device=dev)
    y = torch.arange(B, device=dev) % C

    def fwd_loss(audio, visual, y):
        zt, ft = forward_with_layer3(teacher, audio)
        zs, fs = forward_with_layer3(student, visual)
        return c2kd_loss(zt, tproxy(ft), zs, sproxy(fs), y)

    fl = torch.compile(fwd_loss) if a.compile else fwd_loss

    def step():
        opt.zero_grad(set_to_none=True)
        loss, kept = fl(audio, visual, y)
        loss.backward()
        opt.step()
        return loss.item(), kept.item()  # the host sync a training loop does to log the loss

    if cuda:
        torch.cuda.synchronize()
        used0 = torch.cuda.mem_get_info()
        used0 = used0[1] - used0[0]
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(a.warmup - 1):
        step()
    if cuda:
        peak_all = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(a.steps):
        t = time.perf_counter()
        loss, kept = step()
        ts.append(time.perf_counter() - t)
    epoch_s = -1.0
    if a.epoch_steps > 0:
        t = time.perf_counter()
        for _ in range(a.epoch_steps):
            loss, kept = step()
        if cuda:
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t
    r = {
        "impl": "pytorch" + (" compile" if a.compile else " eager") + (" cudnn.benchmark" if a.benchmark else ""),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "torchvision": torchvision is not None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "method": "c2kd", "batch": B, "classes": C, "tf32": int(tf32), "steps": a.steps,
        "step_median_ms": statistics.median(ts) * 1e3, "step_mean_ms": statistics.mean(ts) * 1e3,
        "step_min_ms": min(ts) * 1e3, "first_step_ms": first * 1e3,
        "epoch_steps": a.epoch_steps, "epoch_s": epoch_s, "last_loss": loss, "kept": kept,
    }
    if cuda:
        fr, tot = torch.cuda.mem_get_info()
        steady = torch.cuda.max_memory_allocated()
        r.update({"peak_alloc_bytes": max(peak_all, steady), "peak_alloc_steady_bytes": steady,
                  "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
                  "device_used_bytes": tot - fr, "device_used_before_bytes": used0})
    out = json.dumps(r)
    print(out)
    if a.json:
        with open(a.json, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    sys.exit(main())
