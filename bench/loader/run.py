#!/usr/bin/python3
"""bench/loader: samples/s of the data loading alone, with the training transform
(RandomResizedCrop + flip, 224 x 224, ImageNet normalisation, per-clip spectrogram
standardisation), no model:

- train's C loader (build/bench/loader_bench: ld_loader + ld_device_upload on the CPU
  backend; "host only" = without the CPU preparation, i.e. what the CPU does when CUDA
  prepares the batch) with 1..N loader threads;
- python/c2kd_shards.py through torch's DataLoader(batch_size=64, shuffle=True,
  drop_last=True, num_workers=0/1/2, pin_memory when CUDA is present, persistent_workers).

Data: VGGSound-like shards made by `ingest` (vggsound preset: 10 s, 257 x 1004 float16
spectrograms; --set frames=1) from a few generated 224x224 clips (tools/gen_dataset.py),
each train row repeated --repeat times under new ids (manifest), kept in --work.

build/bench/loader_bench is built when absent (make build/bench/loader_bench).

usage: bench/loader/run.py [--work /tmp/c2kd_bench_loader] [--repeat 16] [--passes 2]
                           [--threads 1,2] [--workers 0,1,2] [--batch 64]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin"))
BENCH_BIN = os.environ.get("C2KD_BENCH_BIN", os.path.join(os.path.dirname(BIN), "bench"))
sys.path.insert(0, os.path.join(ROOT, "python"))


def make_data(work, repeat):
    out = os.path.join(work, "shards")
    if os.path.exists(os.path.join(out, "index.json")):
        return out
    clips = os.path.join(work, "clips")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_dataset.py"), "--layout", "vggsound", "--out",
                    clips, "--classes", "4", "--per-class", "5", "--seconds", "10", "--size", "224x224", "--fps", "10",
                    "--jobs", "2"], check=True, capture_output=True)
    m = os.path.join(work, "native.tsv")
    subprocess.run([os.path.join(BIN, "ingest"), "--dataset", "vggsound", "--root", clips, "--write-manifest", m],
                   check=True, capture_output=True)
    rows = []
    for line in open(m, encoding="utf-8").read().splitlines():
        if not line or line.startswith("#"):
            continue
        p = line.split("\t")
        if p[0] == "id" and p[1] == "audio":
            continue
        for r in range(repeat if p[4] == "train" else 1):
            q = list(p)
            q[0] = f"{p[0]}~{r}"
            q[1] = os.path.join(clips, p[1]) if p[1] not in ("", "-") else p[1]
            q[2] = os.path.join(clips, p[2])
            rows.append("\t".join(q))
    rep = os.path.join(work, "repeated.tsv")
    with open(rep, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    subprocess.run([os.path.join(BIN, "ingest"), "--manifest", rep, "--dataset", "vggsound", "--set", "frames=1",
                    "--out", out, "--jobs", "2", "--quiet"], check=True)
    return out


def bench_c(data, threads, prep, passes, batch):
    """(samples/s, CPU ms per sample: user + sys of the whole process)."""
    exe = os.path.join(BENCH_BIN, "loader_bench")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([exe, data, "--threads", str(threads), "--prep", str(prep), "--passes", str(passes),
                        "--batch", str(batch), "--prep-threads", str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    j = json.loads(r.stdout)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return j["samples_per_s"], 1e3 * cpu / j["samples"]


def proc_cpu(pid):
    """user + sys seconds of a process (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_py(data, workers, passes, batch):
    import torch

    import c2kd_shards as cs
    ds = cs.ShardDataset(data, "train", image_size=224, train=True)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                     pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
    for _ in dl:  # warm-up pass (worker start, page cache)
        pass
    pids = [w.pid for w in getattr(dl._iterator, "_workers", [])] if workers else []  # persistent
    c0 = time.process_time() + sum(map(proc_cpu, pids))
    n, t0 = 0, time.perf_counter()
    it = iter(dl)
    for p in range(passes):
        for b in (it if p == 0 else dl):
            n += b["label"].shape[0]
    wall = time.perf_counter() - t0
    cpu = time.process_time() + sum(map(proc_cpu, pids)) - c0
    return n / wall, 1e3 * cpu / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/c2kd_bench_loader")
    ap.add_argument("--repeat", type=int, default=16)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if not os.path.exists(os.path.join(BENCH_BIN, "loader_bench")):  # not part of `make all`
        subprocess.run(["make", "-C", ROOT, "--no-print-directory", "build/bench/loader_bench"], check=True)
    data = make_data(a.work, a.repeat)
    with open(os.path.join(data, "index.json")) as f:
        count = json.load(f)["splits"]["train"]["count"]
    print(f"data: {data}: {count} train samples, 1 frame 224x224, 257x1004 float16; batch {a.batch}, "
          f"{a.passes} timed passes; cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    res = {}
    for t in map(int, a.threads.split(",")):
        bench_c(data, t, 1, 1, a.batch)  # warm the page cache
        res[f"c threads={t}"] = bench_c(data, t, 1, a.passes, a.batch)
        res[f"c threads={t} host only"] = bench_c(data, t, 0, a.passes, a.batch)
    for w in map(int, a.workers.split(",")):
        res[f"python workers={w}"] = bench_py(data, w, a.passes, a.batch)
    print(f"{'configuration':<28} {'samples/s':>10} {'CPU ms/sample':>14}")
    for k, (v, c) in res.items():
        print(f"{k:<28} {v:>10.1f} {c:>14.2f}")
    cpu = {k: v[1] for k, v in res.items()}
    res = {k: v[0] for k, v in res.items()}
    for t in map(int, a.threads.split(",")):
        w = t if f"python workers={t}" in res else max(map(int, a.workers.split(",")))
        print(f"ratio c threads={t} / python workers={w}: {res[f'c threads={t}'] / res[f'python workers={w}']:.2f}x")
    bc = max(v for k, v in res.items() if k.startswith("c ") and "host" not in k)
    bp = max(v for k, v in res.items() if k.startswith("python"))
    print(f"ratio best c / best python: {bc / bp:.2f}x")
    print(f"ratio CPU per sample, python workers=0 / c threads=1: {cpu['python workers=0'] / cpu['c threads=1']:.2f}x")
    print(json.dumps({"load_average": os.getloadavg()[0], "samples_per_s": res, "cpu_ms_per_sample": cpu}))


if __name__ == "__main__":
    main()
