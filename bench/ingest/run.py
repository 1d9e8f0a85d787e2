#!/usr/bin/python3
"""bench/ingest: clips/s of `ingest` against the reference pipeline on the same generated
AVE-like tree (ten-second 640x360 H.264/AAC clips), same cores, alternated; 1 vs 2 workers;
random-read rate of the shards.

Reference (what the Python pipelines do, per clip): ffmpeg -> 16 kHz mono WAV file ->
scipy.io.wavfile -> event segment, tile to 10 s -> scipy.signal.spectrogram -> log -> .npy;
ffmpeg -vf fps=1 -q:v 2 -> JPEG files -> pick the one at the segment centre. It runs with a
process pool as wide as the cores given (generous to the reference).

usage: bench/ingest/run.py [--cores 0,1] [--reps 3] [--clips 20] [--work DIR]
"""
import argparse
import resource
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin"))


def ref_clip(args):
    import numpy as np
    import scipy.io.wavfile
    import scipy.signal
    path, start, end, out = args
    q = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    tmp = tempfile.mkdtemp(dir=out)
    wav = os.path.join(tmp, "a.wav")
    subprocess.run(q + ["-i", path, "-vn", "-ac", "1", "-ar", "16000", wav], check=True)
    sr, x = scipy.io.wavfile.read(wav)
    x = x.astype(np.float32) / 32768.0
    seg = x[int(start * sr):int(end * sr)] if end > start else x
    n = 10 * sr
    x = np.clip(np.tile(seg, -(-n // len(seg)))[:n], -1, 1)
    _, _, S = scipy.signal.spectrogram(x, fs=sr, nperseg=512, noverlap=353)
    name = os.path.basename(path)[:-4]
    np.save(os.path.join(out, f"{name}_{start}_{end}.npy"), np.log(S + 1e-7).astype(np.float32))
    subprocess.run(q + ["-i", path, "-vf", "fps=1", "-q:v", "2", os.path.join(tmp, "%05d.jpg")], check=True)
    frames = sorted(os.listdir(tmp))
    frames = [f for f in frames if f.endswith(".jpg")]
    pick = min(len(frames) - 1, int((start + end) / 2))
    shutil.copy(os.path.join(tmp, frames[pick]), os.path.join(out, f"{name}_{start}_{end}.jpg"))
    shutil.rmtree(tmp)


def ave_rows(root):
    rows = []
    for split in ("train", "val", "test"):
        for line in open(os.path.join(root, f"{split}Set.txt")).read().splitlines():
            if line.strip():
                c, v, _, s, e = line.split("&")
                rows.append((os.path.join(root, "AVE", v + ".mp4"), int(s), int(e)))
    return rows


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_reference(root, out, cores):
    """(wall, cpu) seconds; the pool runs in a child process so that all its CPU time is counted."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    c0, t0 = cpu_children(), time.monotonic()
    p = mp.get_context("fork").Process(target=_ref_all, args=(root, out, len(cores)))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError("reference failed")
    return time.monotonic() - t0, cpu_children() - c0


def _ref_all(root, out, n):
    rows = ave_rows(root)
    with mp.Pool(n) as pool:
        pool.map(ref_clip, [(p, s, e, out) for p, s, e in rows], chunksize=1)
        pool.close()
        pool.join()


def run_ingest(root, out, cores, jobs):
    shutil.rmtree(out, ignore_errors=True)
    c0, t0 = cpu_children(), time.monotonic()
    r = subprocess.run(["taskset", "-c", ",".join(map(str, cores)), os.path.join(BIN, "ingest"), "--dataset",
                        "ave", "--root", root, "--out", out, "--jobs", str(jobs), "--quiet"],
                       capture_output=True, text=True)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return dt, cpu_children() - c0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default="0,1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "c2kd_bench_ingest"))
    a = ap.parse_args()
    cores = [int(c) for c in a.cores.split(",")]
    os.sched_setaffinity(0, cores)          # the reference (and its children) on these cores
    subprocess.run(["make", "-s", "-C", ROOT, "build/bin/ingest", "build/bin/bench_store_read"], check=True)
    data = os.path.join(a.work, f"ave_{a.clips}")
    if not os.path.exists(os.path.join(data, "testSet.txt")):
        per = max(1, a.clips // 4)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_dataset.py"), "--layout", "ave", "--out",
                        data, "--classes", "4", "--per-class", str(per), "--seconds", "10", "--size", "640x360",
                        "--fps", "25", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    n = len(ave_rows(data))
    ours, ref, one, two = [], [], [], []
    load0 = os.getloadavg()[0]
    run_ingest(data, os.path.join(a.work, "warm"), cores, len(cores))    # FFTW wisdom, page cache
    for _ in range(a.reps):
        ours.append(run_ingest(data, os.path.join(a.work, "ours"), cores, len(cores)))
        ref.append(run_reference(data, os.path.join(a.work, "ref"), cores))
    for _ in range(a.reps):
        one.append(run_ingest(data, os.path.join(a.work, "one"), cores, 1))
        two.append(run_ingest(data, os.path.join(a.work, "two"), cores, 2))
    cpu_o, cpu_r = statistics.median(x[1] for x in ours), statistics.median(x[1] for x in ref)
    ours, ref, one, two = ([x[0] for x in v] for v in (ours, ref, one, two))
    mo, mr, m1, m2 = map(statistics.median, (ours, ref, one, two))
    cpu = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            cpu = line.split(":", 1)[1].strip()
    print(f"cpu: {cpu}; cores used: {a.cores}; clips: {n} x 10 s 640x360 H.264/AAC (AVE layout, event segments)")
    print(f"ingest    ({len(cores)} workers): median {mo:.2f} s = {n / mo:.1f} clips/s   runs {['%.2f' % x for x in ours]}")
    print(f"reference ({len(cores)} processes): median {mr:.2f} s = {n / mr:.1f} clips/s   runs {['%.2f' % x for x in ref]}")
    print(f"speed-up end to end (median wall): {mr / mo:.1f}x, best runs {min(ref) / min(ours):.1f}x (target >= 10x)")
    print(f"CPU time per clip: ingest {1000 * cpu_o / n:.0f} ms, reference {1000 * cpu_r / n:.0f} ms: "
          f"{cpu_r / cpu_o:.1f}x less work")
    print(f"ingest 1 worker {n / m1:.1f} clips/s, 2 workers {n / m2:.1f} clips/s: scaling {m1 / m2:.2f}x median, "
          f"{min(one) / min(two):.2f}x best (target >= 1.7x)")
    print(f"load average before/after: {load0:.1f} / {os.getloadavg()[0]:.1f} (other processes share these cores)")
    r = subprocess.run(["taskset", "-c", str(cores[0]), os.path.join(BIN, "bench_store_read"),
                        os.path.join(a.work, "ours"), "train", "3000"], capture_output=True, text=True, check=True)
    print(f"shard random reads, 1 core (spectrogram to float32 + JPEG bytes, warm cache): {r.stdout.strip()}")


if __name__ == "__main__":
    main()
