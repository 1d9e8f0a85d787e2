#!/usr/bin/env python3
"""Summarises bench/train-gpu results (the *.json files of one run) as markdown with ratios."""
import glob
import json
import os
import sys

SEED_EPOCH_S = (53.0, 56.0)  # seed appendix Table 3, RTX 3090, VGGSound-50, ResNet-18s
SEED_EPOCH_SAMPLES = 25835


def load(d):
    r = {}
    for p in sorted(glob.glob(os.path.join(d, "*.json"))):
        if os.path.basename(p) == "results.json":
            continue
        try:
            with open(p) as f:
                r[os.path.basename(p)[:-5]] = json.loads(f.read())
        except Exception as e:  # a failed side leaves a partial or empty file
            print(f"<!-- {p}: {e} -->")
    return r


def mib(b):
    return b / 2**20 if b is not None else float("nan")


def main():
    d = sys.argv[1]
    r = load(d)
    gpu = ""
    try:
        gpu = open(os.path.join(d, "gpu.txt")).read().strip()
    except OSError:
        pass
    print(f"## bench/train-gpu: C2KD step, two ResNet-18s, batch 64, audio 1x257x1004, visual 3x224x224, 50 classes\n")
    print(f"GPU: {gpu or 'unknown'}\n")
    print("| run | step median ms | step min ms | first step ms | epoch (steps) s | peak alloc MiB (whole run) | peak alloc MiB (after warm-up) | device used MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for k, v in r.items():
        ep = f"{v['epoch_s']:.1f} ({v['epoch_steps']})" if v.get("epoch_s", -1) > 0 else "-"
        print(f"| {v.get('impl', k)} [{k}] | {v['step_median_ms']:.1f} | {v['step_min_ms']:.1f} | {v['first_step_ms']:.0f} | {ep} | "
              f"{mib(v.get('peak_alloc_bytes')):.0f} | {mib(v.get('peak_alloc_steady_bytes')):.0f} | {mib(v.get('device_used_bytes')):.0f} |")
    out = {"runs": r, "gpu": gpu}
    o = r.get("ours")
    if o:
        print()
        for k in ("torch_eager", "torch_eager_benchmark", "torch_compile"):
            t = r.get(k)
            if not t:
                continue
            sp = t["step_median_ms"] / o["step_median_ms"]
            mem = t["peak_alloc_bytes"] / o["peak_alloc_bytes"] if o.get("peak_alloc_bytes") else float("nan")
            used = t["device_used_bytes"] / o["device_used_bytes"] if o.get("device_used_bytes") else float("nan")
            print(f"- vs {t['impl']}: ours is {sp:.2f}x faster per step (median), peak allocated memory ratio torch/ours {mem:.2f}, device-used ratio {used:.2f}")
            out[f"speedup_vs_{k}"] = sp
            out[f"peak_mem_ratio_vs_{k}"] = mem
        if o.get("epoch_s", -1) > 0:
            per_sample = o["epoch_s"] / (o["epoch_steps"] * o["batch"])
            full = per_sample * SEED_EPOCH_SAMPLES
            print(f"- synthetic VGGSound-50 epoch ({o['epoch_steps']} steps of {o['batch']}): ours {o['epoch_s']:.1f} s "
                  f"(x{SEED_EPOCH_SAMPLES}/{o['epoch_steps'] * o['batch']} samples = {full:.1f} s) vs the seed's "
                  f"{SEED_EPOCH_S[0]:.0f}-{SEED_EPOCH_S[1]:.0f} s on an RTX 3090 (device data, no loader, no evaluation)")
            out["epoch_s_ours"] = o["epoch_s"]
        te = r.get("torch_eager")
        if te and te.get("epoch_s", -1) > 0:
            print(f"- same epoch in PyTorch eager: {te['epoch_s']:.1f} s")
        oc = r.get("ours_bn_cudnn")
        if oc:
            print(f"- ours with cuDNN batch norm (--bn cudnn): {oc['step_median_ms']:.1f} ms median; own batch-norm kernels "
                  f"{oc['step_median_ms'] / o['step_median_ms']:.2f}x faster per step")
            out["own_bn_speedup"] = oc["step_median_ms"] / o["step_median_ms"]
        oa = r.get("ours_again")
        if oa:
            print(f"- ours, second run: {oa['step_median_ms']:.1f} ms median (spread between runs "
                  f"{abs(oa['step_median_ms'] - o['step_median_ms']) / o['step_median_ms'] * 100:.1f} %)")
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
