#!/usr/bin/python3
"""bench/spectro: `spectro` against the reference Python pipeline, side by side.

1. One core (taskset-style affinity on this process, inherited by children):
   `spectro -j 1 --normalize clip` over N ten-second AVE-like clips (44.1 kHz
   stereo AAC + 640x360 H.264 in mp4) vs the reference, clip by clip:
   `ffmpeg -i clip -vn -ac 1 -ar 16000 -f wav -` -> soundfile -> np.tile ->
   scipy.signal.spectrogram -> log -> standardise (and a variant that also
   np.save()s the result, as the pipelines do). Alternated, R rounds, medians.
2. Two cores: `spectro -j 2` vs `spectro -j 1` throughput on 2N clips.
3. The spectrogram maths alone (build/bin/bench_stft: sp_stft_compute on a
   signal in memory, 10 s at 16 kHz -> 257 x 1004).
4. Memory against the input's length (issue 16, item 8): peak RSS and wall
   time of `spectro` (10 s output) on a 10 s clip and on long files made
   here (--hours of FLAC silence as in the issue, and of 44.1 kHz MP3), the
   head of the file and a segment at its end.

usage: bench/spectro/run.py [--clips 20] [--rounds 5] [--core N] [--no-results]
                            [--hours 3] [--memory-only]
Run from the repository root after `make build/bin/spectro build/bin/bench_stft`
(bench/spectro/run.sh does both).
"""
import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.signal
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("C2KD_BIN", os.path.join(ROOT, "build", "bin"))


def make_clips(d, n):
    paths = []
    for i in range(n):
        p = os.path.join(d, f"ave_{i:03d}.mp4")
        f0, f1 = 150 + 37 * i, 220 + 29 * i
        a = (f"aevalsrc=exprs=0.3*sin(2*PI*({f0}+30*t)*t)+0.15*(random(0)-0.5)|"
             f"0.3*sin(2*PI*{f1}*t)*sin(2*PI*0.5*t)+0.15*(random(1)-0.5):s=44100:d=10")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", a, "-f", "lavfi",
                        "-i", "testsrc2=d=10:s=640x360:r=25", "-c:a", "aac", "-b:a", "128k", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", p], check=True)
        paths.append(p)
    return paths


