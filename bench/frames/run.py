#!/usr/bin/python3
"""frames vs the reference pipelines' extraction, on ten-second AVE-like clips.

Reference: ffmpeg -i clip -vf fps=1 -q:v 2 out_%05d.jpg (decodes the whole clip, 10 JPEGs).
Ours:      frames -j 1 --count 1 / --count 3 (JPEG folders).
Each clip is run by the three commands in turn (alternated), pinned to one core with taskset,
for several rounds; the script prints per-clip medians and the median ratio.

usage: bench/frames/run.py [--clips N] [--rounds R] [--core C] [--bin build/bin]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ["testsrc2", "rgbtestsrc", "smptebars", "life=ratio=0.2:mold=10", "cellauto=rule=110",
           "testsrc", "mandelbrot", "gradients", "pal75bars", "yuvtestsrc"]


def make_clips(d, n):
    clips = []
    for i in range(n):
        src = SOURCES[i % len(SOURCES)]
        fps = [25, 30, 25, 30, 29.97][i % 5]
        gop_s = [2, 3, 4, 5, 2.5][i % 5]  # keyframe interval in seconds, as YouTube-like encodes
        out = os.path.join(d, f"clip{i:02d}.mp4")
        sep = ":" if "=" in src else "="
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
                        "-f", "lavfi", "-i", f"{src}{sep}size=640x360:rate={fps}",
                        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
                        "-t", "10", "-vf", "noise=alls=2:allf=t,format=yuv420p",
                        "-c:v", "libx264", "-preset", "fast", "-crf", "23", "-g", str(int(round(fps * gop_s))),
                        "-c:a", "aac", "-b:a", "128k", out], check=True)
        clips.append(out)
    return clips


def timed(cmd):
    """(wall seconds, CPU seconds user+sys) of one command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return dt, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--core", default="0")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    a = ap.parse_args()
    frames = os.path.join(a.bin, "frames")
    if not os.path.exists(frames):
        sys.exit(f"{frames} not built (make build/bin/frames)")
    work = tempfile.mkdtemp(prefix="bench_frames_")
    try:
        clips = make_clips(work, a.clips)
        pin = ["taskset", "-c", a.core]
        t = {k: {c: [] for c in clips} for k in ("ffmpeg", "count1", "count3")}
        batch = {k: [] for k in ("ffmpeg", "count1", "count3")}
        for r in range(a.rounds):
            # Batch: the reference pipelines call ffmpeg once per clip; frames takes all clips in one call.
            o = os.path.join(work, "o")
            tot = [0.0, 0.0]
            for i, c in enumerate(clips):
                shutil.rmtree(o, ignore_errors=True)
                os.makedirs(o)
                w, u = timed(pin + ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", c,
                                    "-vf", "fps=1", "-q:v", "2", os.path.join(o, "out_%05d.jpg")])
                tot[0] += w
                tot[1] += u
            batch["ffmpeg"].append(tot)
            for k, n in (("count1", "1"), ("count3", "3")):
                shutil.rmtree(os.path.join(work, "b"), ignore_errors=True)
                batch[k].append(timed(pin + [frames, "-j", "1", "--count", n, *clips, "-o", os.path.join(work, "b")]))
            for c in clips:
                o = os.path.join(work, "o")
                shutil.rmtree(o, ignore_errors=True)
                os.makedirs(o)
                t["ffmpeg"][c].append(timed(pin + ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", c,
                                                   "-vf", "fps=1", "-q:v", "2", os.path.join(o, "out_%05d.jpg")]))
                t["count1"][c].append(timed(pin + [frames, "-j", "1", "--count", "1", c, "-o",
                                                   os.path.join(work, "f1")]))
                t["count3"][c].append(timed(pin + [frames, "-j", "1", "--count", "3", c, "-o",
                                                   os.path.join(work, "f3")]))
        for idx, what in ((0, "wall time"), (1, "CPU time (user+sys)")):
            print(f"== {what}, median of {a.rounds} rounds, pinned to core {a.core}")
            print(f"{'clip':10s} {'ffmpeg fps=1':>13s} {'count 1':>9s} {'ratio':>7s} {'count 3':>9s} {'ratio':>7s}")
            r1, r3, mf, m1, m3 = [], [], [], [], []
            for c in clips:
                f = statistics.median(x[idx] for x in t["ffmpeg"][c])
                x1 = statistics.median(x[idx] for x in t["count1"][c])
                x3 = statistics.median(x[idx] for x in t["count3"][c])
                mf.append(f)
                m1.append(x1)
                m3.append(x3)
                r1.append(f / x1)
                r3.append(f / x3)
                print(f"{os.path.basename(c):10s} {f * 1e3:10.1f} ms {x1 * 1e3:6.1f} ms {f / x1:6.1f}x "
                      f"{x3 * 1e3:6.1f} ms {f / x3:6.1f}x")
            print(f"median per clip: ffmpeg {statistics.median(mf) * 1e3:.1f} ms, frames --count 1 "
                  f"{statistics.median(m1) * 1e3:.1f} ms, --count 3 {statistics.median(m3) * 1e3:.1f} ms")
            print(f"ratio ffmpeg / frames, median over clips: count 1 {statistics.median(r1):.1f}x "
                  f"(min {min(r1):.1f}x), count 3 {statistics.median(r3):.1f}x (min {min(r3):.1f}x)")
        print(f"== all {len(clips)} clips: ffmpeg once per clip vs one frames call for all clips "
              f"(median of {a.rounds} rounds; per clip)")
        for idx, what in ((0, "wall"), (1, "CPU")):
            f = statistics.median(x[idx] for x in batch["ffmpeg"]) / len(clips)
            x1 = statistics.median(x[idx] for x in batch["count1"]) / len(clips)
            x3 = statistics.median(x[idx] for x in batch["count3"]) / len(clips)
            print(f"{what:5s} ffmpeg {f * 1e3:7.1f} ms  count 1 {x1 * 1e3:6.1f} ms ({f / x1:.1f}x)  "
                  f"count 3 {x3 * 1e3:6.1f} ms ({f / x3:.1f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
