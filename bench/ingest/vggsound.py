#!/usr/bin/python3
"""bench/ingest/vggsound.py: `ingest` on VGGSound-shaped clips, next to the decoding floor (issue 21).

Clips made here (tools/gen_dataset.py --layout vggsound): 10 s, 640x360, 30 fps, H.264
with B-frames and a 2 s keyframe interval (-g 60 -bf 2), AAC 44.1 kHz stereo;
`ingest --dataset vggsound` (3 frames, 257 x 1004 float16 spectrograms).

Reports, for 1 and 2 workers (alternated, --reps times, pinned to --cores):
  - clips/s (wall clock; the machine may be shared: see the load average printed)
  - CPU time per clip (user + sys of the ingest process, getrusage), with and
    without the process start (the CPU time of `ingest --help`: loading ~150
    shared libraries), the steadier figure on a shared machine
  - the per-clip breakdown of bench_ingest_floor (each stage's least CPU time of
    --reps runs): audio, STFT, video (fr_extract), JPEG, float16, shard write,
    and the video floor (the decoding exactness requires) with frame counts
  - a scaling model: W workers and one writer thread
With --before DIR (a build/bin of another commit) the same runs for that build,
alternated with this one's.

usage: bench/ingest/vggsound.py [--clips 24] [--reps 3] [--cores 0,1] [--work DIR] [--before BINDIR]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin"))


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd):
    """(wall, cpu) seconds of one command (its CPU time: getrusage of the children)."""
    c0, t0 = cpu_children(), time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt, dc = time.monotonic() - t0, cpu_children() - c0
    if r.returncode not in (0,):
        raise RuntimeError(" ".join(cmd) + ": " + r.stderr)
    return dt, dc


def run_ingest(bindir, data, out, cores, jobs):
    shutil.rmtree(out, ignore_errors=True)
    return timed(["taskset", "-c", ",".join(map(str, cores)), os.path.join(bindir, "ingest"), "--dataset", "vggsound",
                  "--root", data, "--out", out, "--jobs", str(jobs), "--quiet"])


def start_cost(bindir, cores, reps):
    return min(timed(["taskset", "-c", str(cores[0]), os.path.join(bindir, "ingest"), "--help"])[1]
               for _ in range(reps))


def make_clips(data, n):
    if os.path.exists(os.path.join(data, "train_tiny.csv")):
        return
    per = max(1, n // 4)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_dataset.py"), "--layout", "vggsound", "--out",
                    data, "--classes", "4", "--per-class", str(per), "--seconds", "10", "--size", "640x360",
                    "--fps", "30", "--gop", "60", "--bframes", "2", "--seed", "1"], check=True,
                   stdout=subprocess.DEVNULL)


def floor_table(data, cores, reps):
    vids = sorted(os.path.join(data, "video", f) for f in os.listdir(os.path.join(data, "video")))
    r = subprocess.run(["taskset", "-c", str(cores[0]), os.path.join(BIN, "bench_ingest_floor"), "--reps",
                        str(reps), *vids], capture_output=True, text=True, check=True)
    lines = r.stdout.splitlines()
    head = lines[0].split()[1:]
    med = dict(zip(head, map(float, lines[-1].split()[1:])))
    return med


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default="0,1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "c2kd_bench_ingest_vgg"))
    ap.add_argument("--before", default=None, help="build/bin of another commit, run alternated with this one")
    a = ap.parse_args()
    cores = [int(c) for c in a.cores.split(",")]
    subprocess.run(["make", "-s", "-C", ROOT, "build/bin/ingest", "build/bin/bench_ingest_floor"], check=True)
    data = os.path.join(a.work, f"vgg_{a.clips}")
    make_clips(data, a.clips)
    n = sum(1 for f in os.listdir(os.path.join(data, "video")) if f.endswith(".mp4"))
    builds = [("this", BIN)] + ([("before", a.before)] if a.before else [])
    load0 = os.getloadavg()[0]
    for _, b in builds:
        run_ingest(b, data, os.path.join(a.work, "warm"), cores, 1)  # page cache, FFTW wisdom
    res = {(name, j): [] for name, _ in builds for j in (1, 2)}
    for _ in range(a.reps):
        for name, b in builds:
            for j in (1, 2):
                res[(name, j)].append(run_ingest(b, data, os.path.join(a.work, f"o_{name}_{j}"), cores, j))
    start = {name: start_cost(b, cores, a.reps) for name, b in builds}
    cpu = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            cpu = line.split(":", 1)[1].strip()
    print(f"cpu: {cpu}; cores used: {a.cores}; {n} clips, 10 s 640x360 30 fps H.264 (-g 60 -bf 2) + AAC 44.1 kHz "
          f"stereo; ingest --dataset vggsound (3 frames); {a.reps} alternated runs")
    for name, _ in builds:
        for j in (1, 2):
            walls = [w for w, _ in res[(name, j)]]
            cpus = [c for _, c in res[(name, j)]]
            mw, mc = statistics.median(walls), statistics.median(cpus)
            print(f"{name:6s} {j} worker(s): {n / mw:5.1f} clips/s wall (median of {['%.2f' % w for w in walls]} s), "
                  f"{n / mw / j:5.1f} per worker; CPU {1000 * mc / n:5.1f} ms/clip, "
                  f"{1000 * (mc - start[name]) / n:5.1f} ms/clip without the process start "
                  f"({1000 * start[name]:.0f} ms)")
        w1 = statistics.median(w for w, _ in res[(name, 1)])
        w2 = statistics.median(w for w, _ in res[(name, 2)])
        print(f"{name:6s} 1 -> 2 workers: {w1 / w2:.2f}x")
    print(f"load average before/after: {load0:.1f} / {os.getloadavg()[0]:.1f} (other processes share these cores)")
    med = floor_table(data, cores, a.reps)
    stages = ["audio", "stft", "video", "jpeg", "write"]
    total = sum(med[s + "_ms"] for s in stages)
    print("per-clip CPU time, medians over the clips of each stage's least of "
          f"{a.reps} runs (bench_ingest_floor, one thread):")
    for s in stages:
        print(f"  {s:6s} {med[s + '_ms']:6.2f} ms")
    print(f"  (f16 {med['f16_ms']:.2f} ms of write)")
    print(f"  sum    {total:6.2f} ms -> {1000 / total:.1f} clips/s per worker")
    print(f"  video floor: {med['floor_ms']:.2f} ms decoding {med['floor_frames']:.0f} frames (+ demux "
          f"{med['demux_ms']:.2f} ms); fr_extract decodes {med['video_frames']:.0f}; every frame: "
          f"{med['all_ms']:.2f} ms for {med['all_frames']:.0f}")
    floor = total - med["video_ms"] + med["floor_ms"] + med["demux_ms"]
    print(f"  floor of the clip (video at its floor, the rest as measured): {floor:.2f} ms -> "
          f"{1000 / floor:.1f} clips/s per worker")
    worker = total - med["write_ms"]
    print("scaling model (W workers on W cores + the writer thread, which is serial): "
          "rate(W) = min(W / worker, 1 / write)")
    for w in (1, 2, 4, 8, 16):
        rate = min(w * 1000 / worker, 1000 / med["write_ms"])
        print(f"  W={w:2d}: {rate:6.1f} clips/s; VGGSound-full (200 000 clips): {200000 / rate / 60:5.1f} min")


if __name__ == "__main__":
    main()