def reference(path, out=None):
    wav = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-vn", "-ac", "1", "-ar",
                          "16000", "-f", "wav", "-"], capture_output=True, check=True).stdout
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    n = 10 * sr
    x = np.clip(np.tile(x, n // len(x) + 1)[:n], -1.0, 1.0)
    _, _, S = scipy.signal.spectrogram(x, sr, nperseg=512, noverlap=353)
    L = np.log(S + 1e-7)
    L = (L - L.mean()) / (L.std() + 1e-9)
    if out:
        np.save(out, L.astype(np.float32))
    return L


CPU_USED = []  # CPU seconds (user + sys) of each spectro run, with its wall time


def time_spectro(clips, jobs, work):
    out = tempfile.mkdtemp(dir=work)
    t = time.perf_counter()
    p = subprocess.Popen([os.path.join(BIN, "spectro"), "-j", str(jobs), "-q", "--normalize", "clip", *clips,
                          "-o", out], stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read().decode()
    p.stderr.close()
    if status != 0:
        sys.exit(f"spectro failed: {err}")
    CPU_USED.append((jobs, ru.ru_utime + ru.ru_stime, dt))
    shutil.rmtree(out)
    return dt


REF_CPU = []  # CPU seconds of the reference (this process + its ffmpeg children), per run


def _cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def time_reference(clips, work, save):
    out = tempfile.mkdtemp(dir=work) if save else None
    t, c0 = time.perf_counter(), _cpu()
    for c in clips:
        reference(c, os.path.join(out, os.path.basename(c) + ".npy") if save else None)
    dt = time.perf_counter() - t
    if not save:
        REF_CPU.append(_cpu() - c0)
    if out:
        shutil.rmtree(out)
    return dt


# A child's ru_maxrss includes the RSS of the process it was forked from (Linux keeps the high-water
# mark across exec): spectro is started from a bare Python (about 10 MB), not from this one (numpy,
# scipy: about 80 MB), which would hide it.
_SPAWN = ("import os, resource, subprocess, sys, time\n"
          "t = time.perf_counter()\n"
          "r = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True)\n"
          "dt = time.perf_counter() - t\n"
          "sys.stderr.write(r.stderr)\n"
          "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, dt)\n")


def run_measured(args):
    """(peak RSS in MB, wall seconds) of one spectro run."""
    r = subprocess.run([sys.executable, "-S", "-c", _SPAWN, os.path.join(BIN, "spectro"), "-q", *map(str, args)],
                       capture_output=True, text=True)
    rc, kb, dt = r.stdout.split()
    if rc != "0":
        sys.exit(f"spectro {args} failed: {r.stderr}")
    return int(kb) / 1024.0, float(dt)


def memory(work, hours):
    """Peak RSS of spectro (10 s output) against the input's length."""
    secs = int(hours * 3600)
    files = {"10 s AAC clip (mp4)": make_clips(work, 1)[0]}
    flac, mp3 = os.path.join(work, "silence.flac"), os.path.join(work, "tone.mp3")
    print(f"generating {hours:g} h of FLAC silence and of 44.1 kHz MP3 ...", flush=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"anullsrc=r=16000:cl=mono:d={secs}", "-c:a", "flac", flac], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=f=440:r=44100:d={secs}", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "96k", mp3],
                   check=True)
    files[f"{hours:g} h FLAC silence, 16 kHz ({os.path.getsize(flac) / 1e6:.0f} MB)"] = flac
    files[f"{hours:g} h MP3, 44.1 kHz stereo ({os.path.getsize(mp3) / 1e6:.0f} MB)"] = mp3
    out = os.path.join(work, "m.npy")
    rows = []
    for name, path in files.items():
        cases = [("head (no segment)", [])]
        if path in (flac, mp3):
            cases.append((f"segment [{secs - 20}, {secs - 10}) s", ["--start", secs - 20, "--end", secs - 10]))
        for what, extra in cases:
            rss, dt = run_measured([path, "-o", out, "--no-wisdom", *extra])
            rows.append(f"| {name} | {what} | {rss:.0f} MB | {dt:.2f} s |")
            print(f"  {name}, {what}: peak RSS {rss:.0f} MB, {dt:.2f} s", flush=True)
    return ["", f"Memory (10 s output, 257 x 1004 float32 = 1.0 MB; one spectro process each):", "",
            "| input | part | peak RSS | wall |", "|---|---|---|---|", *rows]


def cpu_model():
    model, cores = "?", os.cpu_count()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, cores


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--core", type=int, default=None, help="core for the one-core part (default: the last)")
    ap.add_argument("--no-results", action="store_true", help="do not write bench/spectro/RESULTS.md")
    ap.add_argument("--hours", type=float, default=3, help="length of the long files of the memory part")
    ap.add_argument("--memory-only", action="store_true", help="only the memory part (4.)")
    a = ap.parse_args()
    for b in ["spectro"] + ([] if a.memory_only else ["bench_stft"]):
        if not os.path.exists(os.path.join(BIN, b)):
            sys.exit(f"{BIN}/{b} missing: run make build/bin/spectro build/bin/bench_stft")
    cpus = sorted(os.sched_getaffinity(0))
    core = a.core if a.core is not None else cpus[-1]
    model, ncores = cpu_model()
    work = tempfile.mkdtemp(prefix="bench_spectro.")
    if a.memory_only:
        try:
            mem = memory(work, a.hours)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("\n".join([f"CPU: {model}, {ncores} cores visible"] + mem))
        return
    try:
        print(f"generating {a.clips} ten-second clips (44.1 kHz stereo AAC + 640x360 H.264, mp4) ...", flush=True)
        clips = make_clips(work, a.clips)
        # warm-up: page cache, FFTW wisdom, Python imports
        time_spectro(clips[:2], 1, work)
        reference(clips[0])

        os.sched_setaffinity(0, {core})
        sp, ref, refs = [], [], []
        for r in range(a.rounds):
            order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
            for k in order:
                if k == 0:
                    sp.append(time_spectro(clips, 1, work) / len(clips))
                elif k == 1:
                    ref.append(time_reference(clips, work, False) / len(clips))
                else:
                    refs.append(time_reference(clips, work, True) / len(clips))
            print(f"  round {r + 1}: spectro {sp[-1] * 1e3:.2f} ms/clip, reference {ref[-1] * 1e3:.1f} ms/clip, "
                  f"reference+save {refs[-1] * 1e3:.1f} ms/clip", flush=True)
        msp, mref, mrefs = statistics.median(sp), statistics.median(ref), statistics.median(refs)
        ratios = [b / s for s, b in zip(sp, ref)]
        ratios_s = [b / s for s, b in zip(sp, refs)]
        sp_cpu = [c / len(clips) for j, c, _ in CPU_USED[-a.rounds:]]
        ref_cpu = [c / len(clips) for c in REF_CPU]

        two = []
        if len(cpus) >= 2:
            os.sched_setaffinity(0, set(cpus[:2]))
            # steady-state throughput: enough inputs that the fixed start-up cost
            # (loading FFmpeg's libraries, FFTW wisdom) is a small share of the run
            many = clips * 10
            links = []
            for i, c in enumerate(many):  # distinct names, same content
                lk = os.path.join(work, f"j_{i:03d}.mp4")
                os.symlink(c, lk)
                links.append(lk)
            j1, j2 = [], []
            for r in range(a.rounds):
                for jobs in ([1, 2] if r % 2 == 0 else [2, 1]):
                    (j1 if jobs == 1 else j2).append(time_spectro(links, jobs, work))
            two = [x / y for x, y in zip(j1, j2)]
            cpu1 = statistics.median(c for j, c, _ in CPU_USED[-2 * a.rounds:] if j == 1) / len(links)
            cpu2 = statistics.median(c for j, c, _ in CPU_USED[-2 * a.rounds:] if j == 2) / len(links)
            print(f"  two cores: -j 1 {statistics.median(j1) * 1e3 / len(links):.2f} ms/clip, "
                  f"-j 2 {statistics.median(j2) * 1e3 / len(links):.2f} ms/clip", flush=True)

        os.sched_setaffinity(0, {core})
        r = subprocess.run([os.path.join(BIN, "bench_stft"), "10", "500"], capture_output=True, text=True,
                           check=True)
        maths = r.stdout.strip()
        os.sched_setaffinity(0, set(cpus))
        mem = memory(work, a.hours)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    lines = [
        f"CPU: {model}, {ncores} cores visible, load average at the end {load[0]:.2f} / {load[1]:.2f} "
        f"(1 / 5 min: other work on the machine competes for the cores); one-core runs on core {core}; {a.clips} clips, {a.rounds} rounds "
        f"(alternated), medians.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| spectro -j 1 --normalize clip, per clip (whole run incl. process start / {a.clips}) | "
        f"{msp * 1e3:.2f} ms |",
        f"| reference (ffmpeg → WAV → soundfile → tile → scipy → log → standardise), per clip | {mref * 1e3:.1f} ms |",
        f"| reference + np.save, per clip | {mrefs * 1e3:.1f} ms |",
        f"| **speed-up per clip, one core** (median of per-round ratios; target ≥ 20×) | "
        f"**{statistics.median(ratios):.1f}×** (vs reference + save: {statistics.median(ratios_s):.1f}×) |",
        f"| CPU time (user + sys) per clip: spectro / reference (ratio, less sensitive to other load) | "
        f"{statistics.median(sp_cpu) * 1e3:.2f} / {statistics.median(ref_cpu) * 1e3:.1f} ms "
        f"({statistics.median(ref_cpu) / statistics.median(sp_cpu):.1f}×) |",
    ]
    if two:
        lines.append(f"| **throughput -j 2 / -j 1 on two cores** ({10 * a.clips} clips; target ≥ 1.8×) | "
                     f"**{statistics.median(two):.2f}×** |")
        lines.append(f"| CPU time (user + sys) per clip, -j 1 / -j 2 (no contention inside spectro when ≈ 1) | "
                     f"{cpu1 * 1e3:.2f} / {cpu2 * 1e3:.2f} ms (ratio {cpu1 / cpu2:.2f}) |")
    lines.append(f"| spectrogram maths alone (bench_stft; target < 1 ms) | {maths} |")
    lines += mem
    text = "\n".join(lines)
    print()
    print(text)
    if not a.no_results:
        with open(os.path.join(ROOT, "bench", "spectro", "RESULTS.md"), "w") as f:
            f.write("# bench/spectro results\n\nCommand: `bench/spectro/run.sh` "
                    f"(`bench/spectro/run.py --clips {a.clips} --rounds {a.rounds}`).\n\n" + text + "\n")


if __name__ == "__main__":
    main()
